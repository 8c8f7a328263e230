"""Windows stage: cut records into the examples every model trains on.

``python -m pipeline.windows [--config ...] [--force]``

Per MIT-BIH record (records in parallel, one process per core) it writes
``<data_dir>/windows/mitdb/<record>.npz`` with

* **beats** (scalogram / Conformer path): one window per annotated beat of lead MLII,
  resampled to 125 Hz, 187 samples (1.496 s) with the R peak at index 62 (0.496 s of context
  before it, 0.992 s after): the format of the MIT-BIH heartbeat benchmark (Kachuee et al.
  2018). Kept in beat order; ``beat_index`` is the beat's position among the record's beats so
  later stages form sequences of consecutive beats. Per beat: AAMI label, symbol, R sample (at
  360 Hz) and pre-RR, post-RR and local mean RR (mean of the previous 10 RR intervals) in s.
  The first beat's pre-RR is its post-RR and the last beat's post-RR its pre-RR.
* **rhythm features** (:mod:`pipeline.data.rhythm`): per beat, patient-relative RR intervals,
  means and ratios, and the R amplitude over the record's median, computed on the native-rate
  annotation times of *all* annotated beats before any beat is dropped (so every interval is
  a real one). The amplitude is the beat lead's value at the R sample minus the median of the
  +-1 s around it (``windows.rhythm_amplitude_window_s``). Stored aligned with the kept
  segments as ``rhythm`` and with the kept beats as ``beat_rhythm``; column names in
  ``rhythm_names`` and in the manifest. ``windows.rhythm_causal`` keeps only the features
  that do not look at the next beat. ``windows.beat_table`` appends the classic trees'
  columns (:func:`pipeline.data.beat_table.every_beat`: morphology, template, context).
* **segments** (1-D classifiers): 2 s of lead MLII at 360 Hz (720 samples) centred on the R
  peak (samples r-360 ... r+359).
* **denoising windows**: the two-lead signal at 360 Hz, high-passed at 0.5 Hz (zero-phase;
  ``windows.denoise_highpass_hz``) so the clean reference carries no baseline wander, with the start samples of 4 s windows
  (1440 x 2) at the training shift (45 samples) and at the evaluation shift (1440, i.e. non-
  overlapping); windows are cut from the signal when TFRecords are written.

Beats too close to a record edge, or touching NaN samples, are dropped and listed with the
reason in ``manifest.json``, which also holds counts per class per record.

PTB-XL records (10 s, 12 leads, 100 Hz) with their diagnostic superclasses go to
``<data_dir>/windows/ptbxl/fold<NN>.npz``.
"""

from __future__ import annotations

import ast
import collections
import logging
import os
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.core.config import (
    PipelineConfig,
    WindowsConfig,
    config_hash,
    section_from_dict,
    to_dict,
)
from pipeline.core.io_utils import (
    PipelineError,
    atomic_savez,
    atomic_write_json,
    load_npz,
    mark_done,
    read_json,
    safe_name,
    stage_done,
)
from pipeline.data import beat_table, labels, rhythm, signal
from pipeline.data.paths import raw_dir, windows_dir

__all__ = ["OUTPUT_VERSION", "beat_annotations", "cut_beats", "cut_segments", "cut_windows",
           "format_totals", "list_records", "load_record", "output_hash", "process_ptbxl",
           "process_record", "ptbxl_superclasses", "raw_dir", "record_rhythm", "run_mitdb",
           "settings", "windows_dir"]

log = logging.getLogger("ecg.windows")

_BYTES_PER_SAMPLE = {"212": 1.5, "16": 2, "80": 1, "8": 1, "61": 2, "24": 3, "32": 4, "310": 4 / 3,
                     "311": 4 / 3}
FS_RANGE_HZ = (20.0, 20_000.0)
"""Sampling rates a header may declare. Records are resampled to 360 Hz, so a damaged header
with a tiny rate (``1e-05``) would otherwise ask for a resampling buffer of many gigabytes."""


