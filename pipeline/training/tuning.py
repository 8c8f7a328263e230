"""Hyperparameter search: ``python -m pipeline.tune --task T --model M``.

Keras Tuner (Hyperband by default; ``--algorithm random|bayesian``) over the model's
``search_space(hp)`` plus the shared training hyperparameters (learning rate, weight decay),
scored on *validation patients* only (the test split is never opened): macro F1 for
single-label classifiers (``tune.objective``), whose loss the majority class dominates,
validation loss otherwise. Fixes for Keras Tuner's
known gaps:

* resumable: the tuner state lives in ``Research_Runs/tuning/<task>_<model>/tuner`` and a
  rerun continues the search (``overwrite=False``); a trial killed midway is run again;
* flat memory: the Keras session is cleared before every trial (and ``--subprocess`` runs each
  trial's training in a fresh process, for models that still leak);
* the best hyperparameters are saved as ``best_hparams.json`` (model kwargs + training
  settings), which ``pipeline.train --hparams``, ``pipeline.kfold`` and ``pipeline.final_eval``
  use by default.

Denoisers are tuned on validation windows with mixed real and Gaussian noise at 12 dB.

Distributed search: Keras Tuner's chief/worker mode works unchanged — start the same command
on every machine with ``KERASTUNER_TUNER_ID`` (``chief``, ``tuner0``, ...),
``KERASTUNER_ORACLE_IP`` and ``KERASTUNER_ORACLE_PORT`` set (see README).
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any

from pipeline.core.config import PipelineConfig
from pipeline.core.io_utils import PipelineError, atomic_write_json
from pipeline.data.tasks import Task, check_pairing
from pipeline.training import run_folder as X

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


def resolve_objective(cfg: PipelineConfig, task: Task) -> tuple[str, str]:
    """``(metric name, direction)`` the search optimizes (see ``tune.objective``)."""
    name = cfg.tune.objective
    single_label = not task.denoising and not task.multilabel
    if name == "auto":
        name = "val_macro_f1" if single_label else "val_loss"
    if name == "val_loss":
        return name, "min"
    if name == "val_macro_f1":
        if not single_label:
            raise PipelineError(f"tune.objective val_macro_f1 needs a single-label classification "
                                f"task; {task.name} is not one")
        return name, "max"
    raise PipelineError(f"unknown tune.objective {name!r}; known: auto, val_loss, val_macro_f1")


def _objective_metrics(cfg: PipelineConfig, task: Task) -> list[Any]:
    import keras

    if resolve_objective(cfg, task)[0] == "val_macro_f1":
        # threshold=None: the arg-max class counts as predicted (single-label).
        return [keras.metrics.F1Score(average="macro", threshold=None, name="macro_f1")]
    return []


def make_hypermodel(cfg: PipelineConfig, task: Task, model_name: str) -> Any:
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
            return compile_model(model, task, c, metrics=_objective_metrics(cfg, task))

    return HyperModel(name=f"{task.name}_{model_name}")


def _datasets(cfg: PipelineConfig, task: Task, run_dir: Path) -> tuple[Any, Any, int, dict | None]:
    from pipeline.data.loader import create_dataset, split_labels
    from pipeline.training.trainer import class_weights, normalization_for, subsample_masks

    sf = X.split_files(cfg, task)
    X.save_split(sf.split, run_dir)
    mean, scale = normalization_for(run_dir, sf.train, cfg, task)
    t = cfg.train
    val_masks = subsample_masks(sf.val, cfg, task.kind, t.val_examples, t.seed, sf.include_val)
    cw = None
    if task.denoising:
        from pipeline.data import noise as NZ

        noise = NZ.load_noise(cfg)
        tr_fn = NZ.make_curriculum_noise_fn(cfg, "train", 12.0, cfg.noise.train_types, noise=noise)
        va_fn = NZ.make_curriculum_noise_fn(cfg, "val", 12.0, cfg.noise.train_types, noise=noise)
        train = create_dataset(sf.train, cfg, t.batch_size, True, mean, scale, task=task,
                               noise_fn=tr_fn, include=sf.include_train)
        val = create_dataset(sf.val, cfg, t.batch_size, False, mean, scale, task=task,
                             noise_fn=va_fn, include=val_masks)
        n_train = t.examples_per_epoch or 10000
    else:
        y = split_labels(sf.train, cfg, task, sf.include_train)
        n_train = t.examples_per_epoch or len(y)
        if not task.multilabel and t.class_weighting in ("balanced", "sqrt"):
            cw = class_weights(y, task.n_outputs, power=1.0 if t.class_weighting == "balanced" else 0.5)
        train = create_dataset(sf.train, cfg, t.batch_size, True, mean, scale, task=task,
                               include=sf.include_train)
        val = create_dataset(sf.val, cfg, t.batch_size, False, mean, scale, task=task,
                             include=val_masks)
    steps = max(1, -(-n_train // t.batch_size))
    return train.repeat(), val, steps, cw


def _without_tensorboard(tuner_cls: type) -> type:
    """``tuner_cls`` importing TensorBoard only when a ``TensorBoard`` callback is given.

    Keras Tuner (1.4) imports ``tensorboard`` before every trial on the TensorFlow backend,
    whatever the callbacks; TensorFlow 2.20+ no longer installs it, so every trial failed
    with ``ModuleNotFoundError`` and the search stopped after 3 "failed" trials.
    """

    class Tuner(tuner_cls):
        def _configure_tensorboard_dir(self, callbacks: Any, trial: Any, execution: int = 0) -> None:
            if any(type(c).__name__ == "TensorBoard" for c in callbacks):
                super()._configure_tensorboard_dir(callbacks, trial, execution)

    Tuner.__name__ = Tuner.__qualname__ = tuner_cls.__name__
    return Tuner


def make_tuner(cfg: PipelineConfig, task: Task, model_name: str, directory: Path,
               algorithm: str | None = None, distribution_strategy: Any = None) -> Any:
    import keras_tuner as kt

    tc = cfg.tune
    algo = algorithm or tc.algorithm
    common = dict(
        hypermodel=make_hypermodel(cfg, task, model_name),
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


def tune(cfg: PipelineConfig, task: Task, model_name: str, out_dir: Path | None = None,
         algorithm: str | None = None) -> dict:
    """Runs (or resumes) the search; writes and returns ``best_hparams.json``'s content."""
    import keras

    from pipeline.training.trainer import get_strategy, set_determinism

    set_determinism(cfg)
    run_dir = out_dir or (X.RUNS_DIR / "tuning" / f"{task.name}_{model_name}")
    run_dir = X.new_run_dir(cfg, task.name, model_name, run_dir=run_dir)
    train_ds, val_ds, steps, cw = _datasets(cfg, task, run_dir)
    strategy = get_strategy(cfg) if cfg.train.distribution != "default" else None
    tuner = make_tuner(cfg, task, model_name, run_dir, algorithm, strategy)
    objective, direction = resolve_objective(cfg, task)
    cbs = [keras.callbacks.EarlyStopping(objective, mode=direction,
                                         patience=cfg.train.early_stopping_patience)]
    tuner.search(train_ds, validation_data=val_ds, epochs=cfg.tune.max_epochs,
                 steps_per_epoch=steps, class_weight=cw, callbacks=cbs, verbose=0)
    best_hp = tuner.get_best_hyperparameters(1)[0]
    result = best_hparams_dict(best_hp, cfg, task, model_name)
    trials = [t for t in tuner.oracle.trials.values()]
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
