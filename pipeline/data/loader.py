"""The streaming ``tf.data`` loader over batched TFRecords.

Order of operations (tensorflow/models input reader, prefetch last)::

    files -> [train: seeded shuffle of the file list, new order each epoch]
          -> interleave(read a file, loader.cycle_length (16) files at once, parallel,
                        deterministic unless train)
          -> per stored batch (one Example, up to 256 examples): parse only the keys needed,
             decode, form examples in the stored dtype (sequences of consecutive beats of
             one record, carrying the last beats over to the next Example; 4 s windows cut
             from denoising chunks, with noise and normalization added here)
          -> unbatch -> [train: shuffle buffer of examples] -> batch
          -> per batch: cast to float32, normalize (x - mean) / scale per channel (per scale
             row for scalograms), add a channel axis where the model needs one, labels
          -> prefetch

Tasks with the rhythm side input (``Task.rhythm``) yield ``({"ecg": x, "rr": r}, y)``: ``r``
is the example's rhythm vector from the stored ``aux`` (for sequences the middle beat's),
z-scored per feature with the training statistics that follow the signal channels in
``mean`` / ``scale`` (see :mod:`pipeline.data.normalization`).

Examples are decoded a stored batch at a time and cast and normalized a training batch at a
time, so no operation runs per example except the shuffle and batch copies (float16
scalograms stay float16 until then). Sequences of N consecutive beats span the Example
boundaries inside a file but never cross a record boundary (a file is one record). Every
example is yielded exactly once per pass.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.core.config import PipelineConfig
from pipeline.core.io_utils import PipelineError, read_json
from pipeline.data import augment, normalization, schema
from pipeline.data.tasks import Task, get_task

log = logging.getLogger("ecg.loader")

NoiseFn = Callable[[Any, Any], Any]
"""``noise_fn(clean (k, T, C) float32 in mV, seed int64[2]) -> noisy`` (same shape)."""


# ------------------------------------------------------------------------------ files


def resolve_files(record_names_or_files: Sequence[str | Path], cfg: PipelineConfig, kind: str) -> list[str]:
    """Turns record names (or paths) into TFRecord paths of ``kind``; missing ones raise."""
    from pipeline.core.io_utils import safe_name
    from pipeline.data.paths import shard_name, tfrecord_dir

    out = []
    for item in record_names_or_files:
        s = str(item)
        if s.endswith(".tfrecord") or "/" in s:
            p = Path(s)
        else:
            p = tfrecord_dir(cfg, kind) / shard_name(safe_name(s))
        if not p.is_file():
            raise PipelineError(f"{p}: TFRecord file not found; run `python -m pipeline.tfrecords`")
        out.append(str(p))
    if not out:
        raise PipelineError(f"no {kind} files given")
    return out


def read_file_metadata(path: str | Path) -> schema.Batch:
    """Decodes the first Example of a file (NumPy), with errors naming the file."""
    import tensorflow as tf

    try:
        first = next(iter(tf.data.TFRecordDataset(str(path)).take(1)), None)
    except tf.errors.OpError as exc:
        raise PipelineError(f"{path}: unreadable TFRecord file ({exc.message.splitlines()[0]})") from exc
    if first is None:
        raise PipelineError(f"{path}: TFRecord file is empty")
    try:
        return schema.decode(first.numpy(), where=str(path))
    except schema.SchemaError as exc:
        raise PipelineError(str(exc)) from exc


def check_files(files: Sequence[str], cfg: PipelineConfig, kind: str,
                task: Task | None = None) -> None:
    """Checks every file's own metadata and size against the config and the manifest (and,
    for a ``task`` that reads ``aux``, its width: :func:`check_aux`)."""
    want_shape = schema.example_shape(kind, cfg)
    want_dtype = cfg.scalograms.dtype if kind == "beats" else "float32"
    manifests: dict[Path, dict] = {}
    for f in files:
        meta = read_file_metadata(f)
        shape = tuple(meta.x.shape[1:]) if kind != "denoise" else (meta.frame_length, meta.x.shape[1])
        if meta.kind != kind or shape != want_shape or meta.x.dtype.name != want_dtype:
            raise PipelineError(
                f"{f}: metadata (kind={meta.kind}, shape={shape}, dtype={meta.x.dtype.name}) does "
                f"not match the config (kind={kind}, shape={want_shape}, dtype={want_dtype})"
            )
        if task is not None and (task.rr_channels or task.rhythm):
            check_aux(f, meta, cfg, kind)
        mpath = Path(f).parent / "manifest.json"
        if mpath.is_file():
            if mpath not in manifests:
                manifests[mpath] = {e["file"]: e for e in read_json(mpath, "TFRecord manifest")["files"]}
            entry = manifests[mpath].get(Path(f).name)
            size = Path(f).stat().st_size
            if entry is not None and entry["bytes"] != size:
                raise PipelineError(
                    f"{f}: {size} bytes but the manifest says {entry['bytes']} (truncated or "
                    "modified); rerun `python -m pipeline.tfrecords --force`"
                )


def check_aux(path: str | Path, meta: schema.Batch, cfg: PipelineConfig, kind: str) -> None:
    """Raises when a segments/beats file's ``aux`` width is not the config's layout
    (:func:`pipeline.data.schema.aux_names`: 3 RR values + the rhythm features of
    ``windows.rhythm_causal``)."""
    if kind not in ("segments", "beats"):
        return
    names = schema.aux_names(kind, cfg)
    got = int(meta.aux.shape[1]) if meta.aux.ndim == 2 else 0
    if got != len(names):
        raise PipelineError(
            f"{path}: aux holds {got} values per example, the config expects {len(names)} "
            f"(3 RR values + {len(names) - 3} rhythm features, windows.rhythm_causal="
            f"{cfg.windows.rhythm_causal}); rerun `python -m pipeline.tfrecords --force`")


def find_damaged_file(files: Sequence[str]) -> str | None:
    """Reads each file fully; returns the first one whose records fail their CRC or length,
    do not decode, or disagree with the file's first Example (kind, dtype, shapes)."""
    import tensorflow as tf

    for f in files:
        first = None
        try:
            for rec in tf.data.TFRecordDataset(f):
                b = schema.decode(rec.numpy(), where=f)
                sig = (b.kind, b.x.dtype.name, b.x.shape[1:], b.y.shape[1:], b.aux.shape[1:])
                if first is None:
                    first = sig
                elif sig != first:
                    return f
        except (tf.errors.OpError, schema.SchemaError):
            return f
    return None


