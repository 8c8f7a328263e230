"""Functional building blocks shared by the classifier builders (every layer named).

This module owns what every classifier does the same way: the checked common arguments and
the model inputs (:func:`classifier_io`), the conv block and conv stack, and the head,
including the one place where scalar side inputs (RR features) join it
(:func:`join_side_inputs`). The helpers only wire built-in Keras layers; names are
``<prefix>_<layer>`` so a block's layers are easy to find in ``model.summary()`` and in saved
files.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Sequence
from typing import Any

import keras
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


def conv_stack_args(filters: Any, kernel_size: Any, pool_size: Any) -> tuple:
    """Checks the arguments of :func:`conv_stack`; returns ``(filters, kernel_size, pool_size)``
    as a tuple of ints and two ints."""
    return (
        check.positive_ints("filters", filters),
        check.positive_int("kernel_size", kernel_size),
        check.positive_int("pool_size", pool_size),
    )


def head_space(
    hp,
    *,
    dropout: float,
    dense_units: int | None = None,
    dense_choices: Sequence[int] = (32, 64, 128),
    dropout_name: str = "dropout",
) -> dict[str, Any]:
    """Search space of the dense head; the keyword values are the defaults.

    Args:
        hp: ``keras_tuner.HyperParameters``.
        dropout: Default dropout before the output layer (searched in 0 to 0.5, step 0.1).
        dense_units: Default width of the head's hidden layer; ``None``: not searched.
        dense_choices: Widths the search picks ``dense_units`` from.
        dropout_name: Name of the dropout argument (``head_dropout`` where the body has its
            own ``dropout``).

    Returns:
        ``{"dense_units": ..., dropout_name: ...}`` (``dense_units`` only when searched).
    """
    space = {}
    if dense_units is not None:
        space["dense_units"] = hp.Choice("dense_units", list(dense_choices), default=dense_units)
    space[dropout_name] = hp.Float(dropout_name, 0.0, 0.5, step=0.1, default=dropout)
    return space


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


def classifier_head(
    x: Any,
    n_outputs: int,
    output_activation: str,
    *,
    dense_units: int = 0,
    dropout: float = 0.0,
    rr: Any | None = None,
) -> Any:
    """``[join rr] -> [Dense(dense_units, relu)] -> Dropout -> Dense(n_outputs, activation)``.

    The last layer is ``predictions`` and computes in float32 (safe under mixed precision).
    """
    x = join_side_inputs(x, rr)
    if dense_units:
        x = layers.Dense(dense_units, activation="relu", name="head_dense")(x)
    if dropout:
        x = layers.Dropout(dropout, name="head_dropout")(x)
    return layers.Dense(
        n_outputs, activation=output_activation, dtype="float32", name="predictions"
    )(x)


@dataclasses.dataclass(frozen=True)
class ClassifierIO:
    """A classifier's checked common arguments and its input tensors.

    Attributes:
        name: Model name (the registry key).
        n_outputs: Number of classes or labels.
        output_activation: ``softmax``, ``sigmoid`` or ``linear``.
        dense_units: Width of the head's hidden layer (``0``: none).
        dropout: Dropout rate before the output layer.
        inputs: What ``keras.Model`` takes: the ECG input, or ``{"ecg": ..., "rr": ...}``.
        ecg: The ECG (or scalogram) input tensor, where the builder's layers start.
        rr: The RR input tensor ``(batch, n_rr_features)``, or ``None``.
    """

    name: str
    n_outputs: int
    output_activation: str
    dense_units: int
    dropout: float
    inputs: Any
    ecg: Any
    rr: Any | None

    def model(self, features: Any) -> Any:
        """The head (:func:`classifier_head`, RR joined) on ``features``, and the model."""
        outputs = classifier_head(
            features,
            self.n_outputs,
            self.output_activation,
            dense_units=self.dense_units,
            dropout=self.dropout,
            rr=self.rr,
        )
        return keras.Model(self.inputs, outputs, name=self.name)


_INPUTS = {
    # input_kind -> (input-shape check, name of the single input without RR)
    "any1d": (checks.input_1d, "ecg"),
    "sequence": (checks.input_sequence, "scalograms"),
}


def _model_inputs(shape: tuple[int, ...], n_rr_features: int, single_name: str) -> tuple:
    """``(inputs, ecg, rr)``: one input without RR features, else ``{"ecg", "rr"}``."""
    if not n_rr_features:
        ecg = keras.Input(shape=shape, name=single_name)
        return ecg, ecg, None
    ecg = keras.Input(shape=shape, name="ecg")
    rr = keras.Input(shape=(n_rr_features,), name="rr")
    return {"ecg": ecg, "rr": rr}, ecg, rr


def classifier_io(
    name: str,
    input_shape: Any,
    n_outputs: Any,
    output_activation: Any,
    n_rr_features: Any,
    dense_units: Any = None,
    dropout: Any = 0.0,
    *,
    input_kind: str = "any1d",
) -> ClassifierIO:
    """Checks the arguments every classifier takes (input, head, RR) and makes its inputs.

    Args:
        name: Model name, used in input-shape errors.
        input_shape: ``any1d``: ``(n_samples, n_leads)``; ``sequence``: ``(n_beats,
            n_scales, n_time, 1)``; batch axis excluded.
        n_outputs: Number of classes (softmax) or labels (sigmoid).
        output_activation: ``softmax`` (single-label), ``sigmoid`` (multi-label) or ``linear``.
        n_rr_features: ``0``: one input, named ``ecg`` (``scalograms`` for sequences), as in
            the models saved so far. ``> 0``: the model takes a dict ``{"ecg": (batch,
            *input_shape), "rr": (batch, n_rr_features)}`` (two inputs named ``ecg`` and
            ``rr``), and the RR vector joins the head through :func:`join_side_inputs`.
        dense_units: Width of the head's hidden layer; ``None`` for a head without one.
        dropout: Dropout rate before the output layer, in ``[0, 1)`` (a builder that names it
            otherwise, e.g. ``head_dropout``, checks it under its own name first).
        input_kind: ``any1d`` or ``sequence``, as registered.

    Returns:
        The checked values and the input tensors; ``.model(features)`` finishes the model.
    """
    check_shape, single_name = _INPUTS[input_kind]
    dense_units = 0 if dense_units is None else check.positive_int("dense_units", dense_units)
    dropout = check.rate("dropout", dropout)
    output_activation = checks.output_activation(output_activation)
    n_outputs = check.positive_int("n_outputs", n_outputs)
    n_rr_features = checks.non_negative_int("n_rr_features", n_rr_features)
    inputs, ecg, rr = _model_inputs(check_shape(name, input_shape), n_rr_features, single_name)
    return ClassifierIO(name, n_outputs, output_activation, dense_units, dropout, inputs, ecg, rr)


sequence_io = functools.partial(classifier_io, input_kind="sequence")
""":func:`classifier_io` for beat-scalogram sequences ``(n_beats, n_scales, n_time, 1)``."""
