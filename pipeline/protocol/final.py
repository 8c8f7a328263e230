"""Final held-out evaluation: ``python -m pipeline.final_eval``.

The only code that reads the test split (MIT-BIH DS2, PTB-XL fold 10). Three modes:

* retrain (``--task T --model M``): retrain on all training records with the chosen
  hyperparameters (``--hparams``, else the tuning result in
  ``Research_Runs/tuning/<task>_<model>/best_hparams.json`` when it exists, else the builder
  defaults), then evaluate once on test. The retrain runs for the median best epoch of the
  matching k-fold run (``eval.final_epochs``; ``train.epochs`` without one) under a cosine
  learning-rate decay (``eval.final_lr_schedule``). MIT-BIH: training = DS1 (validation
  patients included); PTB-XL keeps fold 9 as validation for the decision thresholds.
* ``--run RUN``: evaluate the best checkpoint of a training run once on test, with the run's
  own task, config, split and normalization (:mod:`pipeline.protocol.run_settings`).
* ``--run RUN --external DIR``: score the run on a folder of WFDB records
  (:mod:`pipeline.protocol.external`), written to ``RUN/external_<name>/``.
* ``--task T --classic``: the classic baseline (:mod:`pipeline.training.classic`: gradient-
  boosted trees on rhythm and morphology features), its setting chosen on the validation
  patients, refitted on all training records, then scored once on test with the same report,
  predictions file and ledger line.
* ``--ensemble RUN RUN ... --out DIR``: the mean of the class probabilities of several
  training runs of one task, split and normalization (e.g. seeds of one recipe), evaluated
  once on test into ``DIR``. With ``--stored``, the mean of the test probabilities that
  evaluated runs stored in their predictions files (any beat classifiers of one task and test
  split, the classic baseline included; late fusion, logged as one more test read).

Each evaluation writes ``metrics_test.json``, ``report.md``, the per-example file
(``predictions_test.csv`` or ``windows_test.csv``, :mod:`pipeline.evaluation.predictions`)
and plots, with bootstrap 95 % intervals resampling records (PTB-XL: ECGs), and appends one
line to the test-read ledger (:mod:`pipeline.protocol.ledger`). A folder already evaluated is
refused unless ``force``, which keeps the previous files as ``*.prev``.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import os
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from pipeline.core.config import PipelineConfig, to_dict
from pipeline.core.io_utils import PipelineError, atomic_write_json, atomic_write_text, read_json
from pipeline.data import normalization, windowing
from pipeline.data.paths import external_name
from pipeline.data.splits import Split
from pipeline.data.tasks import Task
from pipeline.evaluation import pass_through, predictions
from pipeline.protocol import ledger, reports
from pipeline.protocol.run_settings import RunSettings, load_run_settings
from pipeline.training import run_folder

log = logging.getLogger("ecg.final_eval")

OUTPUTS = ("metrics_test.json", "report.md", predictions.CLASSIFIER_FILE, predictions.DENOISER_FILE)


@dataclasses.dataclass(frozen=True)
class Request:
    """What a final evaluation is asked for, besides the model and data."""

    max_windows: int = 0
    """Denoising: a fixed random subset of about this many test windows (0: all)."""
    n_boot: int = 1000
    force: bool = False
    external: Path | None = None
    lead: str | None = None


def check_not_evaluated(out_dir: Path, force: bool) -> None:
    """Refuses a folder that already holds a final evaluation, unless ``force``."""
    if (Path(out_dir) / "metrics_test.json").is_file() and not force:
        raise PipelineError(f"{out_dir}: already evaluated (metrics_test.json exists); --force "
                            "evaluates again and keeps the previous files as *.prev")


def keep_previous(out_dir: Path) -> list[str]:
    """Renames the previous evaluation's files to ``<name>.prev``; returns their names."""
    kept = []
    for name in OUTPUTS:
        p = Path(out_dir) / name
        if p.is_file():
            os.replace(p, p.with_name(p.name + ".prev"))
            kept.append(name)
    return kept


