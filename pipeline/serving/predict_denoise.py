"""Denoising of one recording with a denoiser run (``mitdb_denoise``).

Owns the overlap-add (:func:`denoise_signal`: leads in pairs at ``windows.denoise_fs_hz``,
high-passed like the training reference, 50 % overlap with periodic Hann weights,
half-window reflection padding, NaN kept NaN), the output record (``<name>_denoised``,
WFDB format 16 in the input's units and ADC gain), its plot and ``<name>_denoise.json``.
Channels whose names do not look like ECG leads (:func:`reader.is_ecg_lead`, e.g. an EDF's
``Resp`` or ``EEG`` channel) are left out and listed in the summary.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np

from pipeline.core.io_utils import PipelineError, atomic_path, atomic_write_json
from pipeline.data.signal import highpass, resample
from pipeline.evaluation import pass_through
from pipeline.serving import reader
from pipeline.serving.outputs import wfdb_out
from pipeline.serving.run_loader import Run, normalize, run_header

log = logging.getLogger("ecg.predict")


def _overlap_add_pair(run: Run, xp: np.ndarray, pair: list[int], starts: np.ndarray,
                      weight: np.ndarray, total: int, batch_size: int) -> np.ndarray:
    """(total, 2) Hann-weighted mean of the denoised windows of two leads of ``xp``."""
    win = int(run.input_shape[0])
    acc = np.zeros((total, 2))
    wsum = np.zeros((total, 1))
    wins = np.stack([xp[s : s + win][:, pair] for s in starts])
    xn = normalize(wins, run.mean, run.scale, -1)
    y = run.predict(xn, batch_size)
    if run.gate is not None:
        y = pass_through.apply(xn, y, run.gate, run.cfg.windows.denoise_fs_hz)
    y = y.astype(np.float64) * run.scale + run.mean
    for s, yw in zip(starts, y, strict=True):
        acc[s : s + win] += weight * yw
        wsum[s : s + win] += weight
    return acc / np.maximum(wsum, 1e-12)


def denoise_signal(run: Run, x_mv: np.ndarray, fs: float, batch_size: int = 64) -> np.ndarray:
    """Denoises (n, n_leads) mV at ``fs`` Hz; returns the same shape in mV (baseline-free).

    Leads go through the model in pairs (an odd last lead is paired with itself), at
    ``windows.denoise_fs_hz`` with 50 % overlap-add of Hann-weighted windows (module
    docstring). NaN input samples are NaN in the output.
    """
    wcfg = run.cfg.windows
    fs_m = wcfg.denoise_fs_hz
    win = int(run.input_shape[0])
    hop = win // 2
    n, n_leads = x_mv.shape
    nan = np.isnan(x_mv)
    x = resample(x_mv, fs, fs_m)
    if wcfg.denoise_highpass_hz > 0:
        x = highpass(x, wcfg.denoise_highpass_hz, fs_m)
    x = np.nan_to_num(x, nan=0.0)
    m = len(x)
    total = int(math.ceil((m + 2 * hop) / hop) * hop)
    mode = "reflect" if m > hop else "constant"
    xp = np.pad(x, ((hop, total - hop - m), (0, 0)), mode=mode)
    starts = np.arange(0, total - win + 1, hop)
    weight = (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(win) / win))[:, None]
    out = np.zeros((m, n_leads))
    for a in range(0, n_leads, 2):
        pair = [a, a + 1 if a + 1 < n_leads else a]
        den = _overlap_add_pair(run, xp, pair, starts, weight, total, batch_size)[hop : hop + m]
        out[:, a] = den[:, 0]
        if a + 1 < n_leads:
            out[:, a + 1] = den[:, 1]
    y = resample(out, fs_m, fs)
    y = y[:n] if len(y) >= n else np.pad(y, ((0, n - len(y)), (0, 0)), mode="edge")
    y[nan] = np.nan
    return y


def ecg_leads(rec: reader.Recording) -> list[int]:
    """Positions of the channels that look like ECG leads, or a refusal listing them all."""
    idx = [j for j, name in enumerate(rec.lead_names) if reader.is_ecg_lead(name)]
    if not idx:
        raise PipelineError(f"record {rec.name} has leads {list(rec.lead_names)}; none looks like "
                            "an ECG lead (standard names such as II, V1, MLII, or ECG...)")
    return idx


def _write_denoised(run: Run, rec: reader.Recording, idx: list[int], y_mv: np.ndarray,
                    out_dir: Path) -> tuple[str, int]:
    """Writes ``<name>_denoised.hea/.dat`` in the input's units; returns (name, clipped)."""
    import wfdb

    names = [rec.lead_names[i] for i in idx]
    units = [rec.units[i] for i in idx]
    y = y_mv / reader.mv_factors(units, rec.name)[None, :]
    gains = [rec.adc_gain[i] for i in idx]
    lim = np.array([32767.0 / g for g in gains])
    n_clipped = int((np.abs(np.nan_to_num(y)) > lim).sum())
    if n_clipped:
        log.warning("record %s: %d denoised samples beyond the format-16 range were clipped",
                    rec.name, n_clipped)
    y = np.where(np.isnan(y), np.nan, np.clip(y, -lim, lim))
    name = f"{rec.name}_denoised"
    with wfdb_out(out_dir, [f"{name}.dat", f"{name}.hea"]) as tmp_dir:
        wfdb.wrsamp(name, fs=rec.fs_hz, units=units, sig_name=names, p_signal=y,
                    fmt=["16"] * len(names), adc_gain=gains, baseline=[0] * len(names),
                    write_dir=str(tmp_dir),
                    comments=[f"denoised by {run.model_name} ({run.path.name}, "
                              f"{run.checkpoint.name if run.checkpoint else 'checkpoint'}); "
                              f"baseline-free: high-passed at "
                              f"{run.cfg.windows.denoise_highpass_hz:g} Hz"])
    return name, n_clipped


