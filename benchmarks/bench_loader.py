"""Benchmark: loader throughput of our batched TFRecords against the usual alternatives.

``python -m benchmarks.bench_loader --data-dir DIR [--records 100 101 ...] [--seconds S]
[--rounds R] [--batch-size B] [--out results.json]``

``DIR/tfrecords/{segments,beats}`` must hold the TFRecord stage's output for the chosen
records (``python -m pipeline.tfrecords --data-dir DIR --kinds segments beats``, after
``pipeline.scalograms``); they are only read. With no ``--records`` the first 10 records that
have both kinds are used.

For raw segments (720 samples, one lead) and scalogram sequences (``loader.seq_len_beats``
consecutive beats of ``n_scales`` x 187) one run measures examples/s of four training input
pipelines, each ending in the same batches (``x`` float32 normalized with a channel axis,
one-hot ``y``):

1. **batched**: :func:`pipeline.loader.create_dataset` in training mode on our files (file
   shuffle, interleave, decode a stored batch of up to 256 examples at a time, shuffle buffer,
   batch, per-batch cast/normalize/one-hot).
2. **per_example**: the same data rewritten to a temporary folder as one plain
   ``tf.train.Example`` per example (``x`` payload bytes in the stored dtype, ``y``, record,
   index; sequences stored pre-formed, one file per record), read with ``TFRecordDataset`` +
   ``interleave`` + ``parse_single_example`` + ``decode_raw`` (parallel ``map``) + the same
   shuffle buffer + ``batch`` + the same per-batch normalization ``map`` + ``prefetch``.
3. **in_memory**: every example held in NumPy (sequences pre-formed, stored dtype) through
   ``tf.data.Dataset.from_tensor_slices`` + the same shuffle buffer + ``batch`` + the same
   per-batch cast/normalize/one-hot ``map`` as the loader + ``prefetch``: the same arithmetic
   with no file reading or decoding.
4. **in_memory_f32**: the ceiling: NumPy arrays normalized to float32 once up front (twice the
   memory of float16 scalograms), then only ``from_tensor_slices`` + shuffle + batch.

Each pipeline repeats over epochs; after a warm-up (the shuffle buffer filled, a few batches)
it is timed for ``--seconds`` of wall time, the cases in turn for ``--rounds`` rounds, and
the median round is kept. Besides examples/s it records examples per second of this process's
CPU time, which depends less on what else the machine runs. It prints a table and the ratios
batched/per_example and batched/in_memory (wall and per CPU-s), and writes everything as JSON
to ``--out`` when given. Compare figures taken on the same machine at the same time.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from pipeline.core.config import load_config  # noqa: E402
from pipeline.core.io_utils import atomic_write_json  # noqa: E402
from pipeline.data import (
    loader,  # noqa: E402
    schema,  # noqa: E402
)
from pipeline.data.normalization import RunningStats  # noqa: E402
from pipeline.data.paths import shard_name, tfrecord_dir  # noqa: E402

KINDS = {"segments": "mitdb_aami5_segments", "beats": "mitdb_aami5_sequences"}
N_CLASSES = 5


@dataclasses.dataclass
class Data:
    """One kind's examples in memory, per record, as the loader would yield them."""

    kind: str
    records: list[str]
    x: list[np.ndarray]  # per record: (n, 720) float32 or (n, seq, scales, 187) stored dtype
    y: list[np.ndarray]  # per record: (n,) int8 class index
    index: list[np.ndarray]
    mean: np.ndarray
    scale: np.ndarray

    @property
    def n(self) -> int:
        return int(sum(len(y) for y in self.y))


