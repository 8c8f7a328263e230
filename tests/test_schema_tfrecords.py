"""TFRecord schema (encode/decode) and the TFRecord stage (manifest, idempotence, resume)."""

from __future__ import annotations

import dataclasses
import hashlib
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
from pipeline.data import loader, schema
from pipeline.data import tfrecord_writer as tfrecords
from pipeline.data import windowing as windows

KINDS = ("segments", "beats", "denoise")
N_SCALES = 8
# Several Examples per file: 16 examples (or denoising windows) per Example.
SETS = ["windows.workers=1", f"scalograms.n_scales={N_SCALES}", "tfrecords.examples_per_batch=16",
        "tfrecords.denoise_chunk_windows=16"]


def _argv(root: Path, *sets: str) -> list[str]:
    out = ["--data-dir", str(root)]
    for s in (*SETS, *sets):
        out += ["--set", s]
    return out


def _cfg(root: Path, **sections):
    over = {"windows": {"workers": 1}, "scalograms": {"n_scales": N_SCALES},
            "tfrecords": {"examples_per_batch": 16, "denoise_chunk_windows": 16}}
    for k, v in sections.items():
        over[k] = {**over.get(k, {}), **v}
    return load_config(None, {"data": {"data_dir": str(root)}, **over}, apply_env=False)


def _write_scalograms(root: Path, seed: int = 0) -> None:
    """Stand-in scalograms (seeded random magnitudes), laid out like pipeline.scalograms."""
    rng = np.random.default_rng(seed)
    for p in sorted((root / "windows" / "mitdb").glob("*.npz")):
        w = load_npz(p)
        n = len(w["beat_label"])
        atomic_savez(root / "scalograms" / "mitdb" / p.name,
                     scalograms=(2 * rng.random((n, N_SCALES, 187))).astype(np.float16),
                     beat_index=w["beat_index"])


@pytest.fixture(scope="module")
def pristine(tmp_path_factory) -> Path:
    """3 synthetic 30 s records -> windows -> scalograms -> TFRecords of every MIT-BIH kind."""
    root = tmp_path_factory.mktemp("tfr")
    write_synthetic_database(root / "raw" / "mitdb", n_records=3, seed=0, duration_s=30)
    assert windows_cmd.main([*_argv(root), "--databases", "mitdb"]) == 0
    _write_scalograms(root)
    assert tfrecords_cmd.main([*_argv(root), "--kinds", *KINDS]) == 0
    return root


@pytest.fixture
def data(pristine, tmp_path) -> Path:
    """A private copy of the pristine folder (mtimes kept, so it is up to date)."""
    root = tmp_path / "d"
    shutil.copytree(pristine, root)
    return root


def _files(root: Path, kind: str) -> list[Path]:
    return sorted((root / "tfrecords" / kind).glob("*.tfrecord"))


def _mtimes(root: Path, kind: str) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in _files(root, kind)}


def _shas(root: Path, kind: str) -> dict[str, str]:
    m = json.loads((root / "tfrecords" / kind / "manifest.json").read_text())
    return {e["file"]: e["sha256"] for e in m["files"]}


def _examples(path: Path) -> list[bytes]:
    import tensorflow as tf

    return [r.numpy() for r in tf.data.TFRecordDataset(str(path))]


# --------------------------------------------------------------------------------- schema


def _batch(kind: str, dtype: str = "float32", n: int = 5) -> schema.Batch:
    rng = np.random.default_rng(1)
    dt = schema.DTYPES[dtype]
    if kind == "segments":
        return schema.Batch(kind, "100", rng.standard_normal((n, 720)).astype(dt),
                            rng.integers(0, 5, n), np.arange(3, 3 + n), rng.random((n, 3)))
    if kind == "beats":
        return schema.Batch(kind, "101", rng.random((n, N_SCALES, 187)).astype(dt),
                            rng.integers(0, 5, n), np.arange(n), rng.random((n, 3)))
    if kind == "denoise":
        return schema.Batch(kind, "102", rng.standard_normal((1440 + 45 * (n - 1), 2)).astype(dt),
                            np.zeros(n, np.int8), 45 * np.arange(n), np.zeros((n, 0)),
                            frame_length=1440, eval_grid=(np.arange(n) % 32 == 0),
                            chunk_start=90_000)
    return schema.Batch(kind, "fold01_g000", rng.standard_normal((n, 1000, 12)).astype(dt),
                        rng.integers(0, 2, (n, 5)), 1000 + np.arange(n), rng.random((n, 1)))


@pytest.mark.parametrize("kind,dtype", [("segments", "float32"), ("beats", "float16"),
                                        ("beats", "float32"), ("denoise", "float32"),
                                        ("ptbxl", "float32")])
