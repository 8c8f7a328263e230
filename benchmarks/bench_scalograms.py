"""Benchmark: the scalogram stage against a per-beat ``pywt.cwt`` loop.

``python -m benchmarks.bench_scalograms --data-dir DIR [--records N] [--out results.json]``

``DIR/windows/mitdb`` must hold the windows stage's output (``python -m pipeline.windows
--data-dir DIR --databases mitdb``); it is only read. Scalograms are written under a separate
work folder (``--work-dir``, default a temporary folder removed afterwards) whose
``windows/mitdb`` links to ``DIR/windows/mitdb``.

One run measures:

1. **baseline**: a Python loop calling ``pywt.cwt`` on one beat at a time (float64, as the
   stage's reference), taking ``abs`` and casting to the storage dtype, on ``--sample-beats``
   beats spread over the chosen records, with both of PyWavelets' methods (``conv``, its
   default, and ``fft``); one process, no file I/O. The faster method is the baseline.
2. **transform**: :func:`pipeline.data.scalogram.cwt_batch` on the same sample in one process
   (one BLAS thread, fixed-shape float64 products: byte-stable), with its largest deviation from the
   baseline relative to the largest magnitude.
3. **stage**: :func:`pipeline.data.scalogram.run` with ``force=True`` over all (or ``--records``)
   records, end to end: reading windows, transform, writing ``.npz`` files, manifest.
   ``--also-serial`` repeats it with ``workers=1`` (one process).

It prints beats/s for each, the stage / baseline ratio, bytes on disk per beat and the total
wall time, and writes them as JSON to ``--out`` when given.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.core.config import load_config
from pipeline.core.io_utils import atomic_write_json, read_json
from pipeline.data import scalogram
from pipeline.data.paths import windows_dir


def _sample_beats(wdir: Path, records: list[str], n: int, seed: int = 0) -> np.ndarray:
    """``n`` beats drawn uniformly (seeded) from the records' beats."""
    beats = np.concatenate([scalogram.read_beats(wdir / f"{r}.npz")[0] for r in records])
    rng = np.random.default_rng(seed)
    idx = np.sort(rng.choice(len(beats), size=min(n, len(beats)), replace=False))
    return beats[idx]


def _clock() -> np.ndarray:
    """(wall s, CPU s of this process, its threads and its finished child processes)."""
    me, kids = (
        resource.getrusage(resource.RUSAGE_SELF),
        resource.getrusage(resource.RUSAGE_CHILDREN),
    )
    cpu = me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime
    return np.array([time.perf_counter(), cpu])


def _rates(n: int, start: np.ndarray) -> dict[str, float]:
    wall, cpu = _clock() - start
    return {
        "wall_s": round(wall, 3),
        "beats_per_s": round(n / wall, 1),
        "cpu_us_per_beat": round(cpu / n * 1e6, 1),
    }


def _baseline(
    beats: np.ndarray, scales: np.ndarray, wavelet: str, dtype: str, method: str
) -> tuple[dict[str, float], np.ndarray]:
    import pywt

    out = np.empty((len(beats), len(scales), beats.shape[1]), dtype=dtype)
    start = _clock()
    for i, b in enumerate(beats):
        coef, _ = pywt.cwt(b.astype(np.float64), scales, wavelet, method=method)
        out[i] = np.abs(coef)
    return _rates(len(beats), start), out


def _show(name: str, r: dict[str, float], extra: str = "") -> None:
    print(
        f"{name + ':':<48} {r['beats_per_s']:>9,.0f} beats/s, "
        f"{r['cpu_us_per_beat']:>7,.1f} CPU us/beat ({r['wall_s']:.1f} s{extra})"
    )


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.bench_scalograms", description=__doc__.split("\n\n")[0]
    )
    p.add_argument(
        "--data-dir",
        required=True,
        type=Path,
        help="folder with windows/mitdb from the windows stage (read only)",
    )
    p.add_argument("--records", type=int, default=0, help="first N records (default: all)")
    p.add_argument(
        "--sample-beats",
        type=int,
        default=2000,
        help="beats for the per-beat pywt.cwt baseline (default 2000)",
    )
    p.add_argument(
        "--work-dir",
        type=Path,
        default=None,
        help="where scalograms are written (default: a temporary folder, removed)",
    )
    p.add_argument("--config", default=None, help="YAML config (default: built-in defaults)")
    p.add_argument(
        "--also-serial",
        action="store_true",
        help="also run the stage with workers=1 (one process, one BLAS thread)",
    )
    p.add_argument("--out", type=Path, default=None, help="write results JSON here")
    return p


def _setup(args: argparse.Namespace) -> tuple[Any, Path, Path, list[str]]:
    """The config pointed at a work folder whose windows/mitdb links to the source's."""
    src = args.data_dir.resolve()
    cfg = load_config(args.config, apply_env=False)
    wsrc = windows_dir(
        dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, data_dir=str(src))), "mitdb"
    )
    manifest = read_json(wsrc / "manifest.json", "windows manifest")
    records = list(manifest["records"])
    if args.records:
        records = records[: args.records]
    work = args.work_dir or Path(tempfile.mkdtemp(prefix="bench_scalograms_"))
    (work / "windows").mkdir(parents=True, exist_ok=True)
    link = work / "windows" / "mitdb"
    if not link.exists():
        link.symlink_to(wsrc, target_is_directory=True)
    cfg = dataclasses.replace(
        cfg, data=dataclasses.replace(cfg.data, data_dir=str(work), mitdb_records=tuple(records))
    )
    return cfg, wsrc, work, records


