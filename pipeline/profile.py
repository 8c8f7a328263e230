"""Model stages of ``run_full_pipeline.sh``: train, tune, kfold, final_eval over a profile.

Command over :mod:`pipeline.training.profiles`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pipeline.core.config import add_config_args, config_from_args
from pipeline.core.io_utils import atomic_write_json, run_cli, setup_logging
from pipeline.training.profiles import STAGES, run_stage


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m pipeline.profile",
        description="Run one model stage (train, tune, kfold, final_eval) over the profile's "
        "task:model pairs; reruns resume or skip finished runs.",
    )
    p.add_argument("stage", choices=STAGES)
    add_config_args(p)
    p.add_argument("--all-models", action="store_true",
                   help="every registered model (train and final_eval stages)")
    p.add_argument("--force", action="store_true", help="redo final evaluations")
    p.add_argument("-v", "--verbose", action="store_true")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.verbose)
    cfg = config_from_args(args)
    base: list[str] = []
    if args.config:
        base += ["--config", args.config]
    for o in args.overrides:
        base += ["--set", o]
    if args.data_dir:
        base += ["--data-dir", args.data_dir]
    done = run_stage(cfg, args.stage, base, args.all_models, args.force)
    atomic_write_json(Path(cfg.profile.runs_dir) / f"_{args.stage}.json", done)
    print(f"{args.stage}: {len(done)} runs: " + ", ".join(f"{d['task']}:{d['model']}" for d in done))
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
