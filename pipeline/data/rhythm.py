"""Patient-relative rhythm features of each beat, from its R-peak times (and amplitudes).

S beats differ from N beats mostly in timing, and what counts as "early" depends on the
patient: the features below put each interval beside the record's own rhythm (inter-patient
papers use the same idea: de Chazal 2004; Saenz-Cogollo & Agelli 2020 divide RR0, RR-1, RR+1
by a 32-beat running mean; Wang 2020 divides by the record's mean RR).

Per beat ``i`` with R peaks at ``r[i]`` seconds:

* ``pre_rr_s``  = r[i] - r[i-1]; ``post_rr_s`` = r[i+1] - r[i]; ``prev_rr_s`` = r[i-1] - r[i-2]
  (the interval before the previous beat);
* ``local_mean_rr_s``: mean of the last ``n_local`` pre-RR intervals (this one included);
  ``running_mean_rr_s``: the same over ``n_running``; ``record_mean_rr_s``: the record's mean;
* the ratio of each of pre, post and prev to each of the three means, and ``pre_post_ratio``;
* ``amplitude_ratio``: the beat's R amplitude over the record's median R amplitude (1.0 when
  no amplitudes are given).

Edges: the first beat has no pre-RR and takes its post-RR; the last beat's post-RR is its
pre-RR; ``prev_rr`` of the first two beats is their pre-RR. A record with fewer than two beats
has no interval at all: every interval is ``NOMINAL_RR_S`` and every ratio 1.

Post-RR looks one beat ahead, which is fine offline (the whole record is there) but not for
streaming: ``causal=True`` drops every feature that uses it (:data:`CAUSAL_FEATURE_NAMES`),
and the record's mean becomes the mean of the intervals seen so far.

R amplitudes (:func:`r_amplitudes`) are measured on the beat lead at the record's own rate:
the value at the R sample minus the median of the +-1 s around it (a baseline estimate that a
wandering baseline moves with), so the windows stage and predict measure them the same way.
"""

from __future__ import annotations

import numpy as np

NOMINAL_RR_S = 1.0
"""Interval used when a record has fewer than two beats (60 beats/min)."""

INTERVALS = ("pre", "post", "prev")
MEANS = ("local", "running", "record")
FEATURE_NAMES = (
    "pre_rr_s", "post_rr_s", "prev_rr_s",
    "local_mean_rr_s", "running_mean_rr_s", "record_mean_rr_s",
    *(f"{i}_over_{m}" for m in MEANS for i in INTERVALS),
    "pre_post_ratio", "amplitude_ratio",
)
"""Column names of :func:`rhythm_features` (offline variant), in order."""

CAUSAL_FEATURE_NAMES = tuple(n for n in FEATURE_NAMES if "post" not in n)
"""Columns of the causal variant: everything that does not look at the next beat."""

def is_relative(name: str) -> bool:
    """Whether rhythm feature ``name`` is a ratio (no unit) rather than a time in seconds."""
    return not name.endswith("_s")


RELATIVE_FEATURE_NAMES = tuple(n for n in FEATURE_NAMES if is_relative(n))
"""The patient-relative columns: every ratio, none of the intervals in seconds."""


def feature_names(causal: bool = False) -> tuple[str, ...]:
    """Column names of :func:`rhythm_features` for the offline or the causal variant."""
    return CAUSAL_FEATURE_NAMES if causal else FEATURE_NAMES


AMPLITUDE_CHUNK_BEATS = 512
"""Beats whose neighbourhoods are stacked at once in :func:`r_amplitudes` (bounds memory)."""


