"""Building blocks shared by the denoiser builders (the builders themselves live one per file).

This module owns the pieces two or more denoisers really share: the search-space helper for
tuples of ints, the recurrent stack behind ``lstm`` and ``rnn``, and the patch-Transformer
model (patchify, encoder stack, patch decoder) behind ``transformer`` and ``vq_transformer``.
Argument checks are in :mod:`models.checks`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import keras

from models import checks
from models.checks import DENOISER as check
from models.layers import PositionalEmbedding, TransformerBlock


def int_tuple_space(hp, name: str, defaults: tuple[int, ...], values: list[int], max_len: int):
    """Samples a tuple of ints whose default equals ``defaults``.

    ``n_<name>`` picks the length (default ``len(defaults)``); ``<name>_<i>`` picks each entry,
    defaulting to ``defaults[i]`` (the last default beyond the default length).
    """
    n = hp.Int(f"n_{name}", 1, max_len, default=len(defaults))
    return tuple(
        hp.Choice(f"{name}_{i}", values, default=defaults[min(i, len(defaults) - 1)])
        for i in range(n)
    )


def recurrent_denoiser(
    name: str, layer_class: type, input_shape, units, dropout, bidirectional
) -> keras.Model:
    """Stacked recurrent denoiser: one ``layer_class`` layer per width, then a linear output.

    ``ecg (samples, leads)`` -> for each width in ``units``: ``layer_class(width,
    return_sequences=True)`` named ``<name>_<i>`` (wrapped in ``Bidirectional`` named
    ``bidirectional_<i>`` when asked) -> ``Dropout`` (``dropout_<i>``) -> ``Dense(leads)``
    (``output``) per time step.

    Args:
        name: Model name, also the prefix of the recurrent layers.
        layer_class: ``keras.layers.LSTM``, ``keras.layers.SimpleRNN``...
        input_shape: ``(samples, leads)``; ``samples`` may be ``None``.
        units: Widths, first layer first (per direction when bidirectional).
        dropout: Dropout rate after every recurrent layer, in ``[0, 1)``.
        bidirectional: Whether each layer reads the window both ways (non-causal).

    Returns:
        ``keras.Model`` named ``name`` mapping ``(batch, samples, leads)`` to the same shape.
    """
    _, leads = checks.window_shape(input_shape, variable_length=True)
    units = check.positive_ints("units", units)
    check.rate("dropout", dropout)
    check.boolean("bidirectional", bidirectional)

    inputs = keras.Input(tuple(input_shape), name="ecg")
    x = inputs
    for i, width in enumerate(units):
        layer = layer_class(width, return_sequences=True, name=f"{name}_{i}")
        if bidirectional:
            layer = keras.layers.Bidirectional(layer, name=f"bidirectional_{i}")
        x = layer(x)
        x = keras.layers.Dropout(dropout, name=f"dropout_{i}")(x)
    outputs = keras.layers.Dense(leads, name="output")(x)
    return keras.Model(inputs, outputs, name=name)


def transformer_encoder(
    tokens, *, d_model: int, num_heads: int, num_layers: int, ff_dim: int, dropout: float
):
    """Token projection, learned positions, ``num_layers`` pre-norm blocks and a final norm.

    Args:
        tokens: Symbolic tensor ``(batch, n_tokens, features)``.
        d_model: Model width.
        num_heads: Attention heads (must divide ``d_model``).
        num_layers: Number of ``TransformerBlock`` layers.
        ff_dim: Feed-forward hidden width.
        dropout: Dropout rate inside the blocks and after the embedding.

    Returns:
        Symbolic tensor ``(batch, n_tokens, d_model)``.
    """
    n_tokens = tokens.shape[1]
    x = keras.layers.Dense(d_model, name="token_projection")(tokens)
    x = PositionalEmbedding(n_tokens, name="positional_embedding")(x)
    x = keras.layers.Dropout(dropout, name="embedding_dropout")(x)
    for i in range(num_layers):
        x = TransformerBlock(num_heads, ff_dim, dropout=dropout, name=f"transformer_block_{i}")(x)
    return keras.layers.LayerNormalization(epsilon=1e-6, name="final_norm")(x)


def patch_encoder_space(hp) -> dict[str, Any]:
    """Search space of the :class:`PatchEncoder` arguments; defaults: 10-sample patches,
    ``d_model=300``, 5 heads, 5 layers, ``ff_mult=4``, dropout 0.1.

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


@dataclasses.dataclass(frozen=True)
class PatchEncoder:
    """The encoder arguments of a patch-Transformer denoiser (checked when it is built).

    Attributes:
        patch_len: Samples per patch (token).
        d_model: Token width.
        num_heads: Attention heads; must divide ``d_model``.
        num_layers: Number of Transformer blocks.
        ff_mult: Feed-forward width as a multiple of ``d_model``.
        dropout: Dropout rate in the blocks and after the embedding, in ``[0, 1)``.
    """

    patch_len: Any
    d_model: Any
    num_heads: Any
    num_layers: Any
    ff_mult: Any
    dropout: Any


def patch_transformer(
    name: str, input_shape, encoder: PatchEncoder, embed: Callable[[Any], Any] | None = None
) -> keras.Model:
    """Patch Transformer denoiser: patchify, [embed], encoder stack, linear patch decoder.

    The window is cut into ``samples / patch_len`` patches of ``patch_len`` samples of all
    leads (``patchify``), optionally mapped by ``embed`` (e.g. a patch embedding and a vector
    quantizer), passed through :func:`transformer_encoder`, decoded by a Dense to
    ``patch_len * leads`` (``patch_decoder``) and reshaped back (``output``).

    Args:
        name: Model name.
        input_shape: ``(samples, leads)``; ``samples`` divisible by ``encoder.patch_len``.
        encoder: The encoder arguments; checked here.
        embed: Optional map from patches ``(batch, n_patches, patch_len * leads)`` to tokens.

    Returns:
        ``keras.Model`` named ``name`` mapping ``(batch, samples, leads)`` to the same shape.
    """
    samples, leads = checks.patch_transformer_args(input_shape, **dataclasses.asdict(encoder))
    patch_len = encoder.patch_len
    inputs = keras.Input((samples, leads), name="ecg")
    tokens = keras.layers.Reshape((samples // patch_len, patch_len * leads), name="patchify")(
        inputs
    )
    if embed is not None:
        tokens = embed(tokens)
    x = transformer_encoder(
        tokens,
        d_model=encoder.d_model,
        num_heads=encoder.num_heads,
        num_layers=encoder.num_layers,
        ff_dim=encoder.ff_mult * encoder.d_model,
        dropout=encoder.dropout,
    )
    x = keras.layers.Dense(patch_len * leads, name="patch_decoder")(x)
    outputs = keras.layers.Reshape((samples, leads), name="output")(x)
    return keras.Model(inputs, outputs, name=name)