def test_encode_decode_is_exact(kind, dtype):
    b = _batch(kind, dtype)
    d = schema.decode(schema.encode(b))
    assert (d.kind, d.record, d.n, d.frame_length, d.chunk_start) == (
        b.kind, b.record, b.n, b.frame_length, b.chunk_start)
    assert d.x.dtype == b.x.dtype and np.array_equal(d.x, b.x)
    assert d.y.dtype == np.int8 and np.array_equal(d.y, b.y)
    assert d.index.dtype == np.int32 and np.array_equal(d.index, b.index)
    assert d.aux.dtype == np.float32 and np.array_equal(d.aux, np.asarray(b.aux, np.float32))
    if kind == "denoise":
        assert np.array_equal(d.eval_grid, b.eval_grid)
    else:
        assert d.eval_grid is None


def test_encode_is_byte_stable():
    # Golden SHA-256 of this batch's Example, recorded with schema version 3. It pins the
    # format and catches per-process key order in the proto map (without deterministic
    # serialization each process orders the keys differently). A schema change must bump
    # SCHEMA_VERSION and update this value.
    b = schema.Batch("segments", "100", (np.arange(5 * 720, dtype=np.float32) / 7).reshape(5, 720),
                     np.arange(5), np.arange(3, 8), np.arange(15, dtype=np.float32) / 4)
    got = hashlib.sha256(schema.encode(b)).hexdigest()
    assert schema.SCHEMA_VERSION == 3
    assert got == "59fa0379bf5dcf9a7b719c97208418a36e276877c618cf0e0bb08cf6bcc03783"


def _set_int(key, v):
    def f(feat):
        feat[key].int64_list.value[:] = [v]
    return f


def _set_bytes(key, v):
    def f(feat):
        feat[key].bytes_list.value[:] = [v]
    return f


def _drop(key):
    def f(feat):
        del feat[key]
    return f


def _set_shape(i, v):
    def f(feat):
        feat["shape"].int64_list.value[i] = v
    return f


@pytest.mark.parametrize("mutate,match", [
    (_drop("record"), "'record' missing"),
    (_drop("chunk_start"), "'chunk_start' missing"),
    (_set_int("schema_version", 1), "schema version 1, expected 3"),
    (_set_bytes("kind", b"images"), "unknown kind 'images'"),
    (_set_bytes("dtype", b"float64"), "bad metadata"),
    (_set_int("n", 0), "bad metadata"),
    (_set_int("n", schema.MAX_BATCH + 1), "bad metadata"),
    (_set_shape(1, 3), "payload has"),
    (_set_bytes("index", b"\x00" * 12), "'index' has 12 bytes"),
    (_set_bytes("eval_grid", b""), "'eval_grid' has 0 bytes"),
    (_set_int("label_dim", 0), "label_dim=0"),
    (_set_int("frame_length", 0), "bad denoise metadata"),
    (_set_int("chunk_start", -1), "bad denoise metadata"),
    (_set_bytes("index", np.int32([0, 45, 90, 135, 1000]).tobytes()), "outside its chunk"),
])
def test_malformed_example_raises(mutate, match):
    import tensorflow as tf

    ex = tf.train.Example.FromString(schema.encode(_batch("denoise")))
    mutate(ex.features.feature)
    with pytest.raises(schema.SchemaError, match=rf"^f\.tfrecord: .*{match}"):
        schema.decode(ex.SerializeToString(), where="f.tfrecord")


def test_garbage_bytes_are_not_an_example():
    with pytest.raises(schema.SchemaError, match="f.tfrecord: not a valid Example"):
        schema.decode(b"\x0a\xff\xff\x01", where="f.tfrecord")


@pytest.mark.parametrize("change,match", [
    (dict(kind="images"), "unknown kind"),
    (dict(x=np.zeros((5, 720))), "x dtype float64"),
    (dict(y=np.zeros(0, np.int8)), "batch of 0 examples"),
    (dict(index=np.arange(4)), "index has shape"),
    (dict(aux=np.zeros(7)), "aux has 7 values"),
    (dict(x=np.zeros((4, 720), np.float32)), "x has 4 examples"),
])
def test_encode_refuses_bad_batches(change, match):
    with pytest.raises(schema.SchemaError, match=match):
        schema.encode(dataclasses.replace(_batch("segments"), **change))


