"""Functional building blocks shared by the classifier builders (every layer named).

These helpers only wire built-in Keras layers; names are ``<prefix>_<layer>`` so a block's
layers are easy to find in ``model.summary()`` and in saved files.
"""

from __future__ import annotations

from typing import Any

import keras
from keras import layers


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


def classifier_head(
    x: Any,
    n_outputs: int,
    output_activation: str,
    *,
    dense_units: int = 0,
    dropout: float = 0.0,
) -> Any:
    """``[Dense(dense_units, relu)] -> Dropout -> Dense(n_outputs, output_activation)``.

    The last layer is ``predictions`` and computes in float32 (safe under mixed precision).
    """
    if dense_units:
        x = layers.Dense(dense_units, activation="relu", name="head_dense")(x)
    if dropout:
        x = layers.Dropout(dropout, name="head_dropout")(x)
    return layers.Dense(
        n_outputs, activation=output_activation, dtype="float32", name="predictions"
    )(x)


def ecg_input(input_shape: tuple[int, ...]) -> Any:
    """The model input, named ``ecg`` (1-D models) for every builder."""
    return keras.Input(shape=input_shape, name="ecg")
