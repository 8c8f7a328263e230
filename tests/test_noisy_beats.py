"""Denoise, then classify (``final_eval --run CLASSIFIER --noisy TYPES [--denoiser RUN]``):
the noise reaches the level asked for, only the NSTDB ``test`` segment is used, beat detection
is scored against the reference, every number recomputes from the per-beat file, and the one
test read is logged.

Tiny real runs from :mod:`tests._trained_runs` (synthetic records through the real stages).
"""

from __future__ import annotations

import gzip
import json
import math
import shutil
from pathlib import Path

import _trained_runs as trained  # noqa: E402
import numpy as np
import pytest

from pipeline.core.io_utils import PipelineError
from pipeline.serving import noisy_beats as nb


def _final(argv: list[str], capsys=None) -> tuple[int, str]:
    from pipeline import final_eval as final_eval_cmd
    from pipeline.core.io_utils import run_cli

    rc = run_cli(final_eval_cmd.main, [*argv, "--bootstrap", "20"])
    err = capsys.readouterr().err if capsys is not None else ""
    return rc, err


# ------------------------------------------------------------------------ the pieces


def test_added_noise_has_the_requested_snr_against_the_reference():
    rng = np.random.default_rng(0)
    clean = rng.normal(size=(5000, 2)) + 3.0  # an offset the reference leaves out
    reference = clean - clean.mean(axis=0)
    noise = rng.normal(size=(5000, 2)) * 7.0
    for snr in (12.0, 6.0, 0.0, -3.0):
        noisy = nb.add_noise(clean, noise, snr, reference)
        assert nb.measured_snr_db(reference, noisy, clean) == pytest.approx(snr, abs=1e-9)
    np.testing.assert_array_equal(nb.add_noise(clean, np.zeros_like(noise), 0.0, reference), clean)


def test_tiled_noise_wraps_around_the_segment_from_a_seeded_offset():
    seg = np.arange(10, dtype=np.float64)[:, None].repeat(2, axis=1)
    a = nb.tiled_noise(seg, 25, np.random.default_rng(3))
    b = nb.tiled_noise(seg, 25, np.random.default_rng(3))
    np.testing.assert_array_equal(a, b)
    assert a.shape == (25, 2)
    np.testing.assert_array_equal(np.diff(a[:, 0]) % 10, np.ones(24))  # consecutive, wrapping
    with pytest.raises(PipelineError, match="noise segment is empty"):
        nb.tiled_noise(seg[:0], 5, np.random.default_rng(0))


def test_detection_counts_match_within_the_window_once_each():
    fs = 360.0  # 150 ms = 54 samples
    ref = np.array([100, 500, 900, 1300])
    found = np.array([105, 530, 560, 2000])  # 560 is a second detection of 500
    assert nb.detection_counts(ref, found, fs, 0.15) == {"tp": 2, "fn": 2, "fp": 2}
    assert nb.detection_counts(ref, np.zeros(0, int), fs, 0.15) == {"tp": 0, "fn": 4, "fp": 0}
    assert nb.detection_rates({"tp": 3, "fn": 1, "fp": 0}) == {
        "sensitivity": 0.75, "positive_predictivity": 1.0}


def test_predictions_file_is_byte_stable_and_reads_back_per_condition():
    rows = [nb.RecordRows("clean", False, "r1", np.array([10, 20]), np.array([0, 2]),
                          np.array([[0.9, 0.05, 0.05], [0.1, 0.2, 0.7]]), None, math.inf),
            nb.RecordRows("em_6dB", True, "r1", np.array([10]), np.array([1]),
                          np.array([[0.2, 0.5, 0.3]]), None, 6.0)]
    a = nb.predictions_csv(rows, ["N", "S", "V"])
    assert a == nb.predictions_csv(rows, ["N", "S", "V"])
    text = gzip.decompress(a).decode()
    assert text.splitlines()[0] == "condition,denoised,record,sample,label,p_N,p_S,p_V"
    got = nb.read_predictions(a)
    assert list(got) == [("clean", False), ("em_6dB", True)]
    np.testing.assert_array_equal(got[("clean", False)]["y"], [0, 2])
    np.testing.assert_allclose(got[("em_6dB", True)]["probs"], [[0.2, 0.5, 0.3]])


@pytest.mark.parametrize("kwargs, match", [
    ({"noise_types": ("gaussian",)}, r"noise types must be among \['bw', 'em', 'ma'\]. Received: \['gaussian'\]"),
    ({"snr_db": ()}, "--snr-db: finite levels"),
    ({"snr_db": (float("inf"),)}, "--snr-db: finite levels"),
    ({"match_window_s": 0.0}, "match window must be > 0 s"),
])
def test_bad_requests_are_named(kwargs, match):
    with pytest.raises(PipelineError, match=match):
        nb.NoisyRequest(**kwargs)


# ------------------------------------------------------------------- the command


@pytest.fixture
def runs(tmp_path_factory, tmp_path):
    root = trained.data_root(tmp_path_factory)
    clf = tmp_path / "clf"
    shutil.copytree(trained.trained_run(tmp_path_factory, "segments"), clf)
    return root, clf, trained.trained_run(tmp_path_factory, "denoise")