def damaged_file_error(exc: BaseException, files: Sequence[str | Path]) -> PipelineError | None:
    """The one-line error naming the damaged file that explains ``exc``, or ``None``.

    ``tf.data`` reports a failed CRC or a truncated record as ``DataLossError`` without the
    file's name; the files are reread one by one (:func:`find_damaged_file`). ``None`` when
    ``exc`` is no TensorFlow error or no file fails on rereading (another cause).
    """
    import tensorflow as tf

    if not isinstance(exc, tf.errors.OpError):
        return None
    bad = find_damaged_file([str(f) for f in files])
    if bad is None:
        return None
    first = (exc.message or type(exc).__name__).splitlines()[0]
    return PipelineError(
        f"{bad}: damaged TFRecord file ({type(exc).__name__}: {first}); rerun "
        "`python -m pipeline.tfrecords --force`"
    )


@contextlib.contextmanager
def naming_damaged_file(files: Sequence[str | Path]) -> Iterator[None]:
    """Context for code that reads ``files`` through ``tf.data`` (``model.fit``, evaluation,
    predict): a TensorFlow error that a damaged file explains becomes a
    :class:`PipelineError` naming that file; other errors pass unchanged.

    Example::

        with loader.naming_damaged_file(train_files + val_files):
            model.fit(train_ds, validation_data=val_ds, ...)
    """
    try:
        yield
    except Exception as exc:
        named = damaged_file_error(exc, files)
        if named is None:
            raise
        raise named from exc


