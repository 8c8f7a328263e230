"""Vector-quantized patch Transformer denoiser.

Architecture:
    The patch Transformer of :mod:`models.denoisers.transformer` with one change: each
    patch is projected to ``embed_dim`` (linear) and vector-quantized against a learned
    codebook of ``num_codes`` entries (``models.layers.VectorQuantizer`` named ``"vq"``:
    straight-through gradient, codebook + ``beta`` * commitment loss added to
    ``model.losses``, dead-code restarts) before the projection to ``d_model``.

Codebook usage:
    ``fit``/``evaluate`` logs carry ``vq_perplexity`` and ``vq_codes_used`` (per-epoch means;
    ``val_`` versions on validation data). A custom loop reads the last training batch's
    values from ``model.get_layer("vq").perplexity`` and ``.codes_used`` (non-trainable
    variables), and the per-code EMA of assignment counts from ``.code_counts``. A
    perplexity near 1 or a falling ``codes_used`` means codebook collapse.

Shapes:
    As the patch Transformer's; codes are ``(batch, samples / patch_len, embed_dim)``.
"""

from __future__ import annotations

import keras

from models import checks
from models.checks import DENOISER as check
from models.denoisers.common import (
    PatchEncoder,
    check_output_mode,
    output_mode_space,
    patch_encoder_space,
    patch_transformer,
)
from models.layers import VectorQuantizer
from models.registry import register


def search_space(hp):
    """Builder kwargs sampled from ``hp``; an empty ``HyperParameters()`` gives the defaults."""
    return dict(
        **patch_encoder_space(hp),
        embed_dim=hp.Choice("embed_dim", [32, 64, 128, 256], default=128),
        num_codes=hp.Choice("num_codes", [256, 512, 1024, 2048], default=1024),
        beta=hp.Float("beta", 0.1, 1.0, default=0.25),
        **output_mode_space(hp),
    )


@register("vq_transformer", kind="denoiser", search_space=search_space, input_kind="window")
def build(input_shape, *, patch_len=10, embed_dim=128, num_codes=1024, beta=0.25,
          restart_dead_codes=True, d_model=300, num_heads=5, num_layers=5, ff_mult=4,
          dropout=0.1, output_mode="direct"):
    """Builds the VQ patch Transformer denoiser.

    Args:
        input_shape, patch_len, d_model, num_heads, num_layers, ff_mult, dropout,
            output_mode: as for :func:`models.denoisers.transformer.build`.
        embed_dim: Patch-embedding (code) width.
        num_codes: Codebook size.
        beta: Commitment-loss weight (>= 0).
        restart_dead_codes: Whether training re-seeds unused codes from batch encodings
            (the first training batch then initializes the codebook from data).

    Returns:
        ``keras.Model`` named ``"vq_transformer"`` (shapes as the transformer's); its ``"vq"``
        layer is the quantizer.
    """
    embed_dim = check.positive_int("embed_dim", embed_dim)
    num_codes = check.positive_int("num_codes", num_codes)
    beta = checks.non_negative_float("beta", beta)
    restart_dead_codes = check.boolean("restart_dead_codes", restart_dead_codes)
    check_output_mode(output_mode)

    def embed_and_quantize(patches):
        codes = keras.layers.Dense(embed_dim, name="patch_embedding")(patches)
        quantizer = VectorQuantizer(
            num_codes, beta=beta, restart_dead_codes=restart_dead_codes, name="vq"
        )
        return quantizer(codes)

    encoder = PatchEncoder(patch_len, d_model, num_heads, num_layers, ff_mult, dropout)
    return patch_transformer(
        "vq_transformer", input_shape, encoder, embed=embed_and_quantize, output_mode=output_mode
    )
