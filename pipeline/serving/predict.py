"""Use a trained run on new WFDB recordings.

``python -m pipeline.predict --run Research_Runs/<run> --record PATH [--out DIR]``

``PATH`` is a WFDB record without extension (``data/raw/mitdb/100``) or a folder, in which
case every record in it (``*.hea``) is processed and a ``predict_summary.json`` lists them.
Outputs go to ``--out`` (default ``<run>/predictions``, git-ignored). What is done depends on
the run's task (``model.json``):

**Beat classifiers** (``mitdb_*_segments[_rr]``, ``mitdb_*_sequences``). Beats are the record's
own ``.atr`` beat annotations when present (beat symbols only, :mod:`pipeline.labels`),
otherwise QRS complexes found by ``wfdb.processing.XQRS`` on the model lead at 360 Hz
(peaks moved to the nearest local extremum within 50 ms). Segments and beats are cut by the
windows stage's own functions (:func:`pipeline.windows.cut_segments`,
:func:`pipeline.windows.cut_beats`); sequence models get the stage's Morlet scalograms
(:func:`pipeline.scalograms.cwt_batch`, stored dtype round trip as in the TFRecords) and the
loader's 3-beat sequences (the beats before and after must be usable too); ``*_segments_rr``
models get the RR channels built as the stages build them (:func:`_with_rr`). Inputs are
normalized with the run's training statistics, as the loader does. Outputs:

* ``<name>.pred``: a WFDB annotation file (``wfdb.rdann(path, "pred")``) with one
  annotation per beat at the record's own sample numbers. Predicted classes are written as
  representative MIT-BIH symbols: N -> ``N``, S (SVEB) -> ``A``, V (VEB) -> ``V``,
  F -> ``F``, Q -> ``Q`` (AAMI4 ``Other`` -> ``Q``); the aux note holds the class
  probability (``p=0.93``). Beats that could not be classified (edge of the record, NaN or
  flat samples in their window, no usable neighbours for a sequence) are written as ``?``
  (WFDB "beat not classified") with the reason in the aux note; they are never guessed.
* ``<name>_prediction.json``: per-class counts, unclassified beats and reasons, the signal
  quality report and, when the record has reference annotations, the agreement with them
  (accuracy, confusion matrix rows = reference, columns = predicted, per-class recall and
  precision), over the task's classes.
* ``<name>_beats.csv``: one row per beat (sample, reference symbol, predicted symbol,
  probabilities, reason when unclassified).

**Denoisers** (``mitdb_denoise``). The record's leads are denoised in pairs (the models
take two leads; an odd last lead is paired with itself) at 360 Hz: the record is resampled
when needed, converted to mV, high-passed at ``windows.denoise_highpass_hz`` (0.5 Hz,
zero-phase, as the training reference was) and cut into 1440-sample windows with 50 %
overlap; each window is normalized, denoised and the windows are overlap-added with
periodic Hann weights (which sum to one at this hop, so every sample is a weighted mean of
two windows and window edges get the least weight). The record is reflection-padded by half
a window at both ends so its first and last samples are also covered twice. The result is
resampled back to the record's rate. **The output is baseline-free**: whatever lies below
the high-pass cut-off (baseline wander, DC offset) is removed and not restored. NaN input
samples stay NaN in the output (WFDB invalid sample value). Outputs:
``<name>_denoised.hea/.dat`` (same leads, rate and units as the input, format 16 at the
input's ADC gain), ``<name>_denoised.png`` (``--span-s START,END``, default 0,10) and
``<name>_denoise.json``.

**PTB-XL classifier** (``ptbxl_superdiagnostic``). The 12 standard leads are matched by
name (case-insensitive), resampled to 100 Hz and classified in 10 s windows (non-overlapping;
a record shorter than 10 s is zero-padded, as the windows stage does). ``<name>_prediction.json``
holds per-window and record-level (mean over usable windows) superclass probabilities.

For every task: a lead the model needs but the record lacks is refused with the record's
and the model's lead lists; NaN runs and flat runs (constant for more than ``--flat-s``,
default 1 s) are listed in the JSON (``quality``), and any beat or window touching one is
left unclassified. Models are loaded in Keras safe mode only and no pickled object is read.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import csv
import dataclasses
import logging
import math
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.core.config import PipelineConfig, load_config
from pipeline.core.io_utils import (
    PipelineError,
    atomic_path,
    atomic_write_json,
    read_json,
)
from pipeline.data import labels as L
from pipeline.data import normalization as NORM
from pipeline.data import windowing as W
from pipeline.data.tasks import Task, get_task

log = logging.getLogger("ecg.predict")

PTBXL_LEADS = ("I", "II", "III", "AVR", "AVL", "AVF", "V1", "V2", "V3", "V4", "V5", "V6")
"""PTB-XL lead order (the order of the training files), upper-cased for matching."""
CLASS_SYMBOL = {"N": "N", "S": "A", "V": "V", "F": "F", "Q": "Q",
                "SVEB": "A", "VEB": "V", "Other": "Q"}
"""Representative MIT-BIH symbol written for each predicted AAMI class."""
UNCLASSIFIED_SYMBOL = "?"
_MV_PER_UNIT = {"mv": 1.0, "uv": 1e-3, "µv": 1e-3, "μv": 1e-3, "v": 1e3}


# ----------------------------------------------------------------------------- the run


@dataclasses.dataclass(frozen=True)
class Run:
    """What prediction needs from a run folder."""

    path: Path
    task: Task
    model_name: str
    cfg: PipelineConfig
    mean: np.ndarray
    scale: np.ndarray
    input_shape: tuple[int, ...]
    model: Any

    def predict(self, x: np.ndarray, batch_size: int = 256) -> np.ndarray:
        """Model outputs for normalized inputs, ``batch_size`` examples at a time."""
        if len(x) == 0:
            n_out = self.input_shape if self.task.denoising else (self.task.n_outputs,)
            return np.zeros((0, *n_out), np.float32)
        return np.concatenate([np.asarray(self.model.predict_on_batch(x[i : i + batch_size]))
                               for i in range(0, len(x), batch_size)])


def load_run(run_dir: str | Path) -> Run:
    """Reads a run folder: ``model.json``, ``normalization.json``, ``config.yaml`` and the
    best checkpoint (Keras safe mode).

    Raises:
        PipelineError: a file is missing or does not match the task.
    """
    from pipeline.training.trainer import load_best_model

    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise PipelineError(f"{run_dir}: run folder not found")
    meta = read_json(run_dir / "model.json", "model description")
    try:
        task = get_task(str(meta["task"]))
    except KeyError as exc:
        raise PipelineError(f"{run_dir / 'model.json'}: {exc}") from None
    cfg_path = run_dir / "config.yaml"
    if not cfg_path.is_file():
        raise PipelineError(f"{cfg_path}: run config not found")
    cfg = load_config(cfg_path, apply_env=False)
    mean, scale = NORM.load(run_dir / "normalization.json", task.kind,
                            NORM.n_channels(task.kind, cfg, task.rr_channels))
    model = load_best_model(run_dir)
    return Run(run_dir, task, str(meta.get("model", model.name)), cfg, mean, scale,
               tuple(int(s) for s in meta["input_shape"]), model)


def normalize(x: np.ndarray, mean: np.ndarray, scale: np.ndarray, channel_axis: int) -> np.ndarray:
    """``(x - mean) / scale`` per channel in float32, computed like the loader's Normalizer."""
    shape = [1] * x.ndim
    shape[channel_axis] = -1
    inv = 1.0 / np.asarray(scale, np.float64)
    a = inv.astype(np.float32).reshape(shape)
    b = (-np.asarray(mean, np.float64) * inv).astype(np.float32).reshape(shape)
    return np.asarray(x, np.float32) * a + b


