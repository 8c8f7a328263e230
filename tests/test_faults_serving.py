"""Bad input and faults of ``pipeline.predict`` and ``pipeline.export``: each case gives one
clear line and a non-zero exit, or an honest summary; nothing valid is replaced by a failed
export.

Runs are the tiny trained runs of _trained_runs.py (built once per session).
"""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import tempfile

import numpy as np
import pytest

wfdb = pytest.importorskip("wfdb")
pytest.importorskip("tensorflow")

import _trained_runs as TR  # noqa: E402

from data_tools import synthetic as syn  # noqa: E402
from pipeline import export as export_cmd  # noqa: E402
from pipeline import predict as predict_cmd  # noqa: E402
from pipeline.core.io_utils import PipelineError, run_cli  # noqa: E402
from pipeline.serving import export as export_lib  # noqa: E402
from pipeline.serving.outputs import prepare_out_dir  # noqa: E402


@pytest.fixture(scope="module")
def seg_run(tmp_path_factory):
    return TR.trained_run(tmp_path_factory, "segments")


@pytest.fixture(scope="module")
def record(tmp_path_factory):
    """A 30 s synthetic record at 360 Hz with its .atr (beats and two non-beat marks)."""
    d = tmp_path_factory.mktemp("faults_records")
    syn.write_record(d, "r30", seed=2, duration_s=30.0)
    return d / "r30"


def _predict(capsys, *argv):
    rc = run_cli(predict_cmd.main, [str(a) for a in argv])
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


def _one_line_error(err, pattern):
    lines = [ln for ln in err.strip().splitlines() if ln]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert re.search(pattern, lines[0]), lines[0]


def _copy_record(src_base, dst_dir, name, with_atr=True):
    for ext in (".hea", ".dat") + ((".atr",) if with_atr else ()):
        shutil.copy(src_base.with_suffix(ext), dst_dir / f"{name}{ext}")
    hea = dst_dir / f"{name}.hea"
    hea.write_text(hea.read_text().replace(src_base.name, name))
    return dst_dir / name


# ---------------------------------------------------------------------------- checkpoints


def test_predict_names_the_checkpoint_in_every_output(seg_run, record, tmp_path, capsys):
    out = tmp_path / "out"
    rc, stdout, _ = _predict(capsys, "--run", seg_run, "--input", record, "--out", out)
    assert rc == 0
    best = seg_run / "checkpoints" / "best.keras"
    assert f"checkpoint {best}" in stdout and "[checkpoint best.keras]" in stdout
    s = json.loads((out / "r30_prediction.json").read_text())
    assert s["checkpoint"] == "best.keras" and s["checkpoint_path"] == str(best)
    # a folder's summary names it too
    folder = tmp_path / "folder"
    folder.mkdir()
    _copy_record(record, folder, "a")
    assert _predict(capsys, "--run", seg_run, "--input", folder, "--out", out)[0] == 0
    summary = json.loads((out / "predict_summary.json").read_text())
    assert summary["checkpoint_path"] == str(best) and summary["records"][0]["ok"]


def test_predict_refuses_a_missing_best_checkpoint_unless_last_is_asked(seg_run, record, tmp_path, capsys):
    run = tmp_path / "run_last_only"
    shutil.copytree(seg_run, run, ignore=shutil.ignore_patterns("predictions", "export"))
    best = run / "checkpoints" / "best.keras"
    shutil.copy(best, run / "checkpoints" / "last.keras")
    best.unlink()
    rc, _, err = _predict(capsys, "--run", run, "--input", record, "--out", tmp_path / "o")
    assert rc == 2
    _one_line_error(err, r"best\.keras: best checkpoint not found \(last\.keras exists: pass "
                         r"--checkpoint last")
    rc, stdout, _ = _predict(capsys, "--run", run, "--input", record, "--out", tmp_path / "o",
                             "--checkpoint", "last")
    assert rc == 0 and "[checkpoint last.keras]" in stdout
    s = json.loads((tmp_path / "o" / "r30_prediction.json").read_text())
    assert s["checkpoint"] == "last.keras"


