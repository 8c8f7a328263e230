"""Hyperparameter search: ``python -m pipeline.tune --task T --model M``.

Keras Tuner (Hyperband by default; ``--algorithm random|bayesian``) over the model's
``search_space(hp)`` plus the shared training hyperparameters (learning rate, weight decay),
scored on *validation patients* only (the test split is never opened) by the run's selection
metric (``tune.objective: auto`` follows ``train.selection_metric``: macro F1 for single-label
classifiers, macro AUC for multi-label ones, SNR improvement for denoisers). The data come
from the same :class:`~pipeline.training.trainer.Trainer` that trains runs (split,
normalization fitted on training examples, class weights, validation subset). Fixes for
Keras Tuner's known gaps:

* resumable: the tuner state lives in ``Research_Runs/tuning/<task>_<model>/tuner`` and a
  rerun continues the search (``overwrite=False``); a trial killed midway is run again;
* flat memory: the Keras session is cleared before every trial;
* the best hyperparameters are saved as ``best_hparams.json`` (model kwargs + training
  settings), which ``pipeline.train --hparams``, ``pipeline.kfold`` and ``pipeline.final_eval``
  use by default.

Denoisers are tuned on validation windows with mixed real and Gaussian noise at 12 dB.

Distributed search: Keras Tuner's chief/worker mode: start the same command on every machine
with ``KERASTUNER_TUNER_ID`` (``chief``, ``tuner0``, ...), ``KERASTUNER_ORACLE_IP`` and
``KERASTUNER_ORACLE_PORT`` set (see README). The chief only serves the oracle and writes
the results; workers run trials and write nothing but Keras Tuner's trial folders.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from pipeline.core.config import PipelineConfig
from pipeline.core.io_utils import PipelineError, atomic_write_json
from pipeline.data.tasks import Task, check_pairing
from pipeline.training import run_folder, selection

log = logging.getLogger("ecg.tune")

TRAIN_HPS = ("learning_rate", "weight_decay")


def train_search_space(hp: Any, cfg: PipelineConfig, task: Task) -> dict[str, Any]:
    """Shared training hyperparameters (defaults equal the config's)."""
    out = {"learning_rate": hp.Float("learning_rate", 1e-4, 3e-3, sampling="log",
                                      default=cfg.train.learning_rate)}
    if not task.denoising:
        out["weight_decay"] = hp.Float("weight_decay", 1e-6, 1e-2, sampling="log",
                                       default=cfg.train.weight_decay)
    return out


TUNE_SNR_DB = 12.0
"""Input SNR (dB) of the denoisers' tuning windows."""


def resolve_objective(cfg: PipelineConfig, task: Task) -> tuple[str, str]:
    """``(metric name, direction)`` the search optimizes (``tune.objective``; ``auto``: the
    run's ``train.selection_metric``)."""
    if cfg.tune.objective == "auto":
        return selection.resolve_selection(cfg, task)
    return selection.check_metric(cfg.tune.objective, task, "tune.objective")


def objective_metrics(cfg: PipelineConfig, task: Task, mean: Any = None, scale: Any = None) -> list[Any]:
    """Keras metrics that make ``fit`` log the objective (none for ``val_loss``)."""
    return selection.keras_metrics(resolve_objective(cfg, task)[0], task, mean, scale, TUNE_SNR_DB)


def make_hypermodel(cfg: PipelineConfig, task: Task, model_name: str, mean: Any = None,
                    scale: Any = None) -> Any:
    """``build(hp)`` for Keras Tuner: model kwargs from ``search_space`` + training settings.

    Given an empty ``HyperParameters()`` it returns the default model (builder defaults).
    """
    import keras_tuner as kt

    from models import registry
    from pipeline.training.trainer import build_model, compile_model

    kind = "denoiser" if task.denoising else "classifier"
    spec = registry.get(kind, model_name)
    check_pairing(task, kind, model_name, spec.input_kind)

    class HyperModel(kt.HyperModel):
        def build(self, hp: Any) -> Any:
            import keras

            keras.backend.clear_session()  # flat memory across trials
            kwargs = {**dict(cfg.train.model_kwargs), **spec.search_space(hp)}
            tr = train_search_space(hp, cfg, task)
            c = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, **tr))
            model = build_model(task, c, model_name, kwargs)
            return compile_model(model, task, c, metrics=objective_metrics(cfg, task, mean, scale))

    return HyperModel(name=f"{task.name}_{model_name}")


