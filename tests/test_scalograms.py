"""Scalogram stage: golden properties of the transform, agreement with pywt.cwt, the stage."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import pywt

from data_tools.synthetic import write_synthetic_database
from pipeline import scalograms as scalograms_cmd
from pipeline import windows as windows_cmd
from pipeline.core.config import ConfigError, PipelineConfig, ScalogramConfig
from pipeline.core.io_utils import PipelineError, run_cli
from pipeline.data import scalogram as S
from pipeline.data import windowing as W

FS_HZ = 125.0
T = 187
# Our float32 matrix product vs pywt.cwt on float64 input: max |diff| / max |ref|.
REL_TOL = 1e-5


def _cfg(**scalograms) -> PipelineConfig:
    return PipelineConfig(scalograms=ScalogramConfig(**scalograms))


def _rel_err(got: np.ndarray, ref: np.ndarray) -> float:
    return float(np.abs(got - ref).max() / np.abs(ref).max())


# ------------------------------------------------------------------------------ transform


@pytest.mark.parametrize("f0_hz", [3.0, 10.0, 25.0])
def test_sine_peaks_at_scale_nearest_its_frequency(f0_hz):
    cfg = _cfg()
    scales, freqs = S.scales_for(cfg), S.frequencies_hz(cfg)
    t = np.arange(T) / FS_HZ
    x = np.sin(2 * np.pi * f0_hz * t)[None]
    sc = S.cwt_batch(x, scales, "morl", FS_HZ)[0]
    energy = (sc**2).sum(axis=1)
    assert energy.argmax() == np.abs(freqs - f0_hz).argmin()


@pytest.mark.parametrize("wavelet", ["morl", "mexh", "cmor1.5-1.0"])
@pytest.mark.parametrize("method", ["conv", "fft"])
def test_cwt_batch_matches_pywt_per_beat(wavelet, method):
    rng = np.random.default_rng(0)
    t = np.arange(T) / FS_HZ
    beats = np.concatenate(
        [
            rng.standard_normal((3, T)),
            np.exp(-0.5 * ((t - 0.496) / 0.02) ** 2)[None] * 1.5,  # QRS-like spike at index 62
        ]
    ).astype(np.float32)
    scales = S.scales_for(_cfg(wavelet=wavelet))
    got = S.cwt_batch(beats, scales, wavelet, FS_HZ, chunk_beats=3)
    for b, g in zip(beats, got, strict=True):
        ref = np.abs(pywt.cwt(b.astype(np.float64), scales, wavelet, method=method)[0])
        assert _rel_err(g, ref) < REL_TOL


def test_shapes_dtype_and_default_scales():
    cfg = _cfg()
    scales, freqs = S.scales_for(cfg), S.frequencies_hz(cfg)
    assert scales.shape == freqs.shape == (32,)
    assert np.all(np.diff(scales) > 0)
    np.testing.assert_allclose(freqs, np.geomspace(40.0, 1.0, 32), rtol=1e-9)
    out = S.cwt_batch(np.zeros((5, T), np.float32), scales, "morl", FS_HZ)
    assert out.shape == (5, 32, T) and out.dtype == np.float32
    assert S.cwt_batch(np.zeros((0, T)), scales, "morl", FS_HZ).shape == (0, 32, T)


def test_explicit_scales_override_frequency_range():
    cfg = _cfg(scales=(2.0, 4.0, 8.0), f_min_hz=5.0, f_max_hz=6.0, n_scales=7)
    np.testing.assert_array_equal(S.scales_for(cfg), [2.0, 4.0, 8.0])
    np.testing.assert_allclose(S.frequencies_hz(cfg), 0.8125 * FS_HZ / np.array([2.0, 4.0, 8.0]))


def test_invalid_settings_raise():
    with pytest.raises(ConfigError, match="unknown continuous wavelet 'db4'"):
        S.scales_for(_cfg(wavelet="db4"))
    with pytest.raises(ConfigError, match="f_max_hz=70.0"):
        S.scales_for(_cfg(f_max_hz=70.0))
    with pytest.raises(ConfigError, match="Received: scales=\\[1.0, -2.0\\]"):
        S.scales_for(_cfg(scales=(1.0, -2.0)))
    with pytest.raises(ValueError, match="Received: beats.shape=\\(187,\\)"):
        S.cwt_batch(np.zeros(T), S.scales_for(_cfg()), "morl", FS_HZ)
    with pytest.raises(ConfigError, match="Received: dtype='float64'"):
        S.run(_cfg(dtype="float64"))


def test_stage_without_windows_raises(tmp_path):
    with pytest.raises(PipelineError, match="no windows; run `python -m pipeline.windows`"):
        scalograms_cmd.main(["--data-dir", str(tmp_path)])


# ---------------------------------------------------------------------------------- stage


@pytest.fixture(scope="module")
def windows_root(tmp_path_factory) -> Path:
    """Two synthetic 30 s records cut by the windows stage (built once)."""
    root = tmp_path_factory.mktemp("scalo")
    write_synthetic_database(root / "raw" / "mitdb", n_records=2, duration_s=30)
    assert windows_cmd.main(["--data-dir", str(root), "--databases", "mitdb"]) == 0
    return root


@pytest.fixture
def data_dir(windows_root, tmp_path) -> Path:
    shutil.copytree(windows_root / "windows", tmp_path / "windows")
    return tmp_path


def _outputs(d: Path) -> list[Path]:
    return sorted((d / "scalograms" / "mitdb").glob("*.npz"))


def test_stage_output_matches_windows_and_is_idempotent(data_dir, capsys):
    args = ["--data-dir", str(data_dir)]
    assert scalograms_cmd.main(args) == 0
    cfg = dataclasses.replace(
        PipelineConfig(), data=dataclasses.replace(PipelineConfig().data, data_dir=str(data_dir))
    )
    outs = _outputs(data_dir)
    assert [p.stem for p in outs] == ["s00", "s01"]
    manifest = json.loads((S.scalogram_dir(cfg) / "manifest.json").read_text())
    total = 0
    for p in outs:
        win = W.load_record(cfg, p.stem)
        with np.load(p) as z:
            sc, idx = z["scalograms"], z["beat_index"]
            np.testing.assert_allclose(z["frequencies_hz"], S.frequencies_hz(cfg))
            np.testing.assert_array_equal(z["scales"], S.scales_for(cfg))
        assert sc.shape == (len(win["beats"]), 32, T) and sc.dtype == np.float16
        np.testing.assert_array_equal(idx, win["beat_index"])
        ref = S.cwt_batch(win["beats"], S.scales_for(cfg), "morl", FS_HZ).astype(np.float16)
        np.testing.assert_array_equal(sc, ref)
        entry = manifest["records"][p.stem]
        assert entry["beats"] == len(sc) and entry["bytes"] == p.stat().st_size
        total += len(sc)
    assert manifest["totals"]["beats"] == total > 0
    assert manifest["beats_per_s"] > 0
    mtimes = [p.stat().st_mtime_ns for p in outs]
    capsys.readouterr()

    assert scalograms_cmd.main(args) == 0
    assert "nothing to do" in capsys.readouterr().out
    assert [p.stat().st_mtime_ns for p in outs] == mtimes

    assert scalograms_cmd.main(args + ["--force", "--set", "scalograms.workers=1"]) == 0
    assert "nothing to do" not in capsys.readouterr().out
    assert [p.stat().st_mtime_ns for p in outs] != mtimes


def test_stage_explicit_scales_and_float32(data_dir):
    args = [
        "--data-dir",
        str(data_dir),
        "--set",
        "scalograms.scales=[2.0, 4.0, 8.0]",
        "--set",
        "scalograms.dtype=float32",
        "--set",
        "scalograms.workers=1",
    ]
    assert scalograms_cmd.main(args) == 0
    with np.load(_outputs(data_dir)[0]) as z:
        assert z["scalograms"].shape[1:] == (3, T) and z["scalograms"].dtype == np.float32
        np.testing.assert_array_equal(z["scales"], [2.0, 4.0, 8.0])


@pytest.mark.parametrize("damage", ["truncated", "missing"])
def test_damaged_windows_file_exits_2_and_writes_nothing(data_dir, capsys, damage):
    bad = data_dir / "windows" / "mitdb" / "s01.npz"
    if damage == "truncated":
        bad.write_bytes(bad.read_bytes()[:1000])
    else:
        bad.unlink()
    assert run_cli(scalograms_cmd.main, ["--data-dir", str(data_dir)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(bad) in err
    out_dir = data_dir / "scalograms" / "mitdb"
    assert not out_dir.exists() or not any(out_dir.iterdir())


def test_float16_overflow_is_refused(tmp_path):
    t = np.arange(T) / FS_HZ
    beats = (1e5 * np.sin(2 * np.pi * 3.0 * t))[None].astype(np.float32)
    src, dst = tmp_path / "w.npz", tmp_path / "s.npz"
    np.savez(src, beats=beats, beat_index=np.zeros(1, np.int32))
    with pytest.raises(PipelineError, match="overflow float16; set scalograms.dtype=float32"):
        S.process_record(src, dst, ScalogramConfig(), FS_HZ)
    assert not dst.exists()
    S.process_record(src, dst, ScalogramConfig(dtype="float32"), FS_HZ)
    with np.load(dst) as z:
        assert np.isfinite(z["scalograms"]).all()
