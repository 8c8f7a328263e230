"""The pass-through gate after a denoiser: its arithmetic, its choice on validation
(``python -m pipeline.tune_gate``) and its use by final evaluation and prediction."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import _trained_runs as trained  # noqa: E402
import numpy as np
import pytest

from pipeline.core.io_utils import PipelineError, run_cli
from pipeline.evaluation import pass_through as pt


def _signal_and_noise(snr_db: float, seed: int = 0):
    rng = np.random.default_rng(seed)
    t = np.arange(720) / 360.0
    s = np.stack([np.sin(2 * np.pi * 1.3 * t), np.cos(2 * np.pi * 0.9 * t)], axis=1)[None]
    n = rng.normal(size=s.shape)
    n -= n.mean(axis=1, keepdims=True)
    power_s = np.mean((s - s.mean(axis=1, keepdims=True)) ** 2, axis=1, keepdims=True)
    n *= np.sqrt(power_s / np.mean(n ** 2, axis=1, keepdims=True) / 10 ** (snr_db / 10))
    return s, s + n


def test_estimated_snr_is_the_power_ratio_of_kept_to_removed():
    clean, noisy = _signal_and_noise(17.0)
    est = pt.estimated_input_snr_db(noisy, clean)  # a perfect denoiser removes the noise exactly
    assert est.shape == (1, 2)
    np.testing.assert_allclose(est, 17.0, atol=1e-9)


def test_gate_passes_clean_looking_input_and_keeps_the_output_of_noisy_input():
    clean, noisy = _signal_and_noise(24.0)
    _, very_noisy = _signal_and_noise(0.0, seed=1)
    setting = pt.GateSetting(threshold_db=12.0, width_db=0.5)
    near = pt.apply(noisy, clean, setting)  # removed part 24 dB down: pass the input
    np.testing.assert_allclose(near, noisy, atol=1e-6)
    far = pt.apply(very_noisy, clean, setting)  # removed part 0 dB: keep the model's output
    np.testing.assert_allclose(far, clean, atol=1e-6)
    half = pt.apply(noisy, clean, pt.GateSetting(24.0, 1.0))
    np.testing.assert_allclose(half, (noisy + clean) / 2, atol=1e-9)


def test_gate_is_the_same_in_mv_and_in_normalised_units():
    clean, noisy = _signal_and_noise(14.0)
    mean, scale = np.array([0.3, -0.1]), np.array([2.0, 0.5])
    for setting in (pt.GateSetting(15.0, 2.0), pt.GateSetting(15.0, 2.0, max_flatness=0.25)):
        in_mv = pt.apply(noisy, clean, setting)
        normed = pt.apply((noisy - mean) / scale, (clean - mean) / scale, setting) * scale + mean
        np.testing.assert_allclose(normed, in_mv, atol=1e-9)


def test_gate_refuses_bad_settings_and_mismatched_shapes():
    with pytest.raises(PipelineError, match="width_db > 0; got 12.0, 0.0"):
        pt.GateSetting(12.0, 0.0)
    with pytest.raises(PipelineError, match=r"one shape; got \(1, 720, 2\) and \(1, 720, 1\)"):
        pt.apply(np.zeros((1, 720, 2)), np.zeros((1, 720, 1)), pt.GateSetting(12.0, 1.0))


def test_removed_flatness_is_near_one_for_white_noise_and_near_zero_for_a_tone():
    clean, noisy = _signal_and_noise(12.0)
    white = pt.removed_flatness(noisy, clean)  # a perfect denoiser removes white noise
    assert white.shape == (1, 2) and (white > 0.45).all()  # |FFT|^2 of Gaussian noise: e^-gamma
    t = np.arange(720) / 360.0
    hum = 0.2 * np.sin(2 * np.pi * 4.5 * t)[None, :, None]  # a removed narrow-band part
    assert (pt.removed_flatness(clean + hum, clean) < 0.01).all()
    np.testing.assert_allclose(pt.removed_flatness(3.0 * noisy, 3.0 * clean), white, rtol=1e-9)


def test_flatness_limit_keeps_the_output_where_the_removed_part_is_white():
    clean, noisy = _signal_and_noise(24.0)  # looks clean to the SNR estimate alone
    one_feature = pt.GateSetting(12.0, 0.5)
    np.testing.assert_allclose(pt.apply(noisy, clean, one_feature), noisy, atol=1e-6)
    limited = pt.GateSetting(12.0, 0.5, max_flatness=0.25)
    np.testing.assert_allclose(pt.apply(noisy, clean, limited), clean, atol=1e-12)
    t = np.arange(720) / 360.0
    hum = 0.01 * np.sin(2 * np.pi * 4.5 * t)[None, :, None]  # narrow-band and small: passed
    np.testing.assert_allclose(pt.apply(clean + hum, clean, limited), clean + hum, atol=1e-6)
    assert limited.name == "gate_t12_w0.5_f0.25" and one_feature.name == "gate_t12_w0.5"
    assert limited.to_json() == {"threshold_db": 12.0, "width_db": 0.5, "max_flatness": 0.25}
    assert one_feature.to_json() == {"threshold_db": 12.0, "width_db": 0.5}
    with pytest.raises(PipelineError, match=r"max_flatness must be in \(0, 1\] or null; got 1.5"):
        pt.GateSetting(12.0, 0.5, 1.5)
    with pytest.raises(PipelineError, match="gate_t12_w0.5_f0.25: this gate limits"):
        pt.pass_weight(np.zeros((1, 2)), limited)


def test_white_lowpass_filters_only_noisy_white_windows_and_needs_the_rate():
    clean, noisy = _signal_and_noise(6.0)  # white, and estimated 6 dB: low-passed
    half = clean + (noisy - clean) * 0.5  # a model that removed half the noise
    setting = pt.GateSetting(12.0, 0.5, max_flatness=0.25, white_lowpass_hz=40.0)
    out = pt.apply(noisy, half, setting, fs_hz=360.0)
    np.testing.assert_allclose(out, pt.white_lowpass(half, 40.0, 360.0), atol=1e-12)
    assert np.mean((out - clean) ** 2) < 0.3 * np.mean((half - clean) ** 2)
    c24, n24 = _signal_and_noise(40.0)  # white but estimated 40 dB: left to the gate alone
    plain = pt.GateSetting(12.0, 0.5, max_flatness=0.25)
    np.testing.assert_array_equal(pt.apply(n24, c24, setting, fs_hz=360.0), pt.apply(n24, c24, plain))
    assert setting.name == "gate_t12_w0.5_f0.25_lp40"
    assert setting.to_json() == {"threshold_db": 12.0, "width_db": 0.5, "max_flatness": 0.25,
                                 "white_lowpass_hz": 40.0, "white_max_snr_db": pt.WHITE_MAX_SNR_DB}
    with pytest.raises(PipelineError, match="gate_t12_w0.5_f0.25_lp40: this gate low-passes"):
        pt.apply(noisy, half, setting)
    with pytest.raises(PipelineError, match="white_lowpass_hz needs max_flatness"):
        pt.GateSetting(12.0, 0.5, white_lowpass_hz=40.0)
    with pytest.raises(PipelineError, match=r"white_lowpass_hz must be in \(0, fs/2\); got 40.0 at 50"):
        pt.apply(noisy, half, setting, fs_hz=50.0)
    assert all(f is not None for _, _, f, lp in pt.GRID if lp is not None) and len(pt.GRID) == 624


def _mixed_batch():
    """Windows a gate treats differently: white on both leads, white on one lead only (the
    other near-clean: passed, so the bank cannot use its shared low-pass), near-clean, and
    band-limited noise; plus a float32 model output."""
    rng = np.random.default_rng(5)
    t = np.arange(720) / 360.0
    clean = np.stack([np.sin(2 * np.pi * 1.1 * t), np.cos(2 * np.pi * 0.7 * t)], axis=1)
    white = rng.normal(size=(4, 720, 2))
    wander = np.cumsum(rng.normal(size=(720, 2)), axis=0) * 0.02
    tone = 1e-3 * np.sin(2 * np.pi * 0.3 * t)
    noise = np.stack([0.4 * white[0], np.stack([0.4 * white[1, :, 0], tone], 1),
                      1e-3 * white[2], wander])
    noisy = (clean + noise).astype(np.float32)
    den = (clean + 0.3 * noise).astype(np.float32)
    return noisy, den


def test_gate_bank_gives_every_grid_setting_bit_for_bit_what_apply_gives():
    noisy, den = _mixed_batch()
    settings = [pt.GateSetting(*g) for g in pt.GRID]
    posts = pt.GateBank(settings, 360.0).posts()
    assert len(posts) == len(pt.GRID) == 624
    lowpassed = 0
    for s in settings:
        want = pt.apply(noisy, den, s, fs_hz=360.0)
        got = posts[s.name](noisy, den)
        assert got.dtype == np.float32 and np.array_equal(got, want), s.name
        lowpassed += s.white_lowpass_hz is not None and not np.array_equal(
            want, pt.apply(noisy, den, pt.GateSetting(s.threshold_db, s.width_db, s.max_flatness),
                           fs_hz=360.0))
    assert lowpassed > 0  # the low-pass branch (shared and per-window paths) was exercised


def test_gate_bank_recomputes_its_features_for_a_new_batch():
    noisy, den = _mixed_batch()
    s = pt.GateSetting(10.0, 1.0, 0.35, 60.0)
    g = pt.GateBank([s], 360.0).posts()[s.name]
    first = g(noisy, den)
    other_noisy, other_den = noisy[::-1].copy(), den[::-1].copy()
    np.testing.assert_array_equal(g(other_noisy, other_den), pt.apply(other_noisy, other_den, s, 360.0))
    np.testing.assert_array_equal(g(noisy, den), first)
    with pytest.raises(PipelineError, match="sampling rate"):
        pt.GateBank([s]).posts()[s.name](noisy, den)
    with pytest.raises(PipelineError, match=r"one shape; got \(4, 720, 2\) and \(4, 720, 1\)"):
        g(noisy, den[..., :1])


def test_gate_bank_benchmark_checks_equality_and_reports_a_ratio(tmp_path, capsys):
    from benchmarks import bench_gate_bank

    out = tmp_path / "bench.json"
    argv = ["--batches", "1", "--batch-size", "5", "--settings", "40", "--out", str(out)]
    assert run_cli(bench_gate_bank.main, argv) == 0
    res = json.loads(out.read_text())
    assert res["bitwise_equal"] is True and res["settings"] == 40
    assert res["ratio_baseline_over_bank"] > 0 and "ratio" in capsys.readouterr().out
    assert run_cli(bench_gate_bank.main, ["--batches", "0"]) == 2
    with pytest.raises(PipelineError, match=r"--batches 0, .*must be >= 1"):
        bench_gate_bank.main(["--batches", "0"])
    with pytest.raises(PipelineError, match=r"--settings -1: .*settings >= 0"):
        bench_gate_bank.main(["--settings", "-1"])


def test_gate_file_missing_null_or_broken(tmp_path):
    assert pt.load(tmp_path) is None
    (tmp_path / pt.GATE_FILE).write_text(json.dumps({"chosen": None}))
    assert pt.load(tmp_path) is None
    (tmp_path / pt.GATE_FILE).write_text(json.dumps({"chosen": {"threshold_db": 18, "width_db": 2}}))
    assert pt.load(tmp_path) == pt.GateSetting(18.0, 2.0)
    (tmp_path / pt.GATE_FILE).write_text(json.dumps(
        {"chosen": {"threshold_db": 8, "width_db": 1, "max_flatness": 0.35}}))
    assert pt.load(tmp_path) == pt.GateSetting(8.0, 1.0, 0.35)
    white = pt.GateSetting(8.0, 1.0, 0.35, white_lowpass_hz=60.0)
    (tmp_path / pt.GATE_FILE).write_text(json.dumps({"chosen": white.to_json()}))
    assert pt.load(tmp_path) == white
    (tmp_path / pt.GATE_FILE).write_text(json.dumps({"chosen": {"threshold": 18}}))
    with pytest.raises(PipelineError, match=r"pass_through_gate.json: not a pass-through gate "
                                            r"file \(KeyError"):
        pt.load(tmp_path)


def _denoise_run(tmp_path_factory, tmp_path: Path) -> Path:
    src = trained.trained_run(tmp_path_factory, "denoise")
    dst = tmp_path / src.name
    shutil.copytree(src, dst)
    return dst


def test_served_chain_input_is_what_predict_feeds_the_model_on_a_whole_recording():
    """Predict high-passes the whole noisy recording; the reference is the high-passed clean
    recording. The evaluation's per-window emulation (reference + high-passed noise) must give
    the model the same input, up to the windows' edges."""
    from pipeline.data.signal import highpass
    from pipeline.evaluation.evaluate import ServedChain

    fs, rng = 360.0, np.random.default_rng(0)
    t = np.arange(36000) / fs
    raw = np.stack([np.sin(2 * np.pi * 1.2 * t) + 0.3 * np.sin(2 * np.pi * 0.2 * t) + 0.5,
                    np.cos(2 * np.pi * 1.1 * t)], axis=1)
    ref = highpass(raw, 0.5, fs)
    drift = np.stack([0.8 * np.sin(2 * np.pi * 0.15 * t + 1), 0.5 * np.sin(2 * np.pi * 0.3 * t)],
                     axis=1) + 0.01 * rng.normal(size=raw.shape)
    in_predict = highpass(raw + drift, 0.5, fs)
    chain = ServedChain(0.5)
    for a in (3600, 10000, 20000):
        w = slice(a, a + 1440)
        xin = chain.model_input((ref + drift)[w][None], ref[w][None], fs)[0]
        assert xin.dtype == np.float32
        err = np.mean((xin - in_predict[w]) ** 2) / np.mean(drift[w] ** 2)
        inner = np.mean((xin - in_predict[w])[180:-180] ** 2) / np.mean(drift[w] ** 2)
        assert err < 0.02 and inner < 0.002  # measured: 0.5-0.8 % and 0.05-0.1 %
        # the drift is what the high-pass removes: about 1 % of its power reaches the model
        assert np.mean((xin - ref[w]) ** 2) < 0.03 * np.mean(drift[w] ** 2)
    white = 0.1 * rng.normal(size=(1, 1440, 2))
    kept = chain.model_input(white, np.zeros_like(white), fs)  # white noise passes
    assert np.corrcoef(kept.ravel(), white.ravel())[0, 1] > 0.99


