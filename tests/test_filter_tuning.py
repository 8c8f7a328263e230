"""The wavelet baseline's settings chosen on validation patients (issue 16, item 2).

``python -m pipeline.tune_filters`` on synthetic records: every grid setting is scored on the
denoising split's validation records with the ``val`` noise segment, the chosen one is the
best by the denoisers' objective, and no test record is read.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("wfdb")
pytest.importorskip("tensorflow")

import _trained_runs as TR  # noqa: E402

from pipeline.evaluation import classic_filters  # noqa: E402
from pipeline.protocol import filter_tuning  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def test_tune_filters_chooses_the_best_validation_setting_without_reading_test(
        tmp_path_factory, tmp_path, monkeypatch, capsys):
    from pipeline import tune_filters
    from pipeline.data import loader

    root = TR.data_root(tmp_path_factory)
    read: list[str] = []
    real = loader.create_dataset

    def spy(files, *a, **k):
        read.extend(str(f) for f in files)
        return real(files, *a, **k)

    monkeypatch.setattr(loader, "create_dataset", spy)
    grid = filter_tuning.WAVELET_GRID[:2] + filter_tuning.WAVELET_GRID[-2:]
    monkeypatch.setattr(filter_tuning, "WAVELET_GRID", grid)
    out = tmp_path / "wt"
    assert tune_filters.main([*TR._argv(root), "--max-windows", "60", "--out", str(out)]) == 0
    sel = json.loads((out / "selection.json").read_text())
    assert len(sel["grid"]) == 4 and sel["noise_part"] == "val"
    best = max(sel["grid"], key=lambda r: r["val_mean_snr_imp_db"])
    assert sel["chosen"] == {k: best[k] for k in grid[0]}
    for row in sel["grid"]:  # the objective is the mean of the per-cell means
        cells = [v for by in row["val_snr_imp_db"].values() for lab, v in by.items()
                 if lab != "clean"]
        assert row["val_mean_snr_imp_db"] == pytest.approx(np.mean(cells))
    records = {f.split("/")[-1].split("-")[0] for f in read}
    assert records == set(sel["val_records"])
    assert filter_tuning.setting_name(sel["chosen"]) in (out / "report.md").read_text()
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert printed["chosen"] == sel["chosen"]


def test_tune_filters_refuses_a_negative_window_count(capsys):
    from pipeline import tune_filters

    with pytest.raises(SystemExit) as e:
        tune_filters.main(["--max-windows", "-1"])
    assert e.value.code == 2
    assert "--max-windows must be >= 0. Received: --max-windows=-1" in capsys.readouterr().err


def test_wavelet_highpass_removes_a_slow_baseline_and_keeps_a_fast_tone():
    fs, t = 360.0, np.arange(1440) / 360.0
    tone = np.sin(2 * np.pi * 10 * t)
    drift = 2.0 * np.sin(2 * np.pi * 0.1 * t)
    x = (tone + drift)[None, :, None]
    kept = classic_filters.wavelet_denoise(x, fs, threshold_scale=0.0, highpass_hz=0.5)
    mid = slice(360, 1080)
    assert np.abs(kept[0, mid, 0] - tone[mid]).max() < 0.05
    raw = classic_filters.wavelet_denoise(x, fs, threshold_scale=0.0, highpass_hz=0.0)
    np.testing.assert_allclose(raw[0, :, 0], x[0, :, 0], atol=1e-5)  # no threshold: identity


def test_wavelet_hard_threshold_keeps_large_coefficients_unshrunk():
    rng = np.random.default_rng(0)
    x = rng.normal(0, 0.01, (1, 1440, 1))
    x[0, 700, 0] = 5.0
    soft = classic_filters.wavelet_denoise(x, 360.0, threshold_mode="soft")
    hard = classic_filters.wavelet_denoise(x, 360.0, threshold_mode="hard")
    assert hard[0, 700, 0] > soft[0, 700, 0]
    assert abs(hard[0, 700, 0] - 5.0) < abs(soft[0, 700, 0] - 5.0)


def test_wavelet_defaults_are_the_validation_choice():
    import inspect

    run = classic_filters.__doc__
    defaults = {k: v.default for k, v in inspect.signature(classic_filters.wavelet_denoise)
                .parameters.items() if v.default is not inspect.Parameter.empty}
    sel = json.loads((ROOT / "Research_Runs" / "2026-12-02_wavelet_tuning" / "selection.json")
                     .read_text())
    assert {k: defaults[k] for k in sel["chosen"]} == sel["chosen"]
    assert "2026-12-02_wavelet_tuning" in run


@pytest.mark.parametrize("kwargs, message", [
    ({"threshold_mode": "garrote"}, "threshold_mode='garrote'"),
    ({"threshold_scale": -1.0}, "threshold_scale=-1.0"),
    ({"highpass_hz": 200.0}, "need 0 < highpass_hz < fs_hz/2. Received: highpass_hz=200.0"),
])
def test_wavelet_refuses_bad_settings_naming_them(kwargs, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        classic_filters.wavelet_denoise(np.zeros((1, 64, 1)), 360.0, **kwargs)
