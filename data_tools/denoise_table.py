"""The denoiser table of ``python -m data_tools.compare_runs --denoise DIR ...``.

One row per evaluated denoiser run: its mean SNR improvement (dB) with the record-bootstrap
95 % interval in the cells the issues set aims on (:data:`CELLS`), the 5th percentile of the
windows at 24 dB mixed noise (from the run's ``windows_test.csv[.gz]``), and, where the run was
also scored on outside records (``RUN/external_<name>/``, ``final_eval --external``), the
same model's mean there at 0 and 24 dB mixed noise. The classic filters scored on the same
windows by the first run (and on the outside records by the first run scored there) close
the table.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

CELLS = (("mix", "0"), ("gaussian", "6"), ("bw", "0"), ("em", "6"), ("ma", "6"),
         ("mix", "24"), ("gaussian", "24"))
"""(noise, input SNR in dB) of the columns, in order."""

FILTERS = ("bandpass", "wavelet")
EXTERNAL_CELLS = (("mix", "0"), ("mix", "24"))
"""The outside records' columns."""
CHAINS = ("+gate", "+hp", "+hp+gate")
"""Method suffixes a run's evaluation may hold beside the model alone: its gate, and the chain
``pipeline.predict`` runs (the recording high-passed, then the model, then the gate)."""
P5_CELL = ("mix", "24")
"""Where the 5th percentile of the windows is shown (the aim: no window damaged at 24 dB)."""


def load_json(p: Path) -> Any:
    """A run file's JSON, or ``None`` when it is missing or damaged (the tables skip it)."""
    try:
        return json.loads(p.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def snr_mean(m: dict, method: str, noise: str, snr: str) -> float | None:
    """Mean SNR improvement (dB) of ``method`` in one cell of a denoising ``metrics_test.json``."""
    try:
        return float(m["results"][method][noise][snr]["snr_imp_db"]["mean"])
    except (KeyError, TypeError):
        return None


def cell(m: dict, method: str, noise: str, snr: str) -> str:
    """``+7.71 [+7.37, +8.09]`` (the interval when the run has one), or ``""``."""
    mean = snr_mean(m, method, noise, snr)
    if mean is None:
        return ""
    ci = (m.get("ci95_snr_imp_db") or {}).get(method, {}).get(noise, {}).get(snr)
    return f"{mean:+.2f}" + (f" [{ci['low']:+.2f}, {ci['high']:+.2f}]" if ci else "")


def window_percentile(run: Path, noise: str, snr_db: float, q: float = 5.0) -> float | None:
    """The ``q``-th percentile of the per-window SNR improvement of ``noise`` at ``snr_db``
    (from the run's ``windows_test.csv`` or its ``.gz`` copy; ``None`` without one)."""
    from pipeline.core.io_utils import PipelineError
    from pipeline.evaluation import predictions

    try:
        w = predictions.read_denoiser_csv(run / predictions.DENOISER_FILE)
    except PipelineError:
        return None
    keep = (w["noise"] == noise) & (np.abs(w["snr_in_db"] - snr_db) < 0.5)
    imp = w["snr_out_db"][keep] - w["snr_in_db"][keep]
    return float(np.percentile(imp, q)) if imp.size else None


def _external(run: Path) -> tuple[str, dict] | None:
    for d in sorted(run.glob("external_*")):
        m = load_json(d / "metrics_test.json")
        if m and m.get("results"):
            return d.name.removeprefix("external_"), m
    return None


def p5_column() -> str:
    return f"{P5_CELL[0]} {P5_CELL[1]} dB, 5th pct"


def columns(external: str | None) -> list[str]:
    cols = ["model", "params", "epochs (best)"] + [f"{n} {s} dB" for n, s in CELLS]
    cols.append(p5_column())
    return cols + [f"{external}: {n} {s} dB" for n, s in EXTERNAL_CELLS] if external else cols


def run_rows(run: Path) -> list[dict[str, str]]:
    """One denoiser run's row (none if it holds no denoising test metrics), and one per chain
    of :data:`CHAINS` it was scored with (the pass-through gate of ``python -m
    pipeline.tune_gate``, the chain predict runs; their 5th percentile comes from the cell's
    ``p05``). The outside records' name, if the run was scored on some, is under
    ``external``."""
    m = load_json(run / "metrics_test.json") or {}
    if not m.get("results") or m.get("model") in (None, "classic_filters"):
        return []
    s, name, ext = load_json(run / "summary.json") or {}, m["model"], _external(run)
    p5 = window_percentile(run, P5_CELL[0], float(P5_CELL[1]))
    rows = [{"model": f"{name} (`{run.name}`)",
             "params": f"{s['params']:,}" if s.get("params") else "",
             "epochs (best)": f"{s.get('epochs_done', '')} ({s.get('best_epoch', '')})",
             p5_column(): "" if p5 is None else f"{p5:+.2f}", **method_cells(m, ext, name)}]
    for method in (f"{name}{suffix}" for suffix in CHAINS):
        if method not in m["results"]:
            continue
        try:
            p5 = f"{float(m['results'][method][P5_CELL[0]][P5_CELL[1]]['snr_imp_db']['p05']):+.2f}"
        except (KeyError, TypeError):
            p5 = ""
        rows.append({"model": f"{method} (`{run.name}`)", "params": "+0", "epochs (best)": "-",
                     p5_column(): p5, **method_cells(m, ext, method)})
    return rows


def method_cells(m: dict, ext: tuple[str, dict] | None, method: str) -> dict[str, str]:
    """``method``'s cells of a run's metrics and of its outside-records metrics ``ext``."""
    cells = {f"{n} {d} dB": cell(m, method, n, d) for n, d in CELLS}
    if ext:
        cells["external"] = ext[0]
        cells.update({f"{ext[0]}: {n} {d} dB": cell(ext[1], method, n, d)
                      for n, d in EXTERNAL_CELLS})
    return cells


def filter_rows(m: dict, ext: tuple[str, dict] | None) -> list[dict[str, str]]:
    """The classic filters of one run's metrics ``m`` (and of outside-records metrics ``ext``:
    the same windows for every run scored there)."""
    return [{"model": f"{f} (same windows)", "params": "-", "epochs (best)": "-",
             **method_cells(m, ext, f)} for f in FILTERS if f in (m.get("results") or {})]


def table(runs: list[Path]) -> str:
    """The Markdown table of the denoiser ``runs`` (the filters from the first of them)."""
    rows = [(d, r) for d in runs for r in run_rows(d)]
    if not rows:
        return ""
    ext_run = next((d for d, r in rows if r.get("external")), None)
    ext = _external(ext_run) if ext_run else None
    cols = columns(ext[0] if ext else None)
    first = load_json(rows[0][0] / "metrics_test.json")
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in [r for _, r in rows] + filter_rows(first, ext):
        lines.append("| " + " | ".join(r.get(c, "") for c in cols) + " |")
    return "\n".join(lines)