OUTPUT_VERSION = 2
"""Layout of the per-record files; part of :func:`output_hash`, so a change recomputes old
outputs. 2: rhythm features (``rhythm``, ``beat_rhythm``, ``rhythm_names``) and
``segment_sample`` added."""


def settings(wcfg: WindowsConfig) -> dict:
    """The windows settings as later stages hash them: ``beat_table`` only when on, so the
    files and TFRecords made before the option existed stay current."""
    return {k: v for k, v in to_dict(wcfg).items() if not (k == "beat_table" and not v)}


def output_hash(wcfg: WindowsConfig) -> str:
    """Hash of the settings that shape the outputs (``workers`` does not) and the layout."""
    kept = {k: v for k, v in settings(wcfg).items() if k != "workers"}
    return config_hash({**kept, "output_version": OUTPUT_VERSION})


def list_records(folder: Path, wanted: tuple[str, ...] = ()) -> list[str]:
    """Record names in a downloaded WFDB folder (``RECORDS`` file, else ``*.hea``)."""
    if wanted:
        return [safe_name(r) for r in wanted]
    rec_file = folder / "RECORDS"
    if rec_file.is_file():
        names = [ln.strip() for ln in rec_file.read_text().splitlines() if ln.strip()]
    else:
        names = sorted(p.stem for p in folder.glob("*.hea"))
    return [safe_name(n) for n in names]


# ---------------------------------------------------------------------------- one record


def _read_checked(folder: Path, rec: str) -> tuple[Any, Any]:
    """Reads a record and its ``atr`` annotations with clear errors naming the record."""
    import wfdb

    safe_name(rec)
    base = folder / rec
    hea = base.with_suffix(".hea")
    if not hea.is_file():
        raise PipelineError(f"record {rec}: header {hea.name} is missing in {folder}")
    try:
        header = wfdb.rdheader(str(base))
    except Exception as exc:
        raise PipelineError(f"record {rec}: header {hea.name} does not parse ({exc})") from exc
    if not header.fs or header.fs <= 0 or not header.sig_len or not header.n_sig:
        raise PipelineError(f"record {rec}: header {hea.name} lacks fs, length or signals")
    if not FS_RANGE_HZ[0] <= float(header.fs) <= FS_RANGE_HZ[1]:
        raise PipelineError(
            f"record {rec}: header {hea.name} declares fs={header.fs:g} Hz, outside the "
            f"{FS_RANGE_HZ[0]:g}-{FS_RANGE_HZ[1]:g} Hz of ECG records (damaged header?)"
        )
    for fname in sorted(set(header.file_name or [])):
        dat = folder / fname
        if "/" in fname or "\\" in fname or ".." in fname:
            raise PipelineError(f"record {rec}: header names signal file {fname!r} outside its folder")
        if not dat.is_file():
            raise PipelineError(f"record {rec}: signal file {fname} is missing")
        n_sig_file = sum(1 for f in header.file_name if f == fname)
        fmt = header.fmt[header.file_name.index(fname)]
        per = _BYTES_PER_SAMPLE.get(str(fmt))
        if per is not None:
            expected = int(np.ceil(header.sig_len * n_sig_file * per))
            actual = dat.stat().st_size
            if actual < expected:
                raise PipelineError(
                    f"record {rec}: {fname} is truncated ({actual} of {expected} bytes)"
                )
    atr = base.with_suffix(".atr")
    if not atr.is_file():
        raise PipelineError(f"record {rec}: annotation file {atr.name} is missing")
    try:
        record = wfdb.rdrecord(str(base))
    except Exception as exc:
        raise PipelineError(f"record {rec}: signals do not read ({exc})") from exc
    try:
        ann = wfdb.rdann(str(base), "atr")
    except Exception as exc:
        raise PipelineError(f"record {rec}: annotation file {atr.name} does not parse ({exc})") from exc
    return record, ann


