"""TFRecord stage: batched, self-describing TFRecords, one file per record.

``python -m pipeline.tfrecords [--kinds segments beats denoise ptbxl] [--force]``

Writes ``<data_dir>/tfrecords/<kind>/<record>-00000-of-00001.tfrecord``; each serialized
Example carries up to 256 examples of one record (see :mod:`pipeline.schema`), so a split is a
list of files and no file mixes patients. PTB-XL files hold whole patients of one
``strat_fold`` (up to 256 records per file; a patient never spans two files).

Segments and beats carry, per example, the three RR values and the windows stage's rhythm
features in ``aux`` (layout in :mod:`pipeline.data.schema`; names in the manifest's
``aux_names``). A ``manifest.json`` per kind lists files, example counts, class counts,
shapes, bytes and SHA-256 content hashes. Files are written to a temporary name and renamed; a
rerun skips files already written for the same inputs and config, so an interrupted run
resumes.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.core.config import PipelineConfig, config_hash, from_dict, to_dict
from pipeline.core.io_utils import (
    PipelineError,
    atomic_path,
    atomic_write_json,
    load_npz,
    read_json,
    sha256_file,
)
from pipeline.data import labels, schema
from pipeline.data.paths import raw_dir, scalogram_dir, shard_name, tfrecord_dir, windows_dir
from pipeline.data.signal import rr_for_beats

__all__ = ["PRODUCERS", "available_kinds", "rhythm_of", "run_kind", "shard_name", "tfrecord_dir",
           "write_file"]

log = logging.getLogger("ecg.tfrecords")


def _chunks(n: int, size: int) -> Iterator[slice]:
    for s in range(0, n, size):
        yield slice(s, min(n, s + size))


# ------------------------------------------------------------------------ batch producers


def rhythm_of(cfg: PipelineConfig, rec: str, w: dict[str, np.ndarray], key: str) -> np.ndarray:
    """A windows file's rhythm features ``key`` (``rhythm``: segments, ``beat_rhythm``: beats),
    checked against the config's feature names.

    Raises:
        PipelineError: the file predates the rhythm features or holds another variant.
    """
    want = schema.stored_rhythm_names(cfg)
    if key not in w or "rhythm_names" not in w:
        raise PipelineError(f"record {rec}: windows file has no rhythm features ({key}); rerun "
                            "`python -m pipeline.windows --force`")
    names = tuple(str(n) for n in w["rhythm_names"])
    values = np.asarray(w[key], np.float32)
    if names != want or values.ndim != 2 or values.shape[1] != len(want):
        raise PipelineError(f"record {rec}: windows file holds rhythm features {list(names)} of "
                            f"shape {values.shape}, the config wants {list(want)}; rerun "
                            "`python -m pipeline.windows --force`")
    return values


def _segment_batches(cfg: PipelineConfig, rec: str) -> Iterator[schema.Batch]:
    from pipeline.data.windowing import load_record

    w = load_record(cfg, rec)
    rr = np.concatenate([rr_for_beats(w, w["segment_beat_index"]),
                         rhythm_of(cfg, rec, w, "rhythm")], axis=1)
    for sl in _chunks(len(w["segment_label"]), cfg.tfrecords.examples_per_batch):
        yield schema.Batch("segments", rec, w["segments"][sl].astype(np.float32),
                           w["segment_label"][sl], w["segment_beat_index"][sl], rr[sl])


def _beat_batches(cfg: PipelineConfig, rec: str) -> Iterator[schema.Batch]:
    from pipeline.data.windowing import load_record

    w = load_record(cfg, rec)
    s = load_npz(scalogram_dir(cfg) / f"{rec}.npz")
    sc = s["scalograms"]
    if len(sc) != len(w["beat_label"]):
        raise PipelineError(
            f"record {rec}: {len(sc)} scalograms but {len(w['beat_label'])} beats; "
            "rerun `python -m pipeline.scalograms --force`"
        )
    want = schema.example_shape("beats", cfg)
    if tuple(sc.shape[1:]) != want:
        raise PipelineError(f"record {rec}: scalograms of shape {sc.shape[1:]}, config says {want}")
    rr = np.concatenate([np.stack([w[k] for k in schema.RR_AUX], axis=1),
                         rhythm_of(cfg, rec, w, "beat_rhythm")], axis=1).astype(np.float32)
    dtype = schema.DTYPES[cfg.scalograms.dtype]
    for sl in _chunks(len(sc), cfg.tfrecords.examples_per_batch):
        yield schema.Batch("beats", rec, sc[sl].astype(dtype), w["beat_label"][sl],
                           w["beat_index"][sl], rr[sl])


def _denoise_batches(cfg: PipelineConfig, rec: str) -> Iterator[schema.Batch]:
    from pipeline.data.windowing import load_record

    w = load_record(cfg, rec)
    sig = w["denoise_signal"].astype(np.float32)
    starts = w["denoise_train_starts"]
    eval_set = set(int(s) for s in w["denoise_eval_starts"])
    eval_only = np.asarray(sorted(eval_set - set(int(s) for s in starts)), np.int64)
    all_starts = np.union1d(starts, eval_only)
    W = cfg.windows.denoise_window_samples
    per = min(cfg.tfrecords.denoise_chunk_windows, schema.MAX_BATCH)
    for sl in _chunks(len(all_starts), per):
        st = all_starts[sl]
        lo, hi = int(st[0]), int(st[-1]) + W
        grid = np.asarray([int(s) in eval_set for s in st], np.uint8)
        yield schema.Batch("denoise", rec, sig[lo:hi], np.zeros(len(st), np.int8),
                           (st - lo).astype(np.int32), np.zeros((len(st), 0), np.float32),
                           frame_length=W, eval_grid=grid, chunk_start=lo)


def _ptbxl_groups(cfg: PipelineConfig) -> dict[str, tuple[Path, np.ndarray]]:
    """PTB-XL file groups: ``foldNN_gMMM`` -> (npz path, row indices); whole patients only."""
    groups: dict[str, tuple[Path, np.ndarray]] = {}
    per = cfg.tfrecords.examples_per_batch
    for p in sorted(windows_dir(cfg, "ptbxl").glob("fold*.npz")):
        d = load_npz(p)
        pid = d["patient_id"]
        order = np.lexsort((d["ecg_id"], pid))
        g, cur, last_p = 0, [], None
        for i in order:
            if len(cur) >= per and pid[i] != last_p:
                groups[f"{p.stem}_g{g:03d}"] = (p, np.asarray(cur))
                g, cur = g + 1, []
            cur.append(i)
            last_p = pid[i]
        if cur:
            groups[f"{p.stem}_g{g:03d}"] = (p, np.asarray(cur))
    return groups


def _ptbxl_batches(cfg: PipelineConfig, rec: str) -> Iterator[schema.Batch]:
    path, rows = _ptbxl_groups(cfg)[rec]
    d = load_npz(path)
    for sl in _chunks(len(rows), cfg.tfrecords.examples_per_batch):
        r = rows[sl]
        yield schema.Batch("ptbxl", rec, d["x"][r].astype(np.float32), d["y"][r],
                           d["ecg_id"][r].astype(np.int32), d["patient_id"][r][:, None].astype(np.float32))


PRODUCERS = {
    "segments": _segment_batches,
    "beats": _beat_batches,
    "denoise": _denoise_batches,
    "ptbxl": _ptbxl_batches,
}


# --------------------------------------------------------------------------------- writer


def write_file(cfg: PipelineConfig, kind: str, rec: str, out: Path) -> dict[str, Any]:
    """Writes one record's TFRecord file atomically; returns its manifest entry."""
    import tensorflow as tf

    n, n_batches, counts = 0, 0, {}
    extra: dict[str, int] = {}
    with atomic_path(out) as tmp:
        with tf.io.TFRecordWriter(str(tmp)) as wr:
            for b in PRODUCERS[kind](cfg, rec):
                wr.write(schema.encode(b))
                n += b.n
                n_batches += 1
                if b.y.ndim == 1 and kind != "denoise":
                    for k, c in zip(*np.unique(b.y, return_counts=True), strict=True):
                        counts[int(k)] = counts.get(int(k), 0) + int(c)
                elif kind == "ptbxl":
                    for k, c in enumerate(b.y.sum(axis=0)):
                        counts[k] = counts.get(k, 0) + int(c)
                if kind == "denoise":
                    extra["eval_windows"] = extra.get("eval_windows", 0) + int(b.eval_grid.sum())
    return {
        "file": out.name,
        "record": rec,
        "examples": n,
        "batches": n_batches,
        "class_counts": {str(k): v for k, v in sorted(counts.items())},
        "bytes": out.stat().st_size,
        "sha256": sha256_file(out),
        **extra,
    }


