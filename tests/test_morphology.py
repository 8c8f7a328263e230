"""Morphology features of synthetic beats with known shape."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.data import morphology

FS = 360.0
COL = {n: i for i, n in enumerate(morphology.FEATURE_NAMES)}


def _beat(width_ms: float, r_mv: float = 1.0, offset: float = 0.3) -> np.ndarray:
    t = (np.arange(720) - 360) / FS * 1000.0  # ms from R
    sigma = width_ms / 4.0
    return offset + r_mv * np.exp(-0.5 * (t / sigma) ** 2)


def test_amplitude_is_measured_against_the_baseline_and_width_grows_with_the_qrs():
    f = morphology.morphology_features(np.stack([_beat(40), _beat(120, r_mv=2.0)]), FS)
    assert f.shape == (2, len(morphology.FEATURE_NAMES))
    np.testing.assert_allclose(f[:, COL["r_amplitude"]], [1.0, 2.0], atol=1e-3)
    narrow, wide = f[:, COL["qrs_width_ms"]]
    assert 20 < narrow < 60 and 80 < wide < 200 and wide > 2 * narrow
    assert np.all(np.isfinite(f))


def test_shapes_and_bad_input():
    assert morphology.morphology_features(np.zeros((0, 720)), FS).shape == (0, 8)
    assert morphology.morphology_features(np.zeros((3, 720, 1)), FS).shape == (3, 8)
    with pytest.raises(ValueError, match=r"Received: \(720,\)"):
        morphology.morphology_features(np.zeros(720), FS)


TCOL = {n: i for i, n in enumerate(morphology.TEMPLATE_FEATURE_NAMES)}


def _p_wave(beat: np.ndarray, centre_ms: float, mv: float = 0.15) -> np.ndarray:
    t = (np.arange(720) - 360) / FS * 1000.0
    return beat + mv * np.exp(-0.5 * ((t - centre_ms) / 20.0) ** 2)


def test_template_features_measure_each_beat_against_its_records_median_beat():
    usual = _p_wave(_beat(40), -160)
    odd_p = _p_wave(_beat(40), -160, mv=-0.15)  # an inverted P wave: an ectopic focus
    wide = _p_wave(_beat(120, r_mv=2.0), -160)  # a wide, tall QRS
    beats = np.stack([usual] * 6 + [odd_p, wide])
    f = morphology.template_features(beats + np.arange(8)[:, None] * 0.1, FS)  # baselines differ
    assert f.shape == (8, len(morphology.TEMPLATE_FEATURE_NAMES)) and f.dtype == np.float32
    np.testing.assert_allclose(f[:6], np.tile(f[:1], (6, 1)), atol=1e-6)  # baseline-invariant
    np.testing.assert_allclose(f[0, [TCOL["template_corr"], TCOL["qrs_template_corr"],
                                     TCOL["p_template_corr"]]], 1.0, atol=1e-6)
    np.testing.assert_allclose(f[0, TCOL["r_over_record_median"]], 1.0, atol=1e-3)
    assert f[6, TCOL["p_template_corr"]] < 0.0 < 0.99 < f[6, TCOL["qrs_template_corr"]]
    assert f[7, TCOL["qrs_template_corr"]] < 0.95 and f[7, TCOL["p_template_corr"]] > 0.9
    np.testing.assert_allclose(f[7, TCOL["r_over_record_median"]], 2.0, atol=1e-2)
    assert f[7, TCOL["qrs_width_over_record_median"]] > 2.0
    given = morphology.morphology_features(beats + np.arange(8)[:, None] * 0.1, FS)
    np.testing.assert_array_equal(morphology.template_features(
        beats + np.arange(8)[:, None] * 0.1, FS, morphology=given), f)  # the caller's, reused


def test_template_features_of_flat_empty_and_bad_records():
    assert morphology.template_features(np.zeros((0, 720)), FS).shape == (0, 6)
    flat = morphology.template_features(np.zeros((2, 720, 1)), FS)
    assert flat.shape == (2, 6) and np.all(np.isfinite(flat))
    cols = [TCOL[k] for k in ("template_corr", "p_template_corr", "r_over_record_median")]
    assert not flat[:, cols].any()  # no correlation, no amplitude ratio of a flat record
    with pytest.raises(ValueError, match=r"Received: \(720,\)"):
        morphology.template_features(np.zeros(720), FS)
