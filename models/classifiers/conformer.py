"""``conformer``: per-beat scalogram CNN + Conformer encoder over a sequence of beats.

Presets (ablations, registered here): ``conformer_no_attention`` (no self-attention module),
``conformer_no_conv`` (no convolution module), ``conformer_cnn_only`` (no Conformer blocks:
the CNN front end and the centre-beat head only).
"""

from __future__ import annotations

import dataclasses

from keras import layers

from models import checks
from models.checks import CLASSIFIER as check
from models.classifiers import blocks
from models.classifiers.builder import classifier
from models.layers import PositionEmbedding
from models.registry import register_preset

NAME = "conformer"
POOLINGS = ("center", "mean")


@dataclasses.dataclass(frozen=True)
class ConformerBlock(blocks.Arguments):
    """The arguments of every Conformer block (:func:`_conformer_block`), checked when made.

    Attributes:
        d_model: Width of the beat embedding and of the blocks; a multiple of ``num_heads``.
        num_heads: Attention heads (each ``d_model // num_heads`` wide).
        ff_expansion: Hidden width of the feed-forward modules, in multiples of ``d_model``.
        conv_kernel_size: Kernel of the depthwise conv over beats.
        dropout: Dropout inside the blocks.
        use_attention: Whether the self-attention module is there (an ablation switch).
        use_conv_module: Whether the convolution module is there (an ablation switch).
    """

    d_model: int = 64
    num_heads: int = 4
    ff_expansion: int = 4
    conv_kernel_size: int = 3
    dropout: float = 0.1
    use_attention: bool = True
    use_conv_module: bool = True

    def __post_init__(self) -> None:
        d_model, num_heads = checks.attention_dims(self.d_model, self.num_heads)
        object.__setattr__(self, "d_model", d_model)
        object.__setattr__(self, "num_heads", num_heads)
        checks.check_fields(
            self,
            ff_expansion=check.positive_int,
            conv_kernel_size=check.positive_int,
            dropout=check.rate,
            use_attention=check.boolean,
            use_conv_module=check.boolean,
        )


BLOCK = ConformerBlock()
HEAD = blocks.Head(dense_units=64, dropout=0.3, dropout_name="head_dropout")


def search_space(hp):
    """Builder kwargs sampled from ``hp``; ``HyperParameters()`` gives the builder defaults.

    The ablation switches (``use_attention``, ``use_conv_module``, ``use_conformer``) are not
    searched: they are fixed by the presets.
    """
    filters = blocks.widths_space(hp, (16, 32, 64), bases=(8, 16, 32))
    d_model = hp.Choice("d_model", [32, 64, 128], default=BLOCK.d_model)
    n_blocks = hp.Int("n_blocks", 1, 4, default=2)
    num_heads = hp.Choice("num_heads", [2, 4], default=BLOCK.num_heads)
    kernel = hp.Choice("conv_kernel_size", [3, 5], default=BLOCK.conv_kernel_size)
    dropout = hp.Float("dropout", 0.0, 0.3, step=0.1, default=BLOCK.dropout)
    space = dict(filters=filters, d_model=d_model, n_blocks=n_blocks, num_heads=num_heads)
    return {**space, "conv_kernel_size": kernel, "dropout": dropout, **blocks.head_space(hp, HEAD)}


def _feed_forward(x, d_model: int, expansion: int, dropout: float, *, prefix: str):
    """Half-step feed-forward module: ``x + 0.5 * FFN(LN(x))`` (Swish, Macaron style)."""
    h = layers.LayerNormalization(epsilon=1e-6, name=f"{prefix}_ln")(x)
    h = layers.Dense(expansion * d_model, activation="swish", name=f"{prefix}_expand")(h)
    h = layers.Dropout(dropout, name=f"{prefix}_dropout1")(h)
    h = layers.Dense(d_model, name=f"{prefix}_project")(h)
    h = layers.Dropout(dropout, name=f"{prefix}_dropout2")(h)
    h = layers.Rescaling(0.5, name=f"{prefix}_half_step")(h)
    return layers.Add(name=f"{prefix}_add")([x, h])


def _conv_module(x, d_model: int, kernel_size: int, dropout: float, *, prefix: str):
    """Convolution module: ``LN -> pointwise + GLU -> depthwise conv -> BN -> Swish ->
    pointwise -> Dropout``, with residual.

    The GLU is written as two pointwise (Dense) projections, one sigmoid-gated, multiplied:
    identical to a ``2 * d_model`` pointwise conv split in halves, with no custom layer.
    """
    h = layers.LayerNormalization(epsilon=1e-6, name=f"{prefix}_ln")(x)
    value = layers.Dense(d_model, name=f"{prefix}_glu_value")(h)
    gate = layers.Dense(d_model, activation="sigmoid", name=f"{prefix}_glu_gate")(h)
    h = layers.Multiply(name=f"{prefix}_glu")([value, gate])
    h = layers.DepthwiseConv1D(
        kernel_size, padding="same", use_bias=False, name=f"{prefix}_depthwise"
    )(h)
    h = layers.BatchNormalization(name=f"{prefix}_bn")(h)
    h = layers.Activation("swish", name=f"{prefix}_swish")(h)
    h = layers.Dense(d_model, name=f"{prefix}_pointwise")(h)
    h = layers.Dropout(dropout, name=f"{prefix}_dropout")(h)
    return layers.Add(name=f"{prefix}_add")([x, h])