def test_export_refuses_a_missing_best_checkpoint(seg_run, tmp_path, capsys):
    run = tmp_path / "run_no_best"
    shutil.copytree(seg_run, run, ignore=shutil.ignore_patterns("predictions", "export", "*.keras"))
    assert run_cli(export_cmd.main, ["--run", str(run), "--format", "tflite"]) == 2
    _one_line_error(capsys.readouterr().err, r"no checkpoint found \(train the model first\)")


# --------------------------------------------------------------------------- annotations


def _with_atr(record, dst, name, symbols):
    base = _copy_record(record, dst, name, with_atr=False)
    if symbols is None:
        (dst / f"{name}.atr").write_bytes(b"")
    else:
        wfdb.wrann(name, "atr", sample=np.arange(1, len(symbols) + 1) * 1000, symbol=symbols,
                   aux_note=["(N"] * len(symbols), write_dir=str(dst))
    return base


@pytest.mark.parametrize("what", ["non_beat_only", "zero_bytes"])
def test_annotation_file_without_beats_falls_back_to_r_peak_detection(seg_run, record, tmp_path,
                                                                      capsys, what):
    base = _with_atr(record, tmp_path, "nobeats", ["+", "+"] if what == "non_beat_only" else None)
    out = tmp_path / "out"
    rc, stdout, _ = _predict(capsys, "--run", seg_run, "--input", base, "--out", out)
    assert rc == 0 and "(R peaks detected)" in stdout
    s = json.loads((out / "nobeats_prediction.json").read_text())
    assert s["beats_from"] == "xqrs" and s["beats"] > 20 and s["agreement"] is None
    why = ("holds no beat annotations (2 non-beat annotations)" if what == "non_beat_only"
           else "is empty (0 bytes)")
    assert s["beats_note"] == f"nobeats.atr {why}; R peaks detected (XQRS)"


def test_beats_atr_with_an_empty_annotation_file_is_refused(seg_run, record, tmp_path, capsys):
    base = _with_atr(record, tmp_path, "empty", None)
    rc, _, err = _predict(capsys, "--run", seg_run, "--input", base, "--out", tmp_path / "o",
                          "--beats", "atr")
    assert rc == 2
    _one_line_error(err, r"record empty: --beats atr but empty\.atr is empty \(0 bytes\)")


# ------------------------------------------------------------------------ useless records


def _write_wfdb(dst, name, x, fs=360):
    syn.write_signal(dst, name, x, fs)
    return dst / name


@pytest.mark.parametrize("case, pattern", [
    ("short", r"record bad: 1\.5 s long, shorter than one model window \(2 s\); nothing to predict"),
    ("all_nan", r"record bad: lead MLII is all NaN \(no valid sample\); nothing to predict"),
    ("all_zero", r"record bad: lead MLII is flat \(constant 0 over the whole record\); nothing to predict"),
])
def test_record_nothing_can_be_predicted_on_exits_non_zero_with_the_reason(seg_run, tmp_path, capsys,
                                                                          case, pattern):
    n = 540 if case == "short" else 360 * 20
    x = np.zeros((n, 2))
    if case == "short":
        x = np.sin(np.arange(n)[:, None] / 20.0) * np.ones((1, 2))
    elif case == "all_nan":
        x[:] = np.nan
    base = _write_wfdb(tmp_path, "bad", x)
    rc, _, err = _predict(capsys, "--run", seg_run, "--input", base, "--out", tmp_path / "o")
    assert rc == 2
    _one_line_error(err, pattern)
    assert not (tmp_path / "o" / "bad_prediction.json").exists()


def test_record_without_any_beat_is_refused(seg_run, tmp_path, capsys):
    x = np.sin(2 * np.pi * 0.1 * np.arange(360 * 20) / 360)[:, None] * np.ones((1, 2)) * 0.01
    base = _write_wfdb(tmp_path, "quiet", x)
    rc, _, err = _predict(capsys, "--run", seg_run, "--input", base, "--out", tmp_path / "o",
                          "--beats", "detect")
    assert rc == 2
    _one_line_error(err, r"record quiet: no beats found \(R peaks detected \(XQRS\), as asked "
                         r"\(--beats detect\): none\); nothing to predict")


