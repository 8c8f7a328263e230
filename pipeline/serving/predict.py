"""Use a trained run on new recordings: the entry points the predict command and other code
import.

``python -m pipeline.predict --run Research_Runs/<run> --input PATH [--out DIR]``, or
``--preset NAME`` for a pretrained preset (:mod:`pipeline.serving.presets`; ``--preset list``
prints them).

``PATH`` is a WFDB record (without extension, or its ``.hea``), an EDF, CSV or NumPy file, or
a folder of WFDB records and EDF files (:mod:`pipeline.serving.reader` says how each is
read, how lead names are matched and which checks refuse a recording). For a folder every
recording is processed and ``predict_summary.json`` lists each as done or failed, with the
reason. Outputs go to ``--out`` (default ``<run>/predictions`` or
``<preset>/predictions``, git-ignored). What is done
depends on the run's task (``model.json``):

* beat classifiers (``mitdb_*_segments[_rr]``, ``mitdb_*_sequences``):
  :mod:`pipeline.serving.predict_beats` (``<name>.pred`` WFDB annotations, ``<name>_beats.csv``,
  ``<name>_prediction.json`` with counts, unclassified beats and agreement with ``.atr``,
  ``<name>_beats.png``: the first ``--span-s`` seconds with the predicted classes marked);
* the PTB-XL classifier (``ptbxl_superdiagnostic``): :mod:`pipeline.serving.predict_records`
  (``<name>_prediction.json`` with per-window and record probabilities);
* denoisers (``mitdb_denoise``): :mod:`pipeline.serving.predict_denoise` (``<name>_denoised``
  WFDB record, plot and ``<name>_denoise.json``; the output is baseline-free).

The model comes from ``checkpoints/best.keras`` (``--checkpoint last`` for ``last.keras``); a
missing best checkpoint is refused, never replaced silently, and every summary names the
checkpoint used. NaN runs and flat runs (constant for more than ``--flat-s`` s) are listed
in the summary (``quality``) and no beat or window touching one is classified. A recording
shorter than one model window, one whose leads are all NaN or flat, or one in which no beat
is found is refused with the reason. Models are loaded in Keras safe mode only and no
pickled object is read.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
from pathlib import Path
from typing import Any

from pipeline.core.io_utils import PipelineError, atomic_write_json
from pipeline.serving import reader
from pipeline.serving.beat_plot import plot_beats
from pipeline.serving.predict_beats import (
    BEAT_SOURCES,
    BeatPrediction,
    classify_beats,
    write_beat_outputs,
)
from pipeline.serving.predict_denoise import denoise_record
from pipeline.serving.predict_records import classify_ptbxl
from pipeline.serving.reader import list_inputs, list_records
from pipeline.serving.run_loader import Run, load_run, run_header

__all__ = ["PredictOptions", "list_inputs", "list_records", "load_run", "one_line_summary",
           "parse_span", "predict_folder", "predict_record", "predict_recording"]


@dataclasses.dataclass(frozen=True)
class PredictOptions:
    """What ``predict`` does with each recording (the command's flags, checked)."""

    span_s: tuple[float, float] = (0.0, 10.0)
    beats: str = "auto"
    lead: str | None = None
    flat_s: float = 1.0
    batch_size: int = 256
    read: reader.ReadOptions = dataclasses.field(default_factory=reader.ReadOptions)

    def __post_init__(self) -> None:
        if not (isinstance(self.flat_s, (int, float)) and math.isfinite(self.flat_s)
                and self.flat_s > 0):
            raise PipelineError(f"--flat-s must be > 0 (seconds). Received: {self.flat_s}")
        if not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise PipelineError(f"--batch-size must be >= 1. Received: {self.batch_size}")
        fs = self.read.fs_hz
        if fs is not None and not (math.isfinite(fs) and fs > 0):
            raise PipelineError(f"--fs must be > 0 Hz. Received: {fs}")
        if self.beats not in BEAT_SOURCES:
            raise PipelineError(f"--beats must be one of {list(BEAT_SOURCES)}. Received: {self.beats!r}")

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> PredictOptions:
        """From the command's parsed flags (missing ones keep their defaults)."""
        leads = getattr(args, "leads", None)
        read = reader.ReadOptions(
            fs_hz=getattr(args, "fs", None), units=getattr(args, "units", None) or "mV",
            adc_gain=getattr(args, "adc_gain", None),
            leads=tuple(s.strip() for s in leads.split(",")) if leads else None)
        return cls(span_s=getattr(args, "span_s", (0.0, 10.0)), beats=getattr(args, "beats", "auto"),
                   lead=getattr(args, "lead", None), flat_s=getattr(args, "flat_s", 1.0),
                   batch_size=getattr(args, "batch_size", 256), read=read)


def predict_record(run: Run, path: Path | reader.Recording, out_dir: Path,
                   options: PredictOptions | argparse.Namespace | None = None) -> dict:
    """Runs the run's task on one recording (a path, or one already read) and writes its
    outputs; returns the summary.

    Raises:
        PipelineError: the recording cannot be read or predicted on (the message says why).
    """
    if options is None:
        options = PredictOptions()
    elif not isinstance(options, PredictOptions):
        options = PredictOptions.from_args(options)
    rec = path if isinstance(path, reader.Recording) else reader.read_input(path, options.read)
    return predict_recording(run, rec, out_dir, options)[0]


def predict_recording(run: Run, rec: reader.Recording, out_dir: Path,
                      options: PredictOptions) -> tuple[dict, BeatPrediction | None]:
    """Predicts on a recording already read; writes the outputs (with the plot: the
    denoised over the input signal, or the predicted beat classes over the first
    ``options.span_s`` seconds) and returns (summary, per-beat results or None)."""
    if run.task.denoising:
        return denoise_record(run, rec, out_dir, span_s=options.span_s, flat_s=options.flat_s,
                              batch_size=options.batch_size), None
    if run.task.kind == "ptbxl":
        summary = classify_ptbxl(run, rec, flat_s=options.flat_s, batch_size=options.batch_size)
        atomic_write_json(out_dir / f"{rec.name}_prediction.json", summary)
        return summary, None
    pred = classify_beats(run, rec, beats=options.beats, lead=options.lead, flat_s=options.flat_s,
                          batch_size=options.batch_size)
    out_dir.mkdir(parents=True, exist_ok=True)
    png = plot_beats(rec, pred, options.span_s, out_dir / f"{rec.name}_beats.png",
                     title=f"{rec.name}: {run.model_name} ({run.path.name}), predicted classes")
    return write_beat_outputs(pred, run, out_dir, extra_files={"plot": str(png)}), pred


def predict_folder(run: Run, folder: Path, out_dir: Path, options: PredictOptions,
                   echo: Any = None) -> dict:
    """Predicts every recording of ``folder``; one failing is listed, not fatal.

    Args:
        echo: called with ``(line, ok)`` after each recording (the command prints them).

    Returns:
        The content of ``predict_summary.json`` (also written to ``out_dir``).
    """
    results, failed = [], 0
    for path in list_inputs(folder):
        name = reader.input_name(path)
        try:
            line = one_line_summary(predict_record(run, path, out_dir, options))
            results.append({"record": name, "input": str(path), "ok": True, "summary": line})
        except PipelineError as exc:
            failed += 1
            line = str(exc)
            results.append({"record": name, "input": str(path), "ok": False, "error": line})
        if echo is not None:
            echo(line, results[-1]["ok"])
    summary = {**run_header(run), "folder": str(folder), "records": results, "failed": failed}
    atomic_write_json(out_dir / "predict_summary.json", summary)
    return summary


def parse_span(text: str) -> tuple[float, float]:
    """``START,END`` in seconds (argparse type of ``--span-s``)."""
    try:
        a, b = (float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected START,END in seconds. Received: {text!r}") from None
    if not 0 <= a < b:
        raise argparse.ArgumentTypeError(f"need 0 <= START < END. Received: {text!r}")
    return a, b


def one_line_summary(s: dict) -> str:
    """What the command prints for one recording, ending with the checkpoint used."""
    q = s.get("quality", {})
    flags = f" (NaN {q.get('nan_s', 0)} s, flat {q.get('flat_s', 0)} s)" if q.get("spans") else ""
    ckpt = f" [checkpoint {s['checkpoint']}]" if s.get("checkpoint") else ""
    if "per_class" in s:
        agr = s.get("agreement") or {}
        acc = f", agreement {agr['accuracy']:.3f}" if agr.get("accuracy") is not None else ""
        src = "" if s.get("beats_from") == "atr" else " (R peaks detected)"
        return (f"{s['record']}: {s['classified']}/{s['beats']} beats classified{src} "
                f"{s['per_class']}{acc}{flags}{ckpt}")
    if "probabilities" in s:
        return f"{s['record']}: {s['probabilities']}{flags}{ckpt}"
    return f"{s['record']}: denoised -> {s['files']['record']}{flags}{ckpt}"
