"""The one place that owns every TFRecord key, dtype and shape.

A TFRecord file holds serialized ``tf.train.Example`` protos; each Example carries a *batch*
of up to 256 examples of one record (or one group of whole PTB-XL patients) as raw bytes plus
the metadata needed to decode it, so any file can be read without outside knowledge:

==================  =========  ==========================================================
key                 type       meaning
==================  =========  ==========================================================
``schema_version``  int64      :data:`SCHEMA_VERSION`
``kind``            bytes      one of :data:`KINDS`
``record``          bytes      source record (MIT-BIH) or patient group (PTB-XL)
``n``               int64      examples in this batch
``shape``           int64[]    shape of one example's ``x`` (denoise: of the stored chunk)
``dtype``           bytes      dtype of ``x`` (``float32`` / ``float16``)
``x``               bytes      ``n`` examples, C order (denoise: one contiguous chunk)
``label_dim``       int64      1 (class index) or the number of labels (multi-hot)
``y``               bytes      int8 labels, ``n * label_dim``
``index``           bytes      int32 per example: beat position in the record (beats,
                               segments), window start in the chunk (denoise), ecg_id
                               (PTB-XL, int32)
``chunk_start``     int64      denoise only: sample of the record where the stored chunk
                               starts, so a window starts at ``chunk_start + index`` (else 0)
``aux_dim``         int64      float32 side features per example (0 when none)
``aux``             bytes      float32 ``n * aux_dim``, columns :func:`aux_names` (segments,
                               beats: pre-RR, post-RR, local mean RR in s, then the
                               rhythm features; PTB-XL: patient id; denoise: none)
``frame_length``    int64      denoise only: window length in samples (else 0)
``eval_grid``       bytes      denoise only: uint8 per window, 1 when the start lies on the
                               non-overlapping evaluation grid
==================  =========  ==========================================================

Kinds: ``segments`` (2 s at 360 Hz, one lead), ``beats`` (Morlet scalograms of 187-sample
beats; the loader forms sequences of consecutive beats), ``denoise`` (two-lead 360 Hz signal
chunks from which 4 s windows are cut) and ``ptbxl`` (10 s, 12 leads, 100 Hz).

The ``aux`` layout of segments and beats: the three RR values the ``*_rr`` tasks turn into
constant channels (:data:`RR_AUX`, always first, so those tasks read ``aux[:, :3]`` whatever
follows), then the windows stage's rhythm features (:func:`pipeline.data.rhythm.feature_names`
of ``windows.rhythm_causal``), the ``rr`` side input of the ``*_rhythm`` tasks. The TFRecord
manifest records the names (``aux_names``).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from pipeline.data import beat_table, rhythm

SCHEMA_VERSION = 3
"""2: ``chunk_start`` added (denoise windows can be located in their record). 3: ``aux`` of
segments and beats carries the rhythm features after the three RR values."""
KINDS = ("segments", "beats", "denoise", "ptbxl")
MAX_BATCH = 256
DTYPES = {"float32": np.float32, "float16": np.float16}


class SchemaError(ValueError):
    """An Example or file does not follow the schema or the expected config."""


@dataclasses.dataclass(frozen=True)
class Batch:
    """One decoded Example (NumPy)."""

    kind: str
    record: str
    x: np.ndarray
    y: np.ndarray
    index: np.ndarray
    aux: np.ndarray
    frame_length: int = 0
    eval_grid: np.ndarray | None = None
    chunk_start: int = 0

    @property
    def n(self) -> int:
        return int(len(self.y))


def feature_spec() -> dict[str, Any]:
    """``tf.io.parse_example`` spec of every key (TensorFlow imported lazily)."""
    import tensorflow as tf

    return {
        "schema_version": tf.io.FixedLenFeature([], tf.int64),
        "kind": tf.io.FixedLenFeature([], tf.string),
        "record": tf.io.FixedLenFeature([], tf.string),
        "n": tf.io.FixedLenFeature([], tf.int64),
        "shape": tf.io.VarLenFeature(tf.int64),
        "dtype": tf.io.FixedLenFeature([], tf.string),
        "x": tf.io.FixedLenFeature([], tf.string),
        "label_dim": tf.io.FixedLenFeature([], tf.int64),
        "y": tf.io.FixedLenFeature([], tf.string),
        "index": tf.io.FixedLenFeature([], tf.string),
        "aux_dim": tf.io.FixedLenFeature([], tf.int64),
        "aux": tf.io.FixedLenFeature([], tf.string),
        "frame_length": tf.io.FixedLenFeature([], tf.int64),
        "eval_grid": tf.io.FixedLenFeature([], tf.string),
        "chunk_start": tf.io.FixedLenFeature([], tf.int64),
    }


def _bytes(v: bytes) -> Any:
    import tensorflow as tf

    return tf.train.Feature(bytes_list=tf.train.BytesList(value=[v]))


def _ints(v: Any) -> Any:
    import tensorflow as tf

    return tf.train.Feature(int64_list=tf.train.Int64List(value=[int(i) for i in np.ravel(v)]))


def encode(batch: Batch) -> bytes:
    """Serializes one batch to an Example (validates shapes and dtypes first)."""
    import tensorflow as tf

    if batch.kind not in KINDS:
        raise SchemaError(f"unknown kind {batch.kind!r}; known: {list(KINDS)}")
    x = np.ascontiguousarray(batch.x)
    dtype = x.dtype.name
    if dtype not in DTYPES:
        raise SchemaError(f"x dtype {dtype} not in {sorted(DTYPES)}")
    y = np.ascontiguousarray(batch.y, dtype=np.int8)
    n = len(y)
    if not 0 < n <= MAX_BATCH:
        raise SchemaError(f"batch of {n} examples; must be 1..{MAX_BATCH}")
    label_dim = 1 if y.ndim == 1 else int(y.shape[1])
    index = np.ascontiguousarray(batch.index, dtype=np.int32)
    aux = np.ascontiguousarray(batch.aux, dtype=np.float32)
    if aux.size % n:
        raise SchemaError(f"aux has {aux.size} values, not a multiple of {n} examples")
    aux = aux.reshape(n, -1)
    if index.shape != (n,):
        raise SchemaError(f"index has shape {index.shape} for {n} examples")
    if batch.kind == "denoise":
        shape = x.shape
        grid = np.ascontiguousarray(batch.eval_grid, dtype=np.uint8)
        if len(grid) != n:
            raise SchemaError("eval_grid must have one entry per window")
        if batch.frame_length <= 0 or x.ndim != 2:
            raise SchemaError("denoise chunks need frame_length > 0 and x of (samples, leads)")
        if int(index.min()) < 0 or int(index.max()) + batch.frame_length > x.shape[0]:
            raise SchemaError("a window start lies outside its chunk")
        if batch.chunk_start < 0:
            raise SchemaError(f"chunk_start must be >= 0. Received: {batch.chunk_start}")
    else:
        if x.shape[0] != n:
            raise SchemaError(f"x has {x.shape[0]} examples, labels {n}")
        shape = x.shape[1:]
        grid = np.zeros(0, np.uint8)
    feats = {
        "schema_version": _ints(SCHEMA_VERSION),
        "kind": _bytes(batch.kind.encode()),
        "record": _bytes(batch.record.encode()),
        "n": _ints(n),
        "shape": _ints(shape),
        "dtype": _bytes(dtype.encode()),
        "x": _bytes(x.tobytes()),
        "label_dim": _ints(label_dim),
        "y": _bytes(y.tobytes()),
        "index": _bytes(index.tobytes()),
        "aux_dim": _ints(aux.shape[1]),
        "aux": _bytes(aux.tobytes()),
        "frame_length": _ints(batch.frame_length),
        "eval_grid": _bytes(grid.tobytes()),
        "chunk_start": _ints(batch.chunk_start),
    }
    # deterministic: map keys sorted, so the same batch gives the same bytes in every process
    # (protobuf otherwise orders map entries by a per-process hash seed).
    ex = tf.train.Example(features=tf.train.Features(feature=feats))
    return ex.SerializeToString(deterministic=True)


def decode(serialized: bytes, where: str = "example") -> Batch:
    """Decodes one Example to NumPy, checking every length against the metadata."""
    import tensorflow as tf

    try:
        ex = tf.train.Example.FromString(serialized)
    except Exception as exc:  # google.protobuf.message.DecodeError
        raise SchemaError(f"{where}: not a valid Example ({exc})") from exc
    f = ex.features.feature

    def one_int(k: str) -> int:
        v = f[k].int64_list.value if k in f else []
        if len(v) != 1:
            raise SchemaError(f"{where}: key {k!r} missing or malformed")
        return int(v[0])

    def one_bytes(k: str) -> bytes:
        v = f[k].bytes_list.value if k in f else []
        if len(v) != 1:
            raise SchemaError(f"{where}: key {k!r} missing or malformed")
        return bytes(v[0])

    version = one_int("schema_version")
    if version != SCHEMA_VERSION:
        raise SchemaError(f"{where}: schema version {version}, expected {SCHEMA_VERSION}")
    kind = one_bytes("kind").decode(errors="replace")
    if kind not in KINDS:
        raise SchemaError(f"{where}: unknown kind {kind!r}")
    n = one_int("n")
    shape = tuple(int(s) for s in f["shape"].int64_list.value) if "shape" in f else ()
    dtype = one_bytes("dtype").decode(errors="replace")
    if dtype not in DTYPES or not 0 < n <= MAX_BATCH or any(s <= 0 for s in shape) or not shape:
        raise SchemaError(f"{where}: bad metadata (n={n}, shape={shape}, dtype={dtype!r})")
    label_dim = one_int("label_dim")
    aux_dim = one_int("aux_dim")
    frame_length = one_int("frame_length")
    chunk_start = one_int("chunk_start")
    if label_dim < 1 or aux_dim < 0:
        raise SchemaError(f"{where}: bad metadata (label_dim={label_dim}, aux_dim={aux_dim})")
    if kind == "denoise" and (len(shape) != 2 or not 0 < frame_length <= shape[0]
                              or chunk_start < 0):
        raise SchemaError(f"{where}: bad denoise metadata (chunk shape={shape}, "
                          f"frame_length={frame_length}, chunk_start={chunk_start})")
    x_bytes = one_bytes("x")
    item = np.dtype(DTYPES[dtype]).itemsize
    full = shape if kind == "denoise" else (n, *shape)
    if len(x_bytes) != int(np.prod(full, dtype=object)) * item:  # Python ints: no overflow
        raise SchemaError(f"{where}: payload has {len(x_bytes)} bytes, metadata says {full} {dtype}")

    def arr(k: str, dt: Any, count: int) -> np.ndarray:
        b = one_bytes(k)
        if len(b) != count * np.dtype(dt).itemsize:
            raise SchemaError(f"{where}: key {k!r} has {len(b)} bytes, expected {count} x {dt}")
        return np.frombuffer(b, dt)

    x = np.frombuffer(x_bytes, DTYPES[dtype]).reshape(full)
    y = arr("y", np.int8, n * label_dim)
    y = y if label_dim == 1 else y.reshape(n, label_dim)
    index = arr("index", np.int32, n)
    aux = arr("aux", np.float32, n * aux_dim).reshape(n, aux_dim)
    grid = arr("eval_grid", np.uint8, n) if kind == "denoise" else None
    if kind == "denoise" and (int(index.min()) < 0 or int(index.max()) + frame_length > shape[0]):
        raise SchemaError(f"{where}: a window start lies outside its chunk of {shape[0]} samples")
    return Batch(kind, one_bytes("record").decode(errors="replace"), x, y, index, aux,
                 frame_length, grid, chunk_start)


def example_shape(kind: str, cfg: Any) -> tuple[int, ...]:
    """Per-example shape of ``x`` implied by the config (denoise: one window)."""
    w = cfg.windows
    if kind == "segments":
        return (w.segment_len_samples,)
    if kind == "beats":
        n_scales = len(cfg.scalograms.scales) or cfg.scalograms.n_scales
        return (n_scales, w.beat_len_samples)
    if kind == "denoise":
        return (w.denoise_window_samples, 2)
    if kind == "ptbxl":
        return (int(round(10 * w.ptbxl_fs_hz)), 12)
    raise SchemaError(f"unknown kind {kind!r}; known: {list(KINDS)}")


RR_FEATURES = ("pre_rr_over_local", "post_rr_over_local", "local_rr_s")
RR_AUX = ("rr_pre_s", "rr_post_s", "rr_local_s")
"""The first three ``aux`` columns of segments and beats (what :data:`RR_FEATURES` come from)."""


def stored_rhythm_names(cfg: Any) -> tuple[str, ...]:
    """The rhythm features the config's windows stage stores (after the RR values in ``aux``),
    with the beat table's columns when ``windows.beat_table`` is on."""
    return beat_table.stored_names(cfg.windows.rhythm_causal, cfg.windows.beat_table)