def beat_annotations(ann: Any, label_scheme: str, rec: str) -> tuple[np.ndarray, list[str]]:
    """Beat annotations of a record: (samples, symbols), non-beat annotations left out.

    Args:
        ann: a ``wfdb.Annotation`` (``sample`` at the record's own rate, ``symbol``).
        label_scheme: ``aami5`` or ``aami4`` (see :mod:`pipeline.labels`).
        rec: record name, for the error message.

    Raises:
        PipelineError: a symbol is neither a beat nor a known non-beat annotation.
    """
    symbols = [str(s) for s in ann.symbol]
    samples = np.asarray(ann.sample, dtype=np.int64)
    beat_mask = []
    for s, smp in zip(symbols, samples, strict=True):
        try:
            cls = labels.symbol_class(s, label_scheme)
        except ValueError:
            raise PipelineError(
                f"record {rec}: unknown annotation symbol {s!r} at sample {int(smp)}"
            ) from None
        beat_mask.append(cls is not None)
    beat_mask = np.asarray(beat_mask, bool)
    return samples[beat_mask], [s for s, m in zip(symbols, beat_mask, strict=True) if m]


def cut_windows(x: np.ndarray, starts: np.ndarray, length: int) -> tuple[np.ndarray, np.ndarray, list[tuple[int, str]]]:
    """Cuts ``x[start : start + length]`` for each start; skips edge and NaN windows.

    Returns:
        (windows (k, length) float32, kept positions (k,) int64 into ``starts``,
        [(position, reason)] of the skipped ones).
    """
    ok_edge = (starts >= 0) & (starts + length <= len(x))
    out, keep, skipped = [], [], []
    for i in range(len(starts)):
        if not ok_edge[i]:
            skipped.append((i, "too close to record edge"))
            continue
        w = x[starts[i] : starts[i] + length]
        if np.isnan(w).any():
            skipped.append((i, "window contains NaN samples"))
            continue
        out.append(w)
        keep.append(i)
    return (np.asarray(out, np.float32).reshape(-1, length), np.asarray(keep, dtype=np.int64),
            skipped)


def cut_beats(lead360: np.ndarray, r360: np.ndarray, wcfg: WindowsConfig) -> tuple[np.ndarray, np.ndarray, list[tuple[int, str]]]:
    """Beat windows at ``beat_fs_hz`` (187 samples, R at index 62) around R peaks.

    Args:
        lead360: (n,) one lead of the whole record at ``segment_fs_hz`` (360 Hz), mV; NaN
            marks invalid samples. It is resampled to ``beat_fs_hz`` as a whole.
        r360: (n_beats,) R-peak samples at ``segment_fs_hz``.

    Returns:
        See :func:`cut_windows`; positions index ``r360``.
    """
    x125 = signal.resample(lead360, wcfg.segment_fs_hz, wcfg.beat_fs_hz)
    r125 = np.round(np.asarray(r360) * wcfg.beat_fs_hz / wcfg.segment_fs_hz).astype(np.int64)
    return cut_windows(x125, r125 - wcfg.beat_r_offset_samples, wcfg.beat_len_samples)


def cut_segments(lead360: np.ndarray, r360: np.ndarray, wcfg: WindowsConfig) -> tuple[np.ndarray, np.ndarray, list[tuple[int, str]]]:
    """Segments at ``segment_fs_hz`` (720 samples, samples r-360 ... r+359) around R peaks.

    Returns:
        See :func:`cut_windows`; positions index ``r360``.
    """
    half = wcfg.segment_len_samples // 2
    return cut_windows(lead360, np.asarray(r360, np.int64) - half, wcfg.segment_len_samples)


def _denoise_signal(sig360: np.ndarray, wcfg: WindowsConfig) -> np.ndarray:
    """The two-lead (first two leads; one lead doubled) denoising signal, high-passed, float32."""
    dn = sig360[:, :2].astype(np.float64)
    if wcfg.denoise_highpass_hz > 0 and len(dn) > 12:  # shorter: too short to filter, no window
        dn = signal.highpass(dn, wcfg.denoise_highpass_hz, wcfg.segment_fs_hz)
    dn = dn.astype(np.float32)
    return np.repeat(dn, 2, axis=1) if dn.shape[1] < 2 else dn