def iterate_checked(dataset: Any, files: Sequence[str | Path]) -> Iterator[Any]:
    """Iterates ``dataset``, naming the damaged file when reading fails.

    On any ``tf.errors.OpError`` the files are reread one by one (:func:`find_damaged_file`);
    the first damaged one is named in a :class:`PipelineError`. Errors that no file explains
    (no file fails on rereading) are raised unchanged.

    Args:
        dataset: e.g. from :func:`create_dataset`.
        files: the TFRecord paths the dataset reads (see :func:`resolve_files`).

    Yields:
        The dataset's elements, unchanged.
    """
    with naming_damaged_file(files):
        yield from dataset


# --------------------------------------------------------------------------- decoding


def _dtype(kind: str, cfg: PipelineConfig) -> Any:
    import tensorflow as tf

    return tf.float16 if (kind == "beats" and cfg.scalograms.dtype == "float16") else tf.float32


def _decode_example(serialized: Any, kind: str, cfg: PipelineConfig, label_dim: int,
                    rr: bool = False, rhythm: bool = False) -> dict[str, Any]:
    """Decodes one serialized Example (one stored batch) to ``x`` (stored dtype), ``y``,
    ``index`` and ``rr`` (the rhythm features ``(n, F)`` with ``rhythm``, else ``(n, 0)``).

    One Example at a time: parsing only the keys needed, no copy of the whole file.
    """
    import tensorflow as tf

    spec = schema.feature_spec()
    keys = ("x", "y", "index", "aux") if rr or rhythm else ("x", "y", "index")
    p = tf.io.parse_single_example(serialized, {k: spec[k] for k in keys})
    x = tf.reshape(tf.io.decode_raw(p["x"], _dtype(kind, cfg)), [-1, *schema.example_shape(kind, cfg)])
    aux_dim = len(schema.aux_names(kind, cfg))
    if rr:  # (n, T) -> (n, T, 4): signal + constant RR channels
        f = schema.rr_features_tf(tf.io.decode_raw(p["aux"], tf.float32), aux_dim)
        x = tf.concat([x[..., None], tf.tile(f[:, None, :], [1, tf.shape(x)[1], 1])], axis=-1)
    if rhythm:
        side = tf.reshape(tf.io.decode_raw(p["aux"], tf.float32), [-1, aux_dim])
        side = tf.gather(side[:, len(schema.RR_AUX):], schema.rhythm_columns(cfg), axis=1)
    else:
        side = tf.zeros([tf.shape(x)[0], 0], tf.float32)
    y = tf.io.decode_raw(p["y"], tf.int8)
    y = tf.reshape(y, [-1] if label_dim == 1 else [-1, label_dim])
    return {"x": x, "y": y, "index": tf.io.decode_raw(p["index"], tf.int32), "rr": side}


def _label_tensor(y: Any, task: Task) -> Any:
    import tensorflow as tf

    if task.multilabel:
        return tf.cast(y, tf.float32)
    yi = tf.cast(y, tf.int32)
    if task.label_map is not None:
        yi = tf.gather(tf.constant(task.label_map, tf.int32), yi)
    return tf.one_hot(yi, task.n_outputs, dtype=tf.float32)


_XLA_OK: bool | None = None  # whether XLA compiles on this machine (probed once)
_XLA_FN: Any = None


def _cast_affine(x: Any, a: Any, b: Any) -> Any:
    """``float32(x) * a + b``.

    float16 input (scalograms) goes through one XLA-fused pass when XLA works here instead of
    three (cast, multiply, add): on batches of scalogram sequences this is most of the
    loader's arithmetic, and the fused pass takes about half the time. It equals the unfused
    result to float32 rounding (fused multiply-add). float32 input is small enough that the
    XLA call costs more than it saves.
    """
    import tensorflow as tf

    global _XLA_OK
    if x.dtype != tf.float16:
        return x * a + b
    if _XLA_OK is None:
        # Probe eagerly (also when called while a map is traced) on the CPU, where tf.data
        # runs its functions.
        with tf.init_scope(), tf.device("/CPU:0"):
            try:
                probe = _cast_affine_xla(tf.ones([2], tf.float16), tf.ones([1]), tf.ones([1]))
                _XLA_OK = bool(np.all(probe.numpy() == 2.0))
            except Exception:  # XLA not built in or not usable on this device
                _XLA_OK = False
    if _XLA_OK:
        return _cast_affine_xla(x, a, b)
    return tf.cast(x, tf.float32) * a + b


