"""Use a trained run on new WFDB recordings.

Command over :mod:`pipeline.serving.predict`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pipeline.core.io_utils import PipelineError, atomic_write_json, run_cli, setup_logging
from pipeline.serving.predict import (
    list_records,
    load_run,
    one_line_summary,
    parse_span,
    predict_record,
)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m pipeline.predict",
        description="Run a trained model on WFDB records: denoised records, beat annotations "
        "(.pred) or PTB-XL superclass probabilities, with a signal-quality report.",
    )
    p.add_argument("--run", required=True, help="run folder (Research_Runs/<run>)")
    p.add_argument("--record", required=True,
                   help="WFDB record path without extension, or a folder of records")
    p.add_argument("--out", default=None, help="output folder (default: <run>/predictions)")
    p.add_argument("--span-s", type=parse_span, default=(0.0, 10.0),
                   help="denoisers: START,END in s of the plotted span (default 0,10)")
    p.add_argument("--beats", choices=["auto", "atr", "detect"], default="auto",
                   help="beat classifiers: beats from the .atr file (auto: when present) or XQRS")
    p.add_argument("--lead", default=None,
                   help="beat classifiers: record lead to use (default: the run's windows.lead)")
    p.add_argument("--flat-s", type=float, default=1.0,
                   help="report a lead constant for longer than this many seconds (default 1)")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("-v", "--verbose", action="store_true")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.verbose)
    run = load_run(args.run)
    out_dir = Path(args.out) if args.out else run.path / "predictions"
    target = Path(args.record)
    bases = list_records(target)
    if not target.is_dir():
        s = predict_record(run, bases[0], out_dir, args)
        print(one_line_summary(s))
        return 0
    results, failed = [], 0
    for base in bases:
        try:
            s = predict_record(run, base, out_dir, args)
            results.append({"record": base.name, "ok": True, "summary": one_line_summary(s)})
            print(one_line_summary(s))
        except PipelineError as exc:
            failed += 1
            results.append({"record": base.name, "ok": False, "error": str(exc)})
            print(f"error: {exc}", file=sys.stderr)
    atomic_write_json(out_dir / "predict_summary.json",
                      {"run": str(run.path), "folder": str(target), "records": results,
                       "failed": failed})
    print(f"{len(bases) - failed} of {len(bases)} records done; summary in "
          f"{out_dir / 'predict_summary.json'}")
    return 2 if failed else 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
