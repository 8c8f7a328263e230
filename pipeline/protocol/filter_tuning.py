"""The classic wavelet baseline's settings, chosen on validation patients only.

A learned denoiser is compared with the best a user could get without learning; the wavelet
shrinkage of :mod:`pipeline.evaluation.classic_filters` has free choices (wavelet, threshold
scale and mode, a baseline high-pass). :func:`tune_wavelet` scores every setting of
:data:`WAVELET_GRID` on the validation records of the denoising split (the same windows the
denoisers' checkpoints are chosen on, with noise from the ``val`` segment of the NSTDB
records) by the denoisers' own selection objective: the mean SNR improvement over every noise
type and input level of ``noise.eval_snr_db``. The test split is never read.
"""

from __future__ import annotations

import functools
import itertools
import logging
import math
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.core.config import PipelineConfig
from pipeline.core.io_utils import atomic_write_json, atomic_write_text

log = logging.getLogger("ecg.filter_tuning")

WAVELET_GRID: tuple[dict[str, Any], ...] = tuple(
    {"wavelet": w, "threshold_scale": k, "threshold_mode": m, "highpass_hz": h}
    for w, k, m, h in itertools.product(("sym8", "db4"), (0.125, 0.25, 0.5, 1.0), ("soft", "hard"),
                                        (0.0, 0.5))
)
"""Settings compared (32): wavelet x threshold scale (1: VisuShrink) x mode x high-pass."""


def setting_name(setting: dict[str, Any]) -> str:
    """A short method name for one setting, e.g. ``wavelet_sym8_k1_soft_hp0.5``."""
    return (f"wavelet_{setting['wavelet']}_k{setting['threshold_scale']:g}_"
            f"{setting['threshold_mode']}_hp{setting['highpass_hz']:g}")


def mean_improvement(by_type: dict[str, dict[str, dict]]) -> float:
    """Mean over (noise type, finite input level) cells of the mean SNR improvement (dB)."""
    cells = [cell["snr_imp_db"]["mean"] for by_snr in by_type.values()
             for label, cell in by_snr.items() if label != "clean" and cell]
    return float(np.mean(cells)) if cells else math.nan


def tune_wavelet(cfg: PipelineConfig, max_windows: int, grid: tuple[dict, ...] | None = None,
                 ) -> dict[str, Any]:
    """Scores every setting of ``grid`` (default :data:`WAVELET_GRID`) on about
    ``max_windows`` validation windows (0: all).

    Returns:
        ``{"chosen": setting, "grid": [setting + scores], "val_records": [...], ...}``.
    """
    from pipeline.data import noise
    from pipeline.data.tasks import get_task
    from pipeline.evaluation.classic_filters import wavelet_denoise
    from pipeline.evaluation.evaluate import evaluate_denoiser
    from pipeline.training import run_folder
    from pipeline.training.sampling import subsample_masks

    grid = grid or WAVELET_GRID
    task = get_task("mitdb_denoise")
    split = run_folder.make_split(cfg, task)
    files = run_folder.files_for(cfg, "denoise", split.val)
    include = subsample_masks(files, cfg, "denoise", max_windows, cfg.eval.seed)
    filters = {setting_name(s): functools.partial(wavelet_denoise, **s) for s in grid}
    out = evaluate_denoiser(None, files, cfg, task, None, None, part="val",
                            noise_types=cfg.noise.types, snr_dbs=cfg.noise.eval_snr_db,
                            include=include, classic=("bandpass",), filters=filters,
                            noise_records=noise.load_noise(cfg))
    rows = []
    for s in grid:
        res = out["results"][setting_name(s)]
        rows.append({**s, "val_mean_snr_imp_db": mean_improvement(res),
                     "val_snr_imp_db": {nt: {lab: c["snr_imp_db"]["mean"] for lab, c in by.items()
                                             if c} for nt, by in res.items()}})
    best = max(rows, key=lambda r: r["val_mean_snr_imp_db"])
    return {"chosen": {k: best[k] for k in grid[0]}, "grid": rows,
            "bandpass_val_mean_snr_imp_db": mean_improvement(out["results"]["bandpass"]),
            "val_records": list(split.val), "noise_part": "val",
            "n_windows": int(out["results"]["bandpass"][cfg.noise.types[0]][
                f"{cfg.noise.eval_snr_db[0]:g}"]["snr_imp_db"]["n"]),
            "results": out["results"]}


def write_report(res: dict[str, Any], out_dir: Path) -> Path:
    """``selection.json`` and ``report.md`` (the grid sorted by the objective) in ``out_dir``."""
    from pipeline.evaluation.evaluate import denoise_table

    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out_dir / "selection.json", {k: v for k, v in res.items() if k != "results"})
    rows = sorted(res["grid"], key=lambda r: -r["val_mean_snr_imp_db"])
    lines = ["# Wavelet baseline: settings chosen on validation patients",
             "", f"Validation records {', '.join(res['val_records'])}; noise from the "
             f"`{res['noise_part']}` segment; {res['n_windows']} windows per cell. Objective: "
             "mean SNR improvement over every noise type and input level.", "",
             f"Chosen: `{res['chosen']}`; the band-pass scores "
             f"{res['bandpass_val_mean_snr_imp_db']:+.2f} dB on the same windows.", "",
             "| setting | mean SNR improvement (dB) |", "|---|---|"]
    lines += [f"| `{setting_name(r)}` | {r['val_mean_snr_imp_db']:+.2f} |" for r in rows]
    chosen = setting_name(res["chosen"])
    keep = {m: res["results"][m] for m in ("bandpass", chosen)}
    lines += ["", "## The chosen setting and the band-pass, per cell", "", denoise_table(keep), ""]
    atomic_write_text(out_dir / "report.md", "\n".join(lines))
    return out_dir
