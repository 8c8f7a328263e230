"""Windows stage on seeded synthetic WFDB records (fast) and on the PhysioNet mirror.

Every test writes its records into ``tmp_path/raw/mitdb`` with ``data_tools.synthetic`` and runs
the stage through ``pipeline.windows.main`` (``run_cli`` for exit codes). The mirror is only
ever read: ``raw/mitdb`` and ``raw/ptbxl`` are symlinks to it.
"""

from __future__ import annotations

import collections
import json
import os
import re
import shutil
import stat

import numpy as np
import pandas as pd
import pytest

wfdb = pytest.importorskip("wfdb")

from data_tools import synthetic as syn  # noqa: E402
from pipeline import windows as windows_cmd  # noqa: E402
from pipeline.core.config import WindowsConfig  # noqa: E402
from pipeline.core.io_utils import (  # noqa: E402
    PipelineError,
    atomic_path,
    atomic_savez,
    load_npz,
    run_cli,
)
from pipeline.data import labels as L  # noqa: E402
from pipeline.data import signal  # noqa: E402
from pipeline.data import splits as S  # noqa: E402
from pipeline.data import windowing as W  # noqa: E402

CLASSES = L.AAMI5_CLASSES
DURATION_S = 30.0


# ----------------------------------------------------------------------------- helpers


def _argv(root, *extra, workers=1):
    return [
        "--data-dir",
        str(root),
        "--databases",
        "mitdb",
        "--set",
        f"windows.workers={workers}",
        *extra,
    ]


def _run(root, *extra, workers=1):
    assert windows_cmd.main(_argv(root, *extra, workers=workers)) == 0
    return json.loads((root / "windows" / "mitdb" / "manifest.json").read_text())


def _make_db(root, n_records=2, seed=0, duration_s=DURATION_S):
    raw = root / "raw" / "mitdb"
    names = syn.write_synthetic_database(raw, n_records=n_records, seed=seed, duration_s=duration_s)
    return raw, names


def _ann_beats(base):
    """(samples, symbols) of the beat annotations of a record, read with wfdb directly."""
    ann = wfdb.rdann(str(base), "atr")
    keep = [i for i, s in enumerate(ann.symbol) if L.symbol_class(s) is not None]
    return np.asarray(ann.sample)[keep], [ann.symbol[i] for i in keep]


def _r_index(beat):
    """Index of the largest |sample| in the first 0.8 s of a 125 Hz beat: the R peak at 62,
    before any following beat (the earliest, a premature one, starts at ~62 + 65)."""
    return int(np.argmax(np.abs(beat[:100])))


def _tmp_files(root):
    return [p for p in root.rglob("*") if p.name.endswith(".tmp") or p.name.startswith(".")]


def _out_files(root):
    out = root / "windows" / "mitdb"
    return sorted(p.name for p in out.iterdir()) if out.is_dir() else []


@pytest.fixture(scope="module")
def processed(tmp_path_factory):
    """Three synthetic records (N, S, V, F and Q beats) cut once, shared read-only."""
    root = tmp_path_factory.mktemp("windows")
    raw, names = _make_db(root, n_records=3)
    manifest = _run(root)
    return root, raw, names, manifest


# ------------------------------------------------------------------------- beat counts


