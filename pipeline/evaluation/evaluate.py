"""Evaluation of a trained model on a list of files (used by k-fold and final evaluation).

This module never decides *which* files: callers pass them. Only ``pipeline.final_eval``
passes test files (it alone opens
:func:`pipeline.training.run_folder.test_split_access`).
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.core.config import PipelineConfig
from pipeline.data.tasks import Task

log = logging.getLogger("ecg.evaluate")


@dataclasses.dataclass(frozen=True)
class ServedChain:
    """The denoising chain ``pipeline.predict`` runs, scored on evaluation windows.

    Predict high-passes the whole recording (``windows.denoise_highpass_hz``, the filter the
    windows stage applied to the clean reference) before the model. The reference is that
    high-passed clean signal, so on a noisy recording predict's model input is the reference
    plus the high-passed noise; the evaluation builds it so (``clean + highpass(noisy -
    clean)``, the noise filtered per window with mirror padding) while the input SNR and the
    improvement are still measured against the raw noisy window. ``post`` (``name ->
    g(model input, output)``, e.g. the pass-through gate) follows the model as in predict.
    """

    highpass_hz: float
    name: str = "served"
    post: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    def methods(self) -> list[str]:
        return [self.name, *self.post]

    def model_input(self, noisy: np.ndarray, clean: np.ndarray, fs_hz: float) -> np.ndarray:
        """The model's input in predict: the reference plus the high-passed noise (mV)."""
        from pipeline.data.served import served_input

        return served_input(noisy, clean, self.highpass_hz, fs_hz)


def predict_classifier(model: Any, files: Sequence[str], cfg: PipelineConfig, task: Task,
                       mean: np.ndarray, scale: np.ndarray,
                       include: Mapping[str, np.ndarray] | None = None) -> dict[str, np.ndarray]:
    """Probabilities, labels and (record, index) of every example of ``files``."""
    from pipeline.data.loader import create_dataset, split_labels

    ds = create_dataset(files, cfg, 256, False, mean, scale, task=task, include=include,
                        with_index=True)
    probs, recs, idx = [], [], []
    for x, _, r, i in ds:
        probs.append(np.asarray(model.predict_on_batch(x)))
        recs.append(r.numpy())
        idx.append(i.numpy())
    y = split_labels(files, cfg, task, include)
    p = np.concatenate(probs) if probs else np.zeros((0, task.n_outputs))
    if len(p) != len(y):
        raise RuntimeError(f"{len(p)} predictions for {len(y)} labels")
    return {"probs": p, "y": y, "record": np.concatenate(recs).astype(str) if recs else np.zeros(0, str),
            "index": np.concatenate(idx) if idx else np.zeros(0, np.int32)}


def classifier_metrics(pred: Mapping[str, np.ndarray], task: Task,
                       thresholds: np.ndarray | None = None) -> dict:
    from pipeline.evaluation import metrics

    if task.multilabel:
        return metrics.multilabel_metrics(pred["y"], pred["probs"], list(task.classes),
                                          thresholds=thresholds)
    return metrics.single_label_metrics(pred["y"], pred["probs"], list(task.classes))


