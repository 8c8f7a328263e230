"""Patient-grouped k-fold evaluation: ``python -m pipeline.kfold --task T --model M``.

Folds are formed over the *training* records only (the test split is never opened):
StratifiedGroupKFold by patient for MIT-BIH (records 201 and 202 share a patient), and
iterative-stratification's multi-label stratified folds over whole-patient file groups for
PTB-XL. Inside each fold nothing peeks at the held-out part: validation patients are held out
of the fold's *training* part (:func:`pipeline.data.splits.validation_split`, the
``splits.val_fraction`` of its patients), normalization is fitted on the rest, and stopping
and checkpoint choice (through :func:`pipeline.training.trainer.train`, with its
``train.selection_metric``) follow those validation patients. The held-out fold is read once,
at the end, to score the chosen checkpoint. Writes per-fold metrics, mean ± standard
deviation, a Markdown table and a plot into ``Research_Runs/<date>_<task>_<model>_kfold/``.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import numpy as np

from pipeline.core.config import PipelineConfig
from pipeline.core.io_utils import PipelineError, atomic_write_json, atomic_write_text, read_json
from pipeline.data import normalization, splits
from pipeline.data.tasks import Task
from pipeline.training import run_folder

log = logging.getLogger("ecg.kfold")


def headline(metrics: dict, task: Task) -> dict[str, float]:
    """The numbers compared across folds."""
    if task.multilabel:
        return {"macro_auc": metrics.get("macro_auc"), "f_max": metrics.get("f_max")}
    out = {"accuracy": metrics["accuracy"], "macro_f1": metrics["macro_f1"]}
    for c, m in metrics["per_class"].items():
        out[f"f1_{c}"] = m.get("f1")
        out[f"se_{c}"] = m.get("sensitivity")
    return out


def _record(path: str) -> str:
    return Path(path).name.split("-")[0]


def class_counts(cfg: PipelineConfig, task: Task) -> dict[str, dict[str, int]]:
    """Stored examples per class of each record (or PTB-XL group), from the TFRecord manifest."""
    from pipeline.data.paths import tfrecord_dir

    m = read_json(tfrecord_dir(cfg, task.kind) / "manifest.json", f"{task.kind} TFRecord manifest")
    return {e["record"]: dict(e.get("class_counts", {})) for e in m["files"]}


def fold_files(cfg: PipelineConfig, task: Task, split: splits.Split, k: int,
               counts: dict[str, dict[str, int]]) -> tuple[run_folder.SplitFiles, tuple[str, ...]]:
    """Fold ``k``: training and validation files (validation patients held out of the fold's
    training part) and the held-out files, scored once at the end."""
    fold = run_folder.split_files(cfg, task, split, fold=k)
    records = [_record(f) for f in fold.train]
    if len({splits.patient_of(r) for r in records}) < 2:
        raise PipelineError(f"fold {k}: its training part {records} holds fewer than 2 patients, "
                            "so no validation patients can be held out of it (use fewer folds "
                            "or more records)")
    train, val = splits.validation_split(records, counts, cfg.splits.val_fraction, cfg.splits.seed)
    inner = splits.Split(split.scheme, train, val, (), ())
    sf = run_folder.split_files(cfg, task, inner)
    held = fold.val
    seen = {splits.patient_of(_record(f)) for f in (*sf.train, *sf.val)}
    if seen & {splits.patient_of(_record(f)) for f in held}:
        raise AssertionError(f"fold {k}: held-out patients among its training or validation files")
    return sf, held


def _run_fold(cfg: PipelineConfig, task: Task, model_name: str, kwargs: dict, split: splits.Split,
              k: int, counts: dict, run_dir: Path) -> dict:
    from pipeline.evaluation.evaluate import classifier_metrics, predict_classifier
    from pipeline.training.trainer import load_best_model, train

    sf, held = fold_files(cfg, task, split, k, counts)
    fold_dir = run_dir / f"fold{k}"
    fold_dir.mkdir(exist_ok=True)
    summary = train(cfg, fold_dir, task_name=task.name, model_name=model_name,
                    model_kwargs=kwargs, files=sf)
    mean, scale = normalization.load(fold_dir / "normalization.json", task.kind,
                                     normalization.n_channels(task.kind, cfg, task.rr_channels))
    model = load_best_model(fold_dir)
    pred = predict_classifier(model, held, cfg, task, mean, scale)  # the only read of the fold
    m = classifier_metrics(pred, task)
    atomic_write_json(fold_dir / "metrics_heldout.json", m)
    row = {"fold": k, "train_records": [_record(f) for f in sf.train],
           "val_records": [_record(f) for f in sf.val],
           "heldout_records": [_record(f) for f in held],
           "n_heldout": int(len(pred["y"])), "epochs": summary["epochs_done"],
           "best_epoch": summary["best_epoch"],
           "norm_mean": np.asarray(mean).tolist()[:4], **headline(m, task)}
    log.info("fold %d: %s", k, {kk: v for kk, v in row.items() if isinstance(v, float)})
    return row


def run_kfold(cfg: PipelineConfig, task: Task, model_name: str, out_dir: Path | None = None,
              hparams: Path | None = None, folds: list[int] | None = None) -> dict:
    from pipeline.training.trainer import apply_hparams

    if task.denoising:
        raise PipelineError("k-fold evaluation is for classification tasks")
    hp = hparams
    default_hp = run_folder.RUNS_DIR / "tuning" / f"{task.name}_{model_name}" / "best_hparams.json"
    if hp is None and default_hp.is_file():
        hp = default_hp
    cfg, kwargs = apply_hparams(cfg, str(hp) if hp else None, dict(cfg.train.model_kwargs))
    cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, model_kwargs=kwargs))
    split = run_folder.make_split(cfg, task)
    if split.intra is not None:
        raise PipelineError("k-fold evaluation needs a patient-wise split (splits.scheme=inter_patient)")
    if len(split.folds) < 2:
        raise PipelineError(f"only {len(split.folds)} folds could be formed over the training records")
    counts = class_counts(cfg, task)
    run_dir = run_folder.new_run_dir(cfg, task.name, model_name, "kfold", run_dir=out_dir)
    run_folder.save_split(split, run_dir)
    rows = [_run_fold(cfg, task, model_name, kwargs, split, k, counts, run_dir)
            for k in (folds if folds is not None else range(len(split.folds)))]
    agg = aggregate(rows)
    result = {"task": task.name, "model": model_name, "hparams": str(hp) if hp else None,
              "folds": rows, "aggregate": agg,
              # What the final retrain on all training records uses by default
              # (eval.final_epochs: kfold).
              "best_epoch_median": best_epoch_median(rows)}
    atomic_write_json(run_dir / "kfold.json", result)
    atomic_write_text(run_dir / "report.md", kfold_markdown(result))
    _plot(rows, list(agg), run_dir / "plots" / "kfold.png")
    return result


def aggregate(rows: list[dict]) -> dict:
    """Mean, standard deviation and count over folds of each headline number."""
    keys = [k for k in rows[0] if (isinstance(rows[0][k], float) or rows[0][k] is None)
            and k != "best_epoch"]
    agg = {}
    for k in keys:
        vals = np.array([r[k] for r in rows if r[k] is not None], float)
        vals = vals[np.isfinite(vals)]
        agg[k] = {"mean": float(vals.mean()) if len(vals) else None,
                  "std": float(vals.std(ddof=1)) if len(vals) > 1 else None, "n": int(len(vals))}
    return agg


def best_epoch_median(rows: list[dict]) -> int | None:
    """Median (rounded half up, at least 1) of the folds' best epochs; ``None`` without any."""
    best = [int(r["best_epoch"]) for r in rows if r.get("best_epoch")]
    return max(1, int(np.floor(np.median(best) + 0.5))) if best else None


