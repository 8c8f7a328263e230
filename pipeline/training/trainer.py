"""The trainer of denoisers and classifiers: :class:`Trainer` and :func:`train`.

``Trainer(cfg, run_dir, task_name=..., model_name=...)`` resolves the task, selection metric
and model settings once, then runs named phases (:meth:`Trainer.run`):

* ``start``: the strategy first (MultiWorkerMirroredStrategy allows no TensorFlow op before
  it), seeds, and the saved state (a finished run returns here, having written nothing);
* ``prepare``: split files, normalization fitted on the training examples only (the include
  masks of an intra-patient split), labels, class weights, validation data;
* ``build``: the model, new, resumed from ``last.keras`` or initialized from another run;
* per epoch ``fit_epoch`` (a fresh random subset of every training record), ``validate``
  and ``checkpoint`` (best epoch, plateau and early stopping all by ``train.selection_metric``);
* ``finish``: ``summary.json`` and the history plot.

Denoisers (task ``mitdb_denoise``): rotating epochs clean, 24, 12 and 6 dB (config
``noise.curriculum_snr_db``) or mixed levels, noise of a random type per window among
``noise.train_types`` drawn from the *training* segments of the noise records; loss MSE + 0.3
MAE (or minus the output SNR in dB); Adam, gradient clipping; validation at every level on
validation patients and validation noise segments. Classifiers: class weights or focal loss,
optional per-class limit per epoch, AdamW with weight decay.

A checkpoint after every epoch and every ``checkpoint_every_s`` seconds lets an interrupted
run resume where it stopped. A damaged TFRecord read during training or validation is named
in a one-line error. Only training and validation patients are read; the test split is never
opened here (see ``pipeline.final_eval``). Tuning (:mod:`pipeline.training.tuning`), k-fold
and the final retrain use the same object.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import shutil
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.core.config import PipelineConfig
from pipeline.core.io_utils import PipelineError, atomic_write_json, read_json
from pipeline.data import normalization, schema
from pipeline.data.tasks import Task, check_pairing, get_task
from pipeline.training import distributed_loop, history_files, run_folder, selection, validation
from pipeline.training.checkpoints import (  # noqa: F401 - public names of this module too
    CKPT_DIR,
    STATE_FILE,
    TrainState,
    load_best_model,
    load_init_model,
    load_state,
    save_checkpoint,
    timed_checkpoint,
)
from pipeline.training.damage import damaged_files_named
from pipeline.training.sampling import (  # noqa: F401 - public names of this module too
    class_weights,
    class_weights_for,
    epoch_masks,
    limit_per_class,
    snr_weights,
    stored_counts,
    subsample_masks,
)
from pipeline.training.strategy import distribute_options, get_strategy, is_chief, set_determinism

log = logging.getLogger("ecg.train")

_save_checkpoint = save_checkpoint
"""Looked up at call time by the trainer (tests replace it to simulate a kill)."""


# ------------------------------------------------------------------- model and optimizer


def model_input_shape(task: Task, cfg: PipelineConfig) -> tuple[int, ...]:
    """Input shape of one example as the loader yields it (no batch axis)."""
    shape = schema.example_shape(task.kind, cfg)
    if task.kind == "segments":
        return (*shape, 4 if task.rr_channels else 1)
    if task.kind == "beats":
        return (cfg.loader.seq_len_beats, *shape, 1)
    return tuple(shape)


def build_model(task: Task, cfg: PipelineConfig, name: str, kwargs: Mapping[str, Any]) -> Any:
    """Builds a registered model for a task (pairing checked first)."""
    from models import registry

    kind = "denoiser" if task.denoising else "classifier"
    spec = registry.get(kind, name)
    check_pairing(task, kind, name, spec.input_kind)
    shape = model_input_shape(task, cfg)
    try:
        if task.denoising:
            return spec(shape, **kwargs)
        # Rhythm tasks: the {"ecg", "rr"} input, one rr entry per stored rhythm feature.
        side = {"n_rr_features": len(schema.rhythm_names(cfg))} if task.rhythm else {}
        return spec(shape, task.n_outputs, output_activation=task.output_activation, **side,
                    **kwargs)
    except TypeError as exc:
        raise PipelineError(f"{kind} {name}: bad model kwargs {dict(kwargs)} ({exc})") from None


def make_optimizer(task: Task, cfg: PipelineConfig, learning_rate: float | None = None) -> Any:
    import keras

    t = cfg.train
    lr = t.learning_rate if learning_rate is None else learning_rate
    if task.denoising:
        return keras.optimizers.Adam(lr, clipnorm=t.clipnorm)
    return keras.optimizers.AdamW(lr, weight_decay=t.weight_decay, clipnorm=t.clipnorm)


def make_loss(task: Task, cfg: PipelineConfig) -> Any:
    from pipeline.training.losses import DenoiseLoss, SNRLoss, WithSpectralTerm, classification_loss

    if task.denoising:
        loss = cfg.train.denoise_loss
        if loss not in ("mse_mae", "snr_db"):
            raise PipelineError(f"unknown train.denoise_loss {loss!r}; known: mse_mae, snr_db")
        time_loss = SNRLoss() if loss == "snr_db" else DenoiseLoss(cfg.train.mae_weight)
        weight = cfg.train.spectral_loss_weight
        return WithSpectralTerm(time_loss, weight) if weight > 0 else time_loss
    return classification_loss(task.multilabel, cfg.train.class_weighting == "focal",
                               cfg.train.focal_gamma)


def compile_model(model: Any, task: Task, cfg: PipelineConfig, learning_rate: float | None = None,
                  metrics: Sequence[Any] | None = None) -> Any:
    model.compile(optimizer=make_optimizer(task, cfg, learning_rate), loss=make_loss(task, cfg),
                  metrics=list(metrics) if metrics else None, jit_compile=False)
    return model


def cosine_learning_rate(t: Any, epoch: int) -> float:
    """Learning rate of 0-based ``epoch`` under ``lr_schedule: cosine``: from
    ``learning_rate`` at epoch 0 down to ``min_learning_rate`` at the last epoch."""
    if t.epochs <= 1:
        return float(t.learning_rate)
    frac = min(1.0, epoch / (t.epochs - 1))
    lo = min(t.min_learning_rate, t.learning_rate)
    return float(lo + (t.learning_rate - lo) * 0.5 * (1.0 + math.cos(math.pi * frac)))


def normalization_for(run_dir: Path, files: Sequence[str], cfg: PipelineConfig, task: Task,
                      include: Mapping[str, np.ndarray] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Fits statistics on the training examples (``include``: only those of the masks) or
    reloads them when fitted on the same files and examples."""
    path = Path(run_dir) / "normalization.json"
    names = [Path(f).name for f in files]
    kind = task.kind
    n_masked = None if include is None else int(sum(int(np.sum(include[f])) for f in files))
    rr_names = list(schema.rhythm_names(cfg)) if task.rhythm else []  # rhythm side input
    if path.is_file():
        saved = read_json(path, "normalization statistics")
        if (isinstance(saved, dict) and saved.get("train_files") == names
                and saved.get("masked_examples") == n_masked
                and saved.get("rr_features", []) == rr_names):
            return normalization.load(path, kind, normalization.n_channels(kind, cfg, task.rr_channels))
    extra = {"rhythm": True} if task.rhythm else {}
    if include is None:
        stats = normalization.fit(files, cfg, kind, task.rr_channels, **extra)
    else:
        stats = normalization.fit(files, cfg, kind, task.rr_channels, include=include, **extra)
    stats["masked_examples"] = n_masked
    normalization.save(stats, path)
    return np.asarray(stats["mean"]), np.asarray(stats["scale"])


