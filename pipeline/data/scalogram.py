"""Scalogram stage: continuous wavelet transform of every beat.

``python -m pipeline.scalograms [--config ...] [--force]``

Reads the beats written by :mod:`pipeline.windows` (``<data_dir>/windows/mitdb/<rec>.npz``,
``beats`` (n, 187) at 125 Hz) and writes ``<data_dir>/scalograms/mitdb/<rec>.npz`` with

* **scalograms** (n_beats, n_scales, n_samples) in the config dtype (``float16`` by default):
  the magnitude ``|W(s, t)|`` of the CWT coefficients of each beat, unnormalized (per-beat or
  per-dataset scaling is left to the loader, with statistics fitted on the training split).
  For the real Morlet wavelet (``morl``) the coefficients are real and we keep their absolute
  value, the magnitude scalogram that image-style (Conformer) models are trained on; for a
  complex wavelet (``cmor...``) it is the modulus. Row ``i`` is scale ``scales[i]``.
* **scales** (n_scales,) float64, ascending (so ``frequencies_hz`` is descending: row 0 is the
  highest frequency, as in a scalogram image).
* **frequencies_hz** (n_scales,) float64: pseudo-frequencies
  ``pywt.scale2frequency(wavelet, scale) * beat_fs_hz``.
* **beat_index** (n_beats,) int32, copied from the windows file: the beats are in the same
  order and number as the windows file's ``beats``, so the loader joins labels and RR features
  by position and can check the join with this column.

Scales: ``scalograms.scales`` when given, else ``n_scales`` scales whose pseudo-frequencies are
log-spaced from ``f_max_hz`` down to ``f_min_hz`` at ``windows.beat_fs_hz``.

How the transform is computed. The CWT of a fixed-length signal is linear in that signal, so
for ``T``-sample beats it is one matrix: ``coefs[n, s, t] = sum_k beats[n, k] * W[k, s, t]``.
:func:`cwt_operator` builds ``W`` (T x n_scales*T) once by running ``pywt.cwt`` itself
(``method="conv"``, float64) on the T unit impulses, so the wavelet sampling, padding,
differencing and centring are PyWavelets' by construction; beats are then multiplied by ``W``
in float64 (BLAS) and the magnitude is rounded to float32 (then float16 for storage). Against
``pywt.cwt`` run per beat on float64 input (``conv`` or ``fft``; they agree to 1e-15) the
result differs by float32/float16 rounding only (tested). (``pywt.cwt`` on *float32* input
samples the wavelet on a float32 grid and differs from its own float64 result by up to
~2.5 %; we match the float64 result.)

Byte-stable outputs. A BLAS product's rounding depends on its shape (which kernel and
remainder loops run) and on its thread count (how the work is split), so every product has
exactly :data:`BLOCK_BEATS` rows (the last block zero-padded) and runs with one BLAS thread
(threadpoolctl), in the pool's workers and in a single process alike. The bytes written then
do not depend on ``scalograms.workers``, ``chunk_beats``, ``OPENBLAS_NUM_THREADS`` or the record
length (tested by ``tests/test_faults_data.py``); computing in float64 and rounding once
makes float16 outputs agree across CPUs whose BLAS kernels differ in the last float64 bits.

Records run in a process pool (``scalograms.workers``, spawn context), one BLAS thread each
(``benchmarks/bench_scalograms.py --also-serial`` compares it with one process).

``manifest.json`` holds per-record beats, shape, dtype and bytes, the totals, wall time and
beats/s; ``_stage.json`` makes the stage idempotent (a second run does nothing; ``--force``
redoes it; ``workers`` and ``chunk_beats`` do not invalidate it). Every file is written
atomically and all windows files are checked before anything is written, so a missing
or damaged one stops the stage with a one-line error naming it (exit code 2).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.core.config import (
    ConfigError,
    PipelineConfig,
    ScalogramConfig,
    config_hash,
    section_from_dict,
    to_dict,
)
from pipeline.core.io_utils import (
    PipelineError,
    atomic_path,
    atomic_write_json,
    mark_done,
    read_json,
    safe_name,
    stage_done,
)
from pipeline.data.paths import scalogram_dir, windows_dir

__all__ = ["BLOCK_BEATS", "cwt_batch", "cwt_operator", "frequencies_hz", "process_record",
           "read_beats", "run", "scalogram_dir", "scales_for", "transform_into"]

log = logging.getLogger("ecg.scalograms")

DTYPES = ("float16", "float32")
VALUE = "magnitude |W(s,t)| of pywt.cwt coefficients, unnormalized"


# ---------------------------------------------------------------------------- scales


def _wavelet(name: str) -> Any:
    import pywt

    try:
        return pywt.ContinuousWavelet(name)
    except ValueError:
        known = pywt.wavelist(kind="continuous")
        raise ConfigError(
            f"scalograms.wavelet: unknown continuous wavelet {name!r}; known families: {known}"
        ) from None


def _scales(scfg: ScalogramConfig, fs_hz: float) -> np.ndarray:
    import pywt

    wavelet = _wavelet(scfg.wavelet)
    if scfg.scales:
        scales = np.asarray(scfg.scales, dtype=np.float64)
        if not np.all(np.isfinite(scales)) or np.any(scales <= 0):
            raise ConfigError(
                f"scalograms.scales must be positive numbers. Received: scales={list(scfg.scales)}"
            )
        return scales
    if scfg.n_scales < 1:
        raise ConfigError(f"scalograms.n_scales must be >= 1. Received: n_scales={scfg.n_scales}")
    if not 0 < scfg.f_min_hz < scfg.f_max_hz <= fs_hz / 2:
        raise ConfigError(
            "scalograms: need 0 < f_min_hz < f_max_hz <= beat_fs_hz / 2. Received: "
            f"f_min_hz={scfg.f_min_hz}, f_max_hz={scfg.f_max_hz}, beat_fs_hz={fs_hz}"
        )
    freqs = np.geomspace(scfg.f_max_hz, scfg.f_min_hz, scfg.n_scales)
    # scale2frequency(w, s) = centre_frequency(w) / s (cycles per sample).
    return float(pywt.scale2frequency(wavelet, 1.0)) * fs_hz / freqs


def scales_for(cfg: PipelineConfig) -> np.ndarray:
    """Wavelet scales of the scalograms, ascending.

    Args:
        cfg: pipeline config; uses ``scalograms`` and ``windows.beat_fs_hz``.

    Returns:
        (n_scales,) float64: ``scalograms.scales`` when given (in that order), else
        ``n_scales`` scales whose pseudo-frequencies are log-spaced from ``f_max_hz`` down to
        ``f_min_hz`` at ``beat_fs_hz``.

    Raises:
        ConfigError: unknown wavelet, non-positive scales or an invalid frequency range.
    """
    return _scales(cfg.scalograms, float(cfg.windows.beat_fs_hz))


def frequencies_hz(cfg: PipelineConfig) -> np.ndarray:
    """Pseudo-frequencies in Hz of :func:`scales_for`'s scales, at ``windows.beat_fs_hz``.

    Returns:
        (n_scales,) float64, ``pywt.scale2frequency(wavelet, scale) * beat_fs_hz``.
    """
    import pywt

    scales = scales_for(cfg)
    f = pywt.scale2frequency(_wavelet(cfg.scalograms.wavelet), scales)
    return np.atleast_1d(np.asarray(f, dtype=np.float64)) * float(cfg.windows.beat_fs_hz)


# ------------------------------------------------------------------------- transform


BLOCK_BEATS = 64
"""Rows of every matrix product (the last block of a record zero-padded): a fixed shape, so a
beat's bytes never depend on how many beats share a product."""


