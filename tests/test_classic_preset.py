"""The classic trees stored without pickle (skops) and shipped as a preset: round trip,
refusals, and ``predict`` on a raw record giving the evaluated table's probabilities."""

from __future__ import annotations

import json

import _trained_runs as trained  # noqa: E402
import numpy as np
import pytest

from pipeline.core.io_utils import PipelineError, run_cli
from pipeline.training import classic, classic_store
from pipeline.training.classic_decision import Decision

NAMES = ("pre_over_local", "amplitude_ratio", "qrs_width_s")


def _stored(seed: int = 0) -> classic_store.StoredTrees:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(300, 3)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int64) + (x[:, 1] > 1).astype(np.int64)
    table = classic.BeatTable(x, y, np.repeat(["a", "b", "c"], 100), np.arange(300), NAMES)
    settings = ({"model": "hgb", "features": "all", "learning_rate": 0.1, "max_leaf_nodes": 7,
                 "n_trees": 10, "class_weight_power": 1.0},
                {"model": "random_forest", "features": "all", "learning_rate": None,
                 "max_leaf_nodes": None, "n_trees": 5, "class_weight_power": 0.0})
    return classic_store.refit(table, Decision("hgb+forest+weights", settings, (1.0, 2.0, 0.5)),
                               ("N", "S", "V"), seed=0)


def test_stored_trees_round_trip_exactly(tmp_path):
    stored = _stored()
    meta = classic_store.save(tmp_path, stored)
    assert meta["n_nodes"] == stored.n_nodes > 0
    back = classic_store.load(tmp_path)
    x = np.random.default_rng(1).normal(size=(50, 3)).astype(np.float32)
    np.testing.assert_array_equal(back.probabilities(x), stored.probabilities(x))
    assert back.decision == stored.decision and back.classes == ("N", "S", "V")
    assert not any(p.suffix == ".tmp" for p in tmp_path.iterdir())  # written atomically


def test_changed_trees_file_or_foreign_types_are_refused_naming_them(tmp_path, monkeypatch):
    classic_store.save(tmp_path, _stored())
    monkeypatch.setattr(classic_store, "TRUSTED_TYPES", classic_store.TRUSTED_TYPES[:1])
    with pytest.raises(PipelineError, match=r"trees.skops: refusing to load types outside the "
                                            r"classic trees' allowlist: \['sklearn.tree._tree.Tree'\]"):
        classic_store.load(tmp_path)
    path = tmp_path / classic_store.TREES_FILE
    path.write_bytes(path.read_bytes()[:-10] + b"0123456789")
    with pytest.raises(PipelineError, match="trees.skops: sha256 differs from classic.json"):
        classic_store.load(tmp_path)
    path.unlink()
    with pytest.raises(PipelineError, match=r"trees.skops: trees file not found"):
        classic_store.load(tmp_path)


def test_beat_features_refuse_rows_that_do_not_match_the_segments():
    from pipeline.data import beat_table

    segs = np.zeros((3, 720), np.float32)
    with pytest.raises(PipelineError, match=r"^2 rhythm rows for 3 segments$"):
        beat_table.beat_features(np.zeros((2, 1)), ("pre_over_local",), segs, 360.0)


def test_a_shipped_classic_preset_with_a_changed_or_missing_file_is_refused(tmp_path):
    import shutil

    from pipeline.serving import presets

    shutil.copytree(presets.preset_path("aami5_classic_trees"), tmp_path / "t")
    trees = tmp_path / "t" / classic_store.TREES_FILE
    trees.write_bytes(trees.read_bytes() + b"x")
    with pytest.raises(PipelineError, match=r"trees.skops: sha256 [0-9a-f]{16}\.\.\. differs "
                                            r"from the card's"):
        presets.load_preset("t", tmp_path)
    (tmp_path / "t" / "config.yaml").unlink()
    with pytest.raises(PipelineError, match=r"/t: preset file config.yaml not found"):
        presets.load_preset("t", tmp_path)