def _cast_affine_xla(x: Any, a: Any, b: Any) -> Any:
    global _XLA_FN
    if _XLA_FN is None:
        import tensorflow as tf

        _XLA_FN = tf.function(lambda x, a, b: tf.cast(x, tf.float32) * a + b, jit_compile=True,
                              reduce_retracing=True)
    return _XLA_FN(x, a, b)


@dataclasses.dataclass(frozen=True)
class Normalizer:
    """Per-channel ``(x - mean) / scale`` with statistics fitted on training files only."""

    mean: np.ndarray
    scale: np.ndarray

    def apply(self, x: Any, channel_axis: int) -> Any:
        """``(x - mean) / scale`` along ``channel_axis`` as float32 (``x`` float16 or 32).

        Computed as ``x * (1 / scale) + (-mean / scale)`` in one pass (see `_cast_affine`).
        """
        import tensorflow as tf

        shape = [1] * len(x.shape)
        shape[channel_axis] = -1
        mean = np.asarray(self.mean, np.float64)
        inv = 1.0 / np.asarray(self.scale, np.float64)
        a = tf.reshape(tf.constant(inv, tf.float32), shape)
        b = tf.reshape(tf.constant(-mean * inv, tf.float32), shape)
        return _cast_affine(x, a, b)


def _channel_axis(kind: str) -> int:
    # Axis of the per-example (batched: +1) tensor holding the channels.
    return {"segments": -1, "beats": -2, "denoise": -1, "ptbxl": -1}[kind]


@dataclasses.dataclass(frozen=True)
class DatasetPlan:
    """Everything :func:`create_dataset` resolved once, read by its named steps."""

    task: Task
    config: PipelineConfig
    is_training: bool
    seed: int
    norm: Normalizer | None = None
    noise_fn: NoiseFn | None = None
    masks: Any = None
    """``tf.RaggedTensor`` of per-file boolean masks over stored examples, or ``None``."""
    with_index: bool = False
    rr_norm: Normalizer | None = None
    """Rhythm tasks: the z-scoring of the ``rr`` vector (training statistics)."""

    @property
    def kind(self) -> str:
        return self.task.kind

    @property
    def label_dim(self) -> int:
        return self.task.n_outputs if self.task.multilabel else 1

    @property
    def half_seq(self) -> int:
        return self.config.loader.seq_len_beats // 2


def subset_masks(files: Sequence[str], include: Mapping[str, np.ndarray] | None) -> Any:
    """Per-file masks as one ``tf.RaggedTensor`` (row ``i``: file ``i``), ``None`` for all.

    ``include`` is keyed by the full path or the file name.

    Raises:
        KeyError: a file has no mask.
    """
    import tensorflow as tf

    if include is None:
        return None
    rows = []
    for f in files:
        key = f if f in include else Path(f).name
        if key not in include:
            raise KeyError(f"include has no mask for {f}")
        rows.append(np.asarray(include[key], bool))
    return tf.RaggedTensor.from_row_lengths(
        np.concatenate(rows) if rows else np.zeros([0], bool),
        np.array([len(r) for r in rows], np.int64))


def _keep(plan: DatasetPlan, file_id: Any, offset: Any, n: Any) -> Any:
    """The subset mask of a file's stored examples ``offset .. offset + n``."""
    import tensorflow as tf

    if plan.masks is None:
        return tf.ones([n], tf.bool)
    return plan.masks[file_id][offset : offset + n]


