"""Patient-grouped k-fold evaluation: ``python -m pipeline.kfold --task T --model M``.

Command over :mod:`pipeline.protocol.kfold`.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from pipeline.core.config import add_config_args, config_from_args
from pipeline.core.io_utils import run_cli, setup_logging
from pipeline.data.tasks import check_model, get_task
from pipeline.protocol.kfold import kfold_markdown, run_kfold


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m pipeline.kfold",
        description="Patient-grouped, class-stratified k-fold evaluation inside the training "
        "records (normalization re-fitted per fold).",
    )
    add_config_args(p)
    p.add_argument("--task", default=None)
    p.add_argument("--model", default=None)
    p.add_argument("--hparams", default=None, help="best_hparams.json (default: the tuning result)")
    p.add_argument("--folds", type=int, nargs="+", default=None, help="run only these folds")
    p.add_argument("--out", default=None, help="run folder")
    p.add_argument("-v", "--verbose", action="store_true")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.verbose)
    cfg = config_from_args(args)
    task = get_task(args.task or cfg.train.task)
    check_model(task, args.model or cfg.train.model)  # before any data is read
    res = run_kfold(cfg, task, args.model or cfg.train.model, Path(args.out) if args.out else None,
                    Path(args.hparams) if args.hparams else None, args.folds)
    print(kfold_markdown(res))
    print(json.dumps(res["aggregate"], default=str))
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