def _write(out_dir: Path, res: dict, report: str, csv_name: str, csv_text: str) -> None:
    kept = keep_previous(out_dir)
    if kept:
        log.info("previous evaluation kept as %s", ", ".join(f"{k}.prev" for k in kept))
    atomic_write_text(out_dir / csv_name, csv_text)
    atomic_write_text(out_dir / "report.md", report)
    atomic_write_json(out_dir / "metrics_test.json", res)  # last: marks the folder evaluated


def _score(model: Any, cfg: PipelineConfig, task: Task, files: tuple[str, ...],
           include: Any, *, run_dir: Path, out_dir: Path, request: Request,
           val_files: Any = None, raw_folder: Path | None = None,
           noise_cfg: PipelineConfig | None = None, gate: Any = None) -> tuple[dict, str, str]:
    """Scores ``model`` on ``files``; returns (result, csv name, csv text). ``gate``: a
    denoiser run's pass-through gate, scored beside the model alone."""
    mean, scale = normalization.load(run_dir / "normalization.json", task.kind,
                                     normalization.n_channels(task.kind, cfg, task.rr_channels))
    if task.denoising:
        res, text = reports.denoiser_result(model, cfg, task, files, include, mean, scale,
                                            out_dir, request.max_windows, request.n_boot,
                                            noise_cfg or cfg, gate=gate)
        return res, predictions.DENOISER_FILE, text
    res, text = reports.classifier_result(model, cfg, task, files, include, mean, scale,
                                          out_dir, request.n_boot, val_files, raw_folder)
    return res, predictions.CLASSIFIER_FILE, text


def _finish(res: dict, *, cfg: PipelineConfig, task: Task, model_name: str, mode: str,
            split: Split | None, run_dir: Path, out_dir: Path, csv: tuple[str, str],
            request: Request, external: str | None) -> Path:
    leaky = bool(split.leaky) if split is not None and external is None else False
    res.update({"task": task.name, "model": model_name, "mode": mode, "leaky_split": leaky,
                "external": external, "bootstrap_samples": int(request.n_boot),
                "bootstrap_seed": int(cfg.eval.seed), "config": to_dict(cfg)})
    res.setdefault("predictions", {})["file"] = csv[0]
    report = reports.report_md(task, model_name, res, mode, run_dir, split, external)
    _write(out_dir, res, report, csv[0], csv[1])
    ledger.record_test_read(cfg, run_dir, task=task.name, model=model_name,
                            metrics_read=reports.metrics_read(res, task), external=external,
                            leaky=leaky, out_dir=out_dir)
    return out_dir


def evaluate_run(settings: RunSettings, request: Request) -> Path:
    """``--run RUN``: the run's best checkpoint on the test split (or ``--external``)."""
    from pipeline.training.trainer import load_best_model

    if request.external is not None:
        return evaluate_external(settings, request)
    cfg, task, run_dir = settings.cfg, settings.task, settings.run_dir
    check_not_evaluated(run_dir, request.force)
    model = load_best_model(run_dir)
    sf = run_folder.split_files(cfg, task, settings.split)
    mode = f"best checkpoint of training run {run_dir.name} (trained on training patients)"
    with run_folder.test_split_access("final_eval"):
        files, include = run_folder.test_files(cfg, task, settings.split)
        res, name, text = _score(model, cfg, task, files, include, run_dir=run_dir,
                                 out_dir=run_dir, request=request,
                                 val_files=(sf.val, sf.include_val),
                                 raw_folder=windowing.raw_dir(cfg, "mitdb"),
                                 gate=pass_through.load(run_dir))
    return _finish(res, cfg=cfg, task=task, model_name=settings.model, mode=mode,
                   split=settings.split, run_dir=run_dir, out_dir=run_dir, csv=(name, text),
                   request=request, external=None)