# ----------------------------------------------------------------------------- records


def list_records(path: Path) -> list[Path]:
    """Record bases (path without extension) of a record path or of every record in a folder."""
    if path.is_dir():
        bases = sorted(p.with_suffix("") for p in path.glob("*.hea"))
        if not bases:
            raise PipelineError(f"{path}: no WFDB records (*.hea) in this folder")
        return bases
    base = path.with_suffix("") if path.suffix in (".hea", ".dat", ".atr") else path
    if not base.with_suffix(".hea").is_file():
        raise PipelineError(f"{base}: WFDB header {base.name}.hea not found")
    return [base]


def read_record(base: Path) -> Any:
    """Reads a WFDB record (physical units), with errors naming it."""
    import wfdb

    try:
        rec = wfdb.rdrecord(str(base))
    except Exception as exc:  # wfdb raises assorted types on damaged files
        raise PipelineError(f"record {base.name}: does not read ({type(exc).__name__}: {exc})") from exc
    if rec.p_signal is None or rec.p_signal.ndim != 2 or rec.p_signal.shape[0] == 0:
        raise PipelineError(f"record {base.name}: no signal samples")
    if not rec.fs or rec.fs <= 0:
        raise PipelineError(f"record {base.name}: header has no sampling rate")
    return rec


def match_leads(record_leads: list[str], wanted: list[str], rec: str) -> list[int]:
    """Positions of ``wanted`` leads in the record (case-insensitive) or a clear refusal."""
    upper = [str(n).strip().upper() for n in record_leads]
    missing = [w for w in wanted if w.upper() not in upper]
    if missing:
        raise PipelineError(f"record {rec} has leads {list(record_leads)}; the model needs {list(wanted)}")
    return [upper.index(w.upper()) for w in wanted]


