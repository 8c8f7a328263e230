"""A run's history beside ``history.json``: ``history.csv`` and validation TensorBoard scalars.

The Trainer fits one epoch per ``fit`` call and validates outside ``fit``, so Keras' own
CSVLogger and TensorBoard callbacks only see the training loss. This module writes what they
cannot: the whole history row of every epoch (training and validation) as CSV, rewritten
atomically after each epoch, and the validation numbers as TensorBoard scalars under
``<run>/tensorboard/validation`` (named like Keras' ``epoch_loss``, so ``tensorboard --logdir
Research_Runs`` overlays the training and validation curves).
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pipeline.core.io_utils import atomic_write_text

TENSORBOARD_DIR = "tensorboard"


def history_csv_text(history: Sequence[Mapping[str, Any]]) -> str:
    """CSV of history rows: the columns of every row in first-seen order, ``epoch`` first."""
    columns: list[str] = []
    for row in history:
        columns += [k for k in row if k not in columns]
    if "epoch" in columns:
        columns.remove("epoch")
        columns.insert(0, "epoch")
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n", extrasaction="ignore")
    writer.writeheader()
    for row in history:
        writer.writerow({k: ("" if row.get(k) is None else row.get(k)) for k in columns})
    return buf.getvalue()


def write_history_csv(path: Path, history: Sequence[Mapping[str, Any]]) -> None:
    """Writes ``history.csv`` atomically (a killed run never leaves half a file)."""
    atomic_write_text(Path(path), history_csv_text(history))


def validation_scalars(row: Mapping[str, Any]) -> dict[str, float]:
    """TensorBoard names of a history row's finite validation numbers: ``val_loss`` ->
    ``epoch_loss``, ``val_macro_f1`` -> ``epoch_macro_f1``."""
    out = {}
    for key, value in row.items():
        if key.startswith("val_") and isinstance(value, (int, float)) and not isinstance(value, bool):
            if math.isfinite(float(value)):
                out["epoch_" + key[len("val_"):]] = float(value)
    return out


def write_validation_scalars(run_dir: Path, row: Mapping[str, Any]) -> None:
    """Appends one epoch's validation scalars to ``<run>/tensorboard/validation``."""
    import tensorflow as tf

    scalars = validation_scalars(row)
    if not scalars:
        return
    writer = tf.summary.create_file_writer(str(Path(run_dir) / TENSORBOARD_DIR / "validation"))
    with writer.as_default():
        for name, value in scalars.items():
            tf.summary.scalar(name, value, step=int(row.get("epoch", 1)) - 1)
    writer.close()