def denoise_record(run: Run, source: Path | reader.Recording, out_dir: Path, *,
                   span_s: tuple[float, float] = (0.0, 10.0), flat_s: float = 1.0,
                   batch_size: int = 64, options: reader.ReadOptions | None = None) -> dict:
    """Writes ``<name>_denoised`` (WFDB), its plot and ``<name>_denoise.json``.

    Raises:
        PipelineError: no ECG lead, a record shorter than one window, every lead all NaN
            or flat, unknown units.
    """
    rec = source if isinstance(source, reader.Recording) else reader.read_input(source, options)
    idx = ecg_leads(rec)
    names = [rec.lead_names[i] for i in idx]
    x_mv = reader.leads_in_mv(rec, idx)
    wcfg = run.cfg.windows
    reader.check_length(len(x_mv), rec.fs_hz, run.input_shape[0] / wcfg.denoise_fs_hz, rec.name)
    reader.check_signal(x_mv, names, rec.name, require="any")
    spans = reader.quality_spans(x_mv, rec.fs_hz, names, flat_s)
    y_mv = denoise_signal(run, x_mv, rec.fs_hz, batch_size)
    out_dir.mkdir(parents=True, exist_ok=True)
    name, n_clipped = _write_denoised(run, rec, idx, y_mv, out_dir)
    png = out_dir / f"{rec.name}_denoised.png"
    plot_span(x_mv, y_mv, rec.fs_hz, names, span_s, png, run,
              title=f"{rec.name}: {run.model_name}")
    summary = {
        "record": rec.name, **run_header(run), **reader.input_info(rec),
        "processed_at_hz": wcfg.denoise_fs_hz, "leads": names,
        "leads_skipped": [n for j, n in enumerate(rec.lead_names) if j not in idx],
        "units": [rec.units[i] for i in idx], "highpass_hz": wcfg.denoise_highpass_hz,
        "baseline_free": True,
        "method": f"{run.input_shape[0]}-sample windows, 50% overlap-add with periodic Hann "
                  "weights, half-window reflection padding at both ends; leads in pairs",
        "pass_through_gate": None if run.gate is None else run.gate.to_json(),
        "clipped_samples": n_clipped,
        "quality": reader.quality_report(spans),
        "files": {"record": str(out_dir / name), "plot": str(png)},
    }
    atomic_write_json(out_dir / f"{rec.name}_denoise.json", summary)
    return summary


def plot_span(x_mv: np.ndarray, y_mv: np.ndarray, fs: float, names: list[str],
              span_s: tuple[float, float], path: Path, run: Run, title: str = "") -> None:
    """Input (high-passed like the reference) and denoised signal over ``span_s`` seconds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    a = max(0, int(span_s[0] * fs))
    b = min(len(x_mv), max(a + 1, int(span_s[1] * fs)))
    hp = run.cfg.windows.denoise_highpass_hz
    ref = highpass(x_mv, hp, fs) if hp > 0 and len(x_mv) > 12 else x_mv
    t = np.arange(a, b) / fs
    fig, axes = plt.subplots(len(names), 1, figsize=(12, 2.2 * len(names)), sharex=True, squeeze=False)
    for j, ax in enumerate(axes[:, 0]):
        ax.plot(t, ref[a:b, j], color="0.6", lw=0.8, label=f"input (high-passed {hp:g} Hz)")
        ax.plot(t, y_mv[a:b, j], color="C0", lw=0.9, label="denoised")
        ax.set_ylabel(f"{names[j]} (mV)")
        ax.grid(alpha=0.3)
    axes[0, 0].legend(loc="upper right", fontsize=8)
    axes[-1, 0].set_xlabel("time (s)")
    fig.suptitle(title)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
