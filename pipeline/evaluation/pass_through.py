"""A pass-through gate after a denoiser: leave input that looks clean untouched.

A denoiser trained on noisy windows also edits clean ones, and a user who denoises every
recording loses signal on the clean ones (several dB at 24 dB input SNR). The gate needs
no training: per window and lead, what the model removed estimates the noise, so

    estimated input SNR (dB) = 10 log10(power of the output about its mean
                                        / power of (input - output))

and the gate returns ``output + w (input - output)`` with the pass-through weight
``w = sigmoid((estimated SNR - threshold_db) / width_db)``: the input itself where the
model removed almost nothing, the model's output where it removed a lot. The estimate is a
ratio of powers per lead, so it is the same in mV and in the loader's normalised units.

White noise fools that estimate: the model removes only the part of it outside the ECG's
band, so a window at 12 dB looks nearly clean. A second, optional feature tells it apart: the
spectral flatness of the removed part (:func:`removed_flatness`; near 0.5 for white noise,
below 0.1 for baseline wander, electrode motion, muscle artefact and what a model removes from
clean input). With ``max_flatness`` set, a window whose removed part is flatter than that is
never passed through (``w = 0``).

The model also under-removes white noise. With ``white_lowpass_hz`` set too, a window whose
removed part is white on a lead and whose lowest estimated input SNR is below
``white_max_snr_db`` (so not one of the near-clean windows whose tiny removed part happens to
be flat) is low-passed after the model (zero-phase Butterworth, order 4, mirror-padded): the
classic filter for the noise the network handles worst. It needs the windows' sampling rate.

``threshold_db`` and ``width_db`` are chosen on validation patients
(:mod:`pipeline.protocol.gate_tuning`, ``python -m pipeline.tune_gate --run RUN``) and
stored in the run folder as :data:`GATE_FILE`; evaluation and prediction then apply them.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.core.io_utils import PipelineError

GATE_FILE = "pass_through_gate.json"

GRID: tuple[tuple[float, float, float | None, float | None], ...] = tuple(
    (t, w, f, lp) for t, w, f, lp in itertools.product(
        (6.0, 8.0, 10.0, 12.0, 14.0, 16.0, 18.0, 20.0, 22.0, 24.0, 27.0, 30.0),
        (0.5, 1.0, 2.0, 4.0), (None, 0.15, 0.25, 0.35), (None, 50.0, 60.0, 70.0))
    if f is not None or lp is None)
"""(threshold_db, width_db, max_flatness, white_lowpass_hz) settings compared on validation
(624; a white-noise low-pass only with a flatness limit)."""
WHITE_MAX_SNR_DB = 25.0
"""Default ``white_max_snr_db``: below every Gaussian cell's estimated SNR, above the near-clean
windows' (`Research_Runs/2026-12-04_white_noise_postfilter_exploration`, validation only)."""


@dataclasses.dataclass(frozen=True)
class GateSetting:
    threshold_db: float
    width_db: float
    max_flatness: float | None = None
    """Never pass a window whose removed part is flatter than this (``None``: no limit)."""
    white_lowpass_hz: float | None = None
    """Low-pass the output of the windows whose removed part is white (``None``: never)."""
    white_max_snr_db: float = WHITE_MAX_SNR_DB

    def __post_init__(self) -> None:
        if not (np.isfinite(self.threshold_db) and self.width_db > 0):
            raise PipelineError(f"pass-through gate needs a finite threshold_db and width_db > 0; "
                                f"got {self.threshold_db}, {self.width_db}")
        if self.max_flatness is not None and not 0.0 < self.max_flatness <= 1.0:
            raise PipelineError(f"pass-through gate max_flatness must be in (0, 1] or null; "
                                f"got {self.max_flatness}")
        if self.white_lowpass_hz is not None and (self.max_flatness is None
                                                  or not self.white_lowpass_hz > 0):
            raise PipelineError(f"pass-through gate white_lowpass_hz needs max_flatness and a "
                                f"cut-off > 0 Hz; got {self.white_lowpass_hz}, max_flatness "
                                f"{self.max_flatness}")

    @property
    def name(self) -> str:
        flat = "" if self.max_flatness is None else f"_f{self.max_flatness:g}"
        lp = "" if self.white_lowpass_hz is None else f"_lp{self.white_lowpass_hz:g}"
        return f"gate_t{self.threshold_db:g}_w{self.width_db:g}{flat}{lp}"

    def to_json(self) -> dict[str, float]:
        """The setting as stored: the optional features only when set, so older gates keep
        their files."""
        d = dataclasses.asdict(self)
        keep = ["threshold_db", "width_db"] + (["max_flatness"] if self.max_flatness else []) \
            + (["white_lowpass_hz", "white_max_snr_db"] if self.white_lowpass_hz else [])
        return {k: d[k] for k in keep}

    def post(self, fs_hz: float | None = None) -> Any:
        """``g(noisy, denoised)`` applying this gate to windows at ``fs_hz``: a ``post``
        method of :func:`pipeline.evaluation.evaluate.evaluate_denoiser`."""
        return functools.partial(apply, setting=self, fs_hz=fs_hz)