def evaluate_denoiser(
    model: Any | None,
    files: Sequence[str],
    cfg: PipelineConfig,
    task: Task,
    mean: np.ndarray | None,
    scale: np.ndarray | None,
    *,
    part: str,
    noise_types: Sequence[str],
    snr_dbs: Sequence[float],
    include: Mapping[str, np.ndarray] | None = None,
    classic: Sequence[str] = (),
    keep_examples: int = 0,
    noise_records: Mapping[str, np.ndarray] | None = None,
    filters: Mapping[str, Any] | None = None,
    post: Mapping[str, Any] | None = None,
    served: ServedChain | None = None,
) -> dict:
    """Metrics per noise type and input SNR for a model and/or classic filters.

    ``classic`` names filters of :data:`pipeline.evaluation.classic_filters.CLASSIC_FILTERS`;
    ``filters`` adds other ``name -> f(noisy, fs_hz)`` (e.g. the candidates of a tuning grid);
    ``post`` adds methods that transform the model's output, ``name -> g(noisy, denoised)``
    (in mV; e.g. the pass-through gates of :mod:`pipeline.evaluation.pass_through`);
    ``served`` adds the chain predict runs (:class:`ServedChain`: its methods score the model
    on the input predict gives it).

    Every condition uses the same windows (non-overlapping evaluation grid of ``files``,
    restricted by ``include``) and fixed noise from the ``part`` segments of the noise records
    (``noise_records``, default: read from the config's ``raw/nstdb``).

    Returns:
        ``{"results": {method: {noise_type: {snr_label: summary}}}, "examples": {...},
        "windows": {method: {noise_type: {snr_label: {"record", "start", "per_window"}}}}}``:
        ``start`` is each window's first sample in its record (at ``windows.denoise_fs_hz``);
        ``per_window`` holds every metric of :mod:`pipeline.evaluation.denoise_metrics`.
    """
    from pipeline.data import noise
    from pipeline.evaluation.classic_filters import filter_fn

    loaded = noise_records if noise_records is not None else noise.load_noise(cfg)
    chosen = {c: filter_fn(c) for c in classic} | dict(filters or {})
    post = dict(post or {}) if model is not None else {}
    served = served if model is not None else None
    methods = (([getattr(model, "name", "model")] + list(post)) if model is not None else []) \
        + (served.methods() if served is not None else []) + list(chosen)
    results: dict = {m: {} for m in methods}
    windows: dict = {m: {} for m in methods}
    examples: dict = {}
    for nt in noise_types:
        for snr in snr_dbs:
            label = "clean" if math.isinf(snr) else f"{snr:g}"
            fn = noise.make_noise_fn(cfg, nt, snr, part, noise=loaded)
            per = _denoise_condition(model, files, cfg, task, mean, scale, fn, methods,
                                     chosen, include, post, served)
            first = per.pop("_first", None)
            if keep_examples and first is not None:
                examples[(nt, snr)] = {k: v[:keep_examples] for k, v in first.items()}
            for m in methods:
                results[m].setdefault(nt, {})[label] = per[m]["accumulator"].result() \
                    if per[m]["accumulator"].n_windows else {}
                windows[m].setdefault(nt, {})[label] = {
                    "record": np.asarray(per[m]["record"], str),
                    "start": np.asarray(per[m]["start"], np.int64),
                    "per_window": per[m]["accumulator"].per_window()}
            log.info("evaluated %s at %s dB", nt, label)
    return {"results": results, "examples": examples, "windows": windows}


def _denoise_condition(model: Any | None, files: Sequence[str], cfg: PipelineConfig, task: Task,
                       mean: np.ndarray | None, scale: np.ndarray | None, noise_fn: Any,
                       methods: Sequence[str], classic: Mapping[str, Any],
                       include: Mapping[str, np.ndarray] | None,
                       post: Mapping[str, Any], served: ServedChain | None = None) -> dict:
    """One (noise type, SNR) pass: per method an accumulator, window records and starts
    (``classic``: filter name -> function; ``post``: name -> g(noisy, model output);
    ``served``: the chain predict runs)."""
    from pipeline.data.loader import create_dataset
    from pipeline.evaluation.denoise_metrics import MetricAccumulator

    fs = cfg.windows.denoise_fs_hz
    ds = create_dataset(files, cfg, 128, False, None, None, task=task, noise_fn=noise_fn,
                        include=include, check=False, with_index=True)
    per: dict = {m: {"accumulator": MetricAccumulator(), "record": [], "start": []}
                 for m in methods}
    for noisy, clean, rec, start in ds:
        noisy, clean = noisy.numpy(), clean.numpy()
        rec = [r.decode() for r in rec.numpy()]
        outputs = {}
        if model is not None:
            den = np.asarray(model.predict_on_batch((noisy - mean) / scale)) * scale + mean
            outputs[methods[0]] = den
            outputs.update({name: g(noisy, den) for name, g in post.items()})
            if "_first" not in per:
                per["_first"] = {"clean": clean, "noisy": noisy, "denoised": den}
        if served is not None:
            xin = served.model_input(noisy, clean, fs)
            den = np.asarray(model.predict_on_batch((xin - mean) / scale)) * scale + mean
            outputs[served.name] = den
            outputs.update({name: g(xin, den) for name, g in served.post.items()})
        for c, f in classic.items():
            outputs[c] = f(noisy, fs)
        for m, out in outputs.items():
            per[m]["accumulator"].update(clean, noisy, out)
            per[m]["record"] += rec
            per[m]["start"].append(start.numpy())
    for m in methods:
        per[m]["start"] = np.concatenate(per[m]["start"]) if per[m]["start"] else np.zeros(0, np.int64)
    return per


