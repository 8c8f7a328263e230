"""Beat classification of one recording with a beat-classifier run (``mitdb_*_segments``,
``mitdb_*_segments_rr``, ``mitdb_*_sequences``).

Owns where the beats come from (the record's ``.atr`` beat annotations, or R peaks found by
``wfdb.processing.XQRS`` when there is no annotation file, it is empty, or it holds no beat
annotation: the summary says which and why), cutting them exactly as the stages do
(:func:`pipeline.data.windowing.cut_segments` / ``cut_beats``, the scalogram stage's CWT and
stored dtype, the loader's 3-beat sequences and RR channels), the per-beat results
(:class:`BeatPrediction`), agreement with reference annotations and the outputs
(``<name>.pred``, ``<name>_beats.csv``, ``<name>_prediction.json``).

Rhythm runs (``mitdb_*_rhythm``) get the same rhythm features as the windows stage
(:func:`pipeline.data.windowing.record_rhythm` over all beats at the record's own rate, from
the annotations or the detected R peaks), z-scored with the run's training statistics, as
the ``rr`` input beside ``ecg``.
"""

from __future__ import annotations

import collections
import csv
import dataclasses
import math
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.core.io_utils import PipelineError, atomic_path, atomic_write_json
from pipeline.data import beat_table, labels, rhythm, schema, windowing
from pipeline.data.signal import resample, rr_features, rr_for_beats
from pipeline.serving import reader
from pipeline.serving.outputs import wfdb_out
from pipeline.serving.run_loader import Run, normalize, run_header

CLASS_SYMBOL = {"N": "N", "S": "A", "V": "V", "F": "F", "Q": "Q",
                "SVEB": "A", "VEB": "V", "Other": "Q"}
"""Representative MIT-BIH symbol written for each predicted AAMI class."""
UNCLASSIFIED_SYMBOL = "?"
BEAT_SOURCES = ("auto", "atr", "detect")


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
    beats_note: str = ""
    """Where the beats came from, and why detection was used when it was."""
    input: dict = dataclasses.field(default_factory=dict)

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


def annotated_beats(rec: reader.Recording, beats: str) -> tuple[np.ndarray | None, list[str], str]:
    """The record's reference beats, or ``None`` when R peaks must be detected.

    Returns:
        (beat samples at the record's rate or None, their symbols, a note for the summary).

    Raises:
        PipelineError: unknown ``beats``; ``--beats atr`` without usable annotations; an
            annotation file that does not parse or holds unknown symbols.
    """
    import wfdb

    if beats not in BEAT_SOURCES:
        raise PipelineError(f"--beats must be one of {list(BEAT_SOURCES)}. Received: {beats!r}")
    if beats == "detect":
        return None, [], "R peaks detected (XQRS), as asked (--beats detect)"
    base = rec.annotation_base
    atr = base.with_suffix(".atr") if base is not None else None
    if atr is None or not atr.is_file():
        if beats == "atr":
            what = f"{rec.name}.atr is missing" if base is not None else f"a {rec.source} input has no .atr file"
            raise PipelineError(f"record {rec.name}: --beats atr but {what}")
        where = f"no {rec.name}.atr" if base is not None else f"no annotations in a {rec.source} input"
        return None, [], f"{where}; R peaks detected (XQRS)"
    if atr.stat().st_size == 0:
        native, symbols, why = np.zeros(0, np.int64), [], "is empty (0 bytes)"
    else:
        try:
            ann = wfdb.rdann(str(base), "atr")
        except Exception as exc:  # wfdb raises assorted types on damaged files
            raise PipelineError(f"record {rec.name}: {atr.name} does not parse ({exc})") from exc
        native, symbols = windowing.beat_annotations(ann, "aami5", rec.name)
        why = f"holds no beat annotations ({len(ann.sample)} non-beat annotations)"
    if len(native):
        return native, symbols, f"beat annotations of {atr.name}"
    if beats == "atr":
        raise PipelineError(f"record {rec.name}: --beats atr but {atr.name} {why}")
    return None, [], f"{atr.name} {why}; R peaks detected (XQRS)"


def window_flat(bad360: np.ndarray, start360: np.ndarray, length360: float) -> np.ndarray:
    """Whether each window (start and length at 360 Hz) overlaps a flagged sample."""
    out = np.zeros(len(start360), bool)
    for k, s in enumerate(start360):
        a, b = max(0, int(math.floor(s))), min(len(bad360), int(math.ceil(s + length360)))
        out[k] = a < b and bad360[a:b].any()
    return out


