"""Noise for denoising: nstdb loading, disjoint segments, exact per-window SNR, determinism."""

from __future__ import annotations

import math
import os

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # noqa: E402

from pipeline.core.config import load_config  # noqa: E402
from pipeline.core.io_utils import PipelineError  # noqa: E402
from pipeline.data import noise as N  # noqa: E402

SNRS = (24.0, 12.0, 6.0, 0.0)


def make_cfg(data_dir, **noise):
    return load_config(None, {"data": {"data_dir": str(data_dir)}, "noise": noise}, apply_env=False)


@pytest.fixture(scope="module")
def noise_cfg(tmp_path_factory):
    """Config whose data folder holds seeded 60 s stand-ins for bw, em, ma."""
    root = tmp_path_factory.mktemp("noise")
    N.write_synthetic_noise(root / "raw" / "nstdb", duration_s=60.0, seed=1)
    return make_cfg(root)


@pytest.fixture(scope="module")
def noise(noise_cfg):
    return N.load_noise(noise_cfg)


def ecg_like(k, T=1440, C=2, seed=0):
    """Seeded clean windows in mV: spikes on a slow wave plus an offset (never all zero)."""
    rng = np.random.default_rng(seed)
    t = np.arange(T) / 360.0
    phase = rng.uniform(0, 1, (k, 1, 1))
    beat = np.exp(-0.5 * ((np.mod(t[None, :, None] + phase, 0.8) - 0.4) / 0.01) ** 2)
    x = beat * np.array([1.0, 0.6]) + 0.1 * np.sin(2 * np.pi * 0.3 * t)[None, :, None]
    return (x[..., :C] + rng.uniform(-0.5, 0.5, (k, 1, C))).astype(np.float32)


def realized_snr(clean, noisy):
    c, y = np.asarray(clean, np.float64), np.asarray(noisy, np.float64)
    return 10 * np.log10((c**2).sum(axis=(1, 2)) / ((y - c) ** 2).sum(axis=(1, 2)))


SEED = tf.constant([7, 11], tf.int64)


# ----------------------------------------------------------------------------- loading


def test_load_noise_shapes_and_units(noise):
    assert sorted(noise) == ["bw", "em", "ma"]
    for x in noise.values():
        assert x.shape == (60 * 360, 2) and x.dtype == np.float32
        np.testing.assert_allclose(x.std(axis=0), [0.4, 0.2], rtol=0.05)  # mV as written


def test_load_noise_missing_record_names_it_and_the_stage(tmp_path, noise_cfg):
    cfg = make_cfg(tmp_path)
    with pytest.raises(PipelineError, match=r"'bw' not found .*run the download stage"):
        N.load_noise(cfg)
    folder = tmp_path / "raw" / "nstdb"
    N.write_synthetic_noise(folder, duration_s=10.0)
    (folder / "ma.dat").unlink()
    with pytest.raises(PipelineError, match=r"'ma' not found \(missing ma.dat\)"):
        N.load_noise(cfg)
    with pytest.raises(PipelineError, match="'ma' not found"):  # needed through "mix"
        N.make_noise_fn(cfg, "mix", 6.0, "test")
    N.make_noise_fn(cfg, "gaussian", 6.0, "test")  # Gaussian noise needs no records
    N.make_noise_fn(cfg, "ma", math.inf, "test")  # nor does a clean (inf) epoch


@pytest.mark.mirror
def test_real_nstdb_records(mirror, tmp_path):
    (tmp_path / "raw").mkdir()
    (tmp_path / "raw" / "nstdb").symlink_to(mirror / "nstdb")
    noise = N.load_noise(make_cfg(tmp_path))
    for x in noise.values():
        assert x.shape == (650000, 2) and x.dtype == np.float32
        assert 0.1 < float(x.std()) < 1.0  # mV, not ADC units
    cfg = make_cfg(tmp_path)
    assert [N.segment_bounds(650000, cfg, p) for p in N.PARTS] == [
        (0, 390000),
        (390000, 520000),
        (520000, 650000),
    ]


# ---------------------------------------------------------------------------- segments


