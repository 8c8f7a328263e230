"""``python -m pipeline`` (or ``ecg-pipeline``): lists the commands, or runs one.

``python -m pipeline`` prints every command with its one-line purpose;
``python -m pipeline COMMAND [ARGS...]`` is the same as ``python -m pipeline.COMMAND [ARGS...]``.
The purposes are read from the command modules' docstrings without importing them, so the
listing starts in well under a second.
"""

from __future__ import annotations

import ast
import importlib
import sys
from pathlib import Path

COMMANDS = (
    "download",
    "windows",
    "scalograms",
    "tfrecords",
    "train",
    "tune",
    "tune_filters",
    "tune_gate",
    "kfold",
    "final_eval",
    "predict",
    "export",
    "cost",
    "profile",
)
"""Command modules in the order a run uses them (``pipeline/<command>.py``)."""


def purpose(command: str) -> str:
    """First line of ``pipeline/<command>.py``'s docstring."""
    path = Path(__file__).with_name(f"{command}.py")
    doc = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))) or ""
    return doc.strip().splitlines()[0] if doc.strip() else ""


def listing() -> str:
    """The command table that ``python -m pipeline`` prints."""
    width = max(len(c) for c in COMMANDS)
    rows = [f"  {c:<{width}}  {purpose(c)}" for c in COMMANDS]
    return (
        "usage: python -m pipeline COMMAND [ARGS...]   (or python -m pipeline.COMMAND ...)\n\n"
        "commands:\n" + "\n".join(rows) + "\n\n"
        "Each command takes --help. ./run_full_pipeline.sh runs them in order.\n"
    )


def main(argv: list[str] | None = None) -> int:
    """Lists the commands (no argument, -h, --help) or runs the named one."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help", "help"):
        print(listing(), end="")
        return 0
    command, rest = args[0], args[1:]
    if command not in COMMANDS:
        print(f"error: unknown command {command!r}; commands: {', '.join(COMMANDS)}",
              file=sys.stderr)
        return 2
    module = importlib.import_module(f"pipeline.{command}")
    from pipeline.core.io_utils import run_cli

    return run_cli(module.main, rest)


if __name__ == "__main__":
    sys.exit(main())
