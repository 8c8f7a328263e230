"""Training of denoisers and classifiers: ``python -m pipeline.train --task T --model M``.

Command over :mod:`pipeline.training.trainer`.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

from pipeline.core.config import add_config_args, config_from_args
from pipeline.core.io_utils import PipelineError, run_cli, setup_logging
from pipeline.data.tasks import check_pairing, get_task
from pipeline.training import run_folder as X
from pipeline.training.trainer import apply_hparams, train


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m pipeline.train",
        description="Train a denoiser or classifier on the training patients (validation on "
        "held-out training patients). Rerun the same command to resume an interrupted run.",
    )
    add_config_args(p)
    p.add_argument("--task", default=None, help="task name (default: train.task); see pipeline/tasks.py")
    p.add_argument("--model", default=None, help="registered model name (default: train.model)")
    p.add_argument("--model-kwargs", default=None, help="JSON of builder keyword arguments")
    p.add_argument("--hparams", default=None,
                   help="best_hparams.json of a tuning run (model kwargs and learning rate)")
    p.add_argument("--run-dir", default=None, help="run folder (default: Research_Runs/<date>_<task>_<model>)")
    p.add_argument("--tag", default="", help="suffix of the run folder name")
    p.add_argument("--checkpoint-every-s", type=float, default=300.0,
                   help="also checkpoint within an epoch every this many seconds (0: off)")
    p.add_argument("-v", "--verbose", action="store_true")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.verbose)
    cfg = config_from_args(args)
    over = {}
    if args.task:
        over["task"] = args.task
    if args.model:
        over["model"] = args.model
    kwargs = dict(cfg.train.model_kwargs)
    if args.model_kwargs:
        try:
            kwargs.update(json.loads(args.model_kwargs))
        except json.JSONDecodeError as exc:
            raise PipelineError(f"--model-kwargs is not valid JSON ({exc})") from exc
    cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, **over, model_kwargs=kwargs))
    cfg, kwargs = apply_hparams(cfg, args.hparams, kwargs)
    cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, model_kwargs=kwargs))
    task = get_task(cfg.train.task)
    # Fail fast on an impossible pairing, before any data is read.
    from models import registry

    kind = "denoiser" if task.denoising else "classifier"
    try:
        spec = registry.get(kind, cfg.train.model)
    except KeyError as exc:
        raise PipelineError(str(exc).strip('"')) from None
    try:
        check_pairing(task, kind, cfg.train.model, spec.input_kind)
    except ValueError as exc:
        raise PipelineError(str(exc)) from None
    run_dir = X.new_run_dir(cfg, task.name, cfg.train.model, args.tag,
                            run_dir=Path(args.run_dir) if args.run_dir else None)
    summary = train(cfg, run_dir, checkpoint_every_s=args.checkpoint_every_s,
                    verbose=2 if args.verbose else 0)
    print(json.dumps({k: summary[k] for k in ("task", "model", "epochs_done", "best_epoch",
                                               "best_val_loss", "stop_reason")}))
    print(f"run folder: {run_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