@pytest.mark.parametrize("n", [650000, 21600, 1001])
def test_segments_are_disjoint_and_cover_the_record(noise_cfg, n):
    b = [N.segment_bounds(n, noise_cfg, p) for p in N.PARTS]
    assert b[0][0] == 0 and b[-1][1] == n
    assert b[0][1] == b[1][0] and b[1][1] == b[2][0]  # contiguous, so no overlap
    assert all(lo < hi for lo, hi in b)
    idx = [set(range(lo, hi)) for lo, hi in b]
    assert not (idx[0] & idx[1] or idx[0] & idx[2] or idx[1] & idx[2])
    assert b[0][1] == round(0.6 * n) and b[1][1] == round(0.8 * n)


def test_noise_segments_slice_the_records(noise, noise_cfg):
    for part in N.PARTS:
        seg = N.noise_segments(noise, noise_cfg, part)
        for name, x in noise.items():
            lo, hi = N.segment_bounds(len(x), noise_cfg, part)
            np.testing.assert_array_equal(seg[name], x[lo:hi])


def test_bad_part_and_fractions_raise(tmp_path, noise_cfg):
    with pytest.raises(ValueError, match=r"unknown part 'eval'; known: \['train', 'val', 'test'\]"):
        N.segment_bounds(100, noise_cfg, "eval")
    with pytest.raises(ValueError, match="Received: train_fraction=0.9, val_fraction=0.2"):
        N.segment_bounds(100, make_cfg(tmp_path, train_fraction=0.9), "test")


def ramp_noise(n=10000):
    """Noise whose value encodes the sample index: channel 1 = i + 1, channel 2 = 2 (i + 1)."""
    i = np.arange(n, dtype=np.float64) + 1.0
    return np.stack([i, 2 * i], axis=1).astype(np.float32)


def crop_offsets(clean, noisy):
    """Recovers each window's crop start (0-based sample of the record) from a ramp crop."""
    d = np.asarray(noisy, np.float64)[:, :, 0] - np.asarray(clean, np.float64)[:, :, 0]
    T = d.shape[1]
    a = (d[:, -1] - d[:, 0]) / (T - 1)  # the scale factor
    return np.round(d[:, 0] / a - 1.0).astype(int), d


@pytest.mark.parametrize("part", N.PARTS)
def test_windows_only_use_their_parts_samples(noise_cfg, part):
    rec = ramp_noise()
    noise = {"bw": rec, "em": rec, "ma": rec}
    lo, hi = N.segment_bounds(len(rec), noise_cfg, part)
    T = 100
    clean = ecg_like(256, T=T)
    starts = []
    for s in range(4):
        fn = N.make_noise_fn(noise_cfg, "bw", 6.0, part, noise=noise)
        noisy = fn(clean, tf.constant([s, 3], tf.int64)).numpy()
        off, d = crop_offsets(clean, noisy)
        starts.append(off)
        # channel 2 of the record goes to lead 2: twice channel 1 at every sample
        lead2 = noisy[:, :, 1].astype(np.float64) - clean[:, :, 1]
        np.testing.assert_allclose(lead2, 2 * d, rtol=1e-4, atol=1e-6)
    starts = np.concatenate(starts)
    assert starts.min() >= lo and starts.max() + T <= hi
    # the offsets spread over the whole segment
    assert starts.min() < lo + 0.1 * (hi - lo) and starts.max() + T > hi - 0.1 * (hi - lo)


def test_too_short_segment_raises(noise_cfg):
    noise = {"bw": ramp_noise(2000)}
    fn = N.make_noise_fn(noise_cfg, "bw", 6.0, "test", noise=noise)  # test segment: 400 samples
    with pytest.raises(ValueError, match="has 400 samples; a window needs 1440"):
        fn(ecg_like(2), SEED)


# ------------------------------------------------------------------------------- SNR


@pytest.mark.parametrize("noise_type", N.NOISE_TYPES)
@pytest.mark.parametrize("snr_db", SNRS)
def test_realized_snr_is_exact_per_window(noise, noise_cfg, noise_type, snr_db):
    clean = ecg_like(32)
    fn = N.make_noise_fn(noise_cfg, noise_type, snr_db, "train", noise=noise)
    noisy = fn(tf.constant(clean), SEED).numpy()
    assert noisy.shape == clean.shape and noisy.dtype == np.float32
    np.testing.assert_allclose(realized_snr(clean, noisy), snr_db, atol=1e-3)