def to_mv(x: np.ndarray, units: list[str], rec: str) -> np.ndarray:
    """Signals in mV (the unit every model was trained in); mV, uV and V are accepted."""
    out = np.asarray(x, np.float64).copy()
    for j, u in enumerate(units):
        f = _MV_PER_UNIT.get(str(u or "mV").strip().lower())
        if f is None:
            raise PipelineError(f"record {rec}: lead {j} has units {u!r}; the model needs mV "
                                "(mV, uV or V are converted)")
        out[:, j] *= f
    return out


def quality_spans(x: np.ndarray, fs: float, lead_names: list[str], flat_s: float = 1.0) -> list[dict]:
    """NaN runs (any length) and flat runs (the same value for more than ``flat_s``) per lead.

    Args:
        x: (n, n_leads) signal at ``fs`` Hz.

    Returns:
        One dict per span: lead, kind (``nan`` or ``flat``), start and end sample (end
        exclusive) and seconds.
    """
    spans = []
    min_flat = max(2, int(math.floor(flat_s * fs)) + 1)
    for j in range(x.shape[1]):
        col = x[:, j]
        nan = np.isnan(col)
        same = np.zeros(len(col), bool)
        if len(col) > 1:
            eq = (col[1:] == col[:-1]) & ~nan[1:] & ~nan[:-1]
            same[1:] |= eq
            same[:-1] |= eq
        for kind, mask, min_len in (("nan", nan, 1), ("flat", same, min_flat)):
            for s, e in _runs(mask):
                if kind == "flat":
                    # a run of equal neighbours can hold several plateaus; split at changes
                    seg = col[s:e]
                    cuts = np.flatnonzero(seg[1:] != seg[:-1]) + 1
                    bounds = [s, *(s + cuts), e]
                    parts = list(zip(bounds[:-1], bounds[1:], strict=True))
                else:
                    parts = [(s, e)]
                for a, b in parts:
                    if b - a >= min_len:
                        spans.append({"lead": str(lead_names[j]), "kind": kind,
                                      "start_sample": int(a), "end_sample": int(b),
                                      "start_s": round(a / fs, 4), "end_s": round(b / fs, 4)})
    return spans


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    d = np.diff(np.concatenate([[0], mask.astype(np.int8), [0]]))
    return list(zip(np.flatnonzero(d == 1).tolist(), np.flatnonzero(d == -1).tolist(), strict=True))


def bad_mask(spans: list[dict], n_out: int, fs_in: float, fs_out: float) -> np.ndarray:
    """Boolean mask at ``fs_out`` of every sample inside a quality span (any lead)."""
    m = np.zeros(n_out, bool)
    for sp in spans:
        a = int(math.floor(sp["start_sample"] * fs_out / fs_in))
        b = int(math.ceil(sp["end_sample"] * fs_out / fs_in))
        m[max(0, a) : min(n_out, b)] = True
    return m


def _quality(spans: list[dict]) -> dict:
    return {"spans": spans,
            "nan_s": round(sum(s["end_s"] - s["start_s"] for s in spans if s["kind"] == "nan"), 4),
            "flat_s": round(sum(s["end_s"] - s["start_s"] for s in spans if s["kind"] == "flat"), 4)}


# ------------------------------------------------------------------------ beat classifiers


@dataclasses.dataclass
class BeatPrediction:
    """Per-beat results of a beat classifier on one record (arrays over all beats)."""

    record: str
    source: str
    """``atr`` (reference annotations) or ``xqrs`` (detected)."""
    sample: np.ndarray
    """(n,) beat positions at the record's own rate."""
    r360: np.ndarray
    """(n,) beat positions at 360 Hz (where windows are cut)."""
    beat_index: np.ndarray
    """(n,) position among the record's beats (the TFRecords' ``index``)."""
    ref_symbol: list[str]
    probs: np.ndarray
    """(n, n_classes); NaN rows for unclassified beats."""
    reason: list[str]
    """'' for classified beats, else why the beat was left unclassified."""
    classes: tuple[str, ...]
    lead: str
    fs_hz: float
    quality: dict

    @property
    def classified(self) -> np.ndarray:
        return np.asarray([r == "" for r in self.reason], bool)

    @property
    def predicted(self) -> np.ndarray:
        """Predicted class index per beat, -1 when unclassified."""
        out = np.full(len(self.reason), -1, np.int64)
        ok = self.classified
        if ok.any():
            out[ok] = np.argmax(self.probs[ok], axis=1)
        return out


