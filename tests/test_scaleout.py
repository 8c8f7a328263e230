"""Scale-out that runs: two ``pipeline.train`` worker processes under
MultiWorkerMirroredStrategy on loopback ports (``TF_CONFIG``) train a tiny run to completion
with the same run-folder files as a single-process run, and a Keras Tuner search with a
chief (the oracle) and two workers finishes four trials, each run once.

Both start several TensorFlow processes, so they are marked slow (``--run-slow``). The fast
tests check the multi-worker training loop (:mod:`pipeline.training.distributed_loop`)
against ``model.fit`` in this process, and the one-line errors of a bad ``TF_CONFIG``.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
import _trained_runs as trained_runs  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SEG = "mitdb_aami5_segments"


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return trained_runs.data_root(tmp_path_factory)


def _free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k != "TF_CONFIG" and not k.startswith("KERASTUNER")}
    return {**env, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": "",
            "OMP_NUM_THREADS": "1", **extra}


def _sets(*extra: str) -> list[str]:
    out = []
    for s in (*trained_runs.SETS, *extra):
        out += ["--set", s]
    return out


def _train_cmd(root: Path, run: Path, *extra: str, which: str = "segments") -> list[str]:
    task, model, kwargs = trained_runs.RUNS[which]
    return [sys.executable, "-m", "pipeline.train", "--data-dir", str(root), "--task", task,
            "--model", model, "--model-kwargs", json.dumps(kwargs),
            "--run-dir", str(run), "--checkpoint-every-s", "0",
            *_sets("train.epochs=2", "train.batch_size=16", *extra)]


def _files(run: Path) -> list[str]:
    """The run folder's files (TensorBoard event files named without their time, host, pid)."""
    return sorted(re.sub(r"(events\.out\.tfevents)\..*", r"\1", str(p.relative_to(run)))
                  for p in run.rglob("*") if p.is_file())


def _wait_all(procs: list[subprocess.Popen], timeout_s: float) -> list[tuple[int, str]]:
    out = []
    deadline = time.monotonic() + timeout_s
    for p in procs:
        try:
            _, err = p.communicate(timeout=max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            for q in procs:
                q.kill()
            raise
        out.append((p.returncode, err))
    return out


# ------------------------------------------------ the training loop against model.fit


def _loss(name: str):
    import keras

    from pipeline.training import losses

    return {"crossentropy": keras.losses.CategoricalCrossentropy,
            "focal": keras.losses.CategoricalFocalCrossentropy,
            "binary": keras.losses.BinaryCrossentropy,
            "denoise": losses.DenoiseLoss,
            "snr_db": losses.SNRLoss,
            "spectral": lambda: losses.WithSpectralTerm(losses.DenoiseLoss(), 0.1)}[name]()


def _model_and_data(loss: str, weighted: bool = False):
    """A seeded tiny model compiled like the trainer's and a 64-example ``tf.data`` stream."""
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(3)
    rng = np.random.default_rng(0)
    if loss in ("denoise", "snr_db", "spectral"):
        x = rng.normal(size=(64, 128, 1)).astype("float32")
        y = (0.5 * x + 0.1 * rng.normal(size=x.shape)).astype("float32")
        model = keras.Sequential([keras.Input((128, 1)), keras.layers.Conv1D(4, 5, padding="same"),
                                  keras.layers.Conv1D(1, 5, padding="same")])
    else:
        x = rng.normal(size=(64, 6)).astype("float32")
        y = (keras.utils.to_categorical(rng.integers(0, 3, 64), 3) if loss != "binary"
             else rng.integers(0, 2, (64, 3))).astype("float32")
        model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(8, activation="relu"),
                                  keras.layers.Dense(3, activation="sigmoid" if loss == "binary"
                                                     else "softmax")])
    model.compile(optimizer=keras.optimizers.AdamW(1e-2, weight_decay=1e-3, clipnorm=1.0),
                  loss=_loss(loss), jit_compile=False)
    parts = (x, y, rng.uniform(0.5, 2.0, 64).astype("float32")) if weighted else (x, y)
    return model, tf.data.Dataset.from_tensor_slices(parts).batch(16)


@pytest.mark.parametrize("loss, class_weight, weighted", [
    ("crossentropy", {0: 1.0, 1: 3.0, 2: 0.5}, False), ("focal", None, False),
    ("binary", None, False), ("denoise", None, False), ("denoise", None, True),
    ("snr_db", None, False), ("spectral", None, False)])
