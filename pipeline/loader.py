"""The streaming ``tf.data`` loader over batched TFRecords.

Order of operations (tensorflow/models input reader, prefetch last)::

    files -> [train: seeded shuffle of the file list, new order each epoch]
          -> interleave(read whole file, cycle_length=4, parallel, deterministic unless train)
          -> decode the file's batches, form examples (sequences of consecutive beats of one
             record, or 4 s windows cut from denoising chunks; noise added here)
          -> normalize (x - mean) / scale per channel (per scale row for scalograms)
          -> add a channel axis where the model needs one
          -> unbatch -> [train: light shuffle buffer] -> batch -> prefetch

Reading a whole file per interleave element lets sequences of N consecutive beats span the
Example boundaries inside a file, while never crossing a record boundary (a file is one
record). Every example is yielded exactly once per pass.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from pipeline import schema
from pipeline.config import PipelineConfig
from pipeline.io_utils import PipelineError, read_json
from pipeline.tasks import Task, get_task

log = logging.getLogger("ecg.loader")

NoiseFn = Callable[[Any, Any], Any]
"""``noise_fn(clean (k, T, C) float32 in mV, seed int64[2]) -> noisy`` (same shape)."""


# ------------------------------------------------------------------------------ files


def resolve_files(record_names_or_files: Sequence[str | Path], cfg: PipelineConfig, kind: str) -> list[str]:
    """Turns record names (or paths) into TFRecord paths of ``kind``; missing ones raise."""
    from pipeline.io_utils import safe_name
    from pipeline.tfrecords import shard_name, tfrecord_dir

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
    """Reads each file fully; returns the first one whose records fail their CRC/length."""
    import tensorflow as tf

    for f in files:
        try:
            for _ in tf.data.TFRecordDataset(f):
                pass
        except tf.errors.OpError:
            return f
    return None


# --------------------------------------------------------------------------- decoding


def _dtype(kind: str, cfg: PipelineConfig) -> Any:
    import tensorflow as tf

    return tf.float16 if (kind == "beats" and cfg.scalograms.dtype == "float16") else tf.float32


def _parse_all(serialized: Any, kind: str, cfg: PipelineConfig, label_dim: int) -> dict[str, Any]:
    """Parses a vector of serialized Examples of one file into concatenated tensors."""
    import tensorflow as tf

    p = tf.io.parse_example(serialized, schema.feature_spec())
    shape = schema.example_shape(kind, cfg)
    x = tf.io.decode_raw(tf.strings.reduce_join(p["x"]), _dtype(kind, cfg))
    x = tf.reshape(x, [-1, *shape])
    y = tf.io.decode_raw(tf.strings.reduce_join(p["y"]), tf.int8)
    y = tf.reshape(y, [-1] if label_dim == 1 else [-1, label_dim])
    index = tf.io.decode_raw(tf.strings.reduce_join(p["index"]), tf.int32)
    return {"x": x, "y": y, "index": index}


def _label_tensor(y: Any, task: Task) -> Any:
    import tensorflow as tf

    if task.multilabel:
        return tf.cast(y, tf.float32)
    yi = tf.cast(y, tf.int32)
    if task.label_map is not None:
        yi = tf.gather(tf.constant(task.label_map, tf.int32), yi)
    return tf.one_hot(yi, task.n_outputs, dtype=tf.float32)


@dataclasses.dataclass(frozen=True)
class Normalizer:
    """Per-channel ``(x - mean) / scale`` with statistics fitted on training files only."""

    mean: np.ndarray
    scale: np.ndarray

    def apply(self, x: Any, channel_axis: int) -> Any:
        import tensorflow as tf

        shape = [1] * len(x.shape)
        shape[channel_axis] = -1
        m = tf.reshape(tf.constant(self.mean, tf.float32), shape)
        s = tf.reshape(tf.constant(self.scale, tf.float32), shape)
        return (x - m) / s


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
        with_index: also yield ``(record, index)`` per example (evaluation and plots).

    Returns:
        A dataset of ``(x, y)`` (or ``(x, y, record, index)``). ``x``: segments
        (batch, 720, 1); sequences (batch, N, n_scales, 187, 1); denoising (batch, 1440, 2);
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
        masks = tf.ragged.constant([r.tolist() for r in rows], dtype=tf.bool)

    h = lcfg.seq_len_beats // 2
    if kind == "beats" and (lcfg.seq_len_beats < 1 or lcfg.seq_len_beats % 2 == 0):
        raise ValueError(f"loader.seq_len_beats must be odd and >= 1. Received: {lcfg.seq_len_beats}")

    def finish(x: Any, y: Any, rec: Any, idx: Any) -> Any:
        if with_index:
            return tf.data.Dataset.from_tensor_slices((x, y, tf.fill(tf.shape(idx), rec), idx))
        return tf.data.Dataset.from_tensor_slices((x, y))

    def read_file(path: Any, file_id: Any) -> Any:
        rec = tf.strings.regex_replace(tf.strings.split(path, "/")[-1], r"-\d{5}-of-\d{5}\.tfrecord$", "")
        raw = tf.data.TFRecordDataset(path)
        if kind == "denoise":
            return raw.enumerate().map(
                lambda i, s: _denoise_example(s, file_id, rec, i)).flat_map(
                lambda x, y, r, i: finish(x, y, r, i))
        return raw.batch(1 << 20).map(lambda s: _file_examples(s, file_id, rec)).flat_map(finish)

    def _mask(file_id: Any, n: Any) -> Any:
        if masks is None:
            return tf.ones([n], tf.bool)
        return masks[file_id]

    def _file_examples(serialized: Any, file_id: Any, rec: Any) -> Any:
        d = _parse_all(serialized, kind, config, label_dim)
        x, y, idx = d["x"], d["y"], d["index"]
        keep = _mask(file_id, tf.shape(y)[0])
        if kind == "beats":
            n = tf.shape(idx)[0]
            centres = tf.range(h, n - h)
            ok = tf.gather(idx, centres + h) - tf.gather(idx, centres - h) == 2 * h
            ok = tf.logical_and(ok, tf.gather(keep, centres))
            centres = tf.boolean_mask(centres, ok)
            offsets = tf.range(-h, h + 1)
            x = tf.gather(x, centres[:, None] + offsets[None, :])  # (m, N, S, T)
            y, idx = tf.gather(y, centres), tf.gather(idx, centres)
        else:
            x, y, idx = tf.boolean_mask(x, keep), tf.boolean_mask(y, keep), tf.boolean_mask(idx, keep)
        x = tf.cast(x, tf.float32)
        if norm is not None:
            x = norm.apply(x, _channel_axis(kind))
        if kind in ("segments",):
            x = x[..., None]
        elif kind == "beats":
            x = x[..., None]
        return x, _label_tensor(y, task_obj), rec, idx

    def _denoise_example(serialized: Any, file_id: Any, rec: Any, chunk_id: Any) -> Any:
        p = tf.io.parse_single_example(serialized, schema.feature_spec())
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
            noisy_n, clean_n = norm.apply(noisy, -1), norm.apply(clean, -1)
        else:
            noisy_n, clean_n = noisy, clean
        return noisy_n, clean_n, rec, starts

    ds = tf.data.Dataset.from_tensor_slices((tf.constant(files), tf.range(len(files))))
    if is_training:
        ds = ds.shuffle(len(files), seed=seed, reshuffle_each_iteration=True)
    ds = ds.interleave(
        read_file,
        cycle_length=max(1, min(lcfg.cycle_length, len(files))),
        # Training mixes files example by example; evaluation reads files in parallel but
        # yields them one after another, in the given order (labels align with split_labels).
        block_length=1 if is_training else 2**31 - 1,
        num_parallel_calls=tf.data.AUTOTUNE,
        deterministic=not is_training,
    )
    if is_training and lcfg.shuffle_buffer > 1:
        ds = ds.shuffle(lcfg.shuffle_buffer, seed=seed + 1, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size)
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
                for yb, ib in zip(p["y"].numpy(), p["index"].numpy()):
                    y = np.frombuffer(yb, np.int8)
                    ys.append(y if ld == 1 else y.reshape(-1, ld))
                    idxs.append(np.frombuffer(ib, np.int32))
        except tf.errors.OpError as exc:
            raise PipelineError(f"{f}: damaged TFRecord file ({exc.message.splitlines()[0]})") from exc
        y = np.concatenate(ys) if ys else np.zeros(0, np.int8)
        idx = np.concatenate(idxs) if idxs else np.zeros(0, np.int32)
        keep = np.ones(len(y), bool)
        if include is not None:
            keep = np.asarray(include.get(f, include.get(Path(f).name)), bool)
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


def count_examples(record_names_or_files: Sequence[str | Path], config: PipelineConfig,
                   task: str | Task | None = None) -> int:
    task_obj = task if isinstance(task, Task) else get_task(task or config.train.task)
    if task_obj.denoising:
        raise ValueError("use the denoise manifest for window counts")
    return int(len(split_labels(record_names_or_files, config, task_obj)))
