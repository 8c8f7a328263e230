"""Hyperparameter search: ``python -m pipeline.tune --task T --model M``.

Command over :mod:`pipeline.training.tuning`.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from pipeline.core import cli
from pipeline.data.tasks import check_model, get_task
from pipeline.training.tuning import tune


def build_parser() -> argparse.ArgumentParser:
    p = cli.command_parser(
        "tune",
        "Keras Tuner search over a model's search_space and the training "
        "hyperparameters, scored on validation patients; resumable (rerun to continue).",
    )
    p.add_argument("--task", default=None, help="task (default: train.task)")
    p.add_argument("--model", default=None, help="model (default: train.model)")
    p.add_argument("--algorithm", choices=["hyperband", "random", "bayesian"], default=None,
                   help="search algorithm (default: tune.algorithm)")
    p.add_argument("--out", default=None, help="search folder (default: Research_Runs/tuning/<task>_<model>)")
    return p


def main(argv: list[str] | None = None) -> int:
    args, cfg = cli.parse(build_parser(), argv)
    task = get_task(args.task or cfg.train.task)
    check_model(task, args.model or cfg.train.model)  # before any data is read
    model = args.model or cfg.train.model
    res = tune(cfg, task, model, Path(args.out) if args.out else None, args.algorithm)
    if "worker" in res:  # a distributed search's worker: the chief writes the results
        print(json.dumps(res))
        return 0
    print(json.dumps({k: res[k] for k in ("model_kwargs", "train", "trials", "completed_trials",
                                           "objective", "best_score")}, default=str))
    return 0


if __name__ == "__main__":
    cli.run(main)
