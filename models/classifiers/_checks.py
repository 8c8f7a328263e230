"""Argument and input-shape checks shared by the classifier builders.

Every check raises ``ValueError`` whose message names the argument and echoes the value it
received (``"... Received: filters=(0, 32)"``), so a bad YAML ``model_kwargs`` entry is found
from the message alone.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from typing import Any

OUTPUT_ACTIVATIONS = ("softmax", "sigmoid", "linear")


def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def positive_int(name: str, value: Any) -> int:
    """Returns ``value`` as an int; raises unless it is an integer >= 1."""
    if not _is_int(value) or value < 1:
        raise ValueError(f"`{name}` must be an integer >= 1. Received: {name}={value!r}")
    return int(value)


def positive_ints(name: str, value: Any) -> tuple[int, ...]:
    """Returns ``value`` as a non-empty tuple of ints >= 1 (lists from YAML are accepted)."""
    if (
        isinstance(value, (str, bytes))
        or not isinstance(value, Sequence)
        or len(value) == 0
        or not all(_is_int(v) and v >= 1 for v in value)
    ):
        raise ValueError(
            f"`{name}` must be a non-empty sequence of integers >= 1. Received: {name}={value!r}"
        )
    return tuple(int(v) for v in value)


def rate(name: str, value: Any) -> float:
    """Returns ``value`` as a float in [0, 1) (a dropout rate)."""
    if (
        isinstance(value, bool)
        or not isinstance(value, numbers.Real)
        or not 0.0 <= float(value) < 1.0
    ):
        raise ValueError(f"`{name}` must be a number in [0, 1). Received: {name}={value!r}")
    return float(value)


def one_of(name: str, value: Any, options: Sequence[Any]) -> Any:
    """Returns ``value`` if it is one of ``options``."""
    if value not in tuple(options):
        raise ValueError(f"`{name}` must be one of {tuple(options)}. Received: {name}={value!r}")
    return value


def output_activation(value: Any) -> str:
    """Checks the task-chosen output activation (softmax, sigmoid or linear)."""
    return one_of("output_activation", value, OUTPUT_ACTIVATIONS)


def _shape_tuple(input_shape: Any) -> tuple[Any, ...] | None:
    if isinstance(input_shape, (str, bytes)) or not isinstance(input_shape, Sequence):
        return None
    return tuple(input_shape)


def input_1d(model: str, input_shape: Any) -> tuple[int, int]:
    """Checks a 1-D input ``(n_samples, n_leads)`` and returns it as ints."""
    shape = _shape_tuple(input_shape)
    if shape is None or len(shape) != 2 or not all(_is_int(v) and v >= 1 for v in shape):
        raise ValueError(
            f"{model} expects input (n_samples, n_leads); Received: input_shape={input_shape!r}"
        )
    return int(shape[0]), int(shape[1])


def input_sequence(model: str, input_shape: Any) -> tuple[int, int, int, int]:
    """Checks a beat-scalogram sequence ``(n_beats, n_scales, n_time, 1)``."""
    shape = _shape_tuple(input_shape)
    if (
        shape is None
        or len(shape) != 4
        or not all(_is_int(v) and v >= 1 for v in shape)
        or shape[-1] != 1
    ):
        raise ValueError(
            f"{model} expects input (n_beats, n_scales, n_time, 1); "
            f"Received: input_shape={input_shape!r}"
        )
    n_beats, n_scales, n_time, channels = (int(v) for v in shape)
    return n_beats, n_scales, n_time, channels
