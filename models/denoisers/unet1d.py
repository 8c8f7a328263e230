"""1-D U-Net denoiser with a dilated residual bottleneck and an identity skip from the input.

Architecture:
    Encoder levels ``0 .. L-2`` (``L = len(filters)``): two ``Conv(k) -> [BatchNorm] ->
    ReLU`` (He-initialized) at width ``filters[i]``, kept as the level's skip, then ``MaxPool(2)``.
    Bottleneck at width ``filters[-1]``: one conv, then one residual dilated conv per entry
    of ``dilations`` (``x + ReLU(BN(Conv(k, dilation d)(x)))``), so the receptive field
    covers seconds of signal (baseline wander) at low cost. Decoder levels ``L-2 .. 0``:
    ``UpSampling1D(2) -> Conv(k)``, concatenation with the skip, two convs. A 1x1 linear conv
    gives ``leads`` channels. With ``input_skip`` this is a *correction* added to the input
    (``output = ecg + correction``) and the last conv starts at zero, so the untrained model
    is the identity: clean inputs pass through and training only learns to remove noise.
    That is ``output_mode="direct"`` (the default, unchanged). ``output_mode`` ``residual``
    or ``gated`` replaces this output (and the bottleneck gate) by the block every denoiser
    shares (:func:`models.denoisers.common.denoiser_output`): a zero-initialized 1x1 conv
    predicts the noise, subtracted from the input, in ``gated`` mode scaled by a
    pass-through gate computed from the input.

Shapes:
    Input ``(batch, samples, leads)``, normalized amplitudes at the window rate (360 Hz for
    MIT-BIH), ``samples`` divisible by ``2 ** (len(filters) - 1)``. Output: same shape and
    units. The bottleneck has ``samples / 2 ** (len(filters) - 1)`` steps; at defaults the
    receptive field is about 1300 samples (3.6 s at 360 Hz).
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
        filters=common.int_tuple_space(hp, "filters", (16, 32, 64, 64), [8, 16, 32, 64, 128], max_len=5),
        kernel_size=hp.Choice("kernel_size", [5, 9, 15], default=9),
        dilations=common.int_tuple_space(hp, "dilations", (1, 2, 4, 8), [1, 2, 4, 8, 16], max_len=5),
        batch_norm=hp.Boolean("batch_norm", default=False),
        dropout=hp.Float("dropout", 0.0, 0.3, step=0.1, default=0.0),
        noise_gate=hp.Boolean("noise_gate", default=True),
        **common.output_mode_space(hp),
    )


def _conv(x, width, kernel_size, *, name, batch_norm, dilation=1):
    x = keras.layers.Conv1D(
        width,
        kernel_size,
        padding="same",
        dilation_rate=dilation,
        use_bias=not batch_norm,
        kernel_initializer="he_normal",
        name=f"{name}_conv",
    )(x)
    if batch_norm:
        x = keras.layers.BatchNormalization(name=f"{name}_bn")(x)
    return keras.layers.Activation("relu", name=f"{name}_relu")(x)


def _encoder(x, filters, kernel_size, batch_norm):
    """Levels ``0 .. L-2``: two convs (the level's skip) and ``MaxPool(2)``; returns both."""
    skips = []
    for i, width in enumerate(filters[:-1]):
        x = _conv(x, width, kernel_size, name=f"enc{i}_a", batch_norm=batch_norm)
        x = _conv(x, width, kernel_size, name=f"enc{i}_b", batch_norm=batch_norm)
        skips.append(x)
        x = keras.layers.MaxPooling1D(2, name=f"enc{i}_pool")(x)
    return x, skips


def _bottleneck(x, width, kernel_size, dilations, batch_norm, dropout):
    """One conv, then ``x + conv(x, dilation d)`` per dilation, then dropout."""
    x = _conv(x, width, kernel_size, name="bottleneck_in", batch_norm=batch_norm)
    for j, rate in enumerate(dilations):
        h = _conv(
            x, width, kernel_size, name=f"bottleneck_d{j}", batch_norm=batch_norm, dilation=rate
        )
        x = keras.layers.Add(name=f"bottleneck_d{j}_add")([x, h])
    return keras.layers.Dropout(dropout, name="bottleneck_dropout")(x)


def _noise_gate(x, leads):
    """Per window and lead, a gate in ``[0, 1]`` from the bottleneck's global average and
    maximum: ``(batch, 1, leads)``."""
    g = keras.layers.Concatenate(name="gate_pool")(
        [
            keras.layers.GlobalAveragePooling1D(name="gate_avg")(x),
            keras.layers.GlobalMaxPooling1D(name="gate_max")(x),
        ]
    )
    g = keras.layers.Dense(32, activation="relu", name="gate_hidden")(g)
    g = keras.layers.Dense(leads, activation="sigmoid", name="gate")(g)
    return keras.layers.Reshape((1, leads), name="gate_reshape")(g)


def _decoder(x, skips, filters, kernel_size, batch_norm):
    """Levels ``L-2 .. 0``: upsample, conv, concatenate the level's skip, two convs."""
    for i in reversed(range(len(skips))):
        x = keras.layers.UpSampling1D(2, name=f"dec{i}_upsample")(x)
        x = _conv(x, filters[i], kernel_size, name=f"dec{i}_up", batch_norm=batch_norm)
        x = keras.layers.Concatenate(name=f"dec{i}_concat")([x, skips[i]])
        x = _conv(x, filters[i], kernel_size, name=f"dec{i}_a", batch_norm=batch_norm)
        x = _conv(x, filters[i], kernel_size, name=f"dec{i}_b", batch_norm=batch_norm)
    return x


def _output(inputs, x, leads, input_skip, gate):
    """``ecg + [gate *] correction`` (zero-initialized, so the untrained model is the
    identity) with ``input_skip``, else a plain linear 1x1 conv."""
    if not input_skip:
        return keras.layers.Conv1D(leads, 1, name="output")(x)
    correction = keras.layers.Conv1D(leads, 1, kernel_initializer="zeros", name="correction")(x)
    if gate is not None:
        correction = keras.layers.Multiply(name="gated_correction")([correction, gate])
    return keras.layers.Add(name="output")([inputs, correction])


@register("unet1d", kind="denoiser", search_space=search_space, input_kind="window")
def build(
    input_shape,
    *,
    filters=(16, 32, 64, 64),
    kernel_size=9,
    dilations=(1, 2, 4, 8),
    batch_norm=False,
    dropout=0.0,
    input_skip=True,
    noise_gate=True,
    output_mode="direct",
):
    """Builds the 1-D U-Net denoiser.

    Args:
        input_shape: ``(samples, leads)``; ``samples`` divisible by
            ``2 ** (len(filters) - 1)``.
        filters: Widths per level, finest first; the last is the bottleneck width.
        kernel_size: Conv kernel length in samples (at each level's own rate).
        dilations: Dilation rates of the residual bottleneck convs (at least one).
        batch_norm: Whether convs are followed by BatchNormalization. Off by default: a
            denoiser's batch statistics depend on the noise levels mixed into each batch,
            so BatchNorm makes inference (moving statistics) differ from training; without
            it the model is the same function in both modes.
        dropout: Dropout rate after the bottleneck, in ``[0, 1)``.
        input_skip: Whether the network predicts a correction added to the input.
        noise_gate: With ``input_skip``, scale the correction per window and lead by a gate
            in ``[0, 1]`` computed from the bottleneck's global average and maximum. A clean
            window can then pass through unchanged (gate near 0) while noisy windows get the
            full correction, instead of one trade-off for all noise levels.
        output_mode: ``direct`` (the output above, shaped by ``input_skip`` and
            ``noise_gate``), or ``residual`` / ``gated``: the shared output block
            (:func:`models.denoisers.common.denoiser_output`), which then replaces the
            input skip and the bottleneck gate (``input_skip`` and ``noise_gate`` are
            still checked but shape only the ``direct`` output).

    Returns:
        ``keras.Model`` named ``"unet1d"`` mapping ``(batch, samples, leads)`` to the same
        shape.
    """
    samples, leads, filters = checks.conv_window_args(
        input_shape, filters, kernel_size, halvings="max-pool levels", bottleneck=True
    )
    dilations = check.positive_ints("dilations", dilations)
    check.boolean("batch_norm", batch_norm)
    check.rate("dropout", dropout)
    check.boolean("input_skip", input_skip)
    check.boolean("noise_gate", noise_gate)
    common.check_output_mode(output_mode)
    direct = output_mode == "direct"

    inputs = keras.Input((samples, leads), name="ecg")
    x, skips = _encoder(inputs, filters, kernel_size, batch_norm)
    x = _bottleneck(x, filters[-1], kernel_size, dilations, batch_norm, dropout)
    gate = _noise_gate(x, leads) if direct and input_skip and noise_gate else None
    x = _decoder(x, skips, filters, kernel_size, batch_norm)
    if direct:
        outputs = _output(inputs, x, leads, input_skip, gate)
    else:
        outputs = common.denoiser_output(inputs, x, output_mode, common.conv_head(leads))
    return keras.Model(inputs, outputs, name="unet1d")
