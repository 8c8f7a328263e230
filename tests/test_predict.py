"""``pipeline.predict`` on tiny runs trained through the real stages (see _trained_runs.py).

Covers: the same beats get the evaluation pipeline's probabilities (segments, segments with
RR channels and scalogram sequences), a 250 Hz record is resampled and classified (annotated and XQRS-detected beats),
NaN and flat spans are reported and their beats left unclassified, a missing lead is refused,
folders are processed record by record, denoisers write a WFDB record and a plot, and PTB-XL
records get superclass probabilities with leads matched by name.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

wfdb = pytest.importorskip("wfdb")
pytest.importorskip("tensorflow")

import _trained_runs as TR  # noqa: E402

from data_tools import synthetic as syn  # noqa: E402
from pipeline import predict as predict_cmd  # noqa: E402
from pipeline.core.io_utils import PipelineError, run_cli  # noqa: E402
from pipeline.serving import predict_beats, predict_denoise, predict_records  # noqa: E402
from pipeline.serving.run_loader import load_run, normalize  # noqa: E402


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return TR.data_root(tmp_path_factory)


@pytest.fixture(scope="module")
def seg_run(tmp_path_factory):
    return TR.trained_run(tmp_path_factory, "segments")


def _read(src_dir, name):
    return wfdb.rdrecord(str(src_dir / name)), wfdb.rdann(str(src_dir / name), "atr")


def write_table(dst_dir, name, rec, p_signal, ann=None, sig_name=None, fmt="212"):
    wfdb.wrsamp(name, fs=rec.fs, units=list(rec.units), sig_name=sig_name or list(rec.sig_name),
                p_signal=p_signal, fmt=[fmt] * p_signal.shape[1], adc_gain=[200.0] * p_signal.shape[1],
                baseline=[1024 if fmt == "212" else 0] * p_signal.shape[1], write_dir=str(dst_dir))
    if ann is not None:
        wfdb.wrann(name, "atr", sample=ann.sample, symbol=ann.symbol, aux_note=ann.aux_note,
                   write_dir=str(dst_dir))


# --------------------------------------------------------------------- beat classifiers


@pytest.mark.parametrize("which", ["segments", "segments_rr",
                                   pytest.param("sequences", marks=pytest.mark.slow)])  # 24 s
def test_probabilities_equal_the_evaluation_pipeline(tmp_path_factory, root, which):
    run = load_run(TR.trained_run(tmp_path_factory, which))
    # every beat the evaluation classifies is classified here, with the same probabilities
    pred = TR.assert_predict_matches_evaluation(run, root)
    # the others are the edge beats, with a reason
    assert all(r for r, ok in zip(pred.reason, pred.classified, strict=True) if not ok)


def test_cli_writes_pred_annotations_and_agreement(root, seg_run, tmp_path):
    out = tmp_path / "out"
    assert predict_cmd.main(["--run", str(seg_run), "--record", str(root / "raw" / "mitdb" / "s00"),
                   "--out", str(out)]) == 0
    s = json.loads((out / "s00_prediction.json").read_text())
    ref = wfdb.rdann(str(root / "raw" / "mitdb" / "s00"), "atr")
    n_beats = sum(1 for x in ref.symbol if x in "NLRAVF/")
    ann = wfdb.rdann(str(out / "s00"), "pred")
    assert len(ann.sample) == s["beats"] == n_beats
    assert set(ann.symbol) <= {"N", "A", "V", "F", "Q", "?"}
    assert ann.symbol.count("?") == s["unclassified"]["count"] > 0  # the first and last beats
    assert sum(s["per_class"].values()) == s["classified"]
    agr = s["agreement"]
    assert np.asarray(agr["confusion"]["matrix"]).sum() == agr["beats_compared"] == s["classified"]
    assert 0.0 <= agr["accuracy"] <= 1.0 and agr["confusion"]["labels"] == ["N", "S", "V", "F", "Q"]
    rows = (out / "s00_beats.csv").read_text().splitlines()
    assert len(rows) == n_beats + 1 and rows[0].startswith("beat_index,sample")


def test_250hz_record_is_resampled_and_classified(seg_run, tmp_path):
    run = load_run(seg_run)
    syn.write_record(tmp_path, "r250", seed=3, duration_s=30.0, fs_hz=250)
    pred = predict_beats.classify_beats(run, tmp_path / "r250")
    atr = wfdb.rdann(str(tmp_path / "r250"), "atr")
    beats = np.asarray([s for s, sym in zip(atr.sample, atr.symbol, strict=True) if sym not in "+~"])
    assert pred.fs_hz == 250 and pred.source == "atr"
    np.testing.assert_array_equal(pred.sample, beats)
    np.testing.assert_array_equal(pred.r360, np.round(beats * 360 / 250))
    assert pred.classified.sum() >= len(beats) - 2
    # without the annotations the beats are detected (XQRS) near the annotated ones
    det = predict_beats.classify_beats(run, tmp_path / "r250", beats="detect")
    assert det.source == "xqrs" and abs(len(det.sample) - len(beats)) <= 2
    near = np.min(np.abs(det.sample[:, None] - beats[None, :]), axis=1)
    assert np.median(near) <= 0.05 * 250
    assert predict_beats.agreement(det) is None


def test_nan_and_flat_spans_are_reported_not_classified(root, seg_run, tmp_path):
    src = root / "raw" / "mitdb"
    rec, ann = _read(src, "s02")
    x = rec.p_signal.copy()
    x[int(10 * rec.fs) : int(12 * rec.fs), 0] = np.nan
    x[int(20 * rec.fs) : int(22 * rec.fs), 0] = 0.25
    write_table(tmp_path, "gap", rec, x, ann)
    back = wfdb.rdrecord(str(tmp_path / "gap")).p_signal  # wfdb keeps NaN (invalid sample value)
    assert np.isnan(back[int(10 * rec.fs) : int(12 * rec.fs), 0]).all()
    assert np.isnan(back).sum() == int(2 * rec.fs)

    out = tmp_path / "out"
    assert predict_cmd.main(["--run", str(seg_run), "--record", str(tmp_path / "gap"), "--out", str(out)]) == 0
    s = json.loads((out / "gap_prediction.json").read_text())
    kinds = {(sp["kind"], sp["lead"]): (sp["start_s"], sp["end_s"]) for sp in s["quality"]["spans"]}
    assert kinds[("nan", "MLII")] == pytest.approx((10.0, 12.0))
    assert kinds[("flat", "MLII")] == pytest.approx((20.0, 22.0))
    reasons = s["unclassified"]["reasons"]
    assert reasons.get("window contains NaN samples", 0) > 0
    assert reasons.get("window overlaps a flat span", 0) > 0
    pred = wfdb.rdann(str(out / "gap"), "pred")
    for smp, sym, aux in zip(pred.sample, pred.symbol, pred.aux_note, strict=True):
        t = smp / rec.fs
        if 9.0 < t < 13.0 or 19.0 < t < 23.0:  # every window of these beats touches a span
            assert sym == "?" and aux.startswith("unclassified:")


def test_missing_lead_is_refused_clearly(root, seg_run, tmp_path, capsys):
    rec, ann = _read(root / "raw" / "mitdb", "s00")
    write_table(tmp_path, "other", rec, rec.p_signal, ann, sig_name=["V2", "V5"])
    run = load_run(seg_run)
    with pytest.raises(PipelineError, match=r"record other has leads \['V2', 'V5'\]; the model needs \['MLII'\]"):
        predict_beats.classify_beats(run, tmp_path / "other")
    # a folder goes record by record: the good one is done, the bad one reported
    shutil.copy(root / "raw" / "mitdb" / "s00.hea", tmp_path / "s00.hea")
    shutil.copy(root / "raw" / "mitdb" / "s00.dat", tmp_path / "s00.dat")
    shutil.copy(root / "raw" / "mitdb" / "s00.atr", tmp_path / "s00.atr")
    out = tmp_path / "out"
    assert run_cli(predict_cmd.main, ["--run", str(seg_run), "--record", str(tmp_path), "--out", str(out)]) == 2
    summary = json.loads((out / "predict_summary.json").read_text())
    by = {r["record"]: r for r in summary["records"]}
    assert by["s00"]["ok"] and not by["other"]["ok"] and summary["failed"] == 1
    assert "the model needs ['MLII']" in by["other"]["error"]
    assert "the model needs ['MLII']" in capsys.readouterr().err


# ---------------------------------------------------------------------------- denoiser


def test_denoiser_writes_a_wfdb_record_and_plot(tmp_path_factory, root, tmp_path):
    run_dir = TR.trained_run(tmp_path_factory, "denoise")
    src = root / "raw" / "mitdb"
    rec, ann = _read(src, "s03")
    x = rec.p_signal.copy()
    x[int(5 * rec.fs) : int(6 * rec.fs), 1] = np.nan
    write_table(tmp_path, "noisy", rec, x, ann)
    out = tmp_path / "out"
    assert predict_cmd.main(["--run", str(run_dir), "--record", str(tmp_path / "noisy"), "--out", str(out),
                   "--span-s", "2,8"]) == 0
    den = wfdb.rdrecord(str(out / "noisy_denoised"))
    assert den.sig_name == rec.sig_name and den.fs == rec.fs and den.units == rec.units
    assert den.p_signal.shape == x.shape
    nan = np.isnan(den.p_signal)
    np.testing.assert_array_equal(nan, np.isnan(x))
    assert np.isfinite(den.p_signal[~nan]).all() and np.abs(den.p_signal[~nan]).max() < 20
    assert (out / "noisy_denoised.png").stat().st_size > 1000
    s = json.loads((out / "noisy_denoise.json").read_text())
    assert s["baseline_free"] and s["highpass_hz"] == 0.5
    assert s["quality"]["spans"][0]["kind"] == "nan" and s["quality"]["spans"][0]["lead"] == "V1"


def test_denoise_overlap_add_is_exact_for_an_identity_model(tmp_path_factory, tmp_path):
    """With a model returning its input, the overlap-add must return the high-passed input."""
    import dataclasses

    import keras

    from pipeline.data.signal import highpass

    run = load_run(TR.trained_run(tmp_path_factory, "denoise"))
    inp = keras.Input((1440, 2))
    ident = dataclasses.replace(run, model=keras.Model(inp, keras.layers.Identity()(inp)),
                                mean=np.zeros(2), scale=np.ones(2))
    rng = np.random.default_rng(0)
    x = np.cumsum(rng.standard_normal((5000, 3)), axis=0) * 0.01
    y = predict_denoise.denoise_signal(ident, x, 360.0)
    np.testing.assert_allclose(y, highpass(x, 0.5, 360.0), atol=2e-5)


# ------------------------------------------------------------------------------ PTB-XL


def _ptbxl_run(tmp_path):
    import keras

    from models import registry
    from pipeline.core.config import PipelineConfig, dump_config

    run = tmp_path / "ptbxl_run"
    (run / "checkpoints").mkdir(parents=True)
    dump_config(PipelineConfig(), run / "config.yaml")
    kwargs = {"filters": [4, 8], "dense_units": 8}
    (run / "model.json").write_text(json.dumps({"task": "ptbxl_superdiagnostic", "model": "cnn",
                                                "kind": "classifier", "kwargs": kwargs,
                                                "input_shape": [1000, 12]}))
    rng = np.random.default_rng(0)
    (run / "normalization.json").write_text(json.dumps({
        "kind": "ptbxl", "mean": rng.normal(0, 0.01, 12).tolist(),
        "scale": rng.uniform(0.1, 0.3, 12).tolist()}))
    keras.utils.set_random_seed(0)
    model = registry.build("classifier", "cnn", (1000, 12), 5, output_activation="sigmoid", **kwargs)
    model.save(run / "checkpoints" / "best.keras")
    return run


def test_ptbxl_leads_matched_by_name_and_resampled(tmp_path):
    from pipeline.data.signal import resample

    run_dir = _ptbxl_run(tmp_path)
    run = load_run(run_dir)
    fs = 500
    rng = np.random.default_rng(1)
    x = np.cumsum(rng.standard_normal((10 * fs, 12)), axis=0) * 0.002
    order = [3, 0, 11, 5, 1, 2, 4, 6, 7, 8, 9, 10]  # stored out of order, lower-case names
    names = [predict_records.PTBXL_LEADS[i].lower() for i in order]
    wfdb.wrsamp("ecg12", fs=fs, units=["mV"] * 12, sig_name=names, p_signal=x[:, order],
                fmt=["16"] * 12, adc_gain=[1000.0] * 12, baseline=[0] * 12, write_dir=str(tmp_path))
    out = tmp_path / "out"
    assert predict_cmd.main(["--run", str(run_dir), "--record", str(tmp_path / "ecg12"), "--out", str(out)]) == 0
    s = json.loads((out / "ecg12_prediction.json").read_text())
    assert list(s["probabilities"]) == ["NORM", "MI", "STTC", "CD", "HYP"]
    x_read = wfdb.rdrecord(str(tmp_path / "ecg12")).p_signal
    x100 = resample(x_read[:, np.argsort(order)], fs, 100.0)[:1000]
    want = run.model.predict_on_batch(normalize(x100[None], run.mean, run.scale, -1))[0]
    got = np.asarray([s["probabilities"][c] for c in s["probabilities"]])
    np.testing.assert_allclose(got, want, atol=1e-5)
    assert s["unclassified_windows"] == 0 and s["zero_padded_s"] == 0

    wfdb.wrsamp("ecg11", fs=fs, units=["mV"] * 11, sig_name=names[:11], p_signal=x[:, order[:11]],
                fmt=["16"] * 11, adc_gain=[1000.0] * 11, baseline=[0] * 11, write_dir=str(tmp_path))
    with pytest.raises(PipelineError, match=r"record ecg11 has leads \[.*\]; the model needs \['I', 'II', 'III', 'AVR'"):
        predict_records.classify_ptbxl(run, tmp_path / "ecg11")
