"""Per-epoch validation on validation patients: loss, the selection metrics (macro F1,
macro AUC, SNR improvement per noise level) and the datasets they are computed on.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from pipeline.core.config import PipelineConfig
from pipeline.core.io_utils import PipelineError
from pipeline.data.tasks import Task


def denoise_levels(cfg: PipelineConfig) -> list[float]:
    """Validated input SNRs (dB, ``inf`` = clean): the curriculum, then the evaluation levels."""
    levels = list(cfg.noise.curriculum_snr_db)
    return levels + [s for s in cfg.noise.eval_snr_db if s not in levels]


def level_label(snr_db: float) -> str:
    return "clean" if math.isinf(snr_db) else f"{snr_db:g}dB"


def denoise_val_sets(cfg: PipelineConfig, task: Task, files: Sequence[str], mean: np.ndarray,
                     scale: np.ndarray, masks: Mapping[str, np.ndarray] | None,
                     noise_records: Mapping[str, np.ndarray]) -> dict[str, Any]:
    """One validation dataset per level (validation noise segments, fixed noise per window)."""
    from pipeline.data import noise
    from pipeline.data.loader import create_dataset
    from pipeline.data.served import maybe_served

    out = {}
    for snr in denoise_levels(cfg):
        fn = maybe_served(noise.make_curriculum_noise_fn(cfg, "val", snr, cfg.noise.train_types,
                                                         noise=noise_records), cfg)
        out[level_label(snr)] = create_dataset(files, cfg, cfg.train.batch_size, False, mean, scale,
                                               task=task, noise_fn=fn, include=masks, check=False)
    return out


def _window_losses(x: np.ndarray, y: np.ndarray, pred: np.ndarray, mae_weight: float,
                   snr_weighting: bool, snr_db_loss: bool) -> np.ndarray:
    from pipeline.training.losses import SNRLoss

    if snr_db_loss:
        return np.asarray(SNRLoss(reduction=None)(y, pred))
    e = pred - y
    w = 1.0
    if snr_weighting:
        rel = np.sum((x - y) ** 2, axis=(1, 2)) / np.maximum(np.sum(y**2, axis=(1, 2)), 1e-12)
        w = 1.0 / np.maximum(rel, 1e-3)
    return w * (np.mean(e**2, axis=(1, 2)) + mae_weight * np.mean(np.abs(e), axis=(1, 2)))


def validate_denoiser(model: Any, val_sets: Mapping[str, Any], mean: np.ndarray, scale: np.ndarray,
                      mae_weight: float, snr_weighting: bool = False,
                      snr_db_loss: bool = False) -> dict[str, float]:
    """Loss (normalized units, weighted as in training) and SNR improvement (mV) per level.

    With ``snr_db_loss`` the loss is ``SNRLoss``'s (minus the capped output SNR in dB).
    """
    from pipeline.evaluation.denoise_metrics import window_metrics

    out = {}
    losses = []
    for label, ds in val_sets.items():
        imps, errs = [], []
        for x, y in ds:
            x, y = x.numpy(), y.numpy()
            pred = np.asarray(model.predict_on_batch(x))
            errs.append(_window_losses(x, y, pred, mae_weight, snr_weighting, snr_db_loss))
            clean = y * scale + mean
            imps.append(window_metrics(clean, x * scale + mean, pred * scale + mean)["snr_imp_db"])
        loss = float(np.mean(np.concatenate(errs)))
        losses.append(loss)
        out[f"val_loss_{label}"] = loss
        imp = np.concatenate(imps)
        if np.isfinite(imp).any():
            out[f"val_snr_imp_{label}"] = float(np.mean(imp[np.isfinite(imp)]))
    out["val_loss"] = float(np.mean(losses))
    return out


def validate_classifier(model: Any, ds: Any, y_true: np.ndarray, task: Task) -> dict[str, float]:
    """Validation loss plus macro AUC (multi-label) or accuracy and macro F1 (single-label)."""
    res = model.evaluate(ds, verbose=0, return_dict=True)
    probs = np.asarray(model.predict(ds, verbose=0))
    out = {"val_loss": float(res["loss"])}
    if len(probs) != len(y_true):
        raise PipelineError(f"validation predictions ({len(probs)}) and labels ({len(y_true)}) differ")
    if task.multilabel:
        from sklearn.metrics import roc_auc_score

        ok = [k for k in range(y_true.shape[1]) if 0 < y_true[:, k].sum() < len(y_true)]
        out["val_macro_auc"] = (float(roc_auc_score(y_true[:, ok], probs[:, ok], average="macro"))
                                if ok else float("nan"))
    else:
        from sklearn.metrics import f1_score

        pred = probs.argmax(1)
        out["val_accuracy"] = float((pred == y_true).mean())
        out["val_macro_f1"] = float(f1_score(y_true, pred, average="macro",
                                             labels=sorted(set(y_true.tolist())), zero_division=0))
    return out