@functools.lru_cache(maxsize=8)
def _operator(scales: tuple[float, ...], wavelet: str, n_samples: int) -> tuple[np.ndarray, float]:
    import pywt

    w = _wavelet(wavelet)
    try:
        impulses, _ = pywt.cwt(np.eye(n_samples), np.asarray(scales), w, method="conv", axis=-1)
    except ValueError as exc:  # "Selected scale of ... too small."
        raise ConfigError(f"scalograms.scales: {exc}") from None
    # impulses[s, k, t]: response at time t to a unit impulse at sample k.
    op = impulses.transpose(1, 0, 2).reshape(n_samples, len(scales) * n_samples)
    op = np.ascontiguousarray(op, dtype=np.complex128 if np.iscomplexobj(op) else np.float64)
    op.setflags(write=False)
    gain = float(np.abs(op).sum(axis=0).max())
    return op, gain


def cwt_operator(scales: np.ndarray, wavelet: str, n_samples: int) -> np.ndarray:
    """Linear operator of the CWT of ``n_samples``-long signals (read-only, cached).

    Returns:
        (n_samples, n_scales * n_samples) float64 (complex128 for complex wavelets) ``W`` with
        ``pywt.cwt(x, scales, wavelet)[0] == (x @ W).reshape(n_scales, n_samples)`` up to
        float64 rounding, for any ``x`` of shape (n_samples,).
    """
    return _operator(tuple(float(s) for s in np.atleast_1d(scales)), wavelet, int(n_samples))[0]


