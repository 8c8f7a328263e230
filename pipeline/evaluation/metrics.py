"""Classification metrics: per-class tables, AUCs, F-max, thresholds and bootstrap intervals.

Conventions used everywhere in this module:

* Single-label predictions are ``argmax(probs, axis=1)``; ties go to the lowest class index.
* Multi-label predictions are ``probs >= threshold`` (per class).
* Sensitivity (Se) = TP / (TP + FN), positive predictive value (+P, PPV, precision) =
  TP / (TP + FP), specificity (Sp) = TN / (TN + FP), F1 = 2 TP / (2 TP + FP + FN).
* A ratio whose denominator is 0 is *undefined*; it is reported as ``zero_division``
  (default 0.0, as scikit-learn's ``zero_division=0``) and its name is listed under the
  class's ``"undefined"`` key, so a 0 that means "no data" can be told from a real 0.
* One-vs-rest ROC AUC and PR AUC (average precision) need at least one positive and one
  negative example: otherwise they are ``None`` (not 0, not a crash) and a note says why.
  Macro AUCs average over the classes where the AUC is defined; the classes used are listed.
* Every returned dictionary holds only JSON types (``float``, ``int``, ``str``, ``list``,
  ``dict``, ``None``), ready for :func:`pipeline.io_utils.atomic_write_json`.

Thresholds (PTB-XL protocol, shared REFERENCES.md): :func:`choose_thresholds` is given the
*validation* fold (fold 9) and its thresholds are then applied to the test fold (fold 10) via
``multilabel_metrics(..., thresholds=...)``. F-max, by its definition, picks its threshold on
the data it scores; it is a threshold-free summary and is reported next to, never instead of,
the F1 at validation thresholds.
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
from sklearn.metrics import average_precision_score, roc_auc_score

log = logging.getLogger("ecg.metrics")

FMAX_GRID = np.round(np.linspace(0.0, 1.0, 101), 2)
"""Global thresholds scanned by F-max: 0.00, 0.01, ..., 1.00."""

_AAMI_J_PAIRS = (("S", "V"), ("SVEB", "VEB"))


# ------------------------------------------------------------------------------ helpers


def _ratio(num: float, den: float, zero_division: float) -> tuple[float, bool]:
    """``num / den`` as a float, or ``(zero_division, True)`` when ``den == 0``."""
    if den == 0:
        return float(zero_division), True
    return float(num) / float(den), False


def _class_names(classes: Sequence[str], k: int) -> list[str]:
    names = [str(c) for c in classes]
    if len(names) != k:
        raise ValueError(
            f"`classes` has {len(names)} names but probs has {k} columns. Received: classes={names}"
        )
    if len(set(names)) != len(names):
        raise ValueError(f"`classes` must be unique. Received: classes={names}")
    return names


def _check_probs(probs: Any, n: int) -> np.ndarray:
    p = np.asarray(probs, dtype=np.float64)
    if p.ndim != 2 or p.shape[0] != n:
        raise ValueError(f"`probs` must have shape ({n}, n_classes). Received: shape={p.shape}")
    if p.shape[0] == 0:
        raise ValueError("no examples: `y_true` and `probs` are empty")
    if not np.all(np.isfinite(p)):
        raise ValueError("`probs` contains NaN or infinite values")
    return p


def _binary_counts(y: np.ndarray, pred: np.ndarray) -> tuple[int, int, int, int]:
    """(tp, fp, fn, tn) of boolean vectors."""
    tp = int(np.sum(y & pred))
    fp = int(np.sum(~y & pred))
    fn = int(np.sum(y & ~pred))
    tn = int(np.sum(~y & ~pred))
    return tp, fp, fn, tn


def _rates(tp: int, fp: int, fn: int, tn: int, zero_division: float) -> dict[str, Any]:
    out: dict[str, Any] = {"support": tp + fn, "n_predicted": tp + fp}
    undefined = []
    for name, num, den in (
        ("sensitivity", tp, tp + fn),
        ("ppv", tp, tp + fp),
        ("specificity", tn, tn + fp),
        ("f1", 2 * tp, 2 * tp + fp + fn),
    ):
        out[name], und = _ratio(num, den, zero_division)
        if und:
            undefined.append(name)
    out.update(tp=tp, fp=fp, fn=fn, tn=tn)
    out["undefined"] = undefined
    return out


def _ovr_auc(y: np.ndarray, score: np.ndarray) -> tuple[float | None, float | None, str | None]:
    """One-vs-rest (ROC AUC, average precision, reason when undefined)."""
    n_pos = int(y.sum())
    if n_pos == 0:
        return None, None, "no positive examples"
    if n_pos == y.size:
        return None, None, "no negative examples"
    return float(roc_auc_score(y, score)), float(average_precision_score(y, score)), None


def _mean_or_none(values: Sequence[float | None]) -> float | None:
    vals = [v for v in values if v is not None]
    return float(np.mean(vals)) if vals else None


# ------------------------------------------------------------------------- single label


def single_label_metrics(
    y_true: Any, probs: Any, classes: Sequence[str], *, zero_division: float = 0.0
) -> dict[str, Any]:
    """Metrics of a single-label (softmax) classifier, per class and overall.

    Args:
        y_true: ``(n,)`` integer class indices in ``[0, K)``.
        probs: ``(n, K)`` class scores (softmax probabilities); the prediction is the argmax.
        classes: the ``K`` class names, in column order.
        zero_division: value reported for a ratio with a zero denominator (then flagged).

    Returns:
        A JSON-ready dict with ``accuracy``; ``macro_f1`` (mean F1 over all ``K`` classes,
        undefined ones counting as ``zero_division``: scikit-learn's ``f1_score(average=
        "macro", labels=range(K))``); ``macro_f1_present`` (mean over classes with support);
        ``cohen_kappa``; ``macro_roc_auc`` / ``macro_pr_auc`` over ``auc_classes`` (classes
        with positives and negatives); ``per_class[name]`` with ``support``, ``n_predicted``,
        ``tp/fp/fn/tn``, ``sensitivity``, ``ppv``, ``specificity``, ``f1``, ``roc_auc``,
        ``pr_auc`` and ``undefined`` (names of 0/0 ratios); ``confusion_matrix`` (rows true,
        columns predicted, list of lists); ``notes`` (one line per class that lacks examples
        or predictions). When the classes include S and V (or SVEB and VEB), also the AAMI
        ``j_index`` = Se(S) + Se(V) + +P(S) + +P(V) and ``jk_index`` = kappa / 2 + j / 8
        (Mondejar-Guerra et al. 2019; EC57's "F called V is not a false V" exception is not
        applied here).
    """
    y, p, names = _check_single_label(y_true, probs, classes)
    k = p.shape[1]
    n = y.shape[0]
    pred = np.argmax(p, axis=1)
    cm = np.bincount(y * k + pred, minlength=k * k).reshape(k, k)
    per_class, notes = _single_label_rows(cm, y, p, names, zero_division)
    auc_classes = [c for c in names if per_class[c]["roc_auc"] is not None]
    po = float(np.trace(cm)) / n
    pe = float(np.dot(cm.sum(axis=1), cm.sum(axis=0))) / float(n * n)
    kappa, kappa_undefined = _ratio(po - pe, 1.0 - pe, zero_division)
    if kappa_undefined:
        notes.append(f"Cohen's kappa undefined (chance agreement is 1), set to {zero_division:g}")
    f1s = [per_class[c]["f1"] for c in names]
    out: dict[str, Any] = {
        "task": "single_label",
        "n": int(n),
        "classes": names,
        "zero_division": float(zero_division),
        "accuracy": po,
        "macro_f1": float(np.mean(f1s)),
        "macro_f1_present": _mean_or_none(
            [per_class[c]["f1"] for c in names if per_class[c]["support"] > 0]
        ),
        "cohen_kappa": kappa,
        "macro_roc_auc": _mean_or_none([per_class[c]["roc_auc"] for c in auc_classes]),
        "macro_pr_auc": _mean_or_none([per_class[c]["pr_auc"] for c in auc_classes]),
        "auc_classes": auc_classes,
        "per_class": per_class,
        "confusion_matrix": cm.astype(int).tolist(),
        "notes": notes,
    }
    out.update(_aami_indices(per_class, kappa))
    return out


def _check_single_label(y_true: Any, probs: Any, classes: Sequence[str]) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Validated ``(y int64 (n,), probs float64 (n, K), class names)``."""
    y = np.asarray(y_true)
    if y.ndim != 1:
        raise ValueError(f"`y_true` must be 1-D class indices. Received: shape={y.shape}")
    p = _check_probs(probs, y.shape[0])
    k = p.shape[1]
    names = _class_names(classes, k)
    if not np.issubdtype(y.dtype, np.integer):
        if not np.all(np.equal(np.mod(y, 1), 0)):
            raise ValueError("`y_true` must hold integer class indices")
        y = y.astype(np.int64)
    if y.min() < 0 or y.max() >= k:
        raise ValueError(
            f"`y_true` values must be in [0, {k}). Received: min={y.min()}, max={y.max()}"
        )
    return y, p, names