def kfold_markdown(result: dict) -> str:
    rows = result["folds"]
    keys = [k for k in result["aggregate"]]
    lines = [f"# k-fold evaluation: {result['model']} on {result['task']}", "",
             "Folds are patient-grouped over the training records only. Inside each fold, "
             "validation patients held out of its training part choose the stopping epoch and "
             "checkpoint; normalization is fitted on the rest; the held-out fold is scored once, "
             "at the end.", "",
             "| fold | held-out records | " + " | ".join(keys) + " |", "|" + "---|" * (2 + len(keys))]
    for r in rows:
        held = r.get("heldout_records", r.get("val_records", []))
        lines.append(f"| {r['fold']} | {' '.join(held)} | "
                     + " | ".join("" if r[k] is None else f"{r[k]:.4f}" for k in keys) + " |")
    agg = result["aggregate"]
    lines.append("| mean ± sd | | " + " | ".join(
        "" if agg[k]["mean"] is None else f"{agg[k]['mean']:.4f} ± {agg[k]['std'] or 0:.4f}" for k in keys) + " |")
    if result.get("best_epoch_median"):
        lines += ["", "Best epoch per fold (chosen on the fold's validation patients): "
                  + ", ".join(str(r.get("best_epoch")) for r in rows)
                  + f"; median {result['best_epoch_median']}, the final retrain's epoch count."]
    return "\n".join(lines) + "\n"


def _plot(rows: list[dict], keys: list[str], out: Path) -> None:
    try:
        from pipeline.evaluation import plots

        keys = [k for k in keys if k.startswith(("macro", "f1", "acc"))]
        rows_ = [{"model": f"fold {r['fold']}", **{k: r[k] for k in keys}} for r in rows]
        plots.plot_per_fold(rows_, keys, out)
    except Exception as exc:  # noqa: BLE001 - plots never fail the evaluation
        log.warning("k-fold plot skipped: %s", exc)
