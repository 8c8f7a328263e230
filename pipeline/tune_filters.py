"""Classic baseline settings on validation patients: ``python -m pipeline.tune_filters``.

Command over :mod:`pipeline.protocol.filter_tuning` (the wavelet shrinkage's grid, scored on
the denoising split's validation records with the ``val`` noise segment; the test split is
never read).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
from pathlib import Path

from pipeline.core import cli
from pipeline.protocol.filter_tuning import tune_wavelet, write_report
from pipeline.training.run_folder import RUNS_DIR


def build_parser() -> argparse.ArgumentParser:
    p = cli.command_parser(
        "tune_filters",
        "Scores the wavelet baseline's settings on the validation patients of the denoising "
        "split (mean SNR improvement over every noise type and level) and writes the ranking.",
    )
    cli.add_max_windows(p, 600, "validation windows")
    p.add_argument("--out", default=None,
                   help="output folder (default: Research_Runs/<date>_wavelet_tuning)")
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, cfg = cli.parse(parser, argv)
    cli.check_max_windows(parser, args)
    out = Path(args.out) if args.out else RUNS_DIR / f"{dt.date.today():%Y-%m-%d}_wavelet_tuning"
    res = tune_wavelet(cfg, args.max_windows)
    write_report(res, out)
    print(json.dumps({"chosen": res["chosen"], "out": str(out),
                      "val_mean_snr_imp_db": max(r["val_mean_snr_imp_db"] for r in res["grid"]),
                      "bandpass_val_mean_snr_imp_db": res["bandpass_val_mean_snr_imp_db"]}))
    return 0


if __name__ == "__main__":
    cli.run(main)
