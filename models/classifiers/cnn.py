"""``cnn``: plain 1-D CNN baseline for PTB-XL records and MIT-BIH segments."""

from __future__ import annotations

from keras import layers

from models.classifiers import blocks
from models.classifiers.builder import classifier

CONV = blocks.ConvStack(filters=(64, 128, 256), kernel_size=5, pool_size=2)
HEAD = blocks.Head(dense_units=128, dropout=0.5)


def search_space(hp):
    """Builder kwargs sampled from ``hp``; ``HyperParameters()`` gives the builder defaults."""
    return dict(
        **blocks.conv_space(hp, CONV, bases=(32, 64), kernel_sizes=(3, 5, 7)),
        **blocks.head_space(hp, HEAD, dense_choices=(64, 128, 256)),
    )


@classifier("cnn", search_space, head=HEAD, conv=CONV)
def build(ecg, conv):
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
    """
    x = conv(ecg)
    return layers.GlobalAveragePooling1D(name="gap")(x)