def _outputs(plan: DatasetPlan, x: Any, y: Any, rec: Any, idx: Any,
             rr: Any = None) -> tuple[Any, ...]:
    """``(x, y[, record, index])``; rhythm tasks: ``x`` is ``{"ecg": x, "rr": rr}``."""
    import tensorflow as tf

    if plan.task.rhythm:
        x = {"ecg": x, "rr": rr}
    return (x, y, tf.fill(tf.shape(idx), rec), idx) if plan.with_index else (x, y)


def _masked(plan: DatasetPlan, offset: Any, d: dict[str, Any], file_id: Any, rec: Any) -> Any:
    """Scan step: the examples of one stored batch that the subset mask keeps."""
    import tensorflow as tf

    n = tf.shape(d["y"])[0]
    keep = _keep(plan, file_id, offset, n)
    x, y, idx, rr = (tf.boolean_mask(d[k], keep) for k in ("x", "y", "index", "rr"))
    return offset + n, _outputs(plan, x, y, rec, idx, rr)


def _beat_sequences(plan: DatasetPlan, state: Any, d: dict[str, Any], file_id: Any,
                    rec: Any) -> Any:
    """Scan step: sequences centred on this Example's beats (and the carried beats' last h).

    The carried tail (the file's previous 2h beats) plus this Example form a block; its
    centres h .. len-h-1 partition the file's centres h .. n-h-1 over the Examples. Rhythm
    tasks take the centre beat's rhythm vector.
    """
    import tensorflow as tf

    h = plan.half_seq
    tx, ty, ti, tk, tr, offset = state
    n = tf.shape(d["y"])[0]
    x = tf.concat([tx, d["x"]], 0)
    y = tf.concat([ty, d["y"]], 0)
    idx = tf.concat([ti, d["index"]], 0)
    rr = tf.concat([tr, d["rr"]], 0)
    keep = tf.concat([tk, _keep(plan, file_id, offset, n)], 0)
    m = tf.shape(idx)[0]
    centres = tf.range(h, tf.maximum(h, m - h))  # empty while the block is short
    ok = tf.gather(idx, centres + h) - tf.gather(idx, centres - h) == 2 * h
    centres = tf.boolean_mask(centres, tf.logical_and(ok, tf.gather(keep, centres)))
    seq = tf.gather(x, centres[:, None] + tf.range(-h, h + 1)[None, :])  # (k, N, S, T)
    t0 = tf.maximum(m - 2 * h, 0)
    new_state = (x[t0:], y[t0:], idx[t0:], keep[t0:], rr[t0:], offset + n)
    return new_state, _outputs(plan, seq, tf.gather(y, centres), rec, tf.gather(idx, centres),
                               tf.gather(rr, centres))


def _noise_seed(plan: DatasetPlan, file_id: Any, chunk_id: Any) -> Any:
    """Training: a fresh random seed per chunk; evaluation: fixed per (file, chunk)."""
    import tensorflow as tf

    if plan.is_training:
        return tf.random.uniform([2], 0, 2**31 - 1, dtype=tf.int64)
    return tf.stack([tf.cast(file_id, tf.int64) * 100003 + tf.cast(plan.seed, tf.int64),
                     tf.cast(chunk_id, tf.int64)])  # fmt: skip


def _denoise_example(plan: DatasetPlan, serialized: Any, file_id: Any, rec: Any,
                     chunk_id: Any) -> tuple[Any, ...]:
    """One stored denoising chunk -> its (noisy, clean) windows, noise and normalization added."""
    import tensorflow as tf

    spec = schema.feature_spec()
    p = tf.io.parse_single_example(
        serialized, {k: spec[k] for k in ("x", "index", "eval_grid", "chunk_start")})
    cfg = plan.config
    window = cfg.windows.denoise_window_samples
    chunk = tf.reshape(tf.io.decode_raw(p["x"], tf.float32), [-1, 2])
    starts = tf.io.decode_raw(p["index"], tf.int32)
    grid = tf.cast(tf.io.decode_raw(p["eval_grid"], tf.uint8), tf.bool)
    sel = grid if not plan.is_training else tf.ones_like(grid)
    if plan.masks is not None:  # masks run over every stored window, chunk after chunk
        per = min(cfg.tfrecords.denoise_chunk_windows, schema.MAX_BATCH)
        off = tf.cast(chunk_id, tf.int32) * per
        sel = tf.logical_and(sel, plan.masks[file_id][off : off + tf.shape(starts)[0]])
    starts = tf.boolean_mask(starts, sel)
    clean = tf.gather(chunk, starts[:, None] + tf.range(window)[None, :])  # (k, W, 2)
    noisy = plan.noise_fn(clean, _noise_seed(plan, file_id, chunk_id))
    if plan.norm is not None:
        noisy, clean = plan.norm.apply(noisy, -1), plan.norm.apply(clean, -1)
    return _outputs(plan, noisy, clean, rec, starts + tf.cast(p["chunk_start"], tf.int32))