def test_tune_gate_chooses_on_validation_and_final_eval_scores_the_gate_beside_the_model(
        tmp_path_factory, tmp_path, capsys, monkeypatch):
    from pipeline import final_eval, tune_gate

    run = _denoise_run(tmp_path_factory, tmp_path)
    assert run_cli(tune_gate.main, ["--run", str(run), "--max-windows", "20"]) == 0
    saved = json.loads((run / pt.GATE_FILE).read_text())
    assert len(saved["grid"]) == len(pt.GRID) and saved["noise_part"] == "val"
    # scored on the chain predict runs (the config high-passes the recording first)
    assert saved["input"] == "served" and saved["highpass_hz"] == 0.5
    best = max(r["val_mean_snr_imp_db"] for r in saved["grid"])
    assert (saved["chosen"] is None) == (best <= saved["no_gate_val_mean_snr_imp_db"])
    assert "Pass-through gate: chosen on validation" in (run / "gate_tuning.md").read_text()
    assert not (run.parent / "test_reads.jsonl").exists()  # validation only: no test read
    # a gate that passes everything through: the gated method must score exactly 0 dB
    (run / pt.GATE_FILE).write_text(json.dumps({"chosen": {"threshold_db": -200.0,
                                                           "width_db": 1.0}}))
    assert run_cli(final_eval.main, ["--run", str(run), "--max-test-windows", "20",
                                     "--bootstrap", "10"]) == 0
    m = json.loads((run / "metrics_test.json").read_text())
    model = m["predictions"]["method"]
    assert m["pass_through_gate"] == {"threshold_db": -200.0, "width_db": 1.0}
    gated = m["results"][f"{model}+gate"]
    for by_snr in gated.values():
        for cell in by_snr.values():
            assert cell["snr_imp_db"]["mean"] == pytest.approx(0.0, abs=1e-4)
    assert gated.keys() == m["results"][model].keys()
    # the served chain with a gate that passes everything: the model's input in predict, the
    # reference plus the high-passed noise; white noise passes the high-pass (about 0 dB),
    # baseline wander does not
    served = m["results"][f"{model}+hp+gate"]
    assert served.keys() == gated.keys() and f"{model}+hp" in m["results"]
    for level, cell in served["gaussian"].items():
        assert abs(cell["snr_imp_db"]["mean"]) < 0.1, level
    assert all(cell["snr_imp_db"]["mean"] > 1.0 for cell in served["bw"].values())
    from data_tools import denoise_table

    level = next(iter(gated["mix"]))  # the tiny config's levels
    monkeypatch.setattr(denoise_table, "CELLS", (("mix", level),))
    monkeypatch.setattr(denoise_table, "P5_CELL", ("mix", level))
    lines = denoise_table.table([run]).splitlines()
    gate_line = next(line for line in lines if line.startswith(f"| {model}+gate (`"))
    import re

    # the mean, its interval and the 5th percentile are all zero (printed +0.00 or -0.00:
    # the sign of a rounding error differs between machines)
    cells = " ".join(gate_line.split("|")[4:6])
    numbers = [float(v) for v in re.findall(r"[-+]\d+\.\d+", cells)]
    assert len(numbers) == 4 and all(abs(v) < 0.005 for v in numbers)


