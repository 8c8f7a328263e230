"""Signal helpers shared by the windows stage, the TFRecord writer and predict.

Resampling (polyphase, NaN spans kept visible), the zero-phase high-pass of the denoising
reference (of a recording, and of windows padded by their mirror image), and the
RR-interval features of a beat sequence. Pure NumPy/SciPy functions on arrays; no files.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np


def resample(x: np.ndarray, fs_in: float, fs_out: float) -> np.ndarray:
    """Polyphase resampling along axis 0 (``scipy.signal.resample_poly``).

    Args:
        x: (n, ...) samples at ``fs_in`` Hz; NaN marks invalid samples.
        fs_in: input rate in Hz.
        fs_out: output rate in Hz (the ratio is approximated with denominators <= 1000).

    Returns:
        float64 samples at ``fs_out``; output samples that a NaN input sample reaches (weight
        above 1e-3) are NaN. Equal rates return ``x`` as float64 unchanged.
    """
    from scipy.signal import resample_poly

    if abs(fs_in - fs_out) < 1e-9:
        return x.astype(np.float64, copy=False)
    frac = Fraction(fs_out / fs_in).limit_denominator(1000)
    nan = np.isnan(x)
    y = resample_poly(np.where(nan, 0.0, x), frac.numerator, frac.denominator, axis=0)
    if nan.any():  # keep NaN spans visible after resampling
        m = resample_poly(nan.astype(float), frac.numerator, frac.denominator, axis=0)
        y[m > 1e-3] = np.nan
    return y


def highpass(x: np.ndarray, cutoff_hz: float, fs_hz: float, order: int = 2) -> np.ndarray:
    """Zero-phase Butterworth high-pass along axis 0 (NaN samples stay NaN)."""
    from scipy.signal import butter, sosfiltfilt

    sos = butter(order, cutoff_hz, btype="highpass", fs=fs_hz, output="sos")
    nan = np.isnan(x)
    y = sosfiltfilt(sos, np.where(nan, 0.0, x), axis=0)
    y[nan] = np.nan
    return y


def mirror_filtfilt(sos: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Forward-backward filtering of ``(n, T, C)`` windows along time, each padded by its
    mirror image (``padtype="even"``, ``padlen = T - 1``; the choice
    :mod:`pipeline.evaluation.classic_filters` explains)."""
    from scipy.signal import sosfiltfilt

    return sosfiltfilt(sos, x, axis=1, padtype="even", padlen=max(0, x.shape[1] - 1))


def mirror_highpass(x: np.ndarray, cutoff_hz: float, fs_hz: float) -> np.ndarray:
    """Zero-phase order-2 Butterworth high-pass along time of ``(n, T, C)`` windows
    (:func:`mirror_filtfilt`)."""
    from scipy.signal import butter

    if not 0 < cutoff_hz < fs_hz / 2:
        raise ValueError(f"need 0 < highpass_hz < fs_hz/2. Received: highpass_hz={cutoff_hz}, "
                         f"fs_hz={fs_hz}")
    return mirror_filtfilt(butter(2, cutoff_hz, btype="highpass", fs=fs_hz, output="sos"), x)


def rr_features(r_s: np.ndarray, n_local: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pre-RR, post-RR and local mean RR (s) of each beat.

    Args:
        r_s: (n,) R-peak times in s, ascending.
        n_local: number of preceding RR intervals (this beat's pre-RR included) averaged into
            the local mean.

    Returns:
        Three (n,) float64 arrays. The first beat's pre-RR is its post-RR and the last beat's
        post-RR its pre-RR; fewer than two beats give zeros.
    """
    n = len(r_s)
    if n < 2:
        z = np.zeros(n)
        return z, z, z
    rr = np.diff(r_s)
    pre = np.concatenate([[rr[0]], rr])
    post = np.concatenate([rr, [rr[-1]]])
    csum = np.concatenate([[0.0], np.cumsum(pre)])
    idx = np.arange(n)
    lo = np.maximum(0, idx + 1 - n_local)
    local = (csum[idx + 1] - csum[lo]) / (idx + 1 - lo)
    return pre, post, local


def rr_for_beats(table: dict[str, np.ndarray], beat_index: np.ndarray) -> np.ndarray:
    """RR features (pre, post, local; s) of the given beat positions, as (k, 3) float32.

    Args:
        table: per-beat columns ``beat_index``, ``rr_pre_s``, ``rr_post_s``, ``rr_local_s``
            (a windows file, or the same columns built by predict).
        beat_index: (k,) positions of the wanted beats among the record's beats.

    A position missing from ``table`` (a segment kept whose beat window was dropped at an
    edge) gets values interpolated from its neighbours (0 when no beat has any).
    """
    keys = ("rr_pre_s", "rr_post_s", "rr_local_s")
    lookup = {int(b): i for i, b in enumerate(table["beat_index"])}
    out = np.full((len(beat_index), 3), np.nan, np.float32)
    for j, b in enumerate(beat_index):
        i = lookup.get(int(b))
        if i is not None:
            out[j] = [table[k][i] for k in keys]
    if np.isnan(out).any():
        for c in range(3):
            col = out[:, c]
            good = ~np.isnan(col)
            col[~good] = (
                np.interp(np.flatnonzero(~good), np.flatnonzero(good), col[good])
                if good.any()
                else 0.0
            )
    return out
