"""Training-time augmentation of beat segments (``train.augment_gain``, ``train.augment_noise_mv``).

Inter-patient beat classifiers overfit the training patients' amplitudes and morphology; a
random gain per segment and added white noise make the signal branch rely less on either.
Applied by the loader to training batches only, in mV before normalization; validation, test,
k-fold scoring and predict see the signal unchanged.
"""

from __future__ import annotations

from typing import Any


def augment_segments(x: Any, gain: float, noise_mv: float, rr_channels: bool) -> Any:
    """``x`` (n, T) or, with ``rr_channels``, (n, T, 4) segments in mV, float32.

    Each segment's signal (channel 0 with RR channels, which stay untouched) is multiplied by
    a gain drawn from U(1 - gain, 1 + gain) and gets white Gaussian noise of ``noise_mv``
    standard deviation (mV). ``gain = noise_mv = 0`` returns ``x`` itself.
    """
    import tensorflow as tf

    if gain <= 0 and noise_mv <= 0:
        return x
    sig = x[..., 0] if rr_channels else x
    if gain > 0:
        sig = sig * tf.random.uniform([tf.shape(sig)[0], 1], 1.0 - gain, 1.0 + gain)
    if noise_mv > 0:
        sig = sig + tf.random.normal(tf.shape(sig), stddev=noise_mv)
    return tf.concat([sig[..., None], x[..., 1:]], axis=-1) if rr_channels else sig