def test_denoise_then_classify_runs_every_condition_recomputes_and_logs_one_read(
        runs, tmp_path, capsys, monkeypatch):
    from data_tools import recompute
    from pipeline.core.io_utils import run_cli
    from pipeline.data import noise as noise_mod
    from pipeline.serving import predict_beats

    root, clf, den = runs
    parts = []
    real_segments = noise_mod.noise_segments
    monkeypatch.setattr(noise_mod, "noise_segments",
                        lambda n, c, part: parts.append(part) or real_segments(n, c, part))
    out = tmp_path / "runs" / "noisy"
    rc, err = _final(["--run", str(clf), "--noisy", "em,ma", "--snr-db", "6,0", "--denoiser",
                      str(den), "--out", str(out), *trained._argv(root)], capsys)
    assert rc == 0, err
    assert parts == ["test"]
    m = json.loads((out / "metrics_test.json").read_text())
    keys = [(c["condition"], c["denoised"]) for c in m["conditions"]]
    assert keys == [(c, d) for c in ("clean", "em_6dB", "em_0dB", "ma_6dB", "ma_0dB")
                    for d in (False, True)]
    levels = {c["condition"]: c["input_snr_db_mean"] for c in m["conditions"]}
    assert levels["clean"] is None and levels["em_6dB"] == pytest.approx(6.0, abs=1e-3)
    assert levels["ma_0dB"] == pytest.approx(0.0, abs=1e-3)
    # the clean row without denoiser is what `predict` gives on the raw test records
    clean = m["conditions"][0]
    run = nb.load_model_folder(clf)
    n = sum(int(predict_beats.classify_beats(run, root / "raw" / "mitdb" / r).classified.sum())
            for r in m["records"])
    assert clean["beats"] == n > 0
    assert all(0 <= c["detection"]["sensitivity"] <= 1 for c in m["conditions"])
    assert "| em_0dB | yes |" in (out / "report.md").read_text()
    ledger = [json.loads(line) for line in (out.parent / "test_reads.jsonl").read_text().splitlines()]
    assert len(ledger) == 1 and ledger[0]["model"] == "ldcnn after cnn_dae"
    assert run_cli(recompute.main, [str(out)]) == 0
    # a tampered per-beat file is caught
    raw = gzip.decompress((out / nb.PREDICTIONS_FILE).read_bytes()).decode().splitlines()
    cells = raw[1].split(",")
    cells[4] = "V" if cells[4] != "V" else "N"
    raw[1] = ",".join(cells)
    (out / nb.PREDICTIONS_FILE).write_bytes(gzip.compress(("\n".join(raw) + "\n").encode()))
    assert run_cli(recompute.main, [str(out)]) == 1
    # evaluated folders are not overwritten silently
    rc, err = _final(["--run", str(clf), "--noisy", "em", "--out", str(out), *trained._argv(root)],
                     capsys)
    assert rc == 2 and "already evaluated" in err


def test_noisy_flags_are_checked_before_any_data_is_read(runs, tmp_path, capsys):
    root, clf, den = runs
    argv = trained._argv(root)
    rc, err = _final(["--run", str(clf), "--denoiser", str(den), *argv], capsys)
    assert rc == 2 and "--denoiser belongs to --noisy TYPES" in err
    rc, err = _final(["--noisy", "em", *argv], capsys)
    assert rc == 2 and "--noisy TYPES needs --run CLASSIFIER" in err
    rc, err = _final(["--run", str(clf), "--noisy", "em", "--snr-db", "6,x", *argv], capsys)
    assert rc == 2 and "--snr-db: comma-separated numbers in dB. Received: '6,x'" in err
    rc, err = _final(["--run", str(clf), "--noisy", "em", "--denoiser", str(clf), *argv], capsys)
    assert rc == 2 and "--denoiser needs a denoising run; task mitdb_aami5_segments" in err
    rc, err = _final(["--run", str(den), "--noisy", "em", *argv], capsys)
    assert rc == 2 and "task mitdb_denoise does not classify beats" in err
    rc, err = _final(["--run", str(tmp_path / "nope"), "--noisy", "em", *argv], capsys)
    assert rc == 2 and "nope: neither a run folder nor a preset" in err
    assert not (tmp_path / "runs").exists()


def test_an_intra_patient_split_is_refused_naming_the_setting(tmp_path, monkeypatch):
    import types

    from pipeline.core.config import load_config
    from pipeline.data.tasks import get_task
    from pipeline.training import run_folder

    cfg = load_config("full")
    clf = types.SimpleNamespace(task=get_task("mitdb_aami5_segments"), cfg=cfg, path=tmp_path,
                                model_name="ldcnn")
    monkeypatch.setattr(run_folder, "make_split",
                        lambda c, t: types.SimpleNamespace(intra={"100": 0.3}))
    with pytest.raises(PipelineError, match=r"needs whole test records \(splits.scheme: inter_patient\)"):
        nb.evaluate(cfg, clf, None, nb.NoisyRequest(), tmp_path / "out", n_boot=0)
    assert not (tmp_path / "out").exists()
