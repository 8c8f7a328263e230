"""Makes and registers a classifier builder from its body: the part every classifier shares.

Every classifier takes ``build(input_shape, n_outputs, *, ..., n_rr_features=0,
output_activation="softmax")``, checks the input shape and the task's arguments, makes the
inputs (one ECG input, or ``{"ecg", "rr"}`` with RR features), ends in the same dense head and
is named after its registry key. This module owns that frame; a model module writes only its
body (what turns the input tensor into pooled features) and declares its argument bundles::

    CONV = blocks.ConvStack(filters=(64, 128, 256), kernel_size=5, pool_size=2)
    HEAD = blocks.Head(dense_units=128, dropout=0.5)

    @classifier("cnn", search_space, head=HEAD, conv=CONV)
    def build(ecg, conv, *, lstm_units=128):   # the body; ``build`` becomes the builder
        ...
        return features                        # (batch, features)

The builder's keyword arguments are the fields of each bundle (``filters``, ``kernel_size``,
``pool_size``), the body's own keyword-only arguments, the head's (``dense_units``,
``dropout``) and ``n_rr_features``, ``output_activation``, with the declared values as
defaults (``inspect.signature(build)`` shows them, so ``ModelSpec.default_kwargs`` and the
search-space test read them). An unknown keyword raises ``TypeError`` naming it.
"""

from __future__ import annotations

import functools
import inspect
import textwrap
from collections.abc import Callable
from typing import Any

import keras

from models import checks
from models.checks import CLASSIFIER as check
from models.classifiers import blocks
from models.registry import register

_INPUTS = {
    # input_kind -> (input-shape check, name of the single input without RR)
    "any1d": (checks.input_1d, "ecg"),
    "sequence": (checks.input_sequence, "scalograms"),
}
_KEYWORD = inspect.Parameter.KEYWORD_ONLY
_TASK_ARGUMENTS = (
    inspect.Parameter("n_rr_features", _KEYWORD, default=0),
    inspect.Parameter("output_activation", _KEYWORD, default="softmax"),
)


def model_inputs(name: str, input_kind: str, input_shape: Any, n_rr_features: int) -> tuple:
    """Checks ``input_shape`` for ``input_kind``; returns ``(inputs, ecg, rr)``.

    ``n_rr_features == 0``: one input (``ecg``, or ``scalograms`` for sequences, as in the
    models saved so far), ``rr`` is ``None``. ``> 0``: ``inputs`` is the dict ``{"ecg": (batch,
    *input_shape), "rr": (batch, n_rr_features)}`` of two inputs named ``ecg`` and ``rr``.
    """
    check_shape, single_name = _INPUTS[input_kind]
    shape = check_shape(name, input_shape)
    if not n_rr_features:
        ecg = keras.Input(shape=shape, name=single_name)
        return ecg, ecg, None
    ecg = keras.Input(shape=shape, name="ecg")
    rr = keras.Input(shape=(n_rr_features,), name="rr")
    return {"ecg": ecg, "rr": rr}, ecg, rr


_FRAME_DOC = """\
    {dropout}: dropout rate before the output layer, in ``[0, 1)``.
    n_outputs: number of classes (softmax) or labels (sigmoid).
    n_rr_features: ``0``: one input, named ``{single}``, as in the models saved so far;
        ``> 0``: the model takes ``{{"ecg": (batch, *input_shape), "rr": (batch,
        n_rr_features)}}`` and the RR vector joins the head (:func:`blocks.join_side_inputs`).
    output_activation: ``softmax`` (single-label), ``sigmoid`` (multi-label) or ``linear``.

Returns:
    ``keras.Model`` named ``{name}`` (a preset of it: the preset's name) mapping
    ``(batch, *input_shape)`` to ``(batch, n_outputs)``.
"""