def one_blas_thread() -> contextlib.AbstractContextManager:
    """Context in which BLAS (numpy's OpenBLAS/MKL) runs one thread (threadpoolctl)."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - threadpoolctl comes with scikit-learn
        return contextlib.nullcontext()
    return threadpool_limits(1, user_api="blas")


def transform_into(beats: np.ndarray, op: np.ndarray, out: np.ndarray) -> None:
    """``out[...] = |beats @ op|`` reshaped, in float64 products of :data:`BLOCK_BEATS` rows.

    Args:
        beats: (n, T) real beats.
        op: (T, n_scales * T) operator from :func:`cwt_operator`.
        out: (n, n_scales, T) float16, float32 or float64 array. Magnitudes are rounded from
            float64 to float32, then to ``out``'s dtype (so a float16 output equals
            ``cwt_batch(...).astype(np.float16)``); each value depends only on its own beat,
            not on ``n`` or the beat's position.
    """
    n = beats.shape[0]
    flat = out.reshape(n, op.shape[1])
    block = np.zeros((BLOCK_BEATS, op.shape[0]), dtype=np.float64)
    buf = np.empty((BLOCK_BEATS, op.shape[1]), dtype=op.dtype)
    mag = np.empty((BLOCK_BEATS, op.shape[1]), dtype=np.float32)
    with one_blas_thread():
        for i in range(0, n, BLOCK_BEATS):
            k = min(BLOCK_BEATS, n - i)
            block[:k] = beats[i : i + k]
            block[k:] = 0.0
            np.matmul(block, op, out=buf)
            if out.dtype == np.float64:
                np.abs(buf[:k], out=flat[i : i + k])
            else:
                np.abs(buf[:k], out=mag[:k])
                flat[i : i + k] = mag[:k]


def cwt_batch(
    beats: np.ndarray,
    scales: np.ndarray,
    wavelet: str,
    fs_hz: float,
    *,
    chunk_beats: int = 512,
) -> np.ndarray:
    """Magnitude CWT of a batch of beats, vectorized (BLAS products of fixed shape).

    Args:
        beats: (n, T) real array, one beat per row, sampled at ``fs_hz``.
        scales: (n_scales,) positive wavelet scales (in samples, as for ``pywt.cwt``).
        wavelet: PyWavelets continuous wavelet name, e.g. ``"morl"``.
        fs_hz: sampling rate of ``beats`` in Hz. As with ``pywt.cwt``'s ``sampling_period``
            the coefficients do not depend on it; it is checked and logged with the
            pseudo-frequency range so a call states the rate its scales were chosen for.
        chunk_beats: kept for callers; it no longer changes anything (every product has
            :data:`BLOCK_BEATS` rows, so each beat's values are the same however many beats
            are passed at once).

    Returns:
        (n, n_scales, T) float32: ``|pywt.cwt(beat, scales, wavelet)[0]|`` per beat
        (unnormalized), rounded once from float64.

    Raises:
        ValueError: beats not 2-D or not finite, non-positive ``fs_hz`` or ``chunk_beats``.
    """
    import pywt

    beats = np.asarray(beats)
    if beats.ndim != 2 or beats.shape[1] < 1:
        raise ValueError(f"`beats` must be (n, T). Received: beats.shape={beats.shape}")
    if not np.all(np.isfinite(beats)):
        raise ValueError("`beats` must be finite (no NaN or inf)")
    if not fs_hz > 0:
        raise ValueError(f"`fs_hz` must be > 0. Received: fs_hz={fs_hz}")
    if chunk_beats < 1:
        raise ValueError(f"`chunk_beats` must be >= 1. Received: chunk_beats={chunk_beats}")
    scales = np.atleast_1d(np.asarray(scales, dtype=np.float64))
    f = np.atleast_1d(pywt.scale2frequency(_wavelet(wavelet), scales)) * fs_hz
    log.debug(
        "cwt %s: %d scales, %.3g-%.3g Hz at %g Hz", wavelet, len(scales), f.min(), f.max(), fs_hz
    )
    op = cwt_operator(scales, wavelet, beats.shape[1])
    out = np.empty((beats.shape[0], len(scales), beats.shape[1]), dtype=np.float32)
    transform_into(beats, op, out)
    return out


# ----------------------------------------------------------------------- one record


def read_beats(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Reads only ``beats`` and ``beat_index`` of a windows file (not its segments etc.)."""
    try:
        with np.load(path, allow_pickle=False) as z:
            missing = [k for k in ("beats", "beat_index") if k not in z.files]
            if missing:
                raise PipelineError(f"{path}: damaged windows file (no {', '.join(missing)})")
            beats, index = z["beats"], z["beat_index"]
    except PipelineError:
        raise
    except FileNotFoundError as exc:
        raise PipelineError(
            f"{path}: windows file not found; run `python -m pipeline.windows`"
        ) from exc
    except Exception as exc:  # zipfile.BadZipFile, ValueError, EOFError, OSError ...
        raise PipelineError(f"{path}: damaged windows file ({type(exc).__name__}: {exc})") from exc
    if beats.ndim != 2 or index.shape != (beats.shape[0],):
        raise PipelineError(
            f"{path}: damaged windows file (beats {beats.shape}, beat_index {index.shape})"
        )
    if not np.all(np.isfinite(beats)):
        raise PipelineError(f"{path}: damaged windows file (beats contain NaN or inf)")
    return beats, index