def r_amplitudes(lead: np.ndarray, samples: np.ndarray, fs_hz: float,
                 half_window_s: float = 1.0) -> np.ndarray:
    """R amplitude of each beat: ``lead[s]`` minus the median of ``lead[s - w : s + w + 1]``.

    Args:
        lead: (n_samples,) one lead at ``fs_hz`` (any unit; NaN marks invalid samples).
        samples: (n_beats,) R-peak samples at ``fs_hz``.
        fs_hz: sampling rate of ``lead``.
        half_window_s: half-width ``w`` of the baseline neighbourhood in seconds (cut at the
            record's edges).

    Returns:
        (n_beats,) float64; NaN where the R sample lies outside the lead or is NaN, or the
        neighbourhood holds no valid sample.
    """
    x = np.asarray(lead, np.float64)
    s = np.asarray(samples, np.int64)
    if half_window_s <= 0:
        raise ValueError(f"`half_window_s` must be > 0. Received: half_window_s={half_window_s}")
    out = np.full(len(s), np.nan)
    inside = (s >= 0) & (s < len(x))
    if not inside.any():
        return out
    w = max(1, int(round(half_window_s * fs_hz)))
    offsets = np.arange(-w, w + 1)
    pos = np.flatnonzero(inside)
    padded = np.concatenate([np.full(w, np.nan), x, np.full(w, np.nan)])
    for lo in range(0, len(pos), AMPLITUDE_CHUNK_BEATS):
        p = pos[lo : lo + AMPLITUDE_CHUNK_BEATS]
        hood = padded[s[p, None] + w + offsets[None, :]]
        valid = np.isfinite(hood).any(axis=1)
        base = np.full(len(p), np.nan)
        if valid.any():
            base[valid] = np.nanmedian(hood[valid], axis=1)
        out[p] = x[s[p]] - base
    return out


def trailing_mean(values: np.ndarray, n: int) -> np.ndarray:
    """Mean of ``values[max(0, i - n + 1) : i + 1]`` for every ``i`` (a causal moving mean)."""
    if n < 1:
        raise ValueError(f"`n` must be >= 1. Received: n={n}")
    csum = np.concatenate([[0.0], np.cumsum(values, dtype=np.float64)])
    idx = np.arange(len(values))
    lo = np.maximum(0, idx + 1 - n)
    return (csum[idx + 1] - csum[lo]) / (idx + 1 - lo)