def test_stage_files_decode_to_the_windows_data(pristine):
    cfg = _cfg(pristine)
    for rec in ("s00", "s01", "s02"):
        w = windows.load_record(cfg, rec)
        sc = load_npz(pristine / "scalograms" / "mitdb" / f"{rec}.npz")["scalograms"]
        got = {k: [schema.decode(s) for s in _examples(tfrecords.tfrecord_dir(cfg, k)
                                                        / tfrecords.shard_name(rec))]
               for k in KINDS}
        assert len(got["segments"]) > 1 and all(b.n <= 16 for b in got["segments"])
        seg = got["segments"]
        assert np.array_equal(np.concatenate([b.x for b in seg]), w["segments"])
        assert np.array_equal(np.concatenate([b.y for b in seg]), w["segment_label"])
        assert np.array_equal(np.concatenate([b.index for b in seg]), w["segment_beat_index"])
        seg_aux = np.concatenate([b.aux for b in seg])
        assert np.array_equal(seg_aux[:, 3:], w["rhythm"])
        beats = got["beats"]
        assert np.concatenate([b.x for b in beats]).dtype == np.float16
        assert np.array_equal(np.concatenate([b.x for b in beats]), sc)
        assert np.array_equal(np.concatenate([b.y for b in beats]), w["beat_label"])
        assert np.array_equal(np.concatenate([b.index for b in beats]), w["beat_index"])
        rr = np.stack([w["rr_pre_s"], w["rr_post_s"], w["rr_local_s"]], 1)
        beat_aux = np.concatenate([b.aux for b in beats])
        assert np.array_equal(beat_aux[:, :3], rr)  # the 3 RR values first, then the rhythm
        assert np.array_equal(beat_aux[:, 3:], w["beat_rhythm"])
        sig, starts, grid = w["denoise_signal"], [], []
        for b in got["denoise"]:
            for s in b.index:  # every window cut from its chunk equals the record's signal
                a = b.chunk_start + int(s)
                assert np.array_equal(b.x[s:s + b.frame_length], sig[a:a + b.frame_length])
            starts += list(b.chunk_start + b.index)
            grid += list(b.eval_grid)
        assert starts == sorted(np.union1d(w["denoise_train_starts"], w["denoise_eval_starts"]))
        assert [s for s, g in zip(starts, grid, strict=True) if g] == list(w["denoise_eval_starts"])


# ------------------------------------------------------------------------------ the stage


