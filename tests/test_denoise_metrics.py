"""Denoising metrics (hand-computed golden values), classic filters and the classic evaluation."""

from __future__ import annotations

import math
import os

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from pipeline.core.config import load_config  # noqa: E402
from pipeline.evaluation import (
    classic_filters,  # noqa: E402
    denoise_metrics,  # noqa: E402
)

# ------------------------------------------------------------------- golden window
# One window, T = 4 samples, C = 2 leads (columns are leads):
#   clean    lead 1: 1 2 3 4     lead 2: 0 1 0 -1      sum(clean^2) = 30 + 2 = 32
#   noise    lead 1: 1 -1 1 -1   lead 2: 0 0 0 0       sum(noise^2) = 4
#   error    lead 1: 0 0 0 1     lead 2: 0 0 1 0       (denoised - clean), ssd = 2
CLEAN = np.array([[1, 0], [2, 1], [3, 0], [4, -1]], np.float64)
NOISE = np.array([[1, 0], [-1, 0], [1, 0], [-1, 0]], np.float64)
ERROR = np.array([[0, 0], [0, 0], [0, 1], [1, 0]], np.float64)

GOLDEN = {
    "snr_in_db": 10 * math.log10(32 / 4),  # 9.0309
    "snr_out_db": 10 * math.log10(32 / 2),  # 12.0412
    "snr_imp_db": 10 * math.log10(2),  # 3.0103
    "prd_pct": 100 * math.sqrt(2 / 32),  # 25.0
    "mse": 2 / 8,  # 8 samples over both leads
    "rmse": 0.5,
    "mae": 2 / 8,
    # lead 1: c - mean = (-1.5 -.5 .5 1.5), d = (1 2 3 5), d - mean = (-1.75 -.75 .25 2.25):
    #   sum = 6.5, |c|^2 = 5, |d|^2 = 8.75; lead 2: c = (0 1 0 -1), d - mean = (-.25 .75 .75
    #   -1.25): sum = 2, |c|^2 = 2, |d|^2 = 2.75; r = mean of the two leads' r
    "pearson_r": (6.5 / math.sqrt(5 * 8.75) + 2 / math.sqrt(2 * 2.75)) / 2,  # 0.91776
    "ssd": 2.0,
    "mad": 1.0,
    # c.d = 30 + 4 + 2 = 36 (d = c + e), |d|^2 = 39 + 3 = 42
    "cos_sim": 36 / math.sqrt(32 * 42),  # 0.98198
}


def golden_arrays(scale=1.0):
    c = CLEAN[None] * scale
    return c, c + NOISE[None] * scale, c + ERROR[None] * scale


def test_window_metrics_golden_values():
    m = denoise_metrics.window_metrics(*golden_arrays())
    assert sorted(m) == sorted(denoise_metrics.METRICS)
    for k, v in GOLDEN.items():
        assert m[k].shape == (1,)
        assert m[k][0] == pytest.approx(v, rel=1e-12), k


def test_per_window_then_averaged():
    # a second window, the first one doubled: scale-free metrics repeat, others scale
    c1, x1, d1 = golden_arrays()
    c2, x2, d2 = golden_arrays(2.0)
    m = denoise_metrics.window_metrics(
        np.concatenate([c1, c2]), np.concatenate([x1, x2]), np.concatenate([d1, d2])
    )
    for k in ("snr_in_db", "snr_out_db", "snr_imp_db", "prd_pct", "pearson_r", "cos_sim"):
        np.testing.assert_allclose(m[k], GOLDEN[k], rtol=1e-12)
    np.testing.assert_allclose(m["mse"], [0.25, 1.0])
    np.testing.assert_allclose(m["rmse"], [0.5, 1.0])
    np.testing.assert_allclose(m["mae"], [0.25, 0.5])
    np.testing.assert_allclose(m["ssd"], [2.0, 8.0])
    np.testing.assert_allclose(m["mad"], [1.0, 2.0])
    s = denoise_metrics.summarize(m)
    assert s["mse"] == {
        "mean": 0.625,
        "std": 0.375,
        "median": 0.625,
        "p05": pytest.approx(0.2875),
        "min": 0.25,
        "max": 1.0,
        "n": 2,
        "n_nonfinite": 0,
    }
    assert s["snr_imp_db"]["mean"] == pytest.approx(GOLDEN["snr_imp_db"])
    assert s["snr_imp_db"]["std"] == pytest.approx(0.0, abs=1e-12)
    acc = denoise_metrics.MetricAccumulator()
    acc.update(np.concatenate([c1, c2]), np.concatenate([x1, x2]), np.concatenate([d1, d2]))
    assert acc.result() == s