def test_prediction_applies_the_runs_gate(tmp_path_factory, tmp_path):
    from pipeline.serving.predict_denoise import denoise_signal
    from pipeline.serving.run_loader import load_run

    run_dir = _denoise_run(tmp_path_factory, tmp_path)
    rng = np.random.default_rng(3)
    x = np.cumsum(rng.normal(size=(3600, 2)), axis=0) * 0.01
    plain = denoise_signal(load_run(run_dir), x, 360.0)
    (run_dir / pt.GATE_FILE).write_text(json.dumps({"chosen": {"threshold_db": -200.0,
                                                               "width_db": 1.0}}))
    run = load_run(run_dir)
    assert run.gate == pt.GateSetting(-200.0, 1.0)
    passed = denoise_signal(run, x, 360.0)
    (run_dir / pt.GATE_FILE).write_text(json.dumps({"chosen": {"threshold_db": 200.0,
                                                               "width_db": 1.0}}))
    closed = denoise_signal(load_run(run_dir), x, 360.0)
    np.testing.assert_allclose(closed, plain, atol=1e-5)  # gate never opens: the model alone
    assert not np.allclose(passed, plain, atol=1e-3)
    from pipeline.data.signal import highpass

    np.testing.assert_allclose(passed[720:-720], highpass(x, 0.5, 360.0)[720:-720], atol=1e-3)


def test_tune_gate_refuses_a_classifier_run_naming_its_task(tmp_path_factory, capsys):
    from pipeline import tune_gate

    run = trained.trained_run(tmp_path_factory, "segments")
    assert run_cli(tune_gate.main, ["--run", str(run)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "a pass-through gate is for denoiser runs; this run's task is " \
        "mitdb_aami5_segments" in err[0]