def _worker(args: tuple[dict, str, str, str]) -> dict:
    cfg_dict, kind, rec, out = args
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    return write_file(from_dict(cfg_dict), kind, rec, Path(out))


def _inputs(cfg: PipelineConfig, kind: str) -> dict[str, list[Path]]:
    from pipeline.data.windowing import list_records

    if kind == "ptbxl":
        return {g: [p] for g, (p, _) in _ptbxl_groups(cfg).items()}
    folder = raw_dir(cfg, "mitdb")
    recs = list_records(folder, cfg.data.mitdb_records) if folder.is_dir() else sorted(
        p.stem for p in windows_dir(cfg, "mitdb").glob("*.npz"))
    out = {}
    for r in recs:
        paths = [windows_dir(cfg, "mitdb") / f"{r}.npz"]
        if kind == "beats":
            paths.append(scalogram_dir(cfg) / f"{r}.npz")
        for p in paths:
            if not p.is_file():
                stage = "scalograms" if "scalograms" in p.parts else "windows"
                raise PipelineError(f"{p}: missing; run `python -m pipeline.{stage}` first")
        out[r] = paths
    return out


def _config_key(cfg: PipelineConfig, kind: str) -> str:
    from pipeline.data import windowing

    parts = {"windows": windowing.settings(cfg.windows), "tfrecords": to_dict(cfg.tfrecords),
             "schema": schema.SCHEMA_VERSION, "kind": kind}
    if kind == "beats":
        parts["scalograms"] = to_dict(cfg.scalograms)
    return config_hash(parts)


