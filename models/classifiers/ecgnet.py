"""``ecgnet``: a plain VGG-style 1-D conv stack for MIT-BIH beat segments."""

from __future__ import annotations

from keras import layers

from models.checks import CLASSIFIER as check
from models.classifiers import blocks
from models.classifiers.builder import classifier

CONV = blocks.ConvStack(filters=(32, 64, 128), kernel_size=5, pool_size=2)
HEAD = blocks.Head(dense_units=64, dropout=0.3)


def search_space(hp):
    """Builder kwargs sampled from ``hp``; ``HyperParameters()`` gives the builder defaults."""
    filters = blocks.widths_space(hp, CONV.filters, bases=(16, 32))
    convs_per_block = hp.Int("convs_per_block", 1, 2, default=2)
    kernel_size = hp.Choice("kernel_size", [3, 5, 7], default=CONV.kernel_size)
    space = dict(filters=filters, convs_per_block=convs_per_block, kernel_size=kernel_size)
    return {**space, **blocks.head_space(hp, HEAD, dense_choices=(32, 64, 128))}


@classifier("ecgnet", search_space, head=HEAD, conv=CONV)
def build(ecg, conv, *, convs_per_block=2):
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
    """
    convs_per_block = check.positive_int("convs_per_block", convs_per_block)
    x = conv(ecg, convs_per_block=convs_per_block)
    return layers.GlobalAveragePooling1D(name="gap")(x)