def test_trees_fitted_before_columns_were_appended_still_predict_and_others_are_refused(
        tmp_path):
    import dataclasses

    from data_tools import synthetic
    from pipeline.data import rhythm
    from pipeline.serving import presets

    preset = presets.load_preset("aami5_classic_trees")  # fitted before the context columns
    fitted = preset.model.feature_names
    assert fitted[-1] == "qrs_energy_over_record_median"
    synthetic.write_record(tmp_path, "r0", seed=2, duration_s=30.0)
    res = preset.predict_record(tmp_path / "r0")
    assert res.beats.classified.sum() > 10
    table = (*fitted, *rhythm.CONTEXT_FEATURE_NAMES)
    classic.check_table_prefix(fitted, table, "trees")  # appended columns are not read
    with pytest.raises(PipelineError, match=r"^trees differ from the beat table's columns now "
                                            r"at column 1 \(35 fitted, 35 in the table\)$"):
        classic.check_table_prefix((table[0], "renamed", *table[2:]), table, "trees")
    renamed = dataclasses.replace(preset.model, feature_names=("renamed", *fitted[1:]))
    other = dataclasses.replace(preset, run=dataclasses.replace(preset.run, model=renamed))
    with pytest.raises(PipelineError, match=r"the trees' stored features differ from the beat "
                                            r"table's columns now at column 0"):
        other.predict_record(tmp_path / "r0")


