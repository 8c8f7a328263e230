"""Benchmark: scoring every gate of the grid with :class:`GateBank` against one ``apply`` each.

``python -m benchmarks.bench_gate_bank [--batches 3] [--batch-size 128] [--settings 0]
[--seed 0] [--out results.json]``

``tune_gate`` applies every setting of :data:`pipeline.evaluation.pass_through.GRID` (624) to
each validation batch. The baseline is what it did before the bank: one
:func:`pass_through.apply` per setting, each recomputing the batch's estimated SNR, the
removed part's flatness and, for the white-noise low-pass settings, the Butterworth low-pass.
The bank computes those once per batch. Both run in this process on the same seeded synthetic
batches of the denoising window's shape (1440 samples at 360 Hz, two leads): a quasi-periodic
ECG-like reference, a model output that removes part of the noise, and per batch one fifth
Gaussian (white) windows, one fifth near-clean and the rest band-limited noise, the mix of
the validation cells (five noise types, one of them white). It checks that both give the same
arrays bit for bit, and prints each one's wall time and the baseline / bank ratio.
"""

from __future__ import annotations

import argparse
import platform
import time

import numpy as np

from pipeline.core.io_utils import PipelineError, atomic_write_json, run_cli
from pipeline.evaluation import pass_through

FS_HZ = 360.0
WINDOW_SHAPE = (1440, 2)


def synthetic_batch(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``(noisy, model output)`` float32 ``(n, 1440, 2)``: see the module docstring."""
    t = np.arange(WINDOW_SHAPE[0]) / FS_HZ
    beats = np.exp(-(((t[None, :] * 1.2 + rng.uniform(0, 1, (n, 1))) % 1.0 - 0.5) / 0.02) ** 2)
    clean = np.repeat(beats[..., None], WINDOW_SHAPE[1], axis=2)
    white = rng.normal(0, 0.3, clean.shape)
    wander = np.cumsum(rng.normal(0, 0.02, clean.shape), axis=1)
    kind = np.arange(n) % 5  # 0: white, 1: near-clean, else band-limited
    noise = np.where((kind == 0)[:, None, None], white,
                     np.where((kind == 1)[:, None, None], 0.01 * white, wander))
    noisy = clean + noise
    den = clean + 0.3 * noise + rng.normal(0, 0.005, clean.shape)
    return noisy.astype(np.float32), den.astype(np.float32)


def _time(fn, batches) -> tuple[float, list[np.ndarray]]:
    t0 = time.perf_counter()
    outs = [o for noisy, den in batches for o in fn(noisy, den)]
    return time.perf_counter() - t0, outs


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m benchmarks.bench_gate_bank",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--batches", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--settings", type=int, default=0, help="first N settings of the grid "
                   "(0: all 624)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None, help="write the figures here as JSON")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.batches < 1 or args.batch_size < 1 or args.settings < 0:
        raise PipelineError(f"--batches {args.batches}, --batch-size {args.batch_size}, "
                            f"--settings {args.settings}: batches and batch size must be >= 1, "
                            "settings >= 0")
    grid = pass_through.GRID[: args.settings or None]
    settings = [pass_through.GateSetting(*g) for g in grid]
    rng = np.random.default_rng(args.seed)
    batches = [synthetic_batch(args.batch_size, rng) for _ in range(args.batches)]
    base_s, base = _time(lambda x, d: [pass_through.apply(x, d, s, FS_HZ) for s in settings],
                         batches)
    posts = pass_through.GateBank(settings, FS_HZ).posts()
    bank_s, bank = _time(lambda x, d: [posts[s.name](x, d) for s in settings], batches)
    same = all(np.array_equal(a, b) for a, b in zip(base, bank, strict=True))
    res = {"settings": len(settings), "batches": args.batches, "batch_size": args.batch_size,
           "baseline_apply_s": round(base_s, 3), "bank_s": round(bank_s, 3),
           "ratio_baseline_over_bank": round(base_s / bank_s, 2), "bitwise_equal": same,
           "machine": platform.machine(), "python": platform.python_version()}
    print(f"{len(settings)} settings x {args.batches} batches of {args.batch_size}: "
          f"apply each {base_s:.2f} s, bank {bank_s:.2f} s, ratio {base_s / bank_s:.1f}x, "
          f"bitwise equal: {same}")
    if args.out:
        atomic_write_json(args.out, res)
    return 0 if same else 1


if __name__ == "__main__":
    raise SystemExit(run_cli(main))
