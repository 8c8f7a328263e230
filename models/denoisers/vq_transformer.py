"""Vector-quantized patch Transformer denoiser.

Architecture:
    The window is cut into ``samples / patch_len`` patches of ``patch_len`` samples of all
    leads, projected to ``embed_dim`` (patch embedding, linear) and vector-quantized against
    a learned codebook of ``num_codes`` entries (``models.layers.VectorQuantizer`` named
    ``"vq"``: straight-through gradient, codebook + ``beta`` * commitment loss added to
    ``model.losses``, dead-code restarts). The codes are projected to ``d_model``, given a
    learned positional embedding and passed through ``num_layers`` pre-norm
    ``TransformerBlock`` layers (``num_heads`` heads, feed-forward width
    ``ff_mult * d_model``, GELU) and a final LayerNorm; a linear patch decoder (Dense to
    ``patch_len * leads``) is reshaped back to ``(samples, leads)``.

Codebook usage:
    ``fit``/``evaluate`` logs carry ``vq_perplexity`` and ``vq_codes_used`` (per-epoch means;
    ``val_`` versions on validation data). A custom loop reads the last training batch's
    values from ``model.get_layer("vq").perplexity`` and ``.codes_used`` (non-trainable
    variables), and the per-code EMA of assignment counts from ``.code_counts``. A
    perplexity near 1 or a falling ``codes_used`` means codebook collapse.

Shapes:
    Input ``(batch, samples, leads)``, normalized amplitudes at the window rate (360 Hz for
    MIT-BIH), ``samples`` divisible by ``patch_len``. Codes ``(batch, samples / patch_len,
    embed_dim)``. Output: same shape and units as the input.
"""

from __future__ import annotations

import keras

from models.denoisers._common import (
    check_bool,
    check_positive_int,
    check_transformer_args,
    transformer_encoder,
)
from models.layers import VectorQuantizer
from models.registry import register


def search_space(hp):
    """Builder kwargs sampled from ``hp``; an empty ``HyperParameters()`` gives the defaults.

    Every ``d_model`` choice is divisible by every ``num_heads`` choice.
    """
    return dict(
        patch_len=hp.Choice("patch_len", [5, 10, 20], default=10),
        embed_dim=hp.Choice("embed_dim", [32, 64, 128, 256], default=128),
        num_codes=hp.Choice("num_codes", [256, 512, 1024, 2048], default=1024),
        beta=hp.Float("beta", 0.1, 1.0, default=0.25),
        d_model=hp.Choice("d_model", [60, 120, 300, 600], default=300),
        num_heads=hp.Choice("num_heads", [2, 5, 10], default=5),
        num_layers=hp.Int("num_layers", 1, 8, default=5),
        ff_mult=hp.Choice("ff_mult", [2, 4], default=4),
        dropout=hp.Float("dropout", 0.0, 0.3, step=0.1, default=0.1),
    )


@register("vq_transformer", kind="denoiser", search_space=search_space, input_kind="window")
def build(
    input_shape,
    *,
    patch_len=10,
    embed_dim=128,
    num_codes=1024,
    beta=0.25,
    restart_dead_codes=True,
    d_model=300,
    num_heads=5,
    num_layers=5,
    ff_mult=4,
    dropout=0.1,
):
    """Builds the VQ patch Transformer denoiser.

    Args:
        input_shape: ``(samples, leads)``; ``samples`` divisible by ``patch_len``.
        patch_len: Samples per patch (token).
        embed_dim: Patch-embedding (code) width.
        num_codes: Codebook size.
        beta: Commitment-loss weight (>= 0).
        restart_dead_codes: Whether training re-seeds unused codes from batch encodings
            (the first training batch then initializes the codebook from data).
        d_model: Transformer token width.
        num_heads: Attention heads; must divide ``d_model``.
        num_layers: Number of Transformer blocks.
        ff_mult: Feed-forward width as a multiple of ``d_model``.
        dropout: Dropout rate in the blocks and after the embedding, in ``[0, 1)``.

    Returns:
        ``keras.Model`` named ``"vq_transformer"`` mapping ``(batch, samples, leads)`` to
        the same shape; its ``"vq"`` layer is the quantizer.
    """
    samples, leads = check_transformer_args(
        input_shape,
        patch_len=patch_len,
        d_model=d_model,
        num_heads=num_heads,
        num_layers=num_layers,
        ff_mult=ff_mult,
        dropout=dropout,
    )
    check_positive_int("embed_dim", embed_dim)
    check_positive_int("num_codes", num_codes)
    if isinstance(beta, bool) or not isinstance(beta, (int, float)) or beta < 0:
        raise ValueError(f"`beta` must be a float >= 0. Received: beta={beta!r}")
    check_bool("restart_dead_codes", restart_dead_codes)

    inputs = keras.Input((samples, leads), name="ecg")
    patches = keras.layers.Reshape((samples // patch_len, patch_len * leads), name="patchify")(
        inputs
    )
    codes = keras.layers.Dense(embed_dim, name="patch_embedding")(patches)
    codes = VectorQuantizer(num_codes, beta=beta, restart_dead_codes=restart_dead_codes, name="vq")(
        codes
    )
    x = transformer_encoder(
        codes,
        d_model=d_model,
        num_heads=num_heads,
        num_layers=num_layers,
        ff_dim=ff_mult * d_model,
        dropout=dropout,
    )
    x = keras.layers.Dense(patch_len * leads, name="patch_decoder")(x)
    outputs = keras.layers.Reshape((samples, leads), name="output")(x)
    return keras.Model(inputs, outputs, name="vq_transformer")
