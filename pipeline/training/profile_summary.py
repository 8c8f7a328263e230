"""What a pipeline run took and what it found: the timing ledger and ``summary.json``.

``run_full_pipeline.sh`` opens a *part* when it starts (:func:`begin_part`) and adds each
stage's wall seconds when the stage ends (:func:`record_stage`) to ``<runs_dir>/timings.json``,
so a pipeline interrupted and resumed adds up: ``total_s`` is the sum over parts of the wall
time from a part's start to its last recorded stage. At the end :func:`write_summary` writes
``<runs_dir>/summary.json`` with ``profile``, ``total_s``, ``stages`` (stage -> seconds over
all parts) and ``results`` (run folder -> the headline test metrics of its
``metrics_test.json``, :func:`headline`), and :func:`summary_text` prints the two tables.
"""

from __future__ import annotations

import datetime as dt
import math
import time
from pathlib import Path
from typing import Any

from pipeline.core.io_utils import PipelineError, atomic_write_json, read_json
from pipeline.training.profile_plan import ALL_STAGES, PLAN_FILE, human_duration

TIMINGS_FILE = "timings.json"
SUMMARY_FILE = "summary.json"
LEDGER_STAGES = ("setup", *ALL_STAGES)
DENOISE_LEVELS_DB = ("24", "12", "6", "0")


def read_timings(runs_dir: Path) -> dict[str, Any]:
    """The ledger (``{"parts": []}`` when there is none yet).

    Raises:
        PipelineError: a damaged ledger, naming the file.
    """
    path = Path(runs_dir) / TIMINGS_FILE
    if not path.is_file():
        return {"parts": []}
    ledger = read_json(path, "pipeline timings")
    if not isinstance(ledger, dict) or not isinstance(ledger.get("parts"), list):
        raise PipelineError(f"{path}: not a timings ledger (expected a 'parts' list); "
                            "remove it to start the count again")
    return ledger


def begin_part(runs_dir: Path, profile: str, started_at: float | None = None) -> dict[str, Any]:
    """Opens a new part that started at ``started_at`` (Unix seconds; default now)."""
    ledger = read_timings(runs_dir)
    start = time.time() if started_at is None else float(started_at)
    ledger["profile"] = profile
    ledger["parts"].append({"started_at": start, "ended_at": start, "stages": {}, "failed": []})
    atomic_write_json(Path(runs_dir) / TIMINGS_FILE, ledger)
    return ledger


def record_stage(runs_dir: Path, profile: str, stage: str, seconds: float, *,
                 failed: bool = False, now: float | None = None) -> dict[str, Any]:
    """Adds ``seconds`` of ``stage`` to the current part (opened now if none is)."""
    if stage not in LEDGER_STAGES:
        raise PipelineError(f"unknown stage {stage!r}; known: {' '.join(LEDGER_STAGES)}")
    if not (math.isfinite(seconds) and seconds >= 0):
        raise PipelineError(f"stage {stage}: seconds must be >= 0. Received: {seconds!r}")
    now = time.time() if now is None else float(now)
    ledger = read_timings(runs_dir)
    if not ledger["parts"]:
        ledger["parts"].append({"started_at": now - seconds, "ended_at": now, "stages": {},
                                "failed": []})
    ledger["profile"] = profile
    part = ledger["parts"][-1]
    part["stages"][stage] = round(part["stages"].get(stage, 0.0) + seconds, 1)
    part["ended_at"] = max(float(part["ended_at"]), now)
    if failed:
        part["failed"].append(stage)
    atomic_write_json(Path(runs_dir) / TIMINGS_FILE, ledger)
    return ledger


def totals(ledger: dict[str, Any]) -> tuple[float, dict[str, float]]:
    """``(total wall seconds over parts, stage -> seconds over parts)``."""
    total, stages = 0.0, {}
    for part in ledger["parts"]:
        total += max(0.0, float(part["ended_at"]) - float(part["started_at"]))
        for stage, s in part["stages"].items():
            stages[stage] = round(stages.get(stage, 0.0) + float(s), 1)
    order = {s: i for i, s in enumerate(LEDGER_STAGES)}
    return round(total, 1), dict(sorted(stages.items(), key=lambda kv: order.get(kv[0], 99)))


def _denoise_levels(res: dict[str, Any], noises: list[str]) -> dict[str, float]:
    out = {}
    for level in DENOISE_LEVELS_DB:
        vals = []
        for noise in noises:
            try:
                vals.append(float(res[noise][level]["snr_imp_db"]["mean"]))
            except (KeyError, TypeError, ValueError):
                continue
        if vals:
            out[level] = round(sum(vals) / len(vals), 3)
    return out


