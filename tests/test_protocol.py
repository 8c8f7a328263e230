"""The honest protocol: runs evaluated with their own settings, every test read in the ledger,
k-fold that never peeks, per-example predictions that recompute every number, external
evaluation at other sampling rates and leads, and no evaluation overwritten silently.

Tiny real runs from :mod:`tests._trained_runs` (synthetic records through the real stages).
"""

from __future__ import annotations

import csv
import json
import shutil
import threading
from pathlib import Path

import _trained_runs as trained  # noqa: E402
import pytest


def _copy(tmp_path_factory, tmp_path: Path, which: str) -> Path:
    src = trained.trained_run(tmp_path_factory, which)
    dst = tmp_path / src.name
    shutil.copytree(src, dst)
    return dst


def _final(argv: list[str], capsys=None) -> tuple[int, str]:
    from pipeline import final_eval as final_eval_cmd
    from pipeline.core.io_utils import run_cli

    rc = run_cli(final_eval_cmd.main, [*argv, "--bootstrap", "20"])
    err = capsys.readouterr().err if capsys is not None else ""
    return rc, err


def _ledger(run: Path) -> list[dict]:
    path = run.resolve().parent / "test_reads.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.is_file() else []


def _recompute(folder: Path) -> int:
    from data_tools import recompute
    from pipeline.core.io_utils import run_cli

    return run_cli(recompute.main, [str(folder)])


@pytest.fixture
def segments_run(tmp_path_factory, tmp_path):
    return _copy(tmp_path_factory, tmp_path, "segments")


# ------------------------------------------------------------ a run's own settings (14.1)


def test_leaky_run_evaluated_with_only_run_is_labelled_leaky_and_uses_its_own_split(
        tmp_path_factory, tmp_path):
    from pipeline import train as train_cmd
    from pipeline.data.splits import intra_assignment

    root = trained.data_root(tmp_path_factory)
    run = tmp_path / "leaky"
    task, model, kwargs = trained.RUNS["segments"]
    assert train_cmd.main([*trained._argv(root), "--set", "splits.scheme=intra_patient",
                           "--task", task, "--model", model, "--model-kwargs",
                           json.dumps(kwargs), "--run-dir", str(run)]) == 0
    rc, _ = _final(["--run", str(run)])
    assert rc == 0
    m = json.loads((run / "metrics_test.json").read_text())
    split = json.loads((run / "splits.json").read_text())
    assert m["leaky_split"] is True
    assert m["test_records"] == split["test"]  # every record: beats split at random
    manifest = json.loads((root / "tfrecords" / "segments" / "manifest.json").read_text())
    n_test = sum(int((intra_assignment(int(e["examples"]), e["record"], split["intra"]) == 2).sum())
                 for e in manifest["files"] if e["record"] in split["test"])
    assert m["n_test_examples"] == n_test
    assert "LEAKY" in (run / "report.md").read_text()
    assert _ledger(run)[-1]["leaky_split"] is True


def test_conflicting_task_model_or_split_setting_is_refused(segments_run, capsys):
    run = segments_run
    rc, err = _final(["--run", str(run), "--task", "mitdb_aami4_segments"], capsys)
    assert rc == 2
    assert "--task mitdb_aami4_segments conflicts with the run's task mitdb_aami5_segments" in err
    rc, err = _final(["--run", str(run), "--model", "cnn"], capsys)
    assert rc == 2 and "--model cnn conflicts with the run's model ldcnn" in err
    rc, err = _final(["--run", str(run), "--set", "splits.scheme=intra_patient"], capsys)
    assert rc == 2
    assert ("splits.scheme='intra_patient' on the command line conflicts with the run's "
            "splits.scheme='inter_patient'") in err
    rc, err = _final(["--run", str(run), "--set", "windows.lead=V1"], capsys)
    assert rc == 2 and "windows.lead='V1' on the command line conflicts with the run's windows.lead='MLII'" in err
    assert not (run / "metrics_test.json").exists()
    assert _ledger(run) == []


def test_run_with_missing_or_damaged_split_file_is_refused(segments_run, capsys):
    (segments_run / "splits.json").write_text('{"scheme": "inter_patient"}')
    rc, err = _final(["--run", str(segments_run)], capsys)
    assert rc == 2 and "splits.json: malformed split file (missing or bad 'train')" in err
    (segments_run / "splits.json").unlink()
    rc, err = _final(["--run", str(segments_run)], capsys)
    assert rc == 2 and "not a training run (no splits.json)" in err


def test_retrain_only_flags_with_run_and_external_without_run_are_refused(segments_run, capsys):
    rc, err = _final(["--run", str(segments_run), "--hparams", "x.json"], capsys)
    assert rc == 2 and "--hparams, --kfold and --out belong to the retrain mode" in err
    rc, err = _final(["--task", "mitdb_aami5_segments", "--external", str(segments_run)], capsys)
    assert rc == 2 and "--external and --lead score a trained run: give --run RUN" in err


# ------------------------------------------- ledger, refusal, *.prev, predictions (14.2, 14.6)


def test_ledger_gains_exactly_one_line_per_final_evaluation(segments_run, capsys):
    run = segments_run
    assert _final(["--run", str(run)])[0] == 0
    assert len(_ledger(run)) == 1
    entry = _ledger(run)[0]
    assert entry["task"] == "mitdb_aami5_segments" and entry["model"] == "ldcnn"
    assert entry["recipe"] == run.name and entry["external"] is None
    assert "macro_f1" in entry["metrics"] and entry["git_commit"] is not None
    rc, _ = _final(["--run", str(run)], capsys)  # refused: no read, no line
    assert rc == 2 and len(_ledger(run)) == 1
    assert _final(["--run", str(run), "--force"])[0] == 0
    assert len(_ledger(run)) == 2