def load_data(files: list[str], kind: str, seq_len: int) -> Data:
    """Decodes every file with NumPy; forms sequences of consecutive beats like the loader."""
    import tensorflow as tf

    h = seq_len // 2
    xs, ys, idxs, recs = [], [], [], []
    stats: RunningStats | None = None
    for f in files:
        batches = [schema.decode(s.numpy(), f) for s in tf.data.TFRecordDataset(f)]
        x = np.concatenate([b.x for b in batches])
        y = np.concatenate([b.y for b in batches])
        idx = np.concatenate([b.index for b in batches])
        axis = 1 if kind == "beats" else -1
        if stats is None:
            stats = RunningStats(x.shape[1] if kind == "beats" else 1)
        for s in range(0, len(x), 1024):
            stats.update(x[s:s + 1024] if kind == "beats" else x[s:s + 1024, :, None], axis)
        if kind == "beats":
            c = np.arange(h, len(idx) - h)
            c = c[idx[c + h] - idx[c - h] == 2 * h]
            x = x[c[:, None] + np.arange(-h, h + 1)[None, :]]  # (m, seq, scales, T)
            y, idx = y[c], idx[c]
        xs.append(x)
        ys.append(y)
        idxs.append(idx)
        recs.append(batches[0].record)
    assert stats is not None
    return Data(kind, recs, xs, ys, idxs, stats.mean.astype(np.float32),
                np.maximum(stats.std, 1e-6).astype(np.float32))


def _channel_axis(kind: str) -> int:
    return -2 if kind == "beats" else -1


def _finish(x: Any, y: Any, data: Data) -> tuple[Any, Any]:
    """Cast, normalize, channel axis, one-hot: what create_dataset yields."""
    import tensorflow as tf

    x = loader.Normalizer(data.mean, data.scale).apply(x, _channel_axis(data.kind))
    return x[..., None], tf.one_hot(tf.cast(y, tf.int32), N_CLASSES)


def write_per_example(data: Data, out_dir: Path) -> list[str]:
    """One ``tf.train.Example`` per example (payload bytes), one file per record."""
    import tensorflow as tf

    out_dir.mkdir(parents=True, exist_ok=True)
    files = []
    for rec, x, y, idx in zip(data.records, data.x, data.y, data.index, strict=True):
        path = out_dir / shard_name(rec)
        with tf.io.TFRecordWriter(str(path)) as wr:
            for i in range(len(y)):
                feats = {
                    "x": tf.train.Feature(bytes_list=tf.train.BytesList(
                        value=[np.ascontiguousarray(x[i]).tobytes()])),
                    "y": tf.train.Feature(int64_list=tf.train.Int64List(value=[int(y[i])])),
                    "record": tf.train.Feature(bytes_list=tf.train.BytesList(
                        value=[rec.encode()])),
                    "index": tf.train.Feature(int64_list=tf.train.Int64List(
                        value=[int(idx[i])])),
                }
                wr.write(tf.train.Example(features=tf.train.Features(feature=feats))
                         .SerializeToString())
        files.append(str(path))
    return files


def per_example_dataset(files: list[str], data: Data, batch: int, shuffle: int,
                        cycle_length: int, seed: int) -> Any:
    import tensorflow as tf

    spec = {"x": tf.io.FixedLenFeature([], tf.string), "y": tf.io.FixedLenFeature([], tf.int64),
            "record": tf.io.FixedLenFeature([], tf.string),
            "index": tf.io.FixedLenFeature([], tf.int64)}
    shape = data.x[0].shape[1:]
    dtype = tf.as_dtype(data.x[0].dtype)

    def parse(s: Any) -> tuple[Any, Any]:
        p = tf.io.parse_single_example(s, spec)
        return tf.reshape(tf.io.decode_raw(p["x"], dtype), shape), p["y"]

    ds = tf.data.Dataset.from_tensor_slices(files).shuffle(len(files), seed=seed)
    ds = ds.interleave(tf.data.TFRecordDataset, cycle_length=cycle_length, block_length=1,
                       num_parallel_calls=tf.data.AUTOTUNE, deterministic=False)
    ds = ds.map(parse, num_parallel_calls=tf.data.AUTOTUNE, deterministic=False)
    ds = ds.shuffle(shuffle, seed=seed + 1).batch(batch)
    # Normalization per batch, as the loader does (cheaper than per example).
    ds = ds.map(lambda x, y: _finish(x, y, data), num_parallel_calls=tf.data.AUTOTUNE)
    return ds.prefetch(tf.data.AUTOTUNE)


def in_memory_dataset(data: Data, batch: int, shuffle: int, seed: int) -> Any:
    import tensorflow as tf

    x, y = np.concatenate(data.x), np.concatenate(data.y)
    ds = tf.data.Dataset.from_tensor_slices((x, y)).shuffle(shuffle, seed=seed + 1)
    ds = ds.batch(batch).map(lambda a, b: _finish(a, b, data), num_parallel_calls=tf.data.AUTOTUNE)
    return ds.prefetch(tf.data.AUTOTUNE)