def test_counts_equal_annotations_minus_dropped(processed):
    root, raw, names, m = processed
    assert m["classes"] == list(CLASSES) and sorted(m["records"]) == names
    seen = set()
    for rec in names:
        samples, symbols = _ann_beats(raw / rec)
        ann_counts = collections.Counter(L.symbol_class(s) for s in symbols)
        e = m["records"][rec]
        assert e["annotated_beats"] == {c: ann_counts.get(c, 0) for c in CLASSES}
        z = load_npz(root / "windows" / "mitdb" / f"{rec}.npz")
        for dataset, idx_key, lab_key in (
            ("beats", "beat_index", "beat_label"),
            ("segments", "segment_beat_index", "segment_label"),
        ):
            dropped = [d for d in m["dropped"] if d["record"] == rec and d["dataset"] == dataset]
            assert all(d["reason"] for d in dropped)
            drop_counts = collections.Counter(L.symbol_class(d["symbol"]) for d in dropped)
            for c in CLASSES:
                assert e[dataset][c] == ann_counts.get(c, 0) - drop_counts.get(c, 0)
            kept_idx = set(z[idx_key].tolist())
            drop_idx = {d["beat_index"] for d in dropped}
            assert kept_idx | drop_idx == set(range(len(symbols))) and not kept_idx & drop_idx
            # Dropped entries point at the annotation they came from.
            for d in dropped:
                assert d["sample"] == samples[d["beat_index"]]
                assert d["symbol"] == symbols[d["beat_index"]]
            np.testing.assert_array_equal(
                z[lab_key], [CLASSES.index(L.symbol_class(symbols[i])) for i in z[idx_key]]
            )
        assert len(z["beats"]) == sum(e["beats"].values())
        np.testing.assert_array_equal(z["beat_symbol"], [symbols[i] for i in z["beat_index"]])
        np.testing.assert_array_equal(z["beat_sample"], samples[z["beat_index"]])
        seen |= {c for c in CLASSES if e["beats"][c]}
    assert seen == set(CLASSES)  # the three records hold all five classes
    for k in ("annotated_beats", "beats", "segments"):
        assert m["totals"][k] == {c: sum(m["records"][r][k][c] for r in names) for c in CLASSES}
    by_reason = collections.Counter(f"{d['dataset']}: {d['reason']}" for d in m["dropped"])
    assert m["dropped_by_reason"] == dict(by_reason)


def test_only_edge_beats_are_dropped(processed):
    root, raw, names, m = processed
    n = m["records"][names[0]]["n_samples"]
    assert n == int(DURATION_S * 360)
    assert m["dropped"]
    for d in m["dropped"]:
        assert d["reason"] == "too close to record edge"
        # Context needed at 360 Hz: beats 62 / 125 samples at 125 Hz before / after the R;
        # segments 360 / 360.
        before, after = (360, 360) if d["dataset"] == "segments" else (62 * 2.88, 125 * 2.88)
        assert d["sample"] < before + 3 or d["sample"] > n - after - 3


# ------------------------------------------------------------------------ window shapes


def test_beats_187_samples_with_r_peak_at_62(processed):
    root, raw, names, m = processed
    n_checked = 0
    for rec in names:
        z = load_npz(root / "windows" / "mitdb" / f"{rec}.npz")
        assert z["beats"].shape == (len(z["beat_label"]), 187) and z["beats"].dtype == np.float32
        for beat, sym in zip(z["beats"], z["beat_symbol"], strict=True):
            if sym == "N":
                assert abs(_r_index(beat) - 62) <= 2
                assert beat[62] > 0.6  # synthetic N: R of ~1 mV
                n_checked += 1
    assert n_checked > 50


def test_segments_720_centred_on_r(processed):
    root, raw, names, m = processed
    for rec in names:
        z = load_npz(root / "windows" / "mitdb" / f"{rec}.npz")
        x = wfdb.rdrecord(str(raw / rec)).p_signal[:, 0]
        samples, symbols = _ann_beats(raw / rec)
        assert z["segments"].shape == (len(z["segment_label"]), 720)
        for seg, i in zip(z["segments"], z["segment_beat_index"], strict=True):
            r = samples[i]
            np.testing.assert_allclose(seg, x[r - 360 : r + 360], atol=1e-6)
            if symbols[i] == "N":  # within +-0.17 s (neighbouring beats are >= 0.5 s away)
                assert abs(int(np.argmax(np.abs(seg[300:420]))) + 300 - 360) <= 2


def test_denoise_windows_and_shifts(processed):
    root, raw, names, m = processed
    for rec in names:
        z = load_npz(root / "windows" / "mitdb" / f"{rec}.npz")
        x = wfdb.rdrecord(str(raw / rec)).p_signal
        n = len(x)
        assert z["denoise_signal"].shape == (n, 2) and z["denoise_signal"].dtype == np.float32
        # The clean denoising reference is the record high-passed at 0.5 Hz (zero phase).
        np.testing.assert_allclose(z["denoise_signal"], signal.highpass(x, 0.5, 360.0), atol=1e-5)
        np.testing.assert_array_equal(z["denoise_train_starts"], np.arange(0, n - 1440 + 1, 45))
        np.testing.assert_array_equal(z["denoise_eval_starts"], np.arange(0, n - 1440 + 1, 1440))
        assert m["records"][rec]["denoise_windows"] == {
            "train_shift": len(z["denoise_train_starts"]),
            "eval_shift": len(z["denoise_eval_starts"]),
        }
        assert z["fs_native_hz"] == 360.0 and str(z["beat_lead"]) == "MLII"
        assert list(z["lead_names"]) == ["MLII", "V1"]


