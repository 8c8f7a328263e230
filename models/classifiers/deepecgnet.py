"""``deepecgnet``: conv front end + transformer encoder, for MIT-BIH beat segments."""

from __future__ import annotations

import keras
from keras import layers

from models import checks
from models.checks import CLASSIFIER as check
from models.classifiers import blocks
from models.layers import PositionEmbedding
from models.registry import register

NAME = "deepecgnet"


def search_space(hp):
    """Builder kwargs sampled from ``hp``; ``HyperParameters()`` gives the builder defaults."""
    d_model = hp.Choice("d_model", [32, 64, 96], default=64)
    return dict(
        d_model=d_model,
        n_blocks=hp.Int("n_blocks", 1, 3, default=1),
        num_heads=hp.Choice("num_heads", [2, 4], default=4),
        ff_dim=2 * d_model,
        dropout=hp.Float("dropout", 0.0, 0.3, step=0.1, default=0.1),
        **blocks.head_space(hp, dropout=0.3, dropout_name="head_dropout"),
    )


def _transformer_block(x, d_model: int, num_heads: int, ff_dim: int, dropout: float, *, prefix):
    """Pre-norm encoder block: ``x + MHA(LN(x))``, then ``x + FFN(LN(x))``."""
    x = blocks.self_attention(
        x, d_model, num_heads, dropout, prefix=f"{prefix}_attn", mha_name=f"{prefix}_mha"
    )
    h = layers.LayerNormalization(epsilon=1e-6, name=f"{prefix}_ffn_ln")(x)
    h = layers.Dense(ff_dim, activation="gelu", name=f"{prefix}_ffn_expand")(h)
    h = layers.Dense(d_model, name=f"{prefix}_ffn_project")(h)
    h = layers.Dropout(dropout, name=f"{prefix}_ffn_dropout")(h)
    return layers.Add(name=f"{prefix}_ffn_add")([x, h])


@register(NAME, kind="classifier", search_space=search_space, input_kind="any1d")
def build(
    input_shape,
    n_outputs,
    *,
    filters=(16, 32, 64),
    kernel_size=7,
    pool_size=2,
    d_model=64,
    n_blocks=1,
    num_heads=4,
    ff_dim=128,
    dropout=0.1,
    head_dropout=0.3,
    n_rr_features=0,
    output_activation="softmax",
) -> keras.Model:
    """DeepECGNet-style hybrid: a conv tokenizer followed by transformer encoder blocks.

    Design:

    - conv front end ``[Conv1D -> BN -> ReLU -> MaxPool] x len(filters)`` turns the signal
      into tokens of about ``pool_size ** len(filters)`` samples each (8: 720 samples at
      360 Hz -> 90 tokens of 22 ms), so attention stays cheap (90 x 90);
    - a dense projection to ``d_model`` and a learned position embedding (fixed length,
      known from ``input_shape``);
    - ``n_blocks`` pre-norm transformer blocks (multi-head self-attention and a GELU
      feed-forward of ``ff_dim``, each with residual and layer norm), a final layer norm;
    - head: global average pooling over tokens, dropout, dense output.

    The convs see the waveform's shape, the attention relates distant parts of the segment
    (a beat and its neighbour, P wave and QRS). About 62 k parameters on (720, 1).

    Args:
        input_shape: ``(n_samples, n_leads)``, e.g. ``(720, 1)`` (2 s at 360 Hz).
        filters: filters of each conv block of the front end.
        kernel_size: conv kernel length in samples.
        pool_size: max-pool size after each conv block (``padding="same"``).
        d_model: token width inside the transformer; a multiple of ``num_heads``.
        n_blocks: number of transformer blocks.
        num_heads: attention heads (each of width ``d_model // num_heads``).
        ff_dim: hidden width of the feed-forward layers.
        dropout: dropout inside the transformer blocks (attention weights and outputs).
        head_dropout: dropout rate before the output layer.
        n_outputs, n_rr_features, output_activation: as in :func:`blocks.classifier_io`.

    Returns:
        ``keras.Model`` named ``deepecgnet``: ``(batch, *input_shape)`` -> ``(batch, n_outputs)``.
    """
    filters, kernel_size, pool_size = blocks.conv_stack_args(filters, kernel_size, pool_size)
    d_model, num_heads = checks.attention_dims(d_model, num_heads)
    n_blocks = check.positive_int("n_blocks", n_blocks)
    ff_dim = check.positive_int("ff_dim", ff_dim)
    dropout = check.rate("dropout", dropout)
    head_dropout = check.rate("head_dropout", head_dropout)
    io = blocks.classifier_io(
        NAME, input_shape, n_outputs, output_activation, n_rr_features, dropout=head_dropout
    )

    x = blocks.conv_stack(io.ecg, filters, kernel_size, pool_size=pool_size, prefix="conv")
    x = layers.Dense(d_model, name="token_projection")(x)
    x = PositionEmbedding(name="position_embedding")(x)
    for b in range(1, n_blocks + 1):
        x = _transformer_block(x, d_model, num_heads, ff_dim, dropout, prefix=f"transformer{b}")
    x = layers.LayerNormalization(epsilon=1e-6, name="final_ln")(x)
    x = layers.GlobalAveragePooling1D(name="gap")(x)
    return io.model(x)
