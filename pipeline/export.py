"""Export a trained run or a preset for deployment (parity checked), or turn a run into a preset.

Command over :mod:`pipeline.serving.export` and :mod:`pipeline.serving.presets`:
``--run RUN --format savedmodel|tflite|onnx`` (under ``<run>/export/``), ``--preset NAME
--format ...`` (under ``models/presets/<name>/export/``), and ``--run RUN --format preset
--name NAME --description TEXT [--smoke]`` (writes ``models/presets/<name>/``).
"""

from __future__ import annotations

import argparse

from pipeline.core import cli
from pipeline.core.io_utils import PipelineError
from pipeline.serving import preset_card, presets
from pipeline.serving.export import FLOAT_PARITY_TOL, FORMATS, export_run
from pipeline.serving.run_loader import CHECKPOINTS


def build_parser() -> argparse.ArgumentParser:
    p = cli.command_parser(
        "export",
        "Export a run's best model (or a preset's) to SavedModel, TFLite (optionally "
        "int8) or ONNX, or turn a run into a preset (--format preset). Exports go "
        "under <run>/export/, with parity against the Keras model in export.json.",
        config=False,
    )
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--run", help="run folder (Research_Runs/<run>)")
    src.add_argument("--preset", help="preset name (models/presets/<name>) to export")
    p.add_argument("--format", required=True, choices=[*FORMATS, "preset"],
                   help="preset: turn --run into models/presets/<--name>/")
    p.add_argument("--name", default=None, help="--format preset: the preset's name")
    p.add_argument("--description", default=None, help="--format preset: one-line description")
    p.add_argument("--smoke", action="store_true",
                   help="--format preset: mark it a smoke model (its card carries a warning)")
    p.add_argument("--warning", default=None, help="--format preset --smoke: the warning text")
    p.add_argument("--force", action="store_true", help="--format preset: replace an existing preset")
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
    return p


def _save_preset(args: argparse.Namespace) -> int:
    if not args.run or not args.name:
        raise PipelineError("--format preset needs --run RUN and --name NAME")
    folder = presets.save_preset(args.run, args.name, args.description or "", smoke=args.smoke,
                                 force=args.force, warning=args.warning)
    card = presets.read_card(folder.name, folder.parent)
    print(f"preset {folder}: {card['model_file']['bytes']} bytes, sha256 "
          f"{card['model_file']['sha256'][:16]}...; {preset_card.headline(card)}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args, _ = cli.parse(build_parser(), argv)
    if args.format == "preset":
        if args.preset:
            raise PipelineError("--format preset turns a run into a preset: use --run RUN")
        return _save_preset(args)
    kwargs = dict(int8=args.int8, parity_examples=args.parity_examples,
                  calibration_examples=args.calibration_examples, seed=args.seed,
                  parity_tol=args.parity_tol)
    if args.preset:
        e = presets.export_preset(args.preset, args.format, **kwargs)
    else:
        e = export_run(args.run, args.format, data_dir=args.data_dir, checkpoint=args.checkpoint,
                       **kwargs)
    p = e["parity"]
    extra = "".join(f", {k} {p[k]:.4g}" for k in ("argmax_agreement", "accuracy_drop",
                                                   "label_agreement_at_0.5", "mse_keras",
                                                   "mse_export") if k in p)
    print(f"{e['format']}: {e['path']} ({e.get('quantization', e.get('batch', ''))}); parity on "
          f"{p['examples']} examples ({p['data']}): max |diff| {p['max_abs_diff']:.3g}{extra}; "
          f"checkpoint {e['checkpoint']}")
    return 0


if __name__ == "__main__":
    cli.run(main)
