"""Keep the run validation ranks first: ``final_eval --best-of RUN RUN ...``.

A recipe that is fragile across seeds can be made a recipe of its own: train N seeds and keep
the one whose best checkpoint scored highest on the validation patients. :func:`choose` makes
that choice from each run's ``summary.json`` (``selection_metric`` and ``best_value``, written
by the trainer) and refuses candidates that cannot be compared: another task, another
selection metric or other validation patients. The choice is written into the chosen run's
folder (:data:`SELECTION_FILE`) before its test read, so the folder shows how it was picked;
the runs not chosen are never read.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from pipeline.core.io_utils import PipelineError, atomic_write_json, read_json
from pipeline.protocol import final as final_lib
from pipeline.protocol.run_settings import load_run_settings
from pipeline.training import selection

log = logging.getLogger("ecg.final_eval")

SELECTION_FILE = "best_of_selection.json"


def _candidate(run_dir: Path) -> dict[str, Any]:
    summary = read_json(run_dir / "summary.json")
    split = read_json(run_dir / "splits.json")
    try:
        value, metric, task = summary["best_value"], summary["selection_metric"], summary["task"]
        val = list(split["val"])
    except (KeyError, TypeError) as exc:
        raise PipelineError(f"{run_dir}: summary.json or splits.json lacks {exc} "
                            "(not a finished training run)") from None
    if value is None or not math.isfinite(float(value)):
        raise PipelineError(f"{run_dir / 'summary.json'}: best_value is {value!r}; "
                            "the run has no scored checkpoint")
    return {"run": str(run_dir), "task": task, "selection_metric": metric,
            "best_value": float(value), "best_epoch": summary.get("best_epoch"), "val": val}


def _check_comparable(rows: list[dict[str, Any]]) -> None:
    first = rows[0]
    for row in rows[1:]:
        for key in ("task", "selection_metric", "val"):
            if row[key] != first[key]:
                raise PipelineError(f"--best-of: {row['run']} and {first['run']} differ in "
                                    f"{key} ({row[key]!r} against {first[key]!r}); only runs "
                                    "of one task scored on the same validation can be ranked")


def choose(run_dirs: Sequence[Path]) -> tuple[Path, dict[str, Any]]:
    """The run with the best validation ``best_value`` (ties: the first listed) and the record
    of the choice (every candidate's value, the metric and its direction)."""
    if len(run_dirs) < 2:
        raise PipelineError(f"--best-of needs two runs or more; got {len(run_dirs)}")
    rows = [_candidate(Path(d)) for d in run_dirs]
    _check_comparable(rows)
    metric = rows[0]["selection_metric"]
    direction = selection.DIRECTIONS.get(metric)
    if direction is None:
        raise PipelineError(f"{rows[0]['run']}: unknown selection_metric {metric!r}")
    best = rows[0]
    for row in rows[1:]:
        if selection.is_better(row["best_value"], best["best_value"], direction):
            best = row
    record = {"chosen": best["run"], "selection_metric": metric, "direction": direction,
              "validation_records": best["val"],
              "candidates": [{k: r[k] for k in ("run", "best_value", "best_epoch")} for r in rows]}
    return Path(best["run"]), record


def record_choice(chosen: Path, record: dict[str, Any]) -> Path:
    """Writes the choice into the chosen run's folder (before its test read)."""
    path = chosen / SELECTION_FILE
    atomic_write_json(path, record)
    log.info("--best-of: %s chosen on validation %s (candidates: %s)", chosen,
             record["selection_metric"],
             ", ".join(f"{c['run']} {c['best_value']:.4f}" for c in record["candidates"]))
    return path


def evaluate_best_of(run_dirs: Sequence[Path], cfg: Any, overrides: Sequence[str], *,
                     task_name: str | None, model_name: str | None,
                     request_for: Callable[[int], final_lib.Request]) -> Path:
    """Chooses on validation, writes the choice into the chosen folder, then reads the test
    split of that run only. ``request_for(n_boot_default)`` builds the evaluation request from
    the chosen run's resolved config."""
    chosen, record = choose(run_dirs)
    settings = load_run_settings(chosen, cfg, overrides, task_name=task_name,
                                 model_name=model_name)
    request = request_for(settings.cfg.eval.bootstrap_samples)
    final_lib.check_not_evaluated(chosen, request.force)
    record_choice(chosen, record)
    return final_lib.evaluate_run(settings, request)
