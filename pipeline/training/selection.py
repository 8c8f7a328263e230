"""The one objective that selects: best checkpoint, early stopping, learning-rate plateau and
the tuning score all follow ``train.selection_metric`` (``auto``: validation macro F1 for
single-label classifiers, macro AUC for multi-label ones, mean SNR improvement over the
training noise levels for denoisers), so train, tune, kfold and final_eval agree on what
"best" means.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import keras
import numpy as np

from pipeline.core.config import PipelineConfig
from pipeline.core.io_utils import PipelineError
from pipeline.data.tasks import Task

DIRECTIONS = {"val_loss": "min", "val_macro_f1": "max", "val_macro_auc": "max",
              "val_snr_improvement_db": "max"}
"""Every selection metric and whether lower (min) or higher (max) is better."""


def default_metric(task: Task) -> str:
    """What ``auto`` means for ``task``."""
    if task.denoising:
        return "val_snr_improvement_db"
    return "val_macro_auc" if task.multilabel else "val_macro_f1"


def check_metric(name: str, task: Task, key: str) -> tuple[str, str]:
    """``(name, direction)`` after checking that ``task`` reports ``name``."""
    if name == "auto":
        name = default_metric(task)
    if name not in DIRECTIONS:
        raise PipelineError(f"unknown {key} {name!r}; known: auto, {', '.join(DIRECTIONS)}")
    single_label = not task.denoising and not task.multilabel
    needs = {"val_macro_f1": (single_label, "a single-label classification"),
             "val_macro_auc": (task.multilabel, "a multi-label classification"),
             "val_snr_improvement_db": (task.denoising, "a denoising")}
    ok, what = needs.get(name, (True, ""))
    if not ok:
        raise PipelineError(f"{key} {name} needs {what} task; {task.name} is not one")
    return name, DIRECTIONS[name]


def resolve_selection(cfg: PipelineConfig, task: Task) -> tuple[str, str]:
    """``(metric, direction)`` of ``train.selection_metric`` for ``task``."""
    return check_metric(cfg.train.selection_metric, task, "train.selection_metric")


def is_better(value: float | None, best: float | None, direction: str) -> bool:
    """Whether ``value`` beats ``best`` (a missing or non-finite best is beaten by any
    finite value; a non-finite value never wins)."""
    if value is None or not math.isfinite(value):
        return False
    if best is None or not math.isfinite(best):
        return True
    return value < best - 1e-6 if direction == "min" else value > best + 1e-6


def training_snr_levels(cfg: PipelineConfig) -> tuple[float, ...]:
    """Finite input SNRs (dB) the denoiser trains at (``noise.schedule``)."""
    levels = cfg.noise.mix_snr_db if cfg.noise.schedule == "mix" else cfg.noise.curriculum_snr_db
    return tuple(s for s in levels if math.isfinite(s))


def snr_improvement_db(val: Mapping[str, float], levels: Sequence[float]) -> float:
    """Mean of the per-level ``val_snr_imp_<level>dB`` over ``levels`` (those validated;
    all validated finite levels when none of ``levels`` is)."""
    keys = [f"val_snr_imp_{s:g}dB" for s in levels]
    vals = [val[k] for k in keys if k in val]
    if not vals:
        vals = [v for k, v in val.items() if k.startswith("val_snr_imp_") and k != "val_snr_imp_clean"]
    vals = [v for v in vals if math.isfinite(v)]
    return float(np.mean(vals)) if vals else float("nan")


@keras.saving.register_keras_serializable(package="ecg")
class SNRImprovement(keras.metrics.Mean):
    """Mean SNR improvement (dB, in mV after undoing the normalization) of windows whose
    input SNR is ``input_snr_db`` (the tuning data): the denoisers' tuning objective."""

    def __init__(self, mean: Sequence[float] = (0.0,), scale: Sequence[float] = (1.0,),
                 input_snr_db: float = 12.0, name: str = "snr_improvement_db", **kwargs: Any):
        super().__init__(name=name, **kwargs)
        self.mean_mv = [float(v) for v in np.ravel(mean)]
        self.scale_mv = [float(v) for v in np.ravel(scale)]
        self.input_snr_db = float(input_snr_db)

    def update_state(self, y_true: Any, y_pred: Any, sample_weight: Any = None) -> None:
        ops = keras.ops
        m = ops.convert_to_tensor(np.asarray(self.mean_mv, "float32"))
        s = ops.convert_to_tensor(np.asarray(self.scale_mv, "float32"))
        clean = ops.cast(y_true, "float32") * s + m
        den = ops.cast(y_pred, "float32") * s + m
        p_sig = ops.sum(ops.square(clean), axis=(-2, -1))
        p_err = ops.sum(ops.square(den - clean), axis=(-2, -1)) + 1e-12
        snr_out = 10.0 * ops.log(p_sig / p_err) / math.log(10.0)
        super().update_state(snr_out - self.input_snr_db, sample_weight)

    def get_config(self) -> dict:
        return {**super().get_config(), "mean": self.mean_mv, "scale": self.scale_mv,
                "input_snr_db": self.input_snr_db}


def keras_metrics(name: str, task: Task, mean: Any = None, scale: Any = None,
                  input_snr_db: float = 12.0) -> list[Any]:
    """Keras metrics that make ``fit`` log ``name`` (Keras Tuner reads the objective there)."""
    if name == "val_macro_f1":
        # threshold=None: the arg-max class counts as predicted (single-label).
        return [keras.metrics.F1Score(average="macro", threshold=None, name="macro_f1")]
    if name == "val_macro_auc":
        return [keras.metrics.AUC(multi_label=True, num_labels=task.n_outputs, name="macro_auc")]
    if name == "val_snr_improvement_db":
        return [SNRImprovement(mean if mean is not None else (0.0,),
                               scale if scale is not None else (1.0,), input_snr_db)]
    return []