def evaluate_folder(run_dir: Path, cfg: PipelineConfig, overrides: Sequence[str], *,
                    task_name: str | None, model_name: str | None,
                    request_for: Callable[[int], Request]) -> Path:
    """``final_eval --run RUN``: a training run with its own settings, or a ``--classic``
    folder (scored on outside records). ``request_for(n_boot_default)`` builds the request."""
    from pipeline.training.classic_store import is_classic_run

    if is_classic_run(run_dir):
        return evaluate_classic_external(run_dir, request_for(cfg.eval.bootstrap_samples))
    settings = load_run_settings(run_dir, cfg, overrides, task_name=task_name,
                                 model_name=model_name)
    return evaluate_run(settings, request_for(settings.cfg.eval.bootstrap_samples))


def evaluate_external(settings: RunSettings, request: Request) -> Path:
    """``--run RUN --external DIR``: the run on outside records, into ``RUN/external_<name>/``."""
    from pipeline.protocol import external
    from pipeline.training.trainer import load_best_model

    folder = Path(request.external)
    name = external_name(folder)
    out_dir = settings.run_dir / f"external_{name}"
    check_not_evaluated(out_dir, request.force)
    model = load_best_model(settings.run_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out_dir, prefix=".data-") as work:
        ext_cfg, files = external.prepare(settings.cfg, settings.task, folder, Path(work),
                                          request.lead)
        res, csv_name, text = _score(model, ext_cfg, settings.task, files, None,
                                     run_dir=settings.run_dir, out_dir=out_dir, request=request,
                                     raw_folder=folder, noise_cfg=settings.cfg,
                                     gate=pass_through.load(settings.run_dir))
    res["external_records"] = sorted({Path(f).name.split("-")[0] for f in files})
    mode = (f"best checkpoint of training run {settings.run_dir.name} on the external folder "
            f"{folder} (lead {ext_cfg.windows.lead}, resampled to the run's rates)")
    return _finish(res, cfg=settings.cfg, task=settings.task, model_name=settings.model,
                   mode=mode, split=None, run_dir=settings.run_dir, out_dir=out_dir,
                   csv=(csv_name, text), request=request, external=name)


def each_test_record(split: Split, read: Any) -> list[Any]:
    """``[read(record) for record in the split's test records]`` with the test split open:
    the path of readers that work on whole test records (denoise, then classify)."""
    with run_folder.test_split_access("final_eval"):
        return [read(name) for name in run_folder.test_records(split)]


class MeanOfModels:
    """Averages the outputs of several models (an ensemble with ``predict_on_batch``)."""

    def __init__(self, models: list[Any]):
        self.models = models

    def predict_on_batch(self, x: Any) -> Any:
        import numpy as np

        return np.mean([np.asarray(m.predict_on_batch(x)) for m in self.models], axis=0)


def check_ensemble(members: list[RunSettings]) -> None:
    """Refuses members that differ in task, split or normalization (one line naming them)."""
    if len(members) < 2:
        raise PipelineError(f"--ensemble needs at least 2 runs. Received: {len(members)}")
    first = members[0]
    for other in members[1:]:
        for what, name in (("task", None), ("split", "splits.json"),
                           ("normalization", "normalization.json")):
            same = (other.task.name == first.task.name if name is None else
                    read_json(other.run_dir / name) == read_json(first.run_dir / name))
            if not same:
                raise PipelineError(f"--ensemble: {other.run_dir} has another {what} than "
                                    f"{first.run_dir}; members must share task, split and "
                                    "normalization")
    if first.task.denoising:
        raise PipelineError("--ensemble averages classifier probabilities; "
                            f"{first.task.name} is a denoising task")


def evaluate_ensemble(members: list[RunSettings], out_dir: Path, request: Request) -> Path:
    """The mean probabilities of ``members``' best checkpoints, once on test, into ``out_dir``."""
    from pipeline.training.trainer import load_best_model

    check_ensemble(members)
    check_not_evaluated(out_dir, request.force)
    first = members[0]
    cfg, task, split = first.cfg, first.task, first.split
    model = MeanOfModels([load_best_model(m.run_dir) for m in members])
    out_dir.mkdir(parents=True, exist_ok=True)
    names = [m.run_dir.name for m in members]
    atomic_write_json(out_dir / "ensemble.json", {"members": [str(m.run_dir) for m in members],
                                                  "models": [m.model for m in members]})
    sf = run_folder.split_files(cfg, task, split)
    with run_folder.test_split_access("final_eval"):
        files, include = run_folder.test_files(cfg, task, split)
        res, name, text = _score(model, cfg, task, files, include, run_dir=first.run_dir,
                                 out_dir=out_dir, request=request,
                                 val_files=(sf.val, sf.include_val),
                                 raw_folder=windowing.raw_dir(cfg, "mitdb"))
    res["ensemble_members"] = names
    mode = f"mean class probabilities of the best checkpoints of {len(names)} runs: {', '.join(names)}"
    label = "ensemble(" + "+".join(m.model for m in members) + ")"
    return _finish(res, cfg=cfg, task=task, model_name=label, mode=mode, split=split,
                   run_dir=out_dir, out_dir=out_dir, csv=(name, text), request=request,
                   external=None)