def test_median_of_three_windows():
    c, x, d = golden_arrays()
    cs = np.concatenate([c, 2 * c, 3 * c])
    s = denoise_metrics.summarize(
        denoise_metrics.window_metrics(cs, np.concatenate([x, 2 * x, 3 * x]), np.concatenate([d, 2 * d, 9 * d]))
    )
    assert s["mad"]["median"] == 2.0


def test_pearson_skips_constant_leads_and_nonfinite_values_are_counted():
    c, x, d = golden_arrays()
    d_flat = d.copy()
    d_flat[0, :, 1] = 0.5  # lead 2 reconstructed as a constant: r undefined there
    m = denoise_metrics.window_metrics(c, x, d_flat)
    assert m["pearson_r"][0] == pytest.approx(6.5 / math.sqrt(5 * 8.75))  # lead 1's r alone
    s = denoise_metrics.summarize(
        denoise_metrics.window_metrics(np.concatenate([c, c]), np.concatenate([x, c]), np.concatenate([d, d]))
    )
    assert s["snr_in_db"]["n_nonfinite"] == 1  # the second window has no noise: inf dB
    assert s["snr_in_db"]["mean"] == pytest.approx(GOLDEN["snr_in_db"])
    assert math.isnan(denoise_metrics.summarize({"x": np.array([np.inf])})["x"]["mean"])


def test_shape_mismatch_raises():
    c, x, d = golden_arrays()
    with pytest.raises(ValueError, match="shapes differ"):
        denoise_metrics.window_metrics(c, x, d[:, :3])
    with pytest.raises(ValueError, match=r"must have shape \(n, T, C\)"):
        denoise_metrics.window_metrics(c[0, :, 0], x[0, :, 0], d[0, :, 0])


def test_accumulator_streams_and_undoes_normalization():
    rng = np.random.default_rng(0)
    c = rng.standard_normal((10, 50, 2))
    x = c + 0.3 * rng.standard_normal(c.shape)
    d = c + 0.1 * rng.standard_normal(c.shape)
    whole = denoise_metrics.summarize(denoise_metrics.window_metrics(c, x, d))
    acc = denoise_metrics.MetricAccumulator()
    for sl in (slice(0, 3), slice(3, 4), slice(4, 10)):
        acc.update(c[sl], x[sl], d[sl])
    assert acc.n_windows == 10
    assert acc.result() == whole
    mean, scale = np.array([0.2, -0.1]), np.array([0.5, 2.0])
    norm = denoise_metrics.MetricAccumulator(mean, scale)
    norm.update(*((a - mean) / scale for a in (c, x, d)))
    for k, v in norm.result().items():
        assert v["mean"] == pytest.approx(whole[k]["mean"], rel=1e-9), k


def test_accumulator_identity_denoiser_improves_nothing():
    rng = np.random.default_rng(1)
    c = rng.standard_normal((7, 40, 2))
    x = c + 0.5 * rng.standard_normal(c.shape)
    acc = denoise_metrics.MetricAccumulator()
    for i in range(0, 7, 3):
        acc.update(c[i : i + 3], x[i : i + 3], x[i : i + 3])
    s = acc.result()
    assert s["snr_imp_db"]["n"] == 7
    assert s["snr_imp_db"]["mean"] == pytest.approx(0.0, abs=1e-9)
    assert len(acc.per_window()["snr_imp_db"]) == 7