def _single_label_rows(cm: np.ndarray, y: np.ndarray, p: np.ndarray, names: list[str],
                       zero_division: float) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """Per-class rates and one-vs-rest AUCs from the confusion matrix, and their notes."""
    n = int(cm.sum())
    per_class: dict[str, dict[str, Any]] = {}
    notes: list[str] = []
    for i, name in enumerate(names):
        tp = int(cm[i, i])
        fp = int(cm[:, i].sum() - tp)
        fn = int(cm[i, :].sum() - tp)
        tn = int(n - tp - fp - fn)
        row = _rates(tp, fp, fn, tn, zero_division)
        row["roc_auc"], row["pr_auc"], why = _ovr_auc(y == i, p[:, i])
        if why is not None:
            notes.append(
                f"class {name!r}: {why} in y_true; ROC/PR AUC are None"
                + (
                    f"; {', '.join(row['undefined'])} set to {zero_division:g} (0/0)"
                    if row["undefined"]
                    else ""
                )
            )
        elif row["undefined"]:
            notes.append(
                f"class {name!r}: {', '.join(row['undefined'])} undefined (0/0), set to "
                f"{zero_division:g}"
            )
        per_class[name] = row
    return per_class, notes


def _aami_indices(per_class: Mapping[str, Mapping[str, Any]], kappa: float) -> dict[str, float]:
    """AAMI ``j_index`` and ``jk_index`` when the classes include S and V (or SVEB and VEB)."""
    for s, v in _AAMI_J_PAIRS:
        if s in per_class and v in per_class:
            j = (
                per_class[s]["sensitivity"]
                + per_class[v]["sensitivity"]
                + per_class[s]["ppv"]
                + per_class[v]["ppv"]
            )
            return {"j_index": float(j), "jk_index": float(0.5 * kappa + 0.125 * j)}
    return {}


