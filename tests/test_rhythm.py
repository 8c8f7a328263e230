"""Rhythm features on hand-made R-peak sequences: known intervals give known values."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.data import rhythm

COL = {n: i for i, n in enumerate(rhythm.FEATURE_NAMES)}


def test_known_intervals_give_known_values():
    r = np.array([0.0, 1.0, 2.0, 2.5, 3.5, 4.5])  # beat 3 is early (0.5 s after a 1 s rhythm)
    f = rhythm.rhythm_features(r, n_local=2, n_running=4)
    assert f.shape == (6, len(rhythm.FEATURE_NAMES))
    np.testing.assert_allclose(f[:, COL["pre_rr_s"]], [1.0, 1.0, 1.0, 0.5, 1.0, 1.0])
    np.testing.assert_allclose(f[:, COL["post_rr_s"]], [1.0, 1.0, 0.5, 1.0, 1.0, 1.0])
    np.testing.assert_allclose(f[:, COL["prev_rr_s"]], [1.0, 1.0, 1.0, 1.0, 0.5, 1.0])
    np.testing.assert_allclose(f[:, COL["local_mean_rr_s"]], [1.0, 1.0, 1.0, 0.75, 0.75, 1.0])
    np.testing.assert_allclose(f[:, COL["running_mean_rr_s"]],
                               [1.0, 1.0, 1.0, 0.875, 0.875, 0.875])
    record_mean = np.mean([1.0, 1.0, 1.0, 0.5, 1.0, 1.0])
    np.testing.assert_allclose(f[:, COL["record_mean_rr_s"]], record_mean)
    np.testing.assert_allclose(f[3, COL["pre_over_record"]], 0.5 / record_mean, rtol=1e-6)
    np.testing.assert_allclose(f[3, COL["pre_over_local"]], 0.5 / 0.75, rtol=1e-6)
    np.testing.assert_allclose(f[:, COL["pre_post_ratio"]], [1, 1, 2, 0.5, 1, 1], rtol=1e-6)
    np.testing.assert_allclose(f[:, COL["amplitude_ratio"]], 1.0)


def test_first_and_last_beats_and_a_record_with_two_beats():
    f = rhythm.rhythm_features(np.array([10.0, 10.8]))
    np.testing.assert_allclose(f[:, COL["pre_rr_s"]], [0.8, 0.8], rtol=1e-6)
    np.testing.assert_allclose(f[:, COL["post_rr_s"]], [0.8, 0.8], rtol=1e-6)
    np.testing.assert_allclose(f[:, COL["prev_rr_s"]], [0.8, 0.8], rtol=1e-6)
    assert np.all(np.isfinite(f))
    np.testing.assert_allclose(f[:, COL["pre_over_running"]], 1.0, rtol=1e-6)


def test_one_beat_and_no_beats():
    one = rhythm.rhythm_features(np.array([3.0]))
    np.testing.assert_allclose(one[0, COL["pre_rr_s"]], rhythm.NOMINAL_RR_S)
    np.testing.assert_allclose(one[0, COL["pre_over_record"]], 1.0)
    assert rhythm.rhythm_features(np.array([])).shape == (0, len(rhythm.FEATURE_NAMES))


def test_causal_variant_drops_every_feature_that_looks_ahead():
    r = np.cumsum(np.full(20, 0.8))
    f = rhythm.rhythm_features(r, causal=True)
    assert f.shape == (20, len(rhythm.CAUSAL_FEATURE_NAMES))
    assert not any("post" in n for n in rhythm.CAUSAL_FEATURE_NAMES)
    # changing the last interval must not change any causal feature of the beat before it
    r2 = r.copy()
    r2[-1] += 0.3
    np.testing.assert_array_equal(rhythm.rhythm_features(r2, causal=True)[:-1], f[:-1])


def test_amplitude_ratio_is_relative_to_the_record_median():
    f = rhythm.rhythm_features(np.array([0.0, 1.0, 2.0, 3.0]),
                               amplitudes=np.array([1.0, 2.0, 2.0, -4.0]))
    np.testing.assert_allclose(f[:, COL["amplitude_ratio"]], [0.5, 1.0, 1.0, 2.0])


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="strictly increasing"):
        rhythm.rhythm_features(np.array([1.0, 1.0, 2.0]))
    with pytest.raises(ValueError, match=r"amplitudes must have shape \(3,\)"):
        rhythm.rhythm_features(np.array([0.0, 1.0, 2.0]), amplitudes=np.ones(2))
    with pytest.raises(ValueError, match="`n` must be >= 1. Received: n=0"):
        rhythm.trailing_mean(np.ones(3), 0)


CTX = {n: i for i, n in enumerate(rhythm.CONTEXT_FEATURE_NAMES)}


def test_context_features_on_known_intervals():
    pre = np.array([1.0, 1.0, 0.5, 1.5, 1.0])  # |successive changes|: 0, 0, 0.5, 1.0, 0.5
    post = np.array([1.0, 0.5, 1.5, 1.0, 1.0])
    f = rhythm.context_features(pre, post, half_window_beats=1)
    assert f.shape == (5, len(rhythm.CONTEXT_FEATURE_NAMES)) and f.dtype == np.float32
    # beat 0: beats 0-1 (cut at the edge); beat 1: 0-2; beat 4: beats 3-4, median 1.25
    np.testing.assert_allclose(f[:, CTX["rr_irregularity_local"]],
                               [0.0, 0.5 / 3, 1.5 / 3, 2.0 / 3, 0.75 / 1.25], rtol=1e-6)
    np.testing.assert_allclose(f[:, CTX["rr_irregularity_record"]], 2.0 / 5 / 1.0, rtol=1e-6)
    np.testing.assert_allclose(f[:, CTX["pre_over_record_median"]], pre, rtol=1e-6)
    np.testing.assert_allclose(f[:, CTX["post_over_record_median"]], post, rtol=1e-6)


def test_context_features_tell_fibrillation_from_a_regular_rhythm_with_premature_beats():
    regular = np.full(200, 0.8)
    regular[50] = 0.5  # one premature beat and its pause
    regular[51] = 1.1
    fib = np.random.default_rng(0).uniform(0.4, 1.2, 200)
    reg, af = (rhythm.context_features(p, p) for p in (regular, fib))
    assert reg[:, CTX["rr_irregularity_record"]].max() < 0.01
    assert af[:, CTX["rr_irregularity_record"]].min() > 0.2
    assert reg[50, CTX["pre_over_record_median"]] == pytest.approx(0.5 / 0.8)
    far = reg[150:, CTX["rr_irregularity_local"]]  # more than 40 beats after the ectopic beat
    np.testing.assert_array_equal(far, 0.0)


def test_causal_context_looks_only_back_and_edges_are_finite():
    pre = np.random.default_rng(1).uniform(0.6, 1.0, 120)
    f = rhythm.context_features(pre, causal=True)
    assert f.shape == (120, len(rhythm.CAUSAL_CONTEXT_FEATURE_NAMES))
    later = pre.copy()
    later[-1] = 3.0
    np.testing.assert_array_equal(rhythm.context_features(later, causal=True)[:-1], f[:-1])
    assert rhythm.context_features(np.array([]), np.array([])).shape == (0, 4)
    one = rhythm.context_features(np.array([0.9]), np.array([0.9]))
    np.testing.assert_allclose(one, [[0.0, 0.0, 1.0, 1.0]])
    with pytest.raises(ValueError, match=r"`half_window_beats` must be >= 1. Received: 0"):
        rhythm.context_features(pre, half_window_beats=0)
    with pytest.raises(ValueError, match=r"post_rr_s must have shape \(120,\). Received: \(3,\)"):
        rhythm.context_features(pre, np.ones(3))
