"""The tf.data loader: every example once per epoch, file order, sequences, damaged files."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from data_tools.synthetic import write_synthetic_database
from pipeline import tfrecords as tfrecords_cmd
from pipeline import windows as windows_cmd
from pipeline.core.config import load_config
from pipeline.core.io_utils import PipelineError, atomic_savez, load_npz
from pipeline.data import loader
from pipeline.data import tfrecord_writer as tfrecords

RECORDS = ["s00", "s01", "s02"]
N_SCALES = 8
SETS = ["windows.workers=1", f"scalograms.n_scales={N_SCALES}", "tfrecords.examples_per_batch=16",
        "tfrecords.denoise_chunk_windows=16"]
SEQ = "mitdb_aami5_sequences"
SEG = "mitdb_aami5_segments"


def _argv(root: Path, *sets: str) -> list[str]:
    out = ["--data-dir", str(root)]
    for s in (*SETS, *sets):
        out += ["--set", s]
    return out


def _cfg(root: Path, examples_per_batch: int = 16, **loader_cfg):
    return load_config(None, {
        "data": {"data_dir": str(root)}, "windows": {"workers": 1},
        "scalograms": {"n_scales": N_SCALES},
        "tfrecords": {"examples_per_batch": examples_per_batch, "denoise_chunk_windows": 16},
        "loader": {"cycle_length": 2, "shuffle_buffer": 64, **loader_cfg}}, apply_env=False)


def _write_scalograms(root: Path, seed: int = 0) -> None:
    """Stand-in scalograms (seeded random magnitudes), laid out like pipeline.scalograms."""
    rng = np.random.default_rng(seed)
    for p in sorted((root / "windows" / "mitdb").glob("*.npz")):
        w = load_npz(p)
        atomic_savez(root / "scalograms" / "mitdb" / p.name,
                     scalograms=(2 * rng.random((len(w["beat_label"]), N_SCALES, 187))
                                 ).astype(np.float16),
                     beat_index=w["beat_index"])


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    """3 synthetic 30 s records -> windows -> scalograms -> TFRecords (16 per Example)."""
    root = tmp_path_factory.mktemp("loader")
    write_synthetic_database(root / "raw" / "mitdb", n_records=3, seed=0, duration_s=30)
    assert windows_cmd.main([*_argv(root), "--databases", "mitdb"]) == 0
    _write_scalograms(root)
    assert tfrecords_cmd.main([*_argv(root), "--kinds", "segments", "beats", "denoise"]) == 0
    return root


def _w(root: Path, rec: str) -> dict[str, np.ndarray]:
    return load_npz(root / "windows" / "mitdb" / f"{rec}.npz")


def _sc(root: Path, rec: str) -> np.ndarray:
    return load_npz(root / "scalograms" / "mitdb" / f"{rec}.npz")["scalograms"]


def _epoch(ds) -> tuple[np.ndarray, np.ndarray, list[tuple[str, int]]]:
    xs, ys, pairs = [], [], []
    for x, y, rec, idx in ds.as_numpy_iterator():
        xs.append(x)
        ys.append(y)
        pairs += [(r.decode(), int(i)) for r, i in zip(rec, idx, strict=True)]
    return np.concatenate(xs), np.concatenate(ys), pairs


# --------------------------------------------------------------------- every example once


def test_segments_every_example_once_per_epoch(root):
    cfg = _cfg(root)
    ds = loader.create_dataset(RECORDS, cfg, 8, True, task=SEG, with_index=True)
    want = {(r, int(i)) for r in RECORDS for i in _w(root, r)["segment_beat_index"]}
    orders = []
    for _ in range(2):
        x, y, pairs = _epoch(ds)
        assert len(pairs) == len(set(pairs)) and set(pairs) == want
        assert x.shape == (len(want), 720, 1) and y.shape == (len(want), 5)
        for k in np.random.default_rng(0).choice(len(pairs), 20, replace=False):
            rec, i = pairs[k]
            w = _w(root, rec)
            row = int(np.flatnonzero(w["segment_beat_index"] == i)[0])
            assert np.array_equal(x[k, :, 0], w["segments"][row])
            assert y[k].argmax() == w["segment_label"][row] and y[k].sum() == 1
        orders.append(pairs)
    assert orders[0] != orders[1]  # shuffled anew each epoch


def test_sequences_once_consecutive_and_within_one_record(root):
    cfg = _cfg(root)  # seq_len_beats = 3
    ds = loader.create_dataset(RECORDS, cfg, 8, True, task=SEQ, with_index=True)
    x, y, pairs = _epoch(ds)
    # Centres: every stored beat but the first and last of each record (no gaps here).
    want = {(r, int(i)) for r in RECORDS for i in _w(root, r)["beat_index"][1:-1]}
    assert len(pairs) == len(set(pairs)) and set(pairs) == want
    assert x.shape == (len(want), 3, N_SCALES, 187, 1) and x.dtype == np.float32
    for k, (rec, i) in enumerate(pairs):
        w, sc = _w(root, rec), _sc(root, rec)
        row = int(np.flatnonzero(w["beat_index"] == i)[0])
        # Beats row-1, row, row+1 of the sequence's own record, centre beat's label.
        assert np.array_equal(x[k, ..., 0], sc[row - 1:row + 2].astype(np.float32))
        assert y[k].argmax() == w["beat_label"][row]


def test_dropped_beat_breaks_sequences_across_the_gap(root, tmp_path):
    data = tmp_path / "gap"
    shutil.copytree(root, data)
    w = _w(data, "s01")
    gap = 10  # stored row of the dropped beat
    keep = np.arange(len(w["beat_index"])) != gap
    beat_keys = [k for k, v in w.items() if k.startswith(("beat", "rr_")) and v.ndim >= 1
                 and len(v) == len(keep)]
    atomic_savez(data / "windows" / "mitdb" / "s01.npz",
                 **{k: (v[keep] if k in beat_keys else v) for k, v in w.items()})
    sc = _sc(data, "s01")[keep]
    atomic_savez(data / "scalograms" / "mitdb" / "s01.npz", scalograms=sc,
                 beat_index=w["beat_index"][keep])
    assert tfrecords_cmd.main([*_argv(data), "--kinds", "beats"]) == 0

    cfg = _cfg(data)
    ds = loader.create_dataset(["s01"], cfg, 8, True, task=SEQ, with_index=True)
    x, y, pairs = _epoch(ds)
    b = int(w["beat_index"][gap])
    stored = w["beat_index"][keep]
    want = {("s01", int(i)) for i in stored[1:-1]} - {("s01", b - 1), ("s01", b + 1)}
    assert ("s01", b - 1) in {("s01", int(i)) for i in stored}
    assert set(pairs) == want and len(pairs) == len(want)
    for k, (_, i) in enumerate(pairs):
        row = int(np.flatnonzero(stored == i)[0])
        assert np.array_equal(x[k, ..., 0], sc[row - 1:row + 2].astype(np.float32))
    labels = loader.split_labels(["s01"], cfg, SEQ)
    assert len(labels) == len(want)


@pytest.mark.parametrize("per_batch", [1, 5])
def test_sequences_span_stored_batches_of_any_size(root, tmp_path, per_batch):
    # 5-beat sequences over stored batches of 1 or 5 beats (fewer than the 4 carried over),
    # with an include mask on the centre beats.
    data = tmp_path / "d"
    shutil.copytree(root, data)
    assert tfrecords_cmd.main([*_argv(data, f"tfrecords.examples_per_batch={per_batch}"),
                           "--kinds", "beats"]) == 0
    cfg = _cfg(data, per_batch, seq_len_beats=5)
    rng = np.random.default_rng(per_batch)
    include = {tfrecords.shard_name(r): rng.random(len(_w(data, r)["beat_index"])) < 0.7
               for r in RECORDS}
    ds = loader.create_dataset(RECORDS, cfg, 8, False, task=SEQ, include=include,
                               with_index=True)
    x, y, pairs = _epoch(ds)
    want, rows = [], []
    for r in RECORDS:
        idx, keep = _w(data, r)["beat_index"], include[tfrecords.shard_name(r)]
        c = np.arange(2, len(idx) - 2)
        c = c[(idx[c + 2] - idx[c - 2] == 4) & keep[c]]
        want += [(r, int(i)) for i in idx[c]]
        rows += [(r, int(k)) for k in c]
    assert pairs == want
    for k, (r, row) in enumerate(rows):
        assert np.array_equal(x[k, ..., 0], _sc(data, r)[row - 2:row + 3].astype(np.float32))
    assert np.array_equal(y.argmax(1), loader.split_labels(RECORDS, cfg, SEQ, include=include))


def test_denoise_include_masks_select_windows(root):
    cfg = _cfg(root)
    ws = {r: _w(root, r) for r in RECORDS}
    stored = {r: np.union1d(ws[r]["denoise_train_starts"], ws[r]["denoise_eval_starts"])
              for r in RECORDS}
    rng = np.random.default_rng(4)
    include = {tfrecords.shard_name(r): rng.random(len(stored[r])) < 0.5 for r in RECORDS}
    for training in (True, False):
        ds = loader.create_dataset(RECORDS, cfg, 16, training, task="mitdb_denoise",
                                   noise_fn=lambda c, s: c, include=include, with_index=True)
        _, _, pairs = _epoch(ds)
        want = set()
        for r in RECORDS:
            sel = include[tfrecords.shard_name(r)]
            if not training:
                sel = sel & np.isin(stored[r], ws[r]["denoise_eval_starts"])
            want |= {(r, int(s)) for s in stored[r][sel]}
        assert len(pairs) == len(want) and set(pairs) == want


def test_denoise_training_uses_every_window_once_and_eval_the_grid(root):
    cfg = _cfg(root)
    W = cfg.windows.denoise_window_samples
    ws = {r: _w(root, r) for r in RECORDS}

    ds = loader.create_dataset(RECORDS, cfg, 16, True, task="mitdb_denoise",
                               noise_fn=lambda c, s: c, with_index=True)
    x, y, pairs = _epoch(ds)
    want = {(r, int(s)) for r in RECORDS for s in ws[r]["denoise_train_starts"]}
    assert len(pairs) == len(set(pairs)) and set(pairs) == want
    assert x.shape == (len(want), W, 2) and np.array_equal(x, y)
    for k in range(0, len(pairs), 7):
        rec, s = pairs[k]
        assert np.array_equal(y[k], ws[rec]["denoise_signal"][s:s + W])

    ev = loader.create_dataset(RECORDS, cfg, 16, False, task="mitdb_denoise",
                               noise_fn=lambda c, s: c, with_index=True)
    x, y, pairs = _epoch(ev)
    assert pairs == [(r, int(s)) for r in RECORDS for s in ws[r]["denoise_eval_starts"]]
    for k, (rec, s) in enumerate(pairs):
        assert np.array_equal(y[k], ws[rec]["denoise_signal"][s:s + W])


def test_evaluation_order_matches_split_labels(root):
    cfg = _cfg(root)
    for task in (SEG, SEQ):
        ds = loader.create_dataset(RECORDS, cfg, 8, False, task=task)
        y = np.concatenate([yb.argmax(1) for _, yb in ds.as_numpy_iterator()])
        assert np.array_equal(y, loader.split_labels(RECORDS, cfg, task))


def test_include_masks_select_examples(root):
    cfg = _cfg(root)
    files = loader.resolve_files(RECORDS, cfg, "segments")
    rng = np.random.default_rng(3)
    include = {Path(f).name: rng.random(len(_w(root, r)["segment_label"])) < 0.5
               for f, r in zip(files, RECORDS, strict=True)}
    ds = loader.create_dataset(RECORDS, cfg, 8, True, task=SEG, include=include,
                               with_index=True)
    _, _, pairs = _epoch(ds)
    want = {(r, int(i)) for f, r in zip(files, RECORDS, strict=True)
            for i in _w(root, r)["segment_beat_index"][include[Path(f).name]]}
    assert sorted(pairs) == sorted(want)
    assert len(loader.split_labels(RECORDS, cfg, SEG, include=include)) == len(want)
    with pytest.raises(KeyError, match="include has no mask"):
        loader.split_labels(RECORDS, cfg, SEG, include={})


# ----------------------------------------------------------------------------- file order


def _file_orders(ds, epochs: int) -> list[list[str]]:
    out = []
    for _ in range(epochs):
        seen: list[str] = []
        for _, _, rec, _ in ds.as_numpy_iterator():
            for r in rec:
                if r.decode() not in seen:
                    seen.append(r.decode())
        out.append(seen)
    return out


def test_file_order_changes_each_epoch_and_repeats_with_the_seed(root):
    # One file at a time and no example shuffle: the stream shows the file order.
    cfg = _cfg(root, cycle_length=1, shuffle_buffer=1, seed=5)

    def build(seed=None):
        return loader.create_dataset(RECORDS, cfg, 32, True, task=SEG, with_index=True,
                                     seed=seed)

    first = _file_orders(build(), 4)
    assert all(sorted(o) == RECORDS for o in first)
    assert len({tuple(o) for o in first}) > 1
    assert _file_orders(build(), 4) == first
    assert _file_orders(build(seed=6), 4) != first


# ------------------------------------------------------------------------- damaged files


def _copy_kind(root: Path, dst: Path, kind: str) -> list[str]:
    """Copies one kind's files and manifest to ``dst`` (the shared fixture stays intact)."""
    shutil.copytree(root / "tfrecords" / kind, dst)
    return [str(dst / tfrecords.shard_name(r)) for r in RECORDS]