# --------------------------------------------------------------------------- RR features


def test_rr_features_hand_computed():
    pre, post, local = signal.rr_features(np.array([0.0, 1.0, 3.0, 6.0]), n_local=2)
    np.testing.assert_allclose(pre, [1, 1, 2, 3])  # first pre-RR = its post-RR
    np.testing.assert_allclose(post, [1, 2, 3, 3])  # last post-RR = its pre-RR
    np.testing.assert_allclose(local, [1, 1, 1.5, 2.5])  # mean of the last 2 pre-RR
    one = signal.rr_features(np.array([5.0]), 10)
    assert all(len(a) == 1 and a[0] == 0 for a in one)


def test_rr_features_on_known_pattern(tmp_path):
    raw = tmp_path / "raw" / "mitdb"
    syn.write_record(raw, "k", seed=0, duration_s=DURATION_S, pattern=["N"])
    rr_pattern = [288, 288, 180, 396, 270]  # samples at 360 Hz (0.8, 0.8, 0.5, 1.1, 0.75 s)
    samples = [400]
    while samples[-1] + rr_pattern[len(samples) % 5] < DURATION_S * 360 - 400:
        samples.append(samples[-1] + rr_pattern[len(samples) % 5])
    samples = np.asarray(samples)
    wfdb.wrann("k", "atr", sample=samples, symbol=["N"] * len(samples), write_dir=str(raw))
    _run(tmp_path)
    z = load_npz(tmp_path / "windows" / "mitdb" / "k.npz")
    assert len(z["beat_index"]) == len(samples)  # no beat near the edges
    rr = np.diff(samples) / 360.0
    pre = np.concatenate([[rr[0]], rr])
    post = np.concatenate([rr, [rr[-1]]])
    local = np.array([pre[max(0, i - 9) : i + 1].mean() for i in range(len(pre))])
    np.testing.assert_allclose(z["rr_pre_s"], pre, rtol=1e-6)
    np.testing.assert_allclose(z["rr_post_s"], post, rtol=1e-6)
    np.testing.assert_allclose(z["rr_local_s"], local, rtol=1e-6)
    assert z["rr_pre_s"][2] == pytest.approx(0.5) and z["rr_post_s"][2] == pytest.approx(1.1)
    for k in ("rr_pre_s", "rr_post_s", "rr_local_s"):
        assert z[k].dtype == np.float32


# ------------------------------------------------------------------ parallel, idempotent