def datasets(cfg: PipelineConfig, task: Task, model_name: str, write_dir: Path) -> tuple[Any, ...]:
    """``(train stream, validation data, steps per epoch, class weights, prepared data)`` from
    the trainer's ``prepare`` (split, normalization, masks, class weights)."""
    from pipeline.data import noise
    from pipeline.training.trainer import Trainer

    trainer = Trainer(cfg, write_dir, task_name=task.name, model_name=model_name)
    data = trainer.prepare()
    t = cfg.train
    if task.denoising:
        from pipeline.data.served import maybe_served

        fns = [maybe_served(noise.make_curriculum_noise_fn(
            cfg, part, TUNE_SNR_DB, cfg.noise.train_types, noise=data.noise_records), cfg)
            for part in ("train", "val")]
        train = trainer.train_dataset(0, fns[0], subset=False)
        val = trainer.validation_data(fns[1])
        n_train = t.examples_per_epoch or 10000
    else:
        train = trainer.train_dataset(0, subset=False)
        val = trainer.validation_data()
        n_train = t.examples_per_epoch or data.n_train
    steps = max(1, -(-n_train // t.batch_size))
    return train.repeat(), val, steps, data.class_weight, data


def _without_tensorboard(tuner_cls: type) -> type:
    """``tuner_cls`` importing TensorBoard only when a ``TensorBoard`` callback is given.

    Keras Tuner (1.4) imports ``tensorboard`` before every trial on the TensorFlow backend,
    whatever the callbacks; TensorFlow 2.20+ no longer installs it, so every trial failed
    with ``ModuleNotFoundError`` and the search stopped after 3 "failed" trials.
    """

    class Tuner(tuner_cls):
        def on_trial_begin(self, trial: Any) -> None:
            log.info("trial %s started by %s", trial.trial_id, self.tuner_id)
            super().on_trial_begin(trial)

        def _configure_tensorboard_dir(self, callbacks: Any, trial: Any, execution: int = 0) -> None:
            if any(type(c).__name__ == "TensorBoard" for c in callbacks):
                super()._configure_tensorboard_dir(callbacks, trial, execution)

    Tuner.__name__ = Tuner.__qualname__ = tuner_cls.__name__
    return Tuner


def make_tuner(cfg: PipelineConfig, task: Task, model_name: str, directory: Path,
               algorithm: str | None = None, distribution_strategy: Any = None,
               mean: Any = None, scale: Any = None) -> Any:
    import keras_tuner as kt

    tc = cfg.tune
    algo = algorithm or tc.algorithm
    common = dict(
        hypermodel=make_hypermodel(cfg, task, model_name, mean, scale),
        objective=kt.Objective(*resolve_objective(cfg, task)),
        directory=str(directory),
        project_name="tuner",
        overwrite=False,
        seed=cfg.train.seed,
        executions_per_trial=tc.executions_per_trial,
        distribution_strategy=distribution_strategy,
    )
    if algo == "hyperband":
        return _without_tensorboard(kt.Hyperband)(max_epochs=max(2, tc.max_epochs), factor=3,
                            hyperband_iterations=1, max_consecutive_failed_trials=3, **common)
    if algo == "random":
        return _without_tensorboard(kt.RandomSearch)(
            max_trials=tc.max_trials, max_consecutive_failed_trials=3, **common)
    if algo == "bayesian":
        return _without_tensorboard(kt.BayesianOptimization)(
            max_trials=tc.max_trials, max_consecutive_failed_trials=3, **common)
    raise PipelineError(f"unknown tune.algorithm {algo!r}; known: hyperband, random, bayesian")


def best_hparams_dict(hp: Any, cfg: PipelineConfig, task: Task, model_name: str) -> dict:
    from models import registry

    kind = "denoiser" if task.denoising else "classifier"
    spec = registry.get(kind, model_name)
    values = dict(hp.values)
    kwarg_names = set(spec.default_kwargs())
    model_kwargs = {k: v for k, v in spec.search_space(hp).items() if k in kwarg_names}
    train = {k: values[k] for k in TRAIN_HPS if k in values}
    return {"task": task.name, "model": model_name, "model_kwargs": model_kwargs,
            "train": train, "raw_values": values}


def is_tuner_worker() -> bool:
    """A Keras Tuner worker of a distributed search (``KERASTUNER_TUNER_ID`` not ``chief``)."""
    return "KERASTUNER_ORACLE_IP" in os.environ and os.environ.get("KERASTUNER_TUNER_ID", "chief") != "chief"


def tune(cfg: PipelineConfig, task: Task, model_name: str, out_dir: Path | None = None,
         algorithm: str | None = None) -> dict:
    """Runs (or resumes) the search; writes and returns ``best_hparams.json``'s content
    (a distributed search's workers write nothing of their own and return their role)."""
    import keras

    from pipeline.training.strategy import get_strategy, set_determinism

    strategy = get_strategy(cfg) if cfg.train.distribution != "default" else None
    set_determinism(cfg)
    run_dir = out_dir or (run_folder.RUNS_DIR / "tuning" / f"{task.name}_{model_name}")
    worker = is_tuner_worker()
    scratch = Path(tempfile.mkdtemp(prefix="ecg_tuner_")) if worker else None
    try:
        if not worker:
            run_dir = run_folder.new_run_dir(cfg, task.name, model_name, run_dir=run_dir)
        train_ds, val_ds, steps, cw, data = datasets(cfg, task, model_name, scratch or run_dir)
        tuner = make_tuner(cfg, task, model_name, run_dir, algorithm, strategy, data.mean, data.scale)
        objective, direction = resolve_objective(cfg, task)
        cbs = [keras.callbacks.EarlyStopping(objective, mode=direction,
                                             patience=cfg.train.early_stopping_patience)]
        tuner.search(train_ds, validation_data=val_ds, epochs=cfg.tune.max_epochs,
                     steps_per_epoch=steps, class_weight=cw, callbacks=cbs, verbose=0)
    finally:
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)
    if worker:
        return {"worker": os.environ.get("KERASTUNER_TUNER_ID"), "objective": objective}
    return _write_results(tuner, cfg, task, model_name, run_dir, algorithm)


def _write_results(tuner: Any, cfg: PipelineConfig, task: Task, model_name: str, run_dir: Path,
                   algorithm: str | None) -> dict:
    """``best_hparams.json`` and ``trials.json`` of a finished search."""
    objective, direction = resolve_objective(cfg, task)
    best_hp = tuner.get_best_hyperparameters(1)[0]
    result = best_hparams_dict(best_hp, cfg, task, model_name)
    trials = list(tuner.oracle.trials.values())
    result["trials"] = len(trials)
    result["completed_trials"] = sum(1 for t in trials if t.status == "COMPLETED")
    result["objective"] = {"name": objective, "direction": direction}
    result["best_score"] = float(tuner.oracle.get_best_trials(1)[0].score)
    result["algorithm"] = algorithm or cfg.tune.algorithm
    atomic_write_json(run_dir / "best_hparams.json", result)
    table = [{"trial": t.trial_id, "status": t.status, "score": t.score, **t.hyperparameters.values}
             for t in trials]
    atomic_write_json(run_dir / "trials.json", table)
    return result