# --------------------------------------------------------------------------- multi-label


def _check_multilabel(y_true: Any, probs: Any) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y_true)
    if y.ndim != 2:
        raise ValueError(f"`y_true` must be (n, K) 0/1 labels. Received: shape={y.shape}")
    p = _check_probs(probs, y.shape[0])
    if p.shape != y.shape:
        raise ValueError(f"`y_true` and `probs` shapes differ. Received: {y.shape} and {p.shape}")
    if not np.all((y == 0) | (y == 1)):
        raise ValueError("`y_true` must contain only 0 and 1")
    return y.astype(bool), p


def fmax_score(
    y_true: Any, probs: Any, grid: Sequence[float] | None = None
) -> tuple[float, float | None]:
    """Sample-centric F-max (CAFA protocol; reported for PTB-XL by Strodthoff et al. 2021).

    For each global threshold ``t`` of ``grid`` (default 0.00, 0.01, ..., 1.00), every sample
    gets the label set ``probs >= t``. Precision ``pr(t)`` is the mean per-sample precision
    over the samples with at least one predicted label; recall ``rc(t)`` is the mean
    per-sample recall over the samples with at least one true label. Then
    ``F(t) = 2 pr rc / (pr + rc)`` and ``F-max = max_t F(t)``. Note this is the harmonic mean
    of sample-averaged precision and recall, not the mean of per-sample F1 scores.

    F-max chooses its threshold on the data it scores (an oracle summary, by definition).

    Args:
        y_true: ``(n, K)`` 0/1 labels.
        probs: ``(n, K)`` scores in [0, 1].
        grid: thresholds to scan.

    Returns:
        ``(fmax, threshold)``; ``(0.0, None)`` when no threshold gives a defined F.
    """
    y, p = _check_multilabel(y_true, probs)
    ts = FMAX_GRID if grid is None else np.asarray(grid, dtype=np.float64)
    has_true = y.sum(axis=1) > 0
    n_true = y.sum(axis=1)
    best, best_t = 0.0, None
    for t in ts:
        pred = p >= t
        n_pred = pred.sum(axis=1)
        tp = (pred & y).sum(axis=1)
        covered = n_pred > 0
        if not covered.any() or not has_true.any():
            continue
        pr = float(np.mean(tp[covered] / n_pred[covered]))
        rc = float(np.mean(tp[has_true] / n_true[has_true]))
        if pr + rc == 0:
            continue
        f = 2 * pr * rc / (pr + rc)
        if f > best:
            best, best_t = f, float(t)
    return float(best), best_t


