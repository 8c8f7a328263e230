"""Tasks: what is learned from which TFRecord kind, with which labels and output activation.

A model can be trained on any task whose input it accepts (``ModelSpec.input_kind``); an
impossible pairing fails at once with a clear message (:func:`check_pairing`).

Three ways to give a beat classifier the rhythm: none (``mitdb_*_segments``,
``mitdb_*_sequences``: the RR-free ablations), three constant RR channels appended to the
segment (``*_rr``), or the windows stage's patient-relative rhythm vector as a second model
input (``*_rhythm``: the loader yields ``({"ecg": x, "rr": r}, y)`` and the classifier is
built with ``n_rr_features = len(r)``; for sequences ``r`` is the middle beat's vector).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from pipeline.core.io_utils import PipelineError, UnknownNameError
from pipeline.data import labels


@dataclasses.dataclass(frozen=True)
class Task:
    name: str
    kind: str
    """TFRecord kind read by the loader."""
    classes: tuple[str, ...]
    multilabel: bool = False
    denoising: bool = False
    label_map: tuple[int, ...] | None = None
    """Maps stored (AAMI5) class indices to this task's indices (AAMI4)."""
    accepts: tuple[str, ...] = ()
    """Model input kinds that fit this task."""
    rr_channels: bool = False
    """Segments only: append the beat's RR features as three constant channels (pre-RR and
    post-RR over the local mean RR, and the local mean RR in s) to the signal channel."""
    rhythm: bool = False
    """Segments and sequences: the beat's rhythm features (``pipeline.data.rhythm``, stored in
    the TFRecords' ``aux``) as a second model input ``rr``, z-scored with training statistics."""

    @property
    def n_outputs(self) -> int:
        return len(self.classes)

    @property
    def output_activation(self) -> str:
        return "sigmoid" if self.multilabel else "softmax"


_AAMI5_TO_4 = tuple(
    labels.AAMI4_CLASSES.index(labels.AAMI5_TO_AAMI4[c]) for c in labels.AAMI5_CLASSES
)

TASKS = {
    t.name: t
    for t in (
        Task("mitdb_aami5_segments", "segments", labels.AAMI5_CLASSES,
             accepts=("any1d", "segment")),
        Task("mitdb_aami4_segments", "segments", labels.AAMI4_CLASSES, label_map=_AAMI5_TO_4,
             accepts=("any1d", "segment")),
        Task("mitdb_aami5_segments_rr", "segments", labels.AAMI5_CLASSES,
             accepts=("any1d", "segment"), rr_channels=True),
        Task("mitdb_aami4_segments_rr", "segments", labels.AAMI4_CLASSES, label_map=_AAMI5_TO_4,
             accepts=("any1d", "segment"), rr_channels=True),
        Task("mitdb_aami5_segments_rhythm", "segments", labels.AAMI5_CLASSES,
             accepts=("any1d", "segment"), rhythm=True),
        Task("mitdb_aami4_segments_rhythm", "segments", labels.AAMI4_CLASSES,
             label_map=_AAMI5_TO_4, accepts=("any1d", "segment"), rhythm=True),
        Task("mitdb_aami5_sequences", "beats", labels.AAMI5_CLASSES, accepts=("sequence",)),
        Task("mitdb_aami5_sequences_rhythm", "beats", labels.AAMI5_CLASSES,
             accepts=("sequence",), rhythm=True),
        Task("mitdb_aami4_sequences", "beats", labels.AAMI4_CLASSES, label_map=_AAMI5_TO_4,
             accepts=("sequence",)),
        Task("ptbxl_superdiagnostic", "ptbxl", labels.PTBXL_SUPERCLASSES, multilabel=True,
             accepts=("any1d",)),
        Task("mitdb_denoise", "denoise", (), denoising=True, accepts=("window",)),
    )
}


def get_task(name: str) -> Task:
    """The task called ``name``.

    Raises:
        UnknownNameError: (a ``PipelineError`` and a ``KeyError``) naming the known tasks.
    """
    try:
        return TASKS[name]
    except KeyError:
        raise UnknownNameError(f"unknown task {name!r}; known: {sorted(TASKS)}") from None


def check_pairing(task: Task, model_kind: str, model_name: str, input_kind: str) -> None:
    """Raises ``ValueError`` when a model cannot be trained on a task."""
    want_kind = "denoiser" if task.denoising else "classifier"
    if model_kind != want_kind or input_kind not in task.accepts:
        raise ValueError(
            f"model {model_name!r} ({model_kind}, input {input_kind!r}) cannot be trained on "
            f"task {task.name!r}, which needs a {want_kind} taking {list(task.accepts)}"
        )


def check_model(task: Task, model_name: str) -> Any:
    """The registry spec of ``model_name`` for ``task``, checked before any data is read.

    Raises:
        UnknownNameError: no such model of the kind the task needs (the registered names
            listed).
        PipelineError: the model cannot be trained on the task (see :func:`check_pairing`).
    """
    from models import registry  # models/ imports nothing from pipeline/

    kind = "denoiser" if task.denoising else "classifier"
    try:
        spec = registry.get(kind, model_name)
    except KeyError as exc:
        raise UnknownNameError(str(exc.args[0]) if exc.args else str(exc)) from None
    try:
        check_pairing(task, kind, model_name, spec.input_kind)
    except ValueError as exc:
        raise PipelineError(str(exc)) from None
    return spec
