"""Classic (non-learned) ECG denoisers, the reference the learned denoisers are compared with.

Both work window by window and lead by lead on arrays ``(n, T, C)`` in mV and are scored by the
same code as the models (:mod:`pipeline.denoise_metrics`). The band-pass's free choices were
made on training data only: the 3,608 evaluation windows of 8 DS1 records (101, 106, 108, 109, 112,
114, 115, 116) with noise from the ``val`` segment of the nstdb records, at 24, 6 and 0 dB, by
mean SNR improvement; never on DS2 or the ``test`` noise segment.

* ``bandpass``: Butterworth band-pass 0.5-40 Hz, design order 4 (``scipy.signal.butter(4,
  [0.5, 40], "bandpass")``, i.e. 8 poles), applied forward and backward (``sosfiltfilt``: zero
  phase, magnitude response squared, so -6 dB at the corners). Each window is padded by its
  mirror image (``padtype="even"``, ``padlen = T - 1``) before filtering: with scipy's default
  (odd extension, 27 samples) a QRS near a window edge starts a slow transient of the 0.5 Hz
  high-pass that spoils the window; the mirror padding gains +0.3 to +0.8 dB on every noise
  type and SNR of the tuning data (``em`` at 0 dB: equal).

  The clean reference windows keep the recording's offset and its own baseline (the windows
  stage stores raw mV), and the band-pass removes them with the noise. That counts as error,
  so at high input SNR the band-pass makes windows worse (about -21 dB SNR improvement at
  24 dB input on MIT-BIH).
* ``wavelet``: a zero-phase order-2 Butterworth high-pass at 0.5 Hz (the one the windows stage
  applies to the clean reference, so the baseline wander goes and the reference's own content
  stays), then wavelet shrinkage: ``sym8`` discrete wavelet transform to level 6 (the deepest
  level whose filters fit a 4 s window at 360 Hz; approximation band 0-2.8 Hz), soft
  thresholding of every detail level at a quarter of the universal threshold
  ``sigma sqrt(2 ln N)`` (Donoho and Johnstone 1994; ``N`` = samples per lead in the window),
  where ``sigma = median(|d_1|) / 0.6745`` is the MAD noise estimate of the finest detail
  level, per window and lead; then the inverse transform.

  These settings were chosen on validation patients by ``python -m pipeline.tune_filters``
  (``Research_Runs/2026-12-02_wavelet_tuning``: 32 settings of wavelet, threshold scale,
  mode and high-pass, scored by the mean SNR improvement over every noise type and level on
  607 windows of the records 101, 106, 114, 122 and 207 with the ``val`` noise segment):
  +4.19 dB, against +2.91 dB for the band-pass and -0.24 dB for the former VisuShrink without
  high-pass. The high-pass matters most (+3.4 dB); the full universal threshold shrinks QRS
  detail at low noise. Other choices: noise estimated on the finest level, not per level (a
  per-level MAD estimate takes the QRS energy of the coarse levels for noise).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from pipeline.data.signal import mirror_filtfilt, mirror_highpass

BANDPASS_LOW_HZ = 0.5
BANDPASS_HIGH_HZ = 40.0
BANDPASS_ORDER = 4
WAVELET = "sym8"
WAVELET_LEVEL = 6
WAVELET_THRESHOLD_SCALE = 0.25
WAVELET_HIGHPASS_HZ = 0.5


def _check(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x)
    if x.ndim != 3:
        raise ValueError(f"expected windows of shape (n, T, C). Received: shape={x.shape}")
    return x


def bandpass(
    noisy: np.ndarray,
    fs_hz: float,
    low_hz: float = BANDPASS_LOW_HZ,
    high_hz: float = BANDPASS_HIGH_HZ,
    order: int = BANDPASS_ORDER,
) -> np.ndarray:
    """Zero-phase Butterworth band-pass along time.

    Args:
        noisy: (n, T, C) windows in mV.
        fs_hz: sampling rate in Hz (``high_hz`` must be below ``fs_hz / 2``).
        low_hz, high_hz: -3 dB corners of the one-pass design.
        order: design order of ``scipy.signal.butter``.

    Returns:
        (n, T, C) float32 filtered windows.
    """
    from scipy import signal

    x = _check(noisy)
    if not 0 < low_hz < high_hz < fs_hz / 2:
        raise ValueError(
            f"need 0 < low_hz < high_hz < fs_hz/2. Received: low_hz={low_hz}, "
            f"high_hz={high_hz}, fs_hz={fs_hz}"
        )
    sos = signal.butter(order, [low_hz, high_hz], btype="bandpass", fs=fs_hz, output="sos")
    return mirror_filtfilt(sos, x.astype(np.float64)).astype(np.float32)


def wavelet_denoise(
    noisy: np.ndarray,
    fs_hz: float,
    wavelet: str = WAVELET,
    level: int = WAVELET_LEVEL,
    noise_estimate: str = "finest",
    remove_approximation: bool = False,
    threshold_scale: float = WAVELET_THRESHOLD_SCALE,
    threshold_mode: str = "soft",
    highpass_hz: float = WAVELET_HIGHPASS_HZ,
) -> np.ndarray:
    """Wavelet thresholding with the universal threshold (module docstring).

    Args:
        noisy: (n, T, C) windows in mV.
        fs_hz: sampling rate in Hz (used by the high-pass only).
        wavelet: PyWavelets wavelet name.
        level: decomposition depth (capped at the deepest level the window length allows).
        noise_estimate: ``finest`` (sigma from the MAD of the level-1 details, used on every
            level) or ``per_level`` (a MAD estimate and threshold for each level).
        remove_approximation: zero the level-``level`` approximation (baseline removal).
        threshold_scale: multiplies the universal threshold (1: VisuShrink; default 0.25).
        threshold_mode: ``soft`` or ``hard`` thresholding (``pywt.threshold``).
        highpass_hz: > 0: first a zero-phase Butterworth high-pass (order 2, the one the
            windows stage applies to the clean reference) at this cut-off, each window padded
            by its mirror image (default 0.5 Hz); 0: none.

    Returns:
        (n, T, C) float32 denoised windows.
    """
    import pywt

    if noise_estimate not in ("finest", "per_level"):
        raise ValueError(
            "noise_estimate must be 'finest' or 'per_level'. "
            f"Received: noise_estimate={noise_estimate!r}"
        )
    if threshold_mode not in ("soft", "hard") or threshold_scale < 0 or highpass_hz < 0:
        raise ValueError(
            "need threshold_mode 'soft' or 'hard', threshold_scale >= 0 and highpass_hz >= 0. "
            f"Received: threshold_mode={threshold_mode!r}, threshold_scale={threshold_scale}, "
            f"highpass_hz={highpass_hz}"
        )
    x = _check(noisy).astype(np.float64)
    if highpass_hz > 0:
        x = mirror_highpass(x, highpass_hz, fs_hz)
    T = x.shape[1]
    w = pywt.Wavelet(wavelet)
    level = max(1, min(level, pywt.dwt_max_level(T, w.dec_len)))
    coeffs = pywt.wavedec(x, w, level=level, axis=1)
    thr_scale = threshold_scale * np.sqrt(2.0 * np.log(T))

    def mad_sigma(d: np.ndarray) -> np.ndarray:
        return np.median(np.abs(d), axis=1, keepdims=True) / 0.6745  # (n, 1, C)

    sigma_1 = mad_sigma(coeffs[-1])
    out = [np.zeros_like(coeffs[0]) if remove_approximation else coeffs[0]]
    for d in coeffs[1:]:
        sigma = mad_sigma(d) if noise_estimate == "per_level" else sigma_1
        out.append(pywt.threshold(d, sigma * thr_scale, mode=threshold_mode))
    y = pywt.waverec(out, w, axis=1)[:, :T]
    return y.astype(np.float32)


FilterFn = Callable[[np.ndarray, float], np.ndarray]

CLASSIC_FILTERS: dict[str, FilterFn] = {"bandpass": bandpass, "wavelet": wavelet_denoise}
"""``name -> f(noisy (n, T, C) mV, fs_hz) -> denoised (n, T, C) float32``."""


def filter_fn(name: str) -> FilterFn:
    """The registered classic filter ``name``; a KeyError names the registered ones."""
    try:
        return CLASSIC_FILTERS[name]
    except KeyError:
        raise KeyError(
            f"unknown classic filter {name!r}; registered: {sorted(CLASSIC_FILTERS)}"
        ) from None


def apply_filter(name: str, noisy: np.ndarray, fs_hz: float) -> np.ndarray:
    """Runs the classic filter ``name`` on windows ``(n, T, C)``; same shape out (float32)."""
    return filter_fn(name)(noisy, fs_hz)
