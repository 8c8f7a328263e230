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

import csv
import gzip
import io
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
P5_CELL = ("mix", "24")
"""Where the 5th percentile of the windows is shown (the aim: no window damaged at 24 dB)."""


def _load(p: Path) -> Any:
    try:
        return json.loads(p.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def _mean(m: dict, method: str, noise: str, snr: str) -> float | None:
    try:
        return float(m["results"][method][noise][snr]["snr_imp_db"]["mean"])
    except (KeyError, TypeError):
        return None


def cell(m: dict, method: str, noise: str, snr: str) -> str:
    """``+7.71 [+7.37, +8.09]`` (the interval when the run has one), or ``""``."""
    mean = _mean(m, method, noise, snr)
    if mean is None:
        return ""
    ci = (m.get("ci95_snr_imp_db") or {}).get(method, {}).get(noise, {}).get(snr)
    return f"{mean:+.2f}" + (f" [{ci['low']:+.2f}, {ci['high']:+.2f}]" if ci else "")


def window_percentile(run: Path, noise: str, snr_db: float, q: float = 5.0) -> float | None:
    """The ``q``-th percentile of the per-window SNR improvement of ``noise`` at ``snr_db``."""
    for name, opener in (("windows_test.csv.gz", gzip.open), ("windows_test.csv", open)):
        if (run / name).is_file():
            with opener(run / name, "rt") as f:
                rows = [r for r in csv.DictReader(io.StringIO(f.read()))
                        if r["noise"] == noise and abs(float(r["snr_in_db"]) - snr_db) < 0.5]
            imp = [float(r["snr_out_db"]) - float(r["snr_in_db"]) for r in rows]
            return float(np.percentile(imp, q)) if imp else None
    return None


def _external(run: Path) -> tuple[str, dict] | None:
    for d in sorted(run.glob("external_*")):
        m = _load(d / "metrics_test.json")
        if m and m.get("results"):
            return d.name.removeprefix("external_"), m
    return None


def columns(external: str | None) -> list[str]:
    cols = ["model", "params", "epochs (best)"] + [f"{n} {s} dB" for n, s in CELLS]
    cols.append(f"{P5_CELL[0]} {P5_CELL[1]} dB, 5th pct")
    return cols + [f"{external}: {n} {s} dB" for n, s in EXTERNAL_CELLS] if external else cols


def run_row(run: Path) -> dict[str, str] | None:
    """One denoiser run's row (``None`` if it holds no denoising test metrics)."""
    m = _load(run / "metrics_test.json") or {}
    if not m.get("results") or m.get("model") in (None, "classic_filters"):
        return None
    s, name = _load(run / "summary.json") or {}, m["model"]
    p5 = window_percentile(run, P5_CELL[0], float(P5_CELL[1]))
    row = {"model": f"{name} (`{run.name}`)", "params": f"{s['params']:,}" if s.get("params") else "",
           "epochs (best)": f"{s.get('epochs_done', '')} ({s.get('best_epoch', '')})",
           f"{P5_CELL[0]} {P5_CELL[1]} dB, 5th pct": "" if p5 is None else f"{p5:+.2f}"}
    row.update({f"{n} {d} dB": cell(m, name, n, d) for n, d in CELLS})
    ext = _external(run)
    if ext:
        row["external"] = ext[0]
        row.update({f"{ext[0]}: {n} {d} dB": cell(ext[1], name, n, d) for n, d in EXTERNAL_CELLS})
    return row


def filter_rows(run: Path, external_run: Path | None) -> list[dict[str, str]]:
    """The classic filters as scored on ``run``'s own windows and on ``external_run``'s
    outside records (the same windows for every run scored there)."""
    m = _load(run / "metrics_test.json") or {}
    ext = _external(external_run) if external_run else None
    rows = []
    for f in FILTERS:
        if f not in (m.get("results") or {}):
            continue
        row = {"model": f"{f} (same windows)", "params": "-", "epochs (best)": "-"}
        row.update({f"{n} {d} dB": cell(m, f, n, d) for n, d in CELLS})
        if ext:
            row.update({f"{ext[0]}: {n} {d} dB": cell(ext[1], f, n, d) for n, d in EXTERNAL_CELLS})
        rows.append(row)
    return rows


def table(runs: list[Path]) -> str:
    """The Markdown table of the denoiser ``runs`` (the filters from the first of them)."""
    rows = [r for d in runs if (r := run_row(d))]
    if not rows:
        return ""
    evaluated = [d for d in runs if run_row(d)]
    ext_run = next((d for d in evaluated if _external(d)), None)
    cols = columns(_external(ext_run)[0] if ext_run else None)
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in rows + filter_rows(evaluated[0], ext_run):
        lines.append("| " + " | ".join(r.get(c, "") for c in cols) + " |")
    return "\n".join(lines)
