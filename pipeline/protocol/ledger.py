"""The ledger of test-split reads: one JSON line per final evaluation.

Every final evaluation (held-out test split or an external folder) appends one line to
``test_reads.jsonl`` (``eval.test_reads_file``; by default in the folder that holds the
evaluated run folder, i.e. ``Research_Runs/test_reads.jsonl``) with the date, run, task,
model, recipe tag, git commit, the metrics read and whether the data were external. The line
is appended under an exclusive ``flock`` in one ``write`` and flushed to disk, so concurrent
evaluations never interleave or lose lines, and an interrupted one leaves none half-written.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import json
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pipeline.core.config import PipelineConfig
from pipeline.core.io_utils import PipelineError

LEDGER_NAME = "test_reads.jsonl"
_DATE_PREFIX = re.compile(r"^\d{4}-\d{2}-\d{2}_")


def ledger_path(cfg: PipelineConfig, run_dir: Path) -> Path:
    """Where the ledger of ``run_dir`` lives (``eval.test_reads_file`` or beside the run)."""
    if cfg.eval.test_reads_file:
        return Path(cfg.eval.test_reads_file)
    return Path(run_dir).resolve().parent / LEDGER_NAME


def recipe_of(run_dir: Path) -> str:
    """A run's recipe tag: its folder name without the leading date."""
    return _DATE_PREFIX.sub("", Path(run_dir).name)


def append_line(path: Path, entry: Mapping[str, Any]) -> None:
    """Appends ``entry`` as one JSON line, atomically with respect to other writers."""
    line = (json.dumps(dict(entry), sort_keys=False, default=str) + "\n").encode("utf-8")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    except OSError as exc:
        raise PipelineError(f"{path}: cannot open the test-read ledger ({exc.strerror})") from exc
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        if os.write(fd, line) != len(line):
            raise PipelineError(f"{path}: short write to the test-read ledger")
        os.fsync(fd)
    except OSError as exc:
        raise PipelineError(f"{path}: cannot append to the test-read ledger ({exc.strerror})") from exc
    finally:
        os.close(fd)  # releases the lock


def record_test_read(cfg: PipelineConfig, run_dir: Path, *, task: str, model: str,
                     metrics_read: Sequence[str], external: str | None, leaky: bool,
                     out_dir: Path) -> dict:
    """Appends the ledger line of one final evaluation and returns it."""
    from pipeline.training.run_folder import environment

    env = environment()
    entry = {
        "date": dt.datetime.now().isoformat(timespec="seconds"),
        "run": str(run_dir),
        "task": task,
        "model": model,
        "recipe": recipe_of(run_dir),
        "git_commit": env.get("git_commit", ""),
        "git_dirty": env.get("git_dirty"),
        "metrics": list(metrics_read),
        "external": external,
        "leaky_split": bool(leaky),
        "outputs": str(out_dir),
    }
    append_line(ledger_path(cfg, run_dir), entry)
    return entry
