"""Final held-out evaluation: ``python -m pipeline.final_eval --task T --model M``.

The only script that reads the test split (MIT-BIH DS2, PTB-XL fold 10). Two modes:

* default: retrain on all training records with the chosen hyperparameters (``--hparams``,
  else the tuning result in ``Research_Runs/tuning/<task>_<model>/best_hparams.json`` when it
  exists, else the builder defaults), then evaluate once on test. The retrain runs for the
  median best epoch of the matching k-fold run (``eval.final_epochs``; ``train.epochs``
  without one) under a cosine learning-rate decay (``eval.final_lr_schedule``), so the
  evaluated last epoch is neither over-trained nor a high-learning-rate spike.
  MIT-BIH: training = DS1 (validation patients included); PTB-XL keeps fold 9 as validation for
  the decision thresholds, as the benchmark protocol prescribes.
* ``--run RUN``: evaluate the best checkpoint of an existing training run (trained on the
  training patients with patient-wise validation) once on test.

Writes ``metrics_test.json``, ``report.md`` and plots into the run folder, with bootstrap 95 %
confidence intervals of the headline metrics (resampling records, so the interval reflects
patient variability, for classifiers; resampling windows for denoisers).
"""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.core.config import PipelineConfig, to_dict
from pipeline.core.io_utils import (
    PipelineError,
    atomic_write_json,
    atomic_write_text,
    read_json,
)
from pipeline.data import normalization as NORM
from pipeline.data.tasks import Task
from pipeline.training import run_folder as X

log = logging.getLogger("ecg.final_eval")


def _thresholds(model: Any, cfg: PipelineConfig, task: Task, sf: X.SplitFiles,
                mean: np.ndarray, scale: np.ndarray) -> np.ndarray | None:
    """Multi-label decision thresholds chosen on the validation split (never on test)."""
    if not task.multilabel:
        return None
    from pipeline.evaluation import metrics as M
    from pipeline.evaluation.evaluate import predict_classifier

    val = predict_classifier(model, sf.val, cfg, task, mean, scale, sf.include_val)
    return M.choose_thresholds(val["y"], val["probs"])


def _classifier_report(model: Any, cfg: PipelineConfig, task: Task, split, sf: X.SplitFiles,
                       run_dir: Path, mean: np.ndarray, scale: np.ndarray, n_boot: int) -> dict:
    from pipeline.evaluation import metrics as M
    from pipeline.evaluation.evaluate import classifier_metrics, predict_classifier

    thresholds = _thresholds(model, cfg, task, sf, mean, scale)
    with X.test_split_access("final_eval"):
        files, include = X.test_files(cfg, task, split)
        pred = predict_classifier(model, files, cfg, task, mean, scale, include)
    res = classifier_metrics(pred, task, thresholds)
    # MIT-BIH: resample records (patients); PTB-XL files group patients, whose ECGs are
    # nearly one per patient, so the ECGs themselves are resampled.
    groups = None if task.kind == "ptbxl" else pred["record"]
    cis = {}
    if task.multilabel:
        heads = {"macro_auc": M.macro_auc}
    else:
        def f1_of(k: int):
            def f1(y: np.ndarray, p: np.ndarray) -> float:
                pred = np.argmax(p, axis=1)
                tp = np.sum((pred == k) & (y == k))
                den = np.sum(pred == k) + np.sum(y == k)
                return float(2 * tp / den) if den else 0.0

            return f1

        heads = {"accuracy": M.accuracy, "macro_f1": M.macro_f1}
        for k, c in enumerate(task.classes):
            if (pred["y"] == k).any() and c in ("S", "V", "SVEB", "VEB"):
                heads[f"f1_{c}"] = f1_of(k)
    for name, fn in heads.items():
        lo, hi, point = M.bootstrap_ci(fn, pred["y"], pred["probs"], n=n_boot, seed=cfg.eval.seed,
                                       groups=groups)
        cis[name] = {"point": point, "low": lo, "high": hi}
    res["bootstrap_95ci"] = cis
    res["n_test_examples"] = int(len(pred["y"]))
    res["test_records"] = sorted(set(pred["record"].tolist()))
    if thresholds is not None:
        res["thresholds_from_validation"] = np.asarray(thresholds).tolist()
    _classifier_plots(pred, task, run_dir, cfg)
    return res


