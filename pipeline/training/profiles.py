"""Model stages of ``run_full_pipeline.sh``: train, tune, kfold, final_eval over a profile.

``python -m pipeline.profile STAGE [--config cpu] [--budget-hours H] [--all-models] [--force]``

The profile (config section ``profile``) names ``task:model`` pairs. Every run goes to a fixed
folder ``<profile.runs_dir>/<task>_<model>`` so a rerun resumes an interrupted run or skips a
finished one. Each model runs in its own process (TensorFlow memory is returned between
models). ``--all-models`` trains every registered model on every task it accepts, as the seed
projects' run-all scripts did.

This module owns the settings of each run (:func:`run_settings`: model kwargs, per-run
``train_overrides``, per-stage ``stage_overrides``) and the budget scaling of
``--budget-hours`` (:func:`budget_factor`, :func:`scale_budgets`): every
``train.max_train_seconds`` and, for tune and k-fold (whose work is trials or folds x epochs x
examples), ``train.examples_per_epoch`` are multiplied by H / ``profile.budget_hours``. A
training run that spent its time budget in an earlier part of an interrupted pipeline is not
given a new one (:func:`remaining_train_seconds`), so the total stays bounded across resumes.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pipeline.core.config import ConfigError, PipelineConfig, from_dict, to_dict
from pipeline.core.io_utils import PipelineError, read_json
from pipeline.data.paths import external_name
from pipeline.data.tasks import TASKS
from pipeline.training.checkpoints import STATE_FILE

log = logging.getLogger("ecg.profile")

STAGES = ("train", "tune", "kfold", "final_eval")


def parse_pair(text: str) -> tuple[str, str]:
    if ":" not in text:
        raise PipelineError(f"profile entry {text!r}: expected task:model")
    task, model = text.split(":", 1)
    if task not in TASKS:
        raise PipelineError(f"profile entry {text!r}: unknown task {task!r}; known: {sorted(TASKS)}")
    return task, model


def all_pairs(cfg: PipelineConfig) -> list[tuple[str, str]]:
    """Every registered model on the first task (of those with data) that accepts it."""
    from models import registry
    from pipeline.data.paths import tfrecord_dir

    pairs = []
    have = {t.name for t in TASKS.values() if (tfrecord_dir(cfg, t.kind) / "manifest.json").is_file()}
    for kind in ("denoiser", "classifier"):
        for name in registry.names(kind):
            spec = registry.get(kind, name)
            for t in TASKS.values():
                if t.name in have and (t.denoising == (kind == "denoiser")) and spec.input_kind in t.accepts:
                    pairs.append((t.name, name))
                    break
    return pairs


# ------------------------------------------------------------------ settings and budgets


def budget_factor(cfg: PipelineConfig, budget_hours: float | None) -> float:
    """H / ``profile.budget_hours`` for ``--budget-hours H`` (1.0 without it).

    Raises:
        PipelineError: H not a positive number, or a profile that states no nominal hours.
    """
    if budget_hours is None:
        return 1.0
    if not (isinstance(budget_hours, (int, float)) and math.isfinite(budget_hours) and budget_hours > 0):
        raise PipelineError(f"--budget-hours must be a number of hours > 0. Received: {budget_hours!r}")
    if cfg.profile.budget_hours <= 0:
        raise PipelineError(f"--budget-hours {budget_hours:g}: this profile states no "
                            "profile.budget_hours, so its budgets cannot be scaled")
    return float(budget_hours) / cfg.profile.budget_hours


def flat_sections(sections: Any, where: str) -> dict[str, Any]:
    """``{"train": {"epochs": 3}}`` -> ``{"train.epochs": 3}``, keys and values checked.

    Raises:
        ConfigError: an unknown section or key, or a bad value, naming ``where``.
    """
    if not isinstance(sections, Mapping):
        raise ConfigError(f"{where}: expected a mapping of config sections, got {sections!r}")
    from_dict(sections, where)
    return {f"{section}.{key}": value for section, values in sections.items()
            for key, value in (values or {}).items()}


def run_settings(cfg: PipelineConfig, stage: str, task: str, model: str,
                 factor: float = 1.0) -> dict[str, Any]:
    """``section.key -> value`` of one run of ``stage``: the model's kwargs (those of
    ``task:model`` if given, else of the model name), then ``train_overrides`` of the task and
    of ``task:model``, then ``stage_overrides[stage]``, with the budgets scaled by ``factor``."""
    out: dict[str, Any] = {}
    kwargs = cfg.profile.model_kwargs
    kw = dict(kwargs.get(f"{task}:{model}", kwargs.get(model, {})))
    if kw:
        out["train.model_kwargs"] = kw
    for key in (task, f"{task}:{model}"):
        over = cfg.profile.train_overrides.get(key, {})
        out.update(flat_sections({"train": over}, f"profile.train_overrides.{key}"))
    out.update(stage_settings(cfg, stage))
    return scale_budgets(cfg, stage, out, factor)


def stage_settings(cfg: PipelineConfig, stage: str) -> dict[str, Any]:
    """``profile.stage_overrides[stage]`` as ``section.key -> value``."""
    unknown = sorted(set(cfg.profile.stage_overrides) - set(STAGES))
    if unknown:
        raise PipelineError(f"profile.stage_overrides: unknown stage(s) {unknown}; known: {list(STAGES)}")
    return flat_sections(cfg.profile.stage_overrides.get(stage, {}),
                         f"profile.stage_overrides.{stage}")


def scale_budgets(cfg: PipelineConfig, stage: str, settings: Mapping[str, Any],
                  factor: float) -> dict[str, Any]:
    """``settings`` with ``train.max_train_seconds`` (any stage) and, for tune and kfold,
    ``train.examples_per_epoch`` multiplied by ``factor`` (0, no limit / a full pass, stays)."""
    out = dict(settings)
    if factor == 1.0:
        return out
    seconds = float(out.get("train.max_train_seconds", cfg.train.max_train_seconds))
    if seconds > 0:
        out["train.max_train_seconds"] = round(seconds * factor, 1)
    if stage in ("tune", "kfold"):
        n = int(out.get("train.examples_per_epoch", cfg.train.examples_per_epoch))
        if n > 0:
            out["train.examples_per_epoch"] = max(1, round(n * factor))
    return out


def apply_settings(cfg: PipelineConfig, settings: Mapping[str, Any]) -> PipelineConfig:
    """The config one run sees: ``cfg`` with ``settings`` (``section.key``) applied."""
    raw = to_dict(cfg)
    for key, value in settings.items():
        section, name = key.split(".", 1)
        raw[section][name] = value
    return from_dict(raw, "profile settings")


def set_args(settings: Mapping[str, Any]) -> list[str]:
    """``--set section.key=<JSON value>`` arguments (JSON is YAML)."""
    out = []
    for key, value in settings.items():
        out += ["--set", f"{key}={json.dumps(value)}"]
    return out


def remaining_train_seconds(run_dir: Path, budget_s: float) -> float | None:
    """What is left of a training run's time budget (``budget_s``; 0: no limit).

    ``None``: the run stopped at its budget in an earlier part of the pipeline (skip it);
    ``budget_s``: a new run, or no limit; otherwise the budget minus the training time
    recorded so far (at least 1 s: one more epoch), so an interrupted run is not given a
    whole new budget.
    """
    summary_path, state_path = Path(run_dir) / "summary.json", Path(run_dir) / STATE_FILE
    if budget_s <= 0 or not state_path.is_file():
        return budget_s
    state = read_json(state_path, "training state")
    if not isinstance(state, dict) or state.get("finished"):
        return budget_s
    if summary_path.is_file():
        summary = read_json(summary_path, "run summary")
        if isinstance(summary, dict) and str(summary.get("stop_reason", "")).startswith("time budget"):
            return None
    return max(1.0, round(budget_s - float(state.get("train_seconds", 0.0)), 1))


# ------------------------------------------------------------------------------ stages


def _run(cmd: list[str], what: str) -> None:
    log.info("%s: %s", what, " ".join(cmd))
    t0 = time.perf_counter()
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2")}
    r = subprocess.run(cmd, env=env)
    if r.returncode != 0:
        raise PipelineError(f"{what} failed (exit {r.returncode}); rerun to resume")
    log.info("%s: done in %.0f s", what, time.perf_counter() - t0)


@dataclasses.dataclass(frozen=True)
class StageRun:
    """What every run of a stage shares: config, command prefix, ``--force``, budget factor."""

    cfg: PipelineConfig
    base_args: list[str]
    force: bool = False
    factor: float = 1.0

    @property
    def runs(self) -> Path:
        return Path(self.cfg.profile.runs_dir)

    def command(self, module: str, *args: str) -> list[str]:
        return [sys.executable, "-m", module, *self.base_args, *args]

    def settings(self, stage: str, task: str, model: str) -> dict[str, Any]:
        return run_settings(self.cfg, stage, task, model, self.factor)


def train_one(sr: StageRun, task: str, model: str) -> bool:
    """Trains one run (resumed with what is left of its budget); False: budget spent."""
    name, settings = f"{task}_{model}", sr.settings("train", task, model)
    budget = float(settings.get("train.max_train_seconds", sr.cfg.train.max_train_seconds))
    left = remaining_train_seconds(sr.runs / name, budget)
    if left is None:
        print(f"train {name}: stopped at its time budget in an earlier part; skipped "
              f"(python -m pipeline.train --run-dir {sr.runs / name} ... trains it further)")
        return False
    if left != budget:
        log.info("train %s: resumed with %.0f s left of its %.0f s budget", name, left, budget)
        settings["train.max_train_seconds"] = left
    _run(sr.command("pipeline.train", "--task", task, "--model", model,
                    "--run-dir", str(sr.runs / name), *set_args(settings)), f"train {name}")
    return True


def window_args(cfg: PipelineConfig, task: str) -> list[str]:
    """``--max-test-windows N`` of the profile for the denoising task, else nothing."""
    return (["--max-test-windows", str(cfg.profile.max_test_windows)]
            if task == "mitdb_denoise" else [])


def final_one(sr: StageRun, task: str, model: str) -> None:
    """The final held-out evaluation of one profile entry (retrain when it was tuned)."""
    name, runs, force = f"{task}_{model}", sr.runs, ["--force"] if sr.force else []
    tuned = runs / "tuning" / name / "best_hparams.json"
    if tuned.is_file():  # retrain on all training records with the tuned settings
        out = runs / f"{name}_final"
        if sr.force or not (out / "metrics_test.json").is_file():
            kf = runs / f"{name}_kfold"
            _run(sr.command("pipeline.final_eval", "--task", task, "--model", model,
                            "--hparams", str(tuned), "--out", str(out),
                            *(["--kfold", str(kf)] if (kf / "kfold.json").is_file() else []),
                            *force, *set_args(sr.settings("final_eval", task, model))),
                 f"final {name}")
        return
    out = runs / name  # evaluate the trained run's best checkpoint once on test
    if not (out / "summary.json").is_file():
        raise PipelineError(f"{out}: not trained yet; run the train stage first")
    extra = window_args(sr.cfg, task)
    if sr.force or not (out / "metrics_test.json").is_file():
        _run(sr.command("pipeline.final_eval", "--task", task, "--run", str(out), *extra, *force),
             f"final {name}")
    if task in sr.cfg.profile.external:
        external_one(sr, task, out, extra)


def external_folder(cfg: PipelineConfig, task: str) -> Path:
    """``profile.external[task]``, a relative folder taken under the data folder."""
    folder = Path(cfg.profile.external[task])
    return folder if folder.is_absolute() else cfg.data_dir / folder


def external_one(sr: StageRun, task: str, run: Path, extra: list[str]) -> None:
    """Scores ``run`` on the task's outside records (``profile.external``) once."""
    folder = external_folder(sr.cfg, task)
    if not folder.is_dir():
        raise PipelineError(f"profile.external[{task}]: {folder} is not a folder of WFDB "
                            "records (download the database first, or give another folder)")
    done = run / f"external_{external_name(folder)}" / "metrics_test.json"
    if sr.force or not done.is_file():
        lead = ["--lead", sr.cfg.profile.external_lead] if sr.cfg.profile.external_lead else []
        _run(sr.command("pipeline.final_eval", "--run", str(run), "--external", str(folder),
                        *lead, *extra, *(["--force"] if sr.force else [])),
             f"external {run.name}")