def _stored_member(run_dir: Path) -> tuple[dict, Split]:
    """An evaluated member's ``metrics_test.json`` and split; refuses what cannot be averaged."""
    from pipeline.protocol.run_settings import split_from_json

    m = read_json(run_dir / "metrics_test.json", "final evaluation")
    split = split_from_json(read_json(run_dir / "splits.json", "run split"),
                            str(run_dir / "splits.json"))
    why = ("it was scored on external records" if m.get("external") else
           "its split is leaky" if m.get("leaky_split") or split.leaky else
           "it is multi-label" if "thresholds_from_validation" in m else
           "it holds no beat predictions" if "per_class" not in m else "")
    if why:
        raise PipelineError(f"{run_dir}: cannot join a stored-predictions ensemble: {why}")
    return m, split


def evaluate_stored_ensemble(run_dirs: list[Path], out_dir: Path, request: Request) -> Path:
    """``--ensemble RUN ... --stored``: the mean of the test probabilities that evaluated
    classifier runs (deep or classic) stored in their predictions files, scored into
    ``out_dir`` with the same metrics, intervals, report and ledger line as any final
    evaluation. Members must share the classes, the test records and the beats (their tasks
    may differ in the inputs, e.g. with and without rhythm features); the first names the
    ensemble's task."""
    from pipeline.core.config import from_dict
    from pipeline.data.tasks import get_task
    from pipeline.evaluation import metrics

    if len(run_dirs) < 2:
        raise PipelineError(f"--ensemble needs at least 2 runs. Received: {len(run_dirs)}")
    check_not_evaluated(out_dir, request.force)
    stored = [_stored_member(d) for d in run_dirs]
    (first, split), names = stored[0], [str(d) for d in run_dirs]
    for d, (m, other) in zip(run_dirs[1:], stored[1:]):
        if m["classes"] != first["classes"] or other.test != split.test:
            raise PipelineError(f"{d}: other classes or test records than {run_dirs[0]}; "
                                "members must score the same test beats")
    classes = list(first["classes"])
    data = predictions.mean_of_tables([predictions.read_classifier_csv(
        d / predictions.CLASSIFIER_FILE, classes, False) for d in run_dirs], names)
    cfg, task = from_dict(first["config"]), get_task(first["task"])
    res = metrics.single_label_metrics(data["y"], data["probs"], classes)
    res["bootstrap_95ci"] = metrics.headline_bootstrap(
        data["y"], data["probs"], classes, multilabel=False, n=request.n_boot,
        seed=cfg.eval.seed, groups=data["record"]) if request.n_boot > 0 else {}
    res.update({"n_test_examples": int(len(data["y"])), "test_records": sorted(split.test),
                "ensemble_members": names, "predictions": {"sample": "as in the members' files"}})
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out_dir / "ensemble.json", {"members": names, "stored_predictions": True,
                                                  "models": [m["model"] for m, _ in stored]})
    run_folder.save_split(split, out_dir)
    text = predictions.classifier_csv(data["record"], data["sample"], data["y"], data["probs"],
                                      classes, multilabel=False)
    label = "ensemble(" + "+".join(m["model"] for m, _ in stored) + ")"
    mode = f"mean of the stored test probabilities of {len(names)} runs: {', '.join(names)}"
    return _finish(res, cfg=cfg, task=task, model_name=label, mode=mode, split=split,
                   run_dir=out_dir, out_dir=out_dir, csv=(predictions.CLASSIFIER_FILE, text),
                   request=request, external=None)