def _flip_byte_in_second_record(path: str) -> None:
    data = bytearray(Path(path).read_bytes())
    first_len = int.from_bytes(data[:8], "little")
    pos = 8 + 4 + first_len + 4 + 8 + 4 + 100  # inside the second record's payload
    data[pos] ^= 0xFF
    Path(path).write_bytes(bytes(data))


def test_corrupted_record_is_named(root, tmp_path):
    import tensorflow as tf

    cfg = _cfg(root)
    files = _copy_kind(root, tmp_path / "segments", "segments")
    assert loader.find_damaged_file(files) is None
    _flip_byte_in_second_record(files[1])
    assert loader.find_damaged_file(files) == files[1]
    loader.check_files(files, cfg, "segments")  # same size, first Example fine: passes

    ds = loader.create_dataset(files, cfg, 8, True, task=SEG)
    with pytest.raises(tf.errors.DataLossError):
        for _ in ds:
            pass
    with pytest.raises(PipelineError, match=rf"^{re.escape(files[1])}: damaged TFRecord file "
                                            r"\(DataLossError: .*corrupted record"):
        for _ in loader.iterate_checked(ds, files):
            pass
    with pytest.raises(PipelineError, match=rf"^{re.escape(files[1])}: damaged TFRecord file"):
        loader.split_labels(files, cfg, SEG)