def test_evaluated_run_is_refused_unless_forced_and_force_keeps_the_previous_files(segments_run, capsys):
    run = segments_run
    assert _final(["--run", str(run)])[0] == 0
    before = {n: (run / n).read_text() for n in ("metrics_test.json", "report.md", "predictions_test.csv")}
    rc, err = _final(["--run", str(run)], capsys)
    assert rc == 2
    assert "already evaluated (metrics_test.json exists); --force evaluates again" in err
    assert {n: (run / n).read_text() for n in before} == before
    assert _final(["--run", str(run), "--force"])[0] == 0
    for name, text in before.items():
        assert (run / f"{name}.prev").read_text() == text


def test_predictions_file_has_the_promised_columns_and_native_annotation_samples(
        segments_run, tmp_path_factory):
    import wfdb

    from pipeline.data.windowing import beat_annotations

    run = segments_run
    assert _final(["--run", str(run)])[0] == 0
    m = json.loads((run / "metrics_test.json").read_text())
    with open(run / "predictions_test.csv", newline="") as fh:
        rows = list(csv.reader(fh))
    assert rows[0] == ["record", "sample", "true", "pred", *[f"p_{c}" for c in m["classes"]]]
    assert len(rows) - 1 == m["n_test_examples"]
    raw = trained.data_root(tmp_path_factory) / "raw" / "mitdb"
    for rec in m["test_records"]:
        samples, _ = beat_annotations(wfdb.rdann(str(raw / rec), "atr"), "aami5", rec)
        got = {int(r[1]) for r in rows[1:] if r[0] == rec}
        assert got and got <= set(samples.tolist())
    assert all(r[2] in m["classes"] and r[3] in m["classes"] for r in rows[1:])


def test_recompute_agrees_on_a_real_tiny_run_and_fails_on_a_tampered_predictions_file(segments_run, capsys):
    run = segments_run
    assert _final(["--run", str(run)])[0] == 0
    capsys.readouterr()
    assert _recompute(run) == 0
    assert "every headline number recomputes" in capsys.readouterr().out
    path = run / "predictions_test.csv"
    rows = list(csv.reader(path.open(newline="")))
    classes = json.loads((run / "metrics_test.json").read_text())["classes"]
    # one beat's true class changed so that its correctness flips: accuracy must move
    rows[1][2] = rows[1][3] if rows[1][2] != rows[1][3] else next(c for c in classes if c != rows[1][3])
    with open(path, "w", newline="") as fh:
        csv.writer(fh, lineterminator="\n").writerows(rows)
    assert _recompute(run) == 1
    out = capsys.readouterr().out
    assert "accuracy: metrics_test.json has" in out and "the predictions file gives" in out


def test_recompute_refuses_a_predictions_file_with_other_columns(segments_run, capsys):
    assert _final(["--run", str(segments_run)])[0] == 0
    path = segments_run / "predictions_test.csv"
    path.write_text(path.read_text().replace("record,sample,", "rec,sample,", 1))
    capsys.readouterr()
    assert _recompute(segments_run) == 2
    assert "predictions_test.csv: columns ['rec', 'sample'" in capsys.readouterr().err


# -------------------------------------------------------------- denoisers (14.6, 14.7)


def test_denoiser_windows_file_intervals_per_cell_and_recompute(tmp_path_factory, tmp_path, capsys):
    run = _copy(tmp_path_factory, tmp_path, "denoise")
    assert _final(["--run", str(run), "--max-test-windows", "40"])[0] == 0
    m = json.loads((run / "metrics_test.json").read_text())
    with open(run / "windows_test.csv", newline="") as fh:
        rows = list(csv.reader(fh))
    assert rows[0] == ["record", "start", "noise", "snr_in_db", "snr_out_db", "prd_pct"]
    method = m["predictions"]["method"]
    n_cells = sum(s["snr_imp_db"]["n"] for by in m["results"][method].values() for s in by.values())
    assert len(rows) - 1 == n_cells
    for method_cis in m["ci95_snr_imp_db"].values():  # the model and the classic filters
        for by_snr in method_cis.values():
            for ci in by_snr.values():
                assert ci["low"] <= ci["point"] <= ci["high"]
    assert "12 dB" in m["table_snr_improvement_db"] and " [" in m["table_snr_improvement_db"]
    assert "records resampled" in (run / "report.md").read_text()
    capsys.readouterr()
    assert _recompute(run) == 0
    rows[1][4] = repr(float(rows[1][4]) + 1.0)  # one window's output SNR changed
    with open(run / "windows_test.csv", "w", newline="") as fh:
        csv.writer(fh, lineterminator="\n").writerows(rows)
    assert _recompute(run) == 1
    assert "snr_imp_db.mean: metrics_test.json has" in capsys.readouterr().out


# ------------------------------------------------------------------ k-fold (14.4)