def _classifier_plots(pred: dict, task: Task, run_dir: Path, cfg: PipelineConfig) -> None:
    try:
        from pipeline.evaluation import metrics as M
        from pipeline.evaluation import plots

        out = run_dir / "plots"
        classes = list(task.classes)
        if task.multilabel:
            plots.plot_roc_pr(pred["y"], pred["probs"], classes, out / "roc_pr_test.png")
            return
        m = M.single_label_metrics(pred["y"], pred["probs"], classes)
        plots.plot_confusion_matrix(np.asarray(m["confusion_matrix"]), classes, out / "confusion_test.png")
        onehot = np.eye(len(classes))[pred["y"]]
        plots.plot_roc_pr(onehot, pred["probs"], classes, out / "roc_pr_test.png")
        plots.plot_per_class_bars(m, out / "per_class_test.png", classes=classes)
    except Exception as exc:  # noqa: BLE001 - plots never fail the evaluation
        log.warning("plots skipped: %s", exc)


def _denoiser_report(model: Any, cfg: PipelineConfig, task: Task, split, run_dir: Path,
                     mean: np.ndarray, scale: np.ndarray, max_windows: int, n_boot: int) -> dict:
    from pipeline.evaluation.evaluate import denoise_table, evaluate_denoiser, save_denoise_plots
    from pipeline.training.trainer import subsample_masks

    with X.test_split_access("final_eval"):
        files, include = X.test_files(cfg, task, split)
        include = subsample_masks(files, cfg, "denoise", max_windows, cfg.eval.seed, include)
        out = evaluate_denoiser(model, files, cfg, task, mean, scale, part="test",
                                noise_types=cfg.noise.types, snr_dbs=cfg.noise.eval_snr_db,
                                include=include, classic=("bandpass", "wavelet"), keep_examples=3)
    save_denoise_plots(out["results"], out["examples"], run_dir / "plots")
    return {"results": out["results"], "table_snr_improvement_db": denoise_table(out["results"]),
            "table_prd_percent": denoise_table(out["results"], "prd_pct"),
            "test_records": list(split.test), "max_test_windows": max_windows}


def _report_md(task: Task, model_name: str, res: dict, cfg: PipelineConfig, mode: str,
               run_dir: Path) -> str:
    lines = [f"# Final held-out evaluation: {model_name} on {task.name}", "",
             f"- mode: {mode}",
             f"- split: {'PTB-XL strat_fold 1-8 / 9 / 10' if task.kind == 'ptbxl' else cfg.splits.scheme}"
             + (" (LEAKY: beats of one patient in train and test)" if cfg.splits.scheme == "intra_patient" else ""),
             f"- run folder: `{run_dir.name}`", ""]
    if task.denoising:
        lines += ["## SNR improvement (dB), mean over test windows", "", res["table_snr_improvement_db"], "",
                  "## PRD (%)", "", res["table_prd_percent"], ""]
    else:
        try:
            from pipeline.evaluation import metrics as M

            lines += [M.format_markdown(res, list(task.classes)), ""]
        except Exception:  # noqa: BLE001
            lines += ["```", json.dumps(res, indent=1, default=str)[:4000], "```"]
        lines += ["## Bootstrap 95 % intervals ("
                  + ("ECGs" if task.kind == "ptbxl" else "records") + " resampled)", ""]
        for k, v in res.get("bootstrap_95ci", {}).items():
            lines.append(f"- {k}: {v['point']:.4f} [{v['low']:.4f}, {v['high']:.4f}]")
    return "\n".join(lines) + "\n"


def find_kfold_run(task: Task, model_name: str, hparams: Path | None,
                   runs_dir: Path | None = None) -> Path | None:
    """Newest ``*_<task>_<model>_kfold*`` run with the same hyperparameter file, or ``None``."""
    runs = Path(runs_dir or X.RUNS_DIR)
    want = str(Path(hparams).resolve()) if hparams else None
    for d in sorted(runs.glob(f"*{task.name}_{model_name}_kfold*"), reverse=True):
        f = d / "kfold.json"
        if not f.is_file():
            continue
        res = read_json(f, "k-fold result")
        if res.get("task") != task.name or res.get("model") != model_name:
            continue
        got = str(Path(res["hparams"]).resolve()) if res.get("hparams") else None
        if got == want:
            return d
    return None


