"""Benchmark: training throughput (windows/s) of every registered denoiser at a CPU width.

``python -m benchmarks.bench_denoisers [--seconds 10] [--warmup-steps 3] [--batch-size 32]
[--output-mode direct] [--models unet1d cnn ...] [--out benchmarks/denoisers.md]``

Each registered denoiser is built at its narrow CPU width (:data:`CPU_WIDTHS`, the
``train.model_kwargs`` proposed for CPU runs; the seed widths are far too slow for CPU
training), plus ``unet1d`` at its default width as the reference. On random data of the
denoising task's shape (``--batch-size`` windows of 4 s at 360 Hz, two leads:
``(32, 1440, 2)``), after ``--warmup-steps`` calls of ``train_on_batch`` (graph tracing), the
model is timed for ``--seconds`` of wall time with Adam and the seed's loss (MSE + 0.3 MAE),
as ``pipeline.training.trainer`` compiles it (no XLA). For each model it reports windows/s of
wall time, windows per second of this process's CPU time (less sensitive to other programs
on the machine), parameters, and the wall ratio to ``unet1d`` at its default width *in the
same run*. Compare figures from one run only; it writes a Markdown table to ``--out``
(atomically) and prints it.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import time
from typing import Any

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from pipeline.core.io_utils import PipelineError, atomic_write_text, run_cli  # noqa: E402

WINDOW_SHAPE = (1440, 2)
"""4 s at 360 Hz, two leads: the ``mitdb_denoise`` window."""

CPU_WIDTHS: dict[str, dict[str, Any]] = {
    "lstm": dict(units=(32,)),
    "rnn": dict(units=(32,)),
    "cnn": dict(filters=(64, 32, 32)),
    "cnn_dae": dict(filters=(16, 32, 64)),
    "transformer": dict(patch_len=20, d_model=64, num_heads=4, num_layers=2, ff_mult=2),
    "vq_transformer": dict(
        patch_len=20, d_model=64, num_heads=4, num_layers=2, ff_mult=2, embed_dim=32,
        num_codes=256,
    ),
    "unet1d": dict(filters=(8, 16, 32, 32)),
}
"""Proposed CPU ``model_kwargs`` per denoiser (see ``benchmarks/denoisers.md``)."""

REFERENCE = "unet1d (default width)"


@dataclasses.dataclass(frozen=True)
class Result:
    """One model's timing: label, kwargs, parameters, steps, wall and CPU seconds."""

    label: str
    kwargs: dict[str, Any]
    params: int
    steps: int
    wall_s: float
    cpu_s: float
    batch_size: int

    @property
    def windows_per_s(self) -> float:
        return self.steps * self.batch_size / self.wall_s

    @property
    def windows_per_cpu_s(self) -> float:
        return self.steps * self.batch_size / max(self.cpu_s, 1e-9)


def time_training(name: str, kwargs: dict[str, Any], args: argparse.Namespace, label: str):
    """Builds ``name`` with ``kwargs`` and times ``train_on_batch`` on random windows."""
    import keras

    from models import registry
    from pipeline.training.losses import DenoiseLoss

    keras.utils.set_random_seed(0)
    model = registry.build("denoiser", name, WINDOW_SHAPE, output_mode=args.output_mode, **kwargs)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=DenoiseLoss(0.3), jit_compile=False)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((args.batch_size, *WINDOW_SHAPE)).astype("float32")
    y = (0.8 * x).astype("float32")
    for _ in range(args.warmup_steps):
        model.train_on_batch(x, y)
    steps, wall0, cpu0 = 0, time.perf_counter(), time.process_time()
    while time.perf_counter() - wall0 < args.seconds:
        model.train_on_batch(x, y)
        steps += 1
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    return Result(label, kwargs, model.count_params(), steps, wall, cpu, args.batch_size)


def markdown(results: list[Result], args: argparse.Namespace) -> str:
    """The results as a Markdown page: how it was measured, then one row per model."""
    ref = next(r for r in results if r.label == REFERENCE)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    lines = [
        "# Denoiser training throughput on CPU",
        "",
        "`python -m benchmarks.bench_denoisers --seconds "
        f"{args.seconds:g} --batch-size {args.batch_size} --output-mode {args.output_mode}`: "
        f"`train_on_batch` on random `({args.batch_size}, {WINDOW_SHAPE[0]}, {WINDOW_SHAPE[1]})` "
        f"windows, Adam, MSE + 0.3 MAE, after {args.warmup_steps} warm-up steps, "
        f"{args.seconds:g} s per model. Machine: {platform.machine()}, {os.cpu_count()} CPU "
        f"cores, load average {load:.1f} at the end (other programs share the cores; "
        "windows per CPU-second depends less on them). Ratio: wall windows/s over "
        "unet1d at its default width in the same run.",
        "",
        "| model | model_kwargs | params | windows/s | windows/CPU-s | ratio to unet1d default |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for r in results:
        kwargs = ", ".join(f"{k}={v}" for k, v in r.kwargs.items()) or "(defaults)"
        lines.append(
            f"| {r.label} | `{kwargs}` | {r.params:,} | {r.windows_per_s:.0f} | "
            f"{r.windows_per_cpu_s:.0f} | {r.windows_per_s / ref.windows_per_s:.2f} |"
        )
    return "\n".join(lines) + "\n"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="timed wall s per model")
    parser.add_argument("--warmup-steps", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--output-mode", default="direct", choices=["direct", "residual", "gated"])
    parser.add_argument("--models", nargs="*", default=None, help="default: every denoiser")
    parser.add_argument("--out", default="benchmarks/denoisers.md", help="Markdown table")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.seconds <= 0 or args.batch_size < 1 or args.warmup_steps < 1:
        raise PipelineError("--seconds must be > 0, --batch-size and --warmup-steps >= 1")
    from models import registry

    names = registry.names("denoiser") if args.models is None else args.models
    unknown = sorted(set(names) - set(registry.names("denoiser")))
    if unknown:
        raise PipelineError(f"unknown denoiser(s) {unknown}; known: {registry.names('denoiser')}")
    results = [time_training("unet1d", {}, args, REFERENCE)]
    for name in names:
        results.append(time_training(name, CPU_WIDTHS.get(name, {}), args, name))
        print(f"{name}: {results[-1].windows_per_s:.0f} windows/s", flush=True)
    text = markdown(results, args)
    atomic_write_text(args.out, text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(run_cli(main))