def _classic_dir(task: Task, name: str, tag: str) -> Path:
    """``Research_Runs/<date>_<task>_<name>[_<tag>]``: a classic baseline's default folder."""
    return run_folder.RUNS_DIR / (f"{dt.date.today():%Y-%m-%d}_{task.name}_{name}"
                                  + (f"_{tag}" if tag else ""))


def evaluate_classic(cfg: PipelineConfig, task: Task, *, out_dir: Path | None, tag: str,
                     request: Request) -> Path:
    """The classic baseline: setting chosen on validation patients (or, with
    ``eval.classic_selection: kfold``, on the grouped folds over all training records),
    refitted on all training records, scored once on test. Denoising tasks: the classic
    filters (:func:`evaluate_classic_filters`)."""
    from pipeline.training import classic, classic_decision

    if task.denoising:
        return evaluate_classic_filters(cfg, task, out_dir=out_dir, tag=tag, request=request)
    if task.kind != "segments" or task.multilabel:
        raise PipelineError(f"--classic works on MIT-BIH segment and denoising tasks; "
                            f"{task.name} is a {task.kind} task")
    name = "classic_trees"
    out_dir = out_dir or _classic_dir(task, name, tag)
    check_not_evaluated(out_dir, request.force)
    split = run_folder.make_split(cfg, task)
    classes = list(task.classes)
    both = classic.load_table(windowing.windows_dir(cfg, "mitdb"),
                              sorted(set(split.train) | set(split.val)), cfg.windows.segment_fs_hz)
    by, grid = cfg.eval.classic_selection, classic.grid_for(cfg.eval.classic_context)
    if by == "kfold":
        selection = classic.select_kfold(both, split.folds, classes, cfg.train.seed, grid)
    else:
        selection = classic.select(both.select(split.train), both.select(split.val), classes,
                                   cfg.train.seed, grid)
    decision, candidates = classic_decision.decide(selection, cfg.eval.classic_decision)
    best = selection.best
    run_dir = run_folder.new_run_dir(cfg, task.name, name, tag, run_dir=out_dir)
    run_folder.save_split(split, run_dir)
    atomic_write_json(run_dir / "selection.json", {
        "chosen": best, "grid": selection.rows, "by": by, "features": list(both.feature_names),
        "decision": decision.to_json(), "decision_candidates": candidates})
    models = [classic.fit(both, len(classes), s, cfg.train.seed) for s in decision.settings]
    with run_folder.test_split_access("final_eval"):
        test = classic.load_table(windowing.windows_dir(cfg, "mitdb"), split.test,
                                  cfg.windows.segment_fs_hz)
        member_probs = [classic.probabilities(m, test.x, len(classes)) for m in models]
        # float32, as the predictions file stores them (so recompute gets the same numbers)
        probs = classic_decision.combine(member_probs, decision).astype("float32")
    res, text = classic_scores(test, probs, classes, cfg, request, windowing.raw_dir(cfg, "mitdb"))
    res.update({"test_records": sorted(set(test.record)), "classic_setting": best,
                "classic_decision": decision.to_json(),
                "members": reports.member_scores(test.y, member_probs, decision.settings, classes)
                if len(models) > 1 else []})
    chosen_by = ("pooled out-of-fold macro F1 of patient-grouped folds over the training records"
                 if by == "kfold" else "validation macro F1")
    mode = (f"classic baseline: {classic_decision.describe(decision)} on "
            f"{len(both.feature_names)} rhythm and morphology features, chosen by {chosen_by}, "
            f"refitted on all training records")
    return _finish(res, cfg=cfg, task=task, model_name=name, mode=mode, split=split,
                   run_dir=run_dir, out_dir=run_dir,
                   csv=(predictions.CLASSIFIER_FILE, text), request=request, external=None)


