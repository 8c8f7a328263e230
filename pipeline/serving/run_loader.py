"""A trained run folder as prediction and export need it: task, config, training statistics
and one named checkpoint, loaded in Keras safe mode.

Owns :class:`Run`, :func:`load_run`, the checkpoint choice (``best`` refuses a missing
``best.keras`` instead of silently taking ``last.keras``) and :func:`normalize`, the NumPy
twin of the loader's normalizer.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.core.config import PipelineConfig, load_config
from pipeline.core.io_utils import PipelineError, read_json
from pipeline.data import normalization
from pipeline.data.tasks import Task, get_task
from pipeline.evaluation import pass_through

CHECKPOINTS = ("best", "last")
"""``best``: lowest validation loss (``best.keras``); ``last``: the last epoch (``last.keras``)."""


@dataclasses.dataclass(frozen=True)
class Run:
    """What prediction needs from a run folder."""

    path: Path
    task: Task
    model_name: str
    cfg: PipelineConfig
    mean: np.ndarray
    scale: np.ndarray
    input_shape: tuple[int, ...]
    model: Any
    checkpoint: Path | None = None
    """The checkpoint file the model was loaded from (named in every output)."""
    gate: Any = None
    """A denoiser run's pass-through gate chosen on validation
    (:mod:`pipeline.evaluation.pass_through`), applied after the model; ``None``: none."""

    def predict(self, x: np.ndarray, batch_size: int = 256) -> np.ndarray:
        """Model outputs for normalized inputs, ``batch_size`` examples at a time."""
        if len(x) == 0:
            n_out = self.input_shape if self.task.denoising else (self.task.n_outputs,)
            return np.zeros((0, *n_out), np.float32)
        return np.concatenate([np.asarray(self.model.predict_on_batch(x[i : i + batch_size]))
                               for i in range(0, len(x), batch_size)])


def checkpoint_path(run_dir: Path, which: str = "best") -> Path:
    """The checkpoint file ``which`` (``best`` or ``last``) of a run, or a one-line refusal.

    Raises:
        PipelineError: unknown ``which``, or the file is missing (for ``best``, the message
            says whether ``last.keras`` exists and how to use it).
    """
    from pipeline.training.checkpoints import CKPT_DIR

    if which not in CHECKPOINTS:
        raise PipelineError(f"--checkpoint must be one of {list(CHECKPOINTS)}. Received: {which!r}")
    folder = Path(run_dir) / CKPT_DIR
    path = folder / f"{which}.keras"
    if path.is_file():
        return path
    other = folder / ("last.keras" if which == "best" else "best.keras")
    if not other.is_file():
        raise PipelineError(f"{run_dir}: no checkpoint found (train the model first)")
    if which == "best":
        raise PipelineError(f"{path}: best checkpoint not found ({other.name} exists: pass "
                            "--checkpoint last to predict with the last epoch's weights)")
    raise PipelineError(f"{path}: last checkpoint not found (pass --checkpoint best to use "
                        f"{other.name})")


def load_run(run_dir: str | Path, checkpoint: str = "best") -> Run:
    """Reads a run folder: ``model.json``, ``normalization.json``, ``config.yaml`` and the
    ``checkpoint`` (``best`` or ``last``) in Keras safe mode.

    Raises:
        PipelineError: a file is missing or does not match the task; the checkpoint asked
            for does not exist (never replaced by the other one silently).
    """
    from pipeline.training.checkpoints import load_best_model

    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise PipelineError(f"{run_dir}: run folder not found")
    meta = read_json(run_dir / "model.json", "model description")
    try:
        task = get_task(str(meta["task"]))
    except KeyError as exc:
        raise PipelineError(f"{run_dir / 'model.json'}: {exc}") from None
    cfg_path = run_dir / "config.yaml"
    if not cfg_path.is_file():
        raise PipelineError(f"{cfg_path}: run config not found")
    cfg = load_config(cfg_path, apply_env=False)
    mean, scale = normalization.load(run_dir / "normalization.json", task.kind,
                                     normalization.n_channels(task.kind, cfg, task.rr_channels))
    path = checkpoint_path(run_dir, checkpoint)
    model = load_best_model(run_dir, prefer=checkpoint)  # the file checked just above
    gate = pass_through.load(run_dir) if task.denoising else None
    return Run(run_dir, task, str(meta.get("model", model.name)), cfg, mean, scale,
               tuple(int(s) for s in meta["input_shape"]), model, path, gate)


def normalize(x: np.ndarray, mean: np.ndarray, scale: np.ndarray, channel_axis: int) -> np.ndarray:
    """``(x - mean) / scale`` per channel in float32, computed like the loader's Normalizer."""
    shape = [1] * x.ndim
    shape[channel_axis] = -1
    inv = 1.0 / np.asarray(scale, np.float64)
    a = inv.astype(np.float32).reshape(shape)
    b = (-np.asarray(mean, np.float64) * inv).astype(np.float32).reshape(shape)
    return np.asarray(x, np.float32) * a + b


def run_header(run: Run) -> dict[str, Any]:
    """The fields every prediction output starts with: run, task, model and checkpoint."""
    return {"run": str(run.path), "task": run.task.name, "model": run.model_name,
            "checkpoint": run.checkpoint.name if run.checkpoint else None,
            "checkpoint_path": str(run.checkpoint) if run.checkpoint else None}