def denoise_starts(dn: np.ndarray, window: int, shift: int) -> np.ndarray:
    """Start samples, every ``shift``, of the ``window``-sample windows without NaN samples."""
    n = dn.shape[0]
    if n < window:
        return np.zeros(0, np.int64)
    nan_rows = np.isnan(dn).any(axis=1).astype(np.int64)
    csum = np.concatenate([[0], np.cumsum(nan_rows)])
    st = np.arange(0, n - window + 1, shift, dtype=np.int64)
    return st[(csum[st + window] - csum[st]) == 0]


def _beat_table(ann: Any, fs: float, rec: str, wcfg: WindowsConfig) -> dict[str, Any]:
    """Beat annotations with labels and RR features (samples at the native rate and 360 Hz)."""
    native, symbols = beat_annotations(ann, wcfg.label_scheme, rec)
    classes = labels.class_names(wcfg.label_scheme)
    label = np.array(
        [classes.index(labels.symbol_class(s, wcfg.label_scheme)) for s in symbols], dtype=np.int8
    )
    pre, post, local = signal.rr_features(native / fs, wcfg.rr_local_beats)
    return {"native": native, "symbols": symbols, "label": label, "classes": classes,
            "r360": np.round(native * wcfg.segment_fs_hz / fs).astype(np.int64),
            "rr": (pre, post, local)}  # fmt: skip


def record_rhythm(lead: np.ndarray, native: np.ndarray, fs: float, wcfg: WindowsConfig,
                  rec: str) -> np.ndarray:
    """Rhythm features of every beat of a record (see the module doc).

    Args:
        lead: (n_samples,) the beat lead at the record's own rate ``fs`` (NaN: invalid).
        native: (n_beats,) R samples at ``fs``, all annotated (or detected) beats in order.
        rec: record name, for the error message.

    Returns:
        float32 ``(n_beats, len(rhythm.feature_names(wcfg.rhythm_causal)))``.

    Raises:
        PipelineError: two beats at the same sample or out of time order.
    """
    native = np.asarray(native, np.int64)
    step = np.diff(native)
    if np.any(step <= 0):
        k = int(np.flatnonzero(step <= 0)[0])
        raise PipelineError(f"record {rec}: beat annotations are not in strictly increasing "
                            f"time order (sample {int(native[k + 1])} follows {int(native[k])})")
    amps = rhythm.r_amplitudes(lead, native, fs, wcfg.rhythm_amplitude_window_s)
    return rhythm.rhythm_features(native / fs, amps, n_local=wcfg.rr_local_beats,
                                  n_running=wcfg.rhythm_running_beats, causal=wcfg.rhythm_causal)


def _dropped(rec: str, beats: dict[str, Any], why: dict[str, list]) -> list[dict]:
    return [
        {"record": rec, "dataset": dataset, "beat_index": int(i),
         "sample": int(beats["native"][i]), "symbol": beats["symbols"][i], "reason": reason}
        for dataset, skipped in why.items()
        for i, reason in skipped
    ]  # fmt: skip


