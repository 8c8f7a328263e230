"""Export a trained run for deployment, with parity numbers against the Keras model.

Command over :mod:`pipeline.serving.export`.
"""

from __future__ import annotations

import argparse
import sys

from pipeline.core.io_utils import run_cli, setup_logging
from pipeline.serving.export import FLOAT_PARITY_TOL, FORMATS, export_run
from pipeline.serving.run_loader import CHECKPOINTS


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m pipeline.export",
        description="Export a run's best model to SavedModel, TFLite (optionally int8) or ONNX "
        "under <run>/export/, with parity against the Keras model in export.json.",
    )
    p.add_argument("--run", required=True, help="run folder (Research_Runs/<run>)")
    p.add_argument("--format", required=True, choices=list(FORMATS))
    p.add_argument("--int8", action="store_true",
                   help="TFLite post-training int8 quantization calibrated on training data")
    p.add_argument("--data-dir", default=None,
                   help="data folder holding the run's TFRecords (default: the run's config)")
    p.add_argument("--checkpoint", choices=list(CHECKPOINTS), default="best",
                   help="best.keras (default; refused when missing) or last.keras")
    p.add_argument("--parity-examples", type=int, default=256,
                   help="validation examples compared with Keras (>= 1)")
    p.add_argument("--parity-tol", type=float, default=None,
                   help=f"largest max |diff| accepted (default {FLOAT_PARITY_TOL:g} for float "
                   "formats, unchecked for int8); above it the export is not kept")
    p.add_argument("--calibration-examples", type=int, default=200,
                   help="int8: training examples for calibration (>= 1)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("-v", "--verbose", action="store_true")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.verbose)
    e = export_run(args.run, args.format, int8=args.int8, data_dir=args.data_dir,
                   parity_examples=args.parity_examples,
                   calibration_examples=args.calibration_examples, seed=args.seed,
                   checkpoint=args.checkpoint, parity_tol=args.parity_tol)
    p = e["parity"]
    extra = "".join(f", {k} {p[k]:.4g}" for k in ("argmax_agreement", "accuracy_drop",
                                                   "label_agreement_at_0.5", "mse_keras",
                                                   "mse_export") if k in p)
    print(f"{e['format']}: {e['path']} ({e.get('quantization', e.get('batch', ''))}); parity on "
          f"{p['examples']} examples ({p['data']}): max |diff| {p['max_abs_diff']:.3g}{extra}; "
          f"checkpoint {e['checkpoint']}")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
