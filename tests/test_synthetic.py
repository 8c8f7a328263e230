"""Seeded synthetic WFDB records: readable by wfdb, deterministic, annotated as promised."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

wfdb = pytest.importorskip("wfdb")

from data_tools import synthetic as syn  # noqa: E402
from pipeline.data import labels as L  # noqa: E402


def _files(folder):
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


def test_write_record_reads_back_with_wfdb(tmp_path):
    hea = syn.write_record(tmp_path, "r0", seed=0, duration_s=20)
    assert hea == tmp_path / "r0.hea"
    assert {p.name for p in tmp_path.iterdir()} == {"r0.hea", "r0.dat", "r0.atr"}
    rec = wfdb.rdrecord(str(tmp_path / "r0"))
    assert rec.fs == 360 and rec.sig_name == ["MLII", "V1"] and rec.fmt == ["212", "212"]
    assert rec.p_signal.shape == (20 * 360, 2)
    assert (tmp_path / "r0.dat").stat().st_size == 20 * 360 * 3  # 2 x 12 bit per sample
    assert np.isfinite(rec.p_signal).all()
    ann = wfdb.rdann(str(tmp_path / "r0"), "atr")
    assert np.all(np.diff(ann.sample) >= 0)
    assert ann.sample.max() < rec.sig_len
    # Two non-beat annotations ('+' rhythm change with aux '(N', '~' signal quality).
    non_beats = [s for s in ann.symbol if L.symbol_class(s) is None]
    assert sorted(non_beats) == ["+", "~"]
    assert ann.aux_note[ann.symbol.index("+")].rstrip("\x00") == "(N"


def test_pattern_symbols_and_r_peaks(tmp_path):
    pattern = ["N", "N", "A", "N", "V", "N", "F", "/"]
    syn.write_record(tmp_path, "p", seed=3, duration_s=30, pattern=pattern)
    rec = wfdb.rdrecord(str(tmp_path / "p"))
    ann = wfdb.rdann(str(tmp_path / "p"), "atr")
    beats = [
        (s, n) for s, n in zip(ann.symbol, ann.sample, strict=True) if L.symbol_class(s) is not None
    ]
    syms = [s for s, _ in beats]
    assert syms == [pattern[i % len(pattern)] for i in range(len(syms))]
    assert len(syms) >= 30
    x = rec.p_signal[:, 0]
    for s, n in beats:
        w = x[n - 10 : n + 11]
        if s in "NA":  # tall narrow positive R exactly at the annotated sample
            assert abs(int(np.argmax(w)) - 10) <= 1
        if s == "V":  # ventricular beats are negative, wide
            assert w[10] < -1.0


def test_rr_prematurity_and_compensatory_pause():
    rng = np.random.default_rng(0)
    sig, samples, syms = syn.synth_signal(["N", "N", "N", "V"], rng, duration_s=60)
    rr = np.diff(samples) / syn.FS_HZ
    pre_v = [rr[i - 1] for i in range(1, len(syms)) if syms[i] == "V"]
    post_v = [rr[i] for i in range(len(syms) - 1) if syms[i] == "V"]
    normal = [rr[i - 1] for i in range(1, len(syms)) if syms[i] == "N" and syms[i - 1] == "N"]
    assert np.mean(pre_v) < 0.75 * np.mean(normal)  # premature by 35 %
    assert np.mean(post_v) > 1.2 * np.mean(normal)  # compensatory pause
    assert sig.shape == (60 * syn.FS_HZ, 2)


def test_same_seed_same_bytes_other_seed_differs(tmp_path):
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    syn.write_record(a, "x", seed=5, duration_s=15)
    syn.write_record(b, "x", seed=5, duration_s=15)
    syn.write_record(c, "x", seed=6, duration_s=15)
    assert _files(a) == _files(b)
    assert _files(a)["x.dat"] != _files(c)["x.dat"]


def test_write_synthetic_database(tmp_path):
    names = syn.write_synthetic_database(tmp_path, n_records=3, seed=1, duration_s=15)
    assert names == ["s00", "s01", "s02"]
    assert (tmp_path / "RECORDS").read_text().split() == names
    sums = (tmp_path / "SHA256SUMS.txt").read_text().splitlines()
    listed = dict(line.split(" ", 1)[::-1] for line in sums)
    expected = {f"{n}.{ext}" for n in names for ext in ("hea", "dat", "atr")} | {"RECORDS"}
    assert set(listed) == expected
    for rel, digest in listed.items():
        assert hashlib.sha256((tmp_path / rel).read_bytes()).hexdigest() == digest
    # Record i uses seed + i: s01 of seed 1 equals s00 of seed 2.
    other = tmp_path / "other"
    syn.write_synthetic_database(other, n_records=1, seed=2, duration_s=15)
    assert (other / "s00.dat").read_bytes() == (tmp_path / "s01.dat").read_bytes()


def test_all_patterns_use_known_beat_symbols():
    for pattern in syn._RECORD_PATTERNS:
        for s in pattern:
            assert L.symbol_class(s) is not None
            assert s in syn._MORPH


@pytest.mark.parametrize("fs_hz", [250, 128])
def test_other_sampling_rate(tmp_path, fs_hz):
    syn.write_record(tmp_path, "lo", seed=0, duration_s=20, fs_hz=fs_hz)
    syn.write_record(tmp_path, "hi", seed=0, duration_s=20)
    lo = wfdb.rdrecord(str(tmp_path / "lo"))
    assert lo.fs == fs_hz and lo.sig_len == 20 * fs_hz
    a_lo = wfdb.rdann(str(tmp_path / "lo"), "atr")
    a_hi = wfdb.rdann(str(tmp_path / "hi"), "atr")
    assert a_lo.symbol == a_hi.symbol
    # Same beat times (to one sample at the lower rate).
    np.testing.assert_allclose(a_lo.sample / fs_hz, a_hi.sample / 360, atol=1.0 / fs_hz)
    # The resampled signal still peaks at the R annotations of N beats.
    x = lo.p_signal[:, 0]
    for s, n in zip(a_lo.symbol, a_lo.sample, strict=True):
        if s == "N" and 5 <= n < len(x) - 5:
            assert abs(int(np.argmax(x[n - 5 : n + 6])) - 5) <= 1
