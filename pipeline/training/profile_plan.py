"""The plan of a profile: each stage and run with its budget and an estimated end time.

``run_full_pipeline.sh`` prints it at start (``python -m pipeline.profile plan``) and writes
it to ``<runs_dir>/plan.json``. A training run's budget is its ``train.max_train_seconds``
(scaled by ``--budget-hours``, see :mod:`pipeline.training.profiles`) plus a fixed start-up
allowance; stages without a time budget take the profile's ``profile.estimates_s`` or the
built-in estimates below (data stages: the README's stage-time table on the mirror; tune and
k-fold estimates scale with the budgets, since their examples per epoch do). Estimated end
times are now + the cumulative budgets.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pipeline.core.config import PipelineConfig
from pipeline.core.io_utils import PipelineError, atomic_write_json
from pipeline.training import profiles

DATA_STAGES = ("download", "windows", "scalograms", "tfrecords")
ALL_STAGES = (*DATA_STAGES, *profiles.STAGES)
PLAN_FILE = "plan.json"
DEFAULT_ESTIMATES_S = {
    "download": 10.0, "windows": 30.0, "scalograms": 25.0, "tfrecords": 180.0,
    "train": 300.0, "tune": 600.0, "kfold": 900.0, "final_eval": 180.0, "classic": 300.0,
}
"""Seconds: data stages (whole stage, from the mirror; README stage-time table), and per run
``train`` (a run without a time budget), ``tune``, ``kfold``, ``final_eval`` (the test
evaluation of one run) and ``classic`` (one classic baseline)."""
RUN_START_S = 30.0
"""Per model run: process start, TensorFlow import and data preparation."""


@dataclasses.dataclass(frozen=True)
class PlanStep:
    """One line of the plan."""

    stage: str
    run: str
    """``task:model``, ``task:classic`` or empty (a data stage)."""
    budget_s: float
    basis: str
    """``time budget`` (a ``train.max_train_seconds`` bound) or ``estimate``."""
    detail: str


def human_duration(seconds: float) -> str:
    """``2 h 05 min``, ``4 min 10 s`` or ``42 s``."""
    s = int(round(max(0.0, seconds)))
    if s >= 3600:
        return f"{s // 3600} h {s % 3600 // 60:02d} min"
    return f"{s // 60} min {s % 60:02d} s" if s >= 60 else f"{s} s"


def estimate_s(cfg: PipelineConfig, key: str) -> float:
    """The profile's estimate for ``key`` (``profile.estimates_s``), else the built-in one."""
    value = cfg.profile.estimates_s.get(key, DEFAULT_ESTIMATES_S[key])
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise PipelineError(f"profile.estimates_s.{key}: expected seconds >= 0, got {value!r}")
    return float(value)


def _examples(n: int) -> str:
    return f"{n:,} examples" if n else "full passes"


def train_step(cfg: PipelineConfig, stage: str, task: str, model: str, factor: float,
               extra_s: float = 0.0, what: str = "") -> PlanStep:
    """A run whose training is bounded by ``train.max_train_seconds`` (else an estimate)."""
    settings = profiles.run_settings(cfg, stage, task, model, factor)
    t = profiles.apply_settings(cfg, settings).train
    detail = f"{what}up to {t.epochs} epochs x {_examples(t.examples_per_epoch)}, batch {t.batch_size}"
    if t.max_train_seconds > 0:
        return PlanStep(stage, f"{task}:{model}", t.max_train_seconds + RUN_START_S + extra_s,
                        "time budget", f"{human_duration(t.max_train_seconds)} of training; {detail}")
    return PlanStep(stage, f"{task}:{model}", estimate_s(cfg, "train") * factor + extra_s,
                    "estimate", f"no time limit; {detail}")


