"""What every command module shares: its parser's common options, parsing, and the exit.

A command is ``pipeline/<command>.py`` with ``build_parser()`` and ``main(argv) -> int``::

    def build_parser():
        p = cli.command_parser("scalograms", "Morlet CWT magnitude scalograms ...")
        cli.add_force(p)
        return p

    def main(argv=None):
        args, cfg = cli.parse(build_parser(), argv)
        ...

    if __name__ == "__main__":
        cli.run(main)
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any

from pipeline.core.config import PipelineConfig, add_config_args, config_from_args
from pipeline.core.io_utils import run_cli, setup_logging


def command_parser(command: str, description: str, *, config: bool = True,
                   **kwargs: Any) -> argparse.ArgumentParser:
    """``python -m pipeline.<command>``'s parser with ``-v`` and, unless ``config=False``,
    the shared ``--config/--set/--data-dir/--mirror`` options."""
    p = argparse.ArgumentParser(prog=f"python -m pipeline.{command}", description=description,
                                **kwargs)
    if config:
        add_config_args(p)
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    return p


def add_force(p: argparse.ArgumentParser,
              help: str = "redo even when outputs are up to date") -> None:
    p.add_argument("--force", action="store_true", help=help)


def add_max_windows(p: argparse.ArgumentParser, default: int, what: str) -> None:
    """``--max-windows N`` (>= 0; 0: all) for the validation-window tuning commands."""
    p.add_argument("--max-windows", type=int, default=default,
                   help=f"{what} per noise type and level (default {default}; 0: all)")


def check_max_windows(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Exit 2 with one line when ``--max-windows`` is negative."""
    if args.max_windows < 0:
        parser.error(f"--max-windows must be >= 0. Received: --max-windows={args.max_windows}")


def parse(parser: argparse.ArgumentParser,
          argv: list[str] | None) -> tuple[argparse.Namespace, PipelineConfig | None]:
    """Parses ``argv``, sets up logging and resolves the config (None without config options)."""
    args = parser.parse_args(argv)
    setup_logging(args.verbose)
    return args, (config_from_args(args) if hasattr(args, "overrides") else None)


def run(main: Callable[[list[str] | None], int]) -> None:
    """Runs ``main`` on ``sys.argv`` through :func:`run_cli` and exits with its code."""
    sys.exit(run_cli(main))