def _conformer_block(x, block: ConformerBlock, *, prefix: str):
    """Conformer block (Gulati et al. 2020): FFN/2 -> MHSA -> Conv -> FFN/2 -> LayerNorm."""
    d_model, dropout = block.d_model, block.dropout
    x = _feed_forward(x, d_model, block.ff_expansion, dropout, prefix=f"{prefix}_ffn1")
    if block.use_attention:
        x = blocks.self_attention(x, d_model, block.num_heads, dropout, prefix=f"{prefix}_mhsa")
    if block.use_conv_module:
        x = _conv_module(x, d_model, block.conv_kernel_size, dropout, prefix=f"{prefix}_conv")
    x = _feed_forward(x, d_model, block.ff_expansion, dropout, prefix=f"{prefix}_ffn2")
    return layers.LayerNormalization(epsilon=1e-6, name=f"{prefix}_ln")(x)


def _beat_encoder(x, filters, d_model: int):
    """Per-beat CNN (``TimeDistributed``, shared by all beats): ``[Conv2D 3x3 -> BN -> ReLU
    -> MaxPool 2x2] x len(filters)`` over each beat's (scale x time) scalogram, global
    average pooling and a dense projection: ``(batch, n_beats, d_model)``."""
    for i, f in enumerate(filters, start=1):
        x = layers.TimeDistributed(
            layers.Conv2D(f, 3, padding="same", use_bias=False, name=f"cnn{i}_conv2d"),
            name=f"cnn{i}_conv",
        )(x)
        x = layers.BatchNormalization(name=f"cnn{i}_bn")(x)
        x = layers.Activation("relu", name=f"cnn{i}_relu")(x)
        x = layers.TimeDistributed(
            layers.MaxPooling2D(2, padding="same", name=f"cnn{i}_maxpool2d"), name=f"cnn{i}_pool"
        )(x)
    x = layers.TimeDistributed(layers.GlobalAveragePooling2D(name="gap2d"), name="beat_gap")(x)
    return layers.Dense(d_model, name="beat_embedding")(x)


def _conformer_encoder(x, n_blocks: int, block: ConformerBlock):
    """Learned beat positions, then ``n_blocks`` Conformer blocks over the beat sequence."""
    x = PositionEmbedding(name="beat_position_embedding")(x)
    for b in range(1, n_blocks + 1):
        x = _conformer_block(x, block, prefix=f"conformer{b}")
    return x


def _readout(x, pooling: str, n_beats: int):
    """The centre beat's embedding (``Cropping1D``, so the model reloads in safe mode) or
    the mean over beats: ``(batch, n_beats, d_model) -> (batch, d_model)``."""
    if pooling == "center":
        c = n_beats // 2
        x = layers.Cropping1D((c, n_beats - c - 1), name="center_beat_crop")(x)
        return layers.Flatten(name="center_beat")(x)
    return layers.GlobalAveragePooling1D(name="beat_mean")(x)


@classifier(NAME, search_space, head=HEAD, input_kind="sequence", block=BLOCK)
def build(
    scalograms, block, *, filters=(16, 32, 64), n_blocks=2, pooling="center", use_conformer=True
):
    """Scalogram-sequence Conformer: classify the centre beat of a short run of beats.

    Design: a beat encoder shared by all beats (:func:`_beat_encoder`) turns each beat's
    (scale x time) scalogram into a ``d_model`` embedding; a learned position embedding over
    the ``n_beats`` positions tells the encoder which beat is the centre one; ``n_blocks``
    Conformer blocks (:func:`_conformer_block`) run over the beats; the readout
    (:func:`_readout`) keeps the centre beat or the mean over beats; the head is
    Dense(``dense_units``, ReLU) -> Dropout -> dense output.

    The ``use_*`` switches are the presets' ablations (``use_conformer=False``: beat encoder
    -> readout -> head). About 0.23 M parameters on (3, 32, 187, 1).

    Args:
        input_shape: ``(n_beats, n_scales, n_time, 1)``, e.g. ``(3, 32, 187, 1)``: 3 beats,
            32 wavelet scales, 187 samples per beat.
        filters: filters of each Conv2D block of the beat encoder.
        d_model: width of the beat embedding and of the Conformer; a multiple of ``num_heads``.
        n_blocks: number of Conformer blocks.
        num_heads: attention heads (each ``d_model // num_heads`` wide).
        ff_expansion: hidden width of the feed-forward modules, in multiples of ``d_model``.
        conv_kernel_size: kernel of the depthwise conv over beats.
        dropout: dropout inside the Conformer blocks.
        pooling: ``center`` (the centre beat's embedding) or ``mean`` (mean over beats).
        dense_units: units of the dense layer of the head.
        use_attention, use_conv_module, use_conformer: include the self-attention module, the
            convolution module, the encoder (position embedding and Conformer blocks).
    """
    filters = check.positive_ints("filters", filters)
    n_blocks = check.positive_int("n_blocks", n_blocks)
    pooling = checks.one_of("pooling", pooling, POOLINGS)
    use_conformer = check.boolean("use_conformer", use_conformer)

    x = _beat_encoder(scalograms, filters, block.d_model)
    if use_conformer:
        x = _conformer_encoder(x, n_blocks, block)
    return _readout(x, pooling, n_beats=scalograms.shape[1])


register_preset(
    "conformer_no_attention",
    base=NAME,
    kind="classifier",
    description="Conformer without the multi-head self-attention module.",
    use_attention=False,
)
register_preset(
    "conformer_no_conv",
    base=NAME,
    kind="classifier",
    description="Conformer without the convolution module.",
    use_conv_module=False,
)
register_preset(
    "conformer_cnn_only",
    base=NAME,
    kind="classifier",
    description="Beat CNN front end and centre-beat head only (no Conformer blocks).",
    use_conformer=False,
)
