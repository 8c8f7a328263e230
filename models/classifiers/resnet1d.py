"""``resnet1d``: a 1-D ResNet (basic residual blocks), after ``resnet1d_wang``."""

from __future__ import annotations

from keras import layers

from models.checks import CLASSIFIER as check
from models.classifiers import blocks
from models.classifiers.builder import classifier

HEAD = blocks.Head(dropout=0.3)


def search_space(hp):
    """Builder kwargs sampled from ``hp``; ``HyperParameters()`` gives the builder defaults."""
    filters = blocks.widths_space(hp, (64, 128, 256), bases=(32, 64))
    blocks_per_stage = hp.Int("blocks_per_stage", 1, 2, default=1)
    return {"filters": filters, "blocks_per_stage": blocks_per_stage, **blocks.head_space(hp, HEAD)}


def _basic_block(x, filters: int, kernel_sizes: tuple[int, int], strides: int, *, prefix: str):
    """``Conv(k0, stride) -> BN -> ReLU -> Conv(k1) -> BN`` plus shortcut, then ReLU.

    The shortcut is the identity, or a strided 1x1 conv + BN when the width or the rate
    changes.
    """
    shortcut = x
    if strides != 1 or x.shape[-1] != filters:
        shortcut = layers.Conv1D(
            filters, 1, strides=strides, padding="same", use_bias=False, name=f"{prefix}_proj"
        )(x)
        shortcut = layers.BatchNormalization(name=f"{prefix}_proj_bn")(shortcut)
    y = blocks.conv_bn_act(x, filters, kernel_sizes[0], strides=strides, prefix=f"{prefix}_a")
    y = blocks.conv_bn_act(y, filters, kernel_sizes[1], activation=None, prefix=f"{prefix}_b")
    y = layers.Add(name=f"{prefix}_add")([shortcut, y])
    return layers.Activation("relu", name=f"{prefix}_out")(y)


@classifier("resnet1d", search_space, head=HEAD)
def build(
    ecg, *, filters=(64, 128, 256), blocks_per_stage=1, stem_kernel_size=7, kernel_sizes=(5, 3)
):
    """1-D ResNet after ``resnet1d_wang`` (Wang et al. 2017; PTB-XL benchmark, Strodthoff 2021).

    Design:

    - stem: ``Conv1D(filters[0], stem_kernel_size) -> BN -> ReLU`` at the full rate;
    - one stage per entry of ``filters``, each ``blocks_per_stage`` basic residual blocks
      (two convs with kernels ``kernel_sizes``, BN, identity or 1x1-projection shortcut);
      every stage after the first halves the time axis with a stride-2 first conv;
    - head: global average and global max pooling concatenated (the benchmark's "concat
      pooling"), dropout, dense output.

    About 0.53 M parameters on (720, 1), the largest of the MIT-BIH set.

    Args:
        input_shape: ``(n_samples, n_leads)``, e.g. ``(720, 1)`` or ``(1000, 12)``.
        filters: width of each stage.
        blocks_per_stage: residual blocks per stage.
        stem_kernel_size: kernel length of the stem conv, in samples.
        kernel_sizes: kernel lengths of the two convs of a residual block.
    """
    filters = check.positive_ints("filters", filters)
    blocks_per_stage = check.positive_int("blocks_per_stage", blocks_per_stage)
    stem_kernel_size = check.positive_int("stem_kernel_size", stem_kernel_size)
    kernel_sizes = check.positive_ints("kernel_sizes", kernel_sizes)
    if len(kernel_sizes) != 2:
        raise ValueError(
            "`kernel_sizes` must hold 2 kernel lengths (one per conv of a block). "
            f"Received: kernel_sizes={kernel_sizes!r}"
        )

    x = blocks.conv_bn_act(ecg, filters[0], stem_kernel_size, prefix="stem")
    for s, f in enumerate(filters, start=1):
        for b in range(1, blocks_per_stage + 1):
            strides = 2 if (s > 1 and b == 1) else 1
            x = _basic_block(x, f, kernel_sizes, strides, prefix=f"stage{s}_block{b}")
    return layers.Concatenate(name="concat_pool")(
        [layers.GlobalAveragePooling1D(name="gap")(x), layers.GlobalMaxPooling1D(name="gmp")(x)]
    )