def beat_window_s(run: Run) -> float:
    """Length in seconds of the window one beat is classified from."""
    wcfg = run.cfg.windows
    if run.task.kind == "segments":
        return wcfg.segment_len_samples / wcfg.segment_fs_hz
    return wcfg.beat_len_samples / wcfg.beat_fs_hz


def classify_beats(run: Run, source: Path | reader.Recording, *, beats: str = "auto",
                   lead: str | None = None, flat_s: float = 1.0, batch_size: int = 256,
                   options: reader.ReadOptions | None = None) -> BeatPrediction:
    """Classifies every beat of one recording with a beat-classifier run.

    Args:
        run: from :func:`load_run` (task ``mitdb_*_segments`` or ``mitdb_*_sequences``).
        source: a recording, or a path :func:`reader.read_input` reads.
        beats: ``auto`` (the ``.atr`` beats when it holds any, else XQRS), ``atr`` or ``detect``.
        lead: record lead to use (default: the run's ``windows.lead``, MLII, through aliases).
        flat_s: a lead constant for longer than this (s) is reported as flat.

    Raises:
        PipelineError: missing lead, unknown units or annotation symbols, unreadable files,
            a record shorter than one window, all NaN or flat, or without any beat.
    """
    task, wcfg = run.task, run.cfg.windows
    if task.kind not in ("segments", "beats"):
        raise PipelineError(f"run task {task.name} does not classify beats")
    rec = source if isinstance(source, reader.Recording) else reader.read_input(source, options)
    native, symbols, note = annotated_beats(rec, beats)
    (j,) = reader.match_leads(rec.lead_names, [wcfg.lead], rec.name, override=lead)
    x = reader.leads_in_mv(rec, [j])
    reader.check_length(len(x), rec.fs_hz, beat_window_s(run), rec.name)
    reader.check_signal(x, [rec.lead_names[j]], rec.name)
    spans = reader.quality_spans(x, rec.fs_hz, [rec.lead_names[j]], flat_s)
    seg_fs = wcfg.segment_fs_hz
    lead360 = resample(x[:, 0], rec.fs_hz, seg_fs)
    if native is None:
        r360 = detect_beats(lead360, seg_fs)
        native = np.round(r360 * rec.fs_hz / seg_fs).astype(np.int64)
        symbols, kind = [""] * len(r360), "xqrs"
    else:
        r360, kind = np.round(native * seg_fs / rec.fs_hz).astype(np.int64), "atr"
    if not len(r360):
        raise PipelineError(f"record {rec.name}: no beats found ({note}: none); nothing to predict")
    n = len(r360)
    reason = [""] * n
    bad360 = reader.bad_mask(spans, len(lead360), rec.fs_hz, seg_fs)
    probs = np.full((n, task.n_outputs), np.nan, np.float32)
    trees = getattr(run.model, "kind", None) == "classic_trees"
    rows = (windowing.record_rhythm(x[:, 0], native, rec.fs_hz, wcfg, rec.name)
            if task.rhythm or trees else None)  # every beat's rhythm features
    side = None  # the deep models' rr input (the trees build their own table)
    if task.rhythm and not trees:
        side = schema.select_rhythm(run.cfg, _stored_rows(rows, lead360, r360, wcfg))
    if trees:
        from pipeline.serving import predict_classic

        probs_ok, ok = predict_classic.classify(run, rows, lead360, r360, reason, bad360)
    elif task.kind == "segments":
        probs_ok, ok = _classify_segments(run, lead360, r360, native / rec.fs_hz, reason, bad360,
                                          batch_size, side)
    else:
        probs_ok, ok = _classify_sequences(run, lead360, r360, reason, bad360, batch_size, side)
    probs[ok] = probs_ok
    return BeatPrediction(rec.name, kind, native.astype(np.int64), r360, np.arange(n, dtype=np.int32),
                          list(symbols), probs, reason, task.classes, rec.lead_names[j], rec.fs_hz,
                          reader.quality_report(spans), note, reader.input_info(rec))


def _stored_rows(rows: np.ndarray, lead360: np.ndarray, r360: np.ndarray,
                 wcfg: Any) -> np.ndarray:
    """Every beat's rhythm features, with the beat table's columns appended when
    ``windows.beat_table`` is on: the columns the windows stage stores."""
    if not wcfg.beat_table:
        return rows
    segs, keep, _ = windowing.cut_segments(lead360, r360, wcfg)
    return beat_table.every_beat(rows, rhythm.feature_names(wcfg.rhythm_causal), keep, segs,
                                 wcfg.segment_fs_hz)


