"""Patch Transformer denoiser (no quantization).

Architecture:
    The window is cut into ``samples / patch_len`` non-overlapping patches of ``patch_len``
    samples of all leads (``patch_len * leads`` values each), projected to ``d_model``
    (patch embedding), plus a learned positional embedding, then ``num_layers`` pre-norm
    ``TransformerBlock`` layers (``num_heads`` heads, feed-forward width
    ``ff_mult * d_model``, GELU) and a final LayerNorm. A linear patch decoder (Dense to
    ``patch_len * leads``) is reshaped back to ``(samples, leads)``.

Shapes:
    Input ``(batch, samples, leads)``, normalized amplitudes at the window rate (360 Hz for
    MIT-BIH), ``samples`` divisible by ``patch_len``. Tokens ``(batch, samples / patch_len,
    d_model)``. Output: same shape and units as the input.
"""

from __future__ import annotations

import keras

from models.denoisers._common import check_transformer_args, transformer_encoder
from models.registry import register


def search_space(hp):
    """Builder kwargs sampled from ``hp``; an empty ``HyperParameters()`` gives the defaults.

    Every ``d_model`` choice is divisible by every ``num_heads`` choice.
    """
    return dict(
        patch_len=hp.Choice("patch_len", [5, 10, 20], default=10),
        d_model=hp.Choice("d_model", [60, 120, 300, 600], default=300),
        num_heads=hp.Choice("num_heads", [2, 5, 10], default=5),
        num_layers=hp.Int("num_layers", 1, 8, default=5),
        ff_mult=hp.Choice("ff_mult", [2, 4], default=4),
        dropout=hp.Float("dropout", 0.0, 0.3, step=0.1, default=0.1),
    )


@register("transformer", kind="denoiser", search_space=search_space, input_kind="window")
def build(
    input_shape, *, patch_len=10, d_model=300, num_heads=5, num_layers=5, ff_mult=4, dropout=0.1
):
    """Builds the patch Transformer denoiser.

    Args:
        input_shape: ``(samples, leads)``; ``samples`` divisible by ``patch_len``.
        patch_len: Samples per patch (token).
        d_model: Token width.
        num_heads: Attention heads; must divide ``d_model``.
        num_layers: Number of Transformer blocks.
        ff_mult: Feed-forward width as a multiple of ``d_model``.
        dropout: Dropout rate in the blocks and after the embedding, in ``[0, 1)``.

    Returns:
        ``keras.Model`` named ``"transformer"`` mapping ``(batch, samples, leads)`` to the
        same shape.
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
    inputs = keras.Input((samples, leads), name="ecg")
    patches = keras.layers.Reshape((samples // patch_len, patch_len * leads), name="patchify")(
        inputs
    )
    x = transformer_encoder(
        patches,
        d_model=d_model,
        num_heads=num_heads,
        num_layers=num_layers,
        ff_dim=ff_mult * d_model,
        dropout=dropout,
    )
    x = keras.layers.Dense(patch_len * leads, name="patch_decoder")(x)
    outputs = keras.layers.Reshape((samples, leads), name="output")(x)
    return keras.Model(inputs, outputs, name="transformer")
