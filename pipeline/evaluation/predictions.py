"""Per-example prediction files of a final evaluation, written and read back.

Every final evaluation leaves one file from which each headline number of its
``metrics_test.json`` can be recomputed (``python -m data_tools.recompute RUN``):

* classifiers: ``predictions_test.csv`` with exactly the columns ``record,sample,true,pred``
  followed by ``p_<class>`` per class (names as in ``metrics_test.json["classes"]``).
  ``sample`` is the beat annotation's sample index at the record's native rate (MIT-BIH and
  external records; -1 where the annotation file could not be read back) and 0 for PTB-XL,
  where ``record`` is the ``ecg_id`` and ``true``/``pred`` are ``|``-joined labels (empty:
  none). Probabilities are written with 9 significant digits, which float32 reads back exactly.
* denoisers: ``windows_test.csv`` with ``record,start,noise,snr_in_db,snr_out_db,prd_pct``,
  one row per model-denoised test window and condition (``start``: first sample of the window
  in its record at ``windows.denoise_fs_hz``); floats are written as Python's shortest exact
  repr, so the means recompute bit for bit.

A file may be committed gzip-compressed as ``<name>.gz`` (the classifiers' files of the full
DS2 are about 4 MB); the readers take either.
"""

from __future__ import annotations

import csv
import gzip
import io
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.core.io_utils import PipelineError

CLASSIFIER_FILE = "predictions_test.csv"
DENOISER_FILE = "windows_test.csv"
DENOISER_COLUMNS = ("record", "start", "noise", "snr_in_db", "snr_out_db", "prd_pct")


def classifier_columns(classes: Sequence[str]) -> list[str]:
    """``record, sample, true, pred, p_<class>...``."""
    return ["record", "sample", "true", "pred", *[f"p_{c}" for c in classes]]


def _labels(mask: np.ndarray, classes: Sequence[str]) -> str:
    return "|".join(c for c, on in zip(classes, mask, strict=True) if on)


def classifier_csv(records: Sequence[str], samples: Sequence[int], y: np.ndarray,
                   probs: np.ndarray, classes: Sequence[str], *, multilabel: bool,
                   thresholds: Sequence[float] | None = None) -> str:
    """Text of ``predictions_test.csv``.

    Args:
        records: ``(n,)`` record of each example (PTB-XL: ecg_id).
        samples: ``(n,)`` annotation sample at the native rate (PTB-XL: 0).
        y: ``(n,)`` class indices or ``(n, K)`` 0/1 labels (multi-label).
        probs: ``(n, K)`` scores.
        thresholds: multi-label decision thresholds (default 0.5).
    """
    probs = np.asarray(probs, np.float32)
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(classifier_columns(classes))
    if multilabel:
        thr = np.full(len(classes), 0.5) if thresholds is None else np.asarray(thresholds)
        truth = [_labels(np.asarray(row, bool), classes) for row in y]
        pred = [_labels(row >= thr, classes) for row in probs]
    else:
        truth = [classes[int(k)] for k in y]
        pred = [classes[int(k)] for k in np.argmax(probs, axis=1)]
    for i in range(len(probs)):
        writer.writerow([records[i], int(samples[i]), truth[i], pred[i],
                         *(f"{float(v):.9g}" for v in probs[i])])
    return buf.getvalue()


def _open_text(path: Path):
    """``path``, or its gzip copy ``<path>.gz`` (large committed prediction files are kept
    compressed; the evaluation itself writes plain CSV)."""
    gz = path.with_name(path.name + ".gz")
    if not path.exists() and gz.exists():
        return gzip.open(gz, "rt", newline="", encoding="utf-8")
    return open(path, newline="", encoding="utf-8")


def _rows(path: Path, columns: Sequence[str]) -> list[list[str]]:
    """Rows of a CSV file (or its ``.gz`` copy) whose header must be exactly ``columns``."""
    try:
        with _open_text(path) as fh:
            rows = list(csv.reader(fh))
    except FileNotFoundError as exc:
        raise PipelineError(f"{path}: predictions file not found") from exc
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise PipelineError(f"{path}: predictions file does not read ({exc})") from exc
    if not rows or rows[0] != list(columns):
        got = rows[0] if rows else []
        raise PipelineError(f"{path}: columns {got} are not the expected {list(columns)}")
    for i, row in enumerate(rows[1:], start=2):
        if len(row) != len(columns):
            raise PipelineError(f"{path}: line {i} has {len(row)} fields, expected {len(columns)}")
    return rows[1:]


