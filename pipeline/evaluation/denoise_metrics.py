"""Denoising metrics, computed per window and then summarized over windows (NumPy).

Inputs are arrays ``(n, T, C)`` in mV (unnormalized): ``clean``, ``noisy`` and ``denoised``
windows. Every metric is computed per window over all its samples and leads (except Pearson r,
see below), giving one value per window; :func:`summarize` then reports the mean, standard
deviation (ddof=0), median, min and max over windows. Sums run in float64.

=================  ===========================================================================
key                per window
=================  ===========================================================================
``snr_in_db``      10 log10( sum(clean^2) / sum((noisy - clean)^2) )   (shared/REFERENCES.md)
``snr_out_db``     10 log10( sum(clean^2) / sum((denoised - clean)^2) )
``snr_imp_db``     snr_out_db - snr_in_db (SNR improvement, dB)
``prd_pct``        100 sqrt( sum((clean - denoised)^2) / sum(clean^2) )
``mse``            mean((clean - denoised)^2) over T x C samples, mV^2
``rmse``           sqrt(mse), mV
``mae``            mean(|clean - denoised|), mV
``pearson_r``      Pearson correlation of clean and denoised, computed per lead over time and
                   averaged over the leads (leads with a constant signal are skipped; NaN if all
                   are). Per lead, because pooling both leads would let the difference in their
                   offsets and amplitudes inflate r.
``ssd``            sum((clean - denoised)^2) over all samples and leads, mV^2 (DeepFilter's SSD
                   is per beat of one lead: values are not comparable with protocol P1's)
``mad``            max |clean - denoised| over all samples and leads, mV
``cos_sim``        cosine similarity of the clean and denoised windows flattened over samples
                   and leads: sum(c d) / (||c|| ||d||)
=================  ===========================================================================

Windows with no noise (``snr_in_db = inf``) or a perfect reconstruction give infinite SNR
values; :func:`summarize` computes its statistics over the finite values and reports how many
were not finite.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

log = logging.getLogger("ecg.denoise_metrics")

METRICS = (
    "snr_in_db",
    "snr_out_db",
    "snr_imp_db",
    "prd_pct",
    "mse",
    "rmse",
    "mae",
    "pearson_r",
    "ssd",
    "mad",
    "cos_sim",
)


def _as3d(name: str, x: Any) -> np.ndarray:
    x = np.asarray(x, np.float64)
    if x.ndim == 2:
        x = x[None]
    if x.ndim != 3:
        raise ValueError(f"{name} must have shape (n, T, C). Received: shape={x.shape}")
    return x


def _snr_db(signal_power: np.ndarray, error_power: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return 10.0 * np.log10(signal_power / error_power)


def _pearson_per_lead(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Mean over leads of the per-lead Pearson r over time: (n, T, C) x 2 -> (n,)."""
    a = a - a.mean(axis=1, keepdims=True)
    b = b - b.mean(axis=1, keepdims=True)
    den = np.sqrt((a * a).sum(axis=1) * (b * b).sum(axis=1))  # (n, C)
    with np.errstate(divide="ignore", invalid="ignore"):
        r = np.where(den > 0, (a * b).sum(axis=1) / den, np.nan)
    out = np.full(len(r), np.nan)
    ok = np.isfinite(r).any(axis=1)
    out[ok] = np.nanmean(r[ok], axis=1)
    return out


def window_metrics(clean: Any, noisy: Any, denoised: Any) -> dict[str, np.ndarray]:
    """Per-window metrics (module docstring).

    Args:
        clean, noisy, denoised: (n, T, C) arrays in mV (a single (T, C) window is accepted).

    Returns:
        ``{metric: (n,) float64}`` for every key of :data:`METRICS`.
    """
    c, x, d = _as3d("clean", clean), _as3d("noisy", noisy), _as3d("denoised", denoised)
    if not c.shape == x.shape == d.shape:
        raise ValueError(
            f"clean, noisy and denoised shapes differ: {c.shape}, {x.shape}, {d.shape}"
        )
    e = d - c
    p_clean = (c * c).sum(axis=(1, 2))
    ssd = (e * e).sum(axis=(1, 2))
    snr_in = _snr_db(p_clean, ((x - c) ** 2).sum(axis=(1, 2)))
    snr_out = _snr_db(p_clean, ssd)
    n_samples = c.shape[1] * c.shape[2]
    mse = ssd / n_samples
    with np.errstate(divide="ignore", invalid="ignore"):
        prd = 100.0 * np.sqrt(ssd / p_clean)
        cos = (c * d).sum(axis=(1, 2)) / np.sqrt(p_clean * (d * d).sum(axis=(1, 2)))
        imp = snr_out - snr_in
    return {
        "snr_in_db": snr_in,
        "snr_out_db": snr_out,
        "snr_imp_db": imp,
        "prd_pct": prd,
        "mse": mse,
        "rmse": np.sqrt(mse),
        "mae": np.abs(e).sum(axis=(1, 2)) / n_samples,
        "pearson_r": _pearson_per_lead(c, d),
        "ssd": ssd,
        "mad": np.abs(e).max(axis=(1, 2)) if e.size else np.zeros(len(e)),
        "cos_sim": cos,
    }


