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

Examples are decoded a stored batch at a time and cast and normalized a training batch at a
time, so no operation runs per example except the shuffle and batch copies (float16
scalograms stay float16 until then). Sequences of N consecutive beats span the Example
boundaries inside a file but never cross a record boundary (a file is one record). Every
example is yielded exactly once per pass.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.data import schema
from pipeline.core.config import PipelineConfig
from pipeline.core.io_utils import PipelineError, read_json
from pipeline.data.tasks import Task, get_task

log = logging.getLogger("ecg.loader")

NoiseFn = Callable[[Any, Any], Any]
"""``noise_fn(clean (k, T, C) float32 in mV, seed int64[2]) -> noisy`` (same shape)."""


# ------------------------------------------------------------------------------ files


def resolve_files(record_names_or_files: Sequence[str | Path], cfg: PipelineConfig, kind: str) -> list[str]:
    """Turns record names (or paths) into TFRecord paths of ``kind``; missing ones raise."""
    from pipeline.core.io_utils import safe_name
    from pipeline.data.tfrecord_writer import shard_name, tfrecord_dir

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


def check_files(files: Sequence[str], cfg: PipelineConfig, kind: str) -> None:
    """Checks every file's own metadata and size against the config and the manifest."""
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


def iterate_checked(dataset: Any, files: Sequence[str | Path]) -> Iterator[Any]:
    """Iterates ``dataset``, naming the damaged file when reading fails.

    ``tf.data`` reports a failed CRC or a truncated record as ``DataLossError`` without the
    file's name. On any ``tf.errors.OpError`` the files are reread one by one
    (:func:`find_damaged_file`); the first damaged one is named in a :class:`PipelineError`.
    Errors that no file explains (no file fails on rereading) are raised unchanged.

    Args:
        dataset: e.g. from :func:`create_dataset`.
        files: the TFRecord paths the dataset reads (see :func:`resolve_files`).

    Yields:
        The dataset's elements, unchanged.
    """
    import tensorflow as tf

    it = None
    while True:
        try:
            if it is None:
                it = iter(dataset)
            item = next(it)
        except StopIteration:
            return
        except tf.errors.OpError as exc:
            bad = find_damaged_file([str(f) for f in files])
            if bad is None:
                raise
            first = (exc.message or type(exc).__name__).splitlines()[0]
            raise PipelineError(
                f"{bad}: damaged TFRecord file ({type(exc).__name__}: {first}); rerun "
                "`python -m pipeline.tfrecords --force`"
            ) from exc
        yield item


# --------------------------------------------------------------------------- decoding


def _dtype(kind: str, cfg: PipelineConfig) -> Any:
    import tensorflow as tf

    return tf.float16 if (kind == "beats" and cfg.scalograms.dtype == "float16") else tf.float32