def classic_scores(table: Any, probs: Any, classes: list[str], cfg: PipelineConfig,
                   request: Request, raw_folder: Path) -> tuple[dict, str]:
    """Metrics with record-bootstrap intervals, and the predictions file's text, of the
    classic trees' ``probs`` on a beat table (annotation samples read from ``raw_folder``)."""
    from pipeline.evaluation import metrics

    res = metrics.single_label_metrics(table.y, probs, classes)
    res["bootstrap_95ci"] = metrics.headline_bootstrap(
        table.y, probs, classes, multilabel=False, n=request.n_boot, seed=cfg.eval.seed,
        groups=table.record) if request.n_boot > 0 else {}
    samples, missing = reports.annotation_samples(raw_folder, table.record, table.index,
                                                  cfg.windows.label_scheme)
    res.update({"n_test_examples": int(len(table.y)),
                "predictions": {"sample": "beat annotation sample at the record's native rate",
                                "records_without_annotations": missing}})
    return res, predictions.classifier_csv(table.record, samples, table.y, probs, classes,
                                           multilabel=False)


def evaluate_classic_external(run_dir: Path, request: Request) -> Path:
    """``--run CLASSIC_RUN --external DIR``: a ``final_eval --classic`` folder's decision,
    refitted on the run's training records, scored on outside annotated records
    (``RUN/external_<name>/``; the records go through the windows stage at the run's rates)."""
    from pipeline.protocol import external
    from pipeline.training import classic, classic_store
    from pipeline.training.classic_decision import describe

    if request.external is None:
        raise PipelineError(f"{run_dir}: a classic baseline folder was evaluated when it was "
                            "made; --run on it scores outside records: add --external DIR")
    stored, cfg, task, _ = classic_store.refit_run(run_dir)
    folder = Path(request.external)
    name = external_name(folder)
    out_dir = Path(run_dir) / f"external_{name}"
    check_not_evaluated(out_dir, request.force)
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out_dir, prefix=".data-") as work:
        ext_cfg, names = external.prepare(cfg, task, folder, Path(work), request.lead,
                                          examples=False)
        records = sorted(names)
        table = classic.load_table(windowing.windows_dir(ext_cfg, "mitdb"), records,
                                   cfg.windows.segment_fs_hz)
    res, text = classic_scores(table, stored.probabilities(table.x), list(task.classes), cfg,
                               request, folder)
    res.update({"external_records": records, "classic_decision": stored.decision.to_json()})
    mode = (f"classic baseline of {Path(run_dir).name} ({describe(stored.decision)}), "
            f"refitted on its training records, on the external folder {folder} (lead "
            f"{ext_cfg.windows.lead}, resampled to the run's rates)")
    return _finish(res, cfg=cfg, task=task, model_name="classic_trees", mode=mode, split=None,
                   run_dir=Path(run_dir), out_dir=out_dir,
                   csv=(predictions.CLASSIFIER_FILE, text), request=request, external=name)


def evaluate_classic_filters(cfg: PipelineConfig, task: Task, *, out_dir: Path | None,
                             tag: str, request: Request) -> Path:
    """Denoising's classic baselines (the band-pass and the wavelet shrinkage at its
    validation-chosen settings, :mod:`pipeline.protocol.filter_tuning`) on the test split,
    once, scored by the denoisers' own code on the same fixed windows."""
    name = "classic_filters"
    out_dir = out_dir or _classic_dir(task, name, tag)
    check_not_evaluated(out_dir, request.force)
    split = run_folder.make_split(cfg, task)
    run_dir = run_folder.new_run_dir(cfg, task.name, name, tag, run_dir=out_dir)
    run_folder.save_split(split, run_dir)
    with run_folder.test_split_access("final_eval"):
        files, include = run_folder.test_files(cfg, task, split)
        res, text = reports.denoiser_result(None, cfg, task, files, include, None, None, run_dir,
                                            request.max_windows, request.n_boot, cfg,
                                            classic=("wavelet", "bandpass"))
    mode = ("classic filters: Butterworth band-pass 0.5-40 Hz and wavelet shrinkage at the "
            "settings chosen on validation patients (python -m pipeline.tune_filters)")
    return _finish(res, cfg=cfg, task=task, model_name=name, mode=mode, split=split,
                   run_dir=run_dir, out_dir=run_dir, csv=(predictions.DENOISER_FILE, text),
                   request=request, external=None)


