"""Figures of a run: training history, confusion matrices, ROC/PR curves, per-class bars,
example ECG segments, and denoising metrics and overlays.

Every function takes data and an output path, writes a PNG atomically
(:func:`pipeline.io_utils.atomic_path`), releases the figure and returns the path.

Nothing is imported from matplotlib at import time, and no global backend is switched:
each figure is a ``matplotlib.figure.Figure`` drawn by its own Agg canvas
(``FigureCanvasAgg``), which renders the same PNG as ``matplotlib.use("Agg")`` without
touching pyplot's state in a process that also runs an interactive session or other plots.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.core.io_utils import atomic_path

DPI = 110
_LR_KEYS = ("learning_rate", "lr")


@contextlib.contextmanager
def _figure(out_path: str | Path, figsize: tuple[float, float]) -> Iterator[Any]:
    """Yields a new Agg-backed Figure; saves it as PNG atomically, then clears it."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize, dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    try:
        yield fig
        with atomic_path(out_path) as tmp:
            fig.savefig(tmp, format="png", dpi=DPI)
    finally:
        fig.clear()


def _grid(n: int, n_cols: int) -> tuple[int, int]:
    n_cols = max(1, min(n_cols, n))
    return int(np.ceil(n / n_cols)), n_cols


def _as_leads(x: np.ndarray) -> np.ndarray:
    """``(n, samples)`` or ``(n, samples, leads)`` -> ``(n, samples, leads)``."""
    x = np.asarray(x, dtype=np.float64)
    if x.ndim == 2:
        return x[:, :, None]
    if x.ndim != 3:
        raise ValueError(
            f"signals must be (n, samples) or (n, samples, leads). Received: shape={x.shape}"
        )
    return x


# ---------------------------------------------------------------------------- training


def plot_history(
    history: Mapping[str, Sequence[float]],
    out_path: str | Path,
    *,
    title: str | None = None,
) -> Path:
    """Loss and metrics per epoch (train and ``val_``), learning rate on a second axis.

    Args:
        history: ``keras.callbacks.History.history``-like dict: ``{"loss": [...],
            "val_loss": [...], "accuracy": [...], "learning_rate": [...]}``. The learning
            rate (``learning_rate`` or ``lr``) is drawn on a log-scaled right axis of the
            loss panel; every other metric gets its own panel with its ``val_`` twin.
        out_path: PNG path.
        title: figure title.
    """
    from matplotlib.ticker import MaxNLocator

    keys = [k for k in history if not k.startswith("val_") and k not in _LR_KEYS]
    if not keys:
        raise ValueError(f"`history` has no metric to plot. Received keys: {sorted(history)}")
    keys.sort(key=lambda k: (k != "loss", k))
    lr_key = next((k for k in _LR_KEYS if k in history), None)
    rows, cols = _grid(len(keys), 3)
    with _figure(out_path, (4.2 * cols, 3.0 * rows)) as fig:
        axes = np.atleast_1d(fig.subplots(rows, cols, squeeze=False)).ravel()
        for ax, key in zip(axes, keys, strict=False):
            tr = np.asarray(history[key], dtype=float)
            epochs = np.arange(1, tr.size + 1)
            ax.plot(epochs, tr, marker="o", ms=3, label="train")
            if f"val_{key}" in history:
                va = np.asarray(history[f"val_{key}"], dtype=float)
                ax.plot(np.arange(1, va.size + 1), va, marker="o", ms=3, label="validation")
                best = int(np.nanargmin(va) if "loss" in key else np.nanargmax(va))
                ax.axvline(best + 1, color="0.6", ls=":", lw=1)
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.set_xlabel("epoch")
            ax.set_ylabel(key)
            ax.set_title(key)
            ax.grid(alpha=0.3)
            handles, labels = ax.get_legend_handles_labels()
            if key == "loss" and lr_key is not None:
                lr = np.asarray(history[lr_key], dtype=float)
                ax2 = ax.twinx()
                (h,) = ax2.plot(np.arange(1, lr.size + 1), lr, color="0.4", ls="--", lw=1)
                if np.all(lr > 0):
                    ax2.set_yscale("log")
                ax2.set_ylabel("learning rate")
                handles.append(h)
                labels.append("learning rate")
            ax.legend(handles, labels, fontsize=8)
        for ax in axes[len(keys) :]:
            ax.set_visible(False)
        if title:
            fig.suptitle(title)
    return Path(out_path)