def test_multi_worker_loop_trains_exactly_like_fit_for_every_training_loss(loss, class_weight,
                                                                          weighted):
    import tensorflow as tf

    from pipeline.training import distributed_loop

    ref, ds = _model_and_data(loss, weighted)
    want = ref.fit(ds.repeat(), steps_per_epoch=5, epochs=1, verbose=0, class_weight=class_weight)
    strategy = tf.distribute.MirroredStrategy(["/cpu:0"])
    with strategy.scope():  # variables created in the strategy, as under the trainer
        model, ds = _model_and_data(loss, weighted)
    fit = distributed_loop.fit_function(model, strategy)
    got = fit(ds.repeat(), steps_per_epoch=5, epochs=1, class_weight=class_weight)
    assert got.history["loss"] == pytest.approx(want.history["loss"], rel=1e-5)
    for a, b in zip(ref.get_weights(), model.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
    assert int(model.optimizer.iterations.numpy()) == int(ref.optimizer.iterations.numpy()) == 5


def test_multi_worker_loop_calls_the_callbacks_as_fit_does_and_honours_stop_training():
    import keras
    import tensorflow as tf

    from pipeline.training import distributed_loop

    class Record(keras.callbacks.Callback):
        def __init__(self, stop_at: int | None = None):
            super().__init__()
            self.calls, self.stop_at = [], stop_at

        def on_train_begin(self, logs=None):
            self.calls.append(("train_begin",))

        def on_epoch_begin(self, epoch, logs=None):
            self.calls.append(("epoch_begin", epoch))

        def on_train_batch_end(self, batch, logs=None):
            self.calls.append(("batch_end", batch, sorted(logs)))
            if batch == self.stop_at:
                self.model.stop_training = True

        def on_epoch_end(self, epoch, logs=None):
            self.calls.append(("epoch_end", epoch, sorted(logs)))

        def on_train_end(self, logs=None):
            self.calls.append(("train_end",))

    runs = {}
    for how in ("fit", "loop"):
        model, ds = _model_and_data("crossentropy")
        fit = (model.fit if how == "fit"
               else distributed_loop.fit_function(model, tf.distribute.get_strategy()))
        cbs = [Record(), Record(stop_at=1)]
        hist = fit(ds.repeat(), steps_per_epoch=3, initial_epoch=2, epochs=3, verbose=0,
                   callbacks=cbs[:1])
        fit(ds.repeat(), steps_per_epoch=3, initial_epoch=3, epochs=5, verbose=0, callbacks=cbs[1:])
        runs[how] = [c.calls for c in cbs], sorted(hist.history), hist.epoch
    assert runs["loop"] == runs["fit"]
    calls = runs["loop"][0][0]
    assert calls[1] == ("epoch_begin", 2) and calls[-2] == ("epoch_end", 2, ["loss"])
    assert [c for c in runs["loop"][0][1] if c[0] == "batch_end"][-1][1] == 1  # stopped at step 2


def test_validation_copy_holds_the_trained_weights_outside_the_strategy():
    import tensorflow as tf

    from pipeline.training import distributed_loop

    strategy = tf.distribute.MirroredStrategy(["/cpu:0"])
    with strategy.scope():
        model, ds = _model_and_data("crossentropy")
    local = distributed_loop.local_copy(model)
    assert local is not model and local.distribute_strategy is tf.distribute.get_strategy()
    distributed_loop.fit_function(model, strategy)(ds.repeat(), steps_per_epoch=2)
    assert distributed_loop.local_copy(model) is local  # made once, refreshed at every call
    np.testing.assert_allclose(local.predict(ds, verbose=0), model.predict(ds, verbose=0),
                               atol=1e-6)
    assert local.evaluate(ds, verbose=0) == pytest.approx(model.evaluate(ds, verbose=0), rel=1e-6)


# ------------------------------------------------------------- bad TF_CONFIG, one line


@pytest.mark.parametrize("tf_config, message", [
    (None, "train.distribution=multi_worker needs TF_CONFIG set on every worker"),
    ("{not json", "TF_CONFIG is not a valid cluster description"),
    (json.dumps({"cluster": {"worker": ["127.0.0.1:1"]}}), "TF_CONFIG is not a valid cluster"),
    (json.dumps({"cluster": {"worker": ["127.0.0.1:1", "127.0.0.1:2"]},
                 "task": {"type": "worker", "index": 2}}),
     r"TF_CONFIG task worker 2 is not in its cluster \(2 worker address\(es\)\)"),
    (json.dumps({"cluster": {"ps": ["127.0.0.1:1"], "worker": ["127.0.0.1:2"]},
                 "task": {"type": "ps", "index": 0}}),
     "TF_CONFIG task type 'ps': multi-worker training runs chief and worker tasks only"),
], ids=["missing", "not_json", "no_task", "index_outside_cluster", "parameter_server"])
def test_multi_worker_train_with_a_bad_tf_config_exits_2_with_one_line_before_any_work(
        tf_config, message, tmp_path, monkeypatch, capsys):
    from pipeline import train as train_cmd
    from pipeline.core.io_utils import run_cli

    monkeypatch.delenv("TF_CONFIG", raising=False)
    if tf_config is not None:
        monkeypatch.setenv("TF_CONFIG", tf_config)
    run = tmp_path / "run"
    code = run_cli(train_cmd.main, ["--data-dir", str(tmp_path), "--task", SEG, "--model", "ldcnn",
                                    "--run-dir", str(run),
                                    "--set", "train.distribution=multi_worker"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith("error: ") and len(err.splitlines()) == 1
    assert re.search(message, err), err
    assert not run.exists()


# ---------------------------------------------------------------- processes (slow)


@pytest.mark.slow
@pytest.mark.parametrize("which", ["segments", "denoise"])  # a classifier and a denoiser
def test_two_multi_worker_processes_train_a_run_like_a_single_process(which, root, tmp_path):
    t0 = time.monotonic()
    single = tmp_path / "single"
    r = subprocess.run(_train_cmd(root, single, which=which), cwd=ROOT, env=_env(),
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    t_single = time.monotonic() - t0

    run = tmp_path / "multi"
    ports = _free_ports(2)
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    configs = [json.dumps({"cluster": cluster, "task": {"type": "worker", "index": i}})
               for i in range(2)]
    scratch = tmp_path / "worker_tmp"  # TMPDIR of the workers: the non-chief's scratch folder
    scratch.mkdir()
    procs = [subprocess.Popen(_train_cmd(root, run, "train.distribution=multi_worker",
                                         which=which),
                              cwd=ROOT, env=_env(TF_CONFIG=c, TMPDIR=str(scratch)),
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
             for c in configs]
    t1 = time.monotonic()
    results = _wait_all(procs, 900)
    t_multi = time.monotonic() - t1
    for code, err in results:
        assert code == 0, err[-3000:]
    summary = json.loads((run / "summary.json").read_text())
    assert summary["distribution"] == "multi_worker" and summary["replicas"] == 2
    assert summary["epochs_done"] == 2 and summary["finished"]
    assert _files(run) == _files(single)  # the chief wrote the run; the worker nothing here
    hist, hist_single = (json.loads((r / "history.json").read_text()) for r in (run, single))
    assert [sorted(h) for h in hist] == [sorted(h) for h in hist_single]  # same columns
    assert all(np.isfinite(h["loss"]) and np.isfinite(h["val_loss"]) for h in hist)
    assert not list(scratch.iterdir())  # the worker deleted its scratch run folder
    print(f"{which}: single process {t_single:.1f} s, two workers {t_multi:.1f} s")


@pytest.mark.slow
def test_distributed_keras_tuner_search_runs_each_of_four_trials_once(root, tmp_path):
    out = tmp_path / "search"
    (port,) = _free_ports(1)
    cmd = [sys.executable, "-m", "pipeline.tune", "--data-dir", str(root), "--task", SEG,
           "--model", "ldcnn", "--algorithm", "random", "--out", str(out),
           *_sets("tune.max_trials=4", "tune.max_epochs=1")]
    oracle = {"KERASTUNER_ORACLE_IP": "127.0.0.1", "KERASTUNER_ORACLE_PORT": str(port)}
    t0 = time.monotonic()
    procs = [subprocess.Popen(cmd, cwd=ROOT, env=_env(KERASTUNER_TUNER_ID=tid, **oracle),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for tid in ("chief", "tuner0", "tuner1")]
    results = _wait_all(procs, 900)
    wall = time.monotonic() - t0
    for code, err in results:
        assert code == 0, err[-3000:]
    trials = json.loads((out / "trials.json").read_text())
    assert len(trials) == 4 and {t["status"] for t in trials} == {"COMPLETED"}
    started = [m.groups() for _, err in results[1:]
               for m in re.finditer(r"trial (\S+) started by (tuner\d)", err)]
    assert sorted(t for t, _ in started) == sorted(t["trial"] for t in trials)  # each once
    assert json.loads((out / "best_hparams.json").read_text())["completed_trials"] == 4
    print(f"distributed search of 4 trials (chief + 2 workers): {wall:.1f} s; "
          f"trials per worker: {sorted(w for _, w in started)}")