def intervals(r_s: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(pre, post, prev) RR intervals in seconds of every beat, edges as the module says."""
    r_s = np.asarray(r_s, dtype=np.float64)
    n = len(r_s)
    if n < 2:
        nominal = np.full(n, NOMINAL_RR_S)
        return nominal, nominal.copy(), nominal.copy()
    rr = np.diff(r_s)
    if np.any(rr <= 0):
        raise ValueError("R-peak times must be strictly increasing")
    pre = np.concatenate([[rr[0]], rr])
    post = np.concatenate([rr, [rr[-1]]])
    prev = np.concatenate([pre[:2], pre[1:-1]]) if n > 2 else pre.copy()
    return pre, post, prev


def rhythm_features(
    r_s: np.ndarray,
    amplitudes: np.ndarray | None = None,
    *,
    n_local: int = 10,
    n_running: int = 32,
    causal: bool = False,
) -> np.ndarray:
    """Rhythm features of every beat of one record.

    Args:
        r_s: R-peak times in seconds, strictly increasing, shape ``(n_beats,)``.
        amplitudes: R amplitude of each beat (any unit; only ratios are used), or None.
        n_local: beats in the local mean (10 by default).
        n_running: beats in the running mean (32 by default).
        causal: drop the features that use the next beat (post-RR); the record mean is the
            mean of the intervals so far.

    Returns:
        float32 array ``(n_beats, len(FEATURE_NAMES))`` (or ``CAUSAL_FEATURE_NAMES``).
    """
    pre, post, prev = intervals(r_s)
    means = {
        "local": trailing_mean(pre, n_local),
        "running": trailing_mean(pre, n_running),
        "record": (trailing_mean(pre, max(len(pre), 1)) if causal
                   else np.full(len(pre), pre.mean() if len(pre) else NOMINAL_RR_S)),
    }
    cols = {"pre_rr_s": pre, "post_rr_s": post, "prev_rr_s": prev,
            **{f"{m}_mean_rr_s": v for m, v in means.items()}}
    named = {"pre": pre, "post": post, "prev": prev}
    for m in MEANS:
        for i in INTERVALS:
            cols[f"{i}_over_{m}"] = named[i] / means[m]
    cols["pre_post_ratio"] = pre / post
    cols["amplitude_ratio"] = amplitude_ratio(amplitudes, len(pre))
    names = CAUSAL_FEATURE_NAMES if causal else FEATURE_NAMES
    if len(pre) == 0:
        return np.zeros((0, len(names)), np.float32)
    return np.stack([cols[n] for n in names], axis=1).astype(np.float32)


def amplitude_ratio(amplitudes: np.ndarray | None, n_beats: int) -> np.ndarray:
    """Each beat's |R amplitude| over the record's median |R amplitude| (1.0 without data)."""
    if amplitudes is None:
        return np.ones(n_beats)
    a = np.abs(np.asarray(amplitudes, dtype=np.float64))
    if a.shape != (n_beats,):
        raise ValueError(f"amplitudes must have shape ({n_beats},). Received: {a.shape}")
    finite = a[np.isfinite(a)]
    median = float(np.median(finite)) if finite.size else 0.0
    if median <= 0:
        return np.ones(n_beats)
    return np.where(np.isfinite(a), a / median, 1.0)


CONTEXT_FEATURE_NAMES = ("rr_irregularity_local", "rr_irregularity_record",
                         "pre_over_record_median", "post_over_record_median")
"""Columns of :func:`context_features`: how irregular the rhythm around a beat is, and its
intervals against the record's median RR."""

CAUSAL_CONTEXT_FEATURE_NAMES = tuple(n for n in CONTEXT_FEATURE_NAMES if "post" not in n)

IRREGULARITY_HALF_WINDOW_BEATS = 40
"""Beats on each side of the local irregularity window (81 beats, about a minute)."""


def _irregularity(pre: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Mean |successive difference| of ``pre[lo:hi]`` over its median, per beat."""
    jumps = np.abs(np.diff(pre, prepend=pre[:1]))
    csum = np.concatenate([[0.0], np.cumsum(jumps)])
    mean_jump = (csum[hi] - csum[lo]) / (hi - lo)
    median = np.array([np.median(pre[a:b]) for a, b in zip(lo, hi)])
    return mean_jump / np.maximum(median, 1e-9)


def context_features(pre_rr_s: np.ndarray, post_rr_s: np.ndarray | None = None, *,
                     half_window_beats: int = IRREGULARITY_HALF_WINDOW_BEATS,
                     causal: bool = False) -> np.ndarray:
    """Rhythm context of every beat of ONE record, from its pre-RR (and post-RR) intervals.

    * ``rr_irregularity_local``: the mean absolute change between successive pre-RR intervals
      over the beats ``i - k .. i + k`` (``k = half_window_beats``; cut at the record's edges)
      over their median pre-RR. A regular rhythm with a few premature beats scores low; atrial
      fibrillation (labelled N) scores high, which is what tells its irregular N beats from
      premature S beats.
    * ``rr_irregularity_record``: the same over the whole record.
    * ``pre_over_record_median``, ``post_over_record_median``: the intervals over the record's
      median pre-RR (robust to the ectopic beats that move the mean).

    Choosing these columns (window length included) was done on the grouped folds of the
    DS1 training records only (``Research_Runs/2026-12-03_classic_context_exploration``).
    Offline, the window looks ``k`` beats ahead; ``causal=True`` uses the trailing ``2k + 1``
    beats, the intervals so far for the record columns, and drops post-RR
    (:data:`CAUSAL_CONTEXT_FEATURE_NAMES`).

    Returns:
        float32 ``(n_beats, len(names))``; zeros for a record without beats.
    """
    names = CAUSAL_CONTEXT_FEATURE_NAMES if causal else CONTEXT_FEATURE_NAMES
    pre = np.asarray(pre_rr_s, np.float64)
    n = len(pre)
    if half_window_beats < 1:
        raise ValueError(f"`half_window_beats` must be >= 1. Received: {half_window_beats}")
    if n == 0:
        return np.zeros((0, len(names)), np.float32)
    idx = np.arange(n)
    hi = idx + 1 if causal else np.minimum(n, idx + half_window_beats + 1)
    lo = np.maximum(0, idx - (2 * half_window_beats if causal else half_window_beats))
    whole = (_irregularity(pre, np.zeros(n, np.int64), idx + 1) if causal else
             np.full(n, _irregularity(pre, np.array([0]), np.array([n]))[0]))
    record_median = (np.array([np.median(pre[: i + 1]) for i in idx]) if causal
                     else np.full(n, np.median(pre)))
    cols = {"rr_irregularity_local": _irregularity(pre, lo, hi),
            "rr_irregularity_record": whole,
            "pre_over_record_median": pre / np.maximum(record_median, 1e-9)}
    if not causal:
        post = pre if post_rr_s is None else np.asarray(post_rr_s, np.float64)
        if post.shape != pre.shape:
            raise ValueError(f"post_rr_s must have shape {pre.shape}. Received: {post.shape}")
        cols["post_over_record_median"] = post / np.maximum(record_median, 1e-9)
    out = np.stack([cols[c] for c in names], axis=1)
    return np.nan_to_num(out, nan=0.0, posinf=0.0, neginf=0.0).astype(np.float32)