# ----------------------------------------------------------------------- classification


def plot_confusion_matrix(
    cm: Any,
    classes: Sequence[str],
    out_path: str | Path,
    *,
    title: str | None = None,
) -> Path:
    """Confusion matrix as counts and row-normalized (rows true, columns predicted).

    Args:
        cm: ``(K, K)`` counts, rows true, columns predicted (``metrics["confusion_matrix"]``).
        classes: the ``K`` class names.
        out_path: PNG path.
        title: figure title.
    """
    cm = np.asarray(cm, dtype=np.float64)
    k = len(classes)
    if cm.shape != (k, k):
        raise ValueError(f"`cm` must be ({k}, {k}) for {k} classes. Received: shape={cm.shape}")
    rows = cm.sum(axis=1, keepdims=True)
    norm = np.divide(cm, rows, out=np.zeros_like(cm), where=rows > 0)
    size = max(3.2, 0.7 * k + 1.8)
    with _figure(out_path, (2 * size + 0.8, size)) as fig:
        axes = fig.subplots(1, 2)
        for ax, data, name, fmt in (
            (axes[0], cm, "counts", "{:,.0f}"),
            (axes[1], norm, "row-normalized (sensitivity on the diagonal)", "{:.2f}"),
        ):
            shown = np.log1p(data) if name == "counts" else data
            im = ax.imshow(shown, cmap="Blues", vmin=0, vmax=shown.max() or 1)
            fig.colorbar(
                im,
                ax=ax,
                shrink=0.8,
                label="log(1 + count)" if name == "counts" else "fraction of row",
            )
            thresh = (shown.max() or 1) / 2
            for i in range(k):
                for j in range(k):
                    ax.text(
                        j,
                        i,
                        fmt.format(data[i, j]),
                        ha="center",
                        va="center",
                        fontsize=8,
                        color="white" if shown[i, j] > thresh else "black",
                    )
            _label_grid(ax, classes, classes, "predicted", "true", name)
        if title:
            fig.suptitle(title)
    return Path(out_path)


def _label_grid(ax: Any, x_names: Sequence[str], y_names: Sequence[str], x_label: str,
                y_label: str | None, title: str) -> None:
    """Tick names, axis labels and title of one heatmap panel."""
    ax.set_xticks(range(len(x_names)), list(x_names))
    ax.set_yticks(range(len(y_names)), list(y_names))
    ax.set_xlabel(x_label)
    if y_label:
        ax.set_ylabel(y_label)
    ax.set_title(title, fontsize=10)


def plot_roc_pr(
    y_true: Any,
    probs: Any,
    classes: Sequence[str],
    out_path: str | Path,
    *,
    title: str | None = None,
) -> Path:
    """One-vs-rest ROC and precision-recall curves per class, with AUC / AP in the legend.

    Args:
        y_true: ``(n,)`` class indices (single label) or ``(n, K)`` 0/1 labels (multi-label).
        probs: ``(n, K)`` scores.
        classes: the ``K`` class names.
        out_path: PNG path.
        title: figure title.

    Classes without positives or without negatives are listed in the legend as "no curve".
    """
    from sklearn.metrics import auc as area
    from sklearn.metrics import average_precision_score, precision_recall_curve, roc_curve

    p = np.asarray(probs, dtype=np.float64)
    y = np.asarray(y_true)
    k = len(classes)
    if p.ndim != 2 or p.shape[1] != k:
        raise ValueError(f"`probs` must be (n, {k}). Received: shape={p.shape}")
    onehot = y.astype(bool) if y.ndim == 2 else np.eye(k, dtype=bool)[y.astype(int)]
    with _figure(out_path, (10, 4.4)) as fig:
        ax_roc, ax_pr = fig.subplots(1, 2)
        ax_roc.plot([0, 1], [0, 1], color="0.7", ls=":", lw=1)
        for i, name in enumerate(classes):
            pos = onehot[:, i]
            if pos.all() or not pos.any():
                ax_roc.plot([], [], ls="none", label=f"{name}: no curve (one class only)")
                continue
            fpr, tpr, _ = roc_curve(pos, p[:, i])
            auc = float(area(fpr, tpr))
            (line,) = ax_roc.plot(fpr, tpr, lw=1.5, label=f"{name} (AUC {auc:.3f})")
            prec, rec, _ = precision_recall_curve(pos, p[:, i])
            ap = average_precision_score(pos, p[:, i])
            ax_pr.step(
                rec,
                prec,
                where="post",
                lw=1.5,
                color=line.get_color(),
                label=f"{name} (AP {ap:.3f})",
            )
            ax_pr.axhline(pos.mean(), color=line.get_color(), ls=":", lw=0.8)
        ax_roc.set(
            xlabel="1 - specificity (false positive rate)",
            ylabel="sensitivity (true positive rate)",
            title="ROC, one vs rest",
            xlim=(0, 1),
            ylim=(0, 1.01),
        )
        ax_pr.set(
            xlabel="recall (sensitivity)",
            ylabel="precision (+P)",
            title="precision-recall (dotted: prevalence)",
            xlim=(0, 1),
            ylim=(0, 1.01),
        )
        for ax in (ax_roc, ax_pr):
            ax.grid(alpha=0.3)
            ax.legend(fontsize=8, loc="lower right" if ax is ax_roc else "lower left")
        if title:
            fig.suptitle(title)
    return Path(out_path)