def apply_hparams(cfg: PipelineConfig, hp_path: str | None, model_kwargs: dict) -> tuple[PipelineConfig, dict]:
    """Merges a tuning result (``best_hparams.json``) into the config and model kwargs."""
    if not hp_path:
        return cfg, model_kwargs
    d = read_json(Path(hp_path), "best hyperparameters")
    kwargs = {**d.get("model_kwargs", {}), **model_kwargs}
    tr = d.get("train", {})
    cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, **tr))
    return cfg, kwargs


# ------------------------------------------------------------------------------ trainer


@dataclasses.dataclass
class TrainingData:
    """What :meth:`Trainer.prepare` resolved once for every epoch."""

    files: run_folder.SplitFiles
    mean: np.ndarray
    scale: np.ndarray
    n_train: int
    val_masks: Mapping[str, np.ndarray] | None
    class_weight: dict[int, float] | None = None
    limit_probs: np.ndarray | None = None
    y_val: np.ndarray | None = None
    noise_records: Mapping[str, np.ndarray] | None = None


class Trainer:
    """One training run over a run folder, built once, run phase by phase (see module doc).

    Args:
        cfg: the resolved config (``train.*`` gives the defaults below).
        run_dir: the run folder (state and checkpoints are read from it).
        task_name, model_name, model_kwargs: override ``train.task/model/model_kwargs``.
        files: the split's files (k-fold and final retrain); default: ``train.task``'s split,
            saved as ``splits.json``.
        write_dir: where the run's files are written (default ``run_dir``); multi-worker
            workers other than the chief write into a temporary folder they delete.
    """

    def __init__(self, cfg: PipelineConfig, run_dir: Path, *, task_name: str | None = None,
                 model_name: str | None = None, model_kwargs: Mapping[str, Any] | None = None,
                 files: run_folder.SplitFiles | None = None, checkpoint_every_s: float = 300.0,
                 verbose: int = 2, extra_callbacks: Sequence[Any] = (),
                 write_dir: Path | None = None) -> None:
        self.cfg, self.t = cfg, cfg.train
        self.task = get_task(task_name or cfg.train.task)
        self.model_name = model_name or cfg.train.model
        self.kwargs = dict(cfg.train.model_kwargs if model_kwargs is None else model_kwargs)
        self.run_dir = Path(run_dir)
        self.write_dir = Path(write_dir) if write_dir is not None else self.run_dir
        self.metric, self.direction = selection.resolve_selection(cfg, self.task)
        self.given_files = files
        self.checkpoint_every_s = checkpoint_every_s
        self.verbose = verbose
        self.extra_callbacks = tuple(extra_callbacks)
        self.strategy: Any = None
        self.state: TrainState | None = None
        self.model: Any = None
        self.data: TrainingData | None = None
        self.val_data: Any = None
        self.sizes: dict[str, int] = {}

    # --------------------------------------------------------------- phases

    def start(self) -> bool:
        """Strategy, seeds and saved state; False when the run is already finished."""
        self.state = load_state(self.run_dir)
        if self.state is not None and self.state.finished:
            log.info("%s: training already finished (%s); nothing to do", self.run_dir,
                     self.state.stop_reason)
            return False
        self.strategy = get_strategy(self.cfg)  # before any other TensorFlow op
        set_determinism(self.cfg)
        return True

    def prepare(self) -> TrainingData:
        """Split files, normalization, labels and class weights, validation data."""
        from pipeline.data.loader import split_labels

        task, t = self.task, self.t
        sf = self.given_files or run_folder.split_files(self.cfg, task)
        if self.given_files is None:
            run_folder.save_split(sf.split, self.write_dir)
        if not sf.train or not sf.val:
            raise PipelineError(f"task {task.name}: empty training or validation split")
        with damaged_files_named(sf.train, "normalization"):
            mean, scale = normalization_for(self.write_dir, sf.train, self.cfg, task, sf.include_train)
        val_masks = subsample_masks(sf.val, self.cfg, task.kind, t.val_examples, t.seed, sf.include_val)
        data = TrainingData(sf, mean, scale, 0, val_masks)
        if task.denoising:
            from pipeline.data import noise

            data.noise_records = noise.load_noise(self.cfg)
            counts = stored_counts(self.cfg, "denoise")
            data.n_train = sum(int(np.sum(sf.include_train[f])) if sf.include_train else counts[f]
                               for f in sf.train)
        else:
            with damaged_files_named(sf.train, "training"):
                y_train = split_labels(sf.train, self.cfg, task, sf.include_train)
            data.n_train = len(y_train)
            if not task.multilabel:
                data.class_weight = class_weights_for(y_train, task.n_outputs, t.class_weighting)
                if t.per_class_limit > 0:
                    counts = np.bincount(y_train.astype(int), minlength=task.n_outputs)
                    data.limit_probs = np.minimum(
                        1.0, t.per_class_limit / np.maximum(counts, 1)).astype(np.float32)
                    data.n_train = int(np.minimum(counts, t.per_class_limit).sum())
            with damaged_files_named(sf.val, "validation"):
                data.y_val = split_labels(sf.val, self.cfg, task, val_masks)
        self.data = data
        return data

    def validation_data(self, noise_fn: Any = None) -> Any:
        """Classifiers: the validation dataset; denoisers: one dataset per level (or, with
        ``noise_fn``, one dataset with that noise)."""
        from pipeline.data.loader import create_dataset

        d = self.data
        if self.task.denoising and noise_fn is None:
            return validation.denoise_val_sets(self.cfg, self.task, d.files.val, d.mean, d.scale,
                                               d.val_masks, d.noise_records)
        return create_dataset(d.files.val, self.cfg, self.t.batch_size, False, d.mean, d.scale,
                              task=self.task, noise_fn=noise_fn, include=d.val_masks)

    def build(self) -> Any:
        """The model in the strategy's scope: resumed, initialized from a run, or new."""
        t = self.t
        with self.strategy.scope():
            if self.state is not None:
                log.info("resuming %s at epoch %d step %d", self.run_dir, self.state.epoch,
                         self.state.step_in_epoch)
                # A time-budget stop of an earlier invocation is not a stop of this one.
                self.state.stop_reason = ""
                self._rebase_selection()
                model = load_best_model(self.run_dir, prefer="last")
            else:
                self.state = TrainState(learning_rate=t.learning_rate, selection_metric=self.metric)
                model = build_model(self.task, self.cfg, self.model_name, self.kwargs)
                if t.init_from:
                    self._init_weights(model)
                compile_model(model, self.task, self.cfg)
        atomic_write_json(self.write_dir / "model.json", {
            "task": self.task.name, "model": self.model_name,
            "kind": "denoiser" if self.task.denoising else "classifier", "kwargs": self.kwargs,
            "params": int(model.count_params()),
            "input_shape": list(model_input_shape(self.task, self.cfg))})
        self.model = model
        return model

    def train_dataset(self, epoch: int, noise_fn: Any = None, subset: bool = True) -> Any:
        """The training stream of ``epoch`` (a fresh subset of every record when
        ``examples_per_epoch`` is below the training size)."""
        from pipeline.data.loader import create_dataset

        d, t = self.data, self.t
        masks = d.files.include_train
        fraction = self.subset_fraction()
        if subset and fraction < 1.0:
            if not self.sizes:
                self.sizes = stored_counts(self.cfg, self.task.kind)
            masks = epoch_masks(d.files.train, self.sizes, fraction, t.seed + 7919 * (epoch + 1), masks)
        ds = create_dataset(d.files.train, self.cfg, t.batch_size, True, d.mean, d.scale,
                            task=self.task, noise_fn=noise_fn, include=masks, seed=t.seed + epoch,
                            check=epoch == 0)
        if d.limit_probs is not None:
            ds = limit_per_class(ds, d.limit_probs, t.batch_size, t.seed + epoch)
        if self.task.denoising and t.denoise_weighting == "snr":
            ds = ds.map(snr_weights)
        elif self.task.denoising and t.denoise_weighting != "none":
            raise PipelineError(f"unknown train.denoise_weighting {t.denoise_weighting!r}; known: none, snr")
        return distribute_options(ds, self.cfg)

    def examples_per_epoch(self) -> int:
        return self.t.examples_per_epoch or self.data.n_train

    def subset_fraction(self) -> float:
        # 10 % spare so the epoch's steps are filled before the stream would wrap around.
        return 1.1 * self.examples_per_epoch() / max(1, self.data.n_train)

    def steps_per_epoch(self) -> int:
        return max(1, math.ceil(self.examples_per_epoch() / self.t.batch_size))

    def fit_epoch(self) -> dict[str, Any]:
        """Trains one epoch (or its rest, after a mid-epoch resume); the history row so far."""
        state, t, epoch = self.state, self.t, self.state.epoch
        if t.lr_schedule == "cosine":
            state.learning_rate = cosine_learning_rate(t, epoch)
        elif t.lr_schedule != "plateau":
            raise PipelineError(f"unknown train.lr_schedule {t.lr_schedule!r}; known: plateau, cosine")
        self.model.optimizer.learning_rate.assign(state.learning_rate)
        level, noise_fn = self._epoch_noise(epoch)
        train_ds = self.train_dataset(epoch, noise_fn)
        every_s = self.checkpoint_every_s if self.t.distribution != "multi_worker" else 0.0
        steps = self.steps_per_epoch() - state.step_in_epoch
        cb = [timed_checkpoint(self.write_dir, state, every_s, state.step_in_epoch,
                               save=lambda *a, **k: _save_checkpoint(*a, **k)),
              *self.progress_callbacks(steps), *self.extra_callbacks]
        # Multi-worker: Keras 3 cannot fit under MultiWorkerMirroredStrategy (keras#20585).
        fit = (distributed_loop.fit_function(self.model, self.strategy)
               if t.distribution == "multi_worker" else self.model.fit)
        with damaged_files_named(self.data.files.train, "training"):
            # initial_epoch: progress lines, TensorBoard and Keras number the run's epochs.
            hist = fit(train_ds.repeat(), steps_per_epoch=steps, initial_epoch=epoch,
                       epochs=epoch + 1, verbose=self.verbose,
                       class_weight=self.data.class_weight, callbacks=cb)
        # Metrics the model reports itself (e.g. vq_perplexity, vq_codes_used) follow the loss.
        return {"epoch": epoch + 1, "level": level, "learning_rate": state.learning_rate,
                "loss": float(hist.history["loss"][-1]),
                **{k: float(v[-1]) for k, v in hist.history.items() if k != "loss"}}

    def validate(self) -> dict[str, float]:
        """Validation loss and metrics, with the selection metric under its own name."""
        t = self.t
        if self.val_data is None:
            self.val_data = self.validation_data()
        # Multi-worker: each worker validates a local copy (Keras' distributed evaluate fails).
        model = distributed_loop.local_copy(self.model) if t.distribution == "multi_worker" else self.model
        with damaged_files_named(self.data.files.val, "validation"):
            if self.task.denoising:
                val = validation.validate_denoiser(model, self.val_data, self.data.mean,
                                                   self.data.scale, t.mae_weight,
                                                   t.denoise_weighting == "snr", t.denoise_loss == "snr_db")
                val["val_snr_improvement_db"] = selection.snr_improvement_db(
                    val, selection.training_snr_levels(self.cfg))
            else:
                val = validation.validate_classifier(model, self.val_data, self.data.y_val, self.task)
        return val

    def checkpoint(self, row: dict[str, Any], t_epoch: float) -> None:
        """Best epoch, plateau and early stopping by the selection metric; then ``last.keras``,
        the state and the history."""
        state, t = self.state, self.t
        value = row.get(self.metric)
        if selection.is_better(value, state.best_value, self.direction) or state.best_epoch < 0:
            state.best_value = value
            state.best_val_loss, state.best_epoch = row["val_loss"], state.epoch + 1
            state.plateau_wait = state.stop_wait = 0
            _save_checkpoint(self.model, self.write_dir, None, "best.keras")
        else:
            state.plateau_wait += 1
            state.stop_wait += 1
            if state.plateau_wait >= t.reduce_lr_patience and t.lr_schedule == "plateau":
                state.learning_rate = max(t.min_learning_rate, state.learning_rate * t.reduce_lr_factor)
                state.plateau_wait = 0
        state.epoch += 1
        state.step_in_epoch = 0
        state.train_seconds += time.monotonic() - t_epoch
        if not self.task.denoising and state.stop_wait >= t.early_stopping_patience:
            state.finished, state.stop_reason = True, f"early stopping at epoch {state.epoch}"
        elif state.epoch >= t.epochs:
            state.finished, state.stop_reason = True, f"{t.epochs} epochs"
        _save_checkpoint(self.model, self.write_dir, state)
        atomic_write_json(self.write_dir / "history.json", state.history)
        history_files.write_history_csv(self.write_dir / "history.csv", state.history)
        history_files.write_validation_scalars(self.write_dir, row)

    def progress_callbacks(self, steps: int) -> list[Any]:
        """A progress line every ``train.progress_every_s`` (examples/s, epoch and run ETA)
        and TensorBoard event files (``<run>/tensorboard``) for the epoch's ``fit``."""
        from pipeline.training.progress import progress_callbacks

        return progress_callbacks(self.write_dir, batch_size=self.t.batch_size,
                                  steps_per_epoch=steps, epochs=self.t.epochs,
                                  initial_epoch=self.state.epoch,
                                  every_s=self.t.progress_every_s, csv_history=False)

    def finish(self) -> dict:
        """Writes and returns the run summary (``summary.json``) and the history plot."""
        state = self.state
        summary = {
            "task": self.task.name, "model": self.model_name,
            "params": int(self.model.count_params()), "epochs_done": state.epoch,
            "best_epoch": state.best_epoch, "best_val_loss": state.best_val_loss,
            "selection_metric": state.selection_metric, "best_value": state.best_value,
            "best": next((h for h in state.history if h["epoch"] == state.best_epoch), {}),
            "finished": state.finished, "stop_reason": state.stop_reason,
            "train_seconds": round(state.train_seconds, 1),
            "examples_per_epoch": self.examples_per_epoch(), "leaky_split": self.data.files.leaky,
            "replicas": int(self.strategy.num_replicas_in_sync),
            "distribution": self.cfg.train.distribution,
        }
        atomic_write_json(self.write_dir / "summary.json", summary)
        self._plot_history()
        return summary

    def run(self) -> dict:
        """Every phase: trains (or resumes) the run; returns its summary."""
        if not self.start():
            return read_json(self.run_dir / "summary.json", "run summary")
        self.prepare()
        self.build()
        log.info("task %s, model %s (%d params): %d training examples, %d steps/epoch of %d; "
                 "best epoch by %s", self.task.name, self.model_name, self.model.count_params(),
                 self.data.n_train, self.steps_per_epoch(), self.t.batch_size, self.metric)
        t_start = time.monotonic()
        state, t = self.state, self.t
        while state.epoch < t.epochs and not state.finished:
            t_epoch = time.monotonic()
            row = self.fit_epoch()
            val = self.validate()
            row = {**row, **val, "seconds": round(time.monotonic() - t_epoch, 1)}
            state.history.append(row)
            log.info("epoch %d/%d %s loss %.4f val_loss %.4f %s", row["epoch"], t.epochs,
                     row["level"], row["loss"], val["val_loss"],
                     {k: round(v, 4) for k, v in val.items() if k != "val_loss"})
            if t.max_train_seconds and time.monotonic() - t_start >= t.max_train_seconds:
                state.stop_reason = f"time budget of {t.max_train_seconds:g} s reached (resumable)"
            self.checkpoint(row, t_epoch)
            if state.stop_reason and not state.finished:
                break
        return self.finish()

    # -------------------------------------------------------------- helpers

    def _epoch_noise(self, epoch: int) -> tuple[str, Any]:
        """``(level label, noise function)`` of a denoising epoch (classifiers: ``("", None)``)."""
        if not self.task.denoising:
            return "", None
        from pipeline.data import noise
        from pipeline.data.served import maybe_served

        cfg, records = self.cfg, self.data.noise_records
        if cfg.noise.schedule == "mix":
            return "mixed levels", maybe_served(noise.make_mixed_level_noise_fn(
                cfg, "train", cfg.noise.mix_snr_db, cfg.noise.train_types, noise=records), cfg)
        snr = cfg.noise.curriculum_snr_db[epoch % len(cfg.noise.curriculum_snr_db)]
        return validation.level_label(snr), maybe_served(noise.make_curriculum_noise_fn(
            cfg, "train", snr, cfg.noise.train_types, noise=records), cfg)

    def _init_weights(self, model: Any) -> None:
        src = load_init_model(self.t.init_from)
        try:
            model.set_weights(src.get_weights())
        except ValueError as exc:
            raise PipelineError(f"{self.t.init_from}: weights do not fit {self.model_name} with "
                                f"{self.kwargs} ({exc})") from exc
        log.info("weights initialized from %s", self.t.init_from)

    def _rebase_selection(self) -> None:
        """A resumed state chosen by another metric continues with this run's metric."""
        state = self.state
        if state.selection_metric == self.metric:
            return
        log.warning("%s: best epoch so far was chosen by %s; continuing with %s", self.run_dir,
                    state.selection_metric, self.metric)
        state.selection_metric = self.metric
        row = next((h for h in state.history if h["epoch"] == state.best_epoch), {})
        state.best_value = row.get(self.metric)

    def _plot_history(self) -> None:
        history = self.state.history
        if not history:
            return
        try:
            from pipeline.evaluation import plots

            cols = {k: [h.get(k) for h in history] for k in history[0]
                    if k not in ("epoch", "level", "seconds") and isinstance(history[0][k], (int, float))}
            plots.plot_history(cols, self.write_dir / "plots" / "history.png",
                               title=f"{self.model_name} on {self.task.name}")
        except Exception as exc:  # noqa: BLE001 - plots are a convenience, never fail the run
            log.warning("history plot skipped: %s", exc)