def _read_file(plan: DatasetPlan, path: Any, file_id: Any) -> Any:
    """One TFRecord file -> a dataset of stored-batch-sized example blocks (parse step)."""
    import tensorflow as tf

    rec = tf.strings.regex_replace(
        tf.strings.split(path, "/")[-1], r"-\d{5}-of-\d{5}\.tfrecord$", "")
    raw = tf.data.TFRecordDataset(path)
    kind, cfg = plan.kind, plan.config
    if kind == "denoise":
        return raw.enumerate().map(lambda i, s: _denoise_example(plan, s, file_id, rec, i))
    examples = raw.map(lambda s: _decode_example(s, kind, cfg, plan.label_dim,
                                                 plan.task.rr_channels, plan.task.rhythm))
    if kind == "beats":
        # Sequences span the Examples of a file: carry the last 2h beats to the next one.
        sh = schema.example_shape(kind, cfg)
        n_rr = len(schema.rhythm_names(cfg)) if plan.task.rhythm else 0
        start = (tf.zeros([0, *sh], _dtype(kind, cfg)), tf.zeros([0], tf.int8),
                 tf.zeros([0], tf.int32), tf.zeros([0], tf.bool), tf.zeros([0, n_rr]),
                 tf.constant(0, tf.int32))
        return examples.scan(start, lambda st, d: _beat_sequences(plan, st, d, file_id, rec))
    if plan.masks is not None:
        return examples.scan(tf.constant(0, tf.int32),
                             lambda off, d: _masked(plan, off, d, file_id, rec))
    return examples.map(lambda d: _outputs(plan, d["x"], d["y"], rec, d["index"], d["rr"]))


def _finish_batch(plan: DatasetPlan, x: Any, y: Any, *index: Any) -> tuple[Any, ...]:
    """Cast, normalize and label a whole batch at once (denoising: done per chunk)."""
    import tensorflow as tf

    kind = plan.kind
    if kind != "denoise":
        rr = None
        if plan.task.rhythm:
            x, rr = x["ecg"], x["rr"]
            rr = rr if plan.rr_norm is None else plan.rr_norm.apply(rr, -1)
        if plan.is_training and kind == "segments":
            t = plan.config.train
            x = augment.augment_segments(tf.cast(x, tf.float32), t.augment_gain,
                                         t.augment_noise_mv, plan.task.rr_channels)
        norm = plan.norm
        x = tf.cast(x, tf.float32) if norm is None else norm.apply(x, _channel_axis(kind))
        if kind == "beats" or (kind == "segments" and not plan.task.rr_channels):
            x = x[..., None]
        if rr is not None:
            x = {"ecg": x, "rr": rr}
        y = _label_tensor(y, plan.task)
    return (x, y, *index)


def file_dataset(plan: DatasetPlan, files: Sequence[str]) -> Any:
    """The interleaved example stream of ``files`` (file order, then interleave, unbatch).

    Training shuffles the file list each epoch (seeded) and alternates files stored batch by
    stored batch; evaluation reads files in parallel but yields them one after another, in
    the given order (labels align with :func:`split_labels`).
    """
    import tensorflow as tf

    ds = tf.data.Dataset.from_tensor_slices((tf.constant(list(files)), tf.range(len(files))))
    if plan.is_training:
        ds = ds.shuffle(len(files), seed=plan.seed, reshuffle_each_iteration=True)
    ds = ds.interleave(
        lambda path, file_id: _read_file(plan, path, file_id),
        cycle_length=max(1, min(plan.config.loader.cycle_length, len(files))),
        block_length=1 if plan.is_training else 2**31 - 1,
        num_parallel_calls=tf.data.AUTOTUNE,
        deterministic=not plan.is_training,
    )
    return ds.unbatch()