def plot_per_class_bars(
    metrics: Mapping[str, Any],
    out_path: str | Path,
    classes: Sequence[str] | None = None,
    *,
    keys: Sequence[tuple[str, str]] = (("sensitivity", "Se"), ("ppv", "+P"), ("f1", "F1")),
    title: str | None = None,
) -> Path:
    """Grouped bars of Se / +P / F1 per class (with the support under each class name).

    Args:
        metrics: output of :func:`pipeline.metrics.single_label_metrics` or
            :func:`pipeline.metrics.multilabel_metrics` (uses ``per_class``).
        out_path: PNG path.
        classes: bar order (default ``metrics["classes"]``).
        keys: ``(per-class key, label)`` pairs to draw.
        title: figure title.

    Hatched bars are undefined values (0/0) shown as the zero-division value.
    """
    names = list(classes) if classes is not None else list(metrics["classes"])
    per = metrics["per_class"]
    k, m = len(names), len(keys)
    width = 0.8 / m
    with _figure(out_path, (max(5.0, 1.1 * k + 2), 3.8)) as fig:
        ax = fig.subplots()
        x = np.arange(k)
        for j, (key, label) in enumerate(keys):
            vals = [per[c][key] for c in names]
            bars = ax.bar(x + (j - (m - 1) / 2) * width, vals, width, label=label)
            for bar, c, v in zip(bars, names, vals, strict=True):
                if key in per[c].get("undefined", []):
                    bar.set_hatch("//")
                    bar.set_alpha(0.5)
                ax.text(
                    bar.get_x() + bar.get_width() / 2,
                    v + 0.01,
                    f"{v:.2f}",
                    ha="center",
                    va="bottom",
                    fontsize=7,
                )
        ax.set_xticks(x, [f"{c}\nn={int(per[c]['support']):,}" for c in names])
        ax.set_ylim(0, 1.12)
        ax.set_ylabel("score")
        ax.grid(axis="y", alpha=0.3)
        ax.legend(ncols=m, fontsize=8, loc="upper right")
        if title:
            ax.set_title(title)
    return Path(out_path)


# --------------------------------------------------------------------------- denoising

DENOISE_METRICS = (
    ("snr_improvement_db", "SNR improvement (dB)"),
    ("prd", "PRD (%)"),
    ("correlation", "correlation"),
)


