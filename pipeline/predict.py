"""Use a trained run or a pretrained preset on new recordings (WFDB, EDF, CSV, NumPy).

Command over :mod:`pipeline.serving.predict` (what is written),
:mod:`pipeline.serving.reader` (what is read) and :mod:`pipeline.serving.presets`
(``--preset NAME``; ``--preset list`` prints the presets with their headline metrics).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pipeline.core import cli
from pipeline.core.io_utils import PipelineError
from pipeline.serving import predict as predict_lib
from pipeline.serving import presets
from pipeline.serving.outputs import prepare_out_dir
from pipeline.serving.reader import USER_UNITS
from pipeline.serving.run_loader import CHECKPOINTS


def build_parser() -> argparse.ArgumentParser:
    p = cli.command_parser(
        "predict",
        "Run a trained model on recordings (WFDB, EDF, CSV, NumPy): denoised "
        "records, beat annotations (.pred) or PTB-XL superclass probabilities, with a "
        "signal-quality report.",
        config=False,
    )
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--run", help="run folder (Research_Runs/<run>)")
    src.add_argument("--preset", help="pretrained preset name (models/presets/<name>, or "
                     "$ECG_PRESETS_DIR); 'list' prints them with their metrics")
    p.add_argument("--input", "--record", dest="input", default=None,
                   help="WFDB record (path without extension), .edf/.csv/.npy file, or a folder "
                   "of WFDB records and EDF files (--record is the older name)")
    p.add_argument("--out", default=None, help="output folder (default: <run>/predictions or <preset>/predictions)")
    p.add_argument("--checkpoint", choices=list(CHECKPOINTS), default="best",
                   help="--run: best.keras (default; refused when missing) or last.keras")
    p.add_argument("--fs", type=float, default=None,
                   help="CSV/NumPy inputs: sampling rate in Hz (required for them)")
    p.add_argument("--units", choices=list(USER_UNITS), default="mV",
                   help="CSV/NumPy inputs: sample units (default mV; adu needs --adc-gain)")
    p.add_argument("--adc-gain", type=float, default=None,
                   help="CSV/NumPy inputs with --units adu: ADC units per mV")
    p.add_argument("--leads", default=None,
                   help="NumPy inputs: lead names of the array's columns, comma-separated")
    p.add_argument("--span-s", type=predict_lib.parse_span, default=(0.0, 10.0),
                   help="START,END in s of the plotted span (default 0,10): denoised over input, or "
                   "the predicted beat classes")
    p.add_argument("--beats", choices=["auto", "atr", "detect"], default="auto",
                   help="beat classifiers: beats from the .atr file (auto: when it holds beats) or XQRS")
    p.add_argument("--lead", default=None,
                   help="beat classifiers: record lead to use (default: the run's windows.lead "
                   "through the lead aliases, e.g. MLII ~ II ~ ECG1)")
    p.add_argument("--flat-s", type=float, default=1.0,
                   help="report a lead constant for longer than this many seconds (> 0; default 1)")
    p.add_argument("--batch-size", type=int, default=256, help="examples per model call (>= 1)")
    return p


def _model(args: argparse.Namespace):
    """(run, default output folder, the line printed first) for --run or --preset."""
    if args.preset:
        preset = presets.load_preset(args.preset)
        warn = f"\nwarning: {preset.card['warning']}" if preset.card.get("smoke") else ""
        return (preset.run, preset.path / "predictions",
                f"preset {preset.name}: {preset.card['task']} / {preset.card['model']} "
                f"({preset.path}){warn}")
    run = predict_lib.load_run(args.run, checkpoint=args.checkpoint)
    return (run, run.path / "predictions",
            f"run {run.path}: {run.task.name} / {run.model_name}, checkpoint {run.checkpoint}")


def main(argv: list[str] | None = None) -> int:
    args, _ = cli.parse(build_parser(), argv)
    if args.preset == "list":
        lines = presets.listing()
        print("\n".join(lines) if lines else f"no presets in {presets.presets_dir()}")
        return 0
    if args.input is None:
        raise PipelineError("--input is required (a WFDB record, an .edf/.csv/.npy file or a folder)")
    options = predict_lib.PredictOptions.from_args(args)  # flag ranges, before any file is touched
    target = Path(args.input)
    inputs = predict_lib.list_inputs(target)
    run, default_out, header = _model(args)
    out_dir = prepare_out_dir(Path(args.out) if args.out else default_out)
    print(header)
    if not target.is_dir():
        print(predict_lib.one_line_summary(predict_lib.predict_record(run, inputs[0], out_dir, options)))
        return 0

    def echo(line: str, ok: bool) -> None:
        print(line if ok else f"error: {line}", file=sys.stdout if ok else sys.stderr)

    summary = predict_lib.predict_folder(run, target, out_dir, options, echo)
    n, failed = len(summary["records"]), summary["failed"]
    print(f"{n - failed} of {n} records done; summary in {out_dir / 'predict_summary.json'}")
    return 2 if failed else 0


if __name__ == "__main__":
    cli.run(main)