def process_record(
    folder: Path, rec: str, wcfg: WindowsConfig
) -> tuple[dict[str, np.ndarray], dict]:
    """Cuts one MIT-BIH-style record. Returns the arrays and a manifest entry."""
    record, ann = _read_checked(folder, rec)
    fs = float(record.fs)
    sig = record.p_signal
    if sig is None or sig.ndim != 2 or sig.shape[0] == 0:
        raise PipelineError(f"record {rec}: no signal samples")
    names = [str(n) for n in record.sig_name]
    lead = names.index(wcfg.lead) if wcfg.lead in names else 0
    b = _beat_table(ann, fs, rec, wcfg)
    b["rhythm"] = record_rhythm(sig[:, lead], b["native"], fs, wcfg, rec)
    # Everything below works at 360 Hz (segments / denoising) and 125 Hz (beats).
    if abs(fs - wcfg.segment_fs_hz) > 1e-9:
        log.info("record %s: resampling %.6g Hz -> %.6g Hz", rec, fs, wcfg.segment_fs_hz)
    sig360 = signal.resample(sig, fs, wcfg.segment_fs_hz)
    beats, keep_b, why_b = cut_beats(sig360[:, lead], b["r360"], wcfg)
    segs, keep_s, why_s = cut_segments(sig360[:, lead], b["r360"], wcfg)
    if wcfg.beat_table:
        b["rhythm"] = beat_table.every_beat(b["rhythm"], rhythm.feature_names(wcfg.rhythm_causal),
                                            keep_s, segs, wcfg.segment_fs_hz)
    dn = _denoise_signal(sig360, wcfg)
    train_starts = denoise_starts(dn, wcfg.denoise_window_samples, wcfg.denoise_train_shift_samples)
    eval_starts = denoise_starts(dn, wcfg.denoise_window_samples, wcfg.denoise_eval_shift_samples)
    if np.isnan(dn).any():
        n_nan = int(np.isnan(dn).any(axis=1).sum())
        log.warning("record %s: %d NaN samples; windows touching them are skipped", rec, n_nan)
    arrays = {
        **_beat_arrays(b, beats, keep_b, segs, keep_s, wcfg),
        "denoise_signal": np.nan_to_num(dn, nan=0.0),
        "denoise_train_starts": train_starts,
        "denoise_eval_starts": eval_starts,
        "fs_native_hz": np.asarray(fs),
        "lead_names": np.asarray(names, dtype="<U16"),
        "beat_lead": np.asarray(names[lead], dtype="<U16"),
    }
    label, classes = b["label"], b["classes"]
    counts_atr = collections.Counter(classes[i] for i in label)
    entry = {
        "record": rec,
        "fs_native_hz": fs,
        "lead": names[lead],
        "n_samples": int(sig360.shape[0]),
        "annotated_beats": {c: int(counts_atr.get(c, 0)) for c in classes},
        "beats": {c: int((label[keep_b] == k).sum()) for k, c in enumerate(classes)},
        "segments": {c: int((label[keep_s] == k).sum()) for k, c in enumerate(classes)},
        "denoise_windows": {
            "train_shift": int(len(train_starts)), "eval_shift": int(len(eval_starts))
        },
        "dropped": _dropped(rec, b, {"beats": why_b, "segments": why_s}),
    }
    return arrays, entry


def _beat_arrays(b: dict[str, Any], beats: np.ndarray, keep_b: np.ndarray, segs: np.ndarray,
                 keep_s: np.ndarray, wcfg: WindowsConfig) -> dict[str, np.ndarray]:
    """The per-beat and per-segment arrays of a record file (kept rows only)."""
    label, (pre, post, local), f32 = b["label"], b["rr"], np.float32
    return {
        "beats": beats,
        "beat_label": label[keep_b],
        "beat_symbol": np.asarray([b["symbols"][i] for i in keep_b], dtype="<U1"),
        "beat_index": keep_b.astype(np.int32),
        "beat_sample": b["r360"][keep_b],
        "rr_pre_s": pre[keep_b].astype(f32),
        "rr_post_s": post[keep_b].astype(f32),
        "rr_local_s": local[keep_b].astype(f32),
        "beat_rhythm": b["rhythm"][keep_b],
        "segments": segs,
        "segment_label": label[keep_s],
        "segment_beat_index": keep_s.astype(np.int32),
        "segment_sample": b["r360"][keep_s],
        "rhythm": b["rhythm"][keep_s],
        "rhythm_names": np.asarray(beat_table.stored_names(wcfg.rhythm_causal, wcfg.beat_table),
                                   dtype="<U32"),
    }


def _worker(args: tuple[str, str, dict, str]) -> dict:
    folder, rec, wdict, out = args
    wcfg = section_from_dict(WindowsConfig, wdict, "windows")
    arrays, entry = process_record(Path(folder), rec, wcfg)
    atomic_savez(out, **arrays)
    return entry