def model_steps(cfg: PipelineConfig, stage: str, factor: float) -> list[PlanStep]:
    """The plan lines of one model stage."""
    steps = []
    pairs = profiles.stage_pairs(cfg, stage, False)
    for task, model in pairs:
        run = f"{task}:{model}"
        if stage == "train":
            steps.append(train_step(cfg, stage, task, model, factor))
            continue
        c = profiles.apply_settings(cfg, profiles.run_settings(cfg, stage, task, model, factor))
        if stage == "tune":
            steps.append(PlanStep(stage, run, estimate_s(cfg, "tune") * factor, "estimate",
                                  f"{c.tune.algorithm} search, {c.tune.max_trials} trials x up to "
                                  f"{c.tune.max_epochs} epochs x {_examples(c.train.examples_per_epoch)}"))
        elif stage == "kfold":
            steps.append(PlanStep(stage, run, estimate_s(cfg, "kfold") * factor, "estimate",
                                  f"{c.splits.n_folds} folds x up to {c.train.epochs} epochs x "
                                  f"{_examples(c.train.examples_per_epoch)}"))
        elif run in cfg.profile.tune:
            steps.append(train_step(cfg, stage, task, model, factor, estimate_s(cfg, "final_eval"),
                                    "retrain on all training records with the tuned settings, "
                                    "then the test split once; "))
        else:
            steps.append(PlanStep(stage, run, estimate_s(cfg, "final_eval"), "estimate",
                                  "the best checkpoint on the test split, once"))
    if stage == "final_eval":
        steps += [PlanStep(stage, f"{task}:classic", estimate_s(cfg, "classic"), "estimate",
                           "classic baseline (gradient-boosted trees or a random forest), test split once")
                  for task in cfg.profile.classic]
    return steps


def plan_steps(cfg: PipelineConfig, stages: Sequence[str], factor: float = 1.0) -> list[PlanStep]:
    """Every step of ``stages`` (in pipeline order) with its budget."""
    unknown = [s for s in stages if s not in ALL_STAGES]
    if unknown:
        raise PipelineError(f"unknown stage(s) {unknown}; valid stages: {' '.join(ALL_STAGES)}")
    steps = []
    for stage in ALL_STAGES:
        if stage not in stages:
            continue
        if stage in DATA_STAGES:
            steps.append(PlanStep(stage, "", estimate_s(cfg, stage), "estimate",
                                  "skipped when up to date"))
        else:
            steps += model_steps(cfg, stage, factor)
    return steps


def make_plan(cfg: PipelineConfig, profile: str, stages: Sequence[str],
              budget_hours: float | None = None, now: dt.datetime | None = None) -> dict[str, Any]:
    """The plan as a JSON-able dict: steps with cumulative estimated end times."""
    factor = profiles.budget_factor(cfg, budget_hours)
    now = now or dt.datetime.now().astimezone()
    rows, t = [], 0.0
    for step in plan_steps(cfg, stages, factor):
        t += step.budget_s
        rows.append({**dataclasses.asdict(step), "budget_s": round(step.budget_s, 1),
                     "end_offset_s": round(t, 1),
                     "estimated_end": (now + dt.timedelta(seconds=t)).isoformat(timespec="seconds")})
    return {"profile": profile, "runs_dir": cfg.profile.runs_dir,
            "nominal_budget_hours": cfg.profile.budget_hours, "budget_hours": budget_hours,
            "budget_factor": round(factor, 6), "created": now.isoformat(timespec="seconds"),
            "steps": rows, "total_s": round(t, 1),
            "estimated_end": (now + dt.timedelta(seconds=t)).isoformat(timespec="seconds")}


def plan_text(plan: dict[str, Any]) -> str:
    """The plan as the table ``run_full_pipeline.sh`` prints."""
    nominal = plan["nominal_budget_hours"]
    head = (f"plan: profile {plan['profile']}, runs in {plan['runs_dir']}; budgets x"
            f"{plan['budget_factor']:.2f}" + (f" of the nominal {nominal:g} h" if nominal else ""))
    lines = [head, f"{'stage':<11} {'run':<44} {'budget':>14}  {'ends about':<10} what"]
    for r in plan["steps"]:
        mark = "" if r["basis"] == "time budget" else "~"
        end = r["estimated_end"][11:16]
        lines.append(f"{r['stage']:<11} {r['run'] or '-':<44} "
                     f"{mark + human_duration(r['budget_s']):>14}  {end:<10} {r['detail']}")
    lines.append(f"total about {human_duration(plan['total_s'])}; estimated end "
                 f"{plan['estimated_end'].replace('T', ' ')[:16]} "
                 "(~: an estimate; the others are time budgets)")
    return "\n".join(lines)


def write_plan(plan: dict[str, Any]) -> Path:
    """Writes ``<runs_dir>/plan.json`` atomically; returns its path."""
    path = Path(plan["runs_dir"]) / PLAN_FILE
    atomic_write_json(path, plan)
    return path