def _decode_example(serialized: Any, kind: str, cfg: PipelineConfig, label_dim: int,
                    rr: bool = False) -> dict[str, Any]:
    """Decodes one serialized Example (one stored batch) to ``x`` (stored dtype), ``y``, ``index``.

    One Example at a time: parsing only the keys needed, no copy of the whole file.
    """
    import tensorflow as tf

    spec = schema.feature_spec()
    keys = ("x", "y", "index", "aux") if rr else ("x", "y", "index")
    p = tf.io.parse_single_example(serialized, {k: spec[k] for k in keys})
    x = tf.reshape(tf.io.decode_raw(p["x"], _dtype(kind, cfg)), [-1, *schema.example_shape(kind, cfg)])
    if rr:  # (n, T) -> (n, T, 4): signal + constant RR channels
        f = schema.rr_features_tf(tf.io.decode_raw(p["aux"], tf.float32))
        x = tf.concat([x[..., None], tf.tile(f[:, None, :], [1, tf.shape(x)[1], 1])], axis=-1)
    y = tf.io.decode_raw(p["y"], tf.int8)
    y = tf.reshape(y, [-1] if label_dim == 1 else [-1, label_dim])
    return {"x": x, "y": y, "index": tf.io.decode_raw(p["index"], tf.int32)}


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
        (batch, 720, 1) (with RR channels: (batch, 720, 4)); sequences (batch, N, n_scales, 187, 1); denoising (batch, 1440, 2);
        PTB-XL (batch, 1000, 12). ``y``: one-hot (single-label), multi-hot float
        (multi-label) or the clean window (denoising).
    """
    import tensorflow as tf

    task_obj = task if isinstance(task, Task) else get_task(task or config.train.task)
    kind = task_obj.kind
    files = resolve_files(record_names_or_files, config, kind)
    if check:
        check_files(files, config, kind)
    lcfg = config.loader
    seed = lcfg.seed if seed is None else seed
    label_dim = task_obj.n_outputs if task_obj.multilabel else 1
    norm = None
    if mean is not None and scale is not None:
        norm = Normalizer(np.asarray(mean, np.float32), np.asarray(scale, np.float32))
    if task_obj.denoising and noise_fn is None:
        raise ValueError("a denoising dataset needs a noise_fn (see pipeline.noise)")

    masks = None
    if include is not None:
        rows = []
        for f in files:
            key = f if f in include else Path(f).name
            if key not in include:
                raise KeyError(f"include has no mask for {f}")
            rows.append(np.asarray(include[key], bool))
        masks = tf.RaggedTensor.from_row_lengths(
            np.concatenate(rows) if rows else np.zeros([0], bool),
            np.array([len(r) for r in rows], np.int64))

    h = lcfg.seq_len_beats // 2
    if kind == "beats" and (lcfg.seq_len_beats < 1 or lcfg.seq_len_beats % 2 == 0):
        raise ValueError(f"loader.seq_len_beats must be odd and >= 1. Received: {lcfg.seq_len_beats}")

    def read_file(path: Any, file_id: Any) -> Any:
        rec = tf.strings.regex_replace(tf.strings.split(path, "/")[-1], r"-\d{5}-of-\d{5}\.tfrecord$", "")
        raw = tf.data.TFRecordDataset(path)
        if kind == "denoise":
            return raw.enumerate().map(lambda i, s: _denoise_example(s, file_id, rec, i))
        examples = raw.map(lambda s: _decode_example(s, kind, config, label_dim, task_obj.rr_channels))
        if kind == "beats":
            # Sequences span the Examples of a file: carry the last 2h beats to the next one.
            sh = schema.example_shape(kind, config)
            start = (tf.zeros([0, *sh], _dtype(kind, config)), tf.zeros([0], tf.int8),
                     tf.zeros([0], tf.int32), tf.zeros([0], tf.bool), tf.constant(0, tf.int32))
            out = examples.scan(start, lambda st, d: _beat_sequences(st, d, file_id, rec))
        elif masks is not None:
            out = examples.scan(tf.constant(0, tf.int32),
                                lambda off, d: _masked(off, d, file_id, rec))
        else:
            out = examples.map(lambda d: _outputs(d["x"], d["y"], rec, d["index"]))
        return out

    def _keep(file_id: Any, offset: Any, n: Any) -> Any:
        if masks is None:
            return tf.ones([n], tf.bool)
        return masks[file_id][offset : offset + n]

    def _outputs(x: Any, y: Any, rec: Any, idx: Any) -> tuple[Any, ...]:
        return (x, y, tf.fill(tf.shape(idx), rec), idx) if with_index else (x, y)

    def _masked(offset: Any, d: dict[str, Any], file_id: Any, rec: Any) -> Any:
        n = tf.shape(d["y"])[0]
        keep = _keep(file_id, offset, n)
        x, y, idx = (tf.boolean_mask(d[k], keep) for k in ("x", "y", "index"))
        return offset + n, _outputs(x, y, rec, idx)

    def _beat_sequences(state: Any, d: dict[str, Any], file_id: Any, rec: Any) -> Any:
        """Sequences centred on this Example's beats (and the carried beats' last h).

        The carried tail (the file's previous 2h beats) plus this Example form a block; its
        centres h .. len-h-1 partition the file's centres h .. n-h-1 over the Examples.
        """
        tx, ty, ti, tk, offset = state
        n = tf.shape(d["y"])[0]
        x = tf.concat([tx, d["x"]], 0)
        y = tf.concat([ty, d["y"]], 0)
        idx = tf.concat([ti, d["index"]], 0)
        keep = tf.concat([tk, _keep(file_id, offset, n)], 0)
        m = tf.shape(idx)[0]
        centres = tf.range(h, tf.maximum(h, m - h))  # empty while the block is short
        ok = tf.gather(idx, centres + h) - tf.gather(idx, centres - h) == 2 * h
        centres = tf.boolean_mask(centres, tf.logical_and(ok, tf.gather(keep, centres)))
        seq = tf.gather(x, centres[:, None] + tf.range(-h, h + 1)[None, :])  # (k, N, S, T)
        t0 = tf.maximum(m - 2 * h, 0)
        new_state = (x[t0:], y[t0:], idx[t0:], keep[t0:], offset + n)
        return new_state, _outputs(seq, tf.gather(y, centres), rec, tf.gather(idx, centres))

    def _denoise_example(serialized: Any, file_id: Any, rec: Any, chunk_id: Any) -> tuple[Any, ...]:
        spec = schema.feature_spec()
        p = tf.io.parse_single_example(
            serialized, {k: spec[k] for k in ("x", "index", "eval_grid", "chunk_start")})
        W = config.windows.denoise_window_samples
        chunk = tf.reshape(tf.io.decode_raw(p["x"], tf.float32), [-1, 2])
        starts = tf.io.decode_raw(p["index"], tf.int32)
        grid = tf.cast(tf.io.decode_raw(p["eval_grid"], tf.uint8), tf.bool)
        sel = grid if not is_training else tf.ones_like(grid)
        if masks is not None:  # masks run over every stored window, chunk after chunk
            per = min(config.tfrecords.denoise_chunk_windows, schema.MAX_BATCH)
            off = tf.cast(chunk_id, tf.int32) * per
            sel = tf.logical_and(sel, masks[file_id][off : off + tf.shape(starts)[0]])
        starts = tf.boolean_mask(starts, sel)
        clean = tf.gather(chunk, starts[:, None] + tf.range(W)[None, :])  # (k, W, 2)
        if is_training:
            s = tf.random.uniform([2], 0, 2**31 - 1, dtype=tf.int64)
        else:  # fixed noise per window for evaluation
            s = tf.stack([tf.cast(file_id, tf.int64) * 100003 + tf.cast(seed, tf.int64),
                          tf.cast(chunk_id, tf.int64)])
        noisy = noise_fn(clean, s)
        if norm is not None:
            noisy, clean = norm.apply(noisy, -1), norm.apply(clean, -1)
        return _outputs(noisy, clean, rec, starts + tf.cast(p["chunk_start"], tf.int32))

    def _finish_batch(x: Any, y: Any, *index: Any) -> tuple[Any, ...]:
        # Cast, normalize and label a whole batch at once (denoising: done per chunk).
        if kind != "denoise":
            x = tf.cast(x, tf.float32) if norm is None else norm.apply(x, _channel_axis(kind))
            if kind == "beats" or (kind == "segments" and not task_obj.rr_channels):
                x = x[..., None]
            y = _label_tensor(y, task_obj)
        return (x, y, *index)

    ds = tf.data.Dataset.from_tensor_slices((tf.constant(files), tf.range(len(files))))
    if is_training:
        ds = ds.shuffle(len(files), seed=seed, reshuffle_each_iteration=True)
    ds = ds.interleave(
        read_file,
        cycle_length=max(1, min(lcfg.cycle_length, len(files))),
        # Training alternates files stored batch by stored batch (the shuffle buffer then
        # mixes examples); evaluation reads files in parallel but yields them one after
        # another, in the given order (labels align with split_labels).
        block_length=1 if is_training else 2**31 - 1,
        num_parallel_calls=tf.data.AUTOTUNE,
        deterministic=not is_training,
    )
    ds = ds.unbatch()
    if is_training and lcfg.shuffle_buffer > 1:
        ds = ds.shuffle(lcfg.shuffle_buffer, seed=seed + 1, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size, num_parallel_calls=tf.data.AUTOTUNE, deterministic=not is_training)
    ds = ds.map(_finish_batch, num_parallel_calls=tf.data.AUTOTUNE, deterministic=not is_training)
    return ds.prefetch(tf.data.AUTOTUNE)


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
