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


def _baseline_corrected(segments: np.ndarray) -> np.ndarray:
    """``segments`` as float64 ``(n, n_samples)`` less each one's median (its baseline)."""
    x = np.asarray(segments, dtype=np.float64)
    if x.ndim == 3:
        x = x[..., 0]
    if x.ndim != 2:
        raise ValueError(f"segments must be (n, samples) or (n, samples, 1). Received: {x.shape}")
    return x - np.median(x, axis=1, keepdims=True) if len(x) else x


def morphology_features(segments: np.ndarray, fs_hz: float) -> np.ndarray:
    """Features of ``segments`` ``(n, n_samples)`` (or ``(n, n_samples, 1)``), R at the centre.

    Returns:
        float32 ``(n, len(FEATURE_NAMES))``.
    """
    x = _baseline_corrected(segments)
    n, length = x.shape
    if n == 0:
        return np.zeros((0, len(FEATURE_NAMES)), np.float32)
    c = length // 2
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


TEMPLATE_FEATURE_NAMES = ("template_corr", "qrs_template_corr", "p_template_corr",
                          "r_over_record_median", "qrs_width_over_record_median",
                          "qrs_energy_over_record_median")
"""Patient-relative morphology (:func:`template_features`): each beat against its own record."""

TEMPLATE_SPANS_MS = {"template_corr": (-250, 400), "qrs_template_corr": (-60, 60),
                     "p_template_corr": (-250, -80)}
"""The span around R (ms) over which each correlation with the record's median beat is taken."""


def _pearson(x: np.ndarray, template: np.ndarray) -> np.ndarray:
    """Pearson correlation of every row of ``x`` with ``template`` (0 where either is flat)."""
    xc = x - x.mean(axis=1, keepdims=True)
    tc = template - template.mean()
    denom = np.sqrt(np.sum(xc * xc, axis=1) * np.sum(tc * tc))
    return np.where(denom > 1e-12, (xc @ tc) / np.maximum(denom, 1e-12), 0.0)


def _over_median(values: np.ndarray) -> np.ndarray:
    scale = np.median(np.abs(values))
    return values / scale if scale > 1e-12 else np.zeros_like(values)


def template_features(segments: np.ndarray, fs_hz: float,
                      morphology: np.ndarray | None = None) -> np.ndarray:
    """Each beat of ONE record measured against that record's median beat.

    The template is the sample-wise median of the record's baseline-corrected ``segments``
    (no label is used), so the columns (:data:`TEMPLATE_FEATURE_NAMES`) say how unlike its own
    patient's usual beat a beat is: the Pearson correlation with the template over the whole
    beat, the QRS and the P wave (:data:`TEMPLATE_SPANS_MS`), and the R amplitude, QRS width
    and QRS energy of :func:`morphology_features` over the record's median of each. Like the
    record's mean RR of the rhythm features, this needs the whole record (offline); a streaming
    user would keep a running median instead.

    Args:
        morphology: :func:`morphology_features` of the same ``segments``, when the caller has
            them already (computed here otherwise).

    Returns:
        float32 ``(n, len(TEMPLATE_FEATURE_NAMES))``; zeros for a record without segments.
    """
    x = _baseline_corrected(segments)
    n, length = x.shape
    if n == 0:
        return np.zeros((0, len(TEMPLATE_FEATURE_NAMES)), np.float32)
    c = length // 2
    template = np.median(x, axis=0)
    corrs = [_pearson(x[:, s], template[s]) for s in
             (_span(fs_hz, lo, hi, c, length) for lo, hi in TEMPLATE_SPANS_MS.values())]
    morph = morphology_features(segments, fs_hz) if morphology is None else morphology
    col = {name: i for i, name in enumerate(FEATURE_NAMES)}
    ratios = [_over_median(morph[:, col[k]].astype(np.float64))
              for k in ("r_amplitude", "qrs_width_ms", "qrs_energy")]
    out = np.stack([*corrs, *ratios], axis=1)
    return np.nan_to_num(out, nan=0.0, posinf=0.0, neginf=0.0).astype(np.float32)
