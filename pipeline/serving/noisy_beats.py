"""Denoise, then classify: a beat classifier on the test records with NSTDB noise added, with
and without a denoiser in front.

``final_eval --run CLASSIFIER --noisy em,ma --snr-db 12,6,0 [--denoiser RUN]`` (or
``--preset`` names for either). For each test record (the classifier task's split) and each
condition (clean, then every noise type at every level):

1. **Noise.** The record's two leads get the ``test`` segment of the NSTDB noise record
   (never seen in training or validation), tiled from a seeded random offset to the record's
   length, one gain per record so that ``10 log10(sum(clean_hp^2) / sum(noise^2))`` equals the
   level, where ``clean_hp`` is the record high-passed like the denoiser's reference
   (``windows.denoise_highpass_hz``; the SNR definition of ``REFERENCES.md`` over the whole
   record and both leads rather than per window, so the gain does not jump at window edges).
2. **Denoise** (optional): :func:`pipeline.serving.predict_denoise.denoise_signal`, the path
   of ``predict --run DENOISER``.
3. **Classify** at the reference beats (``--beats atr``) with
   :func:`pipeline.serving.predict_beats.classify_beats`, the path of ``predict --run
   CLASSIFIER``; the rhythm features come from the reference beat times, the amplitude
   feature from the (noisy or denoised) signal.
4. **Detect** R peaks (XQRS, :func:`pipeline.serving.predict_beats.detect_beats`) on the same
   lead and match them to the reference beats within ``match_window_s`` (150 ms, the AAMI
   EC57 window): sensitivity and positive predictivity of beat detection.

Every beat's prediction in every condition goes to ``predictions_noisy.csv.gz``
(:mod:`pipeline.evaluation.noisy_predictions`, whose :func:`condition_metrics` gives the
tables and recomputes them).
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.core.io_utils import PipelineError
from pipeline.data import labels
from pipeline.data.noise import RECORD_TYPES
from pipeline.evaluation.metrics import macro_f1_nsvf
from pipeline.evaluation.noisy_predictions import (PREDICTIONS_FILE, condition_metrics,
                                                   predictions_csv, read_predictions)

log = logging.getLogger("ecg.noisy_beats")

CLEAN = "clean"


@dataclasses.dataclass(frozen=True)
class NoisyRequest:
    """The conditions of a denoise-then-classify evaluation."""

    noise_types: tuple[str, ...] = ("em", "ma")
    snr_db: tuple[float, ...] = (12.0, 6.0, 0.0)
    seed: int = 42
    match_window_s: float = 0.15
    detect: bool = True

    def __post_init__(self) -> None:
        bad = [t for t in self.noise_types if t not in RECORD_TYPES]
        if bad or not self.noise_types:
            raise PipelineError(f"--noisy: noise types must be among {list(RECORD_TYPES)}. "
                                f"Received: {list(self.noise_types)}")
        if not self.snr_db or not all(math.isfinite(s) for s in self.snr_db):
            raise PipelineError(f"--snr-db: finite levels in dB, e.g. 12,6,0. Received: "
                                f"{list(self.snr_db)}")
        if not self.match_window_s > 0:
            raise PipelineError(f"match window must be > 0 s. Received: {self.match_window_s}")

    def conditions(self) -> list[tuple[str, float]]:
        """``(noise type, level)`` pairs, the clean input first (level ``inf``)."""
        return [(CLEAN, math.inf)] + [(t, float(s)) for t in self.noise_types for s in self.snr_db]


def add_arguments(p: argparse.ArgumentParser) -> None:
    """``final_eval``'s flags for this mode (denoise, then classify)."""
    p.add_argument("--noisy", default=None, metavar="TYPES", help="with --run CLASSIFIER (run or "
                   "preset folder): the test records with NSTDB noise TYPES (bw,em,ma) added, "
                   "with and without --denoiser, into --out")
    p.add_argument("--snr-db", default="12,6,0", help="with --noisy: input SNR levels in dB "
                   "(comma-separated; default 12,6,0)")
    p.add_argument("--denoiser", default=None, metavar="RUN",
                   help="with --noisy: a denoiser run or preset folder to put in front")
    p.add_argument("--no-detect", action="store_true",
                   help="with --noisy: skip the beat-detection sensitivity (XQRS)")


