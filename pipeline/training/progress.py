"""Training progress a person can follow in a terminal and in a log file.

:class:`ProgressLogger` is a Keras callback that writes one log line every ``every_steps``
steps or every ``every_s`` seconds, whichever comes first, with the step, examples/s, the ETA
of the epoch and of the run, and the running loss. Lines go through :mod:`logging` (logger
``ecg.progress``), so they reach a non-tty log file as they happen, unlike Keras' progress bar
which redraws one terminal line. :func:`progress_callbacks` adds TensorBoard event files
(``<run>/tensorboard``) and a CSV history (``<run>/history.csv``, appended on resume).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import keras

log = logging.getLogger("ecg.progress")


def format_duration(seconds: float) -> str:
    """``1 h 02 min``, ``3 min 05 s`` or ``42 s``."""
    s = int(round(max(0.0, seconds)))
    if s >= 3600:
        return f"{s // 3600} h {s % 3600 // 60:02d} min"
    if s >= 60:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s} s"


class ProgressLogger(keras.callbacks.Callback):
    """Logs progress every ``every_steps`` steps or ``every_s`` seconds.

    Args:
        batch_size: examples per step (for examples/s).
        steps_per_epoch: steps of one epoch, or None when unknown (no epoch ETA then).
        epochs: epochs of the whole run (for the run's ETA).
        initial_epoch: epochs already done (a resumed run).
        every_s: the longest gap between two lines, in seconds.
        every_steps: a line at least every this many steps (0: by time only).
        clock: a time source (tests pass a fake one).
    """

    def __init__(self, batch_size: int, steps_per_epoch: int | None, epochs: int, *,
                 initial_epoch: int = 0, every_s: float = 30.0, every_steps: int = 0,
                 clock=time.monotonic):
        super().__init__()
        if batch_size < 1 or epochs < 1 or every_s <= 0 or every_steps < 0:
            raise ValueError("ProgressLogger needs batch_size >= 1, epochs >= 1, every_s > 0 "
                             f"and every_steps >= 0. Received: batch_size={batch_size}, "
                             f"epochs={epochs}, every_s={every_s}, every_steps={every_steps}")
        self.batch_size, self.steps_per_epoch, self.epochs = batch_size, steps_per_epoch, epochs
        self.initial_epoch, self.every_s, self.every_steps = initial_epoch, every_s, every_steps
        self.clock = clock
        self.epoch_times: list[float] = []

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self.epoch = epoch
        self.t_epoch = self.t_last = self.clock()
        self.last_step = 0

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        step = batch + 1
        now = self.clock()
        by_steps = self.every_steps and step - self.last_step >= self.every_steps
        if not (by_steps or now - self.t_last >= self.every_s):
            return
        self.t_last, self.last_step = now, step
        log.info("%s", self.line(step, now - self.t_epoch, logs or {}))

    def line(self, step: int, elapsed_s: float, logs: dict[str, Any]) -> str:
        """One progress line for ``step`` steps done ``elapsed_s`` into the epoch."""
        rate = step * self.batch_size / elapsed_s if elapsed_s > 0 else 0.0
        parts = [f"epoch {self.epoch + 1}/{self.epochs}",
                 f"step {step}" + (f"/{self.steps_per_epoch}" if self.steps_per_epoch else ""),
                 f"{rate:,.0f} examples/s"]
        if self.steps_per_epoch and step > 0:
            left_epoch = elapsed_s / step * max(0, self.steps_per_epoch - step)
            epochs_left = self.epochs - self.epoch - 1
            per_epoch = (sum(self.epoch_times) / len(self.epoch_times) if self.epoch_times
                         else elapsed_s / step * self.steps_per_epoch)
            parts += [f"epoch ETA {format_duration(left_epoch)}",
                      f"run ETA {format_duration(left_epoch + epochs_left * per_epoch)}"]
        if "loss" in logs:
            parts.append(f"loss {float(logs['loss']):.4g}")
        return ", ".join(parts)

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        took = self.clock() - self.t_epoch
        self.epoch_times.append(took)
        shown = ", ".join(f"{k} {float(v):.4g}" for k, v in sorted((logs or {}).items())
                          if isinstance(v, (int, float)))
        log.info("epoch %d/%d done in %s%s", epoch + 1, self.epochs, format_duration(took),
                 f": {shown}" if shown else "")


def progress_callbacks(run_dir: Path, *, batch_size: int, steps_per_epoch: int | None,
                       epochs: int, initial_epoch: int = 0, every_s: float = 30.0,
                       tensorboard: bool = True,
                       csv_history: bool = True) -> list[keras.callbacks.Callback]:
    """Progress lines, a CSV history beside ``history.json`` and TensorBoard event files.

    ``csv_history=False`` leaves out the CSVLogger (the Trainer writes ``history.csv`` from
    its own history, which holds the validation metrics that ``fit`` never sees).
    """
    out: list[keras.callbacks.Callback] = [
        ProgressLogger(batch_size, steps_per_epoch, epochs, initial_epoch=initial_epoch,
                       every_s=every_s),
    ]
    if csv_history:
        out.append(keras.callbacks.CSVLogger(str(Path(run_dir) / "history.csv"),
                                             append=initial_epoch > 0))
    if tensorboard:
        out.append(keras.callbacks.TensorBoard(log_dir=str(Path(run_dir) / "tensorboard"),
                                               write_graph=False, profile_batch=0))
    return out
