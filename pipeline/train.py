"""Training of denoisers and classifiers: ``python -m pipeline.train --task T --model M``.

Command over :mod:`pipeline.training.trainer`. A finished run is reported before anything is
written; a run folder trained with other settings is refused (``--force`` starts it over);
the folder is locked while this process writes it; a run that fails before its first
checkpoint leaves no stub folder.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

from pipeline.core import cli
from pipeline.core.config import PipelineConfig, config_from_args
from pipeline.core.io_utils import PipelineError
from pipeline.data.tasks import check_pairing, get_task
from pipeline.training import run_folder
from pipeline.training.strategy import is_chief
from pipeline.training.trainer import apply_hparams, train


def build_parser() -> argparse.ArgumentParser:
    p = cli.command_parser(
        "train",
        "Train a denoiser or classifier on the training patients (validation on "
        "held-out training patients). Rerun the same command to resume an interrupted run.",
    )
    p.add_argument("--task", default=None, help="task name (default: train.task); see pipeline/data/tasks.py")
    p.add_argument("--model", default=None, help="registered model name (default: train.model)")
    p.add_argument("--model-kwargs", default=None, help="JSON of builder keyword arguments")
    p.add_argument("--hparams", default=None,
                   help="best_hparams.json of a tuning run (model kwargs and learning rate)")
    p.add_argument("--run-dir", default=None, help="run folder (default: Research_Runs/<date>_<task>_<model>)")
    p.add_argument("--tag", default="", help="suffix of the run folder name")
    p.add_argument("--checkpoint-every-s", type=float, default=300.0,
                   help="also checkpoint within an epoch every this many seconds (0: off)")
    p.add_argument("--force", action="store_true",
                   help="start an existing run folder over, even one trained with other settings")
    return p


def resolve_config(args: argparse.Namespace) -> PipelineConfig:
    """The config with ``--task/--model/--model-kwargs/--hparams`` applied and the
    task/model pairing checked (before any data is read)."""
    cfg = config_from_args(args)
    over = {k: v for k, v in (("task", args.task), ("model", args.model)) if v}
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
    return cfg


def _train_as_chief(cfg: PipelineConfig, run_dir: Path, args: argparse.Namespace) -> dict | None:
    """Locks, checks and (re)starts the run folder, then trains; None: already finished."""
    with run_folder.removed_if_failed_early(run_dir), run_folder.locked(run_dir):
        if args.force:
            run_folder.clear_run(run_dir)
        if run_folder.check_existing_run(cfg, run_dir) == "finished":
            return None
        run_folder.new_run_dir(cfg, cfg.train.task, cfg.train.model, run_dir=run_dir)
        return train(cfg, run_dir, checkpoint_every_s=args.checkpoint_every_s,
                     verbose=2 if args.verbose else 0)


def main(argv: list[str] | None = None) -> int:
    args, _ = cli.parse(build_parser(), argv)
    cfg = resolve_config(args)
    run_dir = run_folder.run_dir_path(cfg.train.task, cfg.train.model, args.tag,
                                      run_dir=Path(args.run_dir) if args.run_dir else None)
    if is_chief(cfg):
        summary = _train_as_chief(cfg, run_dir, args)
    else:  # a multi-worker worker: writes only into its temporary folder
        summary = train(cfg, run_dir, checkpoint_every_s=0, verbose=2 if args.verbose else 0)
    if summary is None:
        print(f"{run_dir}: training already finished; nothing to do (--force to start over)")
        return 0
    print(json.dumps({k: summary.get(k) for k in ("task", "model", "epochs_done", "best_epoch",
                                                   "selection_metric", "best_value",
                                                   "best_val_loss", "stop_reason")}))
    print(f"run folder: {run_dir}")
    return 0


if __name__ == "__main__":
    cli.run(main)
