"""Residual 1-D CNN denoiser: residual encoder with max-pooling, upsampling decoder.

Architecture:
    Encoder, one block per entry of ``filters``: ``Conv(k, relu) -> Conv(k)`` plus a
    shortcut (identity, or a 1x1 conv when the width changes), ``Add -> ReLU ->
    MaxPool(2)``. Decoder, blocks in reverse order: ``UpSampling1D(2) -> Conv(k, relu)``
    with the encoder block's width. Output: linear 1x1 conv to ``leads`` (with ``output_mode``
    ``residual`` or ``gated``: the predicted noise, subtracted from the input; see
    :func:`models.denoisers.common.denoiser_output`).

Shapes:
    Input ``(batch, samples, leads)``, normalized amplitudes at the window rate (360 Hz for
    MIT-BIH), with ``samples`` divisible by ``2 ** len(filters)``. Output: same shape and
    units. The bottleneck has ``samples / 2 ** len(filters)`` steps.
"""

from __future__ import annotations

import keras

from models import checks
from models.denoisers import common
from models.registry import register


def search_space(hp):
    """Builder kwargs sampled from ``hp``; an empty ``HyperParameters()`` gives the defaults."""
    return dict(
        filters=common.int_tuple_space(hp, "filters", (720, 360, 360), [45, 90, 180, 360, 720], max_len=4),
        kernel_size=hp.Choice("kernel_size", [3, 5, 7, 9], default=3),
        **common.output_mode_space(hp),
    )


@register("cnn", kind="denoiser", search_space=search_space, input_kind="window")
def build(input_shape, *, filters=(720, 360, 360), kernel_size=3, output_mode="direct"):
    """Builds the residual encoder/decoder CNN denoiser.

    Args:
        input_shape: ``(samples, leads)``; ``samples`` divisible by ``2 ** len(filters)``.
        filters: Conv widths of the encoder blocks (the decoder mirrors them).
        kernel_size: Conv kernel length in samples.
        output_mode: ``direct``, ``residual`` or ``gated``
            (:func:`models.denoisers.common.denoiser_output`).

    Returns:
        ``keras.Model`` named ``"cnn"`` mapping ``(batch, samples, leads)`` to the same shape.
    """
    samples, leads, filters = checks.conv_window_args(
        input_shape, filters, kernel_size, halvings="max-pool blocks"
    )
    common.check_output_mode(output_mode)

    inputs = keras.Input((samples, leads), name="ecg")
    x = inputs
    for i, width in enumerate(filters):
        shortcut = x
        if x.shape[-1] != width:
            shortcut = keras.layers.Conv1D(width, 1, name=f"enc{i}_shortcut")(x)
        h = keras.layers.Conv1D(
            width, kernel_size, padding="same", activation="relu", name=f"enc{i}_conv1"
        )(x)
        h = keras.layers.Conv1D(width, kernel_size, padding="same", name=f"enc{i}_conv2")(h)
        x = keras.layers.Add(name=f"enc{i}_add")([shortcut, h])
        x = keras.layers.Activation("relu", name=f"enc{i}_relu")(x)
        x = keras.layers.MaxPooling1D(2, name=f"enc{i}_pool")(x)
    for i in reversed(range(len(filters))):
        x = keras.layers.UpSampling1D(2, name=f"dec{i}_upsample")(x)
        x = keras.layers.Conv1D(
            filters[i], kernel_size, padding="same", activation="relu", name=f"dec{i}_conv"
        )(x)
    outputs = common.denoiser_output(inputs, x, output_mode, common.conv_head(leads))
    return keras.Model(inputs, outputs, name="cnn")