def _plan(
    cfg: PipelineConfig, kind: str, inputs: dict[str, list[Path]], ckey: str, force: bool
) -> tuple[dict[str, dict], list[str], dict[str, Any], dict[str, list]]:
    """Splits the records into done (same config, inputs and file size) and to do.

    Returns:
        (done entries, records to write, the progress record, per-record input keys).
    """
    out_dir = tfrecord_dir(cfg, kind)
    in_keys = {r: [[p.name, p.stat().st_size, p.stat().st_mtime_ns] for p in ps]
               for r, ps in inputs.items()}  # fmt: skip
    progress: dict[str, Any] = {}
    if (out_dir / "_progress.json").is_file() and not force:
        try:
            progress = read_json(out_dir / "_progress.json", "progress file")
        except PipelineError:
            progress = {}
    done, todo = {}, []
    for r in inputs:
        out = out_dir / shard_name(r)
        p = progress.get(r)
        if (not force and p and p.get("config") == ckey and p.get("inputs") == in_keys[r]
                and out.is_file() and out.stat().st_size == p["entry"]["bytes"]):  # fmt: skip
            done[r] = p["entry"]
        else:
            todo.append(r)
    return done, todo, progress, in_keys


def _up_to_date_manifest(manifest_path: Path, ckey: str, done: dict[str, dict]) -> dict | None:
    """The manifest when it lists exactly these files for this config, else ``None``.

    (A record dropped from the selection must leave the manifest and the folder.)
    """
    if not manifest_path.is_file():
        return None
    try:
        old = read_json(manifest_path, "TFRecord manifest")
    except PipelineError:
        return None
    ok = old.get("config_key") == ckey and old.get("files") == [done[r] for r in sorted(done)]
    return old if ok else None


def _write_files(jobs: list[tuple], workers: int, desc: str, record_done: Any) -> None:
    """Runs the writer jobs (in a spawn pool when ``workers`` > 1), reporting each entry."""
    from tqdm import tqdm

    if workers == 1:
        for j in tqdm(jobs, desc=desc, unit="file", disable=None):
            record_done(_worker(j))
        return
    import multiprocessing as mp

    with ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn")) as ex:
        for e in tqdm(ex.map(_worker, jobs), total=len(jobs), desc=desc, unit="file",
                      disable=None):  # fmt: skip
            record_done(e)