def test_folder_summary_lists_a_useless_record_as_failed(seg_run, record, tmp_path, capsys):
    folder = tmp_path / "folder"
    folder.mkdir()
    _copy_record(record, folder, "good")
    _write_wfdb(folder, "flat", np.zeros((360 * 10, 2)))
    out = tmp_path / "out"
    rc, _, err = _predict(capsys, "--run", seg_run, "--input", folder, "--out", out)
    assert rc == 2 and "error: record flat: lead MLII is flat" in err
    summary = json.loads((out / "predict_summary.json").read_text())
    by = {r["record"]: r for r in summary["records"]}
    assert by["good"]["ok"] and not by["flat"]["ok"] and summary["failed"] == 1
    assert "nothing to predict" in by["flat"]["error"]


def test_denoiser_refuses_a_record_shorter_than_one_window(tmp_path_factory, tmp_path, capsys):
    run = TR.trained_run(tmp_path_factory, "denoise")
    base = _write_wfdb(tmp_path, "tiny", np.sin(np.arange(360 * 3)[:, None] / 20.0) * np.ones((1, 2)))
    rc, _, err = _predict(capsys, "--run", run, "--input", base, "--out", tmp_path / "o")
    assert rc == 2
    _one_line_error(err, r"record tiny: 3 s long, shorter than one model window \(4 s\)")


# ----------------------------------------------------------------------------- arguments


@pytest.mark.parametrize("flag, value, pattern", [
    ("--flat-s", "0", r"--flat-s must be > 0 \(seconds\)\. Received: 0\.0"),
    ("--flat-s", "-1", r"--flat-s must be > 0 \(seconds\)\. Received: -1\.0"),
    ("--flat-s", "nan", r"--flat-s must be > 0 \(seconds\)\. Received: nan"),
    ("--batch-size", "0", r"--batch-size must be >= 1\. Received: 0"),
    ("--batch-size", "-4", r"--batch-size must be >= 1\. Received: -4"),
    ("--fs", "0", r"--fs must be > 0 Hz\. Received: 0\.0"),
])
def test_predict_number_flags_out_of_range_give_one_line(seg_run, record, tmp_path, capsys,
                                                         flag, value, pattern):
    rc, _, err = _predict(capsys, "--run", seg_run, "--input", record, "--out", tmp_path / "o",
                          flag, value)
    assert rc == 2
    _one_line_error(err, pattern)
    assert not (tmp_path / "o").exists()


def test_predict_out_pointing_to_a_file_gives_one_line(seg_run, record, tmp_path, capsys):
    f = tmp_path / "file.txt"
    f.write_text("keep me")
    rc, _, err = _predict(capsys, "--run", seg_run, "--input", record, "--out", f)
    assert rc == 2
    _one_line_error(err, rf"--out {f}: {f} is a file, not a folder")
    assert f.read_text() == "keep me"
    rc, _, err = _predict(capsys, "--run", seg_run, "--input", record, "--out", f / "sub")
    assert rc == 2 and "is a file, not a folder" in err


def test_predict_read_only_output_folder_gives_one_line(seg_run, record, tmp_path, capsys, monkeypatch):
    ro = tmp_path / "readonly"
    ro.mkdir()
    if os.geteuid() != 0:  # a real read-only folder (root writes anyway)
        ro.chmod(0o555)
    else:
        real = tempfile.mkstemp

        def refuse(*a, **k):
            if str(k.get("dir", "")) == str(ro):
                raise PermissionError(errno.EACCES, "Permission denied")
            return real(*a, **k)

        monkeypatch.setattr(tempfile, "mkstemp", refuse)
    try:
        rc, _, err = _predict(capsys, "--run", seg_run, "--input", record, "--out", ro)
    finally:
        ro.chmod(0o755)
    assert rc == 2
    _one_line_error(err, rf"--out {ro}: output folder is not writable \(Permission denied\)")
    assert list(ro.iterdir()) == []


