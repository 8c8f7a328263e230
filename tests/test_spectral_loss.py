"""The spectral (multi-resolution STFT) denoising loss on known signals."""

from __future__ import annotations

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from pipeline.training.losses import DenoiseLoss, SpectralLoss, WithSpectralTerm  # noqa: E402


def _tone(n=720, fs=360.0, f=10.0, leads=2):
    t = np.arange(n) / fs
    x = np.sin(2 * np.pi * f * t)[None, :, None]
    return np.repeat(x, leads, axis=2).astype("float32")


def test_spectral_loss_is_zero_for_identical_windows():
    x = _tone()
    assert float(SpectralLoss()(x, x)) == pytest.approx(0.0, abs=1e-5)


@pytest.mark.parametrize("a", [0.5, 0.8, 1.25, 2.0])
def test_a_pure_tone_scaled_in_amplitude_gives_the_known_value(a):
    x = _tone()
    # the spectral convergence term alone is exactly |1 - a| at every resolution
    assert float(SpectralLoss(log_weight=0.0)(x, a * x)) == pytest.approx(abs(1 - a), rel=1e-4)
    # the log-magnitude term adds at most |log a| (bins of the tone count fully, empty ones not)
    extra = float(SpectralLoss()(x, a * x)) - abs(1 - a)
    assert 0.2 * abs(np.log(a)) < extra <= abs(np.log(a)) + 1e-6


def test_time_plus_spectral_term_adds_the_weighted_spectral_loss_and_reloads(tmp_path):
    x = _tone()
    y = 0.8 * x
    combined = WithSpectralTerm(DenoiseLoss(0.3), spectral_weight=0.5)
    want = float(DenoiseLoss(0.3)(x, y)) + 0.5 * float(SpectralLoss()(x, y))
    assert float(combined(x, y)) == pytest.approx(want, rel=1e-5)
    inputs = keras.Input((720, 2))
    model = keras.Model(inputs, keras.layers.Identity()(inputs))
    model.compile(loss=combined)
    path = tmp_path / "m.keras"
    model.save(path)
    again = keras.models.load_model(path, safe_mode=True)
    assert float(again.loss(x, y)) == pytest.approx(want, rel=1e-5)


def test_bad_arguments_are_refused_with_the_value():
    with pytest.raises(ValueError, match=r"frame_lengths.*Received: frame_lengths=\(2,\)"):
        SpectralLoss(frame_lengths=(2,))
    with pytest.raises(ValueError, match="`spectral_weight` must be >= 0. Received: "
                                         "spectral_weight=-1"):
        WithSpectralTerm(DenoiseLoss(), spectral_weight=-1)
