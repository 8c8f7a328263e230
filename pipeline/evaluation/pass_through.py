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

``threshold_db`` and ``width_db`` are chosen on validation patients
(:mod:`pipeline.protocol.gate_tuning`, ``python -m pipeline.tune_gate --run RUN``) and
stored in the run folder as :data:`GATE_FILE`; evaluation and prediction then apply them.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import json
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.core.io_utils import PipelineError

GATE_FILE = "pass_through_gate.json"

GRID: tuple[tuple[float, float, float | None], ...] = tuple(itertools.product(
    (6.0, 8.0, 10.0, 12.0, 14.0, 16.0, 18.0, 20.0, 22.0, 24.0, 27.0, 30.0), (0.5, 1.0, 2.0, 4.0),
    (None, 0.15, 0.25, 0.35)))
"""(threshold_db, width_db, max_flatness) settings compared on validation (192)."""


@dataclasses.dataclass(frozen=True)
class GateSetting:
    threshold_db: float
    width_db: float
    max_flatness: float | None = None
    """Never pass a window whose removed part is flatter than this (``None``: no limit)."""

    def __post_init__(self) -> None:
        if not (np.isfinite(self.threshold_db) and self.width_db > 0):
            raise PipelineError(f"pass-through gate needs a finite threshold_db and width_db > 0; "
                                f"got {self.threshold_db}, {self.width_db}")
        if self.max_flatness is not None and not 0.0 < self.max_flatness <= 1.0:
            raise PipelineError(f"pass-through gate max_flatness must be in (0, 1] or null; "
                                f"got {self.max_flatness}")

    @property
    def name(self) -> str:
        flat = "" if self.max_flatness is None else f"_f{self.max_flatness:g}"
        return f"gate_t{self.threshold_db:g}_w{self.width_db:g}{flat}"

    def to_json(self) -> dict[str, float]:
        """The setting as stored (``max_flatness`` only when set, so one-feature gates keep
        their files)."""
        d = dataclasses.asdict(self)
        return d if self.max_flatness is not None else {k: d[k] for k in ("threshold_db", "width_db")}

    def post(self) -> Any:
        """``g(noisy, denoised)`` applying this gate: a ``post`` method of
        :func:`pipeline.evaluation.evaluate.evaluate_denoiser`."""
        return functools.partial(apply, setting=self)


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


def apply(noisy: Any, denoised: Any, setting: GateSetting) -> np.ndarray:
    """``denoised + w (noisy - denoised)`` per window and lead, ``(batch, time, leads)``."""
    noisy = np.asarray(noisy, np.float64)
    den = np.asarray(denoised, np.float64)
    if noisy.shape != den.shape or noisy.ndim != 3:
        raise PipelineError(f"pass-through gate needs (batch, time, leads) input and output of "
                            f"one shape; got {noisy.shape} and {den.shape}")
    flat = None if setting.max_flatness is None else removed_flatness(noisy, den)
    w = pass_weight(estimated_input_snr_db(noisy, den), setting, flat)[:, None, :]
    return (den + w * (noisy - den)).astype(np.asarray(denoised).dtype)


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
        flat = chosen.get("max_flatness")
        return GateSetting(float(chosen["threshold_db"]), float(chosen["width_db"]),
                           None if flat is None else float(flat))
    except (ValueError, KeyError, TypeError) as exc:
        raise PipelineError(f"{path}: not a pass-through gate file ({type(exc).__name__}: "
                            f"{exc}); rerun `python -m pipeline.tune_gate --run {run_dir}`") from None