def rhythm_names(cfg: Any) -> tuple[str, ...]:
    """The rhythm features of the model's ``rr`` side input: the stored ones that
    ``train.rhythm_features`` keeps (``all``; only the ``relative`` ones; those and the beat
    table's morphology and template columns, ``relative+template``; or every beat-table
    column, ``relative+template+context``)."""
    stored = stored_rhythm_names(cfg)
    if cfg.train.rhythm_features == "all":
        return tuple(n for n in stored if n in rhythm.FEATURE_NAMES)
    relative = tuple(n for n in stored if n in rhythm.RELATIVE_FEATURE_NAMES)
    if cfg.train.rhythm_features == "relative":
        return relative
    if not cfg.windows.beat_table:
        raise SchemaError(f"train.rhythm_features={cfg.train.rhythm_features} needs "
                          "windows.beat_table: true (then rerun the windows and tfrecords "
                          "stages)")
    context = cfg.train.rhythm_features == "relative+template+context"
    return relative + beat_table.extra_names(cfg.windows.rhythm_causal, context=context)


def rhythm_columns(cfg: Any) -> list[int]:
    """Positions of :func:`rhythm_names` among :func:`stored_rhythm_names`."""
    stored = stored_rhythm_names(cfg)
    return [stored.index(n) for n in rhythm_names(cfg)]