def train(
    cfg: PipelineConfig,
    run_dir: Path,
    *,
    task_name: str | None = None,
    model_name: str | None = None,
    model_kwargs: Mapping[str, Any] | None = None,
    files: run_folder.SplitFiles | None = None,
    checkpoint_every_s: float = 300.0,
    verbose: int = 2,
    extra_callbacks: Sequence[Any] = (),
) -> dict:
    """Trains (or resumes) one model; returns the run summary (also saved as summary.json).

    Under ``train.distribution: multi_worker`` only the chief writes ``run_dir``; the other
    workers write into a temporary folder that is deleted at the end.
    """
    import warnings

    warnings.filterwarnings("ignore", message=".*ran out of data.*")
    warnings.filterwarnings("ignore", message=".*`shuffle=True` was passed.*")
    logging.getLogger("matplotlib").setLevel(logging.WARNING)
    scratch = None if is_chief(cfg) else Path(tempfile.mkdtemp(prefix="ecg_worker_"))
    try:
        return Trainer(cfg, run_dir, task_name=task_name, model_name=model_name,
                       model_kwargs=model_kwargs, files=files,
                       checkpoint_every_s=checkpoint_every_s, verbose=verbose,
                       extra_callbacks=extra_callbacks, write_dir=scratch).run()
    finally:
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)
