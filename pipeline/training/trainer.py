"""Training of denoisers and classifiers: ``python -m pipeline.train --task T --model M``.

Denoisers (task ``mitdb_denoise``): rotating epochs clean, 24, 12 and 6 dB (config
``noise.curriculum_snr_db``), noise of a random type per window among ``noise.train_types``
drawn from the *training* segments of the noise records; loss MSE + 0.3 MAE (+ the VQ
commitment loss the model adds itself); Adam 1e-3, gradient clipping 1.0; a fresh random
subset of ``train.examples_per_epoch`` windows each epoch; validation at every curriculum
level on validation patients and validation noise segments.

Classifiers: class weights (inverse frequency) or focal loss, optional per-class limit per
epoch, AdamW with weight decay, early stopping on validation loss (patience 7).

Both: ReduceLROnPlateau (patience 5, factor 0.7, min 1e-6) on validation loss; seeds and an
op-determinism option; a checkpoint after every epoch and every ``--checkpoint-every-s``
seconds, so a run interrupted at any point resumes where it stopped when the same command is
run again. Only training and validation patients are read; the test split is never opened
here (see ``pipeline.final_eval``).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.core.config import PipelineConfig
from pipeline.core.io_utils import (
    PipelineError,
    atomic_path,
    atomic_write_json,
    read_json,
)
from pipeline.data import normalization as NORM
from pipeline.data import schema
from pipeline.data.tasks import Task, check_pairing, get_task
from pipeline.training import run_folder as X

log = logging.getLogger("ecg.train")

STATE_FILE = "train_state.json"
CKPT_DIR = "checkpoints"


# ------------------------------------------------------------------------------ helpers


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
    if task.denoising:
        return spec(shape, **kwargs)
    return spec(shape, task.n_outputs, output_activation=task.output_activation, **kwargs)


def make_optimizer(task: Task, cfg: PipelineConfig, learning_rate: float | None = None) -> Any:
    import keras

    t = cfg.train
    lr = t.learning_rate if learning_rate is None else learning_rate
    if task.denoising:
        return keras.optimizers.Adam(lr, clipnorm=t.clipnorm)
    return keras.optimizers.AdamW(lr, weight_decay=t.weight_decay, clipnorm=t.clipnorm)


def make_loss(task: Task, cfg: PipelineConfig) -> Any:
    from pipeline.training.losses import DenoiseLoss, SNRLoss, classification_loss

    if task.denoising:
        loss = cfg.train.denoise_loss
        if loss == "snr_db":
            return SNRLoss()
        if loss != "mse_mae":
            raise PipelineError(f"unknown train.denoise_loss {loss!r}; known: mse_mae, snr_db")
        return DenoiseLoss(cfg.train.mae_weight)
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


def class_weights(y: np.ndarray, n_classes: int, power: float = 1.0, max_weight: float = 100.0) -> dict[int, float]:
    """Inverse-frequency weights ``(n / (K * n_c)) ** power``, capped at ``max_weight``.

    ``power=1`` is scikit-learn's "balanced"; ``power=0.5`` ("sqrt") tempers the weight of
    very rare classes (MIT-BIH DS1 has 8 Q beats among 51,000). Classes absent from the
    training data get weight 0.
    """
    counts = np.bincount(y.astype(int), minlength=n_classes).astype(float)
    present = counts > 0
    w = np.zeros(n_classes)
    w[present] = np.minimum(max_weight, (counts.sum() / (present.sum() * counts[present])) ** power)
    return {i: float(v) for i, v in enumerate(w)}


def set_determinism(cfg: PipelineConfig) -> None:
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(cfg.train.seed)
    if cfg.train.deterministic:
        tf.config.experimental.enable_op_determinism()


def get_strategy(cfg: PipelineConfig) -> Any:
    """The configured ``tf.distribute`` strategy (one device by default)."""
    import tensorflow as tf

    d = cfg.train.distribution
    if d == "default":
        return tf.distribute.get_strategy()
    if d == "mirrored":
        # GPUs when there are any; otherwise every logical CPU device (e.g. two in tests).
        devices = [x.name for x in tf.config.list_logical_devices("GPU")] or [
            x.name for x in tf.config.list_logical_devices("CPU")]
        return tf.distribute.MirroredStrategy(devices=devices)
    if d == "multi_worker":
        if "TF_CONFIG" not in os.environ:
            raise PipelineError("train.distribution=multi_worker needs TF_CONFIG set on every worker")
        return tf.distribute.MultiWorkerMirroredStrategy()
    raise PipelineError(f"unknown train.distribution {d!r}; known: default, mirrored, multi_worker")


def normalization_for(run_dir: Path, files: Sequence[str], cfg: PipelineConfig, task: Task) -> tuple[np.ndarray, np.ndarray]:
    """Fits statistics on the training files (or reloads them when fitted on the same files)."""
    path = run_dir / "normalization.json"
    names = [Path(f).name for f in files]
    kind = task.kind
    if path.is_file():
        saved = read_json(path, "normalization statistics")
        if isinstance(saved, dict) and saved.get("train_files") == names:
            return NORM.load(path, kind, NORM.n_channels(kind, cfg, task.rr_channels))
    stats = NORM.fit(files, cfg, kind, task.rr_channels)
    NORM.save(stats, path)
    return np.asarray(stats["mean"]), np.asarray(stats["scale"])


def _manifest_counts(cfg: PipelineConfig, kind: str) -> tuple[dict[str, int], dict[str, int]]:
    """Per TFRecord file: stored examples, and those evaluation uses (denoising: the windows
    on the evaluation grid; otherwise all)."""
    from pipeline.data.tfrecord_writer import tfrecord_dir

    folder = tfrecord_dir(cfg, kind)
    m = read_json(folder / "manifest.json", "TFRecord manifest")
    sizes = {str(folder / e["file"]): int(e["examples"]) for e in m["files"]}
    used = {str(folder / e["file"]): int(e.get("eval_windows", e["examples"]))
            if kind == "denoise" else int(e["examples"]) for e in m["files"]}
    return sizes, used


def _keep_masks(files: Sequence[str], sizes: Mapping[str, int], fraction: float, seed: int,
                base: Mapping[str, np.ndarray] | None) -> dict[str, np.ndarray]:
    """Each stored example kept with probability ``fraction`` (and only where ``base`` is)."""
    rng = np.random.default_rng(seed)
    out = {}
    for f in files:
        keep = rng.random(sizes[f]) < fraction
        if base is not None:
            keep &= np.asarray(base[f], bool)
        out[f] = keep
    return out


def subsample_masks(files: Sequence[str], cfg: PipelineConfig, kind: str, n_wanted: int,
                    seed: int, base: Mapping[str, np.ndarray] | None = None) -> dict[str, np.ndarray] | None:
    """Fixed random masks keeping about ``n_wanted`` stored examples over ``files``."""
    if n_wanted <= 0:
        return dict(base) if base is not None else None
    sizes, used = _manifest_counts(cfg, kind)
    frac = min(1.0, n_wanted / max(1, sum(used[f] for f in files)))
    return _keep_masks(files, sizes, frac, seed, base)


def stored_counts(cfg: PipelineConfig, kind: str) -> dict[str, int]:
    """Stored examples per TFRecord file of ``kind`` (from its manifest)."""
    return _manifest_counts(cfg, kind)[0]


def epoch_masks(files: Sequence[str], sizes: Mapping[str, int], fraction: float, seed: int,
                base: Mapping[str, np.ndarray] | None = None) -> dict[str, np.ndarray] | None:
    """Masks keeping each stored training example with probability ``fraction``
    (``sizes``: ``stored_counts``, read once per run).

    A fresh draw per epoch (``seed``) spreads an epoch of ``train.examples_per_epoch``
    examples over *every* training record. Without it an epoch would be the first examples
    of the shuffled stream, i.e. a handful of records (for denoising, the overlapping windows
    of a few minutes of a few patients).
    """
    if fraction >= 1.0:
        return dict(base) if base is not None else None
    return _keep_masks(files, sizes, fraction, seed, base)


# ---------------------------------------------------------------------------- the loop


@dataclasses.dataclass
class TrainState:
    epoch: int = 0
    """Epochs completed."""
    step_in_epoch: int = 0
    learning_rate: float = 1e-3
    best_val_loss: float = math.inf
    best_epoch: int = -1
    plateau_wait: int = 0
    stop_wait: int = 0
    history: list = dataclasses.field(default_factory=list)
    finished: bool = False
    stop_reason: str = ""
    train_seconds: float = 0.0


def _save_checkpoint(model: Any, run_dir: Path, state: TrainState | None,
                     name: str = "last.keras") -> None:
    """Saves ``checkpoints/<name>`` atomically, then (with ``state``) the training state.

    A resume reads ``last.keras`` with ``train_state.json``, so only ``last.keras`` saves pass
    the state: writing it with ``best.keras`` at the end of an epoch would record that epoch's
    history before ``last.keras`` holds its weights (a run killed in between would train the
    epoch again and list it twice). A full disk raises a one-line :class:`PipelineError` and
    leaves the previous checkpoint in place.
    """
    with atomic_path(run_dir / CKPT_DIR / name, suffix=".tmp.keras") as tmp:
        model.save(tmp)
    if state is not None:
        atomic_write_json(run_dir / STATE_FILE, dataclasses.asdict(state))


def _load_state(run_dir: Path) -> TrainState | None:
    p = run_dir / STATE_FILE
    if not p.is_file() or not (run_dir / CKPT_DIR / "last.keras").is_file():
        return None
    d = read_json(p, "training state")
    try:
        return TrainState(**d)
    except TypeError as exc:
        raise PipelineError(f"{p}: training state does not match this version ({exc})") from exc


def _steps(n_examples: int, batch: int) -> int:
    return max(1, math.ceil(n_examples / batch))


def _denoise_val_sets(cfg: PipelineConfig, task: Task, files: Sequence[str], mean: np.ndarray,
                      scale: np.ndarray, masks: Mapping[str, np.ndarray] | None) -> dict[str, Any]:
    from pipeline.data import noise as NZ
    from pipeline.data.loader import create_dataset

    noise = NZ.load_noise(cfg)
    out = {}
    levels = list(cfg.noise.curriculum_snr_db)
    levels += [s for s in cfg.noise.eval_snr_db if s not in levels]
    for snr in levels:
        fn = NZ.make_curriculum_noise_fn(cfg, "val", snr, cfg.noise.train_types, noise=noise)
        label = "clean" if math.isinf(snr) else f"{snr:g}dB"
        out[label] = create_dataset(files, cfg, cfg.train.batch_size, False, mean, scale, task=task,
                                    noise_fn=fn, include=masks, check=False)
    return out


def _validate_denoiser(model: Any, val_sets: Mapping[str, Any], mean: np.ndarray, scale: np.ndarray,
                       mae_weight: float, snr_weighting: bool = False,
                       snr_db_loss: bool = False) -> dict[str, float]:
    """Loss (normalized units, weighted as in training) and SNR improvement (mV) per level.

    With ``snr_db_loss`` the loss is ``SNRLoss``'s (minus the capped output SNR in dB).
    """
    from pipeline.evaluation.denoise_metrics import window_metrics
    from pipeline.training.losses import SNRLoss

    out = {}
    losses = []
    snr_loss = SNRLoss(reduction=None)
    for label, ds in val_sets.items():
        imps, errs = [], []
        for x, y in ds:
            pred = np.asarray(model.predict_on_batch(x))
            e = pred - y.numpy()
            w = 1.0
            if snr_weighting:
                rel = np.sum((x.numpy() - y.numpy()) ** 2, axis=(1, 2)) / np.maximum(
                    np.sum(y.numpy() ** 2, axis=(1, 2)), 1e-12)
                w = 1.0 / np.maximum(rel, 1e-3)
            if snr_db_loss:
                errs.append(np.asarray(snr_loss(y.numpy(), pred)))
            else:
                errs.append(w * (np.mean(e**2, axis=(1, 2))
                                 + mae_weight * np.mean(np.abs(e), axis=(1, 2))))
            clean = y.numpy() * scale + mean
            imps.append(window_metrics(clean, x.numpy() * scale + mean, pred * scale + mean)["snr_imp_db"])
        loss = float(np.mean(np.concatenate(errs)))
        losses.append(loss)
        out[f"val_loss_{label}"] = loss
        imp = np.concatenate(imps)
        if np.isfinite(imp).any():
            out[f"val_snr_imp_{label}"] = float(np.mean(imp[np.isfinite(imp)]))
    out["val_loss"] = float(np.mean(losses))
    return out


def _validate_classifier(model: Any, ds: Any, y_true: np.ndarray, task: Task) -> dict[str, float]:
    res = model.evaluate(ds, verbose=0, return_dict=True)
    probs = np.asarray(model.predict(ds, verbose=0))
    out = {"val_loss": float(res["loss"])}
    if len(probs) != len(y_true):
        raise PipelineError(f"validation predictions ({len(probs)}) and labels ({len(y_true)}) differ")
    if task.multilabel:
        from sklearn.metrics import roc_auc_score

        ok = [k for k in range(y_true.shape[1]) if 0 < y_true[:, k].sum() < len(y_true)]
        out["val_macro_auc"] = float(roc_auc_score(y_true[:, ok], probs[:, ok], average="macro")) if ok else float("nan")
    else:
        from sklearn.metrics import f1_score

        pred = probs.argmax(1)
        out["val_accuracy"] = float((pred == y_true).mean())
        out["val_macro_f1"] = float(f1_score(y_true, pred, average="macro",
                                             labels=sorted(set(y_true.tolist())), zero_division=0))
    return out


class _TimedCheckpoint:
    """Keras callback saving the model and state every ``every_s`` seconds within an epoch."""

    def __new__(cls, *args: Any, **kwargs: Any) -> Any:
        import keras

        class Impl(keras.callbacks.Callback):
            def __init__(self, run_dir: Path, state: TrainState, every_s: float, start_step: int):
                super().__init__()
                self.run_dir, self.state, self.every_s = run_dir, state, every_s
                self.start_step = start_step
                self.t_last = time.monotonic()

            def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
                if self.every_s > 0 and time.monotonic() - self.t_last >= self.every_s:
                    self.state.step_in_epoch = self.start_step + batch + 1
                    _save_checkpoint(self.model, self.run_dir, self.state)
                    self.t_last = time.monotonic()

        return Impl(*args, **kwargs)


def train(
    cfg: PipelineConfig,
    run_dir: Path,
    *,
    task_name: str | None = None,
    model_name: str | None = None,
    model_kwargs: Mapping[str, Any] | None = None,
    files: X.SplitFiles | None = None,
    checkpoint_every_s: float = 300.0,
    verbose: int = 2,
    extra_callbacks: Sequence[Any] = (),
) -> dict:
    """Trains (or resumes) one model; returns the run summary (also saved as summary.json)."""
    import warnings

    from pipeline.data.loader import create_dataset, split_labels

    warnings.filterwarnings("ignore", message=".*ran out of data.*")
    warnings.filterwarnings("ignore", message=".*`shuffle=True` was passed.*")
    logging.getLogger("matplotlib").setLevel(logging.WARNING)
    t = cfg.train
    task = get_task(task_name or t.task)
    model_name = model_name or t.model
    kwargs = dict(t.model_kwargs if model_kwargs is None else model_kwargs)
    set_determinism(cfg)
    sf = files or X.split_files(cfg, task)
    if files is None:
        X.save_split(sf.split, run_dir)
    if not sf.train or not sf.val:
        raise PipelineError(f"task {task.name}: empty training or validation split")
    mean, scale = normalization_for(run_dir, sf.train, cfg, task)

    strategy = get_strategy(cfg)
    state = _load_state(run_dir)
    with strategy.scope():
        if state is not None and not state.finished:
            log.info("resuming %s at epoch %d step %d", run_dir, state.epoch, state.step_in_epoch)
            # A time-budget stop of an earlier invocation is not a stop of this one.
            state.stop_reason = ""
            model = load_best_model(run_dir, prefer="last")
        elif state is not None and state.finished:
            log.info("%s: training already finished (%s); nothing to do", run_dir, state.stop_reason)
            return read_json(run_dir / "summary.json", "run summary")
        else:
            state = TrainState(learning_rate=t.learning_rate)
            model = build_model(task, cfg, model_name, kwargs)
            if t.init_from:
                src = load_best_model(Path(t.init_from))
                try:
                    model.set_weights(src.get_weights())
                except ValueError as exc:
                    raise PipelineError(f"{t.init_from}: weights do not fit {model_name} with "
                                        f"{kwargs} ({exc})") from exc
                log.info("weights initialized from %s", t.init_from)
            compile_model(model, task, cfg)
    atomic_write_json(run_dir / "model.json", {"task": task.name, "model": model_name,
                                               "kind": "denoiser" if task.denoising else "classifier",
                                               "kwargs": kwargs, "params": int(model.count_params()),
                                               "input_shape": list(model_input_shape(task, cfg))})

    # Data for every epoch.
    cw = None
    limit_probs = None
    train_masks = sf.include_train
    if task.denoising:
        from pipeline.data import noise as NZ

        noise = NZ.load_noise(cfg)
        from pipeline.data.tfrecord_writer import tfrecord_dir

        man = read_json(tfrecord_dir(cfg, "denoise") / "manifest.json", "denoise manifest")
        n_train = sum(e["examples"] for e in man["files"] if str(tfrecord_dir(cfg, "denoise") / e["file"]) in sf.train)
        val_masks = subsample_masks(sf.val, cfg, task.kind, t.val_examples, t.seed, sf.include_val)
        val_sets = _denoise_val_sets(cfg, task, sf.val, mean, scale, val_masks)
    else:
        y_train = split_labels(sf.train, cfg, task, sf.include_train)
        n_train = len(y_train)
        if not task.multilabel:
            counts = np.bincount(y_train.astype(int), minlength=task.n_outputs)
            if t.class_weighting in ("balanced", "sqrt"):
                cw = class_weights(y_train, task.n_outputs,
                                   power=1.0 if t.class_weighting == "balanced" else 0.5)
            elif t.class_weighting not in ("none", "focal"):
                raise PipelineError(f"unknown train.class_weighting {t.class_weighting!r}; "
                                    "known: none, balanced, sqrt, focal")
            if t.per_class_limit > 0:
                limit_probs = np.minimum(1.0, t.per_class_limit / np.maximum(counts, 1)).astype(np.float32)
                n_train = int(np.minimum(counts, t.per_class_limit).sum())
        val_masks = subsample_masks(sf.val, cfg, task.kind, t.val_examples, t.seed, sf.include_val)
        y_val = split_labels(sf.val, cfg, task, val_masks)
        val_ds = create_dataset(sf.val, cfg, t.batch_size, False, mean, scale, task=task,
                                include=val_masks)
    per_epoch = t.examples_per_epoch or n_train
    # A fresh random subset of every record each epoch (10 % spare so the epoch's steps are
    # filled before the stream would wrap around).
    subset_fraction = 1.1 * per_epoch / max(1, n_train)
    sizes = stored_counts(cfg, task.kind) if subset_fraction < 1.0 else {}
    steps = _steps(per_epoch, t.batch_size)
    log.info("task %s, model %s (%d params): %d training examples, %d steps/epoch of %d",
             task.name, model_name, model.count_params(), n_train, steps, t.batch_size)

    t_start = time.monotonic()
    curriculum = cfg.noise.curriculum_snr_db
    while state.epoch < t.epochs and not state.finished:
        epoch = state.epoch
        t_epoch = time.monotonic()
        if t.lr_schedule == "cosine":
            state.learning_rate = cosine_learning_rate(t, epoch)
        elif t.lr_schedule != "plateau":
            raise PipelineError(f"unknown train.lr_schedule {t.lr_schedule!r}; known: plateau, cosine")
        model.optimizer.learning_rate.assign(state.learning_rate)
        level = ""
        if task.denoising and cfg.noise.schedule == "mix":
            level = "mixed levels"
            fn = NZ.make_mixed_level_noise_fn(cfg, "train", cfg.noise.mix_snr_db,
                                              cfg.noise.train_types, noise=noise)
        elif task.denoising:
            snr = curriculum[epoch % len(curriculum)]
            level = "clean" if math.isinf(snr) else f"{snr:g}dB"
            fn = NZ.make_curriculum_noise_fn(cfg, "train", snr, cfg.noise.train_types, noise=noise)
        masks = epoch_masks(sf.train, sizes, subset_fraction, t.seed + 7919 * (epoch + 1),
                            train_masks) if subset_fraction < 1.0 else train_masks
        if task.denoising:
            train_ds = create_dataset(sf.train, cfg, t.batch_size, True, mean, scale, task=task,
                                      noise_fn=fn, include=masks, seed=t.seed + epoch,
                                      check=epoch == 0)
        else:
            train_ds = create_dataset(sf.train, cfg, t.batch_size, True, mean, scale, task=task,
                                      include=masks, seed=t.seed + epoch, check=epoch == 0)
            if limit_probs is not None:
                train_ds = _limit_per_class(train_ds, limit_probs, t.batch_size, t.seed + epoch)
        if task.denoising and t.denoise_weighting == "snr":
            train_ds = train_ds.map(_snr_weights)
        elif task.denoising and t.denoise_weighting != "none":
            raise PipelineError(f"unknown train.denoise_weighting {t.denoise_weighting!r}; known: none, snr")
        remaining = steps - state.step_in_epoch
        cb = [_TimedCheckpoint(run_dir, state, checkpoint_every_s, state.step_in_epoch), *extra_callbacks]
        hist = model.fit(train_ds.repeat(), steps_per_epoch=remaining, epochs=1, verbose=verbose,
                         class_weight=cw, callbacks=cb)
        train_loss = float(hist.history["loss"][-1])
        if task.denoising:
            val = _validate_denoiser(model, val_sets, mean, scale, t.mae_weight,
                                     t.denoise_weighting == "snr", t.denoise_loss == "snr_db")
        else:
            val = _validate_classifier(model, val_ds, y_val, task)
        row = {"epoch": epoch + 1, "level": level, "learning_rate": state.learning_rate,
               "loss": train_loss, **val,
               # Metrics the model reports itself (e.g. vq_perplexity, vq_codes_used).
               **{k: float(v[-1]) for k, v in hist.history.items() if k != "loss"},
               "seconds": round(time.monotonic() - t_epoch, 1)}
        state.history.append(row)
        log.info("epoch %d/%d %s loss %.4f val_loss %.4f %s", epoch + 1, t.epochs, level,
                 train_loss, val["val_loss"],
                 {k: round(v, 4) for k, v in val.items() if k != "val_loss"})
        # Plateau and early stopping on validation loss.
        improved = val["val_loss"] < state.best_val_loss - 1e-6
        if improved:
            state.best_val_loss, state.best_epoch = val["val_loss"], epoch + 1
            state.plateau_wait = state.stop_wait = 0
            _save_checkpoint(model, run_dir, None, "best.keras")
        else:
            state.plateau_wait += 1
            state.stop_wait += 1
            if state.plateau_wait >= t.reduce_lr_patience and t.lr_schedule == "plateau":
                state.learning_rate = max(t.min_learning_rate, state.learning_rate * t.reduce_lr_factor)
                state.plateau_wait = 0
        state.epoch += 1
        state.step_in_epoch = 0
        state.train_seconds += time.monotonic() - t_epoch
        if not task.denoising and state.stop_wait >= t.early_stopping_patience:
            state.finished, state.stop_reason = True, f"early stopping at epoch {epoch + 1}"
        elif state.epoch >= t.epochs:
            state.finished, state.stop_reason = True, f"{t.epochs} epochs"
        elif t.max_train_seconds and time.monotonic() - t_start >= t.max_train_seconds:
            state.stop_reason = f"time budget of {t.max_train_seconds:g} s reached (resumable)"
        _save_checkpoint(model, run_dir, state)
        atomic_write_json(run_dir / "history.json", state.history)
        if state.stop_reason and not state.finished:
            break
    summary = {
        "task": task.name,
        "model": model_name,
        "params": int(model.count_params()),
        "epochs_done": state.epoch,
        "best_epoch": state.best_epoch,
        "best_val_loss": state.best_val_loss,
        "best": next((h for h in state.history if h["epoch"] == state.best_epoch), {}),
        "finished": state.finished,
        "stop_reason": state.stop_reason,
        "train_seconds": round(state.train_seconds, 1),
        "examples_per_epoch": per_epoch,
        "leaky_split": sf.leaky,
        "replicas": int(strategy.num_replicas_in_sync),
        "distribution": cfg.train.distribution,
    }
    atomic_write_json(run_dir / "summary.json", summary)
    try:
        from pipeline.evaluation import plots

        cols = {k: [h.get(k) for h in state.history] for k in state.history[0]
                if k not in ("epoch", "level", "seconds") and isinstance(state.history[0][k], (int, float))}
        plots.plot_history(cols, run_dir / "plots" / "history.png",
                           title=f"{model_name} on {task.name}")
    except Exception as exc:  # noqa: BLE001 - plots are a convenience, never fail the run
        log.warning("history plot skipped: %s", exc)
    return summary


def _snr_weights(noisy: Any, clean: Any) -> Any:
    """Per-window weight 1 / max(noise power / clean power, 1e-3) (see train.denoise_weighting)."""
    import tensorflow as tf

    p_noise = tf.reduce_sum(tf.square(noisy - clean), axis=[1, 2])
    p_clean = tf.reduce_sum(tf.square(clean), axis=[1, 2])
    rel = tf.math.divide_no_nan(p_noise, p_clean)
    return noisy, clean, 1.0 / tf.maximum(rel, 1e-3)


def _limit_per_class(ds: Any, keep_prob: np.ndarray, batch_size: int, seed: int) -> Any:
    """Drops examples of frequent classes at random so each class stays near its limit."""
    import tensorflow as tf

    probs = tf.constant(keep_prob)

    def keep(x: Any, y: Any) -> Any:
        p = tf.gather(probs, tf.argmax(y, axis=-1))
        return tf.random.uniform([], seed=seed) < p

    return ds.unbatch().filter(keep).batch(batch_size)


def load_best_model(run_dir: Path, prefer: str = "best") -> Any:
    """A run's checkpoint (``best``: lowest validation loss, or ``last``), in safe mode."""
    import keras

    import pipeline.training.losses  # noqa: F401 - registers the loss before loading
    from models import registry

    registry._load_all()  # registers the models' custom layers
    order = ("best.keras", "last.keras") if prefer == "best" else ("last.keras", "best.keras")
    for name in order:
        p = Path(run_dir) / CKPT_DIR / name
        if p.is_file():
            try:
                return keras.models.load_model(p, safe_mode=True)
            except Exception as exc:  # unsafe content (Lambda, foreign module) or damaged file
                first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
                raise PipelineError(
                    f"{p}: refusing to load this model file in safe mode "
                    f"({type(exc).__name__}: {first[:300]})"
                ) from exc
    raise PipelineError(f"{run_dir}: no checkpoint found (train the model first)")


# ------------------------------------------------------------------------------- CLI




def apply_hparams(cfg: PipelineConfig, hp_path: str | None, model_kwargs: dict) -> tuple[PipelineConfig, dict]:
    """Merges a tuning result (``best_hparams.json``) into the config and model kwargs."""
    if not hp_path:
        return cfg, model_kwargs
    d = read_json(Path(hp_path), "best hyperparameters")
    kwargs = {**d.get("model_kwargs", {}), **model_kwargs}
    tr = d.get("train", {})
    cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, **tr))
    return cfg, kwargs