def test_classic_run_becomes_a_preset_that_predicts_the_evaluated_tables_probabilities(
        tmp_path_factory, tmp_path, monkeypatch, capsys):
    from pipeline import export, final_eval
    from pipeline.core.config import load_config
    from pipeline.data import windowing
    from pipeline.serving import presets

    pick = [g for g in classic.GRID if g["features"] == "relative+template"]
    monkeypatch.setattr(classic, "GRID", tuple({**g, "n_trees": 10} if g["model"] == "hgb"
                                               else g for g in pick))
    root = trained.data_root(tmp_path_factory)
    out = tmp_path / "classic_run"
    argv = [*trained._argv(root), "--task", "mitdb_aami5_segments_rhythm", "--classic",
            "--out", str(out), "--set", "eval.classic_selection=kfold",
            "--set", "eval.classic_decision=tuned", "--bootstrap", "10"]
    assert run_cli(final_eval.main, argv) == 0
    # outside annotated records at 128 Hz: the same decision, refitted, scored through the
    # windows stage at the run's rates (the best classifier's external evaluation)
    from data_tools import recompute, synthetic

    ext = tmp_path / "ext128"
    ext.mkdir()
    for i, seed in enumerate((11, 12)):
        synthetic.write_record(ext, f"x{i}", seed=seed, duration_s=30.0, fs_hz=128)
    assert run_cli(final_eval.main, ["--run", str(out), "--external", str(ext),
                                     "--bootstrap", "10"]) == 0
    m = json.loads((out / "external_ext128" / "metrics_test.json").read_text())
    assert m["external"] == "ext128" and m["external_records"] == ["x0", "x1"]
    assert m["n_test_examples"] > 20 and "refitted on its training records" in m["mode"]
    ledger = [json.loads(line) for line in (tmp_path / "test_reads.jsonl").read_text().splitlines()]
    assert [r["external"] for r in ledger] == [None, "ext128"]
    assert run_cli(recompute.main, [str(out / "external_ext128")]) == 0
    short = tmp_path / "short"
    short.mkdir()
    synthetic.write_record(short, "s0", seed=3, duration_s=1.5, fs_hz=128)  # shorter than a segment
    capsys.readouterr()
    assert run_cli(final_eval.main, ["--run", str(out), "--external", str(short)]) == 2
    assert "short: no segments could be cut from its records" in capsys.readouterr().err
    assert run_cli(final_eval.main, ["--run", str(out)]) == 2  # no second test read
    assert "--run on it scores outside records: add --external DIR" in capsys.readouterr().err
    # refusals of the preset maker: too large (nothing left), features changed since the run
    with pytest.raises(PipelineError, match=r"trees.skops would be [0-9.]+ MiB, above the "
                                            r"0.000954 MiB preset limit"):
        presets.save_preset(out, "too_big", "x", root=tmp_path / "zoo", max_bytes=1000)
    assert not (tmp_path / "zoo" / "too_big").exists()
    assert not [p for p in (tmp_path / "zoo").iterdir() if p.name.startswith(".too_big")]
    sel = json.loads((out / "selection.json").read_text())
    # columns appended to the table since the run are allowed (older trees do not read them)
    (out / "selection.json").write_text(json.dumps({**sel, "features": sel["features"][:-1]}))
    classic_store.refit_run(out)
    renamed = ["renamed", *sel["features"][1:]]
    (out / "selection.json").write_text(json.dumps({**sel, "features": renamed}))
    with pytest.raises(PipelineError, match=r"selection.json: the run's features differ from "
                                            r"the beat table's columns now at column 0 "
                                            r"\(35 fitted, 35 in the table\) \(rerun final_eval"):
        classic_store.refit_run(out)
    (out / "selection.json").write_text(json.dumps(sel))
    monkeypatch.setenv(presets.PRESETS_ENV, str(tmp_path / "zoo"))
    assert run_cli(export.main, ["--run", str(out), "--format", "preset", "--name",
                                 "trees_test", "--description", "classic trees, test"]) == 0
    preset = presets.load_preset("trees_test")
    card = preset.card
    assert card["format"] == "classic_trees" and card["metrics"]["evaluated"]
    assert card["data"][0]["licence"].startswith("Open Data Commons Attribution")
    assert card["budget"]["model_kwargs"] == json.loads((out / "selection.json").read_text())["decision"]
    # predict on the raw record = the windows-stage table through the same trees
    cfg = load_config(out / "config.yaml", apply_env=False)
    x, _, index, _ = classic.record_features(windowing.windows_dir(cfg, "mitdb") / "s01.npz",
                                             cfg.windows.segment_fs_hz)
    res = preset.predict_record(root / "raw" / "mitdb" / "s01")
    beats = res.beats
    assert beats.source == "atr" and len(index) > 10
    np.testing.assert_array_equal(np.flatnonzero(beats.classified), index)
    np.testing.assert_allclose(beats.probs[index], preset.model.probabilities(x), atol=1e-6)
    assert any(line.startswith("trees_test") for line in presets.listing())
    capsys.readouterr()
    assert run_cli(export.main, ["--preset", "trees_test", "--format", "tflite"]) == 2
    assert "preset trees_test holds classic trees (trees.skops, scikit-learn), not a Keras " \
        "model" in capsys.readouterr().err
    # denoise, then classify with the trees (their template features read the waveform)
    noisy = tmp_path / "runs" / "noisy_trees"
    den = trained.trained_run(tmp_path_factory, "denoise")
    assert run_cli(final_eval.main, ["--run", str(tmp_path / "zoo" / "trees_test"), "--noisy",
                                     "em", "--snr-db", "6", "--denoiser", str(den), "--out",
                                     str(noisy), "--bootstrap", "10", *trained._argv(root)]) == 0
    m = json.loads((noisy / "metrics_test.json").read_text())
    assert [(c["condition"], c["denoised"]) for c in m["conditions"]] == [
        ("clean", False), ("clean", True), ("em_6dB", False), ("em_6dB", True)]
    clean = m["conditions"][0]
    assert clean["beats"] == sum(int(preset.predict_record(root / "raw" / "mitdb" / r)
                                     .beats.classified.sum()) for r in m["records"]) > 0
    assert run_cli(recompute.main, [str(noisy)]) == 0