def test_snr_improvement_interval_resamples_records():
    # two records: one improves by 1 dB, the other by 3 dB; windows of a record move together
    v = np.array([1.0, 1.0, 1.0, 3.0, 3.0, np.inf])
    recs = np.array(["a", "a", "a", "b", "b", "b"])
    ci = denoise_metrics.snr_improvement_ci(v, recs, n=200, seed=0)
    assert ci["point"] == pytest.approx(9 / 5)
    assert 1.0 <= ci["low"] <= ci["point"] <= ci["high"] <= 3.0
    assert ci["n_records"] == 2
    assert denoise_metrics.snr_improvement_ci(np.array([np.inf, np.nan]), np.array(["a", "b"]), n=10, seed=0) is None


# --------------------------------------------------------------------- classic filters


def clean_ecg(n=6, T=1440, fs=360.0, seed=0):
    """Zero-mean ECG-like windows (P, QRS, T as Gaussians at 75 bpm), two leads, mV."""
    rng = np.random.default_rng(seed)
    t = np.arange(T) / fs
    out = np.zeros((n, T, 2))
    for i in range(n):
        x = np.zeros(T)
        for r in np.arange(rng.uniform(0, 0.8), T / fs, 0.8):
            x += (
                0.15 * np.exp(-0.5 * ((t - r + 0.16) / 0.025) ** 2)
                + 1.0 * np.exp(-0.5 * ((t - r) / 0.012) ** 2)
                + 0.3 * np.exp(-0.5 * ((t - r - 0.28) / 0.06) ** 2)
            )
        x -= x.mean()
        out[i] = np.stack([x, 0.6 * x], axis=1)
    return out.astype(np.float32)


def add_gaussian(clean, snr_db, seed=0):
    rng = np.random.default_rng(seed)
    n = rng.standard_normal(clean.shape)
    p_c = (clean.astype(np.float64) ** 2).sum(axis=(1, 2), keepdims=True)
    p_n = (n**2).sum(axis=(1, 2), keepdims=True)
    return (clean + n * np.sqrt(p_c / (p_n * 10 ** (snr_db / 10)))).astype(np.float32)


@pytest.mark.parametrize("name", sorted(classic_filters.CLASSIC_FILTERS))
def test_classic_filters_improve_snr_at_6_db_gaussian(name):
    clean = clean_ecg()
    noisy = add_gaussian(clean, 6.0)
    out = classic_filters.apply_filter(name, noisy, 360.0)
    assert out.shape == noisy.shape and out.dtype == np.float32
    s = denoise_metrics.summarize(denoise_metrics.window_metrics(clean, noisy, out))
    assert s["snr_in_db"]["mean"] == pytest.approx(6.0, abs=1e-3)
    assert s["snr_imp_db"]["mean"] > 2.0
    assert s["snr_imp_db"]["min"] > 0.5  # every window improves


@pytest.mark.parametrize("name", sorted(classic_filters.CLASSIC_FILTERS))
@pytest.mark.parametrize("shape", [(1, 1001, 1), (3, 720, 2)])
def test_classic_filters_keep_shapes(name, shape):
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    assert classic_filters.apply_filter(name, x, 360.0).shape == shape


def test_bandpass_removes_offset_and_keeps_passband():
    t = np.arange(1440) / 360.0
    x = (2.0 + np.sin(2 * np.pi * 10 * t))[None, :, None]
    y = classic_filters.bandpass(x, 360.0)[0, :, 0]
    assert abs(y.mean()) < 1e-3  # the 2 mV offset is gone
    # 10 Hz passes unchanged away from the edges (the mirror padding kinks the sine there)
    np.testing.assert_allclose(y[360:-360], np.sin(2 * np.pi * 10 * t[360:-360]), atol=1e-2)


