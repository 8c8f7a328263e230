"""``pipeline.serving.reader``: a user's recording as WFDB, EDF, CSV or NumPy gives the same
signal and, through a tiny trained beat classifier (_trained_runs.py), the same beats and
classes; lead names go through the aliases; bad files give one clear line each.
"""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

wfdb = pytest.importorskip("wfdb")

from data_tools import synthetic as syn  # noqa: E402
from pipeline.core.io_utils import PipelineError, run_cli  # noqa: E402
from pipeline.serving import reader  # noqa: E402

FS = 250


def write_edf(path, x, fs, labels, units=None, gain=200.0):
    """A minimal EDF file: 1 s data records, int16 = round(x * gain), every channel at ``fs``
    (or at its own rate when ``fs`` is a list)."""
    rates = list(fs) if isinstance(fs, (list, tuple)) else [int(fs)] * len(labels)
    cols = x if isinstance(x, list) else [x[:, j] for j in range(x.shape[1])]
    n_rec = int(np.ceil(len(cols[0]) / rates[0]))
    blocks = []
    for c, r in zip(cols, rates, strict=True):
        d = np.zeros(n_rec * r, np.int16)
        d[: len(c)] = np.round(np.asarray(c) * gain).astype(np.int16)
        blocks.append(d.reshape(n_rec, r))
    units = units or ["mV"] * len(labels)

    def f(v, w):
        return str(v)[:w].ljust(w)

    ns = len(labels)
    h = (f("0", 8) + f("X X X X", 80) + f("Startdate 01-JAN-2000 X X X", 80) + f("01.01.00", 8)
         + f("00.00.00", 8) + f(256 * (ns + 1), 8) + f("", 44) + f(n_rec, 8) + f(1, 8) + f(ns, 4))
    for vals, w in ((labels, 16), ([""] * ns, 80), (units, 8), ([f"{-32768 / gain:g}"] * ns, 8),
                    ([f"{32767 / gain:g}"] * ns, 8), (["-32768"] * ns, 8), (["32767"] * ns, 8),
                    ([""] * ns, 80), (rates, 8), ([""] * ns, 32)):
        h += "".join(f(v, w) for v in vals)
    path.write_bytes(h.encode("ascii") + np.concatenate(blocks, axis=1).astype("<i2").tobytes())
    return path


@pytest.fixture(scope="module")
def r250(tmp_path_factory):
    """A 30 s synthetic two-lead record at 250 Hz (WFDB), and its samples in mV."""
    d = tmp_path_factory.mktemp("readers")
    syn.write_record(d, "r250", seed=3, duration_s=30.0, fs_hz=FS)
    return d / "r250", wfdb.rdrecord(str(d / "r250")).p_signal


def _csv(path, header, x, fmt="%.6f"):
    np.savetxt(path, x, delimiter=",", header=",".join(header), comments="", fmt=fmt)
    return path


# ---------------------------------------------------------------------- the same signal


def test_csv_edf_and_npy_read_the_same_samples_as_wfdb(r250, tmp_path):
    base, x = r250
    t = np.arange(len(x))[:, None] / FS
    csv = _csv(tmp_path / "a.csv", ["time", "ECG II", "V1"], np.hstack([t, x]))
    edf = write_edf(tmp_path / "a.edf", x, FS, ["ECG1", "ECG2"])
    npy = tmp_path / "a.npy"
    np.save(npy, x)
    wf = reader.read_input(base)
    got = {
        "csv": reader.read_input(csv, reader.ReadOptions(fs_hz=FS)),
        "edf": reader.read_input(edf),
        "npy": reader.read_input(npy, reader.ReadOptions(fs_hz=FS, leads=("MLII", "V1"))),
    }
    assert wf.source == "wfdb" and wf.annotation_base == base
    for kind, rec in got.items():
        assert rec.source == kind and rec.fs_hz == FS and rec.annotation_base is None
        np.testing.assert_allclose(rec.signal, x, rtol=0, atol=1e-12, err_msg=kind)
    assert got["csv"].lead_names == ("ECG II", "V1")  # the time column is dropped
    assert got["edf"].lead_names == ("ECG1", "ECG2") and got["edf"].units == ("mV", "mV")


def test_edf_reader_agrees_with_wfdb_up_to_its_one_unit_offset(r250, tmp_path):
    from wfdb.io.convert.edf import read_edf

    _, x = r250
    edf = write_edf(tmp_path / "b.edf", x, FS, ["MLII", "V1"])
    ours = reader.read_input(edf).signal
    theirs = read_edf(str(edf)).p_signal
    np.testing.assert_allclose(ours, x, atol=1e-12)
    assert np.abs(theirs - ours).max() <= 1 / 200 + 1e-12  # wfdb's baseline is off by one unit