def detect_beats(lead360: np.ndarray, fs_hz: float) -> np.ndarray:
    """R-peak samples found by XQRS (NaN filled with 0), moved to the local extremum."""
    import wfdb.processing as wp

    x = np.nan_to_num(np.asarray(lead360, np.float64), nan=0.0)
    if len(x) < int(2 * fs_hz):
        return np.zeros(0, np.int64)
    xq = wp.XQRS(sig=x, fs=fs_hz)
    xq.detect(verbose=False)
    qrs = np.asarray(xq.qrs_inds, np.int64)
    if len(qrs):
        qrs = np.asarray(wp.correct_peaks(x, qrs, search_radius=int(round(0.05 * fs_hz)),
                                          smooth_window_size=int(round(0.1 * fs_hz)),
                                          peak_dir="compare"), np.int64)
    return np.unique(qrs[(qrs >= 0) & (qrs < len(x))])


def classify_beats(run: Run, base: Path, *, beats: str = "auto", lead: str | None = None,
                   flat_s: float = 1.0, batch_size: int = 256) -> BeatPrediction:
    """Classifies every beat of one record with a beat-classifier run.

    Args:
        run: from :func:`load_run` (task ``mitdb_*_segments`` or ``mitdb_*_sequences``).
        base: record path without extension.
        beats: ``auto`` (the ``.atr`` beats when the file exists, else XQRS), ``atr`` or
            ``detect``.
        lead: record lead to use (default: the run's ``windows.lead``, MLII).
        flat_s: a lead constant for longer than this (s) is reported as flat.

    Raises:
        PipelineError: missing lead, unknown units or annotation symbols, unreadable files.
    """
    import wfdb

    task, wcfg = run.task, run.cfg.windows
    rec = base.name
    record = read_record(base)
    fs = float(record.fs)
    names = [str(n) for n in record.sig_name]
    (j,) = match_leads(names, [lead or wcfg.lead], rec)
    x = to_mv(record.p_signal[:, [j]], [record.units[j]], rec)[:, 0]
    spans = quality_spans(x[:, None], fs, [names[j]], flat_s)
    seg_fs = wcfg.segment_fs_hz
    lead360 = W._resample(x, fs, seg_fs)

    atr = base.with_suffix(".atr")
    if beats not in ("auto", "atr", "detect"):
        raise PipelineError(f"--beats must be auto, atr or detect. Received: {beats!r}")
    if beats == "atr" and not atr.is_file():
        raise PipelineError(f"record {rec}: --beats atr but {atr.name} is missing")
    if beats != "detect" and atr.is_file():
        try:
            ann = wfdb.rdann(str(base), "atr")
        except Exception as exc:  # wfdb raises assorted types on damaged files
            raise PipelineError(f"record {rec}: {atr.name} does not parse ({exc})") from exc
        native, symbols = W.beat_annotations(ann, "aami5", rec)
        r360 = np.round(native * seg_fs / fs).astype(np.int64)
        source = "atr"
    else:
        r360 = detect_beats(lead360, seg_fs)
        native = np.round(r360 * fs / seg_fs).astype(np.int64)
        symbols = [""] * len(r360)
        source = "xqrs"
    n = len(r360)
    reason = [""] * n
    bad360 = bad_mask(spans, len(lead360), fs, seg_fs)

    def window_flat(start360: np.ndarray, length360: float) -> np.ndarray:
        out = np.zeros(len(start360), bool)
        for k, s in enumerate(start360):
            a, b = max(0, int(math.floor(s))), min(len(bad360), int(math.ceil(s + length360)))
            out[k] = a < b and bad360[a:b].any()
        return out

    probs = np.full((n, task.n_outputs), np.nan, np.float32)
    if task.kind == "segments":
        segs, keep, skipped = W.cut_segments(lead360, r360, wcfg)
        for i, why in skipped:
            reason[i] = why
        half = wcfg.segment_len_samples // 2
        flat = window_flat(r360[keep] - half, wcfg.segment_len_samples)
        for i in keep[flat]:
            reason[i] = "window overlaps a flat span"
        ok = keep[~flat]
        if task.rr_channels:
            xin = normalize(_with_rr(lead360, native / fs, r360, keep, segs, wcfg)[~flat],
                            run.mean, run.scale, -1)
        else:
            xin = normalize(segs[~flat], run.mean, run.scale, -1)[..., None]
        probs[ok] = run.predict(xin, batch_size)
    elif task.kind == "beats":
        probs_ok, ok = _classify_sequences(run, lead360, r360, reason, window_flat, batch_size)
        probs[ok] = probs_ok
    else:
        raise PipelineError(f"run task {task.name} does not classify beats")
    return BeatPrediction(rec, source, native.astype(np.int64), r360, np.arange(n, dtype=np.int32),
                          list(symbols), probs, reason, task.classes, names[j], fs, _quality(spans))


