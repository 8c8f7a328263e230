"""The steps of ``run_full_pipeline.sh`` that read a profile: plan, model stages, timings, summary.

``python -m pipeline.profile plan|train|tune|kfold|final_eval|record|summary --config cpu``

Command over :mod:`pipeline.training.profiles` (the model stages and ``--budget-hours``),
:mod:`pipeline.training.profile_plan` (the plan and ``plan.json``) and
:mod:`pipeline.training.profile_summary` (``timings.json`` and ``summary.json``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pipeline.core.config import add_config_args, config_from_args
from pipeline.core.io_utils import atomic_write_json, run_cli, setup_logging
from pipeline.training import profile_plan, profile_summary
from pipeline.training.profiles import STAGES, budget_factor, run_stage


def _common(p: argparse.ArgumentParser, budget: bool = True) -> None:
    add_config_args(p)
    if budget:
        p.add_argument("--budget-hours", type=float, default=None, metavar="H",
                       help="scale every training budget by H / profile.budget_hours")
    p.add_argument("-v", "--verbose", action="store_true")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m pipeline.profile",
        description="The profile's steps: the plan, one model stage (train, tune, kfold, "
        "final_eval; reruns resume or skip finished runs), stage timings and the summary.",
    )
    sub = p.add_subparsers(dest="command", required=True)
    for stage in STAGES:
        s = sub.add_parser(stage, help=f"run the {stage} stage over the profile's entries")
        _common(s)
        s.add_argument("--all-models", action="store_true",
                       help="every registered model (train and final_eval stages)")
        s.add_argument("--force", action="store_true", help="redo final evaluations")
    plan = sub.add_parser("plan", help="print the plan and write <runs_dir>/plan.json")
    _common(plan)
    plan.add_argument("--stages", default=" ".join(profile_plan.ALL_STAGES),
                      help="the stages that will run (space-separated)")
    plan.add_argument("--begin", type=float, default=None, metavar="UNIX_S",
                      help="also open a new timing part that started at this time")
    rec = sub.add_parser("record", help="add a stage's wall seconds to <runs_dir>/timings.json")
    _common(rec, budget=False)
    rec.add_argument("--stage", required=True)
    rec.add_argument("--seconds", type=float, required=True)
    rec.add_argument("--failed", action="store_true")
    summ = sub.add_parser("summary", help="print the stage times and results; write summary.json")
    _common(summ, budget=False)
    return p


def profile_name(config: str | None) -> str:
    """``cpu`` for ``--config cpu`` or ``pipeline/configs/cpu.yaml``; ``full`` without one."""
    return Path(config).stem if config else "full"


def base_args(args: argparse.Namespace) -> list[str]:
    """The config arguments every stage subprocess gets."""
    out = ["--config", args.config] if args.config else []
    for o in args.overrides:
        out += ["--set", o]
    return out + (["--data-dir", args.data_dir] if args.data_dir else [])


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.verbose)
    cfg = config_from_args(args)
    runs, name = Path(cfg.profile.runs_dir), profile_name(args.config)
    if args.command == "plan":
        plan = profile_plan.make_plan(cfg, name, args.stages.split(), args.budget_hours)
        print(profile_plan.plan_text(plan))
        print(f"plan written to {profile_plan.write_plan(plan)}")
        if args.begin is not None:
            profile_summary.begin_part(runs, name, args.begin)
        return 0
    if args.command == "record":
        profile_summary.record_stage(runs, name, args.stage, args.seconds, failed=args.failed)
        return 0
    if args.command == "summary":
        summary = profile_summary.write_summary(runs, name)
        print(profile_summary.summary_text(summary))
        print(f"summary written to {runs / profile_summary.SUMMARY_FILE}")
        return 0
    factor = budget_factor(cfg, args.budget_hours)
    done = run_stage(cfg, args.command, base_args(args), args.all_models, args.force, factor)
    atomic_write_json(runs / f"_{args.command}.json", done)
    print(f"{args.command}: {len(done)} runs: " + ", ".join(f"{d['task']}:{d['model']}" for d in done))
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