def test_kfold_never_reads_a_folds_heldout_records_before_its_final_scoring(
        tmp_path_factory, tmp_path, monkeypatch):
    from pipeline import kfold as kfold_cmd
    from pipeline.data import loader, normalization
    from pipeline.evaluation import evaluate

    reads: list[tuple[str, set[str]]] = []
    phase = {"now": "training"}

    def names(files):
        return {Path(str(f)).name.split("-")[0] for f in files}

    def spy(fn, what):
        def wrapped(files, *args, **kwargs):
            reads.append((phase["now"] if what != "fit" else "normalization", names(files)))
            return fn(files, *args, **kwargs)
        return wrapped

    real_predict = evaluate.predict_classifier

    def scoring(model, files, *args, **kwargs):
        phase["now"] = "scoring"
        reads.append(("scoring starts", names(files)))
        try:
            return real_predict(model, files, *args, **kwargs)
        finally:
            phase["now"] = "training"

    monkeypatch.setattr(loader, "create_dataset", spy(loader.create_dataset, "read"))
    monkeypatch.setattr(loader, "split_labels", spy(loader.split_labels, "read"))
    monkeypatch.setattr(normalization, "fit", spy(normalization.fit, "fit"))
    monkeypatch.setattr(evaluate, "predict_classifier", scoring)
    root = trained.data_root(tmp_path_factory)
    task, model, kwargs = trained.RUNS["segments"]
    out = tmp_path / "kf"
    # 3 training patients, 3 folds: each fold trains on 1 patient, validates on 1, holds out 1
    assert kfold_cmd.main([*trained._argv(root), "--set", "splits.n_folds=3", "--task", task,
                           "--model", model, "--set", f"train.model_kwargs={json.dumps(kwargs)}",
                           "--out", str(out)]) == 0
    result = json.loads((out / "kfold.json").read_text())
    assert len(result["folds"]) == 3
    starts = [i for i, (p, _) in enumerate(reads) if p == "scoring starts"]
    assert len(starts) == 3
    for i, (fold, start) in enumerate(zip(result["folds"], starts, strict=True)):
        held = set(fold["heldout_records"])
        assert reads[start][1] == held  # the held-out fold is what is scored, once
        # this fold's phase: from the previous fold's scoring to its own (other folds may
        # train on these records; inside the fold nothing may read them before scoring)
        fold_phase = [r for p, r in reads[(starts[i - 1] + 1) if i else 0:start] if p != "scoring"]
        assert fold_phase and all(not (r & held) for r in fold_phase), fold_phase
        assert set(fold["val_records"]) and not set(fold["val_records"]) & held
        assert not set(fold["train_records"]) & held
        stats = json.loads((out / f"fold{fold['fold']}" / "normalization.json").read_text())
        assert names(stats["train_files"]) == set(fold["train_records"])


def test_kfold_fold_without_two_training_patients_is_refused():
    from pipeline.core.config import load_config
    from pipeline.core.io_utils import PipelineError
    from pipeline.data.splits import Split
    from pipeline.data.tasks import get_task
    from pipeline.protocol.kfold import fold_files

    cfg = load_config(None, apply_env=False)
    split = Split("inter_patient", ("a",), (), ("c",), folds=((("a",), ("b",)),))
    with pytest.raises(PipelineError, match=r"fold 0: its training part \['a'\] holds fewer "
                                            "than 2 patients"):
        fold_files(cfg, get_task("mitdb_aami5_segments"), split, 0, {})


# ------------------------------------------------------------- external (14.8)


def _external_folder(path: Path, fs_hz: int, leads=("MLII", "V1")) -> Path:
    from data_tools import synthetic

    path.mkdir(parents=True)
    for i, seed in enumerate((11, 12)):
        synthetic.write_record(path, f"x{i}", seed=seed, duration_s=30.0, fs_hz=fs_hz)
    if leads != synthetic.LEADS:
        for hea in path.glob("*.hea"):
            hea.write_text(hea.read_text().replace(" MLII", f" {leads[0]}"))
    return path


@pytest.mark.parametrize("fs_hz", [128, 250])
def test_external_records_at_another_rate_are_scored_with_report_predictions_and_ledger(
        segments_run, tmp_path, fs_hz, capsys):
    import wfdb

    folder = _external_folder(tmp_path / f"ext{fs_hz}", fs_hz)
    assert _final(["--run", str(segments_run), "--external", str(folder)])[0] == 0
    out = segments_run / f"external_ext{fs_hz}"
    m = json.loads((out / "metrics_test.json").read_text())
    assert m["external"] == f"ext{fs_hz}" and m["external_records"] == ["x0", "x1"]
    assert f"external: ext{fs_hz}" in (out / "report.md").read_text()
    assert _ledger(segments_run)[-1]["external"] == f"ext{fs_hz}"
    assert not (segments_run / "metrics_test.json").exists()  # the test split was not read
    assert not [p for p in out.iterdir() if p.name.startswith(".data-")]  # derived data removed
    rows = list(csv.reader((out / "predictions_test.csv").open(newline="")))
    ann = wfdb.rdann(str(folder / "x0"), "atr")
    assert {int(r[1]) for r in rows[1:] if r[0] == "x0"} <= set(ann.sample.tolist())
    capsys.readouterr()
    assert _recompute(out) == 0


def test_external_records_feed_a_scalogram_sequence_classifier_at_128_hz(
        tmp_path_factory, tmp_path, capsys):
    run = _copy(tmp_path_factory, tmp_path, "sequences")
    folder = _external_folder(tmp_path / "seq128", 128)
    assert _final(["--run", str(run), "--external", str(folder)])[0] == 0
    m = json.loads((run / "external_seq128" / "metrics_test.json").read_text())
    assert m["n_test_examples"] > 0 and m["external_records"] == ["x0", "x1"]
    capsys.readouterr()
    assert _recompute(run / "external_seq128") == 0


