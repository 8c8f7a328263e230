"""``cnn``: plain 1-D CNN baseline for PTB-XL records and MIT-BIH segments."""

from __future__ import annotations

import keras
from keras import layers

from models.classifiers import _blocks, _checks
from models.registry import register

NAME = "cnn"


def search_space(hp):
    """Builder kwargs sampled from ``hp``; ``HyperParameters()`` gives the builder defaults."""
    base = hp.Choice("filters_base", [32, 64], default=64)
    return dict(
        filters=(base, 2 * base, 4 * base),
        kernel_size=hp.Choice("kernel_size", [3, 5, 7], default=5),
        dense_units=hp.Choice("dense_units", [64, 128, 256], default=128),
        dropout=hp.Float("dropout", 0.0, 0.5, step=0.1, default=0.5),
    )


@register(NAME, kind="classifier", search_space=search_space, input_kind="any1d")
def build(
    input_shape,
    n_outputs,
    *,
    filters=(64, 128, 256),
    kernel_size=5,
    pool_size=2,
    dense_units=128,
    dropout=0.5,
    output_activation="softmax",
) -> keras.Model:
    """1-D CNN: ``[Conv1D -> BN -> ReLU -> MaxPool] x len(filters) -> GAP -> Dense -> Dropout``.

    The PTB-XL benchmark's simple CNN baseline: three conv blocks (64, 128, 256 filters),
    global average pooling over time, a 128-unit dense layer and dropout 0.5.
    About 0.24 M parameters on (1000, 12).

    Args:
        input_shape: ``(n_samples, n_leads)``, e.g. ``(720, 1)`` (2 s at 360 Hz) or
            ``(1000, 12)`` (10 s at 100 Hz).
        n_outputs: number of classes (softmax) or labels (sigmoid).
        filters: filters of each conv block.
        kernel_size: conv kernel length in samples.
        pool_size: max-pool size after each block (``padding="same"``).
        dense_units: units of the dense layer before the output.
        dropout: dropout rate before the output layer.
        output_activation: ``softmax`` (single-label), ``sigmoid`` (multi-label) or ``linear``.

    Returns:
        ``keras.Model`` named ``cnn`` mapping ``(batch, *input_shape)`` to ``(batch, n_outputs)``.
    """
    filters = _checks.positive_ints("filters", filters)
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
        x = _blocks.conv_bn_act(x, f, kernel_size, prefix=f"block{i}")
        x = _blocks.max_pool(x, pool_size, prefix=f"block{i}")
    x = layers.GlobalAveragePooling1D(name="gap")(x)
    outputs = _blocks.classifier_head(
        x, n_outputs, output_activation, dense_units=dense_units, dropout=dropout
    )
    return keras.Model(inputs, outputs, name=NAME)
