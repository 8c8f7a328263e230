"""Training progress lines, CSV history and TensorBoard event files."""

from __future__ import annotations

import logging

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from pipeline.training.progress import ProgressLogger, format_duration, progress_callbacks  # noqa: E402


class FakeClock:
    def __init__(self, step_s: float):
        self.t, self.step_s = 0.0, step_s

    def __call__(self) -> float:
        self.t += self.step_s
        return self.t


def _fit(callbacks, epochs=2, n=64, batch=8):
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
    model.compile("adam", "mse")
    x = np.random.default_rng(0).standard_normal((n, 4)).astype("float32")
    model.fit(x, x[:, :1], batch_size=batch, epochs=epochs, verbose=0, callbacks=callbacks)


def test_progress_lines_reach_a_log_file_with_rate_and_etas(caplog):
    caplog.set_level(logging.INFO, logger="ecg.progress")
    cb = ProgressLogger(8, 8, 2, every_s=2.5, clock=FakeClock(1.0))
    _fit([cb])
    lines = [r.getMessage() for r in caplog.records if r.name == "ecg.progress"]
    steps = [m for m in lines if "step " in m]
    assert steps, lines
    assert any(m.startswith("epoch 1/2, step 3/8, ") for m in steps)
    assert all("examples/s" in m and "epoch ETA" in m and "run ETA" in m for m in steps)
    assert sum(m.startswith("epoch 1/2 done in") for m in lines) == 1
    assert sum(m.startswith("epoch 2/2 done in") for m in lines) == 1


def test_eta_arithmetic():
    cb = ProgressLogger(10, 100, 3, every_s=30.0)
    cb.epoch = 0
    # 25 of 100 steps in 50 s: 5 examples/s, 150 s left in the epoch, 2 more epochs of 200 s
    assert cb.line(25, 50.0, {"loss": 0.5}) == (
        "epoch 1/3, step 25/100, 5 examples/s, epoch ETA 2 min 30 s, "
        "run ETA 9 min 10 s, loss 0.5")
    assert format_duration(3725) == "1 h 02 min"


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="Received: batch_size=0"):
        ProgressLogger(0, 10, 1)


def test_csv_history_and_tensorboard_event_files(tmp_path):
    _fit(progress_callbacks(tmp_path, batch_size=8, steps_per_epoch=8, epochs=1), epochs=1)
    csv = (tmp_path / "history.csv").read_text().splitlines()
    assert csv[0].split(",")[:2] == ["epoch", "loss"] and len(csv) == 2
    assert list((tmp_path / "tensorboard").rglob("events.out.tfevents.*"))