def _savez_streamed(path: Path, **arrays: np.ndarray) -> None:
    """Like :func:`pipeline.io_utils.atomic_savez` (temp file, fsync, rename; no pickles), but
    streams the arrays into the file instead of building the whole ``.npz`` in memory first:
    for ~30 MB of scalograms per record that doubled the stage's throughput (measured)."""
    for k, a in arrays.items():
        if a.dtype == object:
            raise TypeError(f"{path}: array {k!r} has dtype object; refusing to pickle")
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, **arrays)
            fh.flush()
            os.fsync(fh.fileno())


def process_record(src: Path, dst: Path, scfg: ScalogramConfig, fs_hz: float) -> dict[str, Any]:
    """Writes one record's scalograms; returns its manifest entry."""
    t0 = time.perf_counter()
    beats, index = read_beats(src)
    scales = _scales(scfg, fs_hz)
    op, gain = _operator(tuple(scales.tolist()), scfg.wavelet, beats.shape[1])
    dtype = np.dtype(scfg.dtype)
    out = np.empty((beats.shape[0], len(scales), beats.shape[1]), dtype=dtype)
    with np.errstate(over="ignore"):  # checked just below
        transform_into(beats, op, out)
    # max |coef| <= gain * max |beat|; only look for overflow when that bound allows it.
    bound = float(np.abs(beats).max()) * gain if beats.size else 0.0
    if bound > float(np.finfo(dtype).max) and np.isinf(out).any():
        raise PipelineError(
            f"{src}: scalogram magnitudes overflow {dtype.name}; set scalograms.dtype=float32"
        )
    import pywt

    freqs = np.atleast_1d(pywt.scale2frequency(_wavelet(scfg.wavelet), scales)) * fs_hz
    _savez_streamed(
        dst,
        scalograms=out,
        scales=scales,
        frequencies_hz=freqs.astype(np.float64),
        beat_index=index.astype(np.int32),
    )
    return {
        "record": dst.stem,
        "beats": int(out.shape[0]),
        "shape": list(out.shape),
        "dtype": dtype.name,
        "bytes": dst.stat().st_size,
        "seconds": round(time.perf_counter() - t0, 3),
    }


