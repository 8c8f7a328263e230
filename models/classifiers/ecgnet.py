"""``ecgnet``: a plain VGG-style 1-D conv stack for MIT-BIH beat segments."""

from __future__ import annotations

import keras
from keras import layers

from models.classifiers import _blocks, _checks
from models.registry import register

NAME = "ecgnet"


def search_space(hp):
    """Builder kwargs sampled from ``hp``; ``HyperParameters()`` gives the builder defaults."""
    base = hp.Choice("filters_base", [16, 32], default=32)
    return dict(
        filters=(base, 2 * base, 4 * base),
        convs_per_block=hp.Int("convs_per_block", 1, 2, default=2),
        kernel_size=hp.Choice("kernel_size", [3, 5, 7], default=5),
        dense_units=hp.Choice("dense_units", [32, 64, 128], default=64),
        dropout=hp.Float("dropout", 0.0, 0.5, step=0.1, default=0.3),
    )


@register(NAME, kind="classifier", search_space=search_space, input_kind="any1d")
def build(
    input_shape,
    n_outputs,
    *,
    filters=(32, 64, 128),
    convs_per_block=2,
    kernel_size=5,
    pool_size=2,
    dense_units=64,
    dropout=0.3,
    output_activation="softmax",
) -> keras.Model:
    """ECGNet-style plain conv stack (VGG pattern, no skips, no attention).

    Design: ``len(filters)`` blocks, each ``convs_per_block`` x ``Conv1D(f, kernel_size) ->
    BN -> ReLU`` followed by ``MaxPool``; then global average pooling, a small dense layer
    and dropout. The widths double from block to block while the time axis halves, the
    classic trade of resolution for features. The baseline the lighter nets (separable,
    dilated, SE) are measured against; about 0.17 M parameters on (720, 1).

    Args:
        input_shape: ``(n_samples, n_leads)``, e.g. ``(720, 1)`` (2 s at 360 Hz).
        n_outputs: number of classes (softmax) or labels (sigmoid).
        filters: filters of each block.
        convs_per_block: conv layers per block.
        kernel_size: conv kernel length in samples.
        pool_size: max-pool size after each block (``padding="same"``).
        dense_units: units of the dense layer of the head.
        dropout: dropout rate before the output layer.
        output_activation: ``softmax`` (single-label), ``sigmoid`` (multi-label) or ``linear``.

    Returns:
        ``keras.Model`` named ``ecgnet`` mapping ``(batch, *input_shape)`` to
        ``(batch, n_outputs)``.
    """
    filters = _checks.positive_ints("filters", filters)
    convs_per_block = _checks.positive_int("convs_per_block", convs_per_block)
    kernel_size = _checks.positive_int("kernel_size", kernel_size)
    pool_size = _checks.positive_int("pool_size", pool_size)
    dense_units = _checks.positive_int("dense_units", dense_units)
    dropout = _checks.rate("dropout", dropout)
    output_activation = _checks.output_activation(output_activation)
    n_outputs = _checks.positive_int("n_outputs", n_outputs)
    input_shape = _checks.input_1d(NAME, input_shape)

    inputs = _blocks.ecg_input(input_shape)
    x = inputs
    for i, f in enumerate(filters, start=1):
        for j in range(1, convs_per_block + 1):
            x = _blocks.conv_bn_act(x, f, kernel_size, prefix=f"block{i}_{j}")
        x = _blocks.max_pool(x, pool_size, prefix=f"block{i}")
    x = layers.GlobalAveragePooling1D(name="gap")(x)
    outputs = _blocks.classifier_head(
        x, n_outputs, output_activation, dense_units=dense_units, dropout=dropout
    )
    return keras.Model(inputs, outputs, name=NAME)
