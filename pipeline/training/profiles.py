"""Model stages of ``run_full_pipeline.sh``: train, tune, kfold, final_eval over a profile.

``python -m pipeline.profile STAGE [--config quick] [--all-models] [--force]``

The profile (config section ``profile``) names ``task:model`` pairs. Every run goes to a fixed
folder ``<profile.runs_dir>/<task>_<model>`` so a rerun resumes an interrupted run or skips a
finished one. Each model runs in its own process (TensorFlow memory is returned between
models). ``--all-models`` trains every registered model on every task it accepts, as the seed
projects' run-all scripts did.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

from pipeline.core.config import PipelineConfig
from pipeline.core.io_utils import PipelineError
from pipeline.data.tasks import TASKS

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


def _sets(cfg: PipelineConfig, task: str, model: str) -> list[str]:
    """``--set`` arguments for one run: model kwargs and per-run training overrides."""
    out = []
    kw = dict(cfg.profile.model_kwargs.get(model, {}))
    if kw:
        out += ["--set", f"train.model_kwargs={json.dumps(kw)}"]
    over = {**cfg.profile.train_overrides.get(task, {}),
            **cfg.profile.train_overrides.get(f"{task}:{model}", {})}
    for k, v in over.items():
        out += ["--set", f"train.{k}={json.dumps(v)}"]
    return out


def _run(cmd: list[str], what: str) -> None:
    log.info("%s: %s", what, " ".join(cmd))
    t0 = time.perf_counter()
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2")}
    r = subprocess.run(cmd, env=env)
    if r.returncode != 0:
        raise PipelineError(f"{what} failed (exit {r.returncode}); rerun to resume")
    log.info("%s: done in %.0f s", what, time.perf_counter() - t0)


def run_stage(cfg: PipelineConfig, stage: str, base_args: list[str], all_models: bool,
              force: bool) -> list[dict]:
    pairs = all_pairs(cfg) if all_models and stage in ("train", "final_eval") else [
        parse_pair(p) for p in (cfg.profile.tune if stage in ("tune", "kfold") else cfg.profile.train)]
    runs = Path(cfg.profile.runs_dir)
    py = [sys.executable, "-m"]
    done = []
    for task, model in pairs:
        name = f"{task}_{model}"
        sets = _sets(cfg, task, model)
        if stage == "train":
            _run(py + ["pipeline.train", *base_args, "--task", task, "--model", model,
                       "--run-dir", str(runs / name), *sets], f"train {name}")
        elif stage == "tune":
            _run(py + ["pipeline.tune", *base_args, "--task", task, "--model", model,
                       "--out", str(runs / "tuning" / name), *sets], f"tune {name}")
        elif stage == "kfold":
            hp = runs / "tuning" / name / "best_hparams.json"
            _run(py + ["pipeline.kfold", *base_args, "--task", task, "--model", model,
                       "--out", str(runs / f"{name}_kfold"),
                       *(["--hparams", str(hp)] if hp.is_file() else []), *sets], f"k-fold {name}")
        elif stage == "final_eval":
            tuned = runs / "tuning" / name / "best_hparams.json"
            if tuned.is_file():  # retrain on all training records with the tuned settings
                out = runs / f"{name}_final"
                if force or not (out / "metrics_test.json").is_file():
                    kf = runs / f"{name}_kfold"
                    _run(py + ["pipeline.final_eval", *base_args, "--task", task, "--model", model,
                               "--hparams", str(tuned), "--out", str(out),
                               *(["--kfold", str(kf)] if (kf / "kfold.json").is_file() else []),
                               *(["--force"] if force else []), *sets], f"final {name}")
            else:  # evaluate the trained run's best checkpoint once on test
                out = runs / name
                if not (out / "summary.json").is_file():
                    raise PipelineError(f"{out}: not trained yet; run the train stage first")
                if force or not (out / "metrics_test.json").is_file():
                    extra = (["--max-test-windows", str(cfg.profile.max_test_windows)]
                             if task == "mitdb_denoise" else [])
                    _run(py + ["pipeline.final_eval", *base_args, "--task", task, "--run", str(out),
                               *extra, *(["--force"] if force else [])], f"final {name}")
        done.append({"stage": stage, "task": task, "model": model})
    return done