def in_memory_prenormalized_dataset(data: Data, batch: int, shuffle: int, seed: int) -> Any:
    """Normalized float32 arrays (with the channel axis) prepared once: shuffle + batch only."""
    import tensorflow as tf

    shape = [1] * data.x[0].ndim
    shape[_channel_axis(data.kind)] = -1
    m, s = data.mean.reshape(shape), data.scale.reshape(shape)
    x = np.concatenate([((xr.astype(np.float32) - m) / s)[..., None] for xr in data.x])
    y = np.eye(N_CLASSES, dtype=np.float32)[np.concatenate(data.y).astype(int)]
    ds = tf.data.Dataset.from_tensor_slices((x, y)).shuffle(shuffle, seed=seed + 1)
    return ds.batch(batch).prefetch(tf.data.AUTOTUNE)


def measure(ds: Any, seconds: float, warmup_batches: int) -> dict[str, float]:
    """Examples/s over ``seconds`` of wall time after ``warmup_batches`` batches."""
    it = iter(ds.repeat())
    t0 = time.perf_counter()
    for _ in range(warmup_batches):
        next(it)
    warm = time.perf_counter() - t0
    n, batches = 0, 0
    cpu0, t0 = time.process_time(), time.perf_counter()
    while True:
        x, _ = next(it)
        n += int(x.shape[0])
        batches += 1
        wall = time.perf_counter() - t0
        if wall >= seconds:
            break
    cpu = time.process_time() - cpu0
    return {"examples_per_s": n / wall, "examples_per_cpu_s": n / cpu, "examples": n,
            "batches": batches, "wall_s": wall, "cpu_s_per_wall_s": cpu / wall,
            "warmup_s": warm}