def batch_examples(plan: DatasetPlan, ds: Any, batch_size: int) -> Any:
    """[training: shuffle buffer] -> batch -> cast, normalize, label -> prefetch."""
    import tensorflow as tf

    training = plan.is_training
    shuffle_buffer = plan.config.loader.shuffle_buffer
    if training and shuffle_buffer > 1:
        ds = ds.shuffle(shuffle_buffer, seed=plan.seed + 1, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size, num_parallel_calls=tf.data.AUTOTUNE, deterministic=not training)
    ds = ds.map(lambda x, y, *index: _finish_batch(plan, x, y, *index),
                num_parallel_calls=tf.data.AUTOTUNE, deterministic=not training)
    return ds.prefetch(tf.data.AUTOTUNE)


def normalizers(task: Task, config: PipelineConfig, mean: Any, scale: Any
                ) -> tuple[Normalizer | None, Normalizer | None]:
    """(signal normalizer, rhythm normalizer) from the statistics (``None`` without them).

    Rhythm tasks: ``mean`` and ``scale`` hold the signal channels, then one entry per rhythm
    feature.

    Raises:
        PipelineError: a rhythm task's statistics have another length.
    """
    if mean is None or scale is None:
        return None, None
    mean, scale = np.asarray(mean, np.float32), np.asarray(scale, np.float32)
    if not task.rhythm:
        return Normalizer(mean, scale), None
    n_sig = normalization.n_channels(task.kind, config, task.rr_channels)
    n_rr = len(schema.rhythm_names(config))
    if mean.shape != (n_sig + n_rr,) or scale.shape != mean.shape:
        raise PipelineError(
            f"task {task.name}: normalization statistics have {mean.size} entries, the task "
            f"needs {n_sig + n_rr} ({n_sig} signal channels + {n_rr} rhythm features); refit "
            "them on the training files (a new run folder)")
    return (Normalizer(mean[:n_sig], scale[:n_sig]),
            Normalizer(mean[n_sig:], scale[n_sig:]))


def create_dataset(
    record_names_or_files: Sequence[str | Path],
    config: PipelineConfig,
    batch_size: int,
    is_training: bool,
    mean: Sequence[float] | np.ndarray | None = None,
    scale: Sequence[float] | np.ndarray | None = None,
    *,
    task: str | Task | None = None,
    noise_fn: NoiseFn | None = None,
    include: Mapping[str, np.ndarray] | None = None,
    seed: int | None = None,
    check: bool = True,
    with_index: bool = False,
) -> Any:
    """Builds the ``tf.data.Dataset`` of ``(x, y)`` batches for a task.

    Args:
        record_names_or_files: record names (resolved under the data folder) or TFRecord paths.
        config: the pipeline config (shapes, loader settings, sequence length).
        batch_size: examples per batch (the last batch may be smaller).
        is_training: file shuffle each epoch, non-deterministic interleave and a shuffle
            buffer; otherwise a fixed order.
        mean, scale: per-channel statistics from :mod:`pipeline.normalization` (training
            split only); ``None`` leaves the data unnormalized.
        task: task name or object (default ``config.train.task``).
        noise_fn: denoising only: adds noise to clean windows; the pair is (noisy, clean).
        include: per file path, a boolean mask over the file's stored examples (beats: over
            the centre beat) selecting which are used (intra-patient splits).
        seed: overrides ``config.loader.seed`` for file and example shuffles.
        check: validate each file's metadata against the config first.
        with_index: also yield ``(record, index)`` per example (evaluation and plots):
            beats and segments: the beat's position in the record; denoising: the window's
            start sample in the record; PTB-XL: ecg_id.

    Returns:
        A dataset of ``(x, y)`` (or ``(x, y, record, index)``). ``x``: segments
        (batch, 720, 1) (with RR channels: (batch, 720, 4)); sequences (batch, N, n_scales,
        187, 1); denoising (batch, 1440, 2); PTB-XL (batch, 1000, 12); rhythm tasks
        ``{"ecg": <as above>, "rr": (batch, n_rhythm_features)}``. ``y``: one-hot
        (single-label), multi-hot float (multi-label) or the clean window (denoising).
    """
    task_obj = task if isinstance(task, Task) else get_task(task or config.train.task)
    files = resolve_files(record_names_or_files, config, task_obj.kind)
    if check:
        check_files(files, config, task_obj.kind, task_obj)
    if task_obj.denoising and noise_fn is None:
        raise ValueError("a denoising dataset needs a noise_fn (see pipeline.noise)")
    seq_len = config.loader.seq_len_beats
    if task_obj.kind == "beats" and (seq_len < 1 or seq_len % 2 == 0):
        raise ValueError(f"loader.seq_len_beats must be odd and >= 1. Received: {seq_len}")
    norm, rr_norm = normalizers(task_obj, config, mean, scale)
    plan = DatasetPlan(
        task_obj, config, is_training, config.loader.seed if seed is None else seed, norm,
        noise_fn, subset_masks(files, include), with_index, rr_norm,
    )  # fmt: skip
    return batch_examples(plan, file_dataset(plan, files), batch_size)


