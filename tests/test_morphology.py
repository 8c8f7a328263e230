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
