"""``se_ecgnet``: 1-D conv blocks with squeeze-and-excitation, for MIT-BIH beat segments."""

from __future__ import annotations

from keras import layers

from models.checks import CLASSIFIER as check
from models.classifiers import blocks
from models.classifiers.builder import classifier

CONV = blocks.ConvStack(filters=(32, 64, 128), kernel_size=5, pool_size=2)
HEAD = blocks.Head(dropout=0.3)


def search_space(hp):
    """Builder kwargs sampled from ``hp``; ``HyperParameters()`` gives the builder defaults."""
    space = blocks.conv_space(hp, CONV, bases=(16, 32), kernel_sizes=(3, 5, 7))
    se_ratio = hp.Choice("se_ratio", [4, 8, 16], default=8)
    return {**space, "se_ratio": se_ratio, **blocks.head_space(hp, HEAD)}


def _squeeze_excite(x, filters: int, ratio: int, *, prefix: str):
    """Channel attention (Hu et al. 2018): reweights channels by a gate in (0, 1) computed
    from their time-averaged activations."""
    s = layers.GlobalAveragePooling1D(keepdims=True, name=f"{prefix}_se_squeeze")(x)
    s = layers.Dense(max(1, filters // ratio), activation="relu", name=f"{prefix}_se_reduce")(s)
    s = layers.Dense(filters, activation="sigmoid", name=f"{prefix}_se_expand")(s)
    return layers.Multiply(name=f"{prefix}_se_scale")([x, s])


@classifier("se_ecgnet", search_space, head=HEAD, conv=CONV)
def build(ecg, conv, *, se_ratio=8):
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
        filters: filters of each block.
        kernel_size: conv kernel length in samples.
        se_ratio: channel reduction of the SE bottleneck.
        pool_size: max-pool size after each block (``padding="same"``).
    """
    se_ratio = check.positive_int("se_ratio", se_ratio)
    x = conv(
        ecg,
        convs_per_block=2,
        block_end=lambda h, f, prefix: _squeeze_excite(h, f, se_ratio, prefix=prefix),
    )
    return layers.GlobalAveragePooling1D(name="gap")(x)