def request_from_flags(noisy: str, snr_db: str, detect: bool = True) -> NoisyRequest:
    """The request of ``--noisy TYPES --snr-db LEVELS`` (comma-separated)."""
    try:
        levels = tuple(float(v) for v in snr_db.split(",") if v.strip())
    except ValueError:
        raise PipelineError(f"--snr-db: comma-separated numbers in dB. Received: {snr_db!r}") from None
    return NoisyRequest(noise_types=tuple(t.strip() for t in noisy.split(",") if t.strip()),
                        snr_db=levels, detect=detect)


def condition_name(noise_type: str, snr_db: float) -> str:
    return CLEAN if noise_type == CLEAN else f"{noise_type}_{snr_db:g}dB"


# --------------------------------------------------------------------------- the noise


def tiled_noise(segment: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` samples of ``segment`` (m, 2) from a random offset, wrapping around."""
    m = len(segment)
    if m == 0:
        raise PipelineError("the noise segment is empty")
    idx = (int(rng.integers(m)) + np.arange(n)) % m
    return np.asarray(segment, np.float64)[idx]


def add_noise(clean_mv: np.ndarray, noise: np.ndarray, snr_db: float, reference: np.ndarray) -> np.ndarray:
    """``clean + a noise`` with one gain ``a`` so that ``sum(reference^2) / sum((a noise)^2)``
    is ``10^(snr_db / 10)`` (``reference``: the high-passed clean record; NaN ignored)."""
    p_ref = float(np.nansum(np.square(reference)))
    p_noise = float(np.sum(np.square(noise)))
    if p_ref == 0 or p_noise == 0:
        return np.array(clean_mv, np.float64)
    a = math.sqrt(p_ref / (p_noise * 10.0 ** (snr_db / 10.0)))
    return np.asarray(clean_mv, np.float64) + a * noise


def measured_snr_db(reference: np.ndarray, noisy: np.ndarray, clean: np.ndarray) -> float:
    """``10 log10(sum(reference^2) / sum((noisy - clean)^2))`` (NaN ignored)."""
    err = float(np.nansum(np.square(np.asarray(noisy) - np.asarray(clean))))
    return math.inf if err == 0 else 10.0 * math.log10(float(np.nansum(np.square(reference))) / err)


# ------------------------------------------------------------------------ beat detection


def detection_counts(ref: np.ndarray, found: np.ndarray, fs_hz: float, window_s: float) -> dict[str, int]:
    """True positives, misses and false detections: each reference beat matches at most one
    detection within ``window_s`` and vice versa (greedy by distance, like
    ``wfdb.processing.compare_annotations``)."""
    import wfdb.processing as wp

    ref = np.asarray(ref, np.int64)
    found = np.asarray(found, np.int64)
    if not len(ref) or not len(found):
        return {"tp": 0, "fn": int(len(ref)), "fp": int(len(found))}
    cmp = wp.compare_annotations(ref, found, int(round(window_s * fs_hz)))
    tp = int(cmp.tp)
    return {"tp": tp, "fn": int(len(ref) - tp), "fp": int(len(found) - tp)}


def detection_rates(counts: Mapping[str, int]) -> dict[str, float | None]:
    tp, fn, fp = counts["tp"], counts["fn"], counts["fp"]
    return {"sensitivity": round(tp / (tp + fn), 4) if tp + fn else None,
            "positive_predictivity": round(tp / (tp + fp), 4) if tp + fp else None}


# ------------------------------------------------------------------------- one record


@dataclasses.dataclass
class RecordRows:
    """Per-beat rows of one record in one condition, and its detection counts."""

    condition: str
    denoised: bool
    record: str
    sample: np.ndarray
    y: np.ndarray
    probs: np.ndarray
    detection: dict[str, int] | None
    snr_db: float


def _reference_labels(symbols: Sequence[str], classes: Sequence[str]) -> np.ndarray:
    out = []
    for s in symbols:
        c5 = labels.symbol_class(s, "aami5")
        out.append(classes.index(c5 if c5 in classes else labels.AAMI5_TO_AAMI4[c5]))
    return np.asarray(out, np.int64)


def classify_signal(clf: Any, rec: Any, signal_mv: np.ndarray, *, condition: str, denoised: bool,
                    snr_db: float, request: NoisyRequest, batch_size: int = 256) -> RecordRows:
    """Classifies the reference beats of ``rec`` with its signal replaced by ``signal_mv``
    (mV) and counts the detected beats."""
    from pipeline.serving import predict_beats, reader

    noisy = dataclasses.replace(rec, signal=signal_mv, units=("mV",) * signal_mv.shape[1])
    pred = predict_beats.classify_beats(clf, noisy, beats="atr", batch_size=batch_size)
    ok = pred.classified
    det = None
    if request.detect:
        (j,) = reader.match_leads(rec.lead_names, [clf.cfg.windows.lead], rec.name)
        found = predict_beats.detect_beats(pred_lead(clf, signal_mv[:, j], rec.fs_hz),
                                           clf.cfg.windows.segment_fs_hz)
        det = detection_counts(pred.r360, found, clf.cfg.windows.segment_fs_hz,
                               request.match_window_s)
    return RecordRows(condition, denoised, rec.name, pred.sample[ok],
                      _reference_labels(pred.ref_symbol, pred.classes)[ok], pred.probs[ok], det,
                      snr_db)


def pred_lead(clf: Any, lead_mv: np.ndarray, fs_hz: float) -> np.ndarray:
    """The lead at the classifier's segment rate (where beats are detected and cut)."""
    from pipeline.data.signal import resample

    return resample(np.asarray(lead_mv, np.float64), fs_hz, clf.cfg.windows.segment_fs_hz)


def record_rows(clf: Any, den: Any | None, rec: Any, noise: Mapping[str, np.ndarray],
                request: NoisyRequest, highpass_hz: float) -> Iterable[RecordRows]:
    """Every condition of one record: noisy input, then (with ``den``) the denoised one."""
    from pipeline.data.signal import highpass
    from pipeline.serving import reader
    from pipeline.serving.predict_denoise import denoise_signal

    idx = list(range(min(2, rec.signal.shape[1])))
    clean = reader.leads_in_mv(rec, idx)
    reference = highpass(clean, highpass_hz, rec.fs_hz) if highpass_hz > 0 else clean
    rng = np.random.default_rng([request.seed, _record_seed(rec.name)])
    for noise_type, snr in request.conditions():
        if noise_type == CLEAN:
            x = clean
        else:
            x = add_noise(clean, tiled_noise(noise[noise_type], len(clean), rng)[:, : len(idx)],
                          snr, reference)
        name = condition_name(noise_type, snr)
        snr_in = measured_snr_db(reference, x, clean)
        yield classify_signal(clf, rec, x, condition=name, denoised=False, snr_db=snr_in,
                              request=request)
        if den is not None:
            y = denoise_signal(den, x, rec.fs_hz)
            yield classify_signal(clf, rec, y, condition=name, denoised=True, snr_db=snr_in,
                                  request=request)


def _record_seed(name: str) -> int:
    return int.from_bytes(name.encode("utf-8")[:8].ljust(8, b"\0"), "little")


# ------------------------------------------------------------------------- all records


def summarize(rows: Sequence[RecordRows], csv_gz: bytes, classes: Sequence[str], n_boot: int,
              seed: int) -> list[dict]:
    """One entry per (condition, denoised), in the order they were run. The metrics come
    from the predictions file's bytes (what a recomputation reads), the detection counts
    and input SNRs from ``rows``."""
    out = []
    for (cond, den), group in read_predictions(csv_gz).items():
        part = [r for r in rows if r.condition == cond and r.denoised == den]
        entry = {"condition": cond, "denoised": den,
                 "input_snr_db_mean": _mean_finite([r.snr_db for r in part]),
                 **condition_metrics(group, classes, n_boot, seed)}
        if all(r.detection is not None for r in part):
            counts = {k: sum(r.detection[k] for r in part) for k in ("tp", "fn", "fp")}
            entry["detection"] = {**counts, **detection_rates(counts)}
        out.append(entry)
    return out


def _mean_finite(values: Sequence[float]) -> float | None:
    v = [x for x in values if math.isfinite(x)]
    return round(float(np.mean(v)), 3) if v else None


def table_md(entries: Sequence[Mapping[str, Any]]) -> str:
    """The report's table: one row per condition and denoiser use."""
    lines = ["| input | denoiser | beats | accuracy | macro F1 | macro F1 (NSVF) | F1(S) | F1(V) | "
             "detection Se | detection +P |", "|---|---|---|---|---|---|---|---|---|---|"]
    for e in entries:
        per = e["metrics"]["per_class"]
        det = e.get("detection") or {}
        f1 = {c: per.get(c, {}).get("f1") for c in ("S", "V")}
        ci = e.get("ci95", {})
        lines.append("| " + " | ".join([
            e["condition"], "yes" if e["denoised"] else "no", str(e["beats"]),
            _num(e["metrics"]["accuracy"]), _num(e["metrics"]["macro_f1"]), _num(macro_f1_nsvf(per)),
            _with_ci(f1["S"], ci.get("f1_S")), _with_ci(f1["V"], ci.get("f1_V")),
            _num(det.get("sensitivity")), _num(det.get("positive_predictivity"))]) + " |")
    return "\n".join(lines)


def _num(v: Any) -> str:
    return "-" if v is None else f"{float(v):.3f}"


def _with_ci(v: Any, ci: Mapping[str, Any] | None) -> str:
    if v is None:
        return "-"
    if not ci or ci.get("low") is None:
        return _num(v)
    return f"{float(v):.3f} [{float(ci['low']):.3f}, {float(ci['high']):.3f}]"


# --------------------------------------------------------------------------- the command


def load_model_folder(path: Path) -> Any:
    """A training run folder (best checkpoint) or a preset folder, as a serving ``Run``."""
    from pipeline.serving import presets
    from pipeline.serving.run_loader import load_run

    path = Path(path)
    if (path / presets.CARD_FILE).is_file():
        return presets.open_preset_folder(path, path.name).run
    if not path.is_dir():
        known = presets.list_presets()
        if path.name in known and not path.parent.parts:
            return presets.load_preset(path.name).run
        raise PipelineError(f"{path}: neither a run folder nor a preset (presets: {known})")
    return load_run(path)


def check_pair(clf: Any, den: Any | None) -> None:
    """The classifier must classify MIT-BIH beats, the denoiser denoise."""
    if clf.task.kind not in ("segments", "beats"):
        raise PipelineError(f"{clf.path}: task {clf.task.name} does not classify beats")
    if den is not None and not den.task.denoising:
        raise PipelineError(f"{den.path}: --denoiser needs a denoising run; task {den.task.name}")


def default_out_dir(runs_dir: Path, clf: Any, den: Any | None) -> Path:
    import datetime as dt

    tag = f"{clf.model_name}_noisy" + (f"_{den.model_name}" if den is not None else "")
    return Path(runs_dir) / f"{dt.date.today().isoformat()}_{clf.task.name}_{tag}"


def evaluate_folders(cfg: Any, clf_dir: Path, den_dir: Path | None, request: NoisyRequest, *,
                     out_dir: Path | None, n_boot: int, force: bool = False) -> Path:
    """:func:`evaluate` for a classifier folder and an optional denoiser folder (training runs
    or presets); ``out_dir`` None: a dated folder under the runs directory."""
    from pipeline.training.run_folder import RUNS_DIR

    clf = load_model_folder(clf_dir)
    den = load_model_folder(den_dir) if den_dir is not None else None
    out = out_dir if out_dir is not None else default_out_dir(RUNS_DIR, clf, den)
    return evaluate(cfg, clf, den, request, out, n_boot=n_boot, force=force)


def evaluate(cfg: Any, clf: Any, den: Any | None, request: NoisyRequest, out_dir: Path, *,
             n_boot: int, force: bool = False) -> Path:
    """Runs every condition on every test record, writes the outputs, logs the test read."""
    from pipeline.core.config import to_dict
    from pipeline.core.io_utils import atomic_write_bytes, atomic_write_json, atomic_write_text
    from pipeline.data.noise import load_noise, noise_segments
    from pipeline.data.paths import raw_dir
    from pipeline.protocol import final, ledger
    from pipeline.serving import reader
    from pipeline.training import run_folder

    check_pair(clf, den)
    final.check_not_evaluated(out_dir, force)
    data_cfg = dataclasses.replace(clf.cfg, data=cfg.data, noise=cfg.noise)
    split = run_folder.make_split(data_cfg, clf.task)
    if split.intra is not None:
        raise PipelineError("denoise-then-classify needs whole test records (splits.scheme: "
                            "inter_patient)")
    noise = noise_segments(load_noise(cfg, request.noise_types), cfg, "test")
    hp = (den.cfg if den is not None else clf.cfg).windows.denoise_highpass_hz

    def one_record(name: str) -> tuple[str, list[RecordRows]]:
        rec = reader.read_record(raw_dir(cfg, "mitdb") / name)
        out = list(record_rows(clf, den, rec, noise, request, hp))
        log.info("record %s done", name)
        return name, out

    done = final.each_test_record(split, one_record)
    records = [name for name, _ in done]
    rows = [r for _, part in done for r in part]
    classes = list(clf.task.classes)
    csv_gz = predictions_csv(rows, classes)
    entries = summarize(rows, csv_gz, classes, n_boot, int(cfg.eval.seed))
    res = {"task": clf.task.name, "classifier": str(clf.path), "classifier_model": clf.model_name,
           "denoiser": str(den.path) if den is not None else None,
           "denoiser_model": den.model_name if den is not None else None,
           "request": dataclasses.asdict(request), "records": list(records), "conditions": entries,
           "predictions": {"file": PREDICTIONS_FILE}, "bootstrap_samples": int(n_boot),
           "bootstrap_seed": int(cfg.eval.seed),
           "config": to_dict(data_cfg)}
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(out_dir / PREDICTIONS_FILE, csv_gz)
    atomic_write_text(out_dir / "report.md", report_md(res))
    atomic_write_json(out_dir / "metrics_test.json", res)
    model = clf.model_name + (f" after {den.model_name}" if den is not None else "")
    ledger.record_test_read(cfg, out_dir, task=clf.task.name, model=model,
                            metrics_read=["accuracy", "macro_f1", "f1_S", "f1_V", "detection"],
                            external=None, leaky=False, out_dir=out_dir)
    return out_dir


def report_md(res: Mapping[str, Any]) -> str:
    req = res["request"]
    den = res["denoiser"] or "none"
    return "\n".join([
        f"# Denoise, then classify: {res['classifier_model']} on {res['task']}", "",
        f"- classifier: `{res['classifier']}`", f"- denoiser: `{den}`",
        f"- test records ({len(res['records'])}): {', '.join(res['records'])}",
        f"- noise: NSTDB `test` segments of {', '.join(req['noise_types'])}, one gain per "
        f"record for each level ({', '.join(f'{s:g}' for s in req['snr_db'])} dB), seed "
        f"{req['seed']}", f"- beats: the reference annotations; detection: XQRS matched within "
        f"{req['match_window_s'] * 1000:g} ms", "",
        "F1 with record-bootstrap 95 % intervals "
        f"({res['bootstrap_samples']} resamples).", "", table_md(res["conditions"]), ""])
