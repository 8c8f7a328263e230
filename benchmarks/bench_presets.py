"""Benchmark: throughput of every preset on 30 minutes of ECG, end to end and model only.

``python -m benchmarks.bench_presets [--presets-dir DIR] [--rounds R] [--no-tflite]
[--out benchmarks/presets.md]``

For each preset (``models/presets/`` or ``$ECG_PRESETS_DIR``), on this machine:

* **end to end**: :meth:`pipeline.serving.presets.Preset.predict_record` on mirror record
  ``mitdb/100`` (30 min 5.6 s, 360 Hz; beat classifiers and denoisers), outputs written to a
  temporary folder: reading, resampling, beat cutting or windowing, the model, the files and
  the plot. Beat classifiers are timed twice: with the record's ``.atr`` beats and with R
  peaks detected by XQRS (what a user's own recording gets). The PTB-XL preset gets mirror
  record ``ptbxl/records100/00000/00001_lr`` (10 s, 12 leads) tiled to 30 min, as an array.
  Without the mirror a seeded synthetic 30 min record stands in (the table says so).
* **model only** (the baseline in the same run): ``model.predict_on_batch`` alone on as many
  inputs as the end-to-end run fed the model (seeded normal values of the model's input
  shape, batches of 256), and the same inputs through the preset's TFLite conversion
  (:func:`pipeline.serving.export.convert_tflite`; ``--no-tflite`` skips it). A classic-trees
  preset's baseline is its trees' ``probabilities`` on as many seeded beat-table rows (in the
  "Keras model" column; no TFLite).

Reported: beats/s (or windows/s) and the real-time factor (seconds of ECG per second of
processing) end to end, the model-only figures, and the ratio end-to-end time / Keras
model time (how much of the time is not the model). The median of ``--rounds`` runs is kept.
The table goes to ``--out`` (Markdown) and to stdout. No test asserts on these timings.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "benchmarks" / "presets.md"
THIRTY_MIN_S = 1800.0
BATCH = 256


def _median_time(fn: Any, rounds: int) -> tuple[float, Any]:
    times, out = [], None
    for _ in range(rounds):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def _recording(preset: Any, mirror: Path | None, tmp: Path) -> tuple[Any, dict, float, str]:
    """(source for predict_record, its keyword arguments, duration in s, description)."""
    if preset.run.task.kind == "ptbxl":
        from pipeline.serving.predict_records import PTBXL_LEADS

        if mirror is not None:
            import wfdb

            x10 = wfdb.rdrecord(str(mirror / "ptbxl/records100/00000/00001_lr")).p_signal
            what = "PTB-XL 00001_lr tiled to 30 min"
        else:
            x10 = np.cumsum(np.random.default_rng(0).standard_normal((1000, 12)), axis=0) * 0.002
            what = "synthetic 12-lead (no mirror) tiled to 30 min"
        x = np.tile(x10, (int(THIRTY_MIN_S / 10), 1))
        return x, {"fs": 100.0, "leads": PTBXL_LEADS}, len(x) / 100.0, what
    if mirror is not None:
        return mirror / "mitdb" / "100", {}, 650000 / 360.0, "mitdb 100 (30 min 5.6 s)"
    from data_tools import synthetic

    synthetic.write_record(tmp, "synth30", seed=0, duration_s=THIRTY_MIN_S)
    return tmp / "synth30", {}, THIRTY_MIN_S, "synthetic 30 min record (no mirror)"


def _model_inputs(preset: Any, result: Any, duration_s: float) -> int:
    """How many examples the end-to-end run fed the model."""
    task, cfg = preset.run.task, preset.run.cfg
    if result.beats is not None:
        return int(result.beats.classified.sum())
    if task.kind == "ptbxl":
        return len(result.summary["windows"])
    win = int(preset.run.input_shape[0])
    hop = win // 2
    m = int(round(duration_s * cfg.windows.denoise_fs_hz))
    total = -(-(m + 2 * hop) // hop) * hop
    pairs = -(-len(result.summary["leads"]) // 2)
    return pairs * len(range(0, total - win + 1, hop))


def _inputs(model: Any, n: int) -> dict[str, np.ndarray]:
    """Seeded random inputs for every model input (two for beat classifiers with rhythm)."""
    rng = np.random.default_rng(0)
    return {t.name.split(":")[0]: rng.standard_normal((max(n, 1), *t.shape[1:])).astype(np.float32)
            for t in model.inputs}


def _predict_all(model: Any, x: dict[str, np.ndarray]) -> None:
    n = len(next(iter(x.values())))
    one = len(x) == 1
    for i in range(0, n, BATCH):
        part = {k: v[i : i + BATCH] for k, v in x.items()}
        model.predict_on_batch(next(iter(part.values())) if one else part)


def _trees_only(preset: Any, n: int, rounds: int) -> dict:
    """A classic-trees preset's baseline: its trees on ``n`` seeded rows of the beat table."""
    x = np.random.default_rng(0).standard_normal(
        (max(n, 1), len(preset.model.feature_names))).astype(np.float32)
    trees_s, _ = _median_time(lambda: preset.model.probabilities(x), rounds)
    return {"n": n, "keras_s": trees_s, "tflite_s": None,
            "tflite_error": "classic trees (scikit-learn), not a Keras model"}


