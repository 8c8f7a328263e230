"""The Trainer: selection by the objective that matters, intra-patient normalization on
training beats only, run folders that no idle command overwrites (finished check, identity
check, lock, no stub folders), damaged TFRecords named in real training, the lock-file hash
in env.json (synthetic records through the real stages, see _trained_runs.py).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
import _trained_runs as TR  # noqa: E402

from pipeline import train as train_cmd  # noqa: E402
from pipeline.core.config import load_config  # noqa: E402
from pipeline.core.io_utils import PipelineError, run_cli  # noqa: E402
from pipeline.data.tasks import get_task  # noqa: E402
from pipeline.training import (  # noqa: E402
    run_folder,
    selection,
    trainer,  # noqa: E402
)

ROOT = Path(__file__).resolve().parents[1]
SEG = "mitdb_aami5_segments"
LDCNN = ["--model", "ldcnn", "--model-kwargs", json.dumps({"filters": 8, "dilations": [1, 2]})]


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return TR.data_root(tmp_path_factory)


def _argv(root: Path, run: Path, *sets: str, task: str = SEG) -> list[str]:
    out = ["--data-dir", str(root), "--task", task, *LDCNN, "--run-dir", str(run),
           "--checkpoint-every-s", "0"]
    for s in (*TR.SETS, *sets):
        out += ["--set", s]
    return out


def _cfg(root: Path, *sets: str, task: str = SEG):
    """The config ``pipeline.train`` resolves for ``_argv(root, ..., *sets)``."""
    args = train_cmd.build_parser().parse_args(_argv(root, root / "unused", *sets, task=task))
    return train_cmd.resolve_config(args)


def _shas(run: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(run.iterdir())
            if p.is_file()}


# ------------------------------------------------------------------ selection metric


@pytest.mark.parametrize("task, setting, expected", [
    (SEG, "auto", ("val_macro_f1", "max")),
    ("ptbxl_superdiagnostic", "auto", ("val_macro_auc", "max")),
    ("mitdb_denoise", "auto", ("val_snr_improvement_db", "max")),
    ("mitdb_denoise", "val_loss", ("val_loss", "min")),
])
def test_selection_metric_by_task(task, setting, expected):
    cfg = load_config(None, {"train": {"selection_metric": setting}}, apply_env=False)
    assert selection.resolve_selection(cfg, get_task(task)) == expected


@pytest.mark.parametrize("task, setting, match", [
    (SEG, "val_macro_auc", "train.selection_metric val_macro_auc needs a multi-label"),
    ("mitdb_denoise", "val_macro_f1", "needs a single-label"),
    (SEG, "val_snr_improvement_db", "needs a denoising task"),
    (SEG, "accuracy", r"unknown train.selection_metric 'accuracy'; known: auto, val_loss"),
])
def test_selection_metric_that_the_task_cannot_report_is_refused(task, setting, match):
    cfg = load_config(None, {"train": {"selection_metric": setting}}, apply_env=False)
    with pytest.raises(PipelineError, match=match):
        selection.resolve_selection(cfg, get_task(task))


def test_tuning_objective_follows_the_selection_metric_when_auto():
    from pipeline.training.tuning import resolve_objective

    cfg = load_config(None, {"train": {"selection_metric": "val_loss"}}, apply_env=False)
    assert resolve_objective(cfg, get_task(SEG)) == ("val_loss", "min")


def _best_saves(monkeypatch) -> list[int]:
    saved: list[int] = []
    real = trainer.save_checkpoint

    def spy(model, run_dir, state, name="last.keras"):
        if name == "best.keras":
            saved.append(len(json.loads((Path(run_dir) / "history.json").read_text()))
                         if (Path(run_dir) / "history.json").is_file() else 0)
        return real(model, run_dir, state, name)

    monkeypatch.setattr(trainer, "_save_checkpoint", spy)
    return saved


@pytest.mark.parametrize("setting, metric, pick", [
    ("auto", "val_macro_f1", np.argmax),
    ("val_loss", "val_loss", np.argmin),
])
def test_best_checkpoint_is_the_epoch_with_the_best_selection_metric(root, tmp_path, monkeypatch,
                                                                     setting, metric, pick):
    saves = _best_saves(monkeypatch)
    run = tmp_path / "run"
    cfg = _cfg(root, "train.epochs=4", f"train.selection_metric={setting}",
               "train.learning_rate=0.01")
    summary = trainer.train(cfg, run, checkpoint_every_s=0, verbose=0)
    state = json.loads((run / trainer.STATE_FILE).read_text())
    history = state["history"]
    values = [h[metric] for h in history]
    assert state["selection_metric"] == summary["selection_metric"] == metric
    assert summary["best_epoch"] == state["best_epoch"] == int(pick(values)) + 1
    assert state["best_value"] == pytest.approx(values[state["best_epoch"] - 1])
    # best.keras was last written at the end of the best epoch (history then held the
    # epochs before it).
    assert saves and saves[-1] == state["best_epoch"] - 1


def test_denoiser_selects_by_mean_snr_improvement_over_the_training_levels(root, tmp_path):
    run = tmp_path / "run"
    assert train_cmd.main(["--data-dir", str(root), "--task", "mitdb_denoise", "--model", "cnn_dae",
                           "--model-kwargs", json.dumps({"filters": [8, 8]}), "--run-dir", str(run),
                           *sum((["--set", s] for s in (*TR.SETS, "train.epochs=2")), [])]) == 0
    summary = json.loads((run / "summary.json").read_text())
    history = json.loads((run / "history.json").read_text())
    assert summary["selection_metric"] == "val_snr_improvement_db"
    for h in history:  # one training level (12 dB): the mean is that level's improvement
        assert h["val_snr_improvement_db"] == pytest.approx(h["val_snr_imp_12dB"])
    best = int(np.argmax([h["val_snr_improvement_db"] for h in history])) + 1
    assert summary["best_epoch"] == best


# ------------------------------------------------------ intra-patient normalization


def test_intra_patient_normalization_is_fitted_on_training_beats_only(root, tmp_path):
    from pipeline.data import schema

    run = tmp_path / "run"
    assert train_cmd.main(_argv(root, run, "splits.scheme=intra_patient")) == 0
    cfg = _cfg(root, "splits.scheme=intra_patient")
    sf = run_folder.split_files(cfg, get_task(SEG))
    import tensorflow as tf

    train_x, all_x = [], []
    for f in sf.train:
        xs = [schema.decode(r.numpy(), where=f).x for r in tf.data.TFRecordDataset(f)]
        x = np.concatenate(xs).astype(np.float64)
        all_x.append(x)
        train_x.append(x[np.asarray(sf.include_train[f], bool)])
    saved = json.loads((run / "normalization.json").read_text())
    want = np.concatenate(train_x)
    np.testing.assert_allclose(saved["mean"], [want.mean()], rtol=1e-6)
    np.testing.assert_allclose(saved["scale"], [want.std()], rtol=1e-6)
    assert saved["count_per_channel"] == want.size
    assert saved["count_per_channel"] < np.concatenate(all_x).size  # val/test beats left out


# ----------------------------------------------- nothing valid overwritten by idle runs


@pytest.fixture(scope="module")
def finished(root, tmp_path_factory):
    run = tmp_path_factory.mktemp("finished") / "run"
    assert train_cmd.main(_argv(root, run)) == 0
    return run


def _trainable(model) -> list:
    return [w.numpy() for w in model.trainable_weights]


def test_a_run_fine_tunes_a_preset_folder_and_refuses_a_changed_one(root, finished, tmp_path,
                                                                   capsys):
    from pipeline.serving import presets
    from pipeline.training.checkpoints import load_best_model

    folder = presets.save_preset(finished, "start", "fine-tune test", smoke=True,
                                 root=tmp_path / "presets")
    still = ("train.learning_rate=1e-12", "train.min_learning_rate=0", "train.weight_decay=0")
    run = tmp_path / "tuned"
    assert train_cmd.main(_argv(root, run, f"train.init_from={folder}", *still)) == 0
    want = _trainable(presets.load_model_file(folder / presets.MODEL_FILE))
    got = _trainable(load_best_model(run))
    assert len(got) == len(want) > 0
    for a, b in zip(got, want):  # a learning rate of 1e-12: the preset's weights, unmoved
        np.testing.assert_allclose(a, b, atol=1e-6)
    assert train_cmd.main(_argv(root, tmp_path / "fresh", *still)) == 0  # without init_from
    fresh = _trainable(load_best_model(tmp_path / "fresh"))
    assert not all(np.allclose(a, b, atol=1e-3) for a, b in zip(fresh, want))
    _flip_byte(folder / presets.MODEL_FILE)
    bad = [f"train.init_from={folder}", *still]
    assert run_cli(train_cmd.main, _argv(root, tmp_path / "bad", *bad)) == 2
    assert re.search(r"model\.keras: sha256 \w+\.\.\. differs from the card's",
                     capsys.readouterr().err)
    assert not (tmp_path / "bad").exists()  # refused before any file of the run was written
    assert run_cli(train_cmd.main, _argv(root, tmp_path / "none",
                                         f"train.init_from={tmp_path / 'nope'}")) == 2
    assert "nope: train.init_from is not a folder" in capsys.readouterr().err


def test_load_init_model_refuses_a_missing_folder_and_a_changed_preset_file(tmp_path):
    from pipeline.training import checkpoints

    with pytest.raises(PipelineError, match=r"nope: train.init_from is not a folder \(give a "
                                            r"run folder or a preset folder"):
        checkpoints.load_init_model(tmp_path / "nope")
    folder = tmp_path / "preset"
    folder.mkdir()
    (folder / checkpoints.MODEL_FILE).write_bytes(b"not the card's model")
    (folder / checkpoints.CARD_FILE).write_text(json.dumps({"model_file": {"sha256": "0" * 64}}))
    with pytest.raises(PipelineError, match=r"model\.keras: sha256 \w{16}\.\.\. differs from "
                                            r"the card's 0{16}\.\.\."):
        checkpoints.load_init_model(folder)
    (folder / checkpoints.CARD_FILE).write_text(json.dumps({}))
    with pytest.raises(PipelineError, match=r"preset\.json: the card has no model_file\.sha256"):
        checkpoints.load_init_model(folder)


def test_rerun_of_a_finished_run_writes_nothing(root, finished, capsys):
    before = _shas(finished)
    assert train_cmd.main(_argv(root, finished)) == 0
    assert "training already finished; nothing to do" in capsys.readouterr().out
    assert _shas(finished) == before


def test_finished_run_with_another_data_dir_is_refused_before_writing(root, finished, tmp_path):
    other = tmp_path / "other_data"
    shutil.copytree(root / "tfrecords", other / "tfrecords")
    before = _shas(finished)
    with pytest.raises(PipelineError, match=r"run folder was trained with data.data_dir=.*"
                                            r"use --force to start it over or a new --run-dir"):
        train_cmd.main([*_argv(root, finished)[:0], "--data-dir", str(other),
                        *_argv(root, finished)[2:]])
    assert _shas(finished) == before


def test_finished_run_with_another_task_is_refused_naming_the_task(root, finished, capsys):
    before = _shas(finished)
    assert run_cli(train_cmd.main, _argv(root, finished, task="mitdb_aami4_segments")) == 2
    err = capsys.readouterr().err
    assert "train.task='mitdb_aami5_segments' (now 'mitdb_aami4_segments')" in err
    assert len(err.strip().splitlines()) == 1
    assert _shas(finished) == before


def test_run_folder_with_another_config_is_refused_and_force_starts_it_over(root, tmp_path, capsys):
    run = tmp_path / "run"
    assert train_cmd.main(_argv(root, run)) == 0
    assert run_cli(train_cmd.main, _argv(root, run, "train.learning_rate=0.01")) == 2
    assert "train.learning_rate=0.001 (now 0.01)" in capsys.readouterr().err
    assert train_cmd.main([*_argv(root, run, "train.learning_rate=0.01"), "--force"]) == 0
    assert "learning_rate: 0.01" in (run / "config.yaml").read_text()
    assert json.loads((run / "summary.json").read_text())["epochs_done"] == 1


def test_more_epochs_on_a_finished_run_is_not_a_conflict(root, tmp_path):
    assert "train.epochs" in run_folder.RESUMABLE_KEYS
    run = tmp_path / "run"
    run.mkdir()
    (run / "model.json").write_text("{}")
    from pipeline.core.config import dump_config

    dump_config(_cfg(root), run / "config.yaml")
    assert run_folder.check_existing_run(_cfg(root, "train.epochs=5"), run) == "resumable"


HOLDER = textwrap.dedent("""
    import fcntl, os, sys, time
    fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX)
    os.write(fd, f"{os.getpid()}\\n".encode())
    print("locked", flush=True)
    time.sleep(60)
