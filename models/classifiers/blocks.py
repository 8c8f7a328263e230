"""Functional building blocks shared by the classifier builders (every layer named).

This module owns what the classifiers wire the same way: the conv block and conv stack, self
attention, and the head, including the one place where scalar side inputs (RR features) join
it (:func:`join_side_inputs`). It also owns the argument bundles that several builders take
(:class:`ConvStack`, :class:`Head`: frozen dataclasses, checked once when made) and the search
spaces over them (:func:`conv_space`, :func:`head_space`), whose defaults are read from the
bundle a builder declares, so they cannot drift apart. The helpers only wire built-in Keras
layers; names are ``<prefix>_<layer>`` so a block's layers are easy to find in
``model.summary()`` and in saved files. How a builder is put together from these:
:mod:`models.classifiers.builder`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from keras import layers

from models import checks
from models.checks import CLASSIFIER as check

RR_UNITS = 16
"""Width of the dense layer that reads the RR features before they join the head."""


def conv_bn_act(
    x: Any,
    filters: int,
    kernel_size: int,
    *,
    prefix: str,
    strides: int = 1,
    dilation_rate: int = 1,
    separable: bool = False,
    activation: str | None = "relu",
) -> Any:
    """Conv1D (or SeparableConv1D) with ``padding="same"``, no bias, then BatchNorm and act."""
    conv = layers.SeparableConv1D if separable else layers.Conv1D
    x = conv(
        filters,
        kernel_size,
        strides=strides,
        dilation_rate=dilation_rate,
        padding="same",
        use_bias=False,
        name=f"{prefix}_{'sepconv' if separable else 'conv'}",
    )(x)
    x = layers.BatchNormalization(name=f"{prefix}_bn")(x)
    if activation is not None:
        x = layers.Activation(activation, name=f"{prefix}_{activation}")(x)
    return x


def max_pool(x: Any, pool_size: int, *, prefix: str) -> Any:
    """MaxPooling1D with ``padding="same"``: never fails on short inputs (length >= 1)."""
    return layers.MaxPooling1D(pool_size, padding="same", name=f"{prefix}_pool")(x)


def conv_stack(
    x: Any,
    filters: Sequence[int],
    kernel_size: int,
    *,
    pool_size: int,
    prefix: str = "block",
    convs_per_block: int | None = None,
    separable: bool = False,
    block_end: Callable[[Any, int, str], Any] | None = None,
) -> Any:
    """One block per entry of ``filters``: ``conv_bn_act`` x n, ``block_end``, ``max_pool``.

    Args:
        x: Symbolic tensor ``(batch, steps, channels)``.
        filters: Width of each block.
        kernel_size: Conv kernel length in samples.
        pool_size: Max-pool size closing each block (``padding="same"``).
        prefix: Block names are ``<prefix><i>``, ``i`` from 1.
        convs_per_block: ``None``: one conv per block, named ``<prefix><i>_conv``; an int:
            that many convs, named ``<prefix><i>_<j>_conv``.
        separable: Depthwise-separable convs instead of full ones.
        block_end: ``f(x, filters, block_prefix)`` applied after the convs (e.g. a gate).

    Returns:
        Symbolic tensor ``(batch, steps / pool_size ** len(filters), filters[-1])``.
    """
    for i, f in enumerate(filters, start=1):
        block = f"{prefix}{i}"
        if convs_per_block is None:
            names = [block]
        else:
            names = [f"{block}_{j}" for j in range(1, convs_per_block + 1)]
        for name in names:
            x = conv_bn_act(x, f, kernel_size, separable=separable, prefix=name)
        if block_end is not None:
            x = block_end(x, f, block)
        x = max_pool(x, pool_size, prefix=block)
    return x


def self_attention(
    x: Any,
    d_model: int,
    num_heads: int,
    dropout: float,
    *,
    prefix: str,
    mha_name: str | None = None,
) -> Any:
    """Pre-norm multi-head self-attention with residual: ``x + Dropout(MHA(LN(x)))``.

    Layers: ``<prefix>_ln``, ``mha_name`` (default ``<prefix>_mha``; heads of width
    ``d_model // num_heads``), ``<prefix>_dropout``, ``<prefix>_add``.
    """
    h = layers.LayerNormalization(epsilon=1e-6, name=f"{prefix}_ln")(x)
    h = layers.MultiHeadAttention(
        num_heads, key_dim=d_model // num_heads, dropout=dropout, name=mha_name or f"{prefix}_mha"
    )(h, h)
    h = layers.Dropout(dropout, name=f"{prefix}_dropout")(h)
    return layers.Add(name=f"{prefix}_add")([x, h])


def join_side_inputs(features: Any, rr: Any | None) -> Any:
    """The one hook where scalar side inputs join a classifier's pooled features.

    ``rr`` (``(batch, n_rr_features)``, e.g. pre/post RR intervals over the local mean) goes
    through ``Dense(RR_UNITS, relu)`` named ``rr_dense`` and is concatenated with
    ``features`` (``rr_join``). With ``rr=None`` the features pass unchanged (no layers).
    """
    if rr is None:
        return features
    side = layers.Dense(RR_UNITS, activation="relu", name="rr_dense")(rr)
    return layers.Concatenate(name="rr_join")([features, side])


class Arguments:
    """Base of the argument bundles: frozen dataclasses whose fields a builder takes as
    keyword arguments of the same names (checked in the subclass's ``__post_init__``)."""

    def arguments(self) -> dict[str, Any]:
        """The builder keyword arguments this bundle stands for, with its values."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    def replaced(self, values: Mapping[str, Any]) -> Any:
        """A checked copy with the builder's keyword ``values`` (keys of :meth:`arguments`)."""
        return dataclasses.replace(self, **values)


@dataclasses.dataclass(frozen=True)
class ConvStack(Arguments):
    """The arguments of a conv front end (:func:`conv_stack`); calling it wires the stack.

    Attributes:
        filters: Width of each block (a YAML list is accepted and stored as a tuple).
        kernel_size: Conv kernel length in samples.
        pool_size: Max-pool size closing each block (``padding="same"``).
    """

    filters: tuple[int, ...]
    kernel_size: int
    pool_size: int

    def __post_init__(self) -> None:
        checks.check_fields(
            self,
            filters=check.positive_ints,
            kernel_size=check.positive_int,
            pool_size=check.positive_int,
        )

    def __call__(self, x: Any, **options: Any) -> Any:
        """:func:`conv_stack` over ``x``; ``options``: its ``prefix``, ``convs_per_block``,
        ``separable``, ``block_end``."""
        return conv_stack(x, self.filters, self.kernel_size, pool_size=self.pool_size, **options)


@dataclasses.dataclass(frozen=True)
class Head(Arguments):
    """The dense head: ``[join rr] -> [Dense(dense_units, relu)] -> Dropout -> output``.

    Attributes:
        dense_units: Width of the hidden layer; ``None``: no hidden layer (and the builder
            takes no ``dense_units`` argument when its default head has none).
        dropout: Dropout rate before the output layer, in ``[0, 1)``.
        dropout_name: The builder's name for ``dropout`` (``head_dropout`` where the body has
            its own ``dropout``); messages use it.
    """

    dense_units: int | None = None
    dropout: float = 0.0
    dropout_name: str = "dropout"

    def __post_init__(self) -> None:
        if self.dense_units is not None:
            checks.check_fields(self, dense_units=check.positive_int)
        object.__setattr__(self, "dropout", check.rate(self.dropout_name, self.dropout))

    def arguments(self) -> dict[str, Any]:
        hidden = {} if self.dense_units is None else {"dense_units": self.dense_units}
        return {**hidden, self.dropout_name: self.dropout}

    def replaced(self, values: Mapping[str, Any]) -> Head:
        dense_units = values.get("dense_units", self.dense_units)
        return dataclasses.replace(self, dense_units=dense_units, dropout=values[self.dropout_name])

    def __call__(self, features: Any, n_outputs: int, output_activation: str, rr: Any) -> Any:
        """The head on ``features`` (``rr``: the RR input or ``None``). The last layer is
        ``predictions`` and computes in float32 (safe under mixed precision)."""
        x = join_side_inputs(features, rr)
        if self.dense_units:
            x = layers.Dense(self.dense_units, activation="relu", name="head_dense")(x)
        if self.dropout:
            x = layers.Dropout(self.dropout, name="head_dropout")(x)
        return layers.Dense(
            n_outputs, activation=output_activation, dtype="float32", name="predictions"
        )(x)


def widths_space(hp, filters: Sequence[int], bases: Sequence[int]) -> tuple[int, ...]:
    """Searches ``filters_base`` in ``bases`` (default ``filters[0]``) and returns ``filters``
    scaled to it, ratios kept: ``(64, 128, 256)`` with base 32 gives ``(32, 64, 128)``."""
    base = hp.Choice("filters_base", list(bases), default=filters[0])
    return tuple(base * f // filters[0] for f in filters)


def conv_space(hp, conv: ConvStack, *, bases: Sequence[int], kernel_sizes: Sequence[int]):
    """``filters`` (:func:`widths_space`) and ``kernel_size`` searched around ``conv``."""
    return dict(
        filters=widths_space(hp, conv.filters, bases),
        kernel_size=hp.Choice("kernel_size", list(kernel_sizes), default=conv.kernel_size),
    )


def head_space(hp, head: Head, dense_choices: Sequence[int] | None = None) -> dict[str, Any]:
    """Search space of the head; its defaults are ``head``'s values.

    Args:
        hp: ``keras_tuner.HyperParameters``.
        head: The builder's default head.
        dense_choices: Widths ``dense_units`` is picked from; ``None``: not searched.

    Returns:
        ``{"dense_units": ..., head.dropout_name: ...}`` (``dense_units`` only when
        searched); the dropout is searched in 0 to 0.5, step 0.1.
    """
    space = {}
    if dense_choices is not None:
        space["dense_units"] = hp.Choice(
            "dense_units", list(dense_choices), default=head.dense_units
        )
    name = head.dropout_name
    space[name] = hp.Float(name, 0.0, 0.5, step=0.1, default=head.dropout)
    return space