@pytest.mark.parametrize("snr_db", SNRS)
def test_curriculum_snr_is_exact_per_window(noise, noise_cfg, snr_db):
    clean = ecg_like(64)
    fn = N.make_curriculum_noise_fn(noise_cfg, "train", snr_db, noise=noise)
    np.testing.assert_allclose(realized_snr(clean, fn(clean, SEED)), snr_db, atol=1e-3)


def test_mix_components_have_equal_power(noise_cfg):
    """bw carries 100x the amplitude of em and 10,000x that of ma; in the mix each counts alike.

    The records are orthogonal patterns whatever the crop offset (constant, period 2, period 4),
    so the component amplitudes in the added noise can be read off by projection.
    """
    n, T = 10000, 1440
    t = np.arange(n)
    const = np.ones(n)
    alt = (-1.0) ** t
    p4 = np.where(t % 4 < 2, 1.0, -1.0)
    noise = {
        k: np.repeat(v[:, None], 2, axis=1).astype(np.float32)
        for k, v in (("bw", 10 * const), ("em", 0.1 * alt), ("ma", 0.001 * p4))
    }
    clean = ecg_like(4, T=T)
    noisy = N.make_noise_fn(noise_cfg, "mix", 0.0, "test", noise=noise)(clean, SEED).numpy()
    added = (noisy.astype(np.float64) - clean)[:, :, 0]
    tt = np.arange(T)
    a_bw = np.abs(added.mean(axis=1))
    a_em = np.abs((added * (-1.0) ** tt).mean(axis=1))
    a_ma = np.hypot(
        (added * np.where(tt % 4 < 2, 1, -1)).mean(axis=1),
        (added * np.where((tt + 1) % 4 < 2, 1, -1)).mean(axis=1),
    )
    np.testing.assert_allclose(a_em / a_bw, 1.0, rtol=1e-3)
    np.testing.assert_allclose(a_ma / a_bw, 1.0, rtol=1e-3)
    np.testing.assert_allclose(realized_snr(clean, noisy), 0.0, atol=1e-3)


def test_gaussian_noise_is_white_and_equal_on_both_leads(noise_cfg):
    clean = ecg_like(64)
    noisy = N.make_noise_fn(noise_cfg, "gaussian", 0.0, "train")(clean, SEED).numpy()
    n = noisy.astype(np.float64) - clean
    assert abs(n[:, :, 0].std() / n[:, :, 1].std() - 1) < 0.02
    lag1 = np.mean(n[:, 1:] * n[:, :-1]) / np.mean(n * n)
    assert abs(lag1) < 0.02


def test_zero_windows_get_no_noise_and_empty_chunks_work(noise, noise_cfg):
    clean = ecg_like(3)
    clean[1] = 0.0
    for t in N.NOISE_TYPES:
        fn = N.make_noise_fn(noise_cfg, t, 6.0, "test", noise=noise)
        out = fn(clean, SEED).numpy()
        np.testing.assert_array_equal(out[1], 0.0)
        assert np.isfinite(out).all()
        assert fn(np.zeros((0, 1440, 2), np.float32), SEED).shape == (0, 1440, 2)


def test_inf_returns_clean_unchanged(noise, noise_cfg):
    clean = tf.constant(ecg_like(8))
    for t in N.NOISE_TYPES:
        out = N.make_noise_fn(noise_cfg, t, math.inf, "train", noise=noise)(clean, SEED)
        np.testing.assert_array_equal(np.asarray(out), clean.numpy())
    out = N.make_curriculum_noise_fn(noise_cfg, "train", float("inf"), noise=noise)(clean, SEED)
    np.testing.assert_array_equal(np.asarray(out), clean.numpy())


def test_snr_variable_changes_without_rebuilding(noise, noise_cfg):
    snr = tf.Variable(math.inf, dtype=tf.float32)
    fn = N.make_curriculum_noise_fn(noise_cfg, "train", snr, noise=noise)
    clean = ecg_like(16)
    np.testing.assert_array_equal(fn(clean, SEED).numpy(), clean)
    for v in (24.0, 6.0):
        snr.assign(v)
        np.testing.assert_allclose(realized_snr(clean, fn(clean, SEED)), v, atol=1e-3)