def _init_worker(scales: tuple[float, ...], wavelet: str, n_samples: int) -> None:
    """Worker start: build the operator once (each product pins BLAS to one thread)."""
    _operator(scales, wavelet, n_samples)


def _worker(job: tuple[str, str, dict, float]) -> dict[str, Any]:
    src, dst, sdict, fs_hz = job
    return process_record(
        Path(src), Path(dst), section_from_dict(ScalogramConfig, sdict, "scalograms"), fs_hz
    )


# --------------------------------------------------------------------------------- stage


def _records(cfg: PipelineConfig, wdir: Path) -> list[str]:
    if cfg.data.mitdb_records:
        return [safe_name(r) for r in cfg.data.mitdb_records]
    manifest = read_json(wdir / "manifest.json", "windows manifest")
    records = [safe_name(str(r)) for r in manifest.get("records", {})]
    if not records:
        raise PipelineError(f"{wdir / 'manifest.json'}: lists no records")
    return records


def _check_settings(scfg: ScalogramConfig) -> None:
    if scfg.dtype not in DTYPES:
        raise ConfigError(
            f"scalograms.dtype must be one of {list(DTYPES)}. Received: dtype={scfg.dtype!r}"
        )
    if scfg.chunk_beats < 1 or scfg.workers < 1:
        raise ConfigError(
            "scalograms.chunk_beats and scalograms.workers must be >= 1. Received: "
            f"chunk_beats={scfg.chunk_beats}, workers={scfg.workers}"
        )


def _stage_key(cfg: PipelineConfig, wdir: Path, records: list[str]) -> dict[str, Any]:
    """What the outputs depend on: the shaping settings and every input file's size and mtime."""
    files = {}
    for r in records:
        p = wdir / f"{r}.npz"
        try:
            st = p.stat()
        except FileNotFoundError:
            raise PipelineError(
                f"{p}: windows file not found; run `python -m pipeline.windows`"
            ) from None
        files[r] = [st.st_size, st.st_mtime_ns]
    # ``workers`` and ``chunk_beats`` only change how the work is run, not the outputs.
    shaping = {
        k: v for k, v in to_dict(cfg.scalograms).items() if k not in ("workers", "chunk_beats")
    }
    return {
        "config": config_hash(shaping),
        "beat_fs_hz": float(cfg.windows.beat_fs_hz),
        "beat_len_samples": cfg.windows.beat_len_samples,
        "windows": files,
    }


def _transform_records(
    jobs: list[tuple[str, str, dict, float]], workers: int, op_args: tuple, desc: str
) -> dict[str, dict]:
    """Runs the jobs (in a spawn pool when ``workers`` > 1); returns the manifest entries.

    Every input is read and checked before anything is written (a damaged file fails the
    stage up front); the pool's workers start meanwhile.
    """
    from tqdm import tqdm

    entries: dict[str, dict] = {}
    with contextlib.ExitStack() as stack:
        mapper: Any = map
        if workers > 1:
            import multiprocessing as mp

            ex = stack.enter_context(
                ProcessPoolExecutor(
                    workers,
                    mp_context=mp.get_context("spawn"),
                    initializer=_init_worker,
                    initargs=op_args,
                )
            )
            for _ in range(workers):  # the workers start while the inputs are checked
                ex.submit(int)
            mapper = ex.map
        for src, *_ in jobs:
            read_beats(Path(src))
        for e in tqdm(mapper(_worker, jobs), total=len(jobs), desc=desc, unit="rec", disable=None):
            entries[e["record"]] = e
    return entries