# ------------------------------------------------------------------------------ PTB-XL


def ptbxl_superclasses(scp_codes: str, statements: dict[str, str]) -> list[str]:
    """Diagnostic superclasses of one PTB-XL row (``scp_codes`` is a dict literal)."""
    try:
        codes = ast.literal_eval(scp_codes)
    except (ValueError, SyntaxError) as exc:
        raise ValueError(f"scp_codes {scp_codes!r} does not parse") from exc
    if not isinstance(codes, dict):
        raise ValueError(f"scp_codes {scp_codes!r} is not a mapping")
    return sorted({statements[c] for c in codes if c in statements})


def process_ptbxl(cfg: PipelineConfig) -> dict:
    """Reads the downloaded PTB-XL records, writes one npz per strat_fold."""
    import pandas as pd
    import wfdb

    folder = raw_dir(cfg, "ptbxl")
    db = folder / "ptbxl_database.csv"
    st = folder / "scp_statements.csv"
    for p in (db, st):
        if not p.is_file():
            raise PipelineError(f"{p}: PTB-XL metadata missing; run `python -m pipeline.download`")
    try:
        meta = pd.read_csv(db, index_col="ecg_id")
        stm = pd.read_csv(st, index_col=0)
    except Exception as exc:
        raise PipelineError(f"{folder}: PTB-XL metadata does not parse ({exc})") from exc
    stm = stm[stm["diagnostic"] == 1]
    statements = {str(k): str(v) for k, v in stm["diagnostic_class"].items()}
    out_dir = windows_dir(cfg, "ptbxl")
    per_fold: dict[int, dict[str, list]] = collections.defaultdict(lambda: collections.defaultdict(list))
    dropped, n_missing = [], 0
    fs = cfg.windows.ptbxl_fs_hz
    for ecg_id, row in meta.iterrows():
        rel = str(row["filename_lr"])
        base = folder / rel
        if not base.with_suffix(".hea").is_file():
            n_missing += 1
            continue
        sup = ptbxl_superclasses(str(row["scp_codes"]), statements)
        if not sup:
            dropped.append({"ecg_id": int(ecg_id), "reason": "no diagnostic superclass"})
            continue
        try:
            rec = wfdb.rdrecord(str(base))
        except Exception as exc:
            raise PipelineError(f"PTB-XL record {rel}: does not read ({exc})") from exc
        x = rec.p_signal
        if abs(rec.fs - fs) > 1e-9:
            x = signal.resample(x, rec.fs, fs)
        if x.shape[1] != 12:
            raise PipelineError(f"PTB-XL record {rel}: expected 12 leads, found {x.shape[1]}")
        n = int(round(10 * fs))
        x = x[:n] if len(x) >= n else np.pad(x, ((0, n - len(x)), (0, 0)))
        if np.isnan(x).any():
            dropped.append({"ecg_id": int(ecg_id), "reason": "NaN samples"})
            continue
        y = np.array([c in sup for c in labels.PTBXL_SUPERCLASSES], np.int8)
        f = per_fold[int(row["strat_fold"])]
        f["x"].append(x.astype(np.float32))
        f["y"].append(y)
        f["ecg_id"].append(int(ecg_id))
        f["patient_id"].append(int(row["patient_id"]))
    counts = {}
    for fold, d in sorted(per_fold.items()):
        atomic_savez(
            out_dir / f"fold{fold:02d}.npz",
            x=np.stack(d["x"]),
            y=np.stack(d["y"]),
            ecg_id=np.asarray(d["ecg_id"], np.int64),
            patient_id=np.asarray(d["patient_id"], np.int64),
        )
        ys = np.stack(d["y"])
        counts[str(fold)] = {"records": len(d["x"]),
                             **{c: int(ys[:, k].sum()) for k, c in enumerate(labels.PTBXL_SUPERCLASSES)}}
    manifest = {"dataset": "ptbxl", "fs_hz": fs, "classes": list(labels.PTBXL_SUPERCLASSES),
                "folds": counts, "dropped": dropped, "not_downloaded": n_missing}
    atomic_write_json(out_dir / "manifest.json", manifest)
    return manifest


