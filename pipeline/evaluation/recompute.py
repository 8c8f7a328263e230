"""Recomputes the headline numbers of a final evaluation from its per-example file.

:func:`recompute_differences` reads ``metrics_test.json`` and ``predictions_test.csv`` (or
``windows_test.csv``) of an evaluated folder, recomputes with the same functions the
evaluation used (:mod:`pipeline.evaluation.metrics`,
:func:`pipeline.evaluation.denoise_metrics.snr_improvement_ci`) every headline metric,
per-class row, confusion matrix and bootstrap interval, and lists each difference as one line.
Classic-filter rows of a denoising report are not in the file and are not recomputed. A
denoise-then-classify folder (``final_eval --noisy``) recomputes every condition from
``predictions_noisy.csv.gz``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.core.io_utils import PipelineError, read_json
from pipeline.data.tasks import get_task
from pipeline.evaluation import metrics, predictions

REL_TOL = 1e-9
SINGLE_LABEL_KEYS = ("n", "accuracy", "macro_f1", "macro_f1_present", "cohen_kappa",
                     "macro_roc_auc", "macro_pr_auc", "j_index", "jk_index", "confusion_matrix")
MULTILABEL_KEYS = ("n", "macro_auc", "macro_pr_auc", "fmax", "macro_f1")
CLASS_KEYS = ("support", "sensitivity", "ppv", "specificity", "f1", "roc_auc", "pr_auc")
CELL_KEYS = ("snr_in_db", "snr_out_db", "snr_imp_db", "prd_pct")


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, (list, tuple)) or isinstance(b, (list, tuple)):
        return (isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)) and len(a) == len(b)
                and all(_same(x, y) for x, y in zip(a, b, strict=True)))
    if a is None or b is None:
        return a is None and b is None
    a, b = float(a), float(b)
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    return math.isclose(a, b, rel_tol=REL_TOL, abs_tol=1e-12)


def _compare(name: str, stored: Any, got: Any, out: list[str]) -> None:
    if not _same(stored, got):
        out.append(f"{name}: metrics_test.json has {stored!r}, the predictions file gives {got!r}")


def recompute_differences(run_dir: Path) -> list[str]:
    """One line per number of ``metrics_test.json`` that the per-example file contradicts."""
    run_dir = Path(run_dir)
    stored = read_json(run_dir / "metrics_test.json", "final evaluation metrics")
    try:
        task = get_task(str(stored["task"]))
    except KeyError as exc:
        raise PipelineError(f"{run_dir}/metrics_test.json: no known task ({exc})") from exc
    if task.denoising:
        return _denoiser_differences(run_dir, stored)
    if "conditions" in stored:
        return _noisy_differences(run_dir, stored, task)
    return _classifier_differences(run_dir, stored, task)


def _noisy_differences(run_dir: Path, stored: Mapping[str, Any], task: Any) -> list[str]:
    """A denoise-then-classify folder: every condition's metrics and intervals (beat
    detection counts are not in the per-beat file and are not recomputed)."""
    from pipeline.evaluation import noisy_predictions as noisy

    groups = noisy.read_predictions(run_dir / noisy.PREDICTIONS_FILE)
    classes = list(task.classes)
    out: list[str] = []
    keys = [(str(e["condition"]), bool(e["denoised"])) for e in stored["conditions"]]
    if keys != list(groups):
        out.append(f"conditions: metrics_test.json has {keys}, the predictions file {list(groups)}")
    for e in stored["conditions"]:
        key = (str(e["condition"]), bool(e["denoised"]))
        if key not in groups:
            continue
        got = noisy.condition_metrics(groups[key], classes, int(stored["bootstrap_samples"]),
                                            int(stored.get("bootstrap_seed", 0)))
        name = f"{key[0]}{' denoised' if key[1] else ''}"
        _compare(f"{name}: beats", e["beats"], got["beats"], out)
        for k in SINGLE_LABEL_KEYS:
            if k in e["metrics"] or k in got["metrics"]:
                _compare(f"{name}: {k}", e["metrics"].get(k), got["metrics"].get(k), out)
        for c in classes:
            for k in CLASS_KEYS:
                _compare(f"{name}: per_class.{c}.{k}", e["metrics"]["per_class"][c].get(k),
                         got["metrics"]["per_class"][c].get(k), out)
        sub: list[str] = []
        _bootstrap_differences(e.get("ci95", {}), got["ci95"], sub)
        out.extend(f"{name}: {line}" for line in sub)
    return out


def _classifier_differences(run_dir: Path, stored: Mapping[str, Any], task: Any) -> list[str]:
    classes = list(stored.get("classes", task.classes))
    data = predictions.read_classifier_csv(run_dir / predictions.CLASSIFIER_FILE, classes,
                                           task.multilabel)
    y, probs, out = data["y"], data["probs"], []
    if task.multilabel:
        thr = stored.get("thresholds_from_validation")
        got = metrics.multilabel_metrics(y, probs, classes, thresholds=thr)
        want_pred = (probs >= np.asarray(thr if thr is not None else 0.5)).astype(np.int64)
        keys = MULTILABEL_KEYS
    else:
        got = metrics.single_label_metrics(y, probs, classes)
        want_pred = np.argmax(probs, axis=1)
        keys = SINGLE_LABEL_KEYS
    bad = np.flatnonzero(np.any(np.asarray(data["pred"]).reshape(len(y), -1)
                                != want_pred.reshape(len(y), -1), axis=1))
    if len(bad):
        out.append(f"{predictions.CLASSIFIER_FILE}: {len(bad)} rows whose pred disagrees with "
                   f"their probabilities (first: line {bad[0] + 2})")
    _compare("n_test_examples", stored.get("n_test_examples"), len(y), out)
    for k in keys:
        if k in stored or k in got:
            _compare(k, stored.get(k), got.get(k), out)
    for c in classes:
        for k in CLASS_KEYS:
            _compare(f"per_class.{c}.{k}", stored["per_class"][c].get(k), got["per_class"][c].get(k), out)
    groups = None if task.kind == "ptbxl" else data["record"]
    n_boot = int(stored.get("bootstrap_samples", 0))
    cis = metrics.headline_bootstrap(y, probs, classes, multilabel=task.multilabel, n=n_boot,
                                     seed=int(stored.get("bootstrap_seed", 0)),
                                     groups=groups) if n_boot > 0 else {}
    _bootstrap_differences(stored.get("bootstrap_95ci", {}), cis, out)
    return out


def _bootstrap_differences(stored: Mapping[str, Any], got: Mapping[str, Any], out: list[str]) -> None:
    if sorted(stored) != sorted(got):
        out.append(f"bootstrap_95ci: metrics_test.json has {sorted(stored)}, the predictions "
                   f"file gives {sorted(got)}")
    for name in sorted(set(stored) & set(got)):
        for k in ("point", "low", "high"):
            _compare(f"bootstrap_95ci.{name}.{k}", stored[name][k], got[name][k], out)


def _level(snr_in: float, labels: list[str]) -> str | None:
    """The evaluation level (label) a window's measured input SNR belongs to."""
    if math.isinf(snr_in):
        return "clean" if "clean" in labels else None
    finite = [lab for lab in labels if lab != "clean"]
    if not finite:
        return None
    best = min(finite, key=lambda lab: abs(float(lab) - snr_in))
    return best if abs(float(best) - snr_in) < 0.5 else None


