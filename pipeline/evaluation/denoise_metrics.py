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
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from pipeline.core.config import PipelineConfig

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
        ``{metric: {"mean", "std", "median", "min", "max", "n", "n_nonfinite"}}``; statistics
        over the finite values (``std`` with ddof=0); NaN when there are none.
    """
    out = {}
    for k, v in per_window.items():
        v = np.asarray(v, np.float64).ravel()
        f = v[np.isfinite(v)]
        stats = (
            dict(mean=f.mean(), std=f.std(), median=np.median(f), min=f.min(), max=f.max())
            if len(f)
            else dict.fromkeys(("mean", "std", "median", "min", "max"), math.nan)
        )
        out[k] = {
            **{s: float(x) for s, x in stats.items()},
            "n": int(len(v)),
            "n_nonfinite": int(len(v) - len(f)),
        }
    return out


def evaluate_arrays(clean: Any, noisy: Any, denoised: Any) -> dict[str, dict[str, float]]:
    """``summarize(window_metrics(clean, noisy, denoised))``."""
    return summarize(window_metrics(clean, noisy, denoised))


class MetricAccumulator:
    """Streaming evaluation: per-window metrics batch by batch, summarized at the end.

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


def evaluate_dataset(
    dataset: Iterable[Any],
    denoise_fn: Callable[[np.ndarray], Any],
    *,
    max_windows: int | None = None,
    mean: Sequence[float] | None = None,
    scale: Sequence[float] | None = None,
) -> dict[str, dict[str, float]]:
    """Scores a denoiser over one pass of a ``(noisy, clean)`` dataset.

    Args:
        dataset: batches ``(noisy, clean, ...)`` of shape (b, T, C) (e.g. from
            ``pipeline.loader.create_dataset(..., task="mitdb_denoise")``).
        denoise_fn: ``noisy (b, T, C) ndarray -> denoised`` (e.g. ``model.predict_on_batch``).
        max_windows: stop after this many windows (None: the whole pass).
        mean, scale: normalization statistics used by the dataset, to score in mV.
    """
    acc = MetricAccumulator(mean, scale)
    for batch in dataset:
        noisy, clean = np.asarray(batch[0]), np.asarray(batch[1])
        if max_windows is not None:
            left = max_windows - acc.n_windows
            if left <= 0:
                break
            noisy, clean = noisy[:left], clean[:left]
        acc.update(clean, noisy, np.asarray(denoise_fn(noisy)))
    return acc.result()


def evaluate_classic(
    cfg: PipelineConfig,
    records: Sequence[str],
    noise_types: Sequence[str],
    snr_dbs: Sequence[float],
    part: str = "test",
    max_windows: int | None = None,
    *,
    filters: Sequence[str] | None = None,
    batch_size: int = 256,
    noise: Mapping[str, np.ndarray] | None = None,
) -> dict[str, dict[str, dict[float, dict[str, dict[str, float]]]]]:
    """Scores the classic filters on the evaluation windows of ``records``.

    For every (noise type, SNR) the evaluation windows (``denoise_eval_shift_samples`` grid,
    fixed noise per chunk) are read once with :func:`pipeline.loader.create_dataset` (no
    normalization), noise from the ``part`` segment of the records is added by
    :func:`pipeline.noise.make_noise_fn`, and every filter is scored on the same noisy windows.

    Args:
        cfg: pipeline config (data folder with ``tfrecords/denoise`` and ``raw/nstdb``).
        records: MIT-BIH record names (e.g. DS2).
        noise_types: among ``pipeline.noise.NOISE_TYPES``.
        snr_dbs: input SNRs in dB.
        part: noise segment, ``test`` (default) or ``val``.
        max_windows: score at most this many windows per (noise type, SNR).
        filters: names in ``CLASSIC_FILTERS`` (default: all).
        batch_size: windows per batch.
        noise: preloaded noise records (default: read from ``raw/nstdb`` when needed).

    Returns:
        ``{filter: {noise_type: {snr_db: summary}}}`` with summaries from :func:`summarize`.
    """
    from pipeline.data.loader import create_dataset
    from pipeline.data.noise import load_noise, make_noise_fn, records_needed
    from pipeline.evaluation.classic_filters import CLASSIC_FILTERS, apply_filter

    filters = list(CLASSIC_FILTERS) if filters is None else list(filters)
    for f in filters:
        if f not in CLASSIC_FILTERS:
            raise KeyError(f"unknown classic filter {f!r}; registered: {sorted(CLASSIC_FILTERS)}")
    need = records_needed(noise_types)
    if need and noise is None:
        noise = load_noise(cfg, need)
    fs = cfg.windows.denoise_fs_hz
    results: dict[str, dict[str, dict[float, Any]]] = {f: {} for f in filters}
    for nt in noise_types:
        for snr in snr_dbs:
            t0 = time.perf_counter()
            ds = create_dataset(
                records,
                cfg,
                batch_size,
                is_training=False,
                task="mitdb_denoise",
                noise_fn=make_noise_fn(cfg, nt, snr, part, noise=noise),
            )
            accs = {f: MetricAccumulator() for f in filters}
            n = 0
            for noisy, clean in ds:
                noisy, clean = noisy.numpy(), clean.numpy()
                if max_windows is not None:
                    noisy, clean = noisy[: max_windows - n], clean[: max_windows - n]
                for f in filters:
                    accs[f].update(clean, noisy, apply_filter(f, noisy, fs))
                n += len(noisy)
                if max_windows is not None and n >= max_windows:
                    break
            for f in filters:
                results[f].setdefault(nt, {})[float(snr)] = accs[f].result()
            log.info(
                "classic %s @ %g dB: %d windows, %s (%.1f s)",
                nt,
                snr,
                n,
                ", ".join(
                    f"{f} {results[f][nt][float(snr)]['snr_imp_db']['mean']:+.2f} dB"
                    for f in filters
                ),
                time.perf_counter() - t0,
            )
    return results
