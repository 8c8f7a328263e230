"""Argument checks and building blocks shared by the denoiser builders (no models here).

Every check raises ``ValueError`` whose message echoes the received value, e.g.
``"`units` must be a non-empty sequence of positive ints. Received: units=()"``.
"""

from __future__ import annotations

from collections.abc import Sequence

import keras

from models.layers import PositionalEmbedding, TransformerBlock


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_input_shape(input_shape: Sequence, *, variable_length: bool = False) -> tuple:
    """Checks a window shape ``(samples, leads)``; returns it as a tuple.

    Args:
        input_shape: ``(samples, leads)``, batch axis excluded.
        variable_length: Whether ``samples`` may be ``None`` (recurrent models).

    Returns:
        ``(samples, leads)`` as a tuple.
    """
    shape = tuple(input_shape) if isinstance(input_shape, (tuple, list)) else None
    ok = shape is not None and len(shape) == 2 and _is_int(shape[1]) and shape[1] >= 1
    if ok:
        samples = shape[0]
        ok = (samples is None and variable_length) or (_is_int(samples) and samples >= 1)
    if not ok:
        what = "(samples or None, leads)" if variable_length else "(samples, leads)"
        raise ValueError(
            f"`input_shape` must be {what} with positive ints. Received: input_shape={input_shape!r}"
        )
    return shape


def check_positive_int(name: str, value: object) -> None:
    if not _is_int(value) or value < 1:
        raise ValueError(f"`{name}` must be a positive int. Received: {name}={value!r}")


def check_positive_ints(name: str, value: object) -> tuple[int, ...]:
    """Checks a non-empty sequence of positive ints; returns it as a tuple."""
    ok = isinstance(value, (tuple, list)) and len(value) > 0
    ok = ok and all(_is_int(v) and v >= 1 for v in value)
    if not ok:
        raise ValueError(
            f"`{name}` must be a non-empty sequence of positive ints. Received: {name}={value!r}"
        )
    return tuple(value)


def check_rate(name: str, value: object) -> None:
    """Checks a dropout-like rate in ``[0, 1)``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value < 1.0:
        raise ValueError(f"`{name}` must be a float in [0, 1). Received: {name}={value!r}")


def check_bool(name: str, value: object) -> None:
    if not isinstance(value, bool):
        raise ValueError(f"`{name}` must be a bool. Received: {name}={value!r}")


def check_divisible_length(samples: int, factor: int, why: str) -> None:
    """Raises unless ``samples`` is a multiple of ``factor`` (``why`` names the reason)."""
    if samples % factor:
        raise ValueError(
            f"Input length must be divisible by {factor} ({why}). "
            f"Received: input_shape[0]={samples}"
        )


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


def check_transformer_args(
    input_shape, *, patch_len, d_model, num_heads, num_layers, ff_mult, dropout
) -> tuple[int, int]:
    """Checks the shared Transformer arguments; returns ``(samples, leads)``."""
    samples, leads = check_input_shape(input_shape)
    check_positive_int("patch_len", patch_len)
    check_positive_int("d_model", d_model)
    check_positive_int("num_heads", num_heads)
    check_positive_int("num_layers", num_layers)
    check_positive_int("ff_mult", ff_mult)
    check_rate("dropout", dropout)
    if d_model % num_heads:
        raise ValueError(
            f"`num_heads` must divide `d_model`={d_model}. Received: num_heads={num_heads}"
        )
    check_divisible_length(samples, patch_len, f"patch_len={patch_len}")
    return samples, leads