def multilabel_metrics(
    y_true: Any,
    probs: Any,
    classes: Sequence[str],
    thresholds: Sequence[float] | np.ndarray | None = None,
    *,
    zero_division: float = 0.0,
) -> dict[str, Any]:
    """Metrics of a multi-label (sigmoid) classifier such as PTB-XL superdiagnostic.

    Args:
        y_true: ``(n, K)`` 0/1 labels.
        probs: ``(n, K)`` sigmoid scores.
        classes: the ``K`` class names.
        thresholds: per-class thresholds (from :func:`choose_thresholds` on the validation
            fold); a class is predicted when ``probs >= threshold``. ``None`` uses 0.5 for
            every class and says so in ``thresholds_source``.
        zero_division: value reported for a 0/0 ratio (then flagged).

    Returns:
        A JSON-ready dict: ``macro_auc`` (scikit-learn ``roc_auc_score(average="macro")``
        over ``auc_classes``, the classes with both positives and negatives), ``macro_pr_auc``,
        ``fmax`` and ``fmax_threshold`` (:func:`fmax_score`), ``thresholds`` and
        ``thresholds_source``, ``macro_f1`` (mean over all classes at the thresholds),
        ``per_class[name]`` (``support``, ``roc_auc``, ``pr_auc``, ``threshold``,
        ``sensitivity``, ``ppv``, ``specificity``, ``f1``, counts, ``undefined``) and
        ``notes``.
    """
    y, p = _check_multilabel(y_true, probs)
    n, k = y.shape
    names = _class_names(classes, k)
    if thresholds is None:
        thr = np.full(k, 0.5)
        source = "default 0.5 (no thresholds given)"
    else:
        thr = np.asarray(thresholds, dtype=np.float64).reshape(-1)
        if thr.shape != (k,):
            raise ValueError(f"`thresholds` must have {k} values. Received: shape={thr.shape}")
        source = "given"
    pred = p >= thr[None, :]

    per_class: dict[str, dict[str, Any]] = {}
    notes: list[str] = []
    for i, name in enumerate(names):
        row = _rates(*_binary_counts(y[:, i], pred[:, i]), zero_division)
        row["threshold"] = float(thr[i])
        row["roc_auc"], row["pr_auc"], why = _ovr_auc(y[:, i], p[:, i])
        if why is not None:
            notes.append(f"class {name!r}: {why}; ROC/PR AUC are None")
        if row["undefined"]:
            notes.append(
                f"class {name!r}: {', '.join(row['undefined'])} undefined (0/0), set to "
                f"{zero_division:g}"
            )
        per_class[name] = row
    present = [i for i, c in enumerate(names) if per_class[c]["roc_auc"] is not None]
    macro_auc = (
        float(roc_auc_score(y[:, present], p[:, present], average="macro")) if present else None
    )
    fmax, fmax_t = fmax_score(y, p)
    return {
        "task": "multilabel",
        "n": int(n),
        "classes": names,
        "zero_division": float(zero_division),
        "macro_auc": macro_auc,
        "macro_pr_auc": _mean_or_none([per_class[names[i]]["pr_auc"] for i in present]),
        "auc_classes": [names[i] for i in present],
        "fmax": fmax,
        "fmax_threshold": fmax_t,
        "thresholds": [float(t) for t in thr],
        "thresholds_source": source,
        "macro_f1": float(np.mean([per_class[c]["f1"] for c in names])),
        "per_class": per_class,
        "notes": notes,
    }