def test_parallel_equals_sequential_and_workers_do_not_invalidate(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    _, names = _make_db(a, n_records=3)
    shutil.copytree(a / "raw", b / "raw")
    ma = _run(a, workers=1)
    mb = _run(b, workers=2)
    assert mb["workers"] == min(2, os.cpu_count() or 1) and ma["workers"] == 1
    for rec in names:
        za = load_npz(a / "windows" / "mitdb" / f"{rec}.npz")
        zb = load_npz(b / "windows" / "mitdb" / f"{rec}.npz")
        assert za.keys() == zb.keys()
        for k in za:
            assert za[k].dtype == zb[k].dtype, k
            np.testing.assert_array_equal(za[k], zb[k], err_msg=k)
    for k in ("records", "totals", "dropped", "classes"):
        assert ma[k] == mb[k]
    assert {**ma["config"], "workers": 0} == {**mb["config"], "workers": 0}
    # The worker count does not change the outputs, so it must not force a redo.
    ino = {p.name: p.stat().st_ino for p in (a / "windows" / "mitdb").iterdir()}
    _run(a, workers=2)
    assert {p.name: p.stat().st_ino for p in (a / "windows" / "mitdb").iterdir()} == ino


def test_second_run_does_nothing_and_force_rewrites(tmp_path, caplog, capsys):
    _, names = _make_db(tmp_path)
    _run(tmp_path)
    out = tmp_path / "windows" / "mitdb"
    files = sorted(out.iterdir())
    assert [p.name for p in files] == ["_stage.json", "manifest.json", *[f"{n}.npz" for n in names]]
    old = 1_000_000_000
    for p in files:
        os.utime(p, ns=(old, old))
    before = {p.name: (p.stat().st_mtime_ns, p.stat().st_ino) for p in files}
    capsys.readouterr()
    with caplog.at_level("INFO", logger="ecg.windows"):
        _run(tmp_path)
    assert "nothing to do" in caplog.text
    assert "windows mitdb: 2 records" in capsys.readouterr().out
    assert {p.name: (p.stat().st_mtime_ns, p.stat().st_ino) for p in out.iterdir()} == before
    caplog.clear()
    with caplog.at_level("INFO", logger="ecg.windows"):
        _run(tmp_path, "--force")
    assert "nothing to do" not in caplog.text
    after = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    assert after.keys() == before.keys()
    assert all(after[k] != old for k in after)
    assert not _tmp_files(tmp_path)


def test_deleted_output_or_changed_input_is_redone(tmp_path, caplog):
    _, names = _make_db(tmp_path)
    m1 = _run(tmp_path)
    out = tmp_path / "windows" / "mitdb"
    (out / f"{names[0]}.npz").unlink()
    with caplog.at_level("INFO", logger="ecg.windows"):
        _run(tmp_path)
    assert "nothing to do" not in caplog.text
    assert (out / f"{names[0]}.npz").is_file()
    # New annotations (same file size is possible) are picked up.
    syn.write_record(
        tmp_path / "raw" / "mitdb", names[1], seed=9, duration_s=DURATION_S, pattern=["N", "V"]
    )
    m2 = _run(tmp_path)
    assert (
        m2["records"][names[1]]["annotated_beats"]["V"]
        > m1["records"][names[1]]["annotated_beats"]["V"]
    )


def test_outputs_are_atomic_and_readable(tmp_path):
    _make_db(tmp_path)
    _run(tmp_path)
    assert not _tmp_files(tmp_path)
    umask = os.umask(0)
    os.umask(umask)
    for p in (tmp_path / "windows" / "mitdb").iterdir():  # not mkstemp's private 0600
        assert stat.S_IMODE(p.stat().st_mode) == 0o666 & ~umask


def test_aami4_scheme(tmp_path):
    _make_db(tmp_path, n_records=3)
    m = _run(tmp_path, "--set", "windows.label_scheme=aami4")
    assert m["classes"] == ["N", "SVEB", "VEB", "Other"] and m["label_scheme"] == "aami4"
    m5 = _run(tmp_path, "--set", "windows.label_scheme=aami5")  # a new config hash: redone
    t4, t5 = m["totals"]["beats"], m5["totals"]["beats"]
    assert (t4["N"], t4["SVEB"], t4["VEB"], t4["Other"]) == (
        t5["N"],
        t5["S"],
        t5["V"],
        t5["F"] + t5["Q"],
    )


def test_atomic_helpers_leave_nothing_on_failure(tmp_path):
    target = tmp_path / "out" / "x.npz"
    with pytest.raises(RuntimeError, match="boom"):
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"half a file")
            raise RuntimeError("boom")
    assert not target.exists() and list((tmp_path / "out").iterdir()) == []
    with pytest.raises(TypeError, match="dtype object"):
        atomic_savez(target, a=np.array([{"a": 1}], dtype=object))
    assert list((tmp_path / "out").iterdir()) == []
    atomic_savez(target, a=np.arange(3))
    target.write_bytes(target.read_bytes()[:40])  # damaged afterwards
    with pytest.raises(PipelineError, match=r"x\.npz: damaged array file"):
        load_npz(target)


# ------------------------------------------------------------------- other sample rate