def find_kfold_run(task: Task, model_name: str, hparams: Path | None,
                   runs_dir: Path | None = None) -> Path | None:
    """Newest ``*_<task>_<model>_kfold*`` run with the same hyperparameter file, or ``None``."""
    runs = Path(runs_dir or run_folder.RUNS_DIR)
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


def _retrain_config(cfg: PipelineConfig, task: Task, model_name: str, hparams: Path | None,
                    kfold_run: Path | None) -> tuple[PipelineConfig, dict, str]:
    """The retrain's config and model kwargs, and a sentence describing the recipe."""
    from pipeline.training.trainer import apply_hparams

    hp = hparams
    default_hp = run_folder.RUNS_DIR / "tuning" / f"{task.name}_{model_name}" / "best_hparams.json"
    if hp is None and default_hp.is_file():
        hp = default_hp
    cfg, kwargs = apply_hparams(cfg, str(hp) if hp else None, dict(cfg.train.model_kwargs))
    epochs, epochs_from = final_epochs(cfg, task, model_name, hp, kfold_run)
    cfg = dataclasses.replace(cfg, train=dataclasses.replace(
        cfg.train, model_kwargs=kwargs, early_stopping_patience=10**6, epochs=epochs,
        lr_schedule=cfg.eval.final_lr_schedule))
    log.info("final retrain: %d epochs (%s), %s learning rate", epochs, epochs_from,
             cfg.eval.final_lr_schedule)
    mode = ("retrained on all training records with "
            + (f"hyperparameters from {hp}" if hp else "default hyperparameters")
            + f"; {epochs} epochs ({epochs_from}), {cfg.eval.final_lr_schedule} learning rate")
    return cfg, kwargs, mode


def retrain_and_evaluate(cfg: PipelineConfig, task: Task, model_name: str, *,
                         hparams: Path | None, out_dir: Path | None, tag: str,
                         kfold_run: Path | None, request: Request) -> Path:
    """Retrains on all training records, then evaluates once on the test split."""
    from pipeline.training.trainer import load_best_model, train

    if out_dir is None:
        out_dir = run_folder.RUNS_DIR / (f"{dt.date.today():%Y-%m-%d}_{task.name}_{model_name}"
                                         + (f"_{tag}" if tag else ""))
    check_not_evaluated(out_dir, request.force)
    cfg, kwargs, mode = _retrain_config(cfg, task, model_name, hparams, kfold_run)
    split = run_folder.make_split(cfg, task)
    base = run_folder.split_files(cfg, task, split)
    if task.kind == "ptbxl" or split.intra is not None:
        sf = base  # keep the validation part (thresholds / intra-patient masks)
    else:
        sf = run_folder.SplitFiles(split, tuple(sorted(set(base.train) | set(base.val))), base.val)
    run_dir = run_folder.new_run_dir(cfg, task.name, model_name, tag, run_dir=out_dir)
    run_folder.save_split(split, run_dir)
    train(cfg, run_dir, task_name=task.name, model_name=model_name, model_kwargs=kwargs, files=sf)
    # Validation patients were trained on (MIT-BIH), so the last epoch is used, not the
    # epoch that looked best on them; PTB-XL keeps fold 9 apart and uses the best epoch.
    model = load_best_model(run_dir, "best" if sf.val != sf.train and task.kind == "ptbxl" else "last")
    with run_folder.test_split_access("final_eval"):
        files, include = run_folder.test_files(cfg, task, split)
        res, name, text = _score(model, cfg, task, files, include, run_dir=run_dir,
                                 out_dir=run_dir, request=request,
                                 val_files=(sf.val, sf.include_val),
                                 raw_folder=windowing.raw_dir(cfg, "mitdb"))
    return _finish(res, cfg=cfg, task=task, model_name=model_name, mode=mode, split=split,
                   run_dir=run_dir, out_dir=run_dir, csv=(name, text), request=request,
                   external=None)
