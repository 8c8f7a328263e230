"""``ecgnet``: a plain VGG-style 1-D conv stack for MIT-BIH beat segments."""

from __future__ import annotations

import keras
from keras import layers

from models.checks import CLASSIFIER as check
from models.classifiers import blocks
from models.registry import register

NAME = "ecgnet"


def search_space(hp):
    """Builder kwargs sampled from ``hp``; ``HyperParameters()`` gives the builder defaults."""
    base = hp.Choice("filters_base", [16, 32], default=32)
    return dict(
        filters=(base, 2 * base, 4 * base),
        convs_per_block=hp.Int("convs_per_block", 1, 2, default=2),
        kernel_size=hp.Choice("kernel_size", [3, 5, 7], default=5),
        **blocks.head_space(hp, dropout=0.3, dense_units=64),
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
    n_rr_features=0,
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
        filters: filters of each block.
        convs_per_block: conv layers per block.
        kernel_size: conv kernel length in samples.
        pool_size: max-pool size after each block (``padding="same"``).
        dense_units: units of the dense layer of the head.
        dropout, n_outputs, n_rr_features, output_activation: as in :func:`blocks.classifier_io`.

    Returns:
        ``keras.Model`` named ``ecgnet``: ``(batch, *input_shape)`` -> ``(batch, n_outputs)``.
    """
    filters, kernel_size, pool_size = blocks.conv_stack_args(filters, kernel_size, pool_size)
    convs_per_block = check.positive_int("convs_per_block", convs_per_block)
    io = blocks.classifier_io(
        NAME, input_shape, n_outputs, output_activation, n_rr_features, dense_units, dropout
    )

    x = blocks.conv_stack(
        io.ecg, filters, kernel_size, pool_size=pool_size, convs_per_block=convs_per_block
    )
    x = layers.GlobalAveragePooling1D(name="gap")(x)
    return io.model(x)
