"""Small 1-D convolutional denoising autoencoder (few parameters, fast on CPU).

Architecture:
    Encoder, one layer per entry of ``filters``: ``Conv1D(k, stride 2, relu)``. Decoder,
    in reverse: ``Conv1DTranspose(k, stride 2, relu)`` back to the previous resolution and,
    when ``skip``, concatenation with the encoder's input at that resolution (the last skip
    is the raw window itself). Output: linear ``Conv1D(k)`` to ``leads`` (with
    ``output_mode`` ``residual`` or ``gated``: the predicted noise, subtracted from the input;
    see :func:`models.denoisers.common.denoiser_output`).

Shapes:
    Input ``(batch, samples, leads)``, normalized amplitudes at the window rate (360 Hz for
    MIT-BIH), with ``samples`` divisible by ``2 ** len(filters)``. Output: same shape and
    units.
"""

from __future__ import annotations

import keras

from models import checks
from models.checks import DENOISER as check
from models.denoisers import common
from models.registry import register


def search_space(hp):
    """Builder kwargs sampled from ``hp``; an empty ``HyperParameters()`` gives the defaults."""
    return dict(
        filters=common.int_tuple_space(hp, "filters", (16, 32, 64), [8, 16, 32, 64, 128], max_len=5),
        kernel_size=hp.Choice("kernel_size", [5, 9, 15], default=9),
        skip=hp.Boolean("skip", default=True),
        **common.output_mode_space(hp),
    )


@register("cnn_dae", kind="denoiser", search_space=search_space, input_kind="window")
def build(input_shape, *, filters=(16, 32, 64), kernel_size=9, skip=True, output_mode="direct"):
    """Builds the strided-conv denoising autoencoder.

    Args:
        input_shape: ``(samples, leads)``; ``samples`` divisible by ``2 ** len(filters)``.
        filters: Widths of the strided encoder convs (the decoder mirrors them).
        kernel_size: Kernel length in samples of every conv.
        skip: Whether decoder stages concatenate the encoder feature at their resolution.
        output_mode: ``direct``, ``residual`` or ``gated``
            (:func:`models.denoisers.common.denoiser_output`).

    Returns:
        ``keras.Model`` named ``"cnn_dae"`` mapping ``(batch, samples, leads)`` to the same
        shape.
    """
    samples, leads, filters = checks.conv_window_args(
        input_shape, filters, kernel_size, halvings="stride-2 convs"
    )
    check.boolean("skip", skip)
    common.check_output_mode(output_mode)

    inputs = keras.Input((samples, leads), name="ecg")
    x = inputs
    skips = []
    for i, width in enumerate(filters):
        skips.append(x)
        x = keras.layers.Conv1D(
            width, kernel_size, strides=2, padding="same", activation="relu", name=f"down{i}"
        )(x)
    for i in reversed(range(len(filters))):
        width = filters[i - 1] if i > 0 else filters[0]
        x = keras.layers.Conv1DTranspose(
            width, kernel_size, strides=2, padding="same", activation="relu", name=f"up{i}"
        )(x)
        if skip:
            x = keras.layers.Concatenate(name=f"skip{i}")([x, skips[i]])
    outputs = common.denoiser_output(inputs, x, output_mode, common.conv_head(leads, kernel_size))
    return keras.Model(inputs, outputs, name="cnn_dae")
