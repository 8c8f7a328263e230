"""Cost profile of Keras models: parameters, size on disk, FLOPs, CPU latency, peak memory.

Command over :mod:`pipeline.serving.cost`.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from pipeline.core import cli
from pipeline.core.io_utils import PipelineError, atomic_write_json
from pipeline.serving import cost as cost_lib


def build_parser() -> argparse.ArgumentParser:
    p = cli.command_parser(
        "cost",
        "Parameters, size, FLOPs, CPU latency and peak memory of models.",
        config=False,
    )
    p.add_argument("--kind", required=True, choices=("classifier", "denoiser"))
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--all", action="store_true", help="every registered model of --kind")
    which.add_argument("--name", help="one registered model (profiled in this process)")
    which.add_argument(
        "--builder", help="MODULE:FUNCTION or FILE.py:FUNCTION of an unregistered builder"
    )
    p.add_argument("--input-shape", help="one example's shape, e.g. 720,1 (default per model)")
    p.add_argument("--n-outputs", type=int, default=cost_lib.DEFAULT_N_OUTPUTS)
    p.add_argument("--kwargs", default="{}", help="builder keyword arguments as JSON")
    p.add_argument("--batch", type=int, default=64, help="batched latency's batch size")
    p.add_argument("--runs", type=int, default=30)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--budget-s", type=float, default=20.0, help="soft time limit per batch")
    p.add_argument("--threads", type=int, default=0, help="TF threads (0: TF default)")
    p.add_argument("--timeout-s", type=float, default=1800.0, help="per model, with --all")
    p.add_argument("--out", type=Path, help="Markdown table; JSON written beside it")
    p.add_argument("--json-out", type=Path, help=argparse.SUPPRESS)
    return p


def main(argv: list[str] | None = None) -> int:
    args, _ = cli.parse(build_parser(), argv)
    if args.all:
        from models import registry

        names = registry.names(args.kind)
        if not names:
            raise PipelineError(f"no {args.kind} is registered")
        shape = tuple(int(s) for s in args.input_shape.split(",")) if args.input_shape else None
        rows: list[dict[str, Any]] = []
        for i, name in enumerate(names, 1):
            cost_lib.log.info("[%d/%d] profiling %s %s", i, len(names), args.kind, name)
            try:
                rows.append(
                    cost_lib.measure_model_subprocess(
                        args.kind,
                        name,
                        shape,
                        args.n_outputs,
                        json.loads(args.kwargs),
                        batch_size=args.batch,
                        runs=args.runs,
                        warmup=args.warmup,
                        time_budget_s=args.budget_s,
                        threads=args.threads,
                        timeout_s=args.timeout_s,
                    )
                )
            except PipelineError as exc:
                cost_lib.log.error("%s", exc)
                rows.append({"name": name, "kind": args.kind, "error": str(exc)})
        failed = [r["name"] for r in rows if "error" in r]
        if args.out:
            cost_lib.write_table(args.out, rows, cost_lib.run_meta(args))
        else:
            print(cost_lib.markdown_table(rows, cost_lib.run_meta(args)), end="")
        if failed:
            cost_lib.log.error("%d of %d models failed: %s", len(failed), len(rows), failed)
            return 1
        return 0

    prof = cost_lib.measure_here(args)
    if args.json_out:
        atomic_write_json(args.json_out, prof)
    if args.out:
        cost_lib.write_table(args.out, [prof], cost_lib.run_meta(args))
    if not args.json_out:
        print(json.dumps(prof, indent=2))
    return 0


if __name__ == "__main__":
    cli.run(main)
