"""The classic trees' columns stored by the windows stage for the deep models
(``windows.beat_table``): the same numbers as the trees' table, the ``rr`` input of
``train.rhythm_features: relative+template+context``, and predict on a raw record giving the
evaluation pipeline's probabilities; nothing changes while the option is off."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("wfdb")
pytest.importorskip("tensorflow")

import _trained_runs as TR  # noqa: E402

from data_tools import synthetic as syn  # noqa: E402
from pipeline import tfrecords as tfrecords_cmd  # noqa: E402
from pipeline import train as train_cmd  # noqa: E402
from pipeline import windows as windows_cmd  # noqa: E402
from pipeline.core.config import WindowsConfig, load_config  # noqa: E402
from pipeline.core.io_utils import load_npz  # noqa: E402
from pipeline.data import beat_table, rhythm, schema, windowing  # noqa: E402

TABLE_SET = "train.rhythm_features=relative+template+context"


def test_the_option_off_leaves_every_hash_and_name_as_before():
    off, on = WindowsConfig(), WindowsConfig(beat_table=True)
    assert "beat_table" not in windowing.settings(off) and windowing.settings(on)["beat_table"]
    assert windowing.output_hash(on) != windowing.output_hash(off)
    assert beat_table.stored_names(False, False) == rhythm.FEATURE_NAMES
    assert len(beat_table.stored_names(False, True)) == len(rhythm.FEATURE_NAMES) + 18
    causal = beat_table.stored_names(True, True)
    assert causal == (rhythm.CAUSAL_FEATURE_NAMES + beat_table.extra_names(causal=True))
    assert "post_over_record_median" not in causal and "post_rr_s" not in causal


def test_the_table_input_without_stored_columns_is_refused_naming_both_keys():
    cfg = load_config(None, {"train": {"rhythm_features": "relative+template+context"}},
                      apply_env=False)
    with pytest.raises(schema.SchemaError, match=r"^train.rhythm_features=relative\+template\+"
                                                 r"context needs windows.beat_table: true"):
        schema.rhythm_names(cfg)


def test_the_template_input_is_the_table_input_without_the_context_columns():
    from pipeline.data import morphology

    def names(option, beat_table_on=True):
        cfg = load_config(None, {"train": {"rhythm_features": option},
                                 "windows": {"beat_table": beat_table_on}}, apply_env=False)
        return schema.rhythm_names(cfg), schema.rhythm_columns(cfg)

    template, cols = names("relative+template")
    full, _ = names("relative+template+context")
    assert template == (rhythm.RELATIVE_FEATURE_NAMES + morphology.FEATURE_NAMES
                        + morphology.TEMPLATE_FEATURE_NAMES)
    assert full == template + rhythm.CONTEXT_FEATURE_NAMES and len(template) == 25
    stored = beat_table.stored_names(False, True)
    assert [stored[i] for i in cols] == list(template)
    with pytest.raises(schema.SchemaError, match=r"^train.rhythm_features=relative\+template "
                                                 r"needs windows.beat_table: true"):
        names("relative+template", beat_table_on=False)


def test_every_beat_fills_beats_without_a_segment_with_the_kept_medians():
    rows = np.tile(np.arange(len(rhythm.FEATURE_NAMES), dtype=np.float32), (5, 1))
    rows[:, rhythm.FEATURE_NAMES.index("pre_rr_s")] = [0.8, 0.8, 0.5, 1.1, 0.8]
    segs = np.random.default_rng(0).normal(size=(3, 720)).astype(np.float32)
    keep = np.array([1, 2, 3])
    out = beat_table.every_beat(rows, rhythm.FEATURE_NAMES, keep, segs, 360.0)
    n = len(rhythm.FEATURE_NAMES)
    kept = beat_table.extra_columns(rows[keep], rhythm.FEATURE_NAMES, segs, 360.0)
    np.testing.assert_array_equal(out[:, :n], rows)
    np.testing.assert_array_equal(out[keep, n:], kept)
    np.testing.assert_array_equal(out[0, n:], np.median(kept, axis=0))
    none = beat_table.every_beat(rows, rhythm.FEATURE_NAMES, np.array([], int), segs[:0], 360.0)
    np.testing.assert_array_equal(none[:, n:], 0.0)


def test_a_beat_table_run_streams_the_trees_columns_and_predicts_as_evaluated(tmp_path_factory):
    from pipeline.serving.run_loader import load_run
    from pipeline.training.checkpoints import load_best_model

    root = tmp_path_factory.mktemp("beat_table")
    syn.write_synthetic_database(root / "raw" / "mitdb", n_records=4, seed=0, duration_s=40.0)
    argv = [*TR._argv(root), "--set", "windows.beat_table=true"]
    assert windows_cmd.main([*argv, "--databases", "mitdb"]) == 0
    assert tfrecords_cmd.main([*argv, "--kinds", "segments"]) == 0
    z = load_npz(root / "windows" / "mitdb" / "s01.npz")
    assert tuple(z["rhythm_names"]) == beat_table.stored_names(False, True)
    # the stored columns are the classic trees' table of the same record, to the bit
    table, names = beat_table.beat_features(z["rhythm"], z["rhythm_names"], z["segments"], 360.0)
    assert names == tuple(z["rhythm_names"])
    np.testing.assert_array_equal(z["rhythm"], table)
    run_dir = root.parent / "run_beat_table"
    assert train_cmd.main([*argv, "--task", "mitdb_aami5_segments_rhythm", "--model", "ldcnn",
                           "--model-kwargs", json.dumps({"filters": 8, "dilations": [1, 2]}),
                           "--run-dir", str(run_dir), "--set", TABLE_SET]) == 0
    model = load_best_model(run_dir)
    want = rhythm.RELATIVE_FEATURE_NAMES + beat_table.extra_names()
    shapes = {t.name.split(":")[0]: tuple(t.shape[1:]) for t in model.inputs}
    assert shapes["rr"] == (len(want),) == (29,)
    stats = json.loads((run_dir / "normalization.json").read_text())
    assert stats["rr_features"] == list(want)
    TR.assert_predict_matches_evaluation(load_run(run_dir), root)


def test_causal_windows_store_the_causal_table(tmp_path):
    syn.write_synthetic_database(tmp_path / "raw" / "mitdb", n_records=1, seed=3, duration_s=20.0)
    argv = ["--data-dir", str(tmp_path), "--databases", "mitdb", "--set", "windows.workers=1",
            "--set", "windows.rhythm_causal=true", "--set", "windows.beat_table=true"]
    assert windows_cmd.main(argv) == 0
    z = load_npz(tmp_path / "windows" / "mitdb" / "s00.npz")
    assert tuple(z["rhythm_names"]) == beat_table.stored_names(True, True)
    assert z["rhythm"].shape[1] == z["beat_rhythm"].shape[1] == len(z["rhythm_names"])
    table, _ = beat_table.beat_features(z["rhythm"], z["rhythm_names"], z["segments"], 360.0)
    np.testing.assert_array_equal(z["rhythm"], table)
