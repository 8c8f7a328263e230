"""Argument and input-shape checks for every model builder and custom layer (no models here).

Each check returns the value in its canonical type (``int``, ``float``, a tuple of ints) or
raises ``ValueError`` whose message names the argument and echoes what it received
(``"`filters` must be an integer >= 1. Received: filters=0"``), so a bad YAML
``model_kwargs`` entry is found from the message alone.

Two wordings exist for the same checks, because saved runs, tests and users match on the
messages: :data:`CLASSIFIER` (``"an integer >= 1"``, ``"a number in [0, 1)"``) for the
classifier builders, and :data:`DENOISER` (``"a positive int"``, ``"a float in [0, 1)"``) for
the denoiser builders and the layers of :mod:`models.layers`. The logic is the same for both.
"""

from __future__ import annotations

import dataclasses
import numbers
from collections.abc import Callable, Sequence
from typing import Any

OUTPUT_ACTIVATIONS = ("softmax", "sigmoid", "linear")


def is_int(value: Any) -> bool:
    """Whether ``value`` is an integer (Python or NumPy), bools excluded."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def is_real(value: Any) -> bool:
    """Whether ``value`` is a real number (Python or NumPy), bools excluded."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _fail(name: str, what: str, value: Any) -> ValueError:
    return ValueError(f"`{name}` must be {what}. Received: {name}={value!r}")


@dataclasses.dataclass(frozen=True)
class Checker:
    """The common checks, with the wording of one family of builders.

    Attributes:
        int_text: How an integer >= 1 is named in messages.
        ints_text: How a non-empty sequence of integers >= 1 is named.
        rate_text: How a number in ``[0, 1)`` is named (the interval is appended).
        bool_text: How a bool is named.
    """

    int_text: str
    ints_text: str
    rate_text: str
    bool_text: str

    def positive_int(self, name: str, value: Any) -> int:
        """Returns ``value`` as an int; raises unless it is an integer >= 1."""
        if not is_int(value) or value < 1:
            raise _fail(name, self.int_text, value)
        return int(value)

    def positive_ints(self, name: str, value: Any) -> tuple[int, ...]:
        """Returns ``value`` as a non-empty tuple of ints >= 1 (YAML lists are accepted)."""
        if (
            isinstance(value, (str, bytes))
            or not isinstance(value, Sequence)
            or len(value) == 0
            or not all(is_int(v) and v >= 1 for v in value)
        ):
            raise _fail(name, self.ints_text, value)
        return tuple(int(v) for v in value)

    def rate(self, name: str, value: Any) -> float:
        """Returns ``value`` as a float in ``[0, 1)`` (a dropout rate, an EMA decay)."""
        if not is_real(value) or not 0.0 <= float(value) < 1.0:
            raise _fail(name, f"{self.rate_text} [0, 1)", value)
        return float(value)

    def boolean(self, name: str, value: Any) -> bool:
        """Returns ``value``; raises unless it is ``True`` or ``False``."""
        if not isinstance(value, bool):
            raise _fail(name, self.bool_text, value)
        return value


CLASSIFIER = Checker(
    int_text="an integer >= 1",
    ints_text="a non-empty sequence of integers >= 1",
    rate_text="a number in",
    bool_text="True or False",
)
"""Checks with the classifier builders' wording."""

DENOISER = Checker(
    int_text="a positive int",
    ints_text="a non-empty sequence of positive ints",
    rate_text="a float in",
    bool_text="a bool",
)
"""Checks with the denoiser builders' (and the custom layers') wording."""


def check_fields(instance: Any, **checkers: Callable[[str, Any], Any]) -> None:
    """Replaces fields of a frozen dataclass by their checked canonical values.

    Called from ``__post_init__``: ``check_fields(self, filters=CLASSIFIER.positive_ints)``
    checks ``self.filters`` under its own name (``"`filters` must be ... Received:
    filters=[0]"``) and stores the tuple the check returns.
    """
    for name, checker in checkers.items():
        object.__setattr__(instance, name, checker(name, getattr(instance, name)))


def non_negative_int(name: str, value: Any) -> int:
    """Returns ``value`` as an int; raises unless it is an integer >= 0 (``0`` = off)."""
    if not is_int(value) or value < 0:
        raise _fail(name, "an integer >= 0", value)
    return int(value)


def non_negative_float(name: str, value: Any) -> float:
    """Returns ``value`` as a float; raises unless it is a number >= 0 (a loss weight)."""
    if not is_real(value) or value < 0:
        raise _fail(name, "a float >= 0", value)
    return float(value)


def one_of(name: str, value: Any, options: Sequence[Any]) -> Any:
    """Returns ``value`` if it is one of ``options``."""
    if value not in tuple(options):
        raise _fail(name, f"one of {tuple(options)}", value)
    return value