def _best_f1_threshold(y: np.ndarray, s: np.ndarray, grid: np.ndarray | None) -> float | None:
    """Threshold maximizing F1 of ``s >= t`` for one class; ``None`` with no positives."""
    n_pos = int(y.sum())
    if n_pos == 0:
        return None
    if grid is not None:
        pred = s[:, None] >= grid[None, :]
        tp = (pred & y[:, None]).sum(axis=0)
        fp = pred.sum(axis=0) - tp
        f1 = 2 * tp / np.maximum(2 * tp + fp + (n_pos - tp), 1)
        return float(grid[int(np.argmax(f1))])
    order = np.argsort(-s, kind="stable")
    s_sorted, y_sorted = s[order], y[order]
    tp_cum = np.cumsum(y_sorted)
    fp_cum = np.cumsum(~y_sorted)
    # Last index of each run of equal scores: predicting "s >= s_sorted[i]" takes 0..i.
    last = np.r_[np.nonzero(np.diff(s_sorted))[0], s_sorted.size - 1]
    tp, fp = tp_cum[last], fp_cum[last]
    f1 = 2 * tp / (2 * tp + fp + (n_pos - tp))
    j = int(np.argmax(f1))  # first maximum = highest threshold among ties
    i = last[j]
    if i + 1 < s_sorted.size:  # midway to the next lower score: same predictions here
        return float((s_sorted[i] + s_sorted[i + 1]) / 2.0)
    return float(s_sorted[i])


def choose_thresholds(
    y_val: Any, probs_val: Any, *, grid: Sequence[float] | None = None, default: float = 0.5
) -> np.ndarray:
    """Per-class thresholds maximizing each class's F1 on VALIDATION data.

    Give this function the validation fold only (PTB-XL: fold 9), never the test fold: the
    thresholds are then applied unchanged to the test fold with
    ``multilabel_metrics(y_test, probs_test, classes, thresholds=...)``. It is a pure function
    of its arguments (no randomness, no global state, inputs not modified).

    Args:
        y_val: ``(n, K)`` 0/1 validation labels.
        probs_val: ``(n, K)`` validation scores.
        grid: candidate thresholds; ``None`` searches every distinct score exactly and returns
            the midpoint between the best score and the next lower one (same predictions on
            validation, less brittle on new data). Ties go to the highest threshold.
        default: threshold for a class with no positive example (F1 is 0 for every
            threshold); a warning names such classes.

    Returns:
        ``(K,)`` float64 thresholds; predict class ``k`` when ``probs[:, k] >= thresholds[k]``.
    """
    y, p = _check_multilabel(y_val, probs_val)
    g = None if grid is None else np.sort(np.asarray(grid, dtype=np.float64))[::-1]
    out = np.empty(y.shape[1], dtype=np.float64)
    missing = []
    for i in range(y.shape[1]):
        t = _best_f1_threshold(y[:, i], p[:, i], g)
        if t is None:
            missing.append(i)
            t = default
        out[i] = t
    if missing:
        warnings.warn(
            f"classes at columns {missing} have no positive validation example; their "
            f"threshold is the default {default}",
            stacklevel=2,
        )
    return out


# ------------------------------------------------------------------- headline functions


def accuracy(y_true: Any, probs: Any) -> float:
    """Single-label accuracy of ``argmax(probs)``."""
    return float(np.mean(np.asarray(y_true) == np.argmax(np.asarray(probs), axis=1)))


def macro_f1(y_true: Any, probs: Any) -> float:
    """Single-label macro F1 over all ``probs.shape[1]`` classes (0/0 counts as 0)."""
    y = np.asarray(y_true)
    p = np.asarray(probs)
    k = p.shape[1]
    cm = np.bincount(y * k + np.argmax(p, axis=1), minlength=k * k).reshape(k, k)
    tp = np.diag(cm).astype(np.float64)
    den = cm.sum(axis=0) + cm.sum(axis=1)
    return float(np.mean(np.where(den > 0, 2 * tp / np.maximum(den, 1), 0.0)))


