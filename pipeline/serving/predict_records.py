"""Record classification with a PTB-XL run (``ptbxl_superdiagnostic``): superclass
probabilities per 10 s window and for the whole record.

Owns matching the 12 standard leads by name (through :func:`reader.match_leads`, so
``Lead aVR`` or ``ECG V1`` are found), resampling to ``windows.ptbxl_fs_hz`` (100 Hz), the
window cut (non-overlapping 10 s; a record shorter than 10 s is zero-padded, as the windows
stage pads PTB-XL records) and the summary written as ``<name>_prediction.json``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pipeline.core.io_utils import PipelineError
from pipeline.data.signal import resample
from pipeline.serving import reader
from pipeline.serving.run_loader import Run, normalize, run_header

PTBXL_LEADS = ("I", "II", "III", "AVR", "AVL", "AVF", "V1", "V2", "V3", "V4", "V5", "V6")
"""PTB-XL lead order (the order of the training files), upper-cased for matching."""
WINDOW_S = 10.0


def _windows(x100: np.ndarray, bad: np.ndarray, n: int, fs_out: float) -> tuple[list[dict], list[int]]:
    """The 10 s windows (summary entries) and the starts of those that can be classified."""
    windows, usable = [], []
    for s in range(0, len(x100) - n + 1, n):
        w = x100[s : s + n]
        why = ("window contains NaN samples" if np.isnan(w).any()
               else "window overlaps a flat span" if bad[s : s + n].any() else "")
        windows.append({"start_s": round(s / fs_out, 3), "end_s": round((s + n) / fs_out, 3),
                        "unclassified_reason": why, "probabilities": None})
        if not why:
            usable.append(s)
    return windows, usable


def classify_ptbxl(run: Run, source: Path | reader.Recording, *, flat_s: float = 1.0,
                   batch_size: int = 64, options: reader.ReadOptions | None = None) -> dict:
    """Superclass probabilities of one 12-lead record, per 10 s window and for the record.

    Raises:
        PipelineError: a lead is missing, a lead is all NaN or flat, or no window can be
            classified.
    """
    if run.task.kind != "ptbxl":
        raise PipelineError(f"run task {run.task.name} does not classify PTB-XL records")
    rec = source if isinstance(source, reader.Recording) else reader.read_input(source, options)
    idx = reader.match_leads(rec.lead_names, list(PTBXL_LEADS), rec.name)
    names = [rec.lead_names[i] for i in idx]
    x = reader.leads_in_mv(rec, idx)
    reader.check_signal(x, names, rec.name)
    spans = reader.quality_spans(x, rec.fs_hz, names, flat_s)
    fs_out = run.cfg.windows.ptbxl_fs_hz
    x100 = resample(x, rec.fs_hz, fs_out)
    n = int(round(WINDOW_S * fs_out))
    padded = 0.0
    if len(x100) < n:
        padded = (n - len(x100)) / fs_out
        x100 = np.pad(x100, ((0, n - len(x100)), (0, 0)))
    windows, usable = _windows(x100, reader.bad_mask(spans, len(x100), rec.fs_hz, fs_out), n, fs_out)
    if not usable:
        raise PipelineError(f"record {rec.name}: none of its {len(windows)} window(s) can be "
                            f"classified ({windows[0]['unclassified_reason']}); nothing to predict")
    p = run.predict(normalize(np.stack([x100[s : s + n] for s in usable]), run.mean, run.scale, -1),
                    batch_size)
    for s, row in zip(usable, p, strict=True):
        windows[s // n]["probabilities"] = {c: round(float(v), 6)
                                            for c, v in zip(run.task.classes, row, strict=True)}
    record_p = {c: round(float(v), 6) for c, v in zip(run.task.classes, p.mean(axis=0), strict=True)}
    return {"record": rec.name, **run_header(run), **reader.input_info(rec),
            "resampled_to_hz": fs_out, "leads": names,
            "zero_padded_s": round(padded, 3), "probabilities": record_p,
            "positive_at_0.5": [c for c, v in record_p.items() if v >= 0.5], "windows": windows,
            "unclassified_windows": sum(1 for w in windows if w["unclassified_reason"]),
            "quality": reader.quality_report(spans)}