def output_activation(value: Any) -> str:
    """Checks the task-chosen output activation (softmax, sigmoid or linear)."""
    return one_of("output_activation", value, OUTPUT_ACTIVATIONS)


def attention_dims(d_model: Any, num_heads: Any) -> tuple[int, int]:
    """Checks a classifier's attention width and heads (``d_model`` a multiple of
    ``num_heads``); returns both as ints."""
    d_model = CLASSIFIER.positive_int("d_model", d_model)
    num_heads = CLASSIFIER.positive_int("num_heads", num_heads)
    if d_model % num_heads:
        raise ValueError(
            "`d_model` must be a multiple of `num_heads`. "
            f"Received: d_model={d_model}, num_heads={num_heads}"
        )
    return d_model, num_heads


def _shape_tuple(input_shape: Any) -> tuple[Any, ...] | None:
    if isinstance(input_shape, (str, bytes)) or not isinstance(input_shape, Sequence):
        return None
    return tuple(input_shape)


def input_1d(model: str, input_shape: Any) -> tuple[int, int]:
    """Checks a classifier's 1-D input ``(n_samples, n_leads)`` and returns it as ints."""
    shape = _shape_tuple(input_shape)
    if shape is None or len(shape) != 2 or not all(is_int(v) and v >= 1 for v in shape):
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
        or not all(is_int(v) and v >= 1 for v in shape)
        or shape[-1] != 1
    ):
        raise ValueError(
            f"{model} expects input (n_beats, n_scales, n_time, 1); "
            f"Received: input_shape={input_shape!r}"
        )
    n_beats, n_scales, n_time, channels = (int(v) for v in shape)
    return n_beats, n_scales, n_time, channels


def window_shape(input_shape: Any, *, variable_length: bool = False) -> tuple:
    """Checks a denoiser window shape ``(samples, leads)``; returns it as a tuple.

    Args:
        input_shape: ``(samples, leads)``, batch axis excluded.
        variable_length: Whether ``samples`` may be ``None`` (recurrent models).

    Returns:
        ``(samples, leads)`` as a tuple (``samples`` stays ``None`` when it was).
    """
    shape = tuple(input_shape) if isinstance(input_shape, (tuple, list)) else None
    ok = shape is not None and len(shape) == 2 and is_int(shape[1]) and shape[1] >= 1
    if ok:
        samples = shape[0]
        ok = (samples is None and variable_length) or (is_int(samples) and samples >= 1)
    if not ok:
        what = "(samples or None, leads)" if variable_length else "(samples, leads)"
        raise ValueError(
            f"`input_shape` must be {what} with positive ints. "
            f"Received: input_shape={input_shape!r}"
        )
    return shape


def divisible_length(samples: int, factor: int, why: str) -> None:
    """Raises unless ``samples`` is a multiple of ``factor`` (``why`` names the reason)."""
    if samples % factor:
        raise ValueError(
            f"Input length must be divisible by {factor} ({why}). "
            f"Received: input_shape[0]={samples}"
        )


def conv_window_args(
    input_shape: Any, filters: Any, kernel_size: Any, *, halvings: str, bottleneck: bool = False
) -> tuple[int, int, tuple[int, ...]]:
    """Checks the arguments every convolutional denoiser shares.

    Each entry of ``filters`` halves the rate once (``bottleneck=True``: all but the last),
    so the window length must be divisible by ``2 ** halvings``.

    Args:
        input_shape: ``(samples, leads)``.
        filters: Widths per level.
        kernel_size: Conv kernel length in samples.
        halvings: What halves the rate, for the message (``"max-pool blocks"``).
        bottleneck: Whether the last entry of ``filters`` is a bottleneck at the lowest rate.

    Returns:
        ``(samples, leads, filters)`` with ``filters`` as a tuple of ints.
    """
    samples, leads = window_shape(input_shape)
    filters = DENOISER.positive_ints("filters", filters)
    DENOISER.positive_int("kernel_size", kernel_size)
    n = len(filters) - int(bottleneck)
    divisible_length(samples, 2**n, f"{n} {halvings}")
    return samples, leads, filters


def patch_transformer_args(
    input_shape, *, patch_len, d_model, num_heads, num_layers, ff_mult, dropout
) -> tuple[int, int]:
    """Checks the arguments of the patch-Transformer denoisers; returns ``(samples, leads)``."""
    samples, leads = window_shape(input_shape)
    for name, value in (
        ("patch_len", patch_len),
        ("d_model", d_model),
        ("num_heads", num_heads),
        ("num_layers", num_layers),
        ("ff_mult", ff_mult),
    ):
        DENOISER.positive_int(name, value)
    DENOISER.rate("dropout", dropout)
    if d_model % num_heads:
        raise ValueError(
            f"`num_heads` must divide `d_model`={d_model}. Received: num_heads={num_heads}"
        )
    divisible_length(samples, patch_len, f"patch_len={patch_len}")
    return samples, leads
