"""Use a trained run on new recordings (WFDB, EDF, CSV, NumPy).

Command over :mod:`pipeline.serving.predict` (what is written) and
:mod:`pipeline.serving.reader` (what is read).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pipeline.core.io_utils import run_cli, setup_logging
from pipeline.serving.outputs import prepare_out_dir
from pipeline.serving.predict import (
    PredictOptions,
    list_inputs,
    load_run,
    one_line_summary,
    parse_span,
    predict_folder,
    predict_record,
)
from pipeline.serving.reader import USER_UNITS
from pipeline.serving.run_loader import CHECKPOINTS


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m pipeline.predict",
        description="Run a trained model on recordings (WFDB, EDF, CSV, NumPy): denoised "
        "records, beat annotations (.pred) or PTB-XL superclass probabilities, with a "
        "signal-quality report.",
    )
    p.add_argument("--run", required=True, help="run folder (Research_Runs/<run>)")
    p.add_argument("--input", "--record", dest="input", required=True,
                   help="WFDB record (path without extension), .edf/.csv/.npy file, or a folder "
                   "of WFDB records and EDF files (--record is the older name)")
    p.add_argument("--out", default=None, help="output folder (default: <run>/predictions)")
    p.add_argument("--checkpoint", choices=list(CHECKPOINTS), default="best",
                   help="best.keras (default; refused when missing) or last.keras")
    p.add_argument("--fs", type=float, default=None,
                   help="CSV/NumPy inputs: sampling rate in Hz (required for them)")
    p.add_argument("--units", choices=list(USER_UNITS), default="mV",
                   help="CSV/NumPy inputs: sample units (default mV; adu needs --adc-gain)")
    p.add_argument("--adc-gain", type=float, default=None,
                   help="CSV/NumPy inputs with --units adu: ADC units per mV")
    p.add_argument("--leads", default=None,
                   help="NumPy inputs: lead names of the array's columns, comma-separated")
    p.add_argument("--span-s", type=parse_span, default=(0.0, 10.0),
                   help="denoisers: START,END in s of the plotted span (default 0,10)")
    p.add_argument("--beats", choices=["auto", "atr", "detect"], default="auto",
                   help="beat classifiers: beats from the .atr file (auto: when it holds beats) or XQRS")
    p.add_argument("--lead", default=None,
                   help="beat classifiers: record lead to use (default: the run's windows.lead "
                   "through the lead aliases, e.g. MLII ~ II ~ ECG1)")
    p.add_argument("--flat-s", type=float, default=1.0,
                   help="report a lead constant for longer than this many seconds (> 0; default 1)")
    p.add_argument("--batch-size", type=int, default=256, help="examples per model call (>= 1)")
    p.add_argument("-v", "--verbose", action="store_true")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.verbose)
    options = PredictOptions.from_args(args)  # flag ranges, before any file is touched
    target = Path(args.input)
    inputs = list_inputs(target)
    run = load_run(args.run, checkpoint=args.checkpoint)
    out_dir = prepare_out_dir(Path(args.out) if args.out else run.path / "predictions")
    print(f"run {run.path}: {run.task.name} / {run.model_name}, checkpoint {run.checkpoint}")
    if not target.is_dir():
        print(one_line_summary(predict_record(run, inputs[0], out_dir, options)))
        return 0

    def echo(line: str, ok: bool) -> None:
        print(line if ok else f"error: {line}", file=sys.stdout if ok else sys.stderr)

    summary = predict_folder(run, target, out_dir, options, echo)
    n, failed = len(summary["records"]), summary["failed"]
    print(f"{n - failed} of {n} records done; summary in {out_dir / 'predict_summary.json'}")
    return 2 if failed else 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
