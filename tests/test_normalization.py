"""Train-split normalization: statistics equal NumPy on the training data and ignore val/test."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from data_tools.synthetic import write_synthetic_database
from pipeline import tfrecords as tfrecords_cmd
from pipeline import windows as windows_cmd
from pipeline.core.config import load_config
from pipeline.core.io_utils import PipelineError, atomic_savez, load_npz
from pipeline.data import loader, normalization
from pipeline.data import tfrecord_writer as tfrecords

RECORDS = ["s00", "s01", "s02"]
TRAIN, HELD_OUT = ["s00", "s01"], ["s02"]
KINDS = ("segments", "beats", "denoise")
N_SCALES = 8
SETS = ["windows.workers=1", f"scalograms.n_scales={N_SCALES}", "tfrecords.examples_per_batch=16",
        "tfrecords.denoise_chunk_windows=16"]


def _argv(root: Path) -> list[str]:
    out = ["--data-dir", str(root)]
    for s in SETS:
        out += ["--set", s]
    return out


def _cfg(root: Path):
    return load_config(None, {
        "data": {"data_dir": str(root)}, "windows": {"workers": 1},
        "scalograms": {"n_scales": N_SCALES},
        "tfrecords": {"examples_per_batch": 16, "denoise_chunk_windows": 16}}, apply_env=False)


def _write_scalograms(root: Path, seed: int = 0) -> None:
    """Stand-in scalograms: seeded, a different level per scale row (so rows differ)."""
    rng = np.random.default_rng(seed)
    for p in sorted((root / "windows" / "mitdb").glob("*.npz")):
        w = load_npz(p)
        level = np.arange(1, N_SCALES + 1)[None, :, None]
        sc = level * rng.random((len(w["beat_label"]), N_SCALES, 187))
        atomic_savez(root / "scalograms" / "mitdb" / p.name, scalograms=sc.astype(np.float16),
                     beat_index=w["beat_index"])


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("norm")
    write_synthetic_database(root / "raw" / "mitdb", n_records=3, seed=0, duration_s=30)
    assert windows_cmd.main([*_argv(root), "--databases", "mitdb"]) == 0
    _write_scalograms(root)
    assert tfrecords_cmd.main([*_argv(root), "--kinds", *KINDS]) == 0
    return root


def _files(root: Path, kind: str, records: list[str]) -> list[str]:
    return loader.resolve_files(records, _cfg(root), kind)


def _numpy_stats(root: Path, kind: str, records: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Reference from the stage inputs (not the TFRecords): values as (n, channels)."""
    W = _cfg(root).windows.denoise_window_samples
    rows = []
    for r in records:
        w = load_npz(root / "windows" / "mitdb" / f"{r}.npz")
        if kind == "segments":
            rows.append(w["segments"].reshape(-1, 1))
        elif kind == "beats":
            sc = load_npz(root / "scalograms" / "mitdb" / f"{r}.npz")["scalograms"]
            rows.append(np.moveaxis(sc.astype(np.float64), 1, -1).reshape(-1, N_SCALES))
        else:  # each sample once: the non-overlapping evaluation windows
            sig = w["denoise_signal"]
            rows += [sig[s:s + W] for s in w["denoise_eval_starts"]]
    v = np.concatenate(rows).astype(np.float64)
    return v.mean(axis=0), v.std(axis=0)