def _parse_labels(text: str, classes: Sequence[str], path: Path, line: int, multilabel: bool) -> Any:
    names = [t for t in text.split("|") if t] if multilabel else [text]
    for t in names:
        if t not in classes:
            raise PipelineError(f"{path}: line {line}: unknown class {t!r}; known: {list(classes)}")
    if multilabel:
        return np.array([c in names for c in classes], np.int8)
    return list(classes).index(names[0])


def read_classifier_csv(path: Path, classes: Sequence[str], multilabel: bool) -> dict[str, np.ndarray]:
    """Reads ``predictions_test.csv`` back: ``record``, ``sample``, ``y``, ``pred``, ``probs``."""
    rows = _rows(Path(path), classifier_columns(classes))
    k = len(classes)
    try:
        probs = np.array([[float(v) for v in r[4:]] for r in rows], np.float32).reshape(-1, k)
        samples = np.array([int(r[1]) for r in rows], np.int64)
    except ValueError as exc:
        raise PipelineError(f"{path}: a sample or probability is not a number ({exc})") from exc
    y = [_parse_labels(r[2], classes, path, i, multilabel) for i, r in enumerate(rows, start=2)]
    pred = [_parse_labels(r[3], classes, path, i, multilabel) for i, r in enumerate(rows, start=2)]
    shape = (-1, k) if multilabel else (-1,)
    return {"record": np.array([r[0] for r in rows], str), "sample": samples,
            "y": np.asarray(y, np.int64).reshape(shape), "pred": np.asarray(pred, np.int64).reshape(shape),
            "probs": probs}


def mean_of_tables(tables: Sequence[Mapping[str, np.ndarray]],
                   names: Sequence[str]) -> dict[str, np.ndarray]:
    """The rows of several read-back classifier files (:func:`read_classifier_csv`) with their
    probabilities averaged, ``pred`` their argmax. Raises naming the first file (``names``)
    that does not hold the same examples (record, sample) with the same labels in the same
    order as the first."""
    first = tables[0]
    for name, t in zip(names[1:], tables[1:]):
        for key in ("record", "sample", "y"):
            if len(t[key]) != len(first[key]) or not np.array_equal(t[key], first[key]):
                what = "examples" if len(t[key]) != len(first[key]) else f"{key} column"
                raise PipelineError(f"{name}: its {what} differ from {names[0]}'s; stored "
                                    "predictions average only over the same test examples")
    probs = np.mean([np.asarray(t["probs"], np.float64) for t in tables], axis=0)
    probs = probs.astype(np.float32)
    return {"record": first["record"], "sample": first["sample"], "y": first["y"],
            "pred": np.argmax(probs, axis=1), "probs": probs}


def denoiser_csv(windows: Mapping[str, Mapping[str, Mapping[str, Any]]]) -> str:
    """Text of ``windows_test.csv`` from one method's ``evaluate_denoiser(...)["windows"]``
    entry (``{noise: {snr_label: {"record", "start", "per_window"}}}``)."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(DENOISER_COLUMNS)
    for nt, by_snr in windows.items():
        for cell in by_snr.values():
            pw = cell["per_window"]
            for i, rec in enumerate(cell["record"]):
                writer.writerow([rec, int(cell["start"][i]), nt, repr(float(pw["snr_in_db"][i])),
                                 repr(float(pw["snr_out_db"][i])), repr(float(pw["prd_pct"][i]))])
    return buf.getvalue()


def read_denoiser_csv(path: Path) -> dict[str, np.ndarray]:
    """Reads ``windows_test.csv`` back (one array per column)."""
    rows = _rows(Path(path), DENOISER_COLUMNS)
    try:
        return {"record": np.array([r[0] for r in rows], str),
                "start": np.array([int(r[1]) for r in rows], np.int64),
                "noise": np.array([r[2] for r in rows], str),
                **{c: np.array([float(r[j]) for r in rows], np.float64)
                   for j, c in enumerate(DENOISER_COLUMNS[3:], start=3)}}
    except ValueError as exc:
        raise PipelineError(f"{path}: a start or metric value is not a number ({exc})") from exc