def estimated_input_snr_db(noisy: np.ndarray, denoised: np.ndarray) -> np.ndarray:
    """``(batch, leads)`` dB: the output's power about its mean over the removed part's."""
    noisy = np.asarray(noisy, np.float64)
    den = np.asarray(denoised, np.float64)
    signal = np.sum((den - den.mean(axis=1, keepdims=True)) ** 2, axis=1)
    removed = np.sum((noisy - den) ** 2, axis=1)
    with np.errstate(divide="ignore"):
        return 10.0 * np.log10(np.maximum(signal, 1e-20) / np.maximum(removed, 1e-30))


def removed_flatness(noisy: np.ndarray, denoised: np.ndarray) -> np.ndarray:
    """``(batch, leads)``: the spectral flatness (geometric over arithmetic mean of the power
    spectrum, DC left out) of the part the model removed; 1 for white noise."""
    removed = np.asarray(noisy, np.float64) - np.asarray(denoised, np.float64)
    power = np.abs(np.fft.rfft(removed, axis=1)[:, 1:]) ** 2 + 1e-30
    return np.exp(np.mean(np.log(power), axis=1)) / np.mean(power, axis=1)


def pass_weight(est_snr_db: np.ndarray, setting: GateSetting,
                flatness: np.ndarray | None = None) -> np.ndarray:
    """The weight of the input in the output (0: the model's output, 1: the input);
    ``flatness`` (:func:`removed_flatness`) is needed when the setting limits it."""
    z = np.clip((est_snr_db - setting.threshold_db) / setting.width_db, -60.0, 60.0)
    w = 1.0 / (1.0 + np.exp(-z))
    if setting.max_flatness is None:
        return w
    if flatness is None:
        raise PipelineError(f"{setting.name}: this gate limits the removed part's flatness; "
                            "pass_weight needs it")
    return np.where(flatness > setting.max_flatness, 0.0, w)


def white_lowpass(x: np.ndarray, cutoff_hz: float, fs_hz: float) -> np.ndarray:
    """``(batch, time, leads)`` zero-phase Butterworth low-pass (order 4, mirror-padded)."""
    from scipy import signal

    from pipeline.data.signal import mirror_filtfilt

    if not 0 < cutoff_hz < fs_hz / 2:
        raise PipelineError(f"white_lowpass_hz must be in (0, fs/2); got {cutoff_hz} at "
                            f"{fs_hz} Hz")
    sos = signal.butter(4, cutoff_hz, btype="lowpass", fs=fs_hz, output="sos")
    return mirror_filtfilt(sos, x)


def apply(noisy: Any, denoised: Any, setting: GateSetting,
          fs_hz: float | None = None) -> np.ndarray:
    """``denoised + w (noisy - denoised)`` per window and lead, ``(batch, time, leads)``,
    then the white-noise low-pass where the setting has one (``fs_hz`` needed then)."""
    noisy, den = _as_windows(noisy, denoised)
    est = estimated_input_snr_db(noisy, den)
    flat = None if setting.max_flatness is None else removed_flatness(noisy, den)
    return _gated(noisy, den, est, flat, setting, fs_hz).astype(np.asarray(denoised).dtype)


def _as_windows(noisy: Any, denoised: Any) -> tuple[np.ndarray, np.ndarray]:
    noisy = np.asarray(noisy, np.float64)
    den = np.asarray(denoised, np.float64)
    if noisy.shape != den.shape or noisy.ndim != 3:
        raise PipelineError(f"pass-through gate needs (batch, time, leads) input and output of "
                            f"one shape; got {noisy.shape} and {den.shape}")
    return noisy, den


