"""Rhythm features as a second model input, end to end (issue 15, items 1-3).

windows stage (features of all annotated beats at the native rate, R amplitudes on the beat
lead) -> TFRecords (``aux`` = 3 RR values + rhythm features, schema version 3) -> loader
(``({"ecg", "rr"}, y)``, rr z-scored with training statistics) -> trainer (classifiers built
with ``n_rr_features``) -> predict (the same features for a user's record); and every way
these can be fed wrong data.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

wfdb = pytest.importorskip("wfdb")
pytest.importorskip("tensorflow")

import _trained_runs as TR  # noqa: E402

from data_tools import synthetic as syn  # noqa: E402
from pipeline import tfrecords as tfrecords_cmd  # noqa: E402
from pipeline import train as train_cmd  # noqa: E402
from pipeline import windows as windows_cmd  # noqa: E402
from pipeline.core.config import load_config  # noqa: E402
from pipeline.core.io_utils import PipelineError, atomic_savez, load_npz  # noqa: E402
from pipeline.data import loader, normalization, rhythm, schema, windowing  # noqa: E402
from pipeline.data.tasks import get_task  # noqa: E402
from pipeline.data.tfrecord_writer import shard_name, tfrecord_dir  # noqa: E402

RHYTHM_RUNS = {
    "segments_rhythm": ("mitdb_aami5_segments_rhythm", "ldcnn", {"filters": 8, "dilations": [1, 2]},
                        "all"),
    "segments_relative": ("mitdb_aami5_segments_rhythm", "ldcnn",
                          {"filters": 8, "dilations": [1, 2]}, "relative"),
    "sequences_rhythm": ("mitdb_aami5_sequences_rhythm", "conformer",
                         {"filters": [8, 8], "d_model": 16, "n_blocks": 1, "num_heads": 2,
                          "dense_units": 16}, "all"),
}
RUN_FEATURES = {"all": rhythm.FEATURE_NAMES, "relative": rhythm.RELATIVE_FEATURE_NAMES}
_RUNS: dict[str, Path] = {}
N_F = len(rhythm.FEATURE_NAMES)


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return TR.data_root(tmp_path_factory)


def _cfg(root: Path, causal: bool = False):
    """The config of ``TR.data_root`` (the settings that shape its files)."""
    return load_config(None, {"data": {"data_dir": str(root)},
                              "windows": {"workers": 1, "rhythm_causal": causal},
                              "scalograms": {"n_scales": 8}}, apply_env=False)


def _files(root: Path, kind: str, recs=("s00", "s01", "s02", "s03")) -> list[str]:
    cfg = _cfg(root)
    return [str(tfrecord_dir(cfg, kind) / shard_name(r)) for r in recs]


def rhythm_run(tmp_path_factory, which: str) -> Path:
    """A 1-epoch tiny run of a rhythm task through ``pipeline.train`` (once per module)."""
    if which in _RUNS:
        return _RUNS[which]
    root = TR.data_root(tmp_path_factory)
    task, model, kwargs, features = RHYTHM_RUNS[which]
    run_dir = root.parent / f"run_{which}"
    assert train_cmd.main([*TR._argv(root), "--task", task, "--model", model,
                           "--model-kwargs", json.dumps(kwargs), "--run-dir", str(run_dir),
                           "--set", f"train.rhythm_features={features}"]) == 0
    _RUNS[which] = run_dir
    return run_dir


# ------------------------------------------------------------------------- amplitudes


def test_r_amplitude_is_height_above_the_local_median():
    fs = 100.0
    x = 0.5 + 0.01 * np.arange(1000) / fs  # offset and slow drift
    peaks = np.array([150, 400, 650, 900])
    x[peaks] += [1.0, 2.0, 0.5, 1.0]
    amp = rhythm.r_amplitudes(x, peaks, fs, half_window_s=1.0)
    np.testing.assert_allclose(amp, [1.0, 2.0, 0.5, 1.0], atol=0.011)  # drift <= 0.01 mV


def test_r_amplitude_of_nan_or_outside_beats_is_nan_and_ratio_falls_back_to_one():
    x = np.zeros(500)
    x[[100, 200]] = 1.0
    x[300] = np.nan
    amp = rhythm.r_amplitudes(x, np.array([100, 200, 300, 800]), 100.0)
    assert amp[0] == pytest.approx(1.0) and amp[1] == pytest.approx(1.0)
    assert np.isnan(amp[2]) and np.isnan(amp[3])
    np.testing.assert_allclose(rhythm.amplitude_ratio(amp, 4), [1, 1, 1, 1])


def test_r_amplitude_refuses_a_non_positive_window():
    with pytest.raises(ValueError, match=r"`half_window_s` must be > 0\. Received: half_window_s=0"):
        rhythm.r_amplitudes(np.zeros(10), np.array([5]), 100.0, half_window_s=0)


# ----------------------------------------------------------------------- windows stage


def _windows(tmp_path: Path, *sets: str) -> None:
    argv = ["--data-dir", str(tmp_path), "--databases", "mitdb", "--set", "windows.workers=1"]
    for s in sets:
        argv += ["--set", s]
    assert windows_cmd.main(argv) == 0


def test_windows_store_rhythm_of_all_annotated_beats_aligned_with_kept_rows(tmp_path):
    raw = tmp_path / "raw" / "mitdb"
    syn.write_record(raw, "k", seed=0, duration_s=30.0, pattern=["N"])
    # The first beat sits 0.3 s from the start: no segment (2 s) and no beat window fit it,
    # but the next beat's pre-RR must still be the real interval to it.
    samples = np.array([108, 396, 684, 864, 1260, 1530, 1818, 2106, 2394, 2682, 5000, 9000])
    wfdb.wrann("k", "atr", sample=samples, symbol=["N"] * len(samples), write_dir=str(raw))
    _windows(tmp_path)
    z = load_npz(tmp_path / "windows" / "mitdb" / "k.npz")
    assert tuple(z["rhythm_names"]) == rhythm.FEATURE_NAMES
    rec = wfdb.rdrecord(str(raw / "k"))
    want = rhythm.rhythm_features(samples / 360.0,
                                  rhythm.r_amplitudes(rec.p_signal[:, 0], samples, 360.0))
    assert 0 not in z["segment_beat_index"] and 0 not in z["beat_index"]  # beat 0 dropped
    np.testing.assert_array_equal(z["rhythm"], want[z["segment_beat_index"]])
    np.testing.assert_array_equal(z["beat_rhythm"], want[z["beat_index"]])
    assert z["rhythm"].dtype == np.float32 and z["rhythm"].shape == (len(z["segment_label"]), N_F)
    first = int(z["segment_beat_index"][0])
    col = rhythm.FEATURE_NAMES.index("pre_rr_s")
    assert z["rhythm"][0, col] == pytest.approx((samples[first] - samples[first - 1]) / 360.0)
    np.testing.assert_array_equal(z["segment_sample"], samples[z["segment_beat_index"]])
    man = json.loads((tmp_path / "windows" / "mitdb" / "manifest.json").read_text())
    assert man["rhythm_names"] == list(rhythm.FEATURE_NAMES)
    assert man["output_version"] == windowing.OUTPUT_VERSION == 2


def test_causal_windows_drop_the_post_rr_features(tmp_path):
    syn.write_synthetic_database(tmp_path / "raw" / "mitdb", n_records=1, seed=3, duration_s=20.0)
    _windows(tmp_path, "windows.rhythm_causal=true")
    z = load_npz(tmp_path / "windows" / "mitdb" / "s00.npz")
    assert tuple(z["rhythm_names"]) == rhythm.CAUSAL_FEATURE_NAMES
    assert z["rhythm"].shape[1] == len(rhythm.CAUSAL_FEATURE_NAMES) == N_F - 5
    assert not any("post" in n for n in z["rhythm_names"])


def test_windows_output_hash_changes_with_the_rhythm_settings():
    from pipeline.core.config import WindowsConfig

    base = windowing.output_hash(WindowsConfig())
    assert windowing.output_hash(WindowsConfig(rhythm_causal=True)) != base
    assert windowing.output_hash(WindowsConfig(rhythm_running_beats=16)) != base
    assert windowing.output_hash(WindowsConfig(workers=7)) == base


def test_beats_out_of_time_order_are_refused_naming_the_record():
    from pipeline.core.config import WindowsConfig

    with pytest.raises(PipelineError, match=r"^record r9: beat annotations are not in strictly "
                                            r"increasing time order \(sample 300 follows 300\)"):
        windowing.record_rhythm(np.zeros(1000), np.array([100, 300, 300, 500]), 360.0,
                                WindowsConfig(), "r9")


# --------------------------------------------------------------------- TFRecord schema


def test_schema_round_trip_with_the_rhythm_aux_layout(tmp_path):
    import tensorflow as tf

    cfg = load_config(None)
    names = schema.aux_names("segments", cfg)
    assert names == (*schema.RR_AUX, *rhythm.FEATURE_NAMES) and schema.SCHEMA_VERSION == 3
    assert schema.aux_names("beats", cfg) == names
    assert schema.aux_names("ptbxl", cfg) == ("patient_id",) and schema.aux_names("denoise", cfg) == ()
    rng = np.random.default_rng(0)
    aux = rng.normal(size=(7, len(names))).astype(np.float32)
    b = schema.Batch("segments", "r1", rng.normal(size=(7, 720)).astype(np.float32),
                     np.arange(7) % 5, np.arange(7), aux)
    path = tmp_path / shard_name("r1")
    with tf.io.TFRecordWriter(str(path)) as wr:
        wr.write(schema.encode(b))
    got = loader.read_file_metadata(path)
    assert got.aux.shape == (7, 3 + N_F) and np.array_equal(got.aux, aux)
    assert np.array_equal(got.x, b.x) and np.array_equal(got.index, b.index)
    # The *_rr tasks read the first three columns whatever follows them.
    np.testing.assert_allclose(schema.rr_features(got.aux), schema.rr_features(aux[:, :3].ravel()))


def test_stage_files_carry_rr_then_rhythm_and_the_manifest_names_them(root):
    cfg = _cfg(root)
    w = windowing.load_record(cfg, "s01")
    m = json.loads((tfrecord_dir(cfg, "segments") / "manifest.json").read_text())
    assert m["aux_names"] == list(schema.aux_names("segments", cfg))
    meta = loader.read_file_metadata(_files(root, "segments", ("s01",))[0])
    n = meta.n
    np.testing.assert_array_equal(meta.aux[:, 3:], w["rhythm"][:n])
    mb = json.loads((tfrecord_dir(cfg, "beats") / "manifest.json").read_text())
    assert mb["aux_names"] == m["aux_names"]


def test_windows_file_without_rhythm_features_is_refused(tmp_path, root):
    import shutil

    data = tmp_path / "d"
    shutil.copytree(root / "windows", data / "windows")
    p = data / "windows" / "mitdb" / "s00.npz"
    z = {k: v for k, v in load_npz(p).items() if k not in ("rhythm", "beat_rhythm", "rhythm_names")}
    atomic_savez(p, **z)
    rc, err = _cli(tfrecords_cmd, [*TR._argv(data), "--kinds", "segments"])
    assert rc == 2
    assert ("error: record s00: windows file has no rhythm features (rhythm); rerun "
            "`python -m pipeline.windows --force`") in err
    assert not list((data / "tfrecords" / "segments").glob("s00*.tfrecord"))  # nothing half-written


def test_windows_file_of_the_other_rhythm_variant_is_refused(tmp_path, root):
    import shutil

    data = tmp_path / "d"
    shutil.copytree(root / "windows", data / "windows")
    rc, err = _cli(tfrecords_cmd, [*TR._argv(data), "--kinds", "segments",
                                   "--set", "windows.rhythm_causal=true"])
    assert rc == 2 and "error: record s00: windows file holds rhythm features" in err
    assert "the config wants" in err


def _cli(module, argv):
    import contextlib
    import io

    from pipeline.core.io_utils import run_cli

    buf = io.StringIO()
    with contextlib.redirect_stderr(buf):
        rc = run_cli(module.main, argv)
    return rc, buf.getvalue()


def test_tfrecords_of_another_aux_layout_are_refused_by_the_loader(root):
    cfg = _cfg(root, causal=True)
    with pytest.raises(PipelineError, match=r"s00-00000-of-00001\.tfrecord: aux holds 20 values "
                                            r"per example, the config expects 15 "
                                            r"\(3 RR values \+ 12 rhythm features, "
                                            r"windows\.rhythm_causal=True\); rerun"):
        loader.create_dataset(["s00"], cfg, 8, False, task="mitdb_aami5_segments_rhythm")


# ------------------------------------------------------------------------------- loader


def _stats(root, kind, train=("s00", "s01")):
    cfg = _cfg(root)
    return normalization.fit(_files(root, kind, train), cfg, kind, rhythm=True)


def test_loader_yields_ecg_and_rr_for_segments(root):
    cfg = _cfg(root)
    stats = _stats(root, "segments")
    ds = loader.create_dataset(["s02"], cfg, 16, False, stats["mean"], stats["scale"],
                               task="mitdb_aami5_segments_rhythm")
    xs, ys = zip(*[(x, y) for x, y in ds], strict=True)
    assert set(xs[0]) == {"ecg", "rr"}
    assert xs[0]["ecg"].shape[1:] == (720, 1) and xs[0]["rr"].shape[1:] == (N_F,)
    assert ys[0].shape[1:] == (5,)
    rr = np.concatenate([x["rr"].numpy() for x in xs])
    aux = loader.read_file_metadata(_files(root, "segments", ("s02",))[0]).aux
    mean, scale = np.asarray(stats["mean"]), np.asarray(stats["scale"])
    np.testing.assert_allclose(rr[: len(aux)], (aux[:, 3:] - mean[1:]) / scale[1:],
                               rtol=1e-5, atol=1e-5)
    ecg = np.concatenate([x["ecg"].numpy() for x in xs])[: len(aux), :, 0]
    meta = loader.read_file_metadata(_files(root, "segments", ("s02",))[0])
    np.testing.assert_allclose(ecg, (meta.x - mean[0]) / scale[0], rtol=1e-5, atol=1e-5)


def test_relative_rhythm_input_keeps_only_the_ratio_columns(root):
    cfg = load_config(None, {"data": {"data_dir": str(root)}, "windows": {"workers": 1},
                             "scalograms": {"n_scales": 8},
                             "train": {"rhythm_features": "relative"}}, apply_env=False)
    assert schema.rhythm_names(cfg) == rhythm.RELATIVE_FEATURE_NAMES
    assert len(rhythm.RELATIVE_FEATURE_NAMES) == 11
    assert not any(n.endswith("_s") for n in rhythm.RELATIVE_FEATURE_NAMES)
    assert "amplitude_ratio" in rhythm.RELATIVE_FEATURE_NAMES
    cols = [rhythm.FEATURE_NAMES.index(n) for n in rhythm.RELATIVE_FEATURE_NAMES]
    files = _files(root, "segments", ("s00", "s01"))
    stats = normalization.fit(files, cfg, "segments", rhythm=True)
    assert stats["rr_features"] == list(rhythm.RELATIVE_FEATURE_NAMES)
    aux = np.concatenate([b.aux for f in files for b in _decoded(f)])[:, 3:][:, cols]
    np.testing.assert_allclose(stats["mean"][1:], aux.mean(0), rtol=1e-6, atol=1e-9)
    ds = loader.create_dataset(["s02"], cfg, 16, False, stats["mean"], stats["scale"],
                               task="mitdb_aami5_segments_rhythm")
    rr = np.concatenate([x["rr"].numpy() for x, _ in ds])
    want = loader.read_file_metadata(_files(root, "segments", ("s02",))[0]).aux[:, 3:][:, cols]
    mean, scale = np.asarray(stats["mean"]), np.asarray(stats["scale"])
    np.testing.assert_allclose(rr[: len(want)], (want - mean[1:]) / scale[1:], rtol=1e-5,
                               atol=1e-5)


@pytest.mark.parametrize("key, value, message", [
    ("augment_gain", -0.1, "must be >= 0 and < 1 (0: off), got -0.1"),
    ("augment_gain", 1.0, "must be >= 0 and < 1 (0: off), got 1.0"),
    ("augment_noise_mv", -0.01, "must be >= 0 (0: off), got -0.01"),
])
def test_bad_augmentation_settings_are_refused_naming_the_key(key, value, message):
    from pipeline.core.config import ConfigError

    with pytest.raises(ConfigError, match=rf"train\.{key}: {re.escape(message)}"):
        load_config(None, {"train": {key: value}}, apply_env=False)


def test_an_unknown_rhythm_feature_set_is_refused_naming_the_key():
    from pipeline.core.config import ConfigError

    with pytest.raises(ConfigError, match=r"train\.rhythm_features: must be one of all, "
                                          r"relative, relative\+template, "
                                          r"relative\+template\+context, got 'ratios'"):
        load_config(None, {"train": {"rhythm_features": "ratios"}}, apply_env=False)


def test_loader_yields_the_middle_beats_rhythm_for_sequences(root):
    cfg = _cfg(root)
    stats = _stats(root, "beats")
    ds = loader.create_dataset(["s02"], cfg, 8, False, stats["mean"], stats["scale"],
                               task="mitdb_aami5_sequences_rhythm", with_index=True)
    rrs, idx = [], []
    for x, _y, _, i in ds:
        assert x["ecg"].shape[1:] == (3, 8, 187, 1) and x["rr"].shape[1:] == (N_F,)
        rrs.append(x["rr"].numpy())
        idx.append(i.numpy())
    rr, idx = np.concatenate(rrs), np.concatenate(idx)
    w = windowing.load_record(cfg, "s02")
    row = {int(b): k for k, b in enumerate(w["beat_index"])}
    want = w["beat_rhythm"][[row[int(i)] for i in idx]]
    mean, scale = np.asarray(stats["mean"]), np.asarray(stats["scale"])
    np.testing.assert_allclose(rr, (want - mean[8:]) / scale[8:], rtol=1e-5, atol=1e-5)


def test_rr_normalization_uses_training_files_only(root):
    cfg = _cfg(root)
    train = ("s00", "s01")
    stats = _stats(root, "segments", train)
    assert stats["rr_features"] == list(rhythm.FEATURE_NAMES)
    aux = np.concatenate([b.aux for f in _files(root, "segments", train) for b in _decoded(f)])
    np.testing.assert_allclose(stats["mean"][1:], aux[:, 3:].mean(0), rtol=1e-6, atol=1e-9)
    std = aux[:, 3:].std(0)
    np.testing.assert_allclose(stats["scale"][1:], np.where(std < 1e-6, 1.0, std), rtol=1e-6)
    assert stats["rr_count"] == len(aux)
    everything = _stats(root, "segments", ("s00", "s01", "s02", "s03"))
    assert not np.allclose(everything["mean"][1:], stats["mean"][1:])
    # the saved file knows its own length: signal channels + one entry per feature
    path = Path(cfg.data_dir) / "norm_test.json"
    normalization.save(stats, path)
    mean, scale = normalization.load(path, "segments", 1)
    assert mean.shape == scale.shape == (1 + N_F,)
    path.unlink()


def _decoded(path: str) -> list[schema.Batch]:
    import tensorflow as tf

    return [schema.decode(s.numpy()) for s in tf.data.TFRecordDataset(path)]


def test_rhythm_statistics_of_the_wrong_length_are_refused(root):
    cfg = _cfg(root)
    with pytest.raises(PipelineError, match=r"^task mitdb_aami5_segments_rhythm: normalization "
                                            r"statistics have 1 entries, the task needs 18 "
                                            r"\(1 signal channels \+ 17 rhythm features\)"):
        loader.create_dataset(["s00"], cfg, 8, False, [0.0], [1.0],
                              task="mitdb_aami5_segments_rhythm")


def test_rhythm_tasks_are_registered():
    for name, kind in (("mitdb_aami5_segments_rhythm", "segments"),
                       ("mitdb_aami4_segments_rhythm", "segments"),
                       ("mitdb_aami5_sequences_rhythm", "beats")):
        t = get_task(name)
        assert t.rhythm and not t.rr_channels and t.kind == kind
    assert get_task("mitdb_aami4_segments_rhythm").n_outputs == 4


# ------------------------------------------------------------------ trainer and predict


@pytest.mark.parametrize("which", sorted(RHYTHM_RUNS))
def test_trainer_builds_the_model_with_ecg_and_rr_inputs(tmp_path_factory, which):
    from pipeline.training.checkpoints import load_best_model

    run = rhythm_run(tmp_path_factory, which)
    names = RUN_FEATURES[RHYTHM_RUNS[which][3]]
    summary = json.loads((run / "summary.json").read_text())
    assert summary["epochs_done"] == 1 and np.isfinite(summary["best_val_loss"])
    model = load_best_model(run)
    shapes = {t.name.split(":")[0]: tuple(t.shape[1:]) for t in model.inputs}
    assert shapes["rr"] == (len(names),) and len(shapes) == 2
    stats = json.loads((run / "normalization.json").read_text())
    assert stats["rr_features"] == list(names)
    split = json.loads((run / "splits.json").read_text())
    assert stats["train_files"] == [shard_name(r) for r in split["train"]]


@pytest.mark.parametrize("which", sorted(RHYTHM_RUNS))
def test_predict_gives_the_evaluation_pipelines_probabilities(tmp_path_factory, root, which):
    from pipeline.serving.run_loader import load_run

    TR.assert_predict_matches_evaluation(load_run(rhythm_run(tmp_path_factory, which)), root)


def test_causal_config_builds_the_model_with_the_causal_feature_count(tmp_path):
    from pipeline.training.trainer import build_model

    cfg = _cfg(tmp_path, causal=True)
    model = build_model(get_task("mitdb_aami4_segments_rhythm"), cfg, "ldcnn",
                        {"filters": 8, "dilations": [1, 2]})
    shapes = {t.name.split(":")[0]: tuple(t.shape[1:]) for t in model.inputs}
    assert shapes == {"ecg": (720, 1), "rr": (len(rhythm.CAUSAL_FEATURE_NAMES),)}
    assert tuple(model.outputs[0].shape[1:]) == (4,)


def test_export_refuses_a_two_input_rhythm_run(tmp_path_factory):
    from pipeline.serving.export import export_run

    run = rhythm_run(tmp_path_factory, "segments_rhythm")
    with pytest.raises(PipelineError, match=r"task mitdb_aami5_segments_rhythm takes two inputs "
                                            r"\(ecg, rr\); export handles single-input models only"):
        export_run(run, "savedmodel")
    assert not (run / "export").exists()


# ------------------------------------------------------------------------- augmentation


def test_augmentation_scales_each_segment_by_one_gain_and_leaves_rr_channels():
    import tensorflow as tf

    from pipeline.data import augment

    x = np.random.default_rng(0).normal(size=(64, 720)).astype(np.float32) + 2.0
    out = augment.augment_segments(tf.constant(x), 0.2, 0.0, rr_channels=False).numpy()
    ratio = out / x
    assert np.allclose(ratio, ratio[:, :1], rtol=1e-5)  # one gain per segment
    assert ratio.min() >= 0.8 - 1e-6 and ratio.max() <= 1.2 + 1e-6 and ratio.std() > 0.05
    four = np.stack([x, x + 1, x + 2, x + 3], axis=-1)
    out4 = augment.augment_segments(tf.constant(four), 0.2, 0.05, rr_channels=True).numpy()
    np.testing.assert_array_equal(out4[..., 1:], four[..., 1:])
    noise = augment.augment_segments(tf.constant(np.zeros((64, 720), np.float32)), 0.0, 0.05,
                                     rr_channels=False).numpy()
    assert abs(noise.std() - 0.05) < 0.002
    assert augment.augment_segments(x, 0.0, 0.0, rr_channels=False) is x


def test_augmentation_touches_training_batches_only(root):
    base = {"data": {"data_dir": str(root)}, "windows": {"workers": 1},
            "scalograms": {"n_scales": 8}, "loader": {"shuffle_buffer": 1}}
    on = load_config(None, {**base, "train": {"augment_gain": 0.3}}, apply_env=False)
    off = load_config(None, base, apply_env=False)
    n = len(_stats(root, "segments")["mean"])

    def batches(cfg, training, take=None):  # raw mV (mean 0, scale 1), signal channel
        ds = loader.create_dataset(["s02"], cfg, 16, training, [0.0] * n, [1.0] * n,
                                   task="mitdb_aami5_segments_rhythm")
        ds = ds.take(take) if take else ds
        return np.concatenate([x["ecg"].numpy()[..., 0] for x, _ in ds])

    every = batches(off, False)
    np.testing.assert_array_equal(batches(on, False), every)  # evaluation: untouched
    unit = every / np.linalg.norm(every, axis=1, keepdims=True)

    def gains(rows):  # each training row is one stored segment times one gain (any order)
        norms = np.linalg.norm(rows, axis=1)
        match = np.argmax((rows / norms[:, None]) @ unit.T, axis=1)
        np.testing.assert_allclose(rows / norms[:, None], unit[match], atol=1e-5)
        return norms / np.linalg.norm(every[match], axis=1)

    np.testing.assert_allclose(gains(batches(off, True, 4)), 1.0, rtol=1e-5)
    g = gains(batches(on, True, 4))
    assert g.min() >= 0.7 - 1e-5 and g.max() <= 1.3 + 1e-5 and np.abs(g - 1).max() > 0.01