def test_external_records_without_the_runs_lead_need_lead(segments_run, tmp_path, capsys):
    folder = _external_folder(tmp_path / "ii", 250, leads=("II", "V1"))
    rc, err = _final(["--run", str(segments_run), "--external", str(folder)], capsys)
    assert rc == 2
    assert "record x0 in" in err and "no lead 'MLII' (leads: ['II', 'V1']); name the lead" in err
    assert _final(["--run", str(segments_run), "--external", str(folder), "--lead", "II"])[0] == 0
    m = json.loads((segments_run / "external_ii" / "metrics_test.json").read_text())
    assert "lead II" in m["mode"]


def test_external_folder_that_is_missing_or_holds_no_records_is_refused(segments_run, tmp_path, capsys):
    rc, err = _final(["--run", str(segments_run), "--external", str(tmp_path / "nope")], capsys)
    assert rc == 2 and "nope: external folder not found" in err
    (tmp_path / "empty").mkdir()
    rc, err = _final(["--run", str(segments_run), "--external", str(tmp_path / "empty")], capsys)
    assert rc == 2 and "no WFDB records (no RECORDS file and no *.hea)" in err


def test_external_beat_classifier_needs_beat_annotations(segments_run, tmp_path, capsys):
    folder = _external_folder(tmp_path / "noatr", 360)
    (folder / "x1.atr").unlink()
    rc, err = _final(["--run", str(segments_run), "--external", str(folder)], capsys)
    assert rc == 2 and "record x1 in" in err and "no beat annotation file x1.atr" in err


def test_external_denoiser_takes_clean_records_without_annotations(tmp_path_factory, tmp_path, capsys):
    run = _copy(tmp_path_factory, tmp_path, "denoise")
    folder = _external_folder(tmp_path / "clean", 250)
    for atr in folder.glob("*.atr"):
        atr.unlink()
    assert _final(["--run", str(run), "--external", str(folder)])[0] == 0
    out = run / "external_clean"
    m = json.loads((out / "metrics_test.json").read_text())
    assert m["external"] == "clean" and (out / "windows_test.csv").is_file()
    capsys.readouterr()
    assert _recompute(out) == 0


# ------------------------------------------------------------------ the ledger itself