def _with_rr(lead360: np.ndarray, r_s: np.ndarray, r360: np.ndarray, keep_s: np.ndarray,
             segs: np.ndarray, wcfg: Any) -> np.ndarray:
    """Segments with the RR channels of ``*_segments_rr`` tasks, as the stages build them:
    RR features over all beats (windows stage), looked up for each segment's beat among the
    kept beats and interpolated for the others (TFRecord stage), appended as three constant
    channels (loader). Returns (k, T, 4)."""
    from pipeline.data import schema
    from pipeline.data.tfrecord_writer import _rr_for

    pre, post, local = W._rr_features(r_s, wcfg.rr_local_beats)
    _, keep_b, _ = W.cut_beats(lead360, r360, wcfg)
    table = {"beat_index": keep_b, "rr_pre_s": pre[keep_b].astype(np.float32),
             "rr_post_s": post[keep_b].astype(np.float32),
             "rr_local_s": local[keep_b].astype(np.float32)}
    return schema.with_rr_channels(segs, _rr_for(table, keep_s))


def _classify_sequences(run: Run, lead360: np.ndarray, r360: np.ndarray, reason: list[str],
                        window_flat: Any, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Scalogram sequences of consecutive beats (the loader's), classified by centre beat."""
    from pipeline.data.scalogram import cwt_batch, scales_for

    cfg, wcfg = run.cfg, run.cfg.windows
    beats, keep, skipped = W.cut_beats(lead360, r360, wcfg)
    own = [""] * len(r360)
    for i, why in skipped:
        own[i] = why
    ratio = wcfg.segment_fs_hz / wcfg.beat_fs_hz
    r125 = np.round(r360[keep] * wcfg.beat_fs_hz / wcfg.segment_fs_hz)
    flat = window_flat((r125 - wcfg.beat_r_offset_samples) * ratio, wcfg.beat_len_samples * ratio)
    for i in keep[flat]:
        own[i] = "window overlaps a flat span"
    usable = np.zeros(len(r360), bool)
    usable[keep[~flat]] = True
    h = cfg.loader.seq_len_beats // 2
    centres = []
    for i in range(len(r360)):
        if own[i]:
            reason[i] = own[i]
        elif i - h < 0 or i + h >= len(r360):
            reason[i] = f"no {h} neighbouring beat(s) on both sides for a {2 * h + 1}-beat sequence"
        elif not usable[i - h : i + h + 1].all():
            reason[i] = "a neighbouring beat of its sequence is unusable"
        else:
            centres.append(i)
    centres = np.asarray(centres, np.int64)
    if not len(centres):
        return np.zeros((0, run.task.n_outputs), np.float32), centres
    pos = -np.ones(len(r360), np.int64)
    pos[keep] = np.arange(len(keep))
    sc = cwt_batch(beats, scales_for(cfg), cfg.scalograms.wavelet, wcfg.beat_fs_hz)
    sc = sc.astype(cfg.scalograms.dtype).astype(np.float32)  # as stored in the TFRecords
    sc = normalize(sc, run.mean, run.scale, -2)
    out = []
    for s in range(0, len(centres), batch_size):
        c = centres[s : s + batch_size]
        idx = pos[c[:, None] + np.arange(-h, h + 1)[None, :]]
        out.append(run.predict(sc[idx][..., None], batch_size))
    return np.concatenate(out), centres


def agreement(pred: BeatPrediction) -> dict | None:
    """Accuracy, confusion matrix and per-class recall/precision against the reference."""
    if pred.source != "atr":
        return None
    classes = list(pred.classes)
    ok = pred.classified
    ref = []
    for s in pred.ref_symbol:
        c5 = L.symbol_class(s, "aami5")
        ref.append(classes.index(c5 if c5 in classes else L.AAMI5_TO_AAMI4[c5]))
    ref = np.asarray(ref, np.int64)[ok]
    hat = pred.predicted[ok]
    k = len(classes)
    cm = np.zeros((k, k), np.int64)
    np.add.at(cm, (ref, hat), 1)
    per = {}
    for i, c in enumerate(classes):
        sup, col = int(cm[i].sum()), int(cm[:, i].sum())
        per[c] = {"support": sup, "predicted": col,
                  "recall": round(cm[i, i] / sup, 4) if sup else None,
                  "precision": round(cm[i, i] / col, 4) if col else None}
    return {"beats_compared": int(ok.sum()),
            "beats_unclassified": int((~ok).sum()),
            "accuracy": round(float(np.trace(cm) / cm.sum()), 4) if cm.sum() else None,
            "confusion": {"rows": "reference", "columns": "predicted", "labels": classes,
                          "matrix": cm.tolist()},
            "per_class": per}


def beat_summary(pred: BeatPrediction, run: Run) -> dict:
    ok = pred.classified
    hat = pred.predicted
    counts = {c: int((hat == k).sum()) for k, c in enumerate(pred.classes)}
    return {
        "record": pred.record,
        "run": str(run.path),
        "task": run.task.name,
        "model": run.model_name,
        "fs_hz": pred.fs_hz,
        "resampled_to_hz": run.cfg.windows.segment_fs_hz,
        "lead": pred.lead,
        "beats_from": pred.source,
        "beats": len(ok),
        "classified": int(ok.sum()),
        "per_class": counts,
        "symbols": {c: CLASS_SYMBOL[c] for c in pred.classes},
        "unclassified": {"count": int((~ok).sum()), "symbol": UNCLASSIFIED_SYMBOL,
                         "reasons": dict(collections.Counter(r for r in pred.reason if r))},
        "quality": pred.quality,
        "agreement": agreement(pred),
    }


def write_beat_outputs(pred: BeatPrediction, run: Run, out_dir: Path) -> dict:
    """Writes ``<name>.pred``, ``<name>_beats.csv`` and ``<name>_prediction.json``."""
    import wfdb

    out_dir.mkdir(parents=True, exist_ok=True)
    hat = pred.predicted
    symbols, aux = [], []
    for i, (k, why) in enumerate(zip(hat, pred.reason, strict=True)):
        if why:
            symbols.append(UNCLASSIFIED_SYMBOL)
            aux.append(f"unclassified: {why}")
        else:
            symbols.append(CLASS_SYMBOL[pred.classes[k]])
            aux.append(f"p={float(pred.probs[i, k]):.2f}")
    summary = beat_summary(pred, run)
    files = {}
    if len(symbols):
        order = np.argsort(pred.sample, kind="stable")
        with _wfdb_out(out_dir, [f"{pred.record}.pred"]) as tmp_dir:
            wfdb.wrann(pred.record, "pred", sample=pred.sample[order],
                       symbol=[symbols[i] for i in order], aux_note=[aux[i] for i in order],
                       fs=pred.fs_hz, write_dir=str(tmp_dir))
        files["annotations"] = str(out_dir / f"{pred.record}.pred")
    csv_path = out_dir / f"{pred.record}_beats.csv"
    with atomic_path(csv_path) as tmp, open(tmp, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["beat_index", "sample", "reference_symbol", "predicted_symbol",
                    *[f"p_{c}" for c in pred.classes], "unclassified_reason"])
        for i in range(len(symbols)):
            w.writerow([int(pred.beat_index[i]), int(pred.sample[i]), pred.ref_symbol[i],
                        symbols[i], *["" if np.isnan(p) else f"{p:.6f}" for p in pred.probs[i]],
                        pred.reason[i]])
    files["beats_csv"] = str(csv_path)
    summary["files"] = files
    atomic_write_json(out_dir / f"{pred.record}_prediction.json", summary)
    return summary


@contextlib.contextmanager
def _wfdb_out(out_dir: Path, files: list[str]) -> Iterator[Path]:
    """A temporary folder inside ``out_dir`` for wfdb to write into; on success ``files``
    are renamed into ``out_dir`` in the given order (signal file before header)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".wfdb.", dir=out_dir))
    try:
        yield tmp
        for f in files:
            os.replace(tmp / f, out_dir / f)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# ----------------------------------------------------------------------------- PTB-XL


def classify_ptbxl(run: Run, base: Path, *, flat_s: float = 1.0, batch_size: int = 64) -> dict:
    """Superclass probabilities of one 12-lead record, per 10 s window and for the record."""
    rec = base.name
    record = read_record(base)
    fs = float(record.fs)
    names = [str(n) for n in record.sig_name]
    idx = match_leads(names, list(PTBXL_LEADS), rec)
    x = to_mv(record.p_signal[:, idx], [record.units[i] for i in idx], rec)
    spans = quality_spans(x, fs, [names[i] for i in idx], flat_s)
    fs_out = run.cfg.windows.ptbxl_fs_hz
    x100 = W._resample(x, fs, fs_out)
    n = int(round(10 * fs_out))
    padded = 0.0
    if len(x100) < n:
        padded = (n - len(x100)) / fs_out
        x100 = np.pad(x100, ((0, n - len(x100)), (0, 0)))
    bad = bad_mask(spans, len(x100), fs, fs_out)
    starts = list(range(0, len(x100) - n + 1, n))
    windows, usable = [], []
    for s in starts:
        w = x100[s : s + n]
        why = ("window contains NaN samples" if np.isnan(w).any()
               else "window overlaps a flat span" if bad[s : s + n].any() else "")
        windows.append({"start_s": round(s / fs_out, 3), "end_s": round((s + n) / fs_out, 3),
                        "unclassified_reason": why, "probabilities": None})
        if not why:
            usable.append(s)
    if usable:
        xin = normalize(np.stack([x100[s : s + n] for s in usable]), run.mean, run.scale, -1)
        p = run.predict(xin, batch_size)
        for s, row in zip(usable, p, strict=True):
            windows[starts.index(s)]["probabilities"] = {c: round(float(v), 6) for c, v in
                                                         zip(run.task.classes, row, strict=True)}
        mean_p = p.mean(axis=0)
        record_p = {c: round(float(v), 6) for c, v in zip(run.task.classes, mean_p, strict=True)}
        positive = [c for c, v in record_p.items() if v >= 0.5]
    else:
        record_p, positive = None, []
    return {"record": rec, "run": str(run.path), "task": run.task.name, "model": run.model_name,
            "fs_hz": fs, "resampled_to_hz": fs_out, "leads": [names[i] for i in idx],
            "zero_padded_s": round(padded, 3), "probabilities": record_p,
            "positive_at_0.5": positive, "windows": windows,
            "unclassified_windows": sum(1 for w in windows if w["unclassified_reason"]),
            "quality": _quality(spans)}


# --------------------------------------------------------------------------- denoisers


def denoise_signal(run: Run, x_mv: np.ndarray, fs: float, batch_size: int = 64) -> np.ndarray:
    """Denoises (n, n_leads) mV at ``fs`` Hz; returns the same shape in mV (baseline-free).

    Leads go through the model in pairs (an odd last lead is paired with itself), at
    ``windows.denoise_fs_hz`` with 50 % overlap-add of Hann-weighted windows (module
    docstring). NaN input samples are NaN in the output.
    """
    wcfg = run.cfg.windows
    fs_m = wcfg.denoise_fs_hz
    win = int(run.input_shape[0])
    hop = win // 2
    n, n_leads = x_mv.shape
    nan = np.isnan(x_mv)
    x = W._resample(x_mv, fs, fs_m)
    if wcfg.denoise_highpass_hz > 0:
        x = W.highpass(x, wcfg.denoise_highpass_hz, fs_m)
    x = np.nan_to_num(x, nan=0.0)
    m = len(x)
    total = int(math.ceil((m + 2 * hop) / hop) * hop)
    mode = "reflect" if m > hop else "constant"
    xp = np.pad(x, ((hop, total - hop - m), (0, 0)), mode=mode)
    starts = np.arange(0, total - win + 1, hop)
    weight = (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(win) / win))[:, None]
    out = np.zeros((m, n_leads))
    for a in range(0, n_leads, 2):
        pair = [a, a + 1 if a + 1 < n_leads else a]
        acc = np.zeros((total, 2))
        wsum = np.zeros((total, 1))
        wins = np.stack([xp[s : s + win][:, pair] for s in starts])
        y = run.predict(normalize(wins, run.mean, run.scale, -1), batch_size)
        y = y.astype(np.float64) * run.scale + run.mean
        for s, yw in zip(starts, y, strict=True):
            acc[s : s + win] += weight * yw
            wsum[s : s + win] += weight
        den = acc[hop : hop + m] / np.maximum(wsum[hop : hop + m], 1e-12)
        out[:, a] = den[:, 0]
        if a + 1 < n_leads:
            out[:, a + 1] = den[:, 1]
    y = W._resample(out, fs_m, fs)
    y = y[:n] if len(y) >= n else np.pad(y, ((0, n - len(y)), (0, 0)), mode="edge")
    y[nan] = np.nan
    return y


def denoise_record(run: Run, base: Path, out_dir: Path, *, span_s: tuple[float, float] = (0.0, 10.0),
                   flat_s: float = 1.0, batch_size: int = 64) -> dict:
    """Writes ``<name>_denoised`` (WFDB), its plot and ``<name>_denoise.json``."""
    import wfdb

    rec = base.name
    record = read_record(base)
    fs = float(record.fs)
    names = [str(s) for s in record.sig_name]
    units = [str(u or "mV") for u in record.units]
    x_mv = to_mv(record.p_signal, units, rec)
    spans = quality_spans(x_mv, fs, names, flat_s)
    y_mv = denoise_signal(run, x_mv, fs, batch_size)
    back = np.array([1.0 / _MV_PER_UNIT[u.strip().lower()] for u in units])
    y = y_mv * back
    gains = [float(g) if g and g > 0 else 200.0 for g in (record.adc_gain or [200.0] * len(names))]
    lim = np.array([32767.0 / g for g in gains])
    n_clipped = int((np.abs(np.nan_to_num(y)) > lim).sum())
    if n_clipped:
        log.warning("record %s: %d denoised samples beyond the format-16 range were clipped", rec, n_clipped)
    y = np.where(np.isnan(y), np.nan, np.clip(y, -lim, lim))
    out_dir.mkdir(parents=True, exist_ok=True)
    name = f"{rec}_denoised"
    with _wfdb_out(out_dir, [f"{name}.dat", f"{name}.hea"]) as tmp_dir:
        wfdb.wrsamp(name, fs=fs, units=units, sig_name=names, p_signal=y,
                    fmt=["16"] * len(names), adc_gain=gains, baseline=[0] * len(names),
                    write_dir=str(tmp_dir),
                    comments=[f"denoised by {run.model_name} ({run.path.name}); baseline-free: "
                              f"high-passed at {run.cfg.windows.denoise_highpass_hz:g} Hz"])
    png = out_dir / f"{rec}_denoised.png"
    plot_span(x_mv, y_mv, fs, names, span_s, png, run, title=f"{rec}: {run.model_name}")
    summary = {
        "record": rec, "run": str(run.path), "task": run.task.name, "model": run.model_name,
        "fs_hz": fs, "processed_at_hz": run.cfg.windows.denoise_fs_hz, "leads": names,
        "units": units, "highpass_hz": run.cfg.windows.denoise_highpass_hz,
        "baseline_free": True,
        "method": f"{run.input_shape[0]}-sample windows, 50% overlap-add with periodic Hann "
                  "weights, half-window reflection padding at both ends; leads in pairs",
        "clipped_samples": n_clipped,
        "quality": _quality(spans),
        "files": {"record": str(out_dir / name), "plot": str(png)},
    }
    atomic_write_json(out_dir / f"{rec}_denoise.json", summary)
    return summary


def plot_span(x_mv: np.ndarray, y_mv: np.ndarray, fs: float, names: list[str],
              span_s: tuple[float, float], path: Path, run: Run, title: str = "") -> None:
    """Input (high-passed like the reference) and denoised signal over ``span_s`` seconds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    a = max(0, int(span_s[0] * fs))
    b = min(len(x_mv), max(a + 1, int(span_s[1] * fs)))
    hp = run.cfg.windows.denoise_highpass_hz
    ref = W.highpass(x_mv, hp, fs) if hp > 0 and len(x_mv) > 12 else x_mv
    t = np.arange(a, b) / fs
    fig, axes = plt.subplots(len(names), 1, figsize=(12, 2.2 * len(names)), sharex=True, squeeze=False)
    for j, ax in enumerate(axes[:, 0]):
        ax.plot(t, ref[a:b, j], color="0.6", lw=0.8, label=f"input (high-passed {hp:g} Hz)")
        ax.plot(t, y_mv[a:b, j], color="C0", lw=0.9, label="denoised")
        ax.set_ylabel(f"{names[j]} (mV)")
        ax.grid(alpha=0.3)
    axes[0, 0].legend(loc="upper right", fontsize=8)
    axes[-1, 0].set_xlabel("time (s)")
    fig.suptitle(title)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)


# ---------------------------------------------------------------------------------- CLI


def predict_record(run: Run, base: Path, out_dir: Path, args: argparse.Namespace) -> dict:
    """Runs the run's task on one record and writes its outputs; returns the summary."""
    if run.task.denoising:
        return denoise_record(run, base, out_dir, span_s=args.span_s, flat_s=args.flat_s,
                              batch_size=args.batch_size)
    if run.task.kind == "ptbxl":
        s = classify_ptbxl(run, base, flat_s=args.flat_s, batch_size=args.batch_size)
        atomic_write_json(out_dir / f"{base.name}_prediction.json", s)
        return s
    pred = classify_beats(run, base, beats=args.beats, lead=args.lead, flat_s=args.flat_s,
                          batch_size=args.batch_size)
    return write_beat_outputs(pred, run, out_dir)


def parse_span(text: str) -> tuple[float, float]:
    try:
        a, b = (float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected START,END in seconds. Received: {text!r}") from None
    if not 0 <= a < b:
        raise argparse.ArgumentTypeError(f"need 0 <= START < END. Received: {text!r}")
    return a, b






def one_line_summary(s: dict) -> str:
    q = s.get("quality", {})
    flags = f" (NaN {q.get('nan_s', 0)} s, flat {q.get('flat_s', 0)} s)" if q.get("spans") else ""
    if "per_class" in s:
        agr = s.get("agreement") or {}
        acc = f", agreement {agr['accuracy']:.3f}" if agr.get("accuracy") is not None else ""
        return (f"{s['record']}: {s['classified']}/{s['beats']} beats classified "
                f"{s['per_class']}{acc}{flags}")
    if "probabilities" in s:
        return f"{s['record']}: {s['probabilities']}{flags}"
    return f"{s['record']}: denoised -> {s['files']['record']}{flags}"