def _manifest(cfg: PipelineConfig, kind: str, ckey: str, files: list[dict], wall: float) -> dict:
    classes = list(labels.PTBXL_SUPERCLASSES) if kind == "ptbxl" else list(
        labels.class_names(cfg.windows.label_scheme))
    totals: dict[str, int] = {}
    for e in files:
        for k, v in e["class_counts"].items():
            totals[classes[int(k)]] = totals.get(classes[int(k)], 0) + v
    n_examples = sum(e["examples"] for e in files)
    n_bytes = sum(e["bytes"] for e in files)
    manifest = {
        "kind": kind,
        "schema_version": schema.SCHEMA_VERSION,
        "config_key": ckey,
        "example_shape": list(schema.example_shape(kind, cfg)),
        "dtype": cfg.scalograms.dtype if kind == "beats" else "float32",
        "classes": classes if kind != "denoise" else [],
        "aux_names": list(schema.aux_names(kind, cfg)),
        "label_scheme": "multilabel" if kind == "ptbxl" else cfg.windows.label_scheme,
        "files": files,
        "examples": n_examples,
        "bytes": n_bytes,
        "bytes_per_example": round(n_bytes / max(1, n_examples), 1),
        "class_totals": totals,
        "wall_time_s": round(wall, 2),
    }
    if kind == "denoise":
        manifest["eval_windows"] = sum(e.get("eval_windows", 0) for e in files)
    return manifest


def run_kind(cfg: PipelineConfig, kind: str, force: bool = False) -> dict[str, Any]:
    """Writes (or resumes) all files of one kind; returns the manifest."""
    out_dir = tfrecord_dir(cfg, kind)
    inputs = _inputs(cfg, kind)
    if not inputs:
        raise PipelineError(f"tfrecords {kind}: no inputs found under {cfg.data_dir}")
    ckey = _config_key(cfg, kind)
    done, todo, progress, in_keys = _plan(cfg, kind, inputs, ckey, force)
    manifest_path = out_dir / "manifest.json"
    old = None if todo else _up_to_date_manifest(manifest_path, ckey, done)
    if old is not None:
        log.info("tfrecords %s: up to date (%d files); nothing to do (--force redoes it)",
                 kind, len(done))  # fmt: skip
        return old
    t0 = time.perf_counter()

    def record_done(entry: dict) -> None:
        r = entry["record"]
        done[r] = entry
        progress[r] = {"config": ckey, "inputs": in_keys[r], "entry": entry}
        atomic_write_json(out_dir / "_progress.json", progress)

    jobs = [(to_dict(cfg), kind, r, str(out_dir / shard_name(r))) for r in todo]
    workers = max(1, min(cfg.windows.workers, len(jobs), os.cpu_count() or 1))
    _write_files(jobs, workers, f"tfrecords {kind}", record_done)
    # Remove files of records no longer selected so the folder matches the manifest.
    keep = {shard_name(r) for r in inputs}
    for p in out_dir.glob("*.tfrecord"):
        if p.name not in keep:
            p.unlink()
    files = [done[r] for r in sorted(done)]
    manifest = _manifest(cfg, kind, ckey, files, time.perf_counter() - t0)
    atomic_write_json(manifest_path, manifest)
    log.info("tfrecords %s: wrote %d files (%d resumed), %d examples, %.1f MB", kind, len(todo),
             len(done) - len(todo), manifest["examples"], manifest["bytes"] / 1e6)
    return manifest


def available_kinds(cfg: PipelineConfig) -> list[str]:
    """TFRecord kinds whose inputs exist (segments, beats, denoise, ptbxl)."""
    kinds = []
    if windows_dir(cfg, "mitdb").is_dir() and any(windows_dir(cfg, "mitdb").glob("*.npz")):
        kinds += ["segments", "denoise"]
        sdir = scalogram_dir(cfg)
        if sdir.is_dir() and any(sdir.glob("*.npz")):
            kinds.insert(1, "beats")
    if windows_dir(cfg, "ptbxl").is_dir() and any(windows_dir(cfg, "ptbxl").glob("fold*.npz")):
        kinds.append("ptbxl")
    return kinds