def test_ledger_appends_from_many_writers_keep_every_line_whole(tmp_path):
    from pipeline.protocol.ledger import append_line

    path = tmp_path / "test_reads.jsonl"
    threads = [threading.Thread(target=lambda i=i: [append_line(path, {"i": i, "j": j, "pad": "x" * 500})
                                                    for j in range(20)]) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert sorted((d["i"], d["j"]) for d in lines) == [(i, j) for i in range(4) for j in range(20)]


def test_ledger_in_an_unwritable_place_is_one_line_error(tmp_path):
    from pipeline.core.io_utils import PipelineError
    from pipeline.protocol.ledger import append_line

    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(PipelineError, match=r"file/test_reads.jsonl: cannot open the test-read ledger"):
        append_line(blocker / "test_reads.jsonl", {"a": 1})


def test_ensemble_averages_member_probabilities_once_on_test(tmp_path_factory, tmp_path, capsys):
    import numpy as np

    from pipeline.evaluation import predictions

    a = _copy(tmp_path_factory, tmp_path / "a", "segments")
    b = _copy(tmp_path_factory, tmp_path / "b", "segments")
    for run in (a, b):
        assert _final(["--run", str(run)], capsys)[0] == 0
    out = tmp_path / "ens"
    rc, err = _final(["--ensemble", str(a), str(b), "--out", str(out)], capsys)
    assert rc == 0, err
    classes = json.loads((out / "metrics_test.json").read_text())["classes"]
    read = [predictions.read_classifier_csv(d / predictions.CLASSIFIER_FILE, classes, False)
            for d in (a, b, out)]
    np.testing.assert_array_equal(read[2]["y"], read[0]["y"])
    np.testing.assert_allclose(read[2]["probs"], (read[0]["probs"] + read[1]["probs"]) / 2,
                               atol=1e-6)
    assert _recompute(out) == 0
    assert [e["outputs"] for e in _ledger(out)] == [str(out)]


def test_ensemble_of_runs_with_another_split_or_one_run_is_refused(tmp_path_factory, tmp_path, capsys):
    a = _copy(tmp_path_factory, tmp_path / "a", "segments")
    b = _copy(tmp_path_factory, tmp_path / "b", "segments")
    split = json.loads((b / "splits.json").read_text())
    split["val"] = split["val"][:-1]
    (b / "splits.json").write_text(json.dumps(split))
    rc, err = _final(["--ensemble", str(a), str(b), "--out", str(tmp_path / "e")], capsys)
    assert rc == 2 and "has another split than" in err
    rc, err = _final(["--ensemble", str(a), "--out", str(tmp_path / "e")], capsys)
    assert rc == 2 and "--ensemble needs at least 2 runs. Received: 1" in err
    assert not (tmp_path / "e").exists()


@pytest.fixture
def small_classic_grid(monkeypatch):
    """Four settings of the real grid (both models, four feature sets), 20 boosting rounds:
    the CLI path is the same, at a tenth of the fits (the full grid is checked below)."""
    from pipeline.training import classic

    pick = [g for g in classic.GRID if g["model"] == "hgb" and g["max_leaf_nodes"] == 15
            and g["class_weight_power"] == 1.0 and g["features"] in ("relative", "all")]
    pick += [g for g in classic.GRID if g["model"] == "random_forest" and g["class_weight_power"] == 1.0]
    grid = tuple({**g, "n_trees": 20} if g["model"] == "hgb" else g for g in pick)
    monkeypatch.setattr(classic, "GRID", grid)
    return grid


def test_classic_grid_covers_every_feature_set_and_both_models():
    from pipeline.training import classic

    assert {g["features"] for g in classic.grid_for(True)} == set(classic.FEATURE_SETS)
    # the context set is compared only on request (eval.classic_context), after its DS2 read
    assert classic.CONTEXT_SET not in {g["features"] for g in classic.GRID}
    assert classic.grid_for(False) == classic.GRID and len(classic.GRID) == 26
    assert {g["features"] for g in classic.CONTEXT_GRID} == {classic.CONTEXT_SET}
    assert {g["model"] for g in classic.CONTEXT_GRID} == set(classic.MODELS)
    assert {g["model"] for g in classic.GRID} == set(classic.MODELS)
    forests = [g for g in classic.GRID if g["model"] == "random_forest"]
    assert {(g["features"], g["class_weight_power"]) for g in forests} >= {("rr6", 0.0)}  # published


def test_classic_baseline_is_chosen_on_validation_and_scored_once_on_test(
        tmp_path_factory, tmp_path, capsys, small_classic_grid):
    root = trained.data_root(tmp_path_factory)
    out = tmp_path / "classic"
    argv = [*trained._argv(root), "--task", "mitdb_aami5_segments_rhythm", "--classic",
            "--out", str(out)]
    rc, err = _final(argv, capsys)
    assert rc == 0, err
    res = json.loads((out / "metrics_test.json").read_text())
    sel = json.loads((out / "selection.json").read_text())
    assert sel["chosen"] in [{k: g[k] for k in sel["chosen"]} for g in sel["grid"]]
    assert res["classic_setting"] == sel["chosen"]
    assert [{k: g[k] for k in sel["chosen"]} for g in sel["grid"]] == list(small_classic_grid)
    assert {g["model"] for g in sel["grid"]} == {"hgb", "random_forest"}
    split = json.loads((out / "splits.json").read_text())
    assert res["test_records"] == sorted(split["test"])
    assert not set(split["test"]) & (set(split["train"]) | set(split["val"]))
    assert _recompute(out) == 0
    assert len(_ledger(out)) == 1 and _ledger(out)[0]["model"] == "classic_trees"
    rc, err = _final(argv, capsys)
    assert rc == 2 and "already evaluated" in err


def test_classic_baseline_can_be_chosen_by_grouped_kfold_over_the_training_records(
        tmp_path_factory, tmp_path, capsys, small_classic_grid):
    root = trained.data_root(tmp_path_factory)
    out = tmp_path / "classic_kfold"
    argv = [*trained._argv(root), "--task", "mitdb_aami5_segments_rhythm", "--classic",
            "--out", str(out), "--set", "eval.classic_selection=kfold"]
    rc, err = _final(argv, capsys)
    assert rc == 0, err
    sel = json.loads((out / "selection.json").read_text())
    assert sel["by"] == "kfold" and all("kfold_macro_f1" in g for g in sel["grid"])
    best = max(sel["grid"], key=lambda g: g["kfold_macro_f1"])
    assert sel["chosen"] == {k: best[k] for k in sel["chosen"]}
    res = json.loads((out / "metrics_test.json").read_text())
    assert "out-of-fold" in res["mode"] and _recompute(out) == 0
    assert len(_ledger(out)) == 1


def test_classic_tuned_decision_is_chosen_on_the_folds_and_scores_its_members_on_test(
        tmp_path_factory, tmp_path, capsys, small_classic_grid):
    root = trained.data_root(tmp_path_factory)
    out = tmp_path / "classic_tuned"
    argv = [*trained._argv(root), "--task", "mitdb_aami5_segments_rhythm", "--classic",
            "--out", str(out), "--set", "eval.classic_selection=kfold",
            "--set", "eval.classic_decision=tuned"]
    rc, err = _final(argv, capsys)
    assert rc == 0, err
    sel = json.loads((out / "selection.json").read_text())
    recipes = [c["recipe"] for c in sel["decision_candidates"]]
    assert recipes == ["single", "single+weights", "top3", "top3+weights", "hgb+forest",
                       "hgb+forest+weights"]
    best = max(sel["decision_candidates"], key=lambda c: c["held_out_macro_f1"])
    assert sel["decision"]["recipe"] == best["recipe"]
    assert sel["decision"]["settings"] == [
        {k: sel["grid"][i][k] for k in sel["chosen"]} for i in best["members"]]
    res = json.loads((out / "metrics_test.json").read_text())
    assert res["classic_decision"] == sel["decision"]
    assert len(res["members"]) == (len(best["members"]) if len(best["members"]) > 1 else 0)
    assert _recompute(out) == 0 and len(_ledger(out)) == 1


def test_classic_kfold_pools_every_held_out_beat_once():
    import numpy as np

    from pipeline.training import classic

    rng = np.random.default_rng(1)
    recs = np.repeat(["a", "b", "c", "d"], 50)
    x = rng.normal(size=(200, 2)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int64)
    table = classic.BeatTable(x, y, recs, np.arange(200), ("pre_over_local", "amplitude_ratio"))
    folds = ((("a", "b"), ("c", "d")), (("c", "d"), ("a", "b")))
    grid = ({"features": "relative", "learning_rate": 0.1, "max_leaf_nodes": 15,
             "class_weight_power": 0.5},)
    sel = classic.select_kfold(table, folds, ["N", "S"], 0, grid)
    assert sel.best == grid[0] and sel.rows[0]["kfold_macro_f1"] > 0.9
    # every beat held out once: its fold is its group, and its probabilities are filled
    assert list(sel.groups) == [1] * 100 + [0] * 100
    assert np.allclose(sel.probs[0].sum(axis=1), 1.0)
    from pipeline.core.io_utils import PipelineError

    with pytest.raises(PipelineError, match=r"^k-fold selection needs folds over the training "
                                            r"records \(none were formed"):
        classic.select_kfold(table, (), ["N", "S"], 0, grid)


def test_classic_filters_are_scored_once_on_the_denoising_test_split(tmp_path_factory, tmp_path,
                                                                     capsys):
    root = trained.data_root(tmp_path_factory)
    out = tmp_path / "filters"
    argv = [*trained._argv(root), "--task", "mitdb_denoise", "--classic", "--out", str(out),
            "--max-test-windows", "40"]
    rc, err = _final(argv, capsys)
    assert rc == 0, err
    res = json.loads((out / "metrics_test.json").read_text())
    assert set(res["results"]) == {"wavelet", "bandpass"}
    assert res["predictions"]["method"] == "wavelet" and res["model"] == "classic_filters"
    split = json.loads((out / "splits.json").read_text())
    assert res["test_records"] == sorted(split["test"])
    assert _recompute(out) == 0
    assert len(_ledger(out)) == 1 and _ledger(out)[0]["model"] == "classic_filters"
    rc, err = _final(argv, capsys)
    assert rc == 2 and "already evaluated" in err


def test_classic_on_a_task_without_a_baseline_is_refused_naming_it(tmp_path, capsys):
    out = tmp_path / "ptbxl_classic"
    rc, err = _final(["--task", "ptbxl_superdiagnostic", "--classic", "--out", str(out)], capsys)
    assert rc == 2
    assert ("--classic works on MIT-BIH segment and denoising tasks; ptbxl_superdiagnostic is "
            "a ptbxl task") in err
    assert not out.exists()


def test_classic_feature_sets_pick_their_columns():
    from pipeline.core.io_utils import PipelineError
    from pipeline.data import morphology, rhythm
    from pipeline.training import classic

    before = (*rhythm.FEATURE_NAMES, *morphology.FEATURE_NAMES)
    names = (*before, *morphology.TEMPLATE_FEATURE_NAMES, *rhythm.CONTEXT_FEATURE_NAMES)
    pick = {f: [names[i] for i in classic.feature_columns(names, f)] for f in classic.FEATURE_SETS}
    assert pick["relative+template+context"] == [*pick["relative+template"],
                                                 *rhythm.CONTEXT_FEATURE_NAMES]
    assert pick["relative"] == list(rhythm.RELATIVE_FEATURE_NAMES)
    assert pick["relative+morphology"] == [*rhythm.RELATIVE_FEATURE_NAMES,
                                           *morphology.FEATURE_NAMES]
    assert pick["all"] == list(before)  # the template and context columns: only their sets
    assert pick["relative+template"] == [*pick["relative+morphology"],
                                         *morphology.TEMPLATE_FEATURE_NAMES]
    assert pick["rr6"] == ["pre_rr_s", "post_rr_s", "prev_rr_s", "pre_over_running",
                           "post_over_running", "prev_over_running"]
    with pytest.raises(PipelineError, match=r"unknown classic feature set 'rr'; known: "):
        classic.feature_columns(names, "rr")


def test_classic_random_forest_setting_fits_its_trees_and_unknown_models_are_named():
    import numpy as np

    from pipeline.core.io_utils import PipelineError
    from pipeline.training import classic

    rng = np.random.default_rng(1)
    names = ("pre_rr_s", "pre_over_running", "qrs_width_ms")
    x = rng.normal(size=(300, 3)).astype(np.float32)
    y = (x[:, 1] > 0.5).astype(np.int64)
    table = classic.BeatTable(x, y, np.full(300, "r"), np.arange(300), names)
    forest = next(g for g in classic.GRID if g["model"] == "random_forest" and g["features"] == "rr6")
    model = classic.fit(table, 3, forest, seed=0)
    assert len(model.trees.estimators_) == classic.RF_TREES == 30 and model.columns == [0, 1]
    p = classic.probabilities(model, x, 3)
    assert p.shape == (300, 3) and (p[:, 2] == 0).all() and (p.argmax(1) == y).mean() > 0.95
    assert all(set(g) == set(classic.GRID[0]) for g in classic.GRID)  # one key set
    with pytest.raises(PipelineError, match=r"unknown classic model 'svm'; known: \['hgb', 'random_forest'\]"):
        classic.fit(table, 3, {**forest, "model": "svm"}, seed=0)


def test_classic_trees_see_only_their_feature_set():
    import numpy as np

    from pipeline.training import classic

    rng = np.random.default_rng(0)
    names = ("pre_rr_s", "pre_over_local", "amplitude_ratio", "qrs_width_ms")
    x = rng.normal(size=(200, 4)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int64)  # only the interval in seconds carries the label
    table = classic.BeatTable(x, y, np.full(200, "r"), np.arange(200), names)
    setting = {"learning_rate": 0.1, "max_leaf_nodes": 15, "class_weight_power": 0.5}
    blind = classic.fit(table, 2, {**setting, "features": "relative"}, seed=0)
    sees = classic.fit(table, 2, {**setting, "features": "all"}, seed=0)
    assert blind.columns == [1, 2] and sees.columns == [0, 1, 2, 3]
    new = rng.normal(size=(400, 4)).astype(np.float32)  # unseen beats
    acc = {k: (classic.probabilities(m, new, 2).argmax(1) == (new[:, 0] > 0)).mean()
           for k, m in (("blind", blind), ("sees", sees))}
    assert acc["sees"] > 0.95 and acc["blind"] < 0.65


def test_recompute_reads_a_gzip_compressed_predictions_file(segments_run, capsys):
    import gzip

    assert _final(["--run", str(segments_run)], capsys)[0] == 0
    plain = segments_run / "predictions_test.csv"
    (segments_run / "predictions_test.csv.gz").write_bytes(gzip.compress(plain.read_bytes()))
    plain.unlink()
    assert _recompute(segments_run) == 0


def test_stored_ensemble_averages_a_deep_run_and_the_classic_baseline(
        tmp_path_factory, tmp_path, capsys, small_classic_grid):
    import numpy as np

    from pipeline.evaluation import predictions

    deep = _copy(tmp_path_factory, tmp_path / "deep", "segments")
    assert _final(["--run", str(deep)], capsys)[0] == 0
    classic = tmp_path / "classic"
    rc, err = _final([*trained._argv(trained.data_root(tmp_path_factory)), "--task",
                      "mitdb_aami5_segments_rhythm", "--classic", "--out", str(classic)], capsys)
    assert rc == 0, err
    out = tmp_path / "ens"
    rc, err = _final(["--ensemble", str(deep), str(classic), "--stored", "--out", str(out)], capsys)
    assert rc == 0, err
    res = json.loads((out / "metrics_test.json").read_text())
    read = [predictions.read_classifier_csv(d / predictions.CLASSIFIER_FILE, res["classes"], False)
            for d in (deep, classic, out)]
    for key in ("record", "sample", "y"):
        np.testing.assert_array_equal(read[2][key], read[0][key])
    np.testing.assert_allclose(read[2]["probs"], (read[0]["probs"] + read[1]["probs"]) / 2,
                               atol=1e-6)
    assert res["model"] == "ensemble(ldcnn+classic_trees)" and res["n_test_examples"] == len(read[0]["y"])
    assert _recompute(out) == 0
    # the classic baseline's read and the ensemble's share this folder's ledger
    assert [e["outputs"] for e in _ledger(out)] == [str(classic), str(out)]
    assert json.loads((out / "ensemble.json").read_text())["stored_predictions"] is True


def test_stored_ensemble_refuses_other_beats_and_unevaluated_members(
        tmp_path_factory, tmp_path, capsys):
    from pipeline.evaluation import predictions

    a = _copy(tmp_path_factory, tmp_path / "a", "segments")
    b = _copy(tmp_path_factory, tmp_path / "b", "segments")
    rc, err = _final(["--ensemble", str(a), str(b), "--stored", "--out", str(tmp_path / "e")], capsys)
    assert rc == 2 and "metrics_test.json" in err and str(a) in err
    for run in (a, b):
        assert _final(["--run", str(run)], capsys)[0] == 0
    csv_b = b / predictions.CLASSIFIER_FILE
    csv_b.write_text("".join(csv_b.read_text().splitlines(keepends=True)[:-1]))
    rc, err = _final(["--ensemble", str(a), str(b), "--stored", "--out", str(tmp_path / "e")], capsys)
    assert rc == 2 and f"{b}: its examples differ from {a}'s" in err
    assert not (tmp_path / "e").exists()
    rc, err = _final(["--stored", "--run", str(a)], capsys)
    assert rc == 2 and "--stored belongs to --ensemble" in err
    split = json.loads((b / "splits.json").read_text())
    split["test"] = split["test"][:-1]
    (b / "splits.json").write_text(json.dumps(split))
    rc, err = _final(["--ensemble", str(a), str(b), "--stored", "--out", str(tmp_path / "e")], capsys)
    assert rc == 2 and f"{b}: other classes or test records than {a}" in err
    assert not (tmp_path / "e").exists()


@pytest.mark.parametrize("edit, why", [
    ({"external": {"records": "elsewhere"}}, "it was scored on external records"),
    ({"leaky_split": True}, "its split is leaky"),
    ({"thresholds_from_validation": {}}, "it is multi-label"),
    ({"per_class": None}, "it holds no beat predictions"),
])
def test_stored_ensemble_refuses_a_member_it_cannot_average_naming_it_and_why(
        tmp_path_factory, tmp_path, capsys, edit, why):
    a = _copy(tmp_path_factory, tmp_path / "a", "segments")
    b = _copy(tmp_path_factory, tmp_path / "b", "segments")
    for run in (a, b):
        assert _final(["--run", str(run)], capsys)[0] == 0
    m = json.loads((b / "metrics_test.json").read_text())
    m.update({k: v for k, v in edit.items() if v is not None})
    for k in [k for k, v in edit.items() if v is None]:
        del m[k]
    (b / "metrics_test.json").write_text(json.dumps(m))
    rc, err = _final(["--ensemble", str(a), str(b), "--stored", "--out", str(tmp_path / "e")], capsys)
    assert rc == 2 and f"{b}: cannot join a stored-predictions ensemble: {why}" in err
    assert not (tmp_path / "e").exists()


def test_compare_runs_denoise_table_reads_an_evaluated_run_and_its_outside_records(
        tmp_path_factory, tmp_path, capsys, monkeypatch):
    import numpy as np

    from data_tools import compare_runs, denoise_table

    # the tiny runs are scored at 12 dB only: the table's columns at that level
    monkeypatch.setattr(denoise_table, "CELLS", (("mix", "12"), ("gaussian", "12")))
    monkeypatch.setattr(denoise_table, "EXTERNAL_CELLS", (("mix", "12"),))
    monkeypatch.setattr(denoise_table, "P5_CELL", ("mix", "12"))
    run = _copy(tmp_path_factory, tmp_path / "runs", "denoise")
    assert _final(["--run", str(run), "--max-test-windows", "40"])[0] == 0
    folder = _external_folder(tmp_path / "clean", 250)
    assert _final(["--run", str(run), "--external", str(folder), "--max-test-windows", "40"])[0] == 0
    m = json.loads((run / "metrics_test.json").read_text())
    ext = json.loads((run / "external_clean" / "metrics_test.json").read_text())
    capsys.readouterr()
    assert compare_runs.main(["--denoise", str(tmp_path / "runs")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].endswith("| mix 12 dB, 5th pct | clean: mix 12 dB |")
    # header, rule, the run and the chain predict runs (not its external folder), 2 filters
    assert len(lines) == 2 + 2 + 2
    method, ci = m["model"], m["ci95_snr_imp_db"][m["model"]]["mix"]["12"]
    mean = m["results"][method]["mix"]["12"]["snr_imp_db"]["mean"]
    assert f"| {mean:+.2f} [{ci['low']:+.2f}, {ci['high']:+.2f}] |" in lines[2]
    assert lines[2].endswith(f"| {ext['results'][method]['mix']['12']['snr_imp_db']['mean']:+.2f} "
                             f"[{ext['ci95_snr_imp_db'][method]['mix']['12']['low']:+.2f}, "
                             f"{ext['ci95_snr_imp_db'][method]['mix']['12']['high']:+.2f}] |")
    with open(run / "windows_test.csv", newline="") as fh:
        imp = [float(r["snr_out_db"]) - float(r["snr_in_db"]) for r in csv.DictReader(fh)
               if r["noise"] == "mix" and abs(float(r["snr_in_db"]) - 12) < 0.5]
    assert imp and denoise_table.window_percentile(run, "mix", 12.0) == pytest.approx(
        np.percentile(imp, 5))
    served = m["results"][f"{method}+hp"]["mix"]["12"]["snr_imp_db"]
    assert lines[3].startswith(f"| {method}+hp (`{run.name}`) | +0 | - |")
    assert f"| {served['mean']:+.2f} [" in lines[3] and f"| {served['p05']:+.2f} |" in lines[3]
    assert lines[4].startswith("| bandpass (same windows) |") and lines[5].startswith("| wavelet")


# ------------------------------------------------------------ keep validation's first (15)


def _seeds(tmp_path_factory, tmp_path: Path, values: list[float]) -> list[Path]:
    """Copies of the tiny segments run whose validation best_value is each of ``values``."""
    src = trained.trained_run(tmp_path_factory, "segments")
    runs = []
    for i, value in enumerate(values):
        run = tmp_path / "runs" / f"seed{i}"
        shutil.copytree(src, run)
        summary = json.loads((run / "summary.json").read_text())
        (run / "summary.json").write_text(json.dumps({**summary, "best_value": value}))
        runs.append(run)
    return runs


def test_best_of_reads_only_the_run_validation_ranks_first(tmp_path_factory, tmp_path, capsys):
    from pipeline.protocol import best_of

    runs = _seeds(tmp_path_factory, tmp_path, [0.31, 0.42, 0.42])  # a tie goes to the first
    rc, err = _final(["--best-of", *map(str, runs)], capsys)
    assert rc == 0, err
    assert [(r / "metrics_test.json").is_file() for r in runs] == [False, True, False]
    choice = json.loads((runs[1] / best_of.SELECTION_FILE).read_text())
    assert choice["chosen"] == str(runs[1]) and choice["direction"] == "max"
    assert choice["selection_metric"] == "val_macro_f1"
    assert [c["best_value"] for c in choice["candidates"]] == [0.31, 0.42, 0.42]
    assert [e["outputs"] for e in _ledger(runs[1])] == [str(runs[1])]  # one read, logged
    rc, err = _final(["--best-of", *map(str, runs)], capsys)
    assert rc == 2 and "already evaluated" in err  # no second read of the chosen run


def test_best_of_refuses_runs_it_cannot_rank(tmp_path_factory, tmp_path, capsys):
    a, b = _seeds(tmp_path_factory, tmp_path, [0.3, 0.4])
    rc, err = _final(["--best-of", str(a)], capsys)
    assert rc == 2 and "--best-of needs two runs or more; got 1" in err
    split = json.loads((b / "splits.json").read_text())
    (b / "splits.json").write_text(json.dumps({**split, "val": split["val"][:-1]}))
    rc, err = _final(["--best-of", str(a), str(b)], capsys)
    assert rc == 2 and f"{b} and {a} differ in val" in err
    (b / "summary.json").unlink()
    rc, err = _final(["--best-of", str(a), str(b)], capsys)
    assert rc == 2 and f"{b / 'summary.json'}: JSON file not found" in err
    rc, err = _final(["--best-of", str(a), str(b), "--ensemble", str(a), str(b)], capsys)
    assert rc == 2 and "give one" in err
    assert not any((r / "metrics_test.json").exists() for r in (a, b)) and not _ledger(a)