@pytest.mark.parametrize("kind", KINDS)
def test_fit_equals_numpy_on_the_training_files(root, kind):
    stats = normalization.fit(_files(root, kind, TRAIN), _cfg(root), kind)
    mean, std = _numpy_stats(root, kind, TRAIN)
    n_ch = normalization.n_channels(kind, _cfg(root))
    assert len(stats["mean"]) == len(stats["scale"]) == n_ch == len(mean)
    np.testing.assert_allclose(stats["mean"], mean, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(stats["scale"], std, rtol=1e-10)
    assert stats["kind"] == kind
    assert stats["train_files"] == [tfrecords.shard_name(r) for r in TRAIN]
    if kind == "beats":  # one statistic per scale row, and the rows differ
        assert np.all(np.diff(stats["mean"]) > 0)


def _with_other_held_out_record(root: Path, dst: Path) -> Path:
    """A copy of ``root`` whose held-out record s02 has different data (scaled, shifted)."""
    shutil.copytree(root, dst)
    p = dst / "windows" / "mitdb" / "s02.npz"
    w = load_npz(p)
    w["segments"] = w["segments"] * 3 + 1
    w["denoise_signal"] = w["denoise_signal"] * 3 + 1
    atomic_savez(p, **w)
    sp = dst / "scalograms" / "mitdb" / "s02.npz"
    s = load_npz(sp)
    atomic_savez(sp, **{**s, "scalograms": (s["scalograms"] * 3 + 1).astype(np.float16)})
    assert tfrecords_cmd.main([*_argv(dst), "--kinds", *KINDS]) == 0
    return dst


def test_fit_ignores_validation_and_test_files(root, tmp_path):
    other = _with_other_held_out_record(root, tmp_path / "other")
    for kind in KINDS:
        a, b = _files(root, kind, HELD_OUT)[0], _files(other, kind, HELD_OUT)[0]
        assert Path(a).read_bytes() != Path(b).read_bytes()  # the held-out data did change
        fa = normalization.fit(_files(root, kind, TRAIN), _cfg(root), kind)
        fb = normalization.fit(_files(other, kind, TRAIN), _cfg(other), kind)
        assert fa == fb  # identical: nothing outside the training files is read
        # Fitting on every file would have moved the statistics.
        ga = normalization.fit(_files(root, kind, RECORDS), _cfg(root), kind)
        assert not np.allclose(ga["mean"], fa["mean"])


def test_running_stats_merge_equals_numpy():
    rng = np.random.default_rng(0)
    blocks = [rng.normal(5.0, 2.0, (n, 3, 7)) for n in (1, 17, 256, 3)]
    rs = normalization.RunningStats(3)
    for b in blocks:
        rs.update(b, channel_axis=1)
    rs.update(np.zeros((0, 3, 7)), channel_axis=1)  # empty block: no change
    ref = np.moveaxis(np.concatenate(blocks), 1, -1).reshape(-1, 3)
    assert rs.count == len(ref)
    np.testing.assert_allclose(rs.mean, ref.mean(0), rtol=1e-12)
    np.testing.assert_allclose(rs.std, ref.std(0), rtol=1e-12)
    with pytest.raises(PipelineError, match="no training values"):
        _ = normalization.RunningStats(2).std


def test_loader_with_fitted_stats_gives_zero_mean_unit_std(root):
    cfg = _cfg(root)
    stats = normalization.fit(_files(root, "beats", TRAIN), cfg, "beats")
    # Sequences repeat beats; the centre beat of each is near every stored beat once.
    ds = loader.create_dataset(TRAIN, cfg, 64, False, stats["mean"], stats["scale"],
                               task="mitdb_aami5_sequences")
    x = np.concatenate([xb[:, 1, ..., 0] for xb, _ in ds.as_numpy_iterator()])  # centres
    per_row = np.moveaxis(x, 1, -1).reshape(-1, N_SCALES)
    np.testing.assert_allclose(per_row.mean(0), 0.0, atol=0.1)
    np.testing.assert_allclose(per_row.std(0), 1.0, atol=0.1)

    stats = normalization.fit(_files(root, "segments", TRAIN), cfg, "segments")
    ds = loader.create_dataset(TRAIN, cfg, 64, False, stats["mean"], stats["scale"],
                               task="mitdb_aami5_segments")
    x = np.concatenate([xb for xb, _ in ds.as_numpy_iterator()]).astype(np.float64)
    assert abs(x.mean()) < 1e-5 and abs(x.std() - 1.0) < 1e-5


def test_constant_channel_gets_unit_scale(root, tmp_path):
    data = tmp_path / "const"
    shutil.copytree(root, data)
    for r in RECORDS:
        sp = data / "scalograms" / "mitdb" / f"{r}.npz"
        s = load_npz(sp)
        sc = s["scalograms"].copy()
        sc[:, 0, :] = 0.5  # scale row 0 constant
        atomic_savez(sp, **{**s, "scalograms": sc})
    assert tfrecords_cmd.main([*_argv(data), "--kinds", "beats"]) == 0
    stats = normalization.fit(_files(data, "beats", TRAIN), _cfg(data), "beats")
    assert stats["mean"][0] == 0.5 and stats["scale"][0] == 1.0
    assert all(s > 0 for s in stats["scale"])


def test_save_load_round_trip_and_errors_name_the_file(root, tmp_path):
    cfg = _cfg(root)
    stats = normalization.fit(_files(root, "segments", TRAIN), cfg, "segments")
    path = tmp_path / "norm_stats.json"
    normalization.save(stats, path)
    mean, scale = normalization.load(path, "segments", 1)
    assert mean.tolist() == stats["mean"] and scale.tolist() == stats["scale"]
    with pytest.raises(PipelineError, match=r"norm_stats\.json: statistics are for 'segments'"):
        normalization.load(path, "beats")
    with pytest.raises(PipelineError, match=r"norm_stats\.json: statistics have shape"):
        normalization.load(path, "segments", 2)
    path.write_text(json.dumps({**stats, "scale": [0.0]}))
    with pytest.raises(PipelineError, match=r"norm_stats\.json: .*non-positive"):
        normalization.load(path)
    path.write_text('{"mean": [1.0], "sca')
    with pytest.raises(PipelineError, match=r"norm_stats\.json: normalization statistics is "
                                            r"corrupted"):
        normalization.load(path)


def test_fit_on_a_damaged_training_file_names_it(root, tmp_path):
    shutil.copytree(root / "tfrecords" / "segments", tmp_path / "seg")
    f = tmp_path / "seg" / tfrecords.shard_name("s01")
    f.write_bytes(f.read_bytes()[:-30])
    with pytest.raises(PipelineError, match=rf"{f.name}: damaged TFRecord file"):
        normalization.fit([str(tmp_path / "seg" / tfrecords.shard_name("s00")), str(f)],
                          _cfg(root), "segments")


@pytest.mark.parametrize("xla", [True, False])
def test_normalizer_matches_numpy(monkeypatch, xla):
    import tensorflow as tf

    monkeypatch.setattr(loader, "_XLA_OK", None if xla else False)
    rng = np.random.default_rng(2)
    x = (3 * rng.random((4, 3, N_SCALES, 187))).astype(np.float16)
    mean, scale = rng.random(N_SCALES) + 1, rng.random(N_SCALES) + 0.5
    norm = loader.Normalizer(mean, scale)
    want = (x.astype(np.float64) - mean[:, None]) / scale[:, None]
    for inp in (x, x.astype(np.float32)):
        got = norm.apply(tf.constant(inp), channel_axis=-2)
        assert got.dtype == tf.float32
        np.testing.assert_allclose(got.numpy(), want, rtol=1e-5, atol=1e-5)
