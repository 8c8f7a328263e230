"""``ldcnn``: lightweight dilated 1-D CNN for MIT-BIH beat segments."""

from __future__ import annotations

from keras import layers

from models.checks import CLASSIFIER as check
from models.classifiers import blocks
from models.classifiers.builder import classifier

HEAD = blocks.Head(dropout=0.2)


def search_space(hp):
    """Builder kwargs sampled from ``hp``; ``HyperParameters()`` gives the builder defaults.
    The dilations double from 1: ``n_dilations`` residual blocks."""
    n_dilations = hp.Int("n_dilations", 3, 6, default=5)
    filters = hp.Choice("filters", [16, 32, 48], default=32)
    dilations = tuple(2**i for i in range(n_dilations))
    kernel_size = hp.Choice("kernel_size", [3, 5], default=3)
    space = dict(filters=filters, dilations=dilations, kernel_size=kernel_size)
    return {**space, **blocks.head_space(hp, HEAD)}


@classifier("ldcnn", search_space, head=HEAD)
def build(ecg, *, filters=32, stem_kernel_size=7, dilations=(1, 2, 4, 8, 16), kernel_size=3):
    """LDCNN: a narrow stack of dilated residual convolutions (WaveNet/TCN pattern).

    Design:

    - stem ``Conv1D(filters, stem_kernel_size, stride 2) -> BN -> ReLU -> MaxPool(2)``
      (360 Hz -> 90 Hz);
    - one residual block per dilation: ``Conv1D(filters, kernel_size, dilation d) -> BN ->
      ReLU`` added to its input. Doubling dilations grow the receptive field exponentially at
      constant width and cost: with the defaults about 250 samples (0.7 s at 360 Hz, a whole
      beat), from about 16 k parameters on (720, 1);
    - head: global average pooling, dropout, dense output.

    Args:
        input_shape: ``(n_samples, n_leads)``, e.g. ``(720, 1)`` (2 s at 360 Hz).
        filters: width of every conv layer.
        stem_kernel_size: kernel length of the stem conv, in samples.
        dilations: dilation rate of each residual block.
        kernel_size: kernel length of the dilated convs.
    """
    filters = check.positive_int("filters", filters)
    stem_kernel_size = check.positive_int("stem_kernel_size", stem_kernel_size)
    dilations = check.positive_ints("dilations", dilations)
    kernel_size = check.positive_int("kernel_size", kernel_size)

    x = blocks.conv_bn_act(ecg, filters, stem_kernel_size, strides=2, prefix="stem")
    x = blocks.max_pool(x, 2, prefix="stem")
    for i, d in enumerate(dilations, start=1):
        h = blocks.conv_bn_act(x, filters, kernel_size, dilation_rate=d, prefix=f"dilated{i}")
        x = layers.Add(name=f"dilated{i}_add")([x, h])
    return layers.GlobalAveragePooling1D(name="gap")(x)