AAMI_MAIN_CLASSES = ("N", "S", "V", "F")


def macro_f1_nsvf(per_class: Mapping[str, Any]) -> float | None:
    """Mean F1 over N, S, V and F from a report's ``per_class`` (Q, with a handful of test
    beats, left out as the inter-patient literature does); ``None`` unless all four are there."""
    f1 = [per_class[c]["f1"] for c in AAMI_MAIN_CLASSES
          if c in per_class and per_class[c].get("f1") is not None]
    return float(np.mean(f1)) if len(f1) == len(AAMI_MAIN_CLASSES) else None


def macro_auc(y_true: Any, probs: Any) -> float | None:
    """Macro one-vs-rest ROC AUC over the classes that have positives and negatives.

    ``y_true`` is ``(n,)`` class indices (single label) or ``(n, K)`` 0/1 labels
    (multi-label). ``None`` when no class qualifies.
    """
    y = np.asarray(y_true)
    p = np.asarray(probs, dtype=np.float64)
    onehot = y.astype(bool) if y.ndim == 2 else np.eye(p.shape[1], dtype=bool)[y]
    npos = onehot.sum(axis=0)
    keep = (npos > 0) & (npos < onehot.shape[0])
    if not keep.any():
        return None
    return float(roc_auc_score(onehot[:, keep], p[:, keep], average="macro"))


# ----------------------------------------------------------------------------- bootstrap


class BootstrapCI(tuple):
    """``(low, high, point)``; also ``.n_valid`` and ``.n_skipped`` replicate counts."""

    def __new__(cls, low: float, high: float, point: float, n_valid: int, n_skipped: int):
        obj = super().__new__(cls, (low, high, point))
        obj.n_valid = n_valid
        obj.n_skipped = n_skipped
        return obj

    @property
    def low(self) -> float:
        return self[0]

    @property
    def high(self) -> float:
        return self[1]

    @property
    def point(self) -> float:
        return self[2]

    def as_dict(self) -> dict[str, Any]:
        return {
            "low": self[0],
            "high": self[1],
            "point": self[2],
            "n_valid": self.n_valid,
            "n_skipped": self.n_skipped,
        }


def bootstrap_ci(
    metric_fn: Callable[[np.ndarray, np.ndarray], float | None],
    y_true: Any,
    probs: Any,
    n: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
    *,
    groups: Any = None,
) -> BootstrapCI:
    """Percentile bootstrap confidence interval of ``metric_fn(y_true, probs)``.

    Each replicate draws, with replacement, as many examples as there are (or, with
    ``groups``, as many groups as there are, keeping every example of a drawn group: resample
    records or patients, not beats, when beats of one record are correlated). A replicate
    whose metric is ``None``, not finite, or raises ``ValueError`` (a class missing from the
    resample, say) is skipped and counted in ``n_skipped``.

    Args:
        metric_fn: ``f(y_true_subset, probs_subset) -> float``, e.g. :func:`macro_auc`.
        y_true: labels, indexed along axis 0.
        probs: scores, indexed along axis 0.
        n: number of bootstrap replicates.
        seed: seed of the replicate draws (``numpy.random.default_rng``).
        alpha: 1 - confidence level; the interval is the ``alpha/2`` and ``1 - alpha/2``
            percentiles of the replicate values.
        groups: optional ``(n_examples,)`` group id of each example (record name...).

    Returns:
        :class:`BootstrapCI` ``(low, high, point)``, where ``point`` is the metric on the full
        data.

    Raises:
        ValueError: bad arguments, or no replicate gave a finite value.
    """
    if n < 1:
        raise ValueError(f"`n` must be >= 1. Received: n={n}")
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"`alpha` must be in (0, 1). Received: alpha={alpha}")
    y = np.asarray(y_true)
    p = np.asarray(probs)
    m = y.shape[0]
    if m == 0 or p.shape[0] != m:
        raise ValueError(
            f"`y_true` and `probs` need the same non-zero length. Received: {m} and {p.shape[0]}"
        )
    point_raw = metric_fn(y, p)
    point = float("nan") if point_raw is None else float(point_raw)
    rng = np.random.default_rng(seed)
    members: list[np.ndarray] | None = None
    if groups is not None:
        g = np.asarray(groups)
        if g.shape[0] != m:
            raise ValueError(f"`groups` needs {m} entries. Received: {g.shape[0]}")
        _, inverse = np.unique(g, return_inverse=True)
        order = np.argsort(inverse, kind="stable")
        bounds = np.cumsum(np.bincount(inverse))[:-1]
        members = np.split(order, bounds)
    values = []
    skipped = 0
    for _ in range(n):
        if members is None:
            idx = rng.integers(0, m, size=m)
        else:
            pick = rng.integers(0, len(members), size=len(members))
            idx = np.concatenate([members[i] for i in pick])
        try:
            v = metric_fn(y[idx], p[idx])
        except ValueError:
            v = None
        if v is None or not math.isfinite(float(v)):
            skipped += 1
            continue
        values.append(float(v))
    if not values:
        raise ValueError(f"no bootstrap replicate gave a finite metric ({n} skipped)")
    if skipped:
        log.warning("bootstrap: %d of %d replicates skipped (metric undefined)", skipped, n)
    low, high = np.percentile(values, [100 * alpha / 2, 100 * (1 - alpha / 2)])
    return BootstrapCI(float(low), float(high), point, len(values), skipped)


