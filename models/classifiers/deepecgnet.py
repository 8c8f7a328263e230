"""``deepecgnet``: conv front end + transformer encoder, for MIT-BIH beat segments."""

from __future__ import annotations

from keras import layers

from models import checks
from models.checks import CLASSIFIER as check
from models.classifiers import blocks
from models.classifiers.builder import classifier
from models.layers import PositionEmbedding

CONV = blocks.ConvStack(filters=(16, 32, 64), kernel_size=7, pool_size=2)
HEAD = blocks.Head(dropout=0.3, dropout_name="head_dropout")


def search_space(hp):
    """Builder kwargs sampled from ``hp``; ``HyperParameters()`` gives the builder defaults.
    The conv front end is not searched; the feed-forward width is ``2 * d_model``."""
    d_model = hp.Choice("d_model", [32, 64, 96], default=64)
    n_blocks = hp.Int("n_blocks", 1, 3, default=1)
    num_heads = hp.Choice("num_heads", [2, 4], default=4)
    dropout = hp.Float("dropout", 0.0, 0.3, step=0.1, default=0.1)
    space = dict(d_model=d_model, n_blocks=n_blocks, num_heads=num_heads, ff_dim=2 * d_model)
    return {**space, "dropout": dropout, **blocks.head_space(hp, HEAD)}


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


@classifier("deepecgnet", search_space, head=HEAD, conv=CONV)
def build(ecg, conv, *, d_model=64, n_blocks=1, num_heads=4, ff_dim=128, dropout=0.1):
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
    """
    d_model, num_heads = checks.attention_dims(d_model, num_heads)
    n_blocks = check.positive_int("n_blocks", n_blocks)
    ff_dim = check.positive_int("ff_dim", ff_dim)
    dropout = check.rate("dropout", dropout)

    x = conv(ecg, prefix="conv")
    x = layers.Dense(d_model, name="token_projection")(x)
    x = PositionEmbedding(name="position_embedding")(x)
    for b in range(1, n_blocks + 1):
        x = _transformer_block(x, d_model, num_heads, ff_dim, dropout, prefix=f"transformer{b}")
    x = layers.LayerNormalization(epsilon=1e-6, name="final_ln")(x)
    return layers.GlobalAveragePooling1D(name="gap")(x)