def final_epochs(cfg: PipelineConfig, task: Task, model_name: str, hparams: Path | None,
                 kfold_run: Path | None) -> tuple[int, str]:
    """Epochs of the final retrain and a sentence saying where they come from."""
    how = cfg.eval.final_epochs
    if how == "config":
        return cfg.train.epochs, f"train.epochs = {cfg.train.epochs}"
    if how != "kfold":
        raise PipelineError(f"unknown eval.final_epochs {how!r}; known: kfold, config")
    kdir = kfold_run if kfold_run is not None else find_kfold_run(task, model_name, hparams)
    if kdir is None:
        return cfg.train.epochs, (f"train.epochs = {cfg.train.epochs} (no k-fold run of "
                                  f"{task.name}/{model_name} with these hyperparameters)")
    res = read_json(Path(kdir) / "kfold.json", "k-fold result")
    med = res.get("best_epoch_median")
    if not med:
        raise PipelineError(f"{kdir}/kfold.json: no best_epoch_median (rerun pipeline.kfold)")
    return int(med), f"median best epoch of the k-fold run {Path(kdir).name} = {med}"


def run(cfg: PipelineConfig, task: Task, model_name: str, *, from_run: Path | None,
        hparams: Path | None, out_dir: Path | None, max_windows: int, n_boot: int,
        tag: str = "final", kfold_run: Path | None = None) -> Path:
    from pipeline.training.trainer import apply_hparams, load_best_model, train

    split = X.make_split(cfg, task)
    if from_run is not None:
        run_dir = Path(from_run)
        if not (run_dir / "normalization.json").is_file():
            raise PipelineError(f"{run_dir}: not a training run (no normalization.json)")
        saved = read_json(run_dir / "model.json", "run model description")
        if saved["task"] != task.name:
            raise PipelineError(f"{run_dir}: trained on {saved['task']}, not {task.name}")
        model_name = saved["model"]
        sf = X.split_files(cfg, task, split)
        model = load_best_model(run_dir)
        mode = f"best checkpoint of training run {run_dir.name} (trained on training patients)"
    else:
        hp = hparams
        default_hp = X.RUNS_DIR / "tuning" / f"{task.name}_{model_name}" / "best_hparams.json"
        if hp is None and default_hp.is_file():
            hp = default_hp
        cfg, kwargs = apply_hparams(cfg, str(hp) if hp else None, dict(cfg.train.model_kwargs))
        epochs, epochs_from = final_epochs(cfg, task, model_name, hp, kfold_run)
        cfg = dataclasses.replace(cfg, train=dataclasses.replace(
            cfg.train, model_kwargs=kwargs, early_stopping_patience=10**6, epochs=epochs,
            lr_schedule=cfg.eval.final_lr_schedule))
        log.info("final retrain: %d epochs (%s), %s learning rate", epochs, epochs_from,
                 cfg.eval.final_lr_schedule)
        base = X.split_files(cfg, task, split)
        if task.kind == "ptbxl" or split.intra is not None:
            sf = base  # keep the validation part (thresholds / intra-patient masks)
        else:
            all_train = tuple(sorted(set(base.train) | set(base.val)))
            sf = X.SplitFiles(split, all_train, base.val)
        run_dir = X.new_run_dir(cfg, task.name, model_name, tag, run_dir=out_dir)
        X.save_split(split, run_dir)
        train(cfg, run_dir, task_name=task.name, model_name=model_name, model_kwargs=kwargs, files=sf)
        # Validation patients were trained on (MIT-BIH), so the last epoch is used, not the
        # epoch that looked best on them; PTB-XL keeps fold 9 apart and uses the best epoch.
        model = load_best_model(run_dir, "best" if sf.val != sf.train and task.kind == "ptbxl" else "last")
        mode = ("retrained on all training records with "
                + (f"hyperparameters from {hp}" if hp else "default hyperparameters")
                + f"; {epochs} epochs ({epochs_from}), {cfg.eval.final_lr_schedule} learning rate")
    mean, scale = NORM.load(run_dir / "normalization.json", task.kind, NORM.n_channels(task.kind, cfg, task.rr_channels))
    if task.denoising:
        res = _denoiser_report(model, cfg, task, split, run_dir, mean, scale, max_windows, n_boot)
    else:
        res = _classifier_report(model, cfg, task, split, sf, run_dir, mean, scale, n_boot)
    res.update({"task": task.name, "model": model_name, "mode": mode, "leaky_split": split.leaky,
                "config": to_dict(cfg)})
    atomic_write_json(run_dir / "metrics_test.json", res)
    atomic_write_text(run_dir / "report.md", _report_md(task, model_name, res, cfg, mode, run_dir))
    return run_dir
