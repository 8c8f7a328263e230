"""``se_ecgnet``: 1-D conv blocks with squeeze-and-excitation, for MIT-BIH beat segments."""

from __future__ import annotations

import keras
from keras import layers

from models.classifiers import _blocks, _checks
from models.registry import register

NAME = "se_ecgnet"


def search_space(hp):
    """Builder kwargs sampled from ``hp``; ``HyperParameters()`` gives the builder defaults."""
    base = hp.Choice("filters_base", [16, 32], default=32)
    return dict(
        filters=(base, 2 * base, 4 * base),
        kernel_size=hp.Choice("kernel_size", [3, 5, 7], default=5),
        se_ratio=hp.Choice("se_ratio", [4, 8, 16], default=8),
        dropout=hp.Float("dropout", 0.0, 0.5, step=0.1, default=0.3),
    )


def _squeeze_excite(x, filters: int, ratio: int, *, prefix: str):
    """Channel attention (Hu et al. 2018): reweights channels by a gate in (0, 1) computed
    from their time-averaged activations."""
    s = layers.GlobalAveragePooling1D(keepdims=True, name=f"{prefix}_se_squeeze")(x)
    s = layers.Dense(max(1, filters // ratio), activation="relu", name=f"{prefix}_se_reduce")(s)
    s = layers.Dense(filters, activation="sigmoid", name=f"{prefix}_se_expand")(s)
    return layers.Multiply(name=f"{prefix}_se_scale")([x, s])


@register(NAME, kind="classifier", search_space=search_space, input_kind="any1d")
def build(
    input_shape,
    n_outputs,
    *,
    filters=(32, 64, 128),
    kernel_size=5,
    se_ratio=8,
    pool_size=2,
    dropout=0.3,
    output_activation="softmax",
) -> keras.Model:
    """SE-ECGNet: conv blocks, each ending in a squeeze-and-excitation gate.

    Design: ``len(filters)`` blocks of ``Conv1D -> BN -> ReLU -> Conv1D -> BN -> ReLU ->
    SE -> MaxPool``; the SE gate squeezes the block output over time (global average),
    passes it through a ``filters // se_ratio`` bottleneck and scales every channel by a
    sigmoid weight, letting the block emphasise the feature maps that matter for the beat
    at hand (P-wave, QRS width, ST level) at a cost of ``2 * f**2 / se_ratio`` weights per
    block. Head: global average pooling, dropout, dense output. About 0.17 M parameters on
    (720, 1).

    Args:
        input_shape: ``(n_samples, n_leads)``, e.g. ``(720, 1)`` (2 s at 360 Hz).
        n_outputs: number of classes (softmax) or labels (sigmoid).
        filters: filters of each block.
        kernel_size: conv kernel length in samples.
        se_ratio: channel reduction of the SE bottleneck.
        pool_size: max-pool size after each block (``padding="same"``).
        dropout: dropout rate before the output layer.
        output_activation: ``softmax`` (single-label), ``sigmoid`` (multi-label) or ``linear``.

    Returns:
        ``keras.Model`` named ``se_ecgnet`` mapping ``(batch, *input_shape)`` to
        ``(batch, n_outputs)``.
    """
    filters = _checks.positive_ints("filters", filters)
    kernel_size = _checks.positive_int("kernel_size", kernel_size)
    se_ratio = _checks.positive_int("se_ratio", se_ratio)
    pool_size = _checks.positive_int("pool_size", pool_size)
    dropout = _checks.rate("dropout", dropout)
    output_activation = _checks.output_activation(output_activation)
    n_outputs = _checks.positive_int("n_outputs", n_outputs)
    input_shape = _checks.input_1d(NAME, input_shape)

    inputs = _blocks.ecg_input(input_shape)
    x = inputs
    for i, f in enumerate(filters, start=1):
        x = _blocks.conv_bn_act(x, f, kernel_size, prefix=f"block{i}_1")
        x = _blocks.conv_bn_act(x, f, kernel_size, prefix=f"block{i}_2")
        x = _squeeze_excite(x, f, se_ratio, prefix=f"block{i}")
        x = _blocks.max_pool(x, pool_size, prefix=f"block{i}")
    x = layers.GlobalAveragePooling1D(name="gap")(x)
    outputs = _blocks.classifier_head(x, n_outputs, output_activation, dropout=dropout)
    return keras.Model(inputs, outputs, name=NAME)