def summarize(per_window: Mapping[str, Any]) -> dict[str, dict[str, float]]:
    """Statistics over windows of each metric.

    Args:
        per_window: ``{metric: (n,) values}`` from :func:`window_metrics` (or accumulated).

    Returns:
        ``{metric: {"mean", "std", "median", "p05", "min", "max", "n", "n_nonfinite"}}``;
        statistics over the finite values (``std`` with ddof=0; ``p05``: the 5th percentile,
        linear interpolation); NaN when there are none.
    """
    out = {}
    for k, v in per_window.items():
        v = np.asarray(v, np.float64).ravel()
        f = v[np.isfinite(v)]
        stats = (
            dict(mean=f.mean(), std=f.std(), median=np.median(f), p05=np.percentile(f, 5),
                 min=f.min(), max=f.max())
            if len(f)
            else dict.fromkeys(("mean", "std", "median", "p05", "min", "max"), math.nan)
        )
        out[k] = {
            **{s: float(x) for s, x in stats.items()},
            "n": int(len(v)),
            "n_nonfinite": int(len(v) - len(f)),
        }
    return out


class MetricAccumulator:
    """Streaming evaluation: per-window metrics batch by batch, summarized at the end
    (what :func:`pipeline.evaluation.evaluate.evaluate_denoiser` keeps per method).

    Only the per-window scalars are kept (11 float64 per window, under 10 MB for 100,000
    windows), never the signals, so a whole ``tf.data`` pass can be scored; the median is exact.

    Args:
        mean, scale: per-channel normalization statistics; when given, every update's arrays
            are mapped back to mV by ``x * scale + mean`` first (the loader's normalization).
    """

    def __init__(
        self, mean: Sequence[float] | None = None, scale: Sequence[float] | None = None
    ) -> None:
        self._parts: dict[str, list[np.ndarray]] = {k: [] for k in METRICS}
        self._mean = None if mean is None else np.asarray(mean, np.float64)
        self._scale = None if scale is None else np.asarray(scale, np.float64)

    def _to_mv(self, x: Any) -> np.ndarray:
        x = np.asarray(x, np.float64)
        if self._scale is not None:
            x = x * self._scale
        if self._mean is not None:
            x = x + self._mean
        return x

    def update(self, clean: Any, noisy: Any, denoised: Any) -> None:
        """Adds a batch of windows ``(b, T, C)`` (NumPy arrays or eager tensors)."""
        m = window_metrics(self._to_mv(clean), self._to_mv(noisy), self._to_mv(denoised))
        for k, v in m.items():
            self._parts[k].append(v)

    @property
    def n_windows(self) -> int:
        return int(sum(len(v) for v in self._parts["snr_in_db"]))

    def per_window(self) -> dict[str, np.ndarray]:
        return {k: np.concatenate(v) if v else np.zeros(0) for k, v in self._parts.items()}

    def result(self) -> dict[str, dict[str, float]]:
        return summarize(self.per_window())


def snr_improvement_ci(
    snr_imp_db: Any, records: Any, *, n: int, seed: int, alpha: float = 0.05
) -> dict[str, float] | None:
    """Bootstrap interval of the mean SNR improvement, resampling records (patients).

    Args:
        snr_imp_db: ``(n_windows,)`` per-window SNR improvement (non-finite values, e.g. of
            windows without noise, are left out of every mean, as in :func:`summarize`).
        records: ``(n_windows,)`` record of each window; whole records are drawn.
        n: bootstrap replicates; seed: their seed.

    Returns:
        ``{"point", "low", "high", "n_records"}``, or ``None`` when no window has a finite value.
    """
    from pipeline.evaluation.metrics import bootstrap_ci

    v = np.asarray(snr_imp_db, np.float64)
    if not np.isfinite(v).any():
        return None

    def finite_mean(y: np.ndarray, _: np.ndarray) -> float | None:
        f = y[np.isfinite(y)]
        return float(f.mean()) if len(f) else None

    lo, hi, point = bootstrap_ci(finite_mean, v, v[:, None], n=n, seed=seed, alpha=alpha,
                                 groups=np.asarray(records))
    return {"point": point, "low": lo, "high": hi, "n_records": int(len(set(np.asarray(records).tolist())))}