def _rows_mean(
    rows: Sequence[Mapping[str, Any]], group: str, metric: str, x_key: str
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``{group value: (sorted x, mean metric at x)}`` averaging over the other keys."""
    acc: dict[str, dict[float, list[float]]] = {}
    for r in rows:
        if metric in r and r[metric] is not None:
            acc.setdefault(str(r[group]), {}).setdefault(float(r[x_key]), []).append(
                float(r[metric])
            )
    out = {}
    for g, d in acc.items():
        xs = np.array(sorted(d))
        out[g] = (xs, np.array([np.mean(d[v]) for v in xs]))
    return out


def plot_denoise_by_noise_level(
    rows: Sequence[Mapping[str, Any]],
    out_path: str | Path,
    *,
    group_by: str = "model",
    x_key: str = "input_snr_db",
    metrics: Sequence[tuple[str, str]] = DENOISE_METRICS,
    title: str | None = None,
) -> Path:
    """SNR improvement, PRD and correlation against input noise level, one line per group.

    Args:
        rows: one dict per (model, noise type, input level) with the keys ``model``,
            ``noise_type``, ``x_key`` and the metric keys, e.g. ``{"model": "unet1d",
            "noise_type": "em", "input_snr_db": 0, "snr_improvement_db": 8.1, "prd": 31.0,
            "correlation": 0.95}``.
        out_path: PNG path.
        group_by: ``"model"`` (lines per model, averaged over noise types) or
            ``"noise_type"`` (lines per noise type, averaged over the models given: filter
            ``rows`` to one model first for a per-model plot).
        x_key: the noise-level key (input SNR in dB).
        metrics: ``(key, axis label)`` pairs, one panel each.
        title: figure title.
    """
    if not rows:
        raise ValueError("`rows` is empty")
    with _figure(out_path, (4.3 * len(metrics), 3.6)) as fig:
        axes = np.atleast_1d(fig.subplots(1, len(metrics), squeeze=False)).ravel()
        for ax, (key, label) in zip(axes, metrics, strict=True):
            for g, (xs, ys) in sorted(_rows_mean(rows, group_by, key, x_key).items()):
                ax.plot(xs, ys, marker="o", ms=4, label=g)
            if key == "snr_improvement_db":
                ax.axhline(0, color="0.5", lw=0.8)
            ax.set_xlabel("input SNR (dB)" if x_key == "input_snr_db" else x_key)
            ax.set_ylabel(label)
            ax.set_title(label)
            ax.grid(alpha=0.3)
        axes[0].legend(fontsize=8, title=group_by.replace("_", " "), title_fontsize=8)
        if title:
            fig.suptitle(title)
    return Path(out_path)


def plot_denoise_metrics_grid(
    rows: Sequence[Mapping[str, Any]],
    out_path: str | Path,
    *,
    x_key: str = "input_snr_db",
    metrics: Sequence[tuple[str, str]] = DENOISE_METRICS,
    title: str | None = None,
) -> Path:
    """Heat-map grid: models x input noise level, one annotated panel per metric.

    Args:
        rows: as for :func:`plot_denoise_by_noise_level` (averaged over noise types).
        out_path: PNG path.
        x_key: the noise-level key.
        metrics: ``(key, label)`` pairs. Colors run from worse to better for each metric
            (PRD: lower is better).
        title: figure title.
    """
    if not rows:
        raise ValueError("`rows` is empty")
    models = sorted({str(r["model"]) for r in rows})
    levels = sorted({float(r[x_key]) for r in rows})
    with _figure(out_path, (4.0 * len(metrics) + 1, 0.45 * len(models) + 2.2)) as fig:
        axes = np.atleast_1d(fig.subplots(1, len(metrics), squeeze=False)).ravel()
        for ax, (key, label) in zip(axes, metrics, strict=True):
            grid = np.full((len(models), len(levels)), np.nan)
            for mi, m in enumerate(models):
                got = _rows_mean([r for r in rows if str(r["model"]) == m], "model", key, x_key)
                for xv, yv in zip(*got.get(m, (np.array([]), np.array([]))), strict=True):
                    grid[mi, levels.index(float(xv))] = yv
            cmap = "viridis_r" if key == "prd" else "viridis"
            im = ax.imshow(grid, cmap=cmap, aspect="auto")
            fig.colorbar(im, ax=ax, shrink=0.8)
            finite = grid[np.isfinite(grid)]
            mid = float(np.mean([finite.min(), finite.max()])) if finite.size else 0.0
            for i in range(len(models)):
                for j in range(len(levels)):
                    if np.isfinite(grid[i, j]):
                        bright = grid[i, j] < mid if key != "prd" else grid[i, j] > mid
                        ax.text(
                            j,
                            i,
                            f"{grid[i, j]:.2f}",
                            ha="center",
                            va="center",
                            fontsize=7,
                            color="white" if bright else "black",
                        )
            _label_grid(ax, [f"{v:g}" for v in levels], models,
                        "input SNR (dB)" if x_key == "input_snr_db" else x_key, None, label)
        if title:
            fig.suptitle(title)
    return Path(out_path)


def plot_denoise_overlays(
    noisy: Any,
    clean: Any,
    denoised: Any,
    out_path: str | Path,
    *,
    fs_hz: float = 360.0,
    lead: int = 0,
    max_windows: int = 4,
    titles: Sequence[str] | None = None,
    title: str | None = None,
) -> Path:
    """Noisy, clean and denoised windows overlaid, one row per window.

    Args:
        noisy, clean, denoised: ``(n, samples)`` or ``(n, samples, leads)`` windows.
        out_path: PNG path.
        fs_hz: sampling frequency for the time axis (s).
        lead: which lead to draw.
        max_windows: the first ``max_windows`` windows are drawn.
        titles: one title per window (e.g. record and input SNR).
        title: figure title.

    Each row's title also gives the window's SNR before and after denoising
    (``10 log10(sum clean^2 / sum (x - clean)^2)``).
    """
    xs = [_as_leads(a)[:max_windows, :, lead] for a in (noisy, clean, denoised)]
    if not (xs[0].shape == xs[1].shape == xs[2].shape) or xs[0].shape[0] == 0:
        raise ValueError(
            "`noisy`, `clean`, `denoised` need the same non-empty shape. Received: "
            f"{[a.shape for a in xs]}"
        )
    nz, cl, dn = xs
    t = np.arange(cl.shape[1]) / fs_hz

    def snr(x: np.ndarray, c: np.ndarray) -> float:
        err = np.sum((x - c) ** 2)
        return float(10 * np.log10(np.sum(c**2) / err)) if err > 0 else float("inf")

    with _figure(out_path, (11, 2.2 * len(cl) + 0.4)) as fig:
        axes = np.atleast_1d(fig.subplots(len(cl), 1, squeeze=False, sharex=True)).ravel()
        for i, ax in enumerate(axes):
            ax.plot(t, nz[i], color="0.65", lw=0.7, label="noisy")
            ax.plot(t, cl[i], color="black", lw=1.0, label="clean")
            ax.plot(t, dn[i], color="#d95f02", lw=1.0, alpha=0.9, label="denoised")
            head = titles[i] + ": " if titles is not None and i < len(titles) else ""
            ax.set_title(
                f"{head}SNR {snr(nz[i], cl[i]):.1f} dB -> {snr(dn[i], cl[i]):.1f} dB", fontsize=9
            )
            ax.set_ylabel("amplitude", fontsize=8)
            ax.grid(alpha=0.2)
        axes[0].legend(ncols=3, fontsize=8, loc="upper right")
        axes[-1].set_xlabel("time (s)")
        if title:
            fig.suptitle(title)
    return Path(out_path)


def plot_per_fold(
    rows: Sequence[Mapping[str, Any]],
    keys: Sequence[str],
    out_path: str | Path,
    *,
    title: str | None = None,
) -> Path:
    """Per-fold values of the headline metrics as grouped bars, with the mean ± sd.

    Args:
        rows: one dict per fold with a ``model`` label (e.g. ``"fold 0"``) and the ``keys``.
        keys: metric keys to draw (values in [0, 1]).
        out_path: PNG path.
        title: figure title.
    """
    if not rows or not keys:
        raise ValueError("`rows` and `keys` must be non-empty")
    with _figure(out_path, (max(5.0, 1.1 * len(keys) * (len(rows) + 1)), 3.8)) as fig:
        ax = fig.subplots()
        width = 0.8 / len(rows)
        x = np.arange(len(keys))
        for i, r in enumerate(rows):
            vals = [np.nan if r.get(k) is None else float(r[k]) for k in keys]
            ax.bar(x + i * width - 0.4 + width / 2, vals, width, label=str(r.get("model", i)))
        for j, k in enumerate(keys):
            v = np.array([np.nan if r.get(k) is None else float(r[k]) for r in rows])
            v = v[np.isfinite(v)]
            if len(v):
                ax.errorbar(j + 0.45, v.mean(), yerr=v.std(ddof=1) if len(v) > 1 else 0,
                            fmt="ko", ms=4, capsize=3)
        ax.set_xticks(x, keys, rotation=30, ha="right")
        ax.set_ylim(0, 1.05)
        ax.legend(fontsize=7, ncol=min(len(rows), 5))
        ax.set_title(title or "per-fold metrics (black: mean ± sd)")
    return Path(out_path)