def rhythm_input(run: Run, side: np.ndarray | None) -> tuple[np.ndarray, np.ndarray,
                                                              np.ndarray | None]:
    """(signal mean, signal scale, z-scored rhythm vectors of every beat, or None).

    A rhythm run's statistics hold the signal channels first, then one entry per feature.
    """
    if side is None:
        return run.mean, run.scale, None
    n_sig = len(run.mean) - side.shape[1]
    if n_sig < 1:
        raise PipelineError(f"{run.path}: normalization statistics have {len(run.mean)} entries, "
                            f"too few for the signal and {side.shape[1]} rhythm features")
    rr = normalize(side, run.mean[n_sig:], run.scale[n_sig:], -1)
    return run.mean[:n_sig], run.scale[:n_sig], rr


def predict_inputs(run: Run, x: np.ndarray, rr: np.ndarray | None,
                   batch_size: int) -> np.ndarray:
    """Model outputs for normalized ``x`` (and ``rr``: the ``{"ecg", "rr"}`` input)."""
    if rr is None:
        return run.predict(x, batch_size)
    if not len(x):
        return np.zeros((0, run.task.n_outputs), np.float32)
    return np.concatenate([
        np.asarray(run.model.predict_on_batch({"ecg": x[i : i + batch_size],
                                               "rr": rr[i : i + batch_size]}))
        for i in range(0, len(x), batch_size)])