def test_unknown_filter_and_bad_arguments_raise():
    x = np.zeros((1, 100, 2), np.float32)
    with pytest.raises(KeyError, match=r"unknown classic filter 'fft'; registered: \['bandpass'"):
        classic_filters.apply_filter("fft", x, 360.0)
    with pytest.raises(ValueError, match="Received: low_hz=0.5, high_hz=40.0, fs_hz=60.0"):
        classic_filters.bandpass(x, 60.0)
    with pytest.raises(ValueError, match=r"Received: shape=\(100, 2\)"):
        classic_filters.wavelet_denoise(x[0], 360.0)
    with pytest.raises(ValueError, match="Received: noise_estimate='global'"):
        classic_filters.wavelet_denoise(x, 360.0, noise_estimate="global")


# ---------------------------------------------------------------- classic evaluation


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    """Two 60 s synthetic MIT-BIH-like records -> windows -> denoise TFRecords; fake nstdb."""
    from data_tools.synthetic import write_synthetic_database
    from pipeline import tfrecords as tfrecords_cmd
    from pipeline import windows as windows_cmd
    from pipeline.data.noise import write_synthetic_noise

    root = tmp_path_factory.mktemp("classic")
    names = write_synthetic_database(root / "raw" / "mitdb", n_records=2, duration_s=60.0)
    write_synthetic_noise(root / "raw" / "nstdb", duration_s=60.0, seed=3)
    assert windows_cmd.main(["--data-dir", str(root), "--databases", "mitdb"]) == 0
    assert tfrecords_cmd.main(["--data-dir", str(root), "--kinds", "denoise"]) == 0
    cfg = load_config(None, {"data": {"data_dir": str(root)}}, apply_env=False)
    return cfg, names


def test_classic_filters_through_evaluate_denoiser_on_tiny_synthetic_data(tiny_data):
    from pipeline.data.loader import resolve_files
    from pipeline.data.tasks import get_task
    from pipeline.evaluation.evaluate import evaluate_denoiser

    cfg, names = tiny_data
    task = get_task("mitdb_denoise")
    files = resolve_files(names, cfg, "denoise")

    def run(types, snrs, include=None):
        return evaluate_denoiser(None, files, cfg, task, None, None, part="test",
                                 noise_types=types, snr_dbs=snrs, include=include,
                                 classic=("bandpass", "wavelet"))

    out = run(["gaussian", "mix"], [12.0, 0.0])
    res = out["results"]
    assert sorted(res) == ["bandpass", "wavelet"]
    n_windows = 2 * (60 * 360 // 1440)  # the evaluation grid: non-overlapping 4 s windows
    for f in res:
        assert sorted(res[f]) == ["gaussian", "mix"]
        for nt in res[f]:
            assert sorted(res[f][nt]) == ["0", "12"]
            for snr, s in res[f][nt].items():
                assert sorted(s) == sorted(denoise_metrics.METRICS)
                assert s["snr_in_db"]["n"] == n_windows
                assert s["snr_in_db"]["mean"] == pytest.approx(float(snr), abs=1e-3)
                assert s["snr_in_db"]["std"] < 1e-3
                assert np.isfinite(s["snr_imp_db"]["mean"])
                cell = out["windows"][f][nt][snr]
                assert len(cell["record"]) == len(cell["start"]) == n_windows
                assert sorted(set(cell["record"])) == sorted(names)
                assert set(np.asarray(cell["start"]) % 1440) == {0}  # grid starts in the record
    # both filters see the same noisy windows
    assert res["bandpass"]["mix"]["0"]["snr_in_db"] == res["wavelet"]["mix"]["0"]["snr_in_db"]
    # the wavelet filter removes white noise at 0 dB input
    assert res["wavelet"]["gaussian"]["0"]["snr_imp_db"]["mean"] > 3.0
    # fixed evaluation noise: a second run gives the same numbers, also on a window subset
    from pipeline.training.trainer import stored_counts

    sizes = stored_counts(cfg, "denoise")
    first5 = {f: np.arange(sizes[f]) < 5 * 32 for f in files}  # 4 s evaluation windows in the first 21 s
    again = run(["mix"], [0.0], first5)
    assert again["results"] == run(["mix"], [0.0], first5)["results"]
    assert again["results"]["wavelet"]["mix"]["0"]["snr_in_db"]["n"] < n_windows