def test_manifest_counts_equal_windows_counts(pristine):
    cfg = _cfg(pristine)
    wman = json.loads((pristine / "windows" / "mitdb" / "manifest.json").read_text())
    for kind in KINDS:
        m = json.loads((tfrecords.tfrecord_dir(cfg, kind) / "manifest.json").read_text())
        assert [e["record"] for e in m["files"]] == ["s00", "s01", "s02"]
        assert m["schema_version"] == schema.SCHEMA_VERSION
        for e in m["files"]:
            w = windows.load_record(cfg, e["record"])
            path = tfrecords.tfrecord_dir(cfg, kind) / e["file"]
            assert e["bytes"] == path.stat().st_size
            assert e["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
            assert e["batches"] == len(_examples(path))
            if kind == "denoise":
                n_train = len(np.union1d(w["denoise_train_starts"], w["denoise_eval_starts"]))
                assert e["examples"] == n_train
                assert e["eval_windows"] == len(w["denoise_eval_starts"])
                continue
            labels = w["segment_label" if kind == "segments" else "beat_label"]
            assert e["examples"] == len(labels)
            want = {str(k): int(c) for k, c in zip(*np.unique(labels, return_counts=True), strict=True)}
            assert e["class_counts"] == want
        if kind != "denoise":
            assert m["class_totals"] == {c: v for c, v in wman["totals"][kind].items() if v}
            assert m["examples"] == sum(wman["totals"][kind].values())


def test_second_run_rewrites_nothing_and_force_rewrites(data):
    before = {k: _mtimes(data, k) for k in KINDS}
    manifest = data / "tfrecords" / "segments" / "manifest.json"
    m_before = manifest.stat().st_mtime_ns
    assert tfrecords_cmd.main([*_argv(data), "--kinds", *KINDS]) == 0
    assert {k: _mtimes(data, k) for k in KINDS} == before
    assert manifest.stat().st_mtime_ns == m_before

    shas = _shas(data, "segments")
    assert tfrecords_cmd.main([*_argv(data), "--kinds", "segments", "--force"]) == 0
    after = _mtimes(data, "segments")
    assert all(after[f] > before["segments"][f] for f in after)
    assert _shas(data, "segments") == shas  # same inputs, same bytes


def test_changed_config_or_input_rewrites_only_what_changed(data):
    before = _mtimes(data, "segments")
    # A newer windows file for one record rewrites that record's file only.
    w = data / "windows" / "mitdb" / "s01.npz"
    w.write_bytes(w.read_bytes())
    assert tfrecords_cmd.main([*_argv(data), "--kinds", "segments"]) == 0
    after = _mtimes(data, "segments")
    assert [f for f in after if after[f] != before[f]] == [tfrecords.shard_name("s01")]
    # A different batch size rewrites every file.
    assert tfrecords_cmd.main([*_argv(data, "tfrecords.examples_per_batch=32"), "--kinds",
                           "segments"]) == 0
    again = _mtimes(data, "segments")
    assert all(again[f] != after[f] for f in again)


def test_resume_rewrites_only_the_missing_file(data, pristine):
    kind = "beats"
    want = _shas(pristine, kind)
    before = _mtimes(data, kind)
    lost = tfrecords.shard_name("s01")
    (data / "tfrecords" / kind / lost).unlink()
    prog_path = data / "tfrecords" / kind / "_progress.json"
    prog = json.loads(prog_path.read_text())
    del prog["s01"]
    prog_path.write_text(json.dumps(prog))
    assert tfrecords_cmd.main([*_argv(data), "--kinds", kind]) == 0
    after = _mtimes(data, kind)
    assert {f for f in after if after[f] != before.get(f)} == {lost}
    assert _shas(data, kind) == want
    for f, sha in want.items():
        assert hashlib.sha256((data / "tfrecords" / kind / f).read_bytes()).hexdigest() == sha


def test_resume_after_interruption(data, pristine, monkeypatch):
    kind = "denoise"
    want = _shas(pristine, kind)
    real = tfrecords.write_file
    calls = []

    def interrupted(cfg, k, rec, out):
        calls.append(rec)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(cfg, k, rec, out)

    monkeypatch.setattr(tfrecords, "write_file", interrupted)
    with pytest.raises(KeyboardInterrupt):
        tfrecords_cmd.main([*_argv(data), "--kinds", kind, "--force"])
    # The interrupted file left no temporary behind; the first one is recorded as done.
    assert not list((data / "tfrecords" / kind).glob(".*.tmp"))
    done = _mtimes(data, kind)
    monkeypatch.setattr(tfrecords, "write_file", real)
    calls.clear()
    written = []
    monkeypatch.setattr(tfrecords, "write_file",
                        lambda cfg, k, rec, out: written.append(rec) or real(cfg, k, rec, out))
    assert tfrecords_cmd.main([*_argv(data), "--kinds", kind]) == 0
    assert written == ["s01", "s02"]
    assert _mtimes(data, kind)[tfrecords.shard_name("s00")] == done[tfrecords.shard_name("s00")]
    assert _shas(data, kind) == want


def test_deselected_record_is_removed_from_folder_and_manifest(data):
    assert tfrecords_cmd.main([*_argv(data, "data.mitdb_records=[s00,s02]"),
                           "--kinds", "segments"]) == 0
    assert [p.name for p in _files(data, "segments")] == [
        tfrecords.shard_name("s00"), tfrecords.shard_name("s02")]
    assert list(_shas(data, "segments")) == [p.name for p in _files(data, "segments")]


# -------------------------------------------------------------- files against the config


def test_scalograms_built_with_other_n_scales_name_the_file(pristine):
    cfg = _cfg(pristine, scalograms={"n_scales": 16})
    with pytest.raises(PipelineError, match=r"s00-00000-of-00001\.tfrecord: metadata .*"
                                            r"shape=\(8, 187\).*shape=\(16, 187\)"):
        loader.create_dataset(["s00"], cfg, 4, False, task="mitdb_aami5_sequences")


def test_segments_of_other_length_name_the_file(pristine):
    cfg = _cfg(pristine, windows={"segment_len_samples": 700})
    with pytest.raises(PipelineError, match=r"s01-00000-of-00001\.tfrecord: metadata"):
        loader.check_files(loader.resolve_files(["s01"], cfg, "segments"), cfg, "segments")


def test_file_of_old_schema_version_names_the_file(data):
    import tensorflow as tf

    path = _files(data, "segments")[0]
    ex = tf.train.Example.FromString(_examples(path)[0])
    ex.features.feature["schema_version"].int64_list.value[:] = [1]
    with tf.io.TFRecordWriter(str(path)) as wr:
        wr.write(ex.SerializeToString())
    cfg = _cfg(data)
    with pytest.raises(PipelineError, match=rf"{path.name}: schema version 1, expected 3"):
        loader.check_files([str(path)], cfg, "segments")


def test_truncated_file_fails_the_size_check(data):
    cfg = _cfg(data)
    path = _files(data, "segments")[1]
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(PipelineError, match=rf"{path.name}: \d+ bytes but the manifest says"):
        loader.check_files([str(p) for p in _files(data, "segments")], cfg, "segments")


def test_missing_inputs_name_the_stage_to_run(data):
    (data / "scalograms" / "mitdb" / "s02.npz").unlink()
    with pytest.raises(PipelineError, match=r"s02\.npz: missing; run `python -m "
                                            r"pipeline.scalograms`"):
        tfrecords_cmd.main([*_argv(data), "--kinds", "beats"])
    with pytest.raises(PipelineError, match="TFRecord file not found"):
        loader.resolve_files(["s09"], _cfg(data), "segments")