HEADLINE_F1_CLASSES = ("S", "V", "SVEB", "VEB")
"""Classes whose F1 gets a bootstrap interval in final evaluations (the minority classes)."""


def class_f1(k: int) -> Callable[[np.ndarray, np.ndarray], float]:
    """``f(y, probs) -> F1 of class k`` (argmax predictions; 0 when 0/0)."""

    def f1(y: np.ndarray, p: np.ndarray) -> float:
        pred = np.argmax(p, axis=1)
        tp = np.sum((pred == k) & (y == k))
        den = np.sum(pred == k) + np.sum(y == k)
        return float(2 * tp / den) if den else 0.0

    return f1


def headline_bootstrap(
    y_true: Any,
    probs: Any,
    classes: Sequence[str],
    *,
    multilabel: bool,
    n: int,
    seed: int,
    groups: Any = None,
) -> dict[str, dict[str, float]]:
    """Bootstrap 95 % intervals of the headline metrics of a final evaluation.

    Multi-label: ``macro_auc``. Single-label: ``accuracy``, ``macro_f1`` and ``f1_<c>`` for
    the classes of :data:`HEADLINE_F1_CLASSES` that occur in ``y_true``.

    Returns:
        ``{name: {"point", "low", "high"}}`` (see :func:`bootstrap_ci`).
    """
    y = np.asarray(y_true)
    if multilabel:
        heads: dict[str, Callable] = {"macro_auc": macro_auc}
    else:
        heads = {"accuracy": accuracy, "macro_f1": macro_f1}
        for k, c in enumerate(classes):
            if (y == k).any() and c in HEADLINE_F1_CLASSES:
                heads[f"f1_{c}"] = class_f1(k)
    out = {}
    for name, fn in heads.items():
        lo, hi, point = bootstrap_ci(fn, y, probs, n=n, seed=seed, groups=groups)
        out[name] = {"point": point, "low": lo, "high": hi}
    return out


# ------------------------------------------------------------------------------ markdown


def _fmt(v: Any, flag: bool = False, digits: int = 3) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, (int, np.integer)) and not isinstance(v, bool):
        return f"{int(v):,}"
    s = f"{float(v):.{digits}f}"
    return s + "*" if flag else s