def _gated(noisy: np.ndarray, den: np.ndarray, est: np.ndarray, flat: np.ndarray | None,
           setting: GateSetting, fs_hz: float | None,
           lowpassed_den: Callable[[float], np.ndarray] | None = None) -> np.ndarray:
    """:func:`apply` on float64 windows and their features. ``lowpassed_den(cutoff_hz)``, when
    given, returns the whole batch's low-passed model output (shared by a :class:`GateBank`);
    it serves the white windows passed nothing on any lead, whose output is the model's."""
    w = pass_weight(est, setting, flat)
    out = den + w[:, None, :] * (noisy - den)
    if setting.white_lowpass_hz is None:
        return out
    if fs_hz is None:
        raise PipelineError(f"{setting.name}: this gate low-passes white-noise windows; "
                            "apply needs the windows' sampling rate (fs_hz)")
    white = (flat > setting.max_flatness).any(axis=1) & (est.min(axis=1) < setting.white_max_snr_db)
    if lowpassed_den is not None and white.any():
        shared = white & (w == 0.0).all(axis=1)
        if shared.any():
            out[shared] = lowpassed_den(setting.white_lowpass_hz)[shared]
        white &= ~shared
    if white.any():
        out[white] = white_lowpass(out[white], setting.white_lowpass_hz, fs_hz)
    return out


class GateBank:
    """Many gate settings scored on the same batches (:mod:`pipeline.protocol.gate_tuning`).

    :meth:`posts` gives one ``g(noisy, denoised)`` per setting, as :meth:`GateSetting.post`
    does, with the same outputs bit for bit; but the batch's features (estimated SNR, removed
    part's flatness, the model output low-passed at each cut-off) are computed once per batch,
    not once per setting: the settings of one batch are applied one after another to the same
    two arrays, which the bank recognises by identity (it keeps the last pair alive).
    """

    def __init__(self, settings: Sequence[GateSetting], fs_hz: float | None = None) -> None:
        self.settings = tuple(settings)
        self.fs_hz = fs_hz
        self._key: tuple[Any, Any] | None = None
        self._batch: dict[str, Any] = {}

    def posts(self) -> dict[str, Callable[[Any, Any], np.ndarray]]:
        return {s.name: functools.partial(self.apply, setting=s) for s in self.settings}

    def apply(self, noisy: Any, denoised: Any, setting: GateSetting) -> np.ndarray:
        b = self._features(noisy, denoised)
        if setting.max_flatness is not None and "flat" not in b:
            b["flat"] = removed_flatness(b["noisy"], b["den"])
        return _gated(b["noisy"], b["den"], b["est"], b.get("flat"), setting, self.fs_hz,
                      self._lowpassed).astype(b["dtype"])

    def _features(self, noisy: Any, denoised: Any) -> dict[str, Any]:
        if self._key is None or self._key[0] is not noisy or self._key[1] is not denoised:
            x, den = _as_windows(noisy, denoised)
            self._key = (noisy, denoised)
            self._batch = {"noisy": x, "den": den, "est": estimated_input_snr_db(x, den),
                           "dtype": np.asarray(denoised).dtype, "lowpassed": {}}
        return self._batch

    def _lowpassed(self, cutoff_hz: float) -> np.ndarray:
        cache = self._batch["lowpassed"]
        if cutoff_hz not in cache:
            cache[cutoff_hz] = white_lowpass(self._batch["den"], cutoff_hz, self.fs_hz)
        return cache[cutoff_hz]


def load(run_dir: Path) -> GateSetting | None:
    """The run's chosen gate (:data:`GATE_FILE`), or ``None`` when it has none (or when
    validation chose no gate)."""
    path = Path(run_dir) / GATE_FILE
    if not path.is_file():
        return None
    try:
        chosen = json.loads(path.read_text())["chosen"]
        if chosen is None:  # validation preferred the model's output alone
            return None
        flat, lp = chosen.get("max_flatness"), chosen.get("white_lowpass_hz")
        return GateSetting(float(chosen["threshold_db"]), float(chosen["width_db"]),
                           None if flat is None else float(flat),
                           None if lp is None else float(lp),
                           float(chosen.get("white_max_snr_db", WHITE_MAX_SNR_DB)))
    except (ValueError, KeyError, TypeError) as exc:
        raise PipelineError(f"{path}: not a pass-through gate file ({type(exc).__name__}: "
                            f"{exc}); rerun `python -m pipeline.tune_gate --run {run_dir}`") from None
