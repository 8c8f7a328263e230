"""Training progress a person can follow: a run of ``python -m pipeline.train`` whose output goes
to a file (not a tty) writes progress lines with examples/s and ETAs as it trains, and every
run folder holds TensorBoard event files and ``history.csv`` beside ``history.json``.

The data are the tiny synthetic records of ``_trained_runs.py``; one 1-epoch run is shared.
"""

from __future__ import annotations

import csv
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
import _trained_runs as trained  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
PROGRESS = re.compile(r"ecg\.progress INFO epoch 1/1, step \d+/2, [\d,]+ examples/s, "
                      r"epoch ETA .+, run ETA .+")


@pytest.fixture(scope="module")
def logged_run(tmp_path_factory):
    """A 1-epoch run through the command, stdout and stderr redirected to a file."""
    root = trained.data_root(tmp_path_factory)
    run_dir = root.parent / "run_progress"
    log_path = root.parent / "train.log"
    cmd = [sys.executable, "-m", "pipeline.train", *trained._argv(root),
           "--task", "mitdb_aami5_segments", "--model", "ldcnn",
           "--model-kwargs", json.dumps({"filters": 8, "dilations": [1, 2]}),
           "--set", "train.progress_every_s=0.001", "--run-dir", str(run_dir)]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": str(ROOT)}
    with open(log_path, "w") as log:
        res = subprocess.run(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                             timeout=300)
    text = log_path.read_text()
    assert res.returncode == 0, text[-3000:]
    return run_dir, text


def test_progress_lines_reach_a_non_tty_log_file(logged_run):
    _, text = logged_run
    lines = [ln for ln in text.splitlines() if PROGRESS.search(ln)]
    assert lines, text[-3000:]
    assert "\r" not in text and "\x1b[" not in text  # no Keras progress bar redraws
    assert re.search(r"ecg\.progress INFO epoch 1/1 done in \d+ s", text)


def test_a_one_epoch_run_writes_tensorboard_events_and_history_csv(logged_run):
    run_dir, _ = logged_run
    assert list((run_dir / "tensorboard" / "train").glob("events.out.tfevents.*"))
    assert list((run_dir / "tensorboard" / "validation").glob("events.out.tfevents.*"))
    rows = list(csv.DictReader((run_dir / "history.csv").open()))
    history = json.loads((run_dir / "history.json").read_text())
    assert len(rows) == len(history) == 1
    assert rows[0]["epoch"] == "1" and float(rows[0]["val_loss"]) == pytest.approx(history[0]["val_loss"])
    assert "loss" in rows[0] and "val_macro_f1" in rows[0]


def test_validation_scalars_are_named_like_keras_epoch_scalars():
    from pipeline.training.history_files import history_csv_text, validation_scalars

    row = {"epoch": 3, "loss": 0.5, "val_loss": 0.7, "val_macro_f1": 0.4,
           "val_snr_improvement_db": float("nan"), "level": "mixed levels"}
    assert validation_scalars(row) == {"epoch_loss": 0.7, "epoch_macro_f1": 0.4}
    text = history_csv_text([{"loss": 1.0, "epoch": 1}, {"epoch": 2, "loss": 0.5, "val_loss": None}])
    assert text.splitlines() == ["epoch,loss,val_loss", "1,1.0,", "2,0.5,"]