def format_markdown(
    metrics: Mapping[str, Any],
    classes: Sequence[str] | None = None,
    *,
    ci: Mapping[str, Sequence[float]] | None = None,
) -> str:
    """Markdown report of :func:`single_label_metrics` or :func:`multilabel_metrics` output.

    Args:
        metrics: the dict returned by either function.
        classes: row order of the per-class table (default: ``metrics["classes"]``).
        ci: optional ``{headline_key: (low, high, point)}`` (e.g. from :func:`bootstrap_ci`),
            printed after the matching headline value.

    Returns:
        Headline lines, a per-class table (Se, +P, Sp, F1, AUC, support; ``*`` marks a 0/0
        value), the confusion matrix for single-label metrics, and the notes.
    """
    names = list(classes) if classes is not None else list(metrics["classes"])
    multilabel = metrics.get("task") == "multilabel"
    heads = _headlines(metrics, dict(ci or {}), multilabel)
    lines = [f"n = {metrics['n']:,}", ""] + heads + [""]
    lines += _class_table(metrics["per_class"], names, multilabel)
    if not multilabel and "confusion_matrix" in metrics:
        lines += _confusion_lines(metrics, names)
    if metrics.get("notes"):
        lines += ["", "Notes:"] + [f"- {s}" for s in metrics["notes"]]
    return "\n".join(lines) + "\n"


def _headlines(metrics: Mapping[str, Any], ci: Mapping[str, Sequence[float]],
               multilabel: bool) -> list[str]:
    """``- label: value (95% CI ...)`` lines of the headline metrics present."""

    def headline(label: str, key: str) -> str | None:
        if key not in metrics:
            return None
        s = f"- {label}: {_fmt(metrics[key])}"
        if key in ci:
            lo, hi = ci[key][0], ci[key][1]
            s += f" (95% CI {_fmt(lo)} to {_fmt(hi)})"
        return s

    auc_over = ", ".join(metrics.get("auc_classes", []))
    if multilabel:
        heads = [
            headline(f"macro ROC AUC (over {auc_over})", "macro_auc"),
            headline("macro PR AUC", "macro_pr_auc"),
            headline("F-max (sample-centric)", "fmax"),
            f"  (at global threshold {_fmt(metrics.get('fmax_threshold'), digits=2)})",
            headline("macro F1 at per-class thresholds", "macro_f1"),
            f"  (thresholds: {metrics.get('thresholds_source', '?')})",
        ]
    else:
        heads = [
            headline("accuracy", "accuracy"),
            headline("macro F1", "macro_f1"),
            headline("Cohen's kappa", "cohen_kappa"),
            headline(f"macro ROC AUC (over {auc_over})", "macro_roc_auc"),
            headline("macro PR AUC", "macro_pr_auc"),
            headline("AAMI j-index (Se+P of S and V)", "j_index"),
            headline("jk-index", "jk_index"),
        ]
    return [h for h in heads if h is not None]


def _class_table(per: Mapping[str, Any], names: Sequence[str], multilabel: bool) -> list[str]:
    """Per-class Markdown table (Se, +P, Sp, F1, AUCs, [threshold], support) and its legend."""
    thr_col = " threshold |" if multilabel else ""
    lines = [f"| class | Se | +P | Sp | F1 | ROC AUC | PR AUC |{thr_col} support |",
             "|---|---|---|---|---|---|---|" + ("---|" if multilabel else "") + "---|"]
    for c in names:
        r = per[c]
        und = set(r.get("undefined", []))
        cells = [
            _fmt(r["sensitivity"], "sensitivity" in und),
            _fmt(r["ppv"], "ppv" in und),
            _fmt(r["specificity"], "specificity" in und),
            _fmt(r["f1"], "f1" in und),
            _fmt(r["roc_auc"]),
            _fmt(r["pr_auc"]),
        ]
        if multilabel:
            cells.append(_fmt(r.get("threshold")))
        cells.append(_fmt(int(r["support"])))
        lines.append(f"| {c} | " + " | ".join(cells) + " |")
    lines.append("")
    lines.append(
        "`*` 0/0: undefined, shown as the zero-division value. "
        "`n/a`: AUC needs positives and negatives."
    )
    return lines


def _confusion_lines(metrics: Mapping[str, Any], names: Sequence[str]) -> list[str]:
    """The confusion matrix (rows true, columns predicted) in ``names`` order."""
    order = [list(metrics["classes"]).index(c) for c in names]
    cm = metrics["confusion_matrix"]
    lines = ["", "Confusion matrix (rows true, columns predicted):", ""]
    lines.append("| true \\ pred | " + " | ".join(names) + " |")
    lines.append("|---|" + "---|" * len(names))
    for i in order:
        lines.append(
            f"| {metrics['classes'][i]} | " + " | ".join(f"{cm[i][j]:,}" for j in order) + " |"
        )
    return lines
