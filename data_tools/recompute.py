"""Recompute a final evaluation's headline numbers from its per-example file.

``python -m data_tools.recompute RUN [RUN ...]``

For each folder holding a ``metrics_test.json`` (a run folder, or its ``external_<name>/``
subfolder), recomputes every headline metric, per-class row, confusion matrix and bootstrap
interval from ``predictions_test.csv`` (classifiers) or ``windows_test.csv`` (denoisers) and
prints one line per difference. Exit status: 0 when everything agrees, 1 on any difference,
2 when a file is missing or unreadable.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pipeline.core.io_utils import run_cli
from pipeline.evaluation.recompute import recompute_differences


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m data_tools.recompute", description=__doc__.split("\n")[0])
    p.add_argument("runs", nargs="+", help="evaluated folders (with metrics_test.json)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    status = 0
    for run in args.runs:
        diffs = recompute_differences(Path(run))
        for line in diffs:
            print(f"{run}: {line}")
        if diffs:
            status = 1
        else:
            print(f"{run}: every headline number recomputes from the predictions file")
    return status


if __name__ == "__main__":
    sys.exit(run_cli(main))