def _manifest(
    cfg: PipelineConfig, db: str, scales: np.ndarray, entries: dict[str, dict], wall: float,
    workers: int,
) -> dict[str, Any]:  # fmt: skip
    n_beats = sum(e["beats"] for e in entries.values())
    n_bytes = sum(e["bytes"] for e in entries.values())
    return {
        "dataset": db,
        "value": VALUE,
        "wavelet": cfg.scalograms.wavelet,
        "beat_fs_hz": float(cfg.windows.beat_fs_hz),
        "scales": scales,
        "frequencies_hz": np.atleast_1d(frequencies_hz(cfg)),
        "config": to_dict(cfg.scalograms),
        "records": entries,
        "totals": {
            "records": len(entries),
            "beats": n_beats,
            "bytes": n_bytes,
            "bytes_per_beat": round(n_bytes / n_beats, 1) if n_beats else 0.0,
        },
        "wall_time_s": round(wall, 3),
        "beats_per_s": round(n_beats / wall, 1) if wall > 0 else 0.0,
        "workers": workers,
    }


def run(cfg: PipelineConfig, force: bool = False, db: str = "mitdb") -> dict[str, Any]:
    """Runs the stage; returns the manifest (with ``up_to_date: True`` when nothing was done).

    Raises:
        PipelineError: windows stage not run, or a windows file missing or damaged.
        ConfigError: invalid scalogram settings.
    """
    scfg = cfg.scalograms
    fs_hz = float(cfg.windows.beat_fs_hz)
    _check_settings(scfg)
    scales = _scales(scfg, fs_hz)
    wdir = windows_dir(cfg, db)
    if not wdir.is_dir():
        raise PipelineError(f"{wdir}: no windows; run `python -m pipeline.windows` first")
    records = _records(cfg, wdir)
    out_dir = scalogram_dir(cfg, db)
    key = _stage_key(cfg, wdir, records)
    marker = out_dir / "_stage.json"
    outputs = [out_dir / "manifest.json", *(out_dir / f"{r}.npz" for r in records)]
    if not force and stage_done(marker, key) and all(p.is_file() for p in outputs):
        log.info(
            "scalograms %s: up to date (%d records); nothing to do (--force redoes it)",
            db,
            len(records),
        )
        return {**read_json(out_dir / "manifest.json", "scalogram manifest"), "up_to_date": True}
    jobs = [
        (str(wdir / f"{r}.npz"), str(out_dir / f"{r}.npz"), to_dict(scfg), fs_hz) for r in records
    ]
    workers = max(1, min(scfg.workers, len(records), os.cpu_count() or 1))
    op_args = (tuple(scales.tolist()), scfg.wavelet, cfg.windows.beat_len_samples)
    t0 = time.perf_counter()
    _operator(*op_args)  # checks the scales before any worker starts
    entries = _transform_records(jobs, workers, op_args, f"scalograms {db}")
    wall = time.perf_counter() - t0
    manifest = _manifest(cfg, db, scales, entries, wall, workers)
    atomic_write_json(out_dir / "manifest.json", manifest)
    t = manifest["totals"]
    mark_done(marker, key, {"records": len(entries), "beats": t["beats"]})
    log.info(
        "scalograms %s: wrote %d records, %s beats, %.1f MB in %.1f s (%s beats/s)",
        db,
        len(entries),
        f"{t['beats']:,}",
        t["bytes"] / 1e6,
        wall,
        f"{t['beats'] / wall:,.0f}" if wall > 0 else "-",
    )
    return manifest