def _denoiser_differences(run_dir: Path, stored: Mapping[str, Any]) -> list[str]:
    from pipeline.evaluation.denoise_metrics import snr_improvement_ci, summarize

    data = predictions.read_denoiser_csv(run_dir / predictions.DENOISER_FILE)
    method = stored.get("predictions", {}).get("method")
    if method not in stored.get("results", {}):
        raise PipelineError(f"{run_dir}/metrics_test.json: no results of the model method {method!r}")
    results, out = stored["results"][method], []
    cells: dict[tuple[str, str], list[int]] = {}
    for i, (nt, snr_in) in enumerate(zip(data["noise"], data["snr_in_db"], strict=True)):
        label = _level(float(snr_in), list(results.get(str(nt), {})))
        if label is None:
            out.append(f"{predictions.DENOISER_FILE}: line {i + 2}: noise {nt!r} at "
                       f"{snr_in:.3f} dB is no evaluated condition")
            continue
        cells.setdefault((str(nt), label), []).append(i)
    ci_stored = stored.get("ci95_snr_imp_db", {}).get(method, {})
    for nt, by_snr in results.items():
        for label, summary in by_snr.items():
            idx = np.asarray(cells.get((nt, label), []), np.int64)
            per = {k: data[k][idx] for k in CELL_KEYS if k != "snr_imp_db"}
            per["snr_imp_db"] = per["snr_out_db"] - per["snr_in_db"]
            got = summarize(per) if len(idx) else {}
            for k in CELL_KEYS:
                for stat in ("mean", "n"):
                    _compare(f"results.{method}.{nt}.{label}.{k}.{stat}",
                             summary.get(k, {}).get(stat), got.get(k, {}).get(stat), out)
            want_ci = ci_stored.get(nt, {}).get(label)
            n_boot = int(stored.get("bootstrap_samples", 0))
            got_ci = snr_improvement_ci(per["snr_imp_db"], data["record"][idx], n=n_boot,
                                        seed=int(stored.get("bootstrap_seed", 0))) \
                if len(idx) and n_boot > 0 else None
            for k in ("point", "low", "high"):
                _compare(f"ci95_snr_imp_db.{method}.{nt}.{label}.{k}",
                         (want_ci or {}).get(k), (got_ci or {}).get(k), out)
    return out
