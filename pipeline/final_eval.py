"""Final held-out evaluation: ``python -m pipeline.final_eval --task T --model M``.

Command over :mod:`pipeline.protocol.final`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pipeline.core.config import add_config_args, config_from_args
from pipeline.core.io_utils import run_cli, setup_logging
from pipeline.data.tasks import get_task
from pipeline.protocol.final import run


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m pipeline.final_eval",
        description="Evaluate once on the held-out test split (MIT-BIH DS2 / PTB-XL fold 10), "
        "with bootstrap 95 %% intervals. The only script that reads the test split.",
    )
    add_config_args(p)
    p.add_argument("--task", default=None, help="task (default: train.task)")
    p.add_argument("--model", default=None, help="model (default: train.model)")
    p.add_argument("--run", default=None, help="evaluate this training run's best checkpoint "
                   "instead of retraining")
    p.add_argument("--hparams", default=None, help="best_hparams.json to retrain with")
    p.add_argument("--kfold", default=None, help="k-fold run whose median best epoch sets the "
                   "retrain's epochs (default: the newest matching *_kfold run; see "
                   "eval.final_epochs)")
    p.add_argument("--out", default=None, help="run folder for the retrained model")
    p.add_argument("--tag", default="final", help="run folder name suffix")
    p.add_argument("--max-test-windows", type=int, default=0,
                   help="denoising: evaluate on a fixed random subset of this many test windows per "
                   "condition (0: all)")
    p.add_argument("--bootstrap", type=int, default=None, help="bootstrap resamples (default: eval.bootstrap_samples)")
    p.add_argument("-v", "--verbose", action="store_true")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.verbose)
    cfg = config_from_args(args)
    task = get_task(args.task or cfg.train.task)
    model = args.model or cfg.train.model
    run_dir = run(cfg, task, model, from_run=Path(args.run) if args.run else None,
                  hparams=Path(args.hparams) if args.hparams else None,
                  out_dir=Path(args.out) if args.out else None,
                  max_windows=args.max_test_windows,
                  n_boot=args.bootstrap if args.bootstrap is not None else cfg.eval.bootstrap_samples,
                  tag=args.tag, kfold_run=Path(args.kfold) if args.kfold else None)
    print((run_dir / "report.md").read_text())
    print(f"run folder: {run_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