# ------------------------------------------------------------------------- label helpers


def split_labels(
    record_names_or_files: Sequence[str | Path],
    config: PipelineConfig,
    task: str | Task | None = None,
    include: Mapping[str, np.ndarray] | None = None,
) -> np.ndarray:
    """Labels of every example of a split, in the non-training order, without the payloads.

    Returns:
        Single-label: class indices (n,) of the task; multi-label: (n, n_classes) int8.
    """
    import tensorflow as tf

    task_obj = task if isinstance(task, Task) else get_task(task or config.train.task)
    if task_obj.denoising:
        raise ValueError("denoising tasks have no labels")
    files = resolve_files(record_names_or_files, config, task_obj.kind)
    spec = {k: v for k, v in schema.feature_spec().items() if k in ("y", "index", "label_dim")}
    h = config.loader.seq_len_beats // 2
    out = []
    for f in files:
        ys, idxs = [], []
        try:
            for ser in tf.data.TFRecordDataset(f).batch(1 << 20):
                p = tf.io.parse_example(ser, spec)
                ld = int(p["label_dim"][0])
                for yb, ib in zip(p["y"].numpy(), p["index"].numpy(), strict=True):
                    y = np.frombuffer(yb, np.int8)
                    ys.append(y if ld == 1 else y.reshape(-1, ld))
                    idxs.append(np.frombuffer(ib, np.int32))
        except tf.errors.OpError as exc:
            raise PipelineError(f"{f}: damaged TFRecord file ({exc.message.splitlines()[0]})") from exc
        y = np.concatenate(ys) if ys else np.zeros(0, np.int8)
        idx = np.concatenate(idxs) if idxs else np.zeros(0, np.int32)
        keep = np.ones(len(y), bool)
        if include is not None:
            key = f if f in include else Path(f).name
            if key not in include:
                raise KeyError(f"include has no mask for {f}")
            keep = np.asarray(include[key], bool)
            if keep.shape != (len(y),):
                raise ValueError(f"{f}: include mask has shape {keep.shape}, the file has "
                                 f"{len(y)} examples")
        if task_obj.kind == "beats":
            c = np.arange(h, len(idx) - h)
            ok = (idx[c + h] - idx[c - h] == 2 * h) & keep[c]
            y = y[c[ok]]
        else:
            y = y[keep]
        out.append(y)
    y = np.concatenate(out) if out else np.zeros(0, np.int8)
    if not task_obj.multilabel and task_obj.label_map is not None:
        y = np.asarray(task_obj.label_map)[y.astype(int)]
    return y
