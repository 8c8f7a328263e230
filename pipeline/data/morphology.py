"""Beat morphology features from a segment centred on its R peak (for the classic baseline).

Each segment is ``(n_samples,)`` at ``fs_hz`` with the R peak at the centre sample (the windows
stage's 2 s segments at 360 Hz). Amplitudes are measured against the segment's median (a
baseline estimate), so a wandering baseline shifts nothing; widths are in milliseconds.

Columns (:data:`FEATURE_NAMES`): ``r_amplitude``, ``q_amplitude`` and ``s_amplitude`` (the
minima 60 ms before and after R), ``qrs_width_ms`` (the span around R where the slope exceeds
20 % of its largest value within 100 ms), ``qrs_energy`` (mean square within 60 ms),
``p_amplitude`` (largest value 250-80 ms before R), ``t_amplitude`` (largest absolute value
100-400 ms after R) and ``pre_post_area_ratio`` (area under |x| 100 ms before R over 100 ms
after R).
"""

from __future__ import annotations

import numpy as np

FEATURE_NAMES = ("r_amplitude", "q_amplitude", "s_amplitude", "qrs_width_ms", "qrs_energy",
                 "p_amplitude", "t_amplitude", "pre_post_area_ratio")


def _span(fs_hz: float, start_ms: float, stop_ms: float, centre: int, n: int) -> slice:
    lo = centre + int(round(start_ms * fs_hz / 1000.0))
    hi = centre + int(round(stop_ms * fs_hz / 1000.0))
    return slice(max(0, lo), min(n, max(hi, lo + 1)))


def qrs_width_ms(x: np.ndarray, fs_hz: float, centre: int) -> np.ndarray:
    """Width of the steep part around R: samples within 100 ms where |slope| > 20 % of max."""
    win = _span(fs_hz, -100, 100, centre, x.shape[1])
    slope = np.abs(np.diff(x[:, win], axis=1))
    steep = slope > 0.2 * slope.max(axis=1, keepdims=True)
    first = np.where(steep.any(axis=1), np.argmax(steep, axis=1), 0)
    last = np.where(steep.any(axis=1), steep.shape[1] - 1 - np.argmax(steep[:, ::-1], axis=1), 0)
    return (last - first + 1) * 1000.0 / fs_hz


def morphology_features(segments: np.ndarray, fs_hz: float) -> np.ndarray:
    """Features of ``segments`` ``(n, n_samples)`` (or ``(n, n_samples, 1)``), R at the centre.

    Returns:
        float32 ``(n, len(FEATURE_NAMES))``.
    """
    x = np.asarray(segments, dtype=np.float64)
    if x.ndim == 3:
        x = x[..., 0]
    if x.ndim != 2:
        raise ValueError(f"segments must be (n, samples) or (n, samples, 1). Received: {x.shape}")
    n, length = x.shape
    if n == 0:
        return np.zeros((0, len(FEATURE_NAMES)), np.float32)
    c = length // 2
    x = x - np.median(x, axis=1, keepdims=True)
    qrs = _span(fs_hz, -60, 60, c, length)
    before, after = _span(fs_hz, -60, 0, c, length), _span(fs_hz, 1, 60, c, length)
    area_pre = np.abs(x[:, _span(fs_hz, -100, 0, c, length)]).sum(axis=1)
    area_post = np.abs(x[:, _span(fs_hz, 1, 100, c, length)]).sum(axis=1)
    cols = [
        x[:, c],
        x[:, before].min(axis=1),
        x[:, after].min(axis=1),
        qrs_width_ms(x, fs_hz, c),
        np.mean(np.square(x[:, qrs]), axis=1),
        x[:, _span(fs_hz, -250, -80, c, length)].max(axis=1),
        np.abs(x[:, _span(fs_hz, 100, 400, c, length)]).max(axis=1),
        area_pre / np.maximum(area_post, 1e-9),
    ]
    return np.nan_to_num(np.stack(cols, axis=1), nan=0.0, posinf=0.0, neginf=0.0).astype(np.float32)