def test_250_hz_record_is_resampled_to_360(tmp_path):
    raw = tmp_path / "raw" / "mitdb"
    syn.write_record(raw, "r250", seed=0, duration_s=DURATION_S, fs_hz=250)
    syn.write_record(raw, "r360", seed=0, duration_s=DURATION_S)
    m = _run(tmp_path)
    samples, symbols = _ann_beats(raw / "r250")
    e = m["records"]["r250"]
    assert e["fs_native_hz"] == 250.0 and e["n_samples"] == int(DURATION_S * 360)
    n_dropped = sum(1 for d in m["dropped"] if d["record"] == "r250" and d["dataset"] == "beats")
    assert sum(e["annotated_beats"].values()) == len(symbols)
    assert sum(e["beats"].values()) + n_dropped == len(symbols)
    assert e["beats"] == m["records"]["r360"]["beats"]  # same beats as the 360 Hz twin
    z = load_npz(tmp_path / "windows" / "mitdb" / "r250.npz")
    assert z["beats"].shape == (sum(e["beats"].values()), 187)
    assert z["segments"].shape[1] == 720
    assert z["denoise_signal"].shape == (int(DURATION_S * 360), 2)
    assert z["fs_native_hz"] == 250.0
    # beat_sample is at 360 Hz, like every stored signal.
    np.testing.assert_allclose(z["beat_sample"], samples[z["beat_index"]] * 360 / 250, atol=0.5)
    for beat, sym in zip(z["beats"], z["beat_symbol"], strict=True):
        if sym == "N":
            assert abs(_r_index(beat) - 62) <= 2
    # RR in seconds from the native annotation times.
    np.testing.assert_allclose(
        z["rr_post_s"][:-1], np.diff(samples)[z["beat_index"][:-1]] / 250, rtol=1e-6
    )


# ---------------------------------------------------------------------------- bad input


def _truncate_dat(raw, rec):
    p = raw / f"{rec}.dat"
    p.write_bytes(p.read_bytes()[:-1000])


def _remove_atr(raw, rec):
    (raw / f"{rec}.atr").unlink()


def _unknown_symbol(raw, rec):
    ann = wfdb.rdann(str(raw / rec), "atr")
    symbols = list(ann.symbol)
    symbols[5] = "Z"
    custom = pd.DataFrame({"label_store": [42], "symbol": ["Z"], "description": ["unknown"]})
    wfdb.wrann(
        rec, "atr", sample=ann.sample, symbol=symbols, custom_labels=custom, write_dir=str(raw)
    )
    assert wfdb.rdann(str(raw / rec), "atr").symbol[5] == "Z"


def _garbage_header(raw, rec):
    (raw / f"{rec}.hea").write_text("this is not a header\n")


def _header_without_fs(raw, rec):
    (raw / f"{rec}.hea").write_text(f"{rec} 2\n")


def _missing_dat(raw, rec):
    (raw / f"{rec}.dat").unlink()


def _missing_header(raw, rec):
    (raw / f"{rec}.hea").unlink()


BAD_INPUTS = [
    pytest.param(
        _truncate_dat,
        r"record s01: s01\.dat is truncated \(\d+ of 3\d+ bytes\)",
        id="truncated-dat",
    ),
    pytest.param(_remove_atr, r"record s01: annotation file s01\.atr is missing", id="missing-atr"),
    pytest.param(
        _unknown_symbol,
        r"record s01: unknown annotation symbol 'Z' at sample \d+",
        id="unknown-symbol",
    ),
    pytest.param(_garbage_header, r"record s01: header s01\.hea does not parse", id="garbage-hea"),
    pytest.param(
        _header_without_fs,
        r"record s01: header s01\.hea lacks fs, length or signals",
        id="header-without-length",
    ),
    pytest.param(_missing_dat, r"record s01: signal file s01\.dat is missing", id="missing-dat"),
    pytest.param(_missing_header, r"record s01: header s01\.hea is missing", id="missing-hea"),
]


def _assert_no_output_for(root, rec):
    out = root / "windows" / "mitdb"
    assert not (out / f"{rec}.npz").exists()
    assert not (out / "manifest.json").exists() and not (out / "_stage.json").exists()
    assert not _tmp_files(root)


@pytest.mark.parametrize("damage, message", BAD_INPUTS)
def test_bad_input_exit_2_one_line_naming_record(tmp_path, capsys, damage, message):
    raw, names = _make_db(tmp_path)
    damage(raw, "s01")
    capsys.readouterr()
    assert run_cli(windows_cmd.main, _argv(tmp_path)) == 2
    err = capsys.readouterr().err
    errors = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in err
    assert re.search(message, errors[0]), errors[0]
    _assert_no_output_for(tmp_path, "s01")


@pytest.mark.parametrize("damage, message", BAD_INPUTS[:4])
def test_bad_input_raises_pipeline_error(tmp_path, damage, message):
    raw, _ = _make_db(tmp_path)
    damage(raw, "s01")
    with pytest.raises(PipelineError, match=message):
        W.process_record(raw, "s01", WindowsConfig())
    with pytest.raises(PipelineError, match=message):
        windows_cmd.main(_argv(tmp_path))
    _assert_no_output_for(tmp_path, "s01")