def test_bad_type_and_snr_raise(noise_cfg):
    with pytest.raises(KeyError, match=r"unknown noise type 'pink'; known: \['gaussian'"):
        N.make_noise_fn(noise_cfg, "pink", 6.0, "train")
    with pytest.raises(KeyError, match="unknown noise type 'white'"):
        N.make_curriculum_noise_fn(noise_cfg, "train", 6.0, types=("gaussian", "white"))
    with pytest.raises(ValueError, match="Received: snr_db=nan"):
        N.make_noise_fn(noise_cfg, "gaussian", float("nan"), "train")


# ------------------------------------------------------------------------ determinism


@pytest.mark.parametrize("noise_type", N.NOISE_TYPES)
def test_same_seed_same_noise_other_seed_differs(noise, noise_cfg, noise_type):
    clean = ecg_like(8)
    fn = N.make_noise_fn(noise_cfg, noise_type, 6.0, "val", noise=noise)
    a, b = fn(clean, SEED).numpy(), fn(clean, SEED).numpy()
    np.testing.assert_array_equal(a, b)
    # a new function built the same way gives the same noise too
    again = N.make_noise_fn(noise_cfg, noise_type, 6.0, "val", noise=noise)(clean, SEED).numpy()
    np.testing.assert_array_equal(a, again)
    c = fn(clean, tf.constant([7, 12], tf.int64)).numpy()
    assert not np.array_equal(a, c)


def test_curriculum_draws_one_type_per_window(noise_cfg):
    """With bw = +ramp and em = -ramp, each window's sign says which type it got."""
    rec = ramp_noise()
    noise = {"bw": rec, "em": -rec}
    clean = ecg_like(64, T=100)
    fn = N.make_curriculum_noise_fn(noise_cfg, "test", 6.0, types=("bw", "em"), noise=noise)
    d = fn(clean, SEED).numpy().astype(np.float64) - clean
    signs = np.sign(d[:, :, 0])
    assert (signs == signs[:, :1]).all()  # one type per window
    frac_bw = float((signs[:, 0] > 0).mean())
    assert 0.25 < frac_bw < 0.75
    np.testing.assert_array_equal(fn(clean, SEED).numpy(), fn(clean, SEED).numpy())
    # a single type draws exactly what make_noise_fn draws for it
    one = N.make_curriculum_noise_fn(noise_cfg, "test", 6.0, types=("bw",), noise=noise)
    ref = N.make_noise_fn(noise_cfg, "bw", 6.0, "test", noise=noise)
    np.testing.assert_array_equal(one(clean, SEED).numpy(), ref(clean, SEED).numpy())


# --------------------------------------------------------------------------- graph mode


def test_works_inside_a_tf_data_map(noise, noise_cfg):
    chunks = np.stack([ecg_like(5, seed=i) for i in range(3)])  # 3 chunks of 5 windows
    seeds = np.array([[1, i] for i in range(3)], np.int64)
    for fn, snr_db in (
        (N.make_noise_fn(noise_cfg, "mix", 6.0, "test", noise=noise), 6.0),
        (N.make_curriculum_noise_fn(noise_cfg, "train", 12.0, noise=noise), 12.0),
    ):
        ds = tf.data.Dataset.from_tensor_slices((chunks, seeds)).map(
            lambda c, s, fn=fn: (fn(c, s), c), num_parallel_calls=2, deterministic=True
        )
        out = list(ds.as_numpy_iterator())
        assert [y.shape for y, _ in out] == [(5, 1440, 2)] * 3
        snrs = np.concatenate([realized_snr(c, y) for y, c in out])
        np.testing.assert_allclose(snrs, snr_db, atol=1e-3)
        # graph mode and eager mode give the same noise for the same seed
        eager = fn(tf.constant(chunks[1]), tf.constant(seeds[1])).numpy()
        np.testing.assert_allclose(out[1][0], eager, rtol=1e-6, atol=1e-6)