def test_corrupted_scalogram_file_is_named(root, tmp_path):
    cfg = _cfg(root)
    files = _copy_kind(root, tmp_path / "beats", "beats")
    _flip_byte_in_second_record(files[2])
    ds = loader.create_dataset(files, cfg, 8, False, task=SEQ)
    with pytest.raises(PipelineError, match=rf"^{re.escape(files[2])}: damaged TFRecord file"):
        for _ in loader.iterate_checked(ds, files):
            pass


def test_truncated_file_without_manifest_is_named_while_reading(root, tmp_path):
    cfg = _cfg(root)
    files = _copy_kind(root, tmp_path / "segments", "segments")
    with pytest.raises(PipelineError, match=rf"^{re.escape(files[0])}: \d+ bytes but the manifest says"):
        Path(files[0]).write_bytes(Path(files[0]).read_bytes()[:-50])
        loader.create_dataset(files, cfg, 8, True, task=SEG)
    (tmp_path / "segments" / "manifest.json").unlink()  # no size to compare with
    ds = loader.create_dataset(files, cfg, 8, True, task=SEG)
    with pytest.raises(PipelineError, match=rf"^{re.escape(files[0])}: damaged TFRecord file "
                                            r"\(DataLossError: .*truncated record"):
        for _ in loader.iterate_checked(ds, files):
            pass


