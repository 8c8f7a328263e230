"""Patient-grouped k-fold evaluation: ``python -m pipeline.kfold --task T --model M``.

Command over :mod:`pipeline.protocol.kfold`.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from pipeline.core import cli
from pipeline.data.tasks import check_model, get_task
from pipeline.protocol.kfold import kfold_markdown, run_kfold


def build_parser() -> argparse.ArgumentParser:
    p = cli.command_parser(
        "kfold",
        "Patient-grouped, class-stratified k-fold evaluation inside the training "
        "records (normalization re-fitted per fold).",
    )
    p.add_argument("--task", default=None)
    p.add_argument("--model", default=None)
    p.add_argument("--hparams", default=None, help="best_hparams.json (default: the tuning result)")
    p.add_argument("--folds", type=int, nargs="+", default=None, help="run only these folds")
    p.add_argument("--out", default=None, help="run folder")
    return p


def main(argv: list[str] | None = None) -> int:
    args, cfg = cli.parse(build_parser(), argv)
    task = get_task(args.task or cfg.train.task)
    check_model(task, args.model or cfg.train.model)  # before any data is read
    res = run_kfold(cfg, task, args.model or cfg.train.model, Path(args.out) if args.out else None,
                    Path(args.hparams) if args.hparams else None, args.folds)
    print(kfold_markdown(res))
    print(json.dumps(res["aggregate"], default=str))
    return 0


if __name__ == "__main__":
    cli.run(main)
