"""Patch Transformer denoiser (no quantization).

Architecture:
    The window is cut into ``samples / patch_len`` non-overlapping patches of ``patch_len``
    samples of all leads (``patch_len * leads`` values each), projected to ``d_model``
    (patch embedding), plus a learned positional embedding, then ``num_layers`` pre-norm
    ``TransformerBlock`` layers (``num_heads`` heads, feed-forward width
    ``ff_mult * d_model``, GELU) and a final LayerNorm. A linear patch decoder (Dense to
    ``patch_len * leads``) is reshaped back to ``(samples, leads)``: the denoised window, or
    with ``output_mode`` ``residual`` or ``gated`` the predicted noise, subtracted from the
    input (:func:`models.denoisers.common.denoiser_output`).

Shapes:
    Input ``(batch, samples, leads)``, normalized amplitudes at the window rate (360 Hz for
    MIT-BIH), ``samples`` divisible by ``patch_len``. Tokens ``(batch, samples / patch_len,
    d_model)``. Output: same shape and units as the input.
"""

from __future__ import annotations

from models.denoisers.common import (
    PatchEncoder,
    output_mode_space,
    patch_encoder_space,
    patch_transformer,
)
from models.registry import register


def search_space(hp):
    """Builder kwargs sampled from ``hp``; an empty ``HyperParameters()`` gives the defaults."""
    return dict(**patch_encoder_space(hp), **output_mode_space(hp))


@register("transformer", kind="denoiser", search_space=search_space, input_kind="window")
def build(
    input_shape,
    *,
    patch_len=10,
    d_model=300,
    num_heads=5,
    num_layers=5,
    ff_mult=4,
    dropout=0.1,
    output_mode="direct",
):
    """Builds the patch Transformer denoiser.

    Args:
        input_shape: ``(samples, leads)``; ``samples`` divisible by ``patch_len``.
        patch_len, d_model, num_heads, num_layers, ff_mult, dropout: the encoder's, as in
            :class:`models.denoisers.common.PatchEncoder`.
        output_mode: ``direct``, ``residual`` or ``gated``
            (:func:`models.denoisers.common.denoiser_output`).

    Returns:
        ``keras.Model`` named ``"transformer"`` mapping ``(batch, samples, leads)`` to the
        same shape.
    """
    encoder = PatchEncoder(patch_len, d_model, num_heads, num_layers, ff_mult, dropout)
    return patch_transformer("transformer", input_shape, encoder, output_mode=output_mode)
