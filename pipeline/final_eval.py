"""Final held-out evaluation: ``--task T --model M`` (retrain and test once), ``--run RUN``
(a trained run with its own settings; ``--external DIR``: outside WFDB records), ``--best-of
RUN RUN ...`` (only the run validation ranks first; :mod:`pipeline.protocol.best_of`) or
``--noisy TYPES`` (denoise, then classify; :mod:`pipeline.serving.noisy_beats`). Over
:mod:`pipeline.protocol.final`.
"""

from __future__ import annotations

import argparse
import functools
from pathlib import Path

from pipeline.core import cli
from pipeline.core.io_utils import PipelineError
from pipeline.data.tasks import check_model, get_task
from pipeline.protocol import best_of
from pipeline.protocol import final as final_lib
from pipeline.protocol.run_settings import load_run_settings
from pipeline.serving import noisy_beats


def build_parser() -> argparse.ArgumentParser:
    p = cli.command_parser(
        "final_eval",
        "Evaluate once on the held-out test split (MIT-BIH DS2 / PTB-XL fold 10), "
        "with bootstrap 95 %% intervals, per-example predictions and a line in the test-read "
        "ledger. The only command that reads the test split.",
    )
    p.add_argument("--task", default=None, help="task (default: train.task; with --run: the run's)")
    p.add_argument("--model", default=None, help="model (default: train.model; with --run: the run's)")
    p.add_argument("--run", default=None, help="evaluate this training run's best checkpoint "
                   "with the run's own task, config, split and normalization")
    p.add_argument("--classic", action="store_true", help="the classic baseline (gradient-"
                   "boosted trees on rhythm and morphology features) instead of --model")
    p.add_argument("--ensemble", nargs="+", default=None, metavar="RUN",
                   help="the mean probabilities of these runs (same task, split, normalization)")
    p.add_argument("--best-of", nargs="+", default=None, metavar="RUN",
                   help="evaluate the one of these runs (e.g. seeds of one recipe) whose best "
                   "checkpoint scored highest on validation; the others are never read")
    p.add_argument("--stored", action="store_true", help="with --ensemble: average the "
                   "evaluated runs' stored test probabilities (any beat classifiers, classic too)")
    p.add_argument("--external", default=None, metavar="DIR", help="with --run (classic folders "
                   "too): score it on this folder of WFDB records (-> RUN/external_<name>/)")
    p.add_argument("--lead", default=None, help="with --external: record lead to classify "
                   "(default: the run's windows.lead)")
    noisy_beats.add_arguments(p)
    p.add_argument("--hparams", default=None, help="best_hparams.json to retrain with")
    p.add_argument("--kfold", default=None, help="k-fold run whose median best epoch sets the "
                   "retrain's epochs (default: the newest matching *_kfold run)")
    p.add_argument("--out", default=None, help="run folder for the retrained model")
    p.add_argument("--tag", default="final", help="run folder name suffix")
    p.add_argument("--max-test-windows", type=int, default=0, help="denoising: a fixed random "
                   "subset of this many test windows per condition (0: all)")
    p.add_argument("--bootstrap", type=int, default=None, help="bootstrap resamples (default: eval.bootstrap_samples)")
    p.add_argument("--force", action="store_true", help="evaluate again (previous files: *.prev)")
    return p


def _request(args: argparse.Namespace, n_boot_default: int) -> final_lib.Request:
    n_boot = args.bootstrap if args.bootstrap is not None else n_boot_default
    if n_boot < 0 or args.max_test_windows < 0:
        raise PipelineError(f"--bootstrap and --max-test-windows must be >= 0. Received: "
                            f"{n_boot}, {args.max_test_windows}")
    if args.run is None and (args.external or args.lead):
        raise PipelineError("--external and --lead score a trained run: give --run RUN")
    return final_lib.Request(max_windows=args.max_test_windows, n_boot=n_boot, force=args.force,
                   external=Path(args.external) if args.external else None, lead=args.lead)