def _classify_segments(run: Run, lead360: np.ndarray, r360: np.ndarray, r_s: np.ndarray,
                       reason: list[str], bad360: np.ndarray, batch_size: int,
                       side: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Segments around each beat (with RR channels for ``*_rr`` tasks, the rhythm input
    ``side`` for ``*_rhythm`` tasks), classified."""
    wcfg = run.cfg.windows
    segs, keep, skipped = windowing.cut_segments(lead360, r360, wcfg)
    flat = segment_reasons(wcfg, r360, keep, skipped, bad360, reason)
    mean, scale, rr = rhythm_input(run, side)
    if run.task.rr_channels:
        xin = normalize(with_rr(lead360, r_s, r360, keep, segs, wcfg)[~flat], run.mean, run.scale, -1)
    else:
        xin = normalize(segs[~flat], mean, scale, -1)[..., None]
    return predict_inputs(run, xin, None if rr is None else rr[keep[~flat]], batch_size), keep[~flat]


def segment_reasons(wcfg: Any, r360: np.ndarray, keep: np.ndarray,
                    skipped: list[tuple[int, str]], bad360: np.ndarray,
                    reason: list[str]) -> np.ndarray:
    """Writes why beats get no segment (``skipped``) or a flat one into ``reason``; returns
    whether each kept segment overlaps a flat span."""
    for i, why in skipped:
        reason[i] = why
    half = wcfg.segment_len_samples // 2
    flat = window_flat(bad360, r360[keep] - half, wcfg.segment_len_samples)
    for i in keep[flat]:
        reason[i] = "window overlaps a flat span"
    return flat


def with_rr(lead360: np.ndarray, r_s: np.ndarray, r360: np.ndarray, keep_s: np.ndarray,
            segs: np.ndarray, wcfg: Any) -> np.ndarray:
    """Segments with the RR channels of ``*_segments_rr`` tasks, as the stages build them:
    RR features over all beats (windows stage), looked up for each segment's beat among the
    kept beats and interpolated for the others (TFRecord stage), appended as three constant
    channels (loader). Returns (k, T, 4)."""
    from pipeline.data import schema

    pre, post, local = rr_features(r_s, wcfg.rr_local_beats)
    _, keep_b, _ = windowing.cut_beats(lead360, r360, wcfg)
    table = {"beat_index": keep_b, "rr_pre_s": pre[keep_b].astype(np.float32),
             "rr_post_s": post[keep_b].astype(np.float32),
             "rr_local_s": local[keep_b].astype(np.float32)}
    return schema.with_rr_channels(segs, rr_for_beats(table, keep_s))


def _sequence_centres(run: Run, r360: np.ndarray, reason: list[str], bad360: np.ndarray,
                      skipped: list[tuple[int, str]], keep: np.ndarray) -> np.ndarray:
    """Beats whose whole 3-beat sequence is usable; the others get their reason."""
    cfg, wcfg = run.cfg, run.cfg.windows
    own = [""] * len(r360)
    for i, why in skipped:
        own[i] = why
    ratio = wcfg.segment_fs_hz / wcfg.beat_fs_hz
    r125 = np.round(r360[keep] * wcfg.beat_fs_hz / wcfg.segment_fs_hz)
    flat = window_flat(bad360, (r125 - wcfg.beat_r_offset_samples) * ratio,
                       wcfg.beat_len_samples * ratio)
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
    return np.asarray(centres, np.int64)


def _classify_sequences(run: Run, lead360: np.ndarray, r360: np.ndarray, reason: list[str],
                        bad360: np.ndarray, batch_size: int,
                        side: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Scalogram sequences of consecutive beats (the loader's), classified by centre beat
    (rhythm runs: with the centre beat's rhythm vector)."""
    from pipeline.data.scalogram import cwt_batch, scales_for

    cfg, wcfg = run.cfg, run.cfg.windows
    beats, keep, skipped = windowing.cut_beats(lead360, r360, wcfg)
    centres = _sequence_centres(run, r360, reason, bad360, skipped, keep)
    if not len(centres):
        return np.zeros((0, run.task.n_outputs), np.float32), centres
    h = cfg.loader.seq_len_beats // 2
    pos = -np.ones(len(r360), np.int64)
    pos[keep] = np.arange(len(keep))
    sc = cwt_batch(beats, scales_for(cfg), cfg.scalograms.wavelet, wcfg.beat_fs_hz)
    sc = sc.astype(cfg.scalograms.dtype).astype(np.float32)  # as stored in the TFRecords
    mean, scale, rr = rhythm_input(run, side)
    sc = normalize(sc, mean, scale, -2)
    out = []
    for s in range(0, len(centres), batch_size):
        c = centres[s : s + batch_size]
        idx = pos[c[:, None] + np.arange(-h, h + 1)[None, :]]
        out.append(predict_inputs(run, sc[idx][..., None], None if rr is None else rr[c],
                                  batch_size))
    return np.concatenate(out), centres


def agreement(pred: BeatPrediction) -> dict | None:
    """Accuracy, confusion matrix and per-class recall/precision against the reference."""
    if pred.source != "atr":
        return None
    classes = list(pred.classes)
    ok = pred.classified
    ref = []
    for s in pred.ref_symbol:
        c5 = labels.symbol_class(s, "aami5")
        ref.append(classes.index(c5 if c5 in classes else labels.AAMI5_TO_AAMI4[c5]))
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
        **run_header(run),
        **pred.input,
        "fs_hz": pred.fs_hz,
        "resampled_to_hz": run.cfg.windows.segment_fs_hz,
        "lead": pred.lead,
        "beats_from": pred.source,
        "beats_note": pred.beats_note,
        "beats": len(ok),
        "classified": int(ok.sum()),
        "per_class": counts,
        "symbols": {c: CLASS_SYMBOL[c] for c in pred.classes},
        "unclassified": {"count": int((~ok).sum()), "symbol": UNCLASSIFIED_SYMBOL,
                         "reasons": dict(collections.Counter(r for r in pred.reason if r))},
        "quality": pred.quality,
        "agreement": agreement(pred),
    }


def _symbols(pred: BeatPrediction) -> tuple[list[str], list[str]]:
    """WFDB symbol and aux note per beat (``?`` with the reason when unclassified)."""
    symbols, aux = [], []
    for i, (k, why) in enumerate(zip(pred.predicted, pred.reason, strict=True)):
        if why:
            symbols.append(UNCLASSIFIED_SYMBOL)
            aux.append(f"unclassified: {why}")
        else:
            symbols.append(CLASS_SYMBOL[pred.classes[k]])
            aux.append(f"p={float(pred.probs[i, k]):.2f}")
    return symbols, aux


def write_beat_outputs(pred: BeatPrediction, run: Run, out_dir: Path,
                       extra_files: dict | None = None) -> dict:
    """Writes ``<name>.pred``, ``<name>_beats.csv`` and ``<name>_prediction.json``
    (``extra_files``: other outputs already written, listed in the summary's ``files``)."""
    import wfdb

    out_dir.mkdir(parents=True, exist_ok=True)
    symbols, aux = _symbols(pred)
    summary = beat_summary(pred, run)
    files = {}
    if len(symbols):
        order = np.argsort(pred.sample, kind="stable")
        with wfdb_out(out_dir, [f"{pred.record}.pred"]) as tmp_dir:
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
    summary["files"] = {**files, **(extra_files or {})}
    atomic_write_json(out_dir / f"{pred.record}_prediction.json", summary)
    return summary
