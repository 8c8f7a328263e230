"""What a final evaluation computes and writes: metrics, intervals, per-example rows, report.

:func:`classifier_result` and :func:`denoiser_result` score a model on the files they are
given (the caller decides which: the test split inside ``test_split_access``, or external
records) and return the ``metrics_test.json`` content with the text of the per-example file;
:func:`report_md` renders ``report.md``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.core.config import PipelineConfig
from pipeline.core.io_utils import PipelineError
from pipeline.data.splits import Split
from pipeline.data.tasks import Task
from pipeline.evaluation import metrics, predictions

log = logging.getLogger("ecg.final_eval")


def annotation_samples(raw_folder: Path | None, records: np.ndarray, positions: np.ndarray,
                       label_scheme: str) -> tuple[np.ndarray, list[str]]:
    """Native-rate sample of each example's beat annotation (the TFRecords store the beat's
    position among the record's beat annotations). ``-1`` where a record's ``.atr`` is not
    there to read back; returns the samples and those records."""
    import wfdb

    from pipeline.data.windowing import beat_annotations

    out = np.full(len(records), -1, np.int64)
    missing = []
    for rec in sorted(set(records.tolist())):
        base = Path(raw_folder or ".") / rec
        if raw_folder is None or not base.with_suffix(".atr").is_file():
            missing.append(rec)
            continue
        try:
            samples, _ = beat_annotations(wfdb.rdann(str(base), "atr"), label_scheme, rec)
        except Exception as exc:  # wfdb raises assorted types on damaged files
            raise PipelineError(f"record {rec}: {base}.atr does not parse ({exc})") from exc
        sel = records == rec
        pos = positions[sel]
        if len(pos) and int(pos.max()) >= len(samples):
            raise PipelineError(f"record {rec}: {base}.atr has {len(samples)} beats, the "
                                f"TFRecords hold beat {int(pos.max())} (data changed since?)")
        out[sel] = samples[pos]
    if missing:
        log.warning("no annotation file for %s: their predictions have sample -1", missing)
    return out, missing


def member_scores(y: np.ndarray, member_probs: Sequence[np.ndarray],
                  settings: Sequence[dict], classes: Sequence[str]) -> list[dict]:
    """Each member of an average scored alone on the same beats (setting, accuracy, macro F1,
    macro F1 over N, S, V, F, F1 per class), so an ensemble can be compared with its members."""
    rows = []
    for setting, probs in zip(settings, member_probs):
        m = metrics.single_label_metrics(y, probs, classes)
        rows.append({"setting": dict(setting), "accuracy": m["accuracy"],
                     "macro_f1": m["macro_f1"],
                     "macro_f1_nsvf": metrics.macro_f1_nsvf(m["per_class"]),
                     "f1": {c: m["per_class"][c]["f1"] for c in classes}})
    return rows


def _thresholds(model: Any, cfg: PipelineConfig, task: Task, val_files: Any,
                mean: np.ndarray, scale: np.ndarray) -> np.ndarray | None:
    """Multi-label decision thresholds chosen on the validation split (never on test)."""
    if not task.multilabel:
        return None
    from pipeline.evaluation.evaluate import predict_classifier

    if val_files is None:
        raise PipelineError(f"task {task.name}: thresholds need the run's validation files")
    val = predict_classifier(model, val_files[0], cfg, task, mean, scale, val_files[1])
    return metrics.choose_thresholds(val["y"], val["probs"])


def classifier_result(model: Any, cfg: PipelineConfig, task: Task, files: Sequence[str],
                      include: Any, mean: np.ndarray, scale: np.ndarray, out_dir: Path,
                      n_boot: int, val_files: Any, raw_folder: Path | None) -> tuple[dict, str]:
    """Metrics, bootstrap intervals and ``predictions_test.csv`` text of a classifier."""
    from pipeline.evaluation.evaluate import classifier_metrics, predict_classifier

    thresholds = _thresholds(model, cfg, task, val_files, mean, scale)
    pred = predict_classifier(model, files, cfg, task, mean, scale, include)
    res = classifier_metrics(pred, task, thresholds)
    # MIT-BIH: resample records (patients); PTB-XL files group patients, whose ECGs are
    # nearly one per patient, so the ECGs themselves are resampled.
    groups = None if task.kind == "ptbxl" else pred["record"]
    res["bootstrap_95ci"] = metrics.headline_bootstrap(
        pred["y"], pred["probs"], list(task.classes), multilabel=task.multilabel, n=n_boot,
        seed=cfg.eval.seed, groups=groups) if n_boot > 0 else {}
    res["n_test_examples"] = int(len(pred["y"]))
    res["test_records"] = sorted(set(pred["record"].tolist()))
    if thresholds is not None:
        res["thresholds_from_validation"] = np.asarray(thresholds).tolist()
    if task.kind == "ptbxl":
        records, samples = pred["index"].astype(str), np.zeros(len(pred["y"]), np.int64)
        res["predictions"] = {"sample": "0 (a PTB-XL record is one 10 s example)"}
    else:
        records = pred["record"]
        samples, missing = annotation_samples(raw_folder, records, pred["index"].astype(np.int64),
                                              cfg.windows.label_scheme)
        res["predictions"] = {"sample": "beat annotation sample at the record's native rate",
                              "records_without_annotations": missing}
    text = predictions.classifier_csv(records, samples, pred["y"], pred["probs"],
                                      list(task.classes), multilabel=task.multilabel,
                                      thresholds=thresholds)
    _classifier_plots(pred, task, out_dir)
    return res, text


def _classifier_plots(pred: dict, task: Task, out_dir: Path) -> None:
    try:
        from pipeline.evaluation import plots

        out = out_dir / "plots"
        classes = list(task.classes)
        if task.multilabel:
            plots.plot_roc_pr(pred["y"], pred["probs"], classes, out / "roc_pr_test.png")
            return
        m = metrics.single_label_metrics(pred["y"], pred["probs"], classes)
        plots.plot_confusion_matrix(np.asarray(m["confusion_matrix"]), classes, out / "confusion_test.png")
        onehot = np.eye(len(classes))[pred["y"]]
        plots.plot_roc_pr(onehot, pred["probs"], classes, out / "roc_pr_test.png")
        plots.plot_per_class_bars(m, out / "per_class_test.png", classes=classes)
    except Exception as exc:  # noqa: BLE001 - plots never fail the evaluation
        log.warning("plots skipped: %s", exc)


def denoise_cis(windows: dict, n_boot: int, seed: int) -> dict:
    """``{method: {noise: {snr_label: interval}}}`` of the mean SNR improvement, records
    resampled (:func:`pipeline.evaluation.denoise_metrics.snr_improvement_ci`)."""
    from pipeline.evaluation.denoise_metrics import snr_improvement_ci

    out: dict = {}
    for method, by_type in windows.items():
        for nt, by_snr in by_type.items():
            for label, cell in by_snr.items():
                ci = (snr_improvement_ci(cell["per_window"]["snr_imp_db"], cell["record"],
                                         n=n_boot, seed=seed)
                      if n_boot > 0 and len(cell["record"]) else None)
                out.setdefault(method, {}).setdefault(nt, {})[label] = ci
    return out


def denoiser_result(model: Any, cfg: PipelineConfig, task: Task, files: Sequence[str],
                    include: Any, mean: np.ndarray, scale: np.ndarray, out_dir: Path,
                    max_windows: int, n_boot: int, noise_cfg: PipelineConfig,
                    classic: tuple[str, ...] = ("bandpass", "wavelet"),
                    gate: Any = None) -> tuple[dict, str]:
    """Metrics per condition with record-resampled intervals, and ``windows_test.csv`` text
    (of the model, or without one of the first of ``classic``).

    ``gate``: the run's :class:`pipeline.evaluation.pass_through.GateSetting`; the model is
    then also scored followed by it (method ``<model>+gate``) on the same windows.
    When the config high-passes recordings before the model (``windows.denoise_highpass_hz``),
    the chain predict runs is scored too (``<model>+hp``, and ``<model>+hp+gate`` with a
    gate; :class:`pipeline.evaluation.evaluate.ServedChain`).

    ``noise_cfg``: the config whose data folder holds the NSTDB noise (external records are
    prepared in another folder)."""
    from pipeline.data import noise
    from pipeline.evaluation.evaluate import (ServedChain, denoise_table, evaluate_denoiser,
                                              save_denoise_plots)
    from pipeline.training.trainer import subsample_masks

    include = subsample_masks(files, cfg, "denoise", max_windows, cfg.eval.seed, include)
    name, hz = getattr(model, "name", "model"), cfg.windows.denoise_highpass_hz
    gated = {} if gate is None else {f"{name}+gate": gate.post(cfg.windows.denoise_fs_hz)}
    served = (ServedChain(hz, f"{name}+hp", {f"{name}+hp+gate": g for g in gated.values()})
              if model is not None and hz > 0 else None)
    out = evaluate_denoiser(model, files, cfg, task, mean, scale, part="test",
                            noise_types=cfg.noise.types, snr_dbs=cfg.noise.eval_snr_db,
                            include=include, classic=classic, keep_examples=3,
                            noise_records=noise.load_noise(noise_cfg),
                            post={} if model is None else gated, served=served)
    save_denoise_plots(out["results"], out["examples"], out_dir / "plots")
    method = next(iter(out["results"]))
    cis = denoise_cis(out["windows"], n_boot, cfg.eval.seed)
    records = sorted({Path(f).name.split("-")[0] for f in files})
    res = {"results": out["results"], "ci95_snr_imp_db": cis,
           "table_snr_improvement_db": denoise_table(out["results"], ci=cis),
           "table_prd_percent": denoise_table(out["results"], "prd_pct"),
           "test_records": records, "max_test_windows": max_windows,
           "pass_through_gate": None if gate is None else gate.to_json(),
           "predictions": {"method": method, "start": "window start sample in its record at "
                           f"{cfg.windows.denoise_fs_hz:g} Hz"}}
    return res, predictions.denoiser_csv(out["windows"][method])


def metrics_read(res: dict, task: Task) -> list[str]:
    """Names of the headline numbers an evaluation read (for the ledger)."""
    if task.denoising:
        return ["snr_imp_db", "prd_pct", "ci95_snr_imp_db"]
    keys = ["macro_auc", "fmax", "macro_f1"] if task.multilabel else [
        "accuracy", "macro_f1", "cohen_kappa", "per_class"]
    return keys + [f"bootstrap_95ci.{k}" for k in res.get("bootstrap_95ci", {})]


def report_md(task: Task, model_name: str, res: dict, mode: str, run_dir: Path,
              split: Split | None, external: str | None) -> str:
    """``report.md`` of a final evaluation."""
    if external is not None:
        data = f"external: {external} ({len(res.get('external_records', []))} records)"
    elif task.kind == "ptbxl":
        data = "test split: PTB-XL strat_fold 1-8 / 9 / 10"
    else:
        data = f"test split: {split.scheme if split else '?'}" + (
            " (LEAKY: beats of one patient in train and test)" if res.get("leaky_split") else "")
    lines = [f"# Final evaluation: {model_name} on {task.name}", "", f"- mode: {mode}",
             f"- data: {data}", f"- run folder: `{Path(run_dir).name}`",
             f"- per-example file: `{res['predictions']['file']}` "
             "(`python -m data_tools.recompute` recomputes every number below from it)", ""]
    if task.denoising:
        lines += ["## SNR improvement (dB), mean over test windows [bootstrap 95 % interval, "
                  "records resampled]", "", res["table_snr_improvement_db"], "",
                  "## PRD (%)", "", res["table_prd_percent"], ""]
        return "\n".join(lines) + "\n"
    try:
        lines += [metrics.format_markdown(res, list(task.classes)), ""]
    except Exception:  # noqa: BLE001 - a report is written whatever the metrics hold
        lines += ["```", json.dumps(res, indent=1, default=str)[:4000], "```"]
    lines += ["## Bootstrap 95 % intervals ("
              + ("ECGs" if task.kind == "ptbxl" else "records") + " resampled)", ""]
    for k, v in res.get("bootstrap_95ci", {}).items():
        lines.append(f"- {k}: {v['point']:.4f} [{v['low']:.4f}, {v['high']:.4f}]")
    return "\n".join(lines) + "\n"