def test_prepare_out_dir_creates_missing_folders(tmp_path):
    assert prepare_out_dir(tmp_path / "a" / "b").is_dir()
    with pytest.raises(PipelineError, match="is a file, not a folder"):
        (tmp_path / "x").write_text("")
        prepare_out_dir(tmp_path / "x" / "y")


# -------------------------------------------------------------------------------- export


@pytest.mark.parametrize("flag, value, pattern", [
    ("--parity-examples", "-1", r"--parity-examples must be >= 1\. Received: -1"),
    ("--parity-examples", "0", r"--parity-examples must be >= 1\. Received: 0"),
    ("--calibration-examples", "0", r"--calibration-examples must be >= 1\. Received: 0"),
    ("--parity-tol", "-1", r"--parity-tol must be > 0\. Received: -1\.0"),
])
def test_export_number_flags_out_of_range_give_one_line(seg_run, capsys, flag, value, pattern):
    before = sorted(p.name for p in (seg_run / "export").glob("*")) if (seg_run / "export").is_dir() else []
    assert run_cli(export_cmd.main, ["--run", str(seg_run), "--format", "tflite", flag, value]) == 2
    _one_line_error(capsys.readouterr().err, pattern)
    after = sorted(p.name for p in (seg_run / "export").glob("*")) if (seg_run / "export").is_dir() else []
    assert after == before


def test_failed_export_keeps_the_previous_artefact_and_its_entry(seg_run, tmp_path, monkeypatch):
    run = tmp_path / "run_export"
    shutil.copytree(seg_run, run, ignore=shutil.ignore_patterns("predictions", "export"))
    first = export_lib.export_run(run, "tflite", parity_examples=16)
    assert first["ok"] and first["checkpoint"].endswith("best.keras")
    tfl = run / "export" / "model.tflite"
    old_bytes = tfl.read_bytes()
    real = export_lib.parity

    def drifting(ref, got, **kw):
        return real(ref, np.asarray(got) + 0.5, **kw)

    monkeypatch.setattr(export_lib, "parity", drifting)
    with pytest.raises(export_lib.ExportError, match=r"tflite: parity failed: max \|Keras - export\| "
                                                     r"0\.5 > 0\.001 on 16 examples; the previous export"):
        export_lib.export_run(run, "tflite", parity_examples=16)
    assert tfl.read_bytes() == old_bytes
    assert not [p for p in (run / "export").iterdir() if p.name.startswith(".")]
    rec = json.loads((run / "export" / "export.json").read_text())["tflite"]
    assert rec["ok"] and rec["parity"] == first["parity"]
    assert "parity failed" in rec["failed_attempt"]["error"]
    # a format that never succeeded records the failure, with no file left behind
    with pytest.raises(export_lib.ExportError, match="parity failed"):
        export_lib.export_run(run, "savedmodel", parity_examples=16)
    assert not (run / "export" / "savedmodel").exists()
    assert not [p for p in (run / "export").iterdir() if p.name.startswith(".")]
    rec = json.loads((run / "export" / "export.json").read_text())["savedmodel"]
    assert rec["ok"] is False and "parity failed" in rec["error"]


def test_export_conversion_error_keeps_the_previous_artefact(seg_run, tmp_path, monkeypatch):
    run = tmp_path / "run_export_conv"
    shutil.copytree(seg_run, run, ignore=shutil.ignore_patterns("predictions", "export"))
    export_lib.export_run(run, "tflite", parity_examples=8)
    old_bytes = (run / "export" / "model.tflite").read_bytes()

    def broken(*a, **k):
        raise export_lib.ExportError("TFLite cannot hold model 'x': test")

    monkeypatch.setattr(export_lib, "convert_tflite", broken)
    with pytest.raises(export_lib.ExportError, match="cannot hold model"):
        export_lib.export_run(run, "tflite", parity_examples=8)
    assert (run / "export" / "model.tflite").read_bytes() == old_bytes
    rec = json.loads((run / "export" / "export.json").read_text())["tflite"]
    assert rec["ok"] and rec["failed_attempt"]["error"] == "TFLite cannot hold model 'x': test"