def headline(m: dict[str, Any]) -> dict[str, Any]:
    """The headline test metrics of one ``metrics_test.json``: denoisers the mean SNR
    improvement (dB) at 24/12/6/0 dB input (mean over noise types, and Gaussian and mixed
    noise alone); multi-label (PTB-XL) macro AUC and F-max; beat classifiers macro F1,
    accuracy, F1(S) and F1(V) (F1(SVEB), F1(VEB) for AAMI4)."""
    if isinstance(m.get("results"), dict):
        res = m["results"].get(m.get("model"), {})
        noises = list(res) if isinstance(res, dict) else []
        return {"kind": "denoiser", "snr_imp_db": _denoise_levels(res, noises),
                "snr_imp_db_gaussian": _denoise_levels(res, ["gaussian"]),
                "snr_imp_db_mix": _denoise_levels(res, ["mix"]), "noise_types": noises}
    if "macro_auc" in m:
        return {"kind": "multilabel", "macro_auc": m.get("macro_auc"), "fmax": m.get("fmax")}
    out: dict[str, Any] = {"kind": "classifier", "macro_f1": m.get("macro_f1"),
                           "accuracy": m.get("accuracy")}
    per_class = m.get("per_class") if isinstance(m.get("per_class"), dict) else {}
    for c in ("S", "V", "SVEB", "VEB"):
        if isinstance(per_class.get(c), dict):
            out[f"f1_{c}"] = per_class[c].get("f1")
    return out


def collect_results(runs_dir: Path) -> dict[str, dict[str, Any]]:
    """Run folder name -> headline, for every folder of ``runs_dir`` with a test result."""
    out = {}
    for path in sorted(Path(runs_dir).glob("*/metrics_test.json")):
        m = read_json(path, "test metrics")
        if isinstance(m, dict):
            out[path.parent.name] = headline(m)
    return out


def write_summary(runs_dir: Path, profile: str) -> dict[str, Any]:
    """Writes ``<runs_dir>/summary.json`` and returns it."""
    runs_dir = Path(runs_dir)
    ledger = read_timings(runs_dir)
    total, stages = totals(ledger)
    plan_path = runs_dir / PLAN_FILE
    plan = read_json(plan_path, "pipeline plan") if plan_path.is_file() else {}
    summary = {
        "profile": profile, "total_s": total, "total": human_duration(total),
        "parts": len(ledger["parts"]), "stages": stages,
        "failed_stages": [s for p in ledger["parts"] for s in p.get("failed", [])],
        "results": collect_results(runs_dir),
        "planned_s": plan.get("total_s") if isinstance(plan, dict) else None,
        "budget_factor": plan.get("budget_factor") if isinstance(plan, dict) else None,
        "written": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
    }
    atomic_write_json(runs_dir / SUMMARY_FILE, summary)
    return summary


def _fmt(v: Any, digits: int = 3) -> str:
    return "-" if v is None else (f"{v:.{digits}f}" if isinstance(v, float) else str(v))


def headline_text(h: dict[str, Any]) -> str:
    """One line of a run's headline numbers."""
    if h.get("kind") == "denoiser":
        levels = ", ".join(f"{lvl} dB {v:+.2f}" for lvl, v in h["snr_imp_db"].items())
        return f"SNR improvement (dB, mean over {len(h['noise_types'])} noise types): {levels}"
    if h.get("kind") == "multilabel":
        return f"macro AUC {_fmt(h.get('macro_auc'))}, F-max {_fmt(h.get('fmax'))}"
    parts = [f"macro F1 {_fmt(h.get('macro_f1'))}", f"accuracy {_fmt(h.get('accuracy'))}"]
    parts += [f"F1({k[3:]}) {_fmt(v)}" for k, v in h.items() if k.startswith("f1_")]
    return ", ".join(parts)


def summary_text(summary: dict[str, Any]) -> str:
    """The stage-time table and the headline result of each model."""
    lines = [f"{'stage':<12} {'took (all parts)':>18}"]
    lines += [f"{stage:<12} {human_duration(s):>18}" for stage, s in summary["stages"].items()]
    planned = summary.get("planned_s")
    lines.append(f"{'total':<12} {summary['total']:>18} (wall, {summary['parts']} part(s)"
                 + (f"; planned {human_duration(planned)})" if planned else ")"))
    if summary["failed_stages"]:
        lines.append(f"failed in a part: {', '.join(summary['failed_stages'])}")
    lines.append("")
    if not summary["results"]:
        lines.append("no test results yet (the final_eval stage writes them)")
    width = max([len(r) for r in summary["results"]] + [3])
    lines += [f"{run:<{width}}  {headline_text(h)}" for run, h in summary["results"].items()]
    return "\n".join(lines)