def denoise_table(results: Mapping[str, Any], metric: str = "snr_imp_db",
                  ci: Mapping[str, Any] | None = None) -> str:
    """Markdown table: rows method x noise type, columns input SNR (mean of ``metric``).

    ``ci`` (``{method: {noise: {snr_label: {"low", "high"}}}}``) adds each cell's 95 % interval.
    """
    snrs: list[str] = []
    for by_type in results.values():
        for by_snr in by_type.values():
            snrs += [s for s in by_snr if s not in snrs]
    head = "| method | noise | " + " | ".join(f"{s} dB" for s in snrs) + " |"
    rows = [head, "|" + "---|" * (2 + len(snrs))]
    fmt = "{:+.2f}" if metric.endswith("_db") else "{:.2f}"
    for m, by_type in results.items():
        for nt, by_snr in by_type.items():
            cells = []
            for s in snrs:
                v = by_snr.get(s, {}).get(metric, {})
                cell = fmt.format(v["mean"]) if isinstance(v, dict) and "mean" in v else ""
                interval = ((ci or {}).get(m, {}).get(nt, {}) or {}).get(s)
                if cell and interval:
                    cell += f" [{fmt.format(interval['low'])}, {fmt.format(interval['high'])}]"
                cells.append(cell)
            rows.append(f"| {m} | {nt} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def results_to_rows(results: Mapping[str, Any]) -> list[dict]:
    """Flattens ``{method: {noise: {snr: summary}}}`` into rows for :mod:`pipeline.plots`."""
    keys = {"snr_imp_db": "snr_improvement_db", "prd_pct": "prd", "pearson_r": "correlation"}
    rows = []
    for m, by_type in results.items():
        for nt, by_snr in by_type.items():
            for s, summ in by_snr.items():
                if not summ or s == "clean":
                    continue
                rows.append({"model": m, "noise_type": nt, "input_snr_db": float(s),
                             **{new: summ[old]["mean"] for old, new in keys.items() if old in summ}})
    return rows


def save_denoise_plots(results: Mapping[str, Any], examples: Mapping, out: Path) -> None:
    """Level curves, metrics grid and noisy/clean/denoised overlays of an evaluation."""
    try:
        from pipeline.evaluation import plots

        rows = results_to_rows(results)
        if rows:
            plots.plot_denoise_by_noise_level(rows, out / "by_noise_level.png")
            plots.plot_denoise_metrics_grid(rows, out / "metrics_grid.png")
        for (nt, snr), ex in list(examples.items())[:6]:
            plots.plot_denoise_overlays(ex["noisy"], ex["clean"], ex["denoised"],
                                        out / f"overlay_{nt}_{snr:g}dB.png",
                                        title=f"{nt} noise at {snr:g} dB input (test patients)")
    except Exception as exc:  # noqa: BLE001 - plots never fail an evaluation
        log.warning("denoising plots skipped: %s", exc)
