"""``liteecgnet``: a small depthwise-separable 1-D CNN for MIT-BIH beat segments."""

from __future__ import annotations

from keras import layers

from models.checks import CLASSIFIER as check
from models.classifiers import blocks
from models.classifiers.builder import classifier

CONV = blocks.ConvStack(filters=(32, 64, 96, 128), kernel_size=7, pool_size=2)
HEAD = blocks.Head(dropout=0.2)


def search_space(hp):
    """Builder kwargs sampled from ``hp``; ``HyperParameters()`` gives the builder defaults."""
    filters = blocks.widths_space(hp, CONV.filters, bases=(16, 32, 48))
    stem_filters = hp.Choice("stem_filters", [8, 16, 32], default=16)
    kernel_size = hp.Choice("kernel_size", [5, 7, 9], default=CONV.kernel_size)
    space = dict(stem_filters=stem_filters, filters=filters, kernel_size=kernel_size)
    return {**space, **blocks.head_space(hp, HEAD)}


@classifier("liteecgnet", search_space, head=HEAD, conv=CONV)
def build(ecg, conv, *, stem_filters=16, stem_stride=2):
    """LiteECGNet-style lightweight CNN built from depthwise-separable convolutions.

    Design (a reconstruction in the spirit of the published light ECG nets, not a copy of
    one paper's weights or exact widths):

    - stem: ``Conv1D(stem_filters, kernel_size, stride=stem_stride) -> BN -> ReLU`` halves the
      rate (360 Hz -> 180 Hz);
    - ``len(filters)`` blocks of ``SeparableConv1D(f, kernel_size) -> BN -> ReLU -> MaxPool``:
      a depthwise filter per channel plus a 1x1 mixing conv costs ``k*c_in + c_in*c_out``
      weights instead of ``k*c_in*c_out``;
    - global average pooling, dropout, dense output (no hidden dense layer, to stay small).

    With the defaults the receptive field is about 217 samples (0.6 s at 360 Hz, one beat and its
    neighbourhood) and the model has about 25 k parameters on (720, 1).

    Args:
        input_shape: ``(n_samples, n_leads)``, e.g. ``(720, 1)`` (2 s at 360 Hz).
        stem_filters: filters of the stem convolution.
        stem_stride: stride of the stem convolution (1 keeps the full rate).
        filters: filters of each separable conv block.
        kernel_size: kernel length in samples of the stem and of the separable convs.
        pool_size: max-pool size after each block (``padding="same"``).
    """
    stem_filters = check.positive_int("stem_filters", stem_filters)
    stem_stride = check.positive_int("stem_stride", stem_stride)
    x = blocks.conv_bn_act(ecg, stem_filters, conv.kernel_size, strides=stem_stride, prefix="stem")
    x = conv(x, separable=True)
    return layers.GlobalAveragePooling1D(name="gap")(x)