""")


def test_second_writer_of_a_run_folder_is_refused_naming_the_holder_pid(root, tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(run / run_folder.RUN_LOCK)],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        assert run_cli(train_cmd.main, _argv(root, run)) == 2
        err = capsys.readouterr().err
        assert f"run folder is being written by pid {holder.pid}" in err
        assert not (run / "config.yaml").exists()  # nothing written by the refused writer
    finally:
        holder.kill()
        holder.wait()


def test_stale_lock_of_a_dead_process_is_taken_over_and_released(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / run_folder.RUN_LOCK).write_text("999999999\n")  # no process holds it
    with run_folder.locked(run) as lock:
        assert lock.read_text().strip() == str(os.getpid())
    assert not lock.exists()


def test_run_failing_before_its_first_epoch_leaves_no_stub_folder(root, tmp_path, capsys):
    run = tmp_path / "run"
    assert run_cli(train_cmd.main, _argv(root, run, "train.lr_schedule=step")) == 2
    assert "unknown train.lr_schedule 'step'" in capsys.readouterr().err
    assert not run.exists()


def test_failed_early_run_in_an_existing_folder_removes_only_what_it_wrote(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "notes.txt").write_text("mine")
    with pytest.raises(PipelineError, match="boom"):
        with run_folder.removed_if_failed_early(run):
            (run / "config.yaml").write_text("x")
            raise PipelineError("boom")
    assert sorted(p.name for p in run.iterdir()) == ["notes.txt"]


# --------------------------------------------------------- damaged TFRecords in training


def _flip_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.fixture()
def damaged_copy(root, tmp_path):
    copy = tmp_path / "data"
    shutil.copytree(root / "tfrecords", copy / "tfrecords")
    shutil.copytree(root / "windows", copy / "windows")
    if (root / "raw" / "nstdb").is_dir():
        shutil.copytree(root / "raw" / "nstdb", copy / "raw" / "nstdb")
    return copy


def _train_file(data: Path, task: str, part: str = "train") -> Path:
    cfg = _cfg(data, task=task) if task == SEG else load_config(
        None, {"data": {"data_dir": str(data)}, "splits": {"val_fraction": 0.34}}, apply_env=False)
    sf = run_folder.split_files(cfg, get_task(task))
    return Path(getattr(sf, part)[0])


@pytest.mark.parametrize("part", ["train", "val"])
def test_byte_flipped_tfrecord_is_named_in_one_line_exit_2(damaged_copy, tmp_path, capsys, part):
    bad = _train_file(damaged_copy, SEG, part)
    size = bad.stat().st_size
    _flip_byte(bad)
    assert bad.stat().st_size == size
    assert run_cli(train_cmd.main, _argv(damaged_copy, tmp_path / "run")) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: {bad}: damaged TFRecord file") and len(err.splitlines()) == 1
    assert not (tmp_path / "run").exists()


def test_byte_flipped_tfrecord_during_model_fit_is_named(damaged_copy, tmp_path, capsys):
    """A resumed denoiser reads its training files first in ``model.fit`` (normalization is
    reloaded and denoising has no labels to read)."""
    run = tmp_path / "run"
    argv = ["--data-dir", str(damaged_copy), "--task", "mitdb_denoise", "--model", "cnn_dae",
            "--model-kwargs", json.dumps({"filters": [8, 8]}), "--run-dir", str(run),
            "--checkpoint-every-s", "0", *sum((["--set", s] for s in TR.SETS), [])]
    assert train_cmd.main([*argv, "--set", "train.max_train_seconds=0.001",
                           "--set", "train.epochs=2"]) == 0
    bad = _train_file(damaged_copy, "mitdb_denoise")
    _flip_byte(bad)
    assert run_cli(train_cmd.main, [*argv, "--set", "train.epochs=2"]) == 2
    err = capsys.readouterr().err.strip()
    assert f"{bad}: damaged TFRecord file read during training" in err
    assert len(err.splitlines()) == 1


# --------------------------------------------------------------------- env.json


def test_env_json_records_the_sha256_of_the_lock_file(tmp_path):
    assert run_folder.lock_file_sha256(tmp_path) is None
    (tmp_path / "requirements.lock").write_text("numpy==2.0.0\n")
    assert run_folder.lock_file_sha256(tmp_path) == hashlib.sha256(b"numpy==2.0.0\n").hexdigest()
    env = run_folder.environment()
    lock = ROOT / "requirements.lock"
    want = hashlib.sha256(lock.read_bytes()).hexdigest() if lock.is_file() else None
    assert env["requirements_lock_sha256"] == want
