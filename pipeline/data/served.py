"""The input ``pipeline.predict`` gives a denoiser, for training and validating on it.

Predict high-passes the whole recording (``windows.denoise_highpass_hz``, zero phase, order
2: the filter the windows stage applies to the clean reference) before the model. The
reference already is the high-passed clean signal, so on a noisy recording the model sees
the reference plus the high-passed noise. With ``noise.served_highpass: true`` the training
and validation windows are built so: every noise function's output ``noisy`` becomes
``clean + highpass(noisy - clean)``, the noise scaled to its SNR before the filter (the SNR a
user's raw recording has). The filter runs in the ``tf.data`` graph as its frequency response
on the window padded by its mirror image (the response of ``scipy.signal.sosfiltfilt`` with
a Butterworth design, ``|H(f)|^2 = r^4 / (1 + r^4)``, ``r = f / cutoff``), the same as
:func:`pipeline.data.signal.mirror_highpass`, which the evaluation uses (:func:`served_input`),
to 1e-5 of the input's power (tested).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from pipeline.core.config import PipelineConfig


def zero_phase_gain(n_fft: int, fs_hz: float, cutoff_hz: float, order: int = 2) -> np.ndarray:
    """``(n_fft // 2 + 1,)`` gain of a Butterworth high-pass applied forward and backward."""
    if not 0 < cutoff_hz < fs_hz / 2:
        raise ValueError(f"need 0 < cutoff_hz < fs_hz/2. Received: cutoff_hz={cutoff_hz}, "
                         f"fs_hz={fs_hz}")
    r = np.fft.rfftfreq(n_fft, 1.0 / fs_hz) / cutoff_hz
    return (r ** (2 * order) / (1.0 + r ** (2 * order))).astype(np.float32)


def tf_mirror_highpass(x: Any, cutoff_hz: float, fs_hz: float) -> Any:
    """Zero-phase high-pass of ``(k, T, C)`` float32 windows along time, in the graph."""
    import tensorflow as tf

    x = tf.convert_to_tensor(x, tf.float32)
    steps = int(x.shape[1])
    gain = tf.constant(zero_phase_gain(2 * steps, fs_hz, cutoff_hz), tf.complex64)
    padded = tf.transpose(tf.concat([x, tf.reverse(x, [1])], axis=1), [0, 2, 1])
    y = tf.signal.irfft(tf.signal.rfft(padded) * gain, fft_length=[2 * steps])
    return tf.transpose(y[:, :, :steps], [0, 2, 1])


def served_input(noisy: np.ndarray, clean: np.ndarray, cutoff_hz: float,
                 fs_hz: float) -> np.ndarray:
    """``(n, T, C)`` float32: the reference plus the high-passed noise (NumPy, for evaluation:
    :class:`pipeline.evaluation.evaluate.ServedChain`)."""
    from pipeline.data.signal import mirror_highpass

    noise = np.asarray(noisy, np.float64) - clean
    return (clean + mirror_highpass(noise, cutoff_hz, fs_hz)).astype(np.float32)


def served_noise_fn(fn: Any, cutoff_hz: float, fs_hz: float) -> Any:
    """``fn``'s noisy windows as predict's model input: ``clean + highpass(noisy - clean)``."""

    def served(clean: Any, seed: Any) -> Any:
        import tensorflow as tf

        clean = tf.convert_to_tensor(clean, tf.float32)
        return clean + tf_mirror_highpass(fn(clean, seed) - clean, cutoff_hz, fs_hz)

    return served


def maybe_served(fn: Any, cfg: PipelineConfig) -> Any:
    """``fn`` as predict's input when ``noise.served_highpass`` is on (and the windows stage
    high-passes the reference); ``fn`` itself otherwise."""
    hz = cfg.windows.denoise_highpass_hz
    if not cfg.noise.served_highpass or hz <= 0:
        return fn
    return served_noise_fn(fn, hz, cfg.windows.denoise_fs_hz)