def select_rhythm(cfg: Any, stored: np.ndarray) -> np.ndarray:
    """The model's rhythm input ``(n, len(rhythm_names))`` from stored features ``(n, F)``."""
    return np.asarray(stored, np.float32)[:, rhythm_columns(cfg)]


def aux_names(kind: str, cfg: Any) -> tuple[str, ...]:
    """Column names of ``aux`` for ``kind`` under ``cfg`` (see the module doc)."""
    if kind in ("segments", "beats"):
        return (*RR_AUX, *stored_rhythm_names(cfg))
    if kind == "ptbxl":
        return ("patient_id",)
    if kind == "denoise":
        return ()
    raise SchemaError(f"unknown kind {kind!r}; known: {list(KINDS)}")


def rr_features(aux: np.ndarray) -> np.ndarray:
    """RR channels of segments from the stored aux (pre-RR, post-RR, local mean RR; s).

    ``aux``: ``(n, aux_dim)`` with the :data:`RR_AUX` columns first (or ``(n * 3,)``)."""
    aux = np.asarray(aux, np.float32)
    aux = aux.reshape(-1, 3) if aux.ndim == 1 else aux[:, :3]
    local = np.maximum(aux[:, 2:3], 1e-3)
    return np.concatenate([aux[:, 0:1] / local, aux[:, 1:2] / local, aux[:, 2:3]], axis=1)


def rr_features_tf(aux: Any, aux_dim: int = 3) -> Any:
    """TensorFlow twin of :func:`rr_features` (same values) on the raw ``aux`` values of
    ``aux_dim`` columns per example."""
    import tensorflow as tf

    aux = tf.reshape(tf.cast(aux, tf.float32), [-1, aux_dim])[:, :3]
    local = tf.maximum(aux[:, 2:3], 1e-3)
    return tf.concat([aux[:, 0:1] / local, aux[:, 1:2] / local, aux[:, 2:3]], axis=1)


def with_rr_channels(x: np.ndarray, aux: np.ndarray) -> np.ndarray:
    """(n, T) segments + aux -> (n, T, 4): the signal and three constant RR channels."""
    f = rr_features(aux)
    return np.concatenate([x[..., None], np.repeat(f[:, None, :], x.shape[1], axis=1)], axis=-1)
