"""Training a denoiser on the input predict gives it (``noise.served_highpass``,
:mod:`pipeline.data.served`): the in-graph high-pass equals the evaluation's, the noise is
filtered and the clean part is not, and a run trains through the real CLI with the switch."""

from __future__ import annotations

import json

import _trained_runs as trained  # noqa: E402
import numpy as np
import pytest
import yaml

from pipeline.core.config import load_config
from pipeline.data import served
from pipeline.data.signal import mirror_highpass

FS = 360.0


def _drift_and_noise(seed=0, n=3):
    rng = np.random.default_rng(seed)
    t = np.arange(1440) / FS
    drift = np.stack([0.8 * np.sin(2 * np.pi * 0.15 * t + 1) + 0.3,
                      0.5 * np.sin(2 * np.pi * 0.3 * t)], axis=1)
    return (drift[None] + 0.05 * rng.normal(size=(n, 1440, 2))).astype(np.float32)


def test_in_graph_highpass_equals_the_evaluations_mirror_padded_filter():
    x = _drift_and_noise()
    got = np.asarray(served.tf_mirror_highpass(x, 0.5, FS))
    want = mirror_highpass(x.astype(np.float64), 0.5, FS)
    assert got.shape == x.shape and got.dtype == np.float32
    # measured: 1.8e-7 of the input's power (float32 FFT against scipy's sosfiltfilt)
    assert np.mean((got - want) ** 2) < 1e-5 * np.mean(x ** 2)


def test_zero_phase_gain_is_the_squared_butterworth_response_and_refuses_bad_cutoffs():
    g = served.zero_phase_gain(2880, FS, 0.5)
    f = np.fft.rfftfreq(2880, 1 / FS)
    assert g[0] == 0.0 and g[np.argmin(np.abs(f - 0.5))] == pytest.approx(0.5, abs=0.01)
    assert g[-1] == pytest.approx(1.0, abs=1e-6)
    with pytest.raises(ValueError, match="cutoff_hz=200"):
        served.zero_phase_gain(2880, FS, 200.0)


def test_served_noise_fn_filters_the_noise_and_keeps_the_clean_signal():
    rng = np.random.default_rng(1)
    clean = rng.normal(size=(2, 1440, 2)).astype(np.float32)  # broadband: a high-pass keeps it
    drift = _drift_and_noise(2, n=2) - 0.05 * rng.normal(size=(2, 1440, 2)).astype(np.float32)

    def add_drift(c, seed):
        return c + drift

    out = np.asarray(served.served_noise_fn(add_drift, 0.5, FS)(clean, np.zeros(2, np.int64)))
    want = mirror_highpass(drift.astype(np.float64), 0.5, FS)
    assert np.mean((out - clean - want) ** 2) < 1e-5 * np.mean(drift ** 2)
    assert np.mean((out - clean) ** 2) < 0.03 * np.mean(drift ** 2)  # the drift is gone


def test_maybe_served_wraps_only_when_the_switch_is_on_and_the_reference_is_high_passed():
    def fn(c, s):
        return c

    assert served.maybe_served(fn, load_config(None)) is fn  # off by default
    on = load_config(None, {"noise": {"served_highpass": True}})
    assert served.maybe_served(fn, on) is not fn
    off = load_config(None, {"noise": {"served_highpass": True},
                             "windows": {"denoise_highpass_hz": 0.0}})
    assert served.maybe_served(fn, off) is fn


def test_a_denoiser_trains_on_the_served_input_through_the_cli(tmp_path_factory, tmp_path):
    from pipeline import train as train_cmd

    root = trained.data_root(tmp_path_factory)
    task, model, kwargs = trained.RUNS["denoise"]
    run = tmp_path / "run"
    assert train_cmd.main([*trained._argv(root), "--task", task, "--model", model,
                           "--model-kwargs", json.dumps(kwargs), "--run-dir", str(run),
                           "--set", "noise.served_highpass=true"]) == 0
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    assert cfg["noise"]["served_highpass"] is True
    hist = json.loads((run / "history.json").read_text())
    assert hist and all(np.isfinite(v) for row in hist for k, v in row.items()
                        if isinstance(v, float))