def classic_one(sr: StageRun, task: str) -> None:
    """The classic baseline of ``task`` (``final_eval --classic``) into ``<task>_classic``."""
    if task not in TASKS:
        raise PipelineError(f"profile.classic: unknown task {task!r}; known: {sorted(TASKS)}")
    out = sr.runs / f"{task}_classic"
    windows = window_args(sr.cfg, task)  # the filters get the windows the denoisers got
    if sr.force or not (out / "metrics_test.json").is_file():
        _run(sr.command("pipeline.final_eval", "--task", task, "--classic", "--out", str(out),
                        *windows, *(["--force"] if sr.force else [])), f"classic {task}")


def stage_pairs(cfg: PipelineConfig, stage: str, all_models: bool) -> list[tuple[str, str]]:
    if all_models and stage in ("train", "final_eval"):
        return all_pairs(cfg)
    return [parse_pair(p) for p in (cfg.profile.tune if stage in ("tune", "kfold") else cfg.profile.train)]


def run_stage(cfg: PipelineConfig, stage: str, base_args: list[str], all_models: bool,
              force: bool, factor: float = 1.0) -> list[dict]:
    """Runs ``stage`` over the profile's entries; returns one row per entry."""
    sr = StageRun(cfg, list(base_args), force, factor)
    done = []
    for task, model in stage_pairs(cfg, stage, all_models):
        name = f"{task}_{model}"
        row = {"stage": stage, "task": task, "model": model}
        if stage == "train":
            row["trained"] = train_one(sr, task, model)
        elif stage == "tune":
            _run(sr.command("pipeline.tune", "--task", task, "--model", model,
                            "--out", str(sr.runs / "tuning" / name),
                            *set_args(sr.settings("tune", task, model))), f"tune {name}")
        elif stage == "kfold":
            hp = sr.runs / "tuning" / name / "best_hparams.json"
            _run(sr.command("pipeline.kfold", "--task", task, "--model", model,
                            "--out", str(sr.runs / f"{name}_kfold"),
                            *(["--hparams", str(hp)] if hp.is_file() else []),
                            *set_args(sr.settings("kfold", task, model))), f"k-fold {name}")
        else:
            final_one(sr, task, model)
        done.append(row)
    if stage == "final_eval":
        for task in cfg.profile.classic:
            classic_one(sr, task)
            done.append({"stage": stage, "task": task, "model": "classic"})
    return done