def _docstring(body: Callable[..., Any], name: str, head: blocks.Head, input_kind: str) -> str:
    """The body's docstring, which ends in its Args section, with the frame's arguments
    (head dropout, task arguments) and the Returns section appended."""
    frame = _FRAME_DOC.format(
        dropout=head.dropout_name, single=_INPUTS[input_kind][1], name=name
    )
    return (body.__doc__ or "").rstrip() + "\n" + textwrap.indent(frame, "    ")


def _signature(body: Callable[..., Any], head: blocks.Head, bundles: dict) -> inspect.Signature:
    """The builder's signature; raises ``TypeError`` unless the body takes the input tensor
    and then exactly the bundles, by name."""
    params = list(inspect.signature(body).parameters.values())
    taken = [p.name for p in params[1:] if p.kind is not _KEYWORD]
    if taken != list(bundles):
        raise TypeError(
            f"the body of a classifier takes the input, then its bundles {list(bundles)}, then "
            f"keyword-only arguments. Received: {body.__qualname__}{inspect.signature(body)}"
        )
    positional = inspect.Parameter.POSITIONAL_OR_KEYWORD
    out = [inspect.Parameter("input_shape", positional), inspect.Parameter("n_outputs", positional)]
    for bundle in bundles.values():
        out += _keywords(bundle)
    out += [p for p in params if p.kind is _KEYWORD]
    out += _keywords(head)
    return inspect.Signature([*out, *_TASK_ARGUMENTS])  # a name given twice raises ValueError


def _keywords(bundle: blocks.Arguments) -> list[inspect.Parameter]:
    return [inspect.Parameter(k, _KEYWORD, default=v) for k, v in bundle.arguments().items()]


def classifier(
    name: str,
    search_space: Callable[[Any], dict[str, Any]],
    *,
    head: blocks.Head,
    input_kind: str = "any1d",
    **bundles: blocks.Arguments,
) -> Callable[[Callable[..., Any]], Callable[..., keras.Model]]:
    """Decorator: registers the classifier ``name`` whose body it decorates; returns the builder.

    Args:
        name: Registry key and ``model.name``.
        search_space: ``search_space(hp)``, registered with the builder.
        head: The default head (its values are the builder's defaults).
        input_kind: ``any1d`` (``(n_samples, n_leads)``) or ``sequence`` (``(n_beats,
            n_scales, n_time, 1)``), as registered.
        **bundles: Argument bundles (:class:`blocks.Arguments`); the body receives each one,
            checked, as the keyword argument of the same name.

    Returns:
        A decorator turning ``body(x, <bundles>, *, <own keywords>) -> features`` into the
        registered ``build(input_shape, n_outputs, *, ...) -> keras.Model``, documented by
        the body's docstring (which ends in its Args section) and the frame's arguments.
    """

    def deco(body: Callable[..., Any]) -> Callable[..., keras.Model]:
        signature = _signature(body, head, bundles)

        @functools.wraps(body, assigned=("__module__",), updated=())
        def build(*args: Any, **kwargs: Any) -> keras.Model:
            bound = signature.bind(*args, **kwargs)
            bound.apply_defaults()
            values = dict(bound.arguments)
            checked = {
                key: bundle.replaced({k: values.pop(k) for k in bundle.arguments()})
                for key, bundle in bundles.items()
            }
            model_head = head.replaced({k: values.pop(k) for k in head.arguments()})
            output_activation = checks.output_activation(values.pop("output_activation"))
            n_outputs = check.positive_int("n_outputs", values.pop("n_outputs"))
            n_rr_features = checks.non_negative_int("n_rr_features", values.pop("n_rr_features"))
            shape = values.pop("input_shape")
            inputs, ecg, rr = model_inputs(name, input_kind, shape, n_rr_features)
            features = body(ecg, **checked, **values)
            outputs = model_head(features, n_outputs, output_activation, rr)
            return keras.Model(inputs, outputs, name=name)

        build.__signature__ = signature
        build.__doc__ = _docstring(body, name, head, input_kind)
        build.__qualname__ = build.__name__ = "build"
        register(name, kind="classifier", search_space=search_space, input_kind=input_kind)(build)
        return build

    return deco
