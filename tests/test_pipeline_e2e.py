"""The quick profile end to end, and the guarantees the evaluation scripts rest on.

* ``run_full_pipeline.sh --quick`` from a loopback HTTP mirror of ``shared/data`` (the real
  download code runs) through training, tuning, k-fold and the final evaluation; a second run
  skips every finished stage (slow: run with ``--run-slow``).
* Only ``pipeline.final_eval`` opens the test split (static and runtime checks).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_only_final_eval_opens_the_test_split():
    users = []
    for p in sorted((ROOT / "pipeline").rglob("*.py")) + sorted((ROOT / "data_tools").glob("*.py")):
        text = p.read_text()
        if re.search(r"test_split_access\(", text) and p.name != "run_folder.py":
            users.append(p.relative_to(ROOT).as_posix())
    assert users == ["pipeline/protocol/final.py"]


def test_test_files_refused_outside_final_eval(tmp_path):
    from pipeline.core.config import load_config
    from pipeline.data.splits import mitdb_split
    from pipeline.data.tasks import get_task
    from pipeline.training import run_folder

    cfg = load_config(None, {"data": {"data_dir": str(tmp_path)}}, apply_env=False)
    split = mitdb_split(["101", "106", "100", "103"], None, n_folds=2, val_fraction=0.5)
    with pytest.raises(PermissionError, match="only by `python -m pipeline.final_eval`"):
        run_folder.test_files(cfg, get_task("mitdb_aami5_segments"), split)
    with run_folder.test_split_access("final_eval"):
        files, _ = run_folder.test_files(cfg, get_task("mitdb_aami5_segments"), split)
    assert [Path(f).name.split("-")[0] for f in files] == ["100", "103"]


def test_training_folds_and_validation_never_contain_test_records():
    from pipeline.data.splits import DS2, mitdb_split, patient_of

    split = mitdb_split(sorted(set(DS2) | {"101", "106", "108", "109", "201", "203"}), None)
    seen = set(split.train) | set(split.val)
    for tr, va in split.folds:
        seen |= set(tr) | set(va)
    assert not seen & set(split.test)
    assert not {patient_of(r) for r in seen} & {patient_of(r) for r in split.test}


@pytest.mark.slow
@pytest.mark.mirror
def test_quick_profile_end_to_end_from_a_loopback_mirror(mirror, tmp_path):
    from data_tools.mirror_server import MirrorServer

    data, runs = tmp_path / "data", tmp_path / "runs"
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    with MirrorServer(mirror) as server:
        cmd = ["bash", str(ROOT / "run_full_pipeline.sh"), "--quick", "--mirror", server.url,
               "--data-dir", str(data), "--set", f"profile.runs_dir={runs}"]
        first = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
        assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
        fetched = len(server.fetched())
        second = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
        assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
        # The rerun verifies local files against the checksums already recorded: nothing fetched.
        assert len(server.fetched()) == fetched
    assert "=== summary" in first.stdout
    for name in ("mitdb_denoise_cnn_dae", "mitdb_aami5_sequences_conformer_cnn_only",
                 "ptbxl_superdiagnostic_cnn", "mitdb_aami5_segments_ldcnn_final"):
        m = json.loads((runs / name / "metrics_test.json").read_text())
        assert m["leaky_split"] is False
    assert json.loads((runs / "tuning" / "mitdb_aami5_segments_ldcnn" / "best_hparams.json")
                      .read_text())["completed_trials"] == 2
    k = json.loads((runs / "mitdb_aami5_segments_ldcnn_kfold" / "kfold.json").read_text())
    assert len(k["folds"]) == 2
    from pipeline.data.splits import patient_of

    for f in k["folds"]:
        assert not {patient_of(r) for r in f["train_records"]} & {patient_of(r) for r in f["val_records"]}
    stats = [json.loads((runs / "mitdb_aami5_segments_ldcnn_kfold" / f"fold{i}" / "normalization.json")
                        .read_text()) for i in range(2)]
    assert stats[0]["train_files"] != stats[1]["train_files"]
    assert stats[0]["mean"] != stats[1]["mean"]  # re-fitted per fold
    # Second run: every stage skipped or resumed as finished.
    assert "nothing to do" in second.stdout + second.stderr
    assert sys.executable  # the test ran under the project's interpreter