# --------------------------------------------------------------------------------- stage


def run_mitdb(cfg: PipelineConfig, force: bool = False, db: str = "mitdb") -> dict:
    """Runs the MIT-BIH part of the stage; returns the manifest."""
    folder = raw_dir(cfg, db)
    if not folder.is_dir():
        raise PipelineError(f"{folder}: no downloaded records; run `python -m pipeline.download`")
    records = list_records(folder, cfg.data.mitdb_records)
    if not records:
        raise PipelineError(f"{folder}: no records found")
    out_dir = windows_dir(cfg, db)
    wcfg = cfg.windows
    key = {
        "config": output_hash(wcfg),
        "records": {r: [(p.name, p.stat().st_size, p.stat().st_mtime_ns)
                        for p in sorted(folder.glob(f"{r}.*"))] for r in records},
    }
    marker = out_dir / "_stage.json"
    outputs = [out_dir / "manifest.json", *(out_dir / f"{r}.npz" for r in records)]
    if not force and stage_done(marker, key) and all(p.is_file() for p in outputs):
        log.info("windows %s: up to date (%d records); nothing to do (--force redoes it)", db,
                 len(records))
        return read_json(out_dir / "manifest.json", "windows manifest")
    jobs = [(str(folder), r, to_dict(wcfg), str(out_dir / f"{r}.npz")) for r in records]
    t0 = time.perf_counter()
    entries: dict[str, dict] = {}
    workers = max(1, min(wcfg.workers, len(records), os.cpu_count() or 1))
    from tqdm import tqdm

    if workers == 1:
        for j in tqdm(jobs, desc=f"windows {db}", unit="rec", disable=None):
            entries[j[1]] = _worker(j)
    else:
        import multiprocessing as mp

        with ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn")) as ex:
            for e in tqdm(ex.map(_worker, jobs), total=len(jobs), desc=f"windows {db}",
                          unit="rec", disable=None):
                entries[e["record"]] = e
    classes = labels.class_names(wcfg.label_scheme)
    totals = {k: {c: sum(e[k][c] for e in entries.values()) for c in classes}
              for k in ("annotated_beats", "beats", "segments")}
    dropped = [d for e in entries.values() for d in e["dropped"]]
    manifest = {
        "dataset": db,
        "label_scheme": wcfg.label_scheme,
        "classes": list(classes),
        "output_version": OUTPUT_VERSION,
        "rhythm_names": list(beat_table.stored_names(wcfg.rhythm_causal, wcfg.beat_table)),
        "config": settings(wcfg),
        "records": {r: {k: v for k, v in e.items() if k != "dropped"} for r, e in entries.items()},
        "totals": totals,
        "dropped": dropped,
        "dropped_by_reason": dict(collections.Counter(
            f"{d['dataset']}: {d['reason']}" for d in dropped)),
        "wall_time_s": round(time.perf_counter() - t0, 2),
        "workers": workers,
    }
    atomic_write_json(out_dir / "manifest.json", manifest)
    mark_done(marker, key, {"records": len(records)})
    return manifest


def load_record(cfg: PipelineConfig, rec: str, db: str = "mitdb") -> dict[str, np.ndarray]:
    """Loads one record's windows (written by this stage)."""
    return load_npz(windows_dir(cfg, db) / f"{safe_name(rec)}.npz")


def format_totals(manifest: dict) -> str:
    t = manifest["totals"]
    cls = manifest["classes"]
    lines = ["            " + " ".join(f"{c:>8}" for c in cls) + "    total"]
    for k in ("annotated_beats", "beats", "segments"):
        lines.append(f"{k:>15} " + " ".join(f"{t[k][c]:>8}" for c in cls)
                     + f" {sum(t[k].values()):>8}")
    return "\n".join(lines)
