"""Checkpoints and training state of a run folder: ``checkpoints/{best,last}.keras`` and
``train_state.json`` (what a resume reads), the in-epoch timed checkpoint callback,
:func:`load_best_model` (safe-mode loading, used by training, evaluation and serving), a
preset folder's model file (:func:`check_model_file`, :func:`load_model_file`) and
:func:`load_init_model` (``train.init_from``: a run folder or a preset folder).
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pipeline.core.io_utils import (
    PipelineError,
    atomic_path,
    atomic_write_json,
    read_json,
    sha256_file,
)

STATE_FILE = "train_state.json"
CKPT_DIR = "checkpoints"
MODEL_FILE = "model.keras"
"""A preset folder's model (:mod:`pipeline.serving.presets`)."""
CARD_FILE = "preset.json"
"""A preset folder's card, with the sha256 of :data:`MODEL_FILE`."""


@dataclasses.dataclass
class TrainState:
    """Everything a resumed run needs besides the weights of ``last.keras``."""

    epoch: int = 0
    """Epochs completed."""
    step_in_epoch: int = 0
    learning_rate: float = 1e-3
    best_val_loss: float = math.inf
    """Validation loss of the best epoch (the epoch chosen by ``selection_metric``)."""
    best_epoch: int = -1
    plateau_wait: int = 0
    stop_wait: int = 0
    history: list = dataclasses.field(default_factory=list)
    finished: bool = False
    stop_reason: str = ""
    train_seconds: float = 0.0
    selection_metric: str = "val_loss"
    """The validation metric that chose ``best_epoch`` (``train.selection_metric`` resolved)."""
    best_value: float | None = None
    """Its value at ``best_epoch`` (None before the first epoch)."""


def save_checkpoint(model: Any, run_dir: Path, state: TrainState | None,
                    name: str = "last.keras") -> None:
    """Saves ``checkpoints/<name>`` atomically, then (with ``state``) the training state.

    A resume reads ``last.keras`` with ``train_state.json``, so only ``last.keras`` saves pass
    the state: writing it with ``best.keras`` at the end of an epoch would record that epoch's
    history before ``last.keras`` holds its weights (a run killed in between would train the
    epoch again and list it twice). A full disk raises a one-line :class:`PipelineError` and
    leaves the previous checkpoint in place.
    """
    with atomic_path(Path(run_dir) / CKPT_DIR / name, suffix=".tmp.keras") as tmp:
        model.save(tmp)
    if state is not None:
        atomic_write_json(Path(run_dir) / STATE_FILE, dataclasses.asdict(state))


def load_state(run_dir: Path) -> TrainState | None:
    """The saved state of a run that has a ``last.keras`` to resume from (else None)."""
    p = Path(run_dir) / STATE_FILE
    if not p.is_file() or not (Path(run_dir) / CKPT_DIR / "last.keras").is_file():
        return None
    d = read_json(p, "training state")
    try:
        return TrainState(**d)
    except TypeError as exc:
        raise PipelineError(f"{p}: training state does not match this version ({exc})") from exc


def timed_checkpoint(run_dir: Path, state: TrainState, every_s: float, start_step: int,
                     save: Callable[..., None] = save_checkpoint) -> Any:
    """Keras callback saving the model and state every ``every_s`` seconds within an epoch."""
    import keras

    class TimedCheckpoint(keras.callbacks.Callback):
        def __init__(self) -> None:
            super().__init__()
            self.t_last = time.monotonic()

        def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
            if every_s > 0 and time.monotonic() - self.t_last >= every_s:
                state.step_in_epoch = start_step + batch + 1
                save(self.model, run_dir, state)
                self.t_last = time.monotonic()

    return TimedCheckpoint()


def _safe_load(path: Path, compile: bool) -> Any:
    """A ``.keras`` file loaded in Keras safe mode, every model module imported first (their
    custom layers registered); a refusal or a damaged file is one line naming the file."""
    import keras

    import pipeline.training.losses  # noqa: F401 - registers the loss before loading
    from models import registry

    registry.names("denoiser")  # imports every model module: registers custom layers
    try:
        return keras.saving.load_model(path, compile=compile, safe_mode=True)
    except Exception as exc:  # unsafe content (Lambda, foreign module) or damaged file
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise PipelineError(f"{path}: refusing to load this model file in safe mode "
                            f"({type(exc).__name__}: {first[:300]})") from exc


def load_best_model(run_dir: Path, prefer: str = "best") -> Any:
    """A run's checkpoint (``best``: the epoch chosen by the run's selection metric, or
    ``last``), loaded in safe mode; falls back to the other one when missing."""
    order = ("best.keras", "last.keras") if prefer == "best" else ("last.keras", "best.keras")
    for name in order:
        p = Path(run_dir) / CKPT_DIR / name
        if p.is_file():
            return _safe_load(p, compile=True)
    raise PipelineError(f"{run_dir}: no checkpoint found (train the model first)")


def load_model_file(path: Path) -> Any:
    """A ``.keras`` file loaded in safe mode without compiling (no optimizer is built)."""
    return _safe_load(path, compile=False)


def check_model_file(folder: Path, card: dict, name: str = MODEL_FILE) -> Path:
    """The model file ``name`` of a preset folder, its sha256 checked against the card."""
    path = folder / name
    if not path.is_file():
        raise PipelineError(f"{path}: preset model file not found")
    want = (card.get("model_file") or {}).get("sha256")
    if not want:
        raise PipelineError(f"{folder / CARD_FILE}: the card has no model_file.sha256")
    got = sha256_file(path)
    if got != want:
        raise PipelineError(f"{path}: sha256 {got[:16]}... differs from the card's {want[:16]}... "
                            "(file changed or damaged; recreate the preset with python -m "
                            "pipeline.export --run RUN --format preset --name NAME --force)")
    return path


def load_init_model(source: str | Path) -> Any:
    """The model whose weights start a run (``train.init_from``): a run folder's best
    checkpoint, or a preset folder's model (its sha256 checked against the card), so a user
    can fine-tune a shipped preset on their own records."""
    source = Path(source)
    if not source.is_dir():
        raise PipelineError(f"{source}: train.init_from is not a folder (give a run folder or "
                            "a preset folder such as models/presets/NAME)")
    if (source / CARD_FILE).is_file():
        return load_model_file(check_model_file(source, read_json(source / CARD_FILE,
                                                                  "preset card")))
    return load_best_model(source)