def test_edf_with_channels_at_other_rates_keeps_the_ecg_rate(tmp_path):
    n = 10 * FS
    ecg = np.sin(np.arange(n) / 7.0)
    resp = np.cos(np.arange(n // 10) / 3.0)
    edf = write_edf(tmp_path / "psg.edf", [resp, ecg], [FS // 10, FS], ["Resp", "ECG"])
    rec = reader.read_input(edf)
    assert rec.fs_hz == FS and rec.lead_names == ("ECG",)
    np.testing.assert_allclose(rec.signal[:, 0], np.round(ecg * 200) / 200, atol=1e-12)


def test_csv_units_uv_and_adu_are_converted_to_mv(r250, tmp_path):
    _, x = r250
    uv = reader.read_input(_csv(tmp_path / "uv.csv", ["MLII", "V1"], x * 1000, fmt="%.3f"),
                           reader.ReadOptions(fs_hz=FS, units="uV"))
    adu = reader.read_input(_csv(tmp_path / "adu.csv", ["MLII", "V1"], np.round(x * 200), fmt="%d"),
                            reader.ReadOptions(fs_hz=FS, units="adu", adc_gain=200.0))
    np.testing.assert_allclose(uv.signal, x, atol=1e-9)
    np.testing.assert_allclose(adu.signal, x, atol=1e-9)


# ---------------------------------------------------------------------------- lead names


@pytest.mark.parametrize("names, want", [
    (["MLII", "V1"], 0), (["V1", "II"], 1), (["ECG1", "ECG2"], 0), (["Lead II", "V5"], 0),
    (["ecg ii"], 0), (["V5", "ECG"], 1), (["EKG", "Resp"], 0), (["V1", "ml2"], 1),
])
def test_lead_aliases_find_the_model_lead(names, want):
    assert reader.match_leads(names, ["MLII"], "r") == [want]


def test_twelve_lead_names_are_canonicalized():
    names = ["Lead I", "ECG II", "iii", "aVR", "Lead aVL", "AVF", "V1", "v2", "ECG V3", "V4", "V5", "v6"]
    want = ["I", "II", "III", "AVR", "AVL", "AVF", "V1", "V2", "V3", "V4", "V5", "V6"]
    assert reader.match_leads(names, want, "r") == list(range(12))
    assert reader.canonical_lead("ECG1") == "ECG1" and reader.canonical_lead("Lead aVR") == "AVR"


def test_lead_override_and_unmatched_lead_messages():
    assert reader.match_leads(["V1", "V5"], ["MLII"], "r", override="v5") == [1]
    with pytest.raises(PipelineError, match=r"record r has leads \['V1', 'V5'\]; --lead 'II' is not one of them"):
        reader.match_leads(["V1", "V5"], ["MLII"], "r", override="II")
    with pytest.raises(PipelineError, match=r"record r has leads \['V1', 'V5'\]; the model needs \['MLII'\] "
                                            r"\(no lead matches \['MLII'\]; names accepted for MLII: MLII, II, ML2, "
                                            r"ECG1, ECG, EKG, EKG1; --lead NAME picks a record lead\)"):
        reader.match_leads(["V1", "V5"], ["MLII"], "r")


# ------------------------------------------------------------------------- bad inputs


@pytest.mark.parametrize("case, options, pattern", [
    ("csv_no_fs", {}, r"a\.csv: --fs is required for \.csv input \(sampling rate in Hz\)"),
    ("csv_40hz", {"fs_hz": 40.0}, r"record a: sampling rate 40 Hz is below 50 Hz"),
    ("csv_bad_cell", {"fs_hz": FS}, r"a\.csv: not a numeric table after the header row"),
    ("csv_no_header", {"fs_hz": FS}, r"a\.csv: the first row must be lead names, not samples"),
    ("csv_adu_no_gain", {"fs_hz": FS, "units": "adu"}, r"record a: --units adu needs --adc-gain > 0"),
    ("npy_no_leads", {"fs_hz": FS}, r"a\.npy: --leads is required for \.npy input"),
    ("npy_transposed", {"fs_hz": FS, "leads": ("MLII", "V1")},
     r"a\.npy: array is \(2, 500\) \(samples, leads\) but --leads names 2 lead\(s\) \['MLII', 'V1'\]; "
     r"it looks like \(leads, samples\)"),
    ("npy_pickle", {"fs_hz": FS, "leads": ("MLII",)}, r"a\.npy: not a readable \.npy array"),
    ("edf_garbage", {}, r"a\.edf: not an EDF file"),
])
def test_bad_files_give_one_clear_line(tmp_path, case, options, pattern):
    x = np.ones((500, 2))
    if case.startswith("csv"):
        path = tmp_path / "a.csv"
        if case == "csv_bad_cell":
            path.write_text("MLII,V1\n0.1,0.2\n0.1,abc\n")
        elif case == "csv_no_header":
            path.write_text("0.1,0.2\n0.1,0.3\n")
        else:
            _csv(path, ["MLII", "V1"], x)
    elif case.startswith("npy"):
        path = tmp_path / "a.npy"
        if case == "npy_pickle":
            np.save(path, np.array([{"a": 1}], dtype=object), allow_pickle=True)
        else:
            np.save(path, x.T if case == "npy_transposed" else x)
    else:
        path = tmp_path / "a.edf"
        path.write_bytes(b"not an edf file at all" * 20)
    with pytest.raises(PipelineError, match=pattern):
        reader.read_input(path, reader.ReadOptions(**options))


def test_folder_lists_wfdb_and_edf_and_refuses_name_collisions(r250, tmp_path):
    _, x = r250
    syn.write_signal(tmp_path, "one", x[:2000], FS)
    write_edf(tmp_path / "two.edf", x[:2000], FS, ["MLII", "V1"])
    _csv(tmp_path / "three.csv", ["MLII", "V1"], x[:10])  # needs --fs: not listed for a folder
    assert [p.name for p in reader.list_inputs(tmp_path)] == ["one", "two.edf"]
    write_edf(tmp_path / "one.edf", x[:2000], FS, ["MLII", "V1"])
    with pytest.raises(PipelineError, match=r"\['one'\] exist both as WFDB record and EDF file"):
        reader.list_inputs(tmp_path)
    with pytest.raises(PipelineError, match=r"missing\.csv: input file not found"):
        reader.list_inputs(tmp_path / "missing.csv")


# ---------------------------------------------------------- through a trained classifier


@pytest.fixture(scope="module")
def seg_run(tmp_path_factory):
    pytest.importorskip("tensorflow")
    import _trained_runs as TR

    return TR.trained_run(tmp_path_factory, "segments")


def test_same_record_as_csv_edf_and_npy_gives_the_same_beats_and_classes(seg_run, r250, tmp_path):
    from pipeline.serving.predict_beats import classify_beats
    from pipeline.serving.run_loader import load_run

    base, x = r250
    run = load_run(seg_run)
    ref = classify_beats(run, base, beats="detect")
    assert ref.source == "xqrs" and len(ref.sample) > 30 and ref.classified.sum() > 30
    files = {
        "csv": (_csv(tmp_path / "c.csv", ["ECG II", "V1"], x), reader.ReadOptions(fs_hz=FS)),
        "edf": (write_edf(tmp_path / "e.edf", x, FS, ["ECG1", "ECG2"]), None),
        "npy": (tmp_path / "n.npy", reader.ReadOptions(fs_hz=FS, leads=("II", "V1"))),
    }
    np.save(tmp_path / "n.npy", x)
    for kind, (path, options) in files.items():
        got = classify_beats(run, path, options=options)
        assert got.source == "xqrs" and got.input["input_format"] == kind
        np.testing.assert_array_equal(got.sample, ref.sample, err_msg=kind)
        np.testing.assert_array_equal(got.predicted, ref.predicted, err_msg=kind)
        np.testing.assert_allclose(got.probs, ref.probs, rtol=0, atol=1e-5, err_msg=kind)
    assert got.lead == "II" and "no annotations in a npy input" in got.beats_note


def test_cli_predicts_on_a_csv_file(seg_run, r250, tmp_path, capsys):
    from pipeline import predict as predict_cmd

    _, x = r250
    csv = _csv(tmp_path / "user.csv", ["ECG1", "ECG2"], x * 1000, fmt="%.3f")
    out = tmp_path / "out"
    assert predict_cmd.main(["--run", str(seg_run), "--input", str(csv), "--fs", str(FS),
                             "--units", "uV", "--out", str(out)]) == 0
    assert "user: " in capsys.readouterr().out
    s = json.loads((out / "user_prediction.json").read_text())
    assert s["input_format"] == "csv" and s["lead"] == "ECG1" and s["fs_hz"] == FS
    assert s["beats_from"] == "xqrs" and s["classified"] > 30
    assert wfdb.rdann(str(out / "user"), "pred").fs == FS


@pytest.mark.parametrize("case, argv, pattern", [
    ("csv_no_fs", [], r"user\.csv: --fs is required for \.csv input"),
    ("csv_rate_40", ["--fs", "40"], r"record user: sampling rate 40 Hz is below 50 Hz"),
    ("npy_nan_only", ["--fs", "250", "--leads", "MLII"],
     r"record user: lead MLII is all NaN \(no valid sample\); nothing to predict"),
    ("edf_non_ecg_only", [],
     r"record user has leads \['Resp'\]; the model needs \['MLII'\] \(no lead matches"),
])
def test_cli_bad_user_inputs_give_one_line(seg_run, tmp_path, capsys, case, argv, pattern):
    from pipeline import predict as predict_cmd

    if case.startswith("csv"):
        path = _csv(tmp_path / "user.csv", ["MLII"], np.sin(np.arange(4000)[:, None] / 9.0))
    elif case.startswith("npy"):
        path = tmp_path / "user.npy"
        np.save(path, np.full((4000, 1), np.nan))
    else:
        path = write_edf(tmp_path / "user.edf", np.sin(np.arange(4000)[:, None] / 9.0), FS, ["Resp"])
    rc = run_cli(predict_cmd.main, ["--run", str(seg_run), "--input", str(path),
                                    "--out", str(tmp_path / "o"), *argv])
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln]
    assert rc == 2 and len(err) == 1 and err[0].startswith("error: "), err
    assert re.search(pattern, err[0]), err[0]