def test_iterate_checked_passes_other_errors_through(root):
    import tensorflow as tf

    files = loader.resolve_files(RECORDS, _cfg(root), "segments")
    ds = loader.create_dataset(RECORDS, _cfg(root), 8, False, task=SEG)
    n = sum(int(x.shape[0]) for x, _ in loader.iterate_checked(ds, files))
    assert n == len(loader.split_labels(RECORDS, _cfg(root), SEG))
    bad = tf.data.Dataset.from_tensor_slices([1.0, -1.0]).map(
        lambda v: tf.debugging.check_numerics(tf.math.sqrt(v), "negative value"))
    with pytest.raises(tf.errors.InvalidArgumentError):
        list(loader.iterate_checked(bad, files))


def test_even_sequence_length_is_refused(root):
    cfg = _cfg(root, seq_len_beats=4)
    with pytest.raises(ValueError, match="seq_len_beats must be odd.*Received: 4"):
        loader.create_dataset(RECORDS, cfg, 8, True, task=SEQ)


def test_denoising_needs_a_noise_fn(root):
    with pytest.raises(ValueError, match="needs a noise_fn"):
        loader.create_dataset(RECORDS, _cfg(root), 8, True, task="mitdb_denoise")


def test_rr_channels_match_numpy_and_are_normalized_per_channel(root):
    from pipeline.data import normalization as N
    from pipeline.data.schema import decode, with_rr_channels

    cfg = _cfg(root)
    files = loader.resolve_files(["s00"], cfg, "segments")
    stats = N.fit(files, cfg, "segments", rr=True)
    assert len(stats["mean"]) == N.n_channels("segments", cfg, rr=True) == 4
    ds = loader.create_dataset(files, cfg, 4096, False, stats["mean"], stats["scale"],
                               task="mitdb_aami5_segments_rr")
    x = np.concatenate([b[0].numpy() for b in ds])
    import tensorflow as tf

    raw = np.concatenate([with_rr_channels(b.x, b.aux) for b in
                          (decode(s.numpy()) for s in tf.data.TFRecordDataset(files[0]))])
    want = (raw - np.asarray(stats["mean"])) / np.asarray(stats["scale"])
    assert x.shape == want.shape and x.shape[-1] == 4
    np.testing.assert_allclose(x, want, rtol=1e-4, atol=1e-4)
    # Constant RR channels: one value per segment, pre-RR over local RR near 1 for N beats.
    assert np.allclose(raw[:, :, 1], raw[:, :1, 1])
