"""A denoiser run's pass-through gate, chosen on its validation patients.

``python -m pipeline.tune_gate --run RUN``.

Command over :mod:`pipeline.protocol.gate_tuning`: scores the run's best checkpoint with and
without each gate of :mod:`pipeline.evaluation.pass_through` on the run's validation records
and writes the choice into the run folder (``pass_through_gate.json``, ``gate_tuning.md``),
which ``final_eval --run RUN`` and ``predict --run RUN`` then apply. The test split is never
read.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from pipeline.core import cli
from pipeline.core.io_utils import PipelineError
from pipeline.protocol.gate_tuning import tune_gate, write_report
from pipeline.protocol.run_settings import load_run_settings


def build_parser() -> argparse.ArgumentParser:
    p = cli.command_parser(
        "tune_gate",
        "Chooses a denoiser run's pass-through gate (leave input that looks clean untouched) "
        "on its validation patients and stores it in the run folder.",
    )
    p.add_argument("--run", required=True, help="a denoiser run folder (mitdb_denoise)")
    cli.add_max_windows(p, 300, "validation windows")
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, cfg = cli.parse(parser, argv)
    cli.check_max_windows(parser, args)
    settings = load_run_settings(Path(args.run), cfg, args.overrides)
    if not settings.task.denoising:
        raise PipelineError(f"{args.run}: a pass-through gate is for denoiser runs; this run's "
                            f"task is {settings.task.name}")
    res = tune_gate(settings, args.max_windows)
    path = write_report(res, settings.run_dir)
    print(json.dumps({"chosen": res["chosen"], "file": str(path),
                      "no_gate_val_mean_snr_imp_db": res["no_gate_val_mean_snr_imp_db"],
                      "best_val_mean_snr_imp_db": max(r["val_mean_snr_imp_db"]
                                                      for r in res["grid"])}))
    return 0


if __name__ == "__main__":
    cli.run(main)