def test_bad_record_in_parallel_run(tmp_path, capsys):
    raw, _ = _make_db(tmp_path, n_records=3)
    _truncate_dat(raw, "s01")
    assert run_cli(windows_cmd.main, _argv(tmp_path, workers=2)) == 2
    assert "error: record s01: s01.dat is truncated" in capsys.readouterr().err
    _assert_no_output_for(tmp_path, "s01")


@pytest.mark.parametrize("name", ["../s00", "s00/../s01", "a/b", "..", "a\\b", ".hidden"])
def test_unsafe_record_names_refused(tmp_path, capsys, name):
    _make_db(tmp_path)
    capsys.readouterr()
    argv = _argv(tmp_path, "--set", f"data.mitdb_records={json.dumps([name])}")
    assert run_cli(windows_cmd.main, argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == f"error: record name {name!r} is not allowed (no path separators or '..')"
    assert not _out_files(tmp_path) and not _tmp_files(tmp_path)


def test_unsafe_name_in_records_file_refused(tmp_path, capsys):
    raw, _ = _make_db(tmp_path)
    (raw / "RECORDS").write_text("s00\n../../etc/passwd\n")
    assert run_cli(windows_cmd.main, _argv(tmp_path)) == 2
    assert "record name '../../etc/passwd' is not allowed" in capsys.readouterr().err
    assert not _out_files(tmp_path)


def test_records_selected_by_number_and_missing_folder(tmp_path, capsys):
    assert run_cli(windows_cmd.main, _argv(tmp_path)) == 2
    assert "no downloaded records" in capsys.readouterr().err
    raw, names = _make_db(tmp_path, n_records=3)
    m = _run(tmp_path, "--set", "data.mitdb_records=[s02]")
    assert list(m["records"]) == ["s02"] and _out_files(tmp_path)[-1] == "s02.npz"
    assert "s00.npz" not in _out_files(tmp_path)


# ------------------------------------------------------------------------------ mirror


def _link_mirror(tmp_path, mirror, db):
    (tmp_path / "raw").mkdir(parents=True, exist_ok=True)
    (tmp_path / "raw" / db).symlink_to(mirror / db, target_is_directory=True)


def _listing(folder):
    return sorted(
        (p.relative_to(folder).as_posix(), p.stat().st_mtime_ns) for p in folder.rglob("*")
    )


@pytest.mark.mirror
def test_mirror_two_records_match_rdann(tmp_path, mirror):
    _link_mirror(tmp_path, mirror, "mitdb")
    before = sorted(p.name for p in (mirror / "mitdb").iterdir())
    m = _run(tmp_path, "--set", "data.mitdb_records=[100, 201]")
    assert sorted(m["records"]) == ["100", "201"]
    for rec in ("100", "201"):
        ann = wfdb.rdann(str(mirror / "mitdb" / rec), "atr")
        want = collections.Counter(L.symbol_class(s) for s in ann.symbol)
        want.pop(None, None)
        e = m["records"][rec]
        assert e["annotated_beats"] == {c: want.get(c, 0) for c in CLASSES}
        for dataset in ("beats", "segments"):
            dropped = collections.Counter(
                L.symbol_class(d["symbol"])
                for d in m["dropped"]
                if d["record"] == rec and d["dataset"] == dataset
            )
            assert {c: e[dataset][c] + dropped.get(c, 0) for c in CLASSES} == e["annotated_beats"]
        z = load_npz(tmp_path / "windows" / "mitdb" / f"{rec}.npz")
        assert z["beats"].shape == (sum(e["beats"].values()), 187)
        assert str(z["beat_lead"]) == "MLII"
    # README: 100 has 2273 beats, 201 has 1963.
    assert sum(m["records"]["100"]["annotated_beats"].values()) == 2273
    assert sum(m["records"]["201"]["annotated_beats"].values()) == 1963
    assert sorted(p.name for p in (mirror / "mitdb").iterdir()) == before


@pytest.mark.slow
@pytest.mark.mirror
def test_mirror_full_mitdb_matches_references(tmp_path, mirror):
    _link_mirror(tmp_path, mirror, "mitdb")
    before = _listing(mirror / "mitdb")
    m = _run(tmp_path, workers=2)
    assert len(m["records"]) == 48
    t = m["totals"]
    assert t["annotated_beats"] == {"N": 90631, "S": 2781, "V": 7236, "F": 803, "Q": 8043}
    assert sum(t["annotated_beats"].values()) == 109494
    for dataset in ("beats", "segments"):
        dropped = collections.Counter(
            L.symbol_class(d["symbol"]) for d in m["dropped"] if d["dataset"] == dataset
        )
        assert {c: t[dataset][c] + dropped.get(c, 0) for c in CLASSES} == t["annotated_beats"]
    ds = {
        name: {c: sum(m["records"][r]["annotated_beats"][c] for r in recs) for c in CLASSES}
        for name, recs in (("DS1", S.DS1), ("DS2", S.DS2))
    }
    assert ds["DS1"] == {"N": 45866, "S": 944, "V": 3788, "F": 415, "Q": 8}
    assert ds["DS2"] == {"N": 44259, "S": 1837, "V": 3221, "F": 388, "Q": 7}
    assert _listing(mirror / "mitdb") == before


@pytest.mark.mirror
def test_mirror_ptbxl_folds_and_superclasses(tmp_path, mirror, capsys):
    _link_mirror(tmp_path, mirror, "ptbxl")
    before = _listing(mirror / "ptbxl" / "records100")
    argv = ["--data-dir", str(tmp_path), "--databases", "ptbxl"]
    assert windows_cmd.main(argv) == 0
    out = tmp_path / "windows" / "ptbxl"
    m = json.loads((out / "manifest.json").read_text())
    assert m["classes"] == ["NORM", "MI", "STTC", "CD", "HYP"] and m["fs_hz"] == 100.0
    assert m["not_downloaded"] == 21837 - 500
    meta = pd.read_csv(mirror / "ptbxl" / "ptbxl_database.csv", index_col="ecg_id")
    meta = meta.loc[meta.index <= 500]
    dropped_ids = {d["ecg_id"] for d in m["dropped"]}
    assert all(d["reason"] == "no diagnostic superclass" for d in m["dropped"])
    totals = collections.Counter()
    all_ids = []
    for fold in range(1, 11):
        z = load_npz(out / f"fold{fold:02d}.npz")
        n = len(z["ecg_id"])
        assert z["x"].shape == (n, 1000, 12) and z["x"].dtype == np.float32
        assert z["y"].shape == (n, 5) and z["y"].sum(axis=1).min() >= 1
        assert (meta.loc[z["ecg_id"], "strat_fold"] == fold).all()
        np.testing.assert_array_equal(z["patient_id"], meta.loc[z["ecg_id"], "patient_id"])
        n_fold = int((meta["strat_fold"] == fold).sum())
        assert n + sum(meta.loc[i, "strat_fold"] == fold for i in dropped_ids) == n_fold
        assert m["folds"][str(fold)]["records"] == n
        totals.update(dict(zip(m["classes"], z["y"].sum(axis=0).tolist(), strict=True)))
        all_ids += z["ecg_id"].tolist()
    # README: ecg_id 1-500 have NORM 297, MI 73, STTC 96, CD 78, HYP 40.
    assert dict(totals) == {"NORM": 297, "MI": 73, "STTC": 96, "CD": 78, "HYP": 40}
    assert sorted(all_ids + sorted(dropped_ids)) == list(range(1, 501))
    # README strat_fold sizes over ecg_id 1-500.
    sizes = [int((meta["strat_fold"] == f).sum()) for f in range(1, 11)]
    assert sizes == [58, 51, 34, 42, 47, 33, 44, 44, 81, 66]
    # One record read directly: the stored leads equal wfdb's.
    rec = wfdb.rdrecord(str(mirror / "ptbxl" / "records100" / "00000" / "00001_lr"))
    z = load_npz(out / f"fold{int(meta.loc[1, 'strat_fold']):02d}.npz")
    i = int(np.flatnonzero(z["ecg_id"] == 1)[0])
    np.testing.assert_allclose(z["x"][i], rec.p_signal, atol=1e-6)
    capsys.readouterr()
    assert windows_cmd.main(argv) == 0
    assert "nothing to do" in capsys.readouterr().out
    assert _listing(mirror / "ptbxl" / "records100") == before
    assert not _tmp_files(tmp_path / "windows")