def _median_round(runs: list[dict[str, float]]) -> dict[str, Any]:
    """The round with the median wall throughput, plus every round's figures."""
    order = sorted(runs, key=lambda r: r["examples_per_s"])
    return {**order[(len(order) - 1) // 2], "rounds": runs}


def _cases(cfg: Any, task: str, files: list[str], pe_files: list[str], data: Data,
           batch: int) -> dict[str, Callable[[], Any]]:
    """The pipelines to time, each built fresh by calling it."""
    lc = cfg.loader
    return {
        "batched": lambda: loader.create_dataset(files, cfg, batch, True, data.mean, data.scale,
                                                 task=task),
        "per_example": lambda: per_example_dataset(pe_files, data, batch, lc.shuffle_buffer,
                                                   lc.cycle_length, lc.seed),
        "in_memory": lambda: in_memory_dataset(data, batch, lc.shuffle_buffer, lc.seed),
        "in_memory_f32": lambda: in_memory_prenormalized_dataset(data, batch, lc.shuffle_buffer,
                                                                 lc.seed),
    }


def _default_records(cfg: Any) -> list[str]:
    have = [{p.name.split("-")[0] for p in tfrecord_dir(cfg, k).glob("*.tfrecord")}
            for k in KINDS]
    return sorted(set.intersection(*have))[:10]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.bench_loader",
        description="Loader throughput (examples/s): batched TFRecords vs one Example per "
        "example vs in-memory NumPy, for segments and scalogram sequences.",
    )
    p.add_argument("--data-dir", required=True, help="folder holding tfrecords/{segments,beats}")
    p.add_argument("--records", nargs="+", default=None, help="records (default: first 10)")
    p.add_argument("--seconds", type=float, default=4.0,
                   help="timed wall seconds per case and round")
    p.add_argument("--rounds", type=int, default=2,
                   help="rounds over the cases in turn (the median round is reported)")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--n-scales", type=int, default=32, help="scalogram rows in the beats files")
    p.add_argument("--kinds", nargs="+", choices=list(KINDS), default=list(KINDS))
    p.add_argument("--work-dir", default=None,
                   help="where the per-example files go (default: a temporary folder, removed)")
    p.add_argument("--out", default=None, help="write the results as JSON here")
    return p


def main(argv: list[str] | None = None) -> int:
    import tensorflow as tf

    args = build_parser().parse_args(argv)
    over: dict[str, Any] = {"data": {"data_dir": args.data_dir},
                            "scalograms": {"n_scales": args.n_scales}}
    cfg = load_config(None, over, apply_env=False)
    records = args.records or _default_records(cfg)
    if not records:
        print(f"error: no TFRecords under {cfg.data_dir / 'tfrecords'}", file=sys.stderr)
        return 2
    over["data"]["mitdb_records"] = records
    cfg = load_config(None, over, apply_env=False)
    lc = cfg.loader
    warmup = max(5, lc.shuffle_buffer // args.batch_size + 5)
    work = Path(args.work_dir) if args.work_dir else Path(tempfile.mkdtemp(prefix="bench_loader_"))
    results: dict[str, Any] = {
        "records": records, "batch_size": args.batch_size, "seconds": args.seconds,
        "rounds": args.rounds,
        "shuffle_buffer": lc.shuffle_buffer, "cycle_length": lc.cycle_length,
        "seq_len_beats": lc.seq_len_beats, "tensorflow": tf.__version__,
        "machine": platform.platform(), "cpus": os.cpu_count(), "kinds": {},
    }
    print(f"{len(records)} records: {' '.join(records)}; batch {args.batch_size}, "
          f"shuffle buffer {lc.shuffle_buffer}, {args.rounds} x {args.seconds:g} s per case")
    try:
        for kind in args.kinds:
            task = KINDS[kind]
            files = loader.resolve_files(records, cfg, kind)
            t0 = time.perf_counter()
            data = load_data(files, kind, lc.seq_len_beats)
            pe_files = write_per_example(data, work / kind)
            prep = time.perf_counter() - t0
            shape = data.x[0].shape[1:]
            bytes_b = sum(Path(f).stat().st_size for f in files)
            bytes_p = sum(Path(f).stat().st_size for f in pe_files)
            cases = _cases(cfg, task, files, pe_files, data, args.batch_size)
            res: dict[str, Any] = {"examples": data.n, "example_shape": list(shape),
                                   "stored_dtype": str(data.x[0].dtype),
                                   "bytes_batched": bytes_b, "bytes_per_example_files": bytes_p,
                                   "prepare_s": round(prep, 1)}
            # Cases in turn, round after round, so that load from other processes on the
            # machine spreads over all of them; the median round of each is reported.
            runs: dict[str, list[dict[str, float]]] = {name: [] for name in cases}
            for _ in range(args.rounds):
                for name, make in cases.items():
                    runs[name].append(measure(make(), args.seconds, warmup))
            for name in cases:
                res[name] = _median_round(runs[name])
            for other in ("per_example", "in_memory", "in_memory_f32"):
                for unit in ("examples_per_s", "examples_per_cpu_s"):
                    key = f"batched_over_{other}" + ("_cpu" if unit.endswith("cpu_s") else "")
                    res[key] = res["batched"][unit] / res[other][unit]
            results["kinds"][kind] = res
            _print_kind(kind, res)
    finally:
        if not args.work_dir:
            shutil.rmtree(work, ignore_errors=True)
    if args.out:
        atomic_write_json(args.out, results)
        print(f"wrote {args.out}")
    return 0


def _print_kind(kind: str, res: dict[str, Any]) -> None:
    what = "segments" if kind == "segments" else "sequences"
    print(f"\n{what}: {res['examples']:,} examples of {tuple(res['example_shape'])} "
          f"{res['stored_dtype']}; files {res['bytes_batched'] / 1e6:.0f} MB batched, "
          f"{res['bytes_per_example_files'] / 1e6:.0f} MB one-per-example")
    print(f"  {'pipeline':<14} {'examples/s':>11} {'per CPU-s':>11} {'CPU/wall':>9} "
          f"{'warm-up s':>10}")
    for name in ("batched", "per_example", "in_memory", "in_memory_f32"):
        m = res[name]
        print(f"  {name:<14} {m['examples_per_s']:>11,.0f} {m['examples_per_cpu_s']:>11,.0f} "
              f"{m['cpu_s_per_wall_s']:>9.2f} {m['warmup_s']:>10.2f}")
    for other, aim in (("per_example", " (aim >= 5x)"), ("in_memory", " (aim >= 0.5x)"),
                       ("in_memory_f32", "")):
        print(f"  batched / {other:<14} {res[f'batched_over_{other}']:5.2f}x wall, "
              f"{res[f'batched_over_{other}_cpu']:5.2f}x per CPU-s{aim}")


if __name__ == "__main__":
    sys.exit(main())