def _ensemble(args: argparse.Namespace, cfg) -> Path:
    if args.run or args.external or args.hparams or args.kfold or not args.out:
        raise PipelineError("--ensemble RUN RUN ... needs --out DIR and takes no --run, "
                            "--external, --hparams or --kfold")
    if args.stored:
        return final_lib.evaluate_stored_ensemble(
            [Path(r) for r in args.ensemble], Path(args.out), _request(args, cfg.eval.bootstrap_samples))
    members = [load_run_settings(Path(r), cfg, args.overrides, task_name=args.task)
               for r in args.ensemble]
    return final_lib.evaluate_ensemble(members, Path(args.out),
                             _request(args, members[0].cfg.eval.bootstrap_samples))


def _run(args: argparse.Namespace, cfg) -> Path:
    if args.hparams or args.kfold or args.out:
        raise PipelineError("--run evaluates a trained run as it is; --hparams, --kfold "
                            "and --out belong to the retrain mode")
    return final_lib.evaluate_folder(Path(args.run), cfg, args.overrides, task_name=args.task,
                                     model_name=args.model,
                                     request_for=functools.partial(_request, args))


def _best_of(args: argparse.Namespace, cfg) -> Path:
    if args.run or args.external or args.hparams or args.kfold or args.out or args.classic:
        raise PipelineError("--best-of RUN RUN ... takes no --run, --external, --hparams, "
                            "--kfold, --out or --classic")
    return best_of.evaluate_best_of([Path(r) for r in args.best_of], cfg, args.overrides,
                                    task_name=args.task, model_name=args.model,
                                    request_for=functools.partial(_request, args))


def _noisy(args: argparse.Namespace, cfg) -> Path:
    if args.run is None or args.external or args.hparams or args.kfold or args.classic:
        raise PipelineError("--noisy TYPES needs --run CLASSIFIER and takes no --external, "
                            "--hparams, --kfold or --classic")
    n_boot = args.bootstrap if args.bootstrap is not None else cfg.eval.bootstrap_samples
    return noisy_beats.evaluate_folders(
        cfg, Path(args.run), Path(args.denoiser) if args.denoiser else None,
        noisy_beats.request_from_flags(args.noisy, args.snr_db, not args.no_detect),
        out_dir=Path(args.out) if args.out else None, n_boot=n_boot, force=args.force)


def main(argv: list[str] | None = None) -> int:
    args, cfg = cli.parse(build_parser(), argv)
    if args.stored and args.ensemble is None:
        raise PipelineError("--stored belongs to --ensemble RUN RUN ... (stored predictions)")
    if args.best_of is not None and args.ensemble is not None:
        raise PipelineError("--best-of and --ensemble are two ways to use several runs; give one")
    if args.denoiser and not args.noisy:
        raise PipelineError("--denoiser belongs to --noisy TYPES (denoise, then classify)")
    if args.noisy is not None:
        out = _noisy(args, cfg)
    elif args.ensemble is not None:
        out = _ensemble(args, cfg)
    elif args.best_of is not None:
        out = _best_of(args, cfg)
    elif args.classic:
        request = _request(args, cfg.eval.bootstrap_samples)
        out = final_lib.evaluate_classic(cfg, get_task(args.task or cfg.train.task),
                               out_dir=Path(args.out) if args.out else None, tag=args.tag,
                               request=request)
    elif args.run is not None:
        out = _run(args, cfg)
    else:
        task = get_task(args.task or cfg.train.task)  # UnknownNameError is a PipelineError
        check_model(task, args.model or cfg.train.model)  # before any data is read
        request = _request(args, cfg.eval.bootstrap_samples)
        out = final_lib.retrain_and_evaluate(cfg, task, args.model or cfg.train.model,
                                   hparams=Path(args.hparams) if args.hparams else None,
                                   out_dir=Path(args.out) if args.out else None, tag=args.tag,
                                   kfold_run=Path(args.kfold) if args.kfold else None,
                                   request=request)
    print((out / "report.md").read_text())
    print(f"run folder: {out}")
    return 0


if __name__ == "__main__":
    cli.run(main)