def _model_only(preset: Any, n: int, rounds: int, tflite: bool) -> dict:
    if getattr(preset.model, "kind", None) == "classic_trees":
        return _trees_only(preset, n, rounds)
    inputs = _inputs(preset.model, n)
    _predict_all(preset.model, {k: v[:BATCH] for k, v in inputs.items()})  # warm-up (tracing)
    keras_s, _ = _median_time(lambda: _predict_all(preset.model, inputs), rounds)
    out = {"n": n, "keras_s": keras_s, "tflite_s": None}
    if len(inputs) > 1:
        out["tflite_error"] = "two inputs (ecg, rr): export handles single-input models only"
        tflite = False
    x = next(iter(inputs.values()))
    if tflite:
        from pipeline.serving import export

        try:
            content, _ = export.convert_tflite(preset.model, preset.run.input_shape)
            runner = export.TFLiteRunner(content)
            runner(x[:BATCH])
            out["tflite_s"], _ = _median_time(lambda: runner(x), rounds)
        except export.ExportError as exc:
            out["tflite_error"] = str(exc)
    return out


def bench_preset(preset: Any, mirror: Path | None, rounds: int, tflite: bool) -> list[dict]:
    """One row per end-to-end variant of one preset."""
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        source, kwargs, duration, what = _recording(preset, mirror, Path(tmp))
        variants = [("", {})]
        if preset.run.task.kind in ("segments", "beats"):
            variants = [(" (.atr beats)", {"beats": "auto"}), (" (XQRS beats)", {"beats": "detect"})]
        for label, extra in variants:
            e2e_s, result = _median_time(
                lambda extra=extra: preset.predict_record(source, **kwargs, **extra), rounds)
            n = _model_inputs(preset, result, duration)
            rows.append({"preset": preset.name, "task": preset.card["task"], "input": what + label,
                         "duration_s": duration, "e2e_s": e2e_s, "unit": "beats" if result.beats
                         is not None else "windows", **_model_only(preset, n, rounds, tflite)})
    return rows


def markdown(rows: list[dict]) -> str:
    """The table written to ``--out``."""
    lines = [
        "# Preset throughput on this CPU", "",
        f"`python -m benchmarks.bench_presets` on {platform.node() or 'this machine'} "
        f"({os.cpu_count()} CPUs, {platform.processor() or platform.machine()}), "
        f"Python {platform.python_version()}. Real-time factor = seconds of ECG per second of "
        "processing. Model only = the same number of inputs through the Keras model "
        "(`predict_on_batch`, batches of 256) or its TFLite conversion.", "",
        "| preset | input | end to end s | items/s | real-time factor | Keras model s | "
        "end to end / Keras | TFLite model s | Keras / TFLite |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        tfl = r.get("tflite_s")
        tfl_s = f"{tfl:.2f}" if tfl else "n/a"
        ratio = f"{r['keras_s'] / tfl:.2f}" if tfl else "n/a"
        lines.append(
            f"| {r['preset']} | {r['input']} | {r['e2e_s']:.2f} | {r['n'] / r['e2e_s']:,.0f} "
            f"{r['unit']}/s | {r['duration_s'] / r['e2e_s']:,.0f}x | {r['keras_s']:.2f} | "
            f"{r['e2e_s'] / r['keras_s']:.1f} | {tfl_s} | {ratio} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    from data_tools.golden_presets import mirror_dir
    from pipeline.core.io_utils import PipelineError, atomic_write_text
    from pipeline.serving import presets

    p = argparse.ArgumentParser(prog="python -m benchmarks.bench_presets", description=__doc__.split("\n")[0])
    p.add_argument("--presets-dir", default=None)
    p.add_argument("--rounds", type=int, default=1)
    p.add_argument("--no-tflite", action="store_true")
    p.add_argument("--out", default=str(DEFAULT_OUT))
    args = p.parse_args(argv)
    if args.rounds < 1:
        raise PipelineError(f"--rounds must be >= 1. Received: {args.rounds}")
    names = presets.list_presets(args.presets_dir)
    if not names:
        raise PipelineError(f"no presets in {presets.presets_dir(args.presets_dir)}")
    mirror = mirror_dir()
    rows = []
    for name in names:
        rows += bench_preset(presets.load_preset(name, args.presets_dir), mirror, args.rounds,
                             not args.no_tflite)
    text = markdown(rows)
    atomic_write_text(args.out, text)
    print(text)
    return 0


if __name__ == "__main__":
    from pipeline.core.io_utils import run_cli

    sys.exit(run_cli(main))
