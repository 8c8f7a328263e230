"""``cnn``: plain 1-D CNN baseline for PTB-XL records and MIT-BIH segments."""

from __future__ import annotations

import keras
from keras import layers

from models.classifiers import blocks
from models.registry import register

NAME = "cnn"


def search_space(hp):
    """Builder kwargs sampled from ``hp``; ``HyperParameters()`` gives the builder defaults."""
    base = hp.Choice("filters_base", [32, 64], default=64)
    return dict(
        filters=(base, 2 * base, 4 * base),
        kernel_size=hp.Choice("kernel_size", [3, 5, 7], default=5),
        **blocks.head_space(hp, dropout=0.5, dense_units=128, dense_choices=(64, 128, 256)),
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
    n_rr_features=0,
    output_activation="softmax",
) -> keras.Model:
    """1-D CNN: ``[Conv1D -> BN -> ReLU -> MaxPool] x len(filters) -> GAP -> Dense -> Dropout``.

    The PTB-XL benchmark's simple CNN baseline: three conv blocks (64, 128, 256 filters),
    global average pooling over time, a 128-unit dense layer and dropout 0.5.
    About 0.24 M parameters on (1000, 12).

    Args:
        input_shape: ``(n_samples, n_leads)``, e.g. ``(720, 1)`` (2 s at 360 Hz) or
            ``(1000, 12)`` (10 s at 100 Hz).
        filters: filters of each conv block.
        kernel_size: conv kernel length in samples.
        pool_size: max-pool size after each block (``padding="same"``).
        dense_units: units of the dense layer before the output.
        dropout, n_outputs, n_rr_features, output_activation: as in :func:`blocks.classifier_io`.

    Returns:
        ``keras.Model`` named ``cnn``: ``(batch, *input_shape)`` -> ``(batch, n_outputs)``.
    """
    filters, kernel_size, pool_size = blocks.conv_stack_args(filters, kernel_size, pool_size)
    io = blocks.classifier_io(
        NAME, input_shape, n_outputs, output_activation, n_rr_features, dense_units, dropout
    )

    x = blocks.conv_stack(io.ecg, filters, kernel_size, pool_size=pool_size)
    x = layers.GlobalAveragePooling1D(name="gap")(x)
    return io.model(x)