def _bench_transform(cfg: Any, sample: np.ndarray, results: dict) -> np.ndarray:
    """pywt.cwt per beat (conv, fft) and cwt_batch in memory; returns the conv reference."""
    scfg = cfg.scalograms
    scales = scalogram.scales_for(cfg)
    base = {}
    for method in ("conv", "fft"):
        base[method], ref = _baseline(sample, scales, scfg.wavelet, scfg.dtype, method)
        _show(f"baseline pywt.cwt per beat ({method})", base[method])
        if method == "conv":
            ref_conv = ref
    results["baseline"] = base
    results["baseline_method"] = max(base, key=lambda k: base[k]["beats_per_s"])
    scalogram.cwt_batch(sample[:8], scales, scfg.wavelet, cfg.windows.beat_fs_hz)  # build operator
    start = _clock()
    got = scalogram.cwt_batch(sample, scales, scfg.wavelet, cfg.windows.beat_fs_hz)
    results["transform"] = _rates(len(sample), start)
    ref32 = ref_conv.astype(np.float32)
    rel = float(
        np.abs(got.astype(scfg.dtype).astype(np.float32) - ref32).max() / np.abs(ref32).max()
    )
    results["transform"]["max_rel_diff_vs_pywt"] = rel
    _show(
        "transform cwt_batch (in memory)",
        results["transform"],
        f"; max |diff| / max = {rel:.2e} after the {scfg.dtype} cast",
    )
    return ref_conv


def _bench_stage(cfg: Any, also_serial: bool, results: dict) -> None:
    """The stage end to end (and with one worker when asked); ratios against the baseline."""
    runs = [("stage", cfg)]
    if also_serial:
        serial = dataclasses.replace(cfg, scalograms=dataclasses.replace(cfg.scalograms, workers=1))
        runs.append(("stage_serial", serial))
    for name, c in runs:
        start = _clock()
        m = scalogram.run(c, force=True)
        tot = m["totals"]
        results[name] = {
            **_rates(tot["beats"], start),
            "beats": tot["beats"],
            "bytes": tot["bytes"],
            "bytes_per_beat": tot["bytes_per_beat"],
            "workers": m["workers"],
        }
        _show(
            f"{name} ({m['workers']} worker(s), end to end)",
            results[name],
            f"; {tot['beats']:,} beats, {tot['bytes'] / 1e6:,.1f} MB, "
            f"{tot['bytes_per_beat']:,.0f} B/beat on disk",
        )
    best = results["baseline_method"]
    b = results["baseline"][best]
    for what in ("stage", "transform"):
        results[f"ratio_{what}_vs_baseline"] = {
            "wall": round(results[what]["beats_per_s"] / b["beats_per_s"], 2),
            "cpu": round(b["cpu_us_per_beat"] / results[what]["cpu_us_per_beat"], 2),
        }
    r, t = results["ratio_stage_vs_baseline"], results["ratio_transform_vs_baseline"]
    print(
        f"ratio stage / baseline ({best}): {r['wall']:.1f}x beats/s (wall clock), "
        f"{r['cpu']:.1f}x CPU time per beat; transform only: {t['wall']:.1f}x, "
        f"{t['cpu']:.1f}x"
    )


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    t_start = time.perf_counter()
    cfg, wsrc, work, records = _setup(args)
    scfg = cfg.scalograms
    scales = scalogram.scales_for(cfg)
    results: dict = {
        "data_dir": str(args.data_dir.resolve()),
        "records": len(records),
        "wavelet": scfg.wavelet,
        "n_scales": len(scales),
        "dtype": scfg.dtype,
        "workers": scfg.workers,
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "loadavg_1min_at_start": round(os.getloadavg()[0], 2),
    }
    try:
        import pywt

        results["pywt"] = pywt.__version__
        sample = _sample_beats(wsrc, records, args.sample_beats)
        print(
            f"sample: {len(sample)} beats from {len(records)} records; {len(scales)} scales "
            f"({scfg.wavelet}), {sample.shape[1]} samples, stored as {scfg.dtype}"
        )
        _bench_transform(cfg, sample, results)
        _bench_stage(cfg, args.also_serial, results)
    finally:
        if args.work_dir is None:
            shutil.rmtree(work, ignore_errors=True)
    results["total_wall_s"] = round(time.perf_counter() - t_start, 2)
    results["loadavg_1min_at_end"] = round(os.getloadavg()[0], 2)
    print(
        f"total wall time: {results['total_wall_s']:.1f} s (1-min load average "
        f"{results['loadavg_1min_at_start']} at start, {results['loadavg_1min_at_end']} at end, "
        f"{os.cpu_count()} CPUs)"
    )
    if args.out:
        atomic_write_json(args.out, results)
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
