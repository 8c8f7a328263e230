"""Fault injection and bad input across every stage: what happens when ... (README table).

* Interruption: each stage's process is killed (SIGKILL) at a seeded random point, then the
  same command is run again; outputs must equal an uninterrupted run byte for byte (wall-time
  fields aside), training must resume rather than restart, tuning must end with the same
  trials.
* Storage: the disk fills (a file size limit in a child process, ``RLIMIT_FSIZE``, or a writer
  that raises ``ENOSPC``) while a stage writes; a one-line error, nothing partial that a later
  run would trust, and a rerun after freeing space completes.
* Broken inputs: damaged WFDB files, TFRecord files, normalization statistics and configs;
  NaN and flat-line spans, records without beats, a class absent from a split.
* Security: names and paths from configs or mirrors stay inside the data folder, downloads
  need HTTPS and checksums, models load in safe mode, no pickles anywhere.
* Determinism: same config and seed give the same splits, files and (slow) weights.

Cases already covered elsewhere are not repeated here (see the README table); property-based
cases are in ``tests/test_properties.py``. Everything runs on seeded synthetic records in
``tmp_path``; subprocesses run the real ``python -m pipeline.<stage>`` command lines.
"""

from __future__ import annotations

import errno
import http.server
import json
import os
import random
import re
import resource
import shutil
import signal
import subprocess
import sys
import threading
import time
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # `.venv/bin/pytest` alone does not put the checkout on the path
    sys.path.insert(0, str(ROOT))

wfdb = pytest.importorskip("wfdb")

from data_tools.mirror_server import MirrorServer, _Handler  # noqa: E402
from data_tools.synthetic import synth_signal, write_checksums, write_record, write_signal  # noqa: E402
from pipeline import download as download_cmd  # noqa: E402
from pipeline import scalograms as scalograms_cmd  # noqa: E402
from pipeline import tfrecords as tfrecords_cmd  # noqa: E402
from pipeline import windows as windows_cmd  # noqa: E402
from pipeline.core.config import ConfigError, WindowsConfig, load_config  # noqa: E402
from pipeline.core.io_utils import PipelineError, load_npz, run_cli, sha256_file  # noqa: E402
from pipeline.data import (
    download,  # noqa: E402
    loader,  # noqa: E402
    normalization,  # noqa: E402
)
from pipeline.data import tfrecord_writer as tfrecords  # noqa: E402
from pipeline.data import windowing as windows  # noqa: E402
from pipeline.data.tasks import get_task  # noqa: E402
from pipeline.training import run_folder as X  # noqa: E402
from pipeline.training import trainer as train  # noqa: E402

SEG = "mitdb_aami5_segments"
N_SCALES = 8
SETS = (
    "windows.workers=1",
    "scalograms.workers=1",
    f"scalograms.n_scales={N_SCALES}",
    "tfrecords.examples_per_batch=16",
    "tfrecords.denoise_chunk_windows=16",
)
# Three 30 s records and a 60 s one (processed last): its outputs are about twice as large,
# so a file size limit between the two lets three records through and fails the fourth.
RECORDS = {"s00": 30.0, "s01": 30.0, "s02": 30.0, "s03": 60.0}
WALL_KEYS = frozenset({"wall_time_s", "seconds", "beats_per_s"})
TMP_NAME = re.compile(r"^\..*\.(tmp|part)$|\.tmp\.keras$")

# Runs a stage's main() with one module function slowed down, so that a kill at a random time
# lands inside the stage (between or during records) rather than before or after it.
SLOW_DRIVER = """
import importlib, sys, time
from pipeline.core.io_utils import run_cli
command, attr, delay_s = sys.argv[1], sys.argv[2], float(sys.argv[3])
module, _, attr = attr.rpartition(":")
mod = importlib.import_module(module)
real = getattr(mod, attr)
def slowed(*args, **kwargs):
    time.sleep(delay_s)
    return real(*args, **kwargs)
setattr(mod, attr, slowed)
sys.exit(run_cli(importlib.import_module(command).main, sys.argv[4:]))
"""


@pytest.fixture(autouse=True)
def _isolated(monkeypatch):
    monkeypatch.delenv("ECG_MIRROR", raising=False)
    monkeypatch.delenv("ECG_DATA_DIR", raising=False)
    monkeypatch.setattr(download, "BACKOFF_S", 0.0)


# ----------------------------------------------------------------------------- helpers


def child_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("ECG_MIRROR", "ECG_DATA_DIR")}
    env.update(
        PYTHONPATH=str(ROOT),
        TF_CPP_MIN_LOG_LEVEL="2",
        PYTHONDONTWRITEBYTECODE="1",
        OMP_NUM_THREADS="1",
        TF_NUM_INTRAOP_THREADS="1",
        TF_NUM_INTEROP_THREADS="1",
    )
    return env


def argv(root: Path, *sets: str) -> list[str]:
    out = ["--data-dir", str(root)]
    for s in (*SETS, *sets):
        out += ["--set", s]
    return out


def cfg_for(root: Path, **sections):
    over = {
        "windows": {"workers": 1},
        "scalograms": {"n_scales": N_SCALES, "workers": 1},
        "tfrecords": {"examples_per_batch": 16, "denoise_chunk_windows": 16},
    }
    for k, v in sections.items():
        over[k] = {**over.get(k, {}), **v}
    return load_config(None, {"data": {"data_dir": str(root)}, **over}, apply_env=False)


def shas(folder: Path, pattern: str) -> dict[str, str]:
    return {p.name: sha256_file(p) for p in sorted(folder.glob(pattern))}


def without_wall_time(obj):
    """A manifest with its wall-time fields removed (they differ between any two runs)."""
    if isinstance(obj, dict):
        return {k: without_wall_time(v) for k, v in obj.items() if k not in WALL_KEYS}
    if isinstance(obj, list):
        return [without_wall_time(v) for v in obj]
    return obj


def manifest(folder: Path) -> dict:
    return without_wall_time(json.loads((folder / "manifest.json").read_text()))


def temp_files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*") if TMP_NAME.search(p.name))


def copy_stages(src: Path, dst: Path, *parts: str) -> Path:
    """Copies ``raw`` and the given stage folders (mtimes kept, so stages see them as theirs)."""
    for part in ("raw", *parts):
        shutil.copytree(src / part, dst / part)
    return dst


def kill_at_random_point(
    cmd: list[str],
    seed: int,
    ready: Callable[[], bool],
    max_delay_s: float,
    log: Path,
    timeout_s: float = 180.0,
) -> float:
    """Starts ``cmd``, waits for ``ready()``, sleeps a seeded random delay, then SIGKILLs it.

    Returns the delay. Fails when the process ends by itself before the kill.
    """
    delay = random.Random(seed).uniform(0.0, max_delay_s)
    with open(log, "ab") as fh:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=child_env(), stdout=fh, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + timeout_s
        while not ready():
            assert proc.poll() is None, f"{cmd[:4]} ended (rc {proc.returncode}) before the marker"
            assert time.monotonic() < deadline, f"{cmd[:4]}: no marker after {timeout_s} s"
            time.sleep(0.02)
        time.sleep(delay)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL, (
        f"finished before the kill:\n{log.read_text()[-2000:]}"
    )
    return delay


def slowed(command: str, attr: str, delay_s: float, args: list[str]) -> list[str]:
    """``attr`` is ``library.module:function``; ``command`` the command module that runs."""
    return [sys.executable, "-c", SLOW_DRIVER, command, attr, str(delay_s), *args]


def run_with_file_size_limit(cmd: list[str], limit_bytes: int) -> subprocess.CompletedProcess:
    """Runs ``cmd`` as if the disk filled up: files cannot grow past ``limit_bytes``."""

    def limit() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # write() then fails with EFBIG
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit_bytes, limit_bytes))

    return subprocess.run(
        cmd,
        cwd=ROOT,
        env=child_env(),
        capture_output=True,
        text=True,
        preexec_fn=limit,
        timeout=300,
    )


def error_lines(stderr: str) -> list[str]:
    return [ln for ln in stderr.splitlines() if ln.startswith("error:")]


def write_raw(folder: Path, records: dict[str, float] = RECORDS) -> Path:
    for i, (name, duration_s) in enumerate(records.items()):
        write_record(folder, name, seed=i, duration_s=duration_s)
    (folder / "RECORDS").write_text("\n".join(records) + "\n")
    write_checksums(folder)
    return folder


def write_custom_record(folder: Path, name: str, signal_mv: np.ndarray, samples, symbols) -> None:
    write_signal(folder, name, signal_mv, 360)
    wfdb.wrann(
        name,
        "atr",
        sample=np.asarray(samples, np.int64),
        symbol=list(symbols),
        write_dir=str(folder),
    )


# ---------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    """The uninterrupted reference: raw records -> windows -> scalograms -> TFRecords."""
    root = tmp_path_factory.mktemp("base")
    write_raw(root / "raw" / "mitdb")
    assert windows_cmd.main([*argv(root), "--databases", "mitdb"]) == 0
    assert scalograms_cmd.main(argv(root)) == 0
    assert tfrecords_cmd.main([*argv(root), "--kinds", "segments", "beats", "denoise"]) == 0
    return root


# ------------------------------------------------------------------------ interruption


@pytest.mark.parametrize("seed", [0, 1])
def test_windows_killed_at_random_point_then_rerun_equals_uninterrupted(base, tmp_path, seed):
    root = copy_stages(base, tmp_path / "d")
    out = root / "windows" / "mitdb"
    cmd = slowed("pipeline.windows", "pipeline.data.windowing:_worker", 0.4, [*argv(root), "--databases", "mitdb"])
    kill_at_random_point(cmd, seed, lambda: (out / "s00.npz").is_file(), 0.8, tmp_path / "log")
    assert not (out / "_stage.json").exists()  # killed inside the stage
    for p in out.glob("*.npz"):  # whatever the kill left under a final name is complete
        assert sha256_file(p) == sha256_file(base / "windows" / "mitdb" / p.name)
    assert windows_cmd.main([*argv(root), "--databases", "mitdb"]) == 0
    assert shas(out, "*.npz") == shas(base / "windows" / "mitdb", "*.npz")
    assert manifest(out) == manifest(base / "windows" / "mitdb")


def test_scalograms_killed_at_random_point_then_rerun_equals_uninterrupted(base, tmp_path):
    root = copy_stages(base, tmp_path / "d", "windows")
    out = root / "scalograms" / "mitdb"
    cmd = slowed("pipeline.scalograms", "pipeline.data.scalogram:_worker", 0.4, argv(root))
    kill_at_random_point(cmd, 3, lambda: (out / "s00.npz").is_file(), 0.8, tmp_path / "log")
    assert not (out / "_stage.json").exists()
    assert scalograms_cmd.main(argv(root)) == 0
    assert shas(out, "*.npz") == shas(base / "scalograms" / "mitdb", "*.npz")
    assert manifest(out) == manifest(base / "scalograms" / "mitdb")


def test_tfrecords_killed_at_random_point_then_rerun_equals_uninterrupted(base, tmp_path):
    root = copy_stages(base, tmp_path / "d", "windows", "scalograms")
    kinds = ("segments", "denoise")
    first = root / "tfrecords" / "segments" / tfrecords.shard_name("s00")
    cmd = slowed("pipeline.tfrecords", "pipeline.data.tfrecord_writer:_worker", 0.4, [*argv(root), "--kinds", *kinds])
    kill_at_random_point(cmd, 4, first.is_file, 2.0, tmp_path / "log")
    for kind in kinds:  # the progress file only ever lists complete files
        prog = root / "tfrecords" / kind / "_progress.json"
        if prog.is_file():
            for entry in json.loads(prog.read_text()).values():
                f = root / "tfrecords" / kind / entry["entry"]["file"]
                assert sha256_file(f) == entry["entry"]["sha256"]
    assert tfrecords_cmd.main([*argv(root), "--kinds", *kinds]) == 0
    for kind in kinds:
        out, ref = root / "tfrecords" / kind, base / "tfrecords" / kind
        assert shas(out, "*.tfrecord") == shas(ref, "*.tfrecord")
        assert manifest(out) == manifest(ref)


class _Trickle:
    """A socket writer that sends 1 kB every 10 ms (100 kB/s): a slow mirror."""

    def __init__(self, raw) -> None:
        self.raw = raw

    def write(self, data) -> int:
        for i in range(0, len(data), 1024):
            self.raw.write(data[i : i + 1024])
            self.raw.flush()
            time.sleep(0.01)
        return len(data)

    def __getattr__(self, name):
        return getattr(self.raw, name)


class _SlowHandler(_Handler):
    def setup(self) -> None:
        super().setup()
        self.wfile = _Trickle(self.wfile)


@pytest.fixture(scope="module")
def mirror_root(tmp_path_factory) -> Path:
    """A mirror laid out like shared/data: two MIT-BIH records with SHA256SUMS.txt (101.dat is
    162 kB, so a kill during its transfer can leave a partial file to resume)."""
    root = tmp_path_factory.mktemp("mirror")
    write_raw(root / "mitdb", {"100": 60.0, "101": 150.0})
    return root


def download_argv(data: Path, url: str) -> list[str]:
    return [
        "--data-dir",
        str(data),
        "--mirror",
        url,
        "--databases",
        "mitdb",
        "--set",
        "data.mitdb_records=['100', '101']",
    ]


def listed(mirror: Path) -> dict[str, str]:
    return download.parse_sha256sums((mirror / "mitdb" / "SHA256SUMS.txt").read_text(), "test")


@pytest.mark.parametrize("seed", [0, 1])
def test_download_killed_at_random_point_then_rerun_verifies_every_file(
    mirror_root, tmp_path, seed
):
    data = tmp_path / "data"
    server = MirrorServer(mirror_root)
    server._server.RequestHandlerClass = _SlowHandler
    server._server.handle_error = lambda request, address: None  # the client was killed
    with server:
        cmd = [sys.executable, "-m", "pipeline.download", *download_argv(data, server.url)]
        started = lambda: any(r.path.endswith(".dat") for r in server.requests)  # noqa: E731
        kill_at_random_point(cmd, seed, started, 1.2, tmp_path / "log")
        dest = data / "raw" / "mitdb"
        parts = [p.name for p in dest.glob(".*.part") if p.stat().st_size]
        for rel, digest in listed(mirror_root).items():  # final names hold verified bytes only
            if (dest / rel).is_file():
                assert sha256_file(dest / rel) == digest
        server.clear()
        assert download_cmd.main(download_argv(data, server.url)) == 0
        if parts:  # a partial file left by the kill is resumed with a Range request
            # (requests hands over 64 kB blocks: a smaller file is all or nothing)
            assert any(r.range for r in server.requests)
    for rel, digest in listed(mirror_root).items():
        assert sha256_file(dest / rel) == digest
    assert not temp_files(dest)


def _state(run: Path) -> dict:
    return json.loads((run / train.STATE_FILE).read_text())


TRAIN_ARGS = (
    "--task",
    SEG,
    "--model",
    "ldcnn",
    "--model-kwargs",
    '{"filters": 8, "dilations": [1, 2]}',
    "--set",
    "train.batch_size=32",
    "--set",
    "train.examples_per_epoch=256",
    "--set",
    "tfrecords.examples_per_batch=32",
    "--set",
    "windows.workers=1",
)


@pytest.fixture(scope="module")
def train_data(tmp_path_factory) -> Path:
    """Six synthetic 60 s records -> windows -> segment TFRecords (for the training cases)."""
    root = tmp_path_factory.mktemp("train")
    write_raw(root / "raw" / "mitdb", {f"s{i:02d}": 60.0 for i in range(6)})
    sets = [
        "--data-dir",
        str(root),
        "--set",
        "windows.workers=1",
        "--set",
        "tfrecords.examples_per_batch=32",
    ]
    assert windows_cmd.main([*sets, "--databases", "mitdb"]) == 0
    assert tfrecords_cmd.main([*sets, "--kinds", "segments"]) == 0
    return root


def train_cmd(data: Path, run: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "pipeline.train",
        "--data-dir",
        str(data),
        *TRAIN_ARGS,
        "--run-dir",
        str(run),
        *extra,
    ]


@pytest.mark.slow
def test_training_killed_after_a_checkpoint_resumes_instead_of_restarting(train_data, tmp_path):
    run = tmp_path / "run"
    cmd = train_cmd(train_data, run, "--set", "train.epochs=5", "--checkpoint-every-s", "0.5")
    kill_at_random_point(cmd, 5, (run / train.STATE_FILE).is_file, 0.3, tmp_path / "killed.log")
    at_kill = _state(run)
    assert (run / "checkpoints" / "last.keras").is_file() and not at_kill["finished"]
    r = subprocess.run(cmd, cwd=ROOT, env=child_env(), capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    assert f"resuming {run} at epoch {at_kill['epoch']} step {at_kill['step_in_epoch']}" in r.stderr
    history = json.loads((run / "history.json").read_text())
    assert [h["epoch"] for h in history] == [1, 2, 3, 4, 5]
    assert history[: at_kill["epoch"]] == at_kill["history"]  # finished epochs not trained again
    assert json.loads((run / "summary.json").read_text())["epochs_done"] == 5


class _Killed(BaseException):
    """Stands in for SIGKILL inside the process (no cleanup code runs for it either)."""


@pytest.mark.slow
def test_killed_between_best_and_last_checkpoint_lists_every_epoch_once(
    train_data, tmp_path, monkeypatch
):
    cfg = load_config(
        None,
        {
            "data": {"data_dir": str(train_data)},
            "windows": {"workers": 1},
            "tfrecords": {"examples_per_batch": 32},
            "train": {
                "task": SEG,
                "model": "ldcnn",
                "epochs": 3,
                "batch_size": 32,
                "examples_per_epoch": 256,
                "model_kwargs": {"filters": 8, "dilations": [1, 2]},
            },
        },
        apply_env=False,
    )
    run = tmp_path / "run"
    real = train._save_checkpoint

    def dies_before_epoch_2_is_saved(model, run_dir, state, name="last.keras"):
        if name == "last.keras" and state is not None and state.epoch == 2:
            raise _Killed  # epoch 2 ended; best.keras may be written, last.keras not yet
        return real(model, run_dir, state, name)

    monkeypatch.setattr(train, "_save_checkpoint", dies_before_epoch_2_is_saved)
    with pytest.raises(_Killed):
        train.train(cfg, run, checkpoint_every_s=0, verbose=0)
    assert _state(run)["epoch"] == 1 and len(_state(run)["history"]) == 1
    monkeypatch.setattr(train, "_save_checkpoint", real)
    summary = train.train(cfg, run, checkpoint_every_s=0, verbose=0)
    assert summary["epochs_done"] == 3
    assert [h["epoch"] for h in json.loads((run / "history.json").read_text())] == [1, 2, 3]


@pytest.mark.slow
def test_tuning_killed_mid_trial_finishes_with_the_same_trials(train_data, tmp_path):
    def cmd(out: Path) -> list[str]:
        return [
            sys.executable,
            "-m",
            "pipeline.tune",
            "--data-dir",
            str(train_data),
            "--task",
            SEG,
            "--model",
            "ldcnn",
            "--set",
            "tune.algorithm=random",
            "--set",
            "tune.max_trials=3",
            "--set",
            "tune.max_epochs=1",
            "--set",
            "train.batch_size=32",
            "--set",
            "train.examples_per_epoch=128",
            "--set",
            "tfrecords.examples_per_batch=32",
            "--set",
            "train.model_kwargs={filters: 8}",
            "--out",
            str(out),
        ]

    def trials(out: Path) -> dict[str, tuple]:
        t = json.loads((out / "trials.json").read_text())
        return {
            r["trial"]: (r["status"], r["filters"], r["n_dilations"], r["learning_rate"]) for r in t
        }

    r = subprocess.run(
        cmd(tmp_path / "a"), cwd=ROOT, env=child_env(), capture_output=True, text=True, timeout=600
    )
    assert r.returncode == 0, r.stderr[-3000:]
    b = tmp_path / "b"
    second = b / "tuner" / "trial_1" / "trial.json"
    kill_at_random_point(cmd(b), 6, second.is_file, 0.5, tmp_path / "killed.log")
    statuses = [json.loads(t.read_text())["status"] for t in b.glob("tuner/trial_*/trial.json")]
    assert "RUNNING" in statuses  # killed mid-trial
    r = subprocess.run(
        cmd(b), cwd=ROOT, env=child_env(), capture_output=True, text=True, timeout=600
    )
    assert r.returncode == 0, r.stderr[-3000:]
    done = json.loads((b / "best_hparams.json").read_text())
    assert done["trials"] == done["completed_trials"] == 3
    assert trials(b) == trials(tmp_path / "a")  # same trials, all completed, same values


# ------------------------------------------------------------------------------ storage


STAGE_FILES = {
    # stage: (folders copied in, output folder, output name of record r, command line)
    "windows": ((), "windows/mitdb", "{}.npz", ("--databases", "mitdb")),
    "scalograms": (("windows",), "scalograms/mitdb", "{}.npz", ()),
    "tfrecords": (
        ("windows", "scalograms"),
        "tfrecords/segments",
        tfrecords.shard_name("{}"),
        ("--kinds", "segments"),
    ),
}


@pytest.mark.parametrize("stage", sorted(STAGE_FILES))
def test_disk_full_during_a_stage_keeps_no_partial_file_and_rerun_completes(base, tmp_path, stage):
    parts, rel_out, name, extra = STAGE_FILES[stage]
    root = copy_stages(base, tmp_path / "d", *parts)
    out, ref = root / rel_out, base / rel_out
    sizes = {r: (ref / name.format(r)).stat().st_size for r in RECORDS}
    limit = max(sizes[r] for r in ("s00", "s01", "s02")) + 4096
    assert limit < sizes["s03"]  # the 60 s record's file cannot be written
    r = run_with_file_size_limit(
        [sys.executable, "-m", f"pipeline.{stage}", *argv(root), *extra], limit
    )
    assert r.returncode == 2, r.stderr[-3000:]
    errors = error_lines(r.stderr)
    assert len(errors) == 1 and "Traceback" not in r.stderr
    assert re.fullmatch(
        rf"error: .*{re.escape(name.format('s03'))}: cannot write \(File too "
        r"large\); nothing partial was kept: free some space and rerun the same "
        r"command to resume",
        errors[0],
    ), errors[0]
    assert not temp_files(out) and not (out / name.format("s03")).exists()
    assert not (out / "manifest.json").exists() and not (out / "_stage.json").exists()
    for f in out.glob(name.format("*")):  # what is there is complete
        assert sha256_file(f) == sha256_file(ref / f.name)
    if stage == "tfrecords":
        prog = json.loads((out / "_progress.json").read_text())
        assert sorted(prog) == ["s00", "s01", "s02"]
        assert all(
            sha256_file(out / e["entry"]["file"]) == e["entry"]["sha256"] for e in prog.values()
        )
    module = {"windows": windows_cmd, "scalograms": scalograms_cmd, "tfrecords": tfrecords_cmd}[stage]
    assert module.main([*argv(root), *extra]) == 0  # space freed: the same command completes
    assert shas(out, name.format("*")) == shas(ref, name.format("*"))
    assert manifest(out) == manifest(ref)


def test_disk_full_while_checkpointing_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    import keras

    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, name="dense")])
    run = tmp_path / "run"
    train._save_checkpoint(model, run, train.TrainState(epoch=1))
    last = run / "checkpoints" / "last.keras"
    before, state_before = sha256_file(last), _state(run)
    model.get_layer("dense").kernel.assign(np.ones((3, 2), np.float32))
    real_save = keras.Model.save

    def save_until_the_disk_is_full(self, path, *args, **kwargs):
        Path(path).write_bytes(b"PK\x03\x04" + bytes(2000))  # a partial zip, then ENOSPC
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

    monkeypatch.setattr(keras.Model, "save", save_until_the_disk_is_full)
    with pytest.raises(
        PipelineError,
        match=r"last\.keras: cannot write \(No space left on "
        r"device\).*rerun the same command",
    ):
        train._save_checkpoint(model, run, train.TrainState(epoch=2))
    assert sha256_file(last) == before and _state(run) == state_before
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["last.keras"]
    monkeypatch.setattr(keras.Model, "save", real_save)
    train._save_checkpoint(model, run, train.TrainState(epoch=2))  # space freed
    assert _state(run)["epoch"] == 2
    loaded = train.load_best_model(run, prefer="last")
    np.testing.assert_array_equal(loaded.get_layer("dense").kernel.numpy(), np.ones((3, 2)))


@pytest.mark.slow
def test_disk_full_during_training_checkpoint_then_rerun_trains(train_data, tmp_path):
    run = tmp_path / "run"
    cmd = train_cmd(train_data, run, "--set", "train.epochs=2", "--checkpoint-every-s", "0")
    r = run_with_file_size_limit(cmd, 20_000)  # run files are < 3 kB, a checkpoint ~75 kB
    assert r.returncode == 2, r.stderr[-3000:]
    errors = error_lines(r.stderr)
    assert len(errors) == 1 and "Traceback" not in r.stderr
    assert re.search(r"checkpoints/best\.keras: cannot write \(File too large\)", errors[0])
    assert not (run / "checkpoints").exists() or not any((run / "checkpoints").iterdir())
    assert not (run / train.STATE_FILE).exists()  # nothing a rerun would resume from
    r = subprocess.run(cmd, cwd=ROOT, env=child_env(), capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "resuming" not in r.stderr
    assert json.loads((run / "summary.json").read_text())["epochs_done"] == 2


# ------------------------------------------------------------------------- broken inputs


@pytest.fixture(scope="module")
def one_record(tmp_path_factory) -> dict[str, bytes]:
    folder = tmp_path_factory.mktemp("one")
    write_record(folder, "s00", seed=0, duration_s=10.0)
    return {ext: (folder / f"s00.{ext}").read_bytes() for ext in ("hea", "dat", "atr")}


def _process(folder: Path, files: dict[str, bytes]):
    for ext, data in files.items():
        (folder / f"s00.{ext}").write_bytes(data)
    return windows.process_record(folder, "s00", WindowsConfig())


@pytest.mark.parametrize("ext", ["hea", "atr", "dat"])
def test_bit_flipped_or_truncated_wfdb_file_gives_a_result_or_a_clear_error(
    one_record, tmp_path, ext
):
    """20 seeded damages per file (bit flips and truncations): never another exception.

    Missing, truncated-.dat, garbage-header cases with their exact messages are in
    tests/test_windows.py (BAD_INPUTS).
    """
    rng = np.random.default_rng(7)
    outcomes = []
    for i in range(20):
        data = bytearray(one_record[ext])
        if i % 2:
            pos = int(rng.integers(len(data)))
            data[pos] ^= 1 << int(rng.integers(8))
        else:
            data = data[: int(rng.integers(len(data)))]
        try:
            arrays, entry = _process(tmp_path, {**one_record, ext: bytes(data)})
        except PipelineError as exc:
            assert str(exc).startswith("record s00: "), exc
            outcomes.append("error")
            continue
        assert np.isfinite(arrays["beats"]).all() and np.isfinite(arrays["segments"]).all()
        assert np.isfinite(arrays["denoise_signal"]).all()
        outcomes.append("ok")
    assert len(outcomes) == 20


def test_header_naming_a_signal_file_outside_the_folder_is_refused(one_record, tmp_path):
    (tmp_path / "rec").mkdir()
    hea = one_record["hea"].decode().replace("s00.dat", "../s00.dat")
    for ext, data in one_record.items():
        (tmp_path / f"s00.{ext}").write_bytes(data)  # the file the header points at exists
    with pytest.raises(
        PipelineError,
        match=r"record s00: header s00\.hea (names signal file "
        r"'\.\./s00\.dat' outside its folder|does not parse)",
    ):
        _process(tmp_path / "rec", {**one_record, "hea": hea.encode()})


@pytest.mark.parametrize("fs", ["0.00001", "100000"])
def test_header_with_an_implausible_sampling_rate_is_refused(one_record, tmp_path, fs):
    """Was: fs=1e-05 asked the resampler for a 5 GB buffer (MemoryError, or swapping)."""
    lines = one_record["hea"].decode().splitlines()
    lines[0] = f"s00 2 {fs} 3600"
    with pytest.raises(
        PipelineError,
        match=rf"record s00: header s00\.hea declares fs={float(fs):g}"
        r" Hz, outside the 20-20000 Hz",
    ):
        _process(tmp_path, {**one_record, "hea": ("\n".join(lines) + "\n").encode()})


@pytest.fixture(scope="module")
def odd_records(tmp_path_factory) -> Path:
    """Two normal records, one with a NaN span and a flat line, one without any beat."""
    root = tmp_path_factory.mktemp("odd")
    raw = root / "raw" / "mitdb"
    for i in range(2):
        write_record(raw, f"s0{i}", seed=i, duration_s=30.0)
    sig, samples, syms = synth_signal(["N", "N", "V"], np.random.default_rng(2), 30.0)
    sig[3600:5400] = np.nan  # 10-15 s: no signal (WFDB's invalid sample value)
    sig[7200:9000] = 0.0  # 20-25 s: flat line (lead off)
    write_custom_record(raw, "s02", sig, samples, syms)
    flat = np.full((10800, 2), 0.1)
    write_custom_record(raw, "s03", flat, [10, 5000], ["+", "~"])  # rhythm and noise marks only
    (raw / "RECORDS").write_text("s00\ns01\ns02\ns03\n")
    assert windows_cmd.main([*argv(root), "--databases", "mitdb"]) == 0
    assert scalograms_cmd.main(argv(root)) == 0
    assert tfrecords_cmd.main([*argv(root), "--kinds", "segments", "beats", "denoise"]) == 0
    return root


def test_nan_and_flat_line_spans_are_skipped_and_everything_stays_finite(odd_records):
    m = json.loads((odd_records / "windows" / "mitdb" / "manifest.json").read_text())
    nan_drops = [
        d
        for d in m["dropped"]
        if d["record"] == "s02" and d["reason"] == "window contains NaN samples"
    ]
    assert {d["dataset"] for d in nan_drops} == {"beats", "segments"}
    assert all(3600 - 360 <= d["sample"] <= 5400 + 360 for d in nan_drops)
    w = load_npz(odd_records / "windows" / "mitdb" / "s02.npz")
    for key in ("denoise_train_starts", "denoise_eval_starts"):
        starts = w[key]
        assert len(starts) and not np.any((starts < 5400) & (starts + 1440 > 3600))
    assert np.isfinite(w["denoise_signal"]).all() and np.isfinite(w["segments"]).all()
    assert np.isfinite(
        load_npz(odd_records / "scalograms" / "mitdb" / "s02.npz")["scalograms"]
    ).all()
    cfg = cfg_for(odd_records)
    ds = loader.create_dataset(["s02"], cfg, 16, False, task=SEG)
    x = np.concatenate([xb for xb, _ in ds.as_numpy_iterator()])
    assert len(x) == sum(m["records"]["s02"]["segments"].values()) and np.isfinite(x).all()


def test_record_without_beats_is_kept_out_of_the_splits(odd_records):
    m = json.loads((odd_records / "windows" / "mitdb" / "manifest.json").read_text())
    assert sum(m["records"]["s03"]["annotated_beats"].values()) == 0
    cfg = cfg_for(odd_records)
    for kind in ("segments", "beats"):
        entry = {
            e["record"]: e
            for e in json.loads((odd_records / "tfrecords" / kind / "manifest.json").read_text())[
                "files"
            ]
        }["s03"]
        assert entry["examples"] == 0
    for task in (SEG, "mitdb_aami5_sequences"):
        split = X.make_split(cfg, get_task(task))  # was: s03 (an empty file) could be picked
        assert "s03" not in (*split.train, *split.val, *split.test)
        sf = X.split_files(cfg, get_task(task), split)
        for files in (sf.train, sf.val):
            ds = loader.create_dataset(files, cfg, 16, True, task=task)
            assert sum(int(xb.shape[0]) for xb, _ in loader.iterate_checked(ds, files)) > 0
    # Asked for by name, the empty file gives a clear error rather than a crash.
    with pytest.raises(
        PipelineError,
        match=r"s03-00000-of-00001\.tfrecord: TFRecord file is "
        r"empty",
    ):
        loader.create_dataset(["s03"], cfg, 16, False, task=SEG)


def _framed(payload: bytes) -> bytes:
    """One TFRecord record (length, CRCs) around ``payload``: valid framing, any content."""
    import tempfile

    import tensorflow as tf

    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "one.tfrecord"
        with tf.io.TFRecordWriter(str(path)) as wr:
            wr.write(payload)
        return path.read_bytes()


TFRECORD_DAMAGE = {
    "empty file": (lambda good: b"", r"TFRecord file is empty"),
    "random bytes": (
        lambda good: bytes(np.random.default_rng(0).integers(0, 256, 5000, np.uint8)),
        r"unreadable TFRecord file|damaged TFRecord file",
    ),
    "length field flipped": (
        lambda good: bytes([good[0] ^ 0x10]) + good[1:],
        r"unreadable TFRecord file|damaged TFRecord file",
    ),
    "valid framing, not an Example": (
        lambda good: _framed(b"\x0a\xffgarbage"),
        r"not a valid Example",
    ),
    "cut inside the first record": (
        lambda good: good[:200],
        r"unreadable TFRecord file|"
        r"damaged TFRecord file|TFRecord file is empty",
    ),
}


@pytest.mark.parametrize("damage", sorted(TFRECORD_DAMAGE))
def test_damaged_tfrecord_file_without_manifest_is_named(base, tmp_path, damage):
    """No manifest to compare sizes with: the file's own content must give the clear error.

    A corrupted record in the middle, truncation with and without a manifest and an old schema
    version are in tests/test_loader.py and tests/test_schema_tfrecords.py.
    """
    make, message = TFRECORD_DAMAGE[damage]
    folder = tmp_path / "tfrecords" / "segments"
    folder.mkdir(parents=True)
    good = (base / "tfrecords" / "segments" / tfrecords.shard_name("s00")).read_bytes()
    f = folder / tfrecords.shard_name("s00")
    f.write_bytes(make(good))
    cfg = cfg_for(tmp_path)
    with pytest.raises(PipelineError, match=rf"{re.escape(f.name)}: .*({message})"):
        ds = loader.create_dataset(["s00"], cfg, 8, False, task=SEG)
        for _ in loader.iterate_checked(ds, [str(f)]):
            pass


def test_inconsistent_later_example_is_named(tmp_path):
    import tensorflow as tf

    from pipeline.data import schema

    def batch(n_samples: int):
        return schema.Batch(
            "segments",
            "s00",
            np.zeros((4, n_samples), np.float32),
            np.zeros(4, np.int8),
            np.arange(4, dtype=np.int32),
            np.zeros((4, 0), np.float32),
        )

    folder = tmp_path / "tfrecords" / "segments"
    folder.mkdir(parents=True)
    f = folder / tfrecords.shard_name("s00")
    with tf.io.TFRecordWriter(str(f)) as wr:
        wr.write(schema.encode(batch(720)))
        wr.write(schema.encode(batch(700)))  # valid on its own, wrong for this file
    ds = loader.create_dataset(["s00"], cfg_for(tmp_path), 8, False, task=SEG)
    with pytest.raises(PipelineError, match=re.escape(f.name)):
        for _ in loader.iterate_checked(ds, [str(f)]):
            pass


NORM_DAMAGE = {
    "list": b"[]",
    "null": b"null",
    "number": b"5",
    "string mean": b'{"kind": "segments", "mean": "a", "scale": [1.0]}',
    "NaN mean": b'{"kind": "segments", "mean": [NaN], "scale": [1.0]}',
    "overflowing scale": b'{"kind": "segments", "mean": [0.0], "scale": [1e400]}',
    "empty arrays": b'{"kind": "segments", "mean": [], "scale": []}',
    "2-D arrays": b'{"kind": "segments", "mean": [[0.0]], "scale": [[1.0]]}',
    "negative scale": b'{"kind": "segments", "mean": [0.0], "scale": [-1.0]}',
    "lengths differ": b'{"kind": "segments", "mean": [0.0, 1.0], "scale": [1.0]}',
    "not UTF-8": b'{"mean": [0.0], "scale": [1.0]}\xff\xfe',
    "truncated": b'{"kind": "segments", "mean": [0.0], "sca',
    "missing": None,
}


@pytest.mark.parametrize("damage", sorted(NORM_DAMAGE))
def test_damaged_normalization_statistics_name_the_file(tmp_path, damage):
    """Wrong kind, channel count, zero scale and truncation: tests/test_normalization.py."""
    path = tmp_path / "normalization.json"
    if NORM_DAMAGE[damage] is not None:
        path.write_bytes(NORM_DAMAGE[damage])
    with pytest.raises(PipelineError, match=rf"^{re.escape(str(path))}: "):
        normalization.load(path)


def test_damaged_normalization_file_in_a_run_folder_is_refitted_not_a_crash(base, tmp_path):
    cfg = cfg_for(base)
    files = loader.resolve_files(["s00", "s01"], cfg, "segments")
    (tmp_path / "normalization.json").write_text("[]")  # was: AttributeError on list.get
    mean, scale = train.normalization_for(tmp_path, files, cfg, get_task(SEG))
    assert mean.shape == scale.shape == (1,) and scale[0] > 0
    assert json.loads((tmp_path / "normalization.json").read_text())["kind"] == "segments"


@pytest.mark.parametrize(
    "text, match",
    [
        (b"train:\n  epochs: 2\n\xff\xfe", r"not a YAML text file \(not UTF-8"),
        (b"1: a\ntrain: {}\n", r"unknown key\(s\) \[1\]"),  # was: TypeError sorting 1 and 'train'
        (b"yes: 1\n~: 2\ndata: {}\n", r"unknown key\(s\) \[None, True\]"),
        (b"train: {epochs: 2, 3: x}\n", r"t\.yaml\.train: unknown key\(s\) \[3\]"),
        (b"data: !!python/object/apply:os.system [echo pwned]\n", r"not valid YAML"),
        (b"extends: [full]\n", r"config not found"),
        (b"data: {mitdb_records: [{a: 1}]}\n", r"data\.mitdb_records\[0\]: expected a string"),
    ],
    ids=[
        "not-utf8",
        "integer-key",
        "bool-and-null-keys",
        "integer-key-in-section",
        "python-tag",
        "extends-a-list",
        "record-name-mapping",
    ],
)
def test_config_file_damage_gives_config_error_naming_the_file(tmp_path, text, match):
    """Unknown keys, wrong types and units, invalid YAML: tests/test_config.py."""
    p = tmp_path / "t.yaml"
    p.write_bytes(text)
    with pytest.raises(ConfigError, match=match) as exc:
        load_config(p, apply_env=False)
    assert "t.yaml" in str(exc.value) or "config not found" in str(exc.value)


@pytest.mark.parametrize(
    "override",
    ["train.epochs=two", "train.nope=1", "nosection.x=1", "train.epochs", "train.learning_rate=[1"],
)
def test_bad_override_on_the_command_line_is_one_line_exit_2(tmp_path, capsys, override):
    capsys.readouterr()
    assert run_cli(windows_cmd.main, ["--data-dir", str(tmp_path), "--set", override]) == 2
    err = capsys.readouterr().err
    assert len(error_lines(err)) == 1 and "Traceback" not in err


def test_class_absent_from_training_gets_zero_weight():
    y = np.array([0, 0, 0, 1, 2, 2])  # classes 3 and 4 absent
    w = train.class_weights(y, 5)
    assert w[3] == w[4] == 0.0 and all(np.isfinite(list(w.values())))
    assert w[1] == pytest.approx(6 / (3 * 1))


@pytest.mark.slow
def test_training_with_a_class_absent_from_every_split_runs_and_reports_it(train_data, tmp_path):
    """Only s02 has paced (Q) beats; without it Q is absent from training and validation."""
    from pipeline.evaluation import metrics

    data = tmp_path / "noq"
    shutil.copytree(train_data, data)
    keep = "data.mitdb_records=[s00, s01, s03, s04, s05]"
    sets = [
        "--data-dir",
        str(data),
        "--set",
        "windows.workers=1",
        "--set",
        "tfrecords.examples_per_batch=32",
        "--set",
        keep,
    ]
    assert tfrecords_cmd.main([*sets, "--kinds", "segments"]) == 0
    run = tmp_path / "run"
    r = subprocess.run(
        train_cmd(
            data,
            run,
            "--set",
            "train.epochs=2",
            "--set",
            "train.class_weighting=balanced",
            "--checkpoint-every-s",
            "0",
        ),
        cwd=ROOT,
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    assert json.loads((run / "summary.json").read_text())["epochs_done"] == 2
    cfg = cfg_for(data, tfrecords={"examples_per_batch": 32})
    task = get_task(SEG)
    sf = X.split_files(cfg, task, X.make_split(cfg, task))
    assert 4 not in set(loader.split_labels(sf.train, cfg, task).tolist())
    mean, scale = normalization.load(run / "normalization.json", "segments", 1)
    model = train.load_best_model(run)
    probs = model.predict(
        loader.create_dataset(sf.val, cfg, 64, False, mean, scale, task=task), verbose=0
    )
    m = metrics.single_label_metrics(loader.split_labels(sf.val, cfg, task), probs, task.classes)
    assert m["per_class"]["Q"]["support"] == 0 and m["per_class"]["Q"]["roc_auc"] is None
    assert any("'Q'" in note and "no positive" in note for note in m["notes"])


# ------------------------------------------------------------------------------ security


@pytest.mark.parametrize("name", ["../x", "../../etc/passwd", "s00/../../x", "/abs"])
@pytest.mark.parametrize("stage", ["scalograms", "tfrecords"])
def test_record_names_from_config_cannot_escape_the_data_folder(
    base, tmp_path, capsys, stage, name
):
    """windows and download: tests/test_windows.py and tests/test_download.py."""
    root = copy_stages(base, tmp_path / "d", "windows", "scalograms")
    before = sorted(str(p) for p in tmp_path.rglob("*"))
    capsys.readouterr()
    module = {"scalograms": scalograms_cmd, "tfrecords": tfrecords_cmd}[stage]
    args = [*argv(root, f"data.mitdb_records={json.dumps([name])}")]
    assert run_cli(module.main, args) == 2
    err = capsys.readouterr().err
    assert error_lines(err) == [
        f"error: record name {name!r} is not allowed (no path separators or '..')"
    ]
    assert sorted(str(p) for p in tmp_path.rglob("*")) == before
    with pytest.raises(PipelineError, match="is not allowed"):
        windows.load_record(cfg_for(root), name)  # what tfrecords and the loader read through


def _drop_line(m: Path, needle: str) -> None:
    sums = m / "mitdb" / "SHA256SUMS.txt"
    sums.write_text("".join(ln + "\n" for ln in sums.read_text().splitlines() if needle not in ln))


def _append_line(m: Path, rel: str) -> None:
    sums = m / "mitdb" / "SHA256SUMS.txt"
    sums.write_text(sums.read_text() + f"{'0' * 64} {rel}\n")


UNTRUSTED = {
    # case: (damage to the mirror, error message, file that must not be kept)
    "no checksum list": (
        lambda m: (m / "mitdb" / "SHA256SUMS.txt").unlink(),
        r"SHA256SUMS\.txt: HTTP 404 \(not found\)",
        "100.hea",
    ),
    "record file not listed": (
        lambda m: _drop_line(m, "101.dat"),
        r"not listed in SHA256SUMS\.txt .*refusing unverifiable files",
        "101.dat",
    ),
    "file differs from its checksum": (
        lambda m: (m / "mitdb" / "101.atr").write_bytes(b"\x00" * 100),
        r"101\.atr: sha256 mismatch .*nothing was kept",
        "101.atr",
    ),
    "parent path in checksum list": (
        lambda m: _append_line(m, "../../evil.dat"),
        r"'\.\./\.\./evil\.dat' is not allowed",
        "100.hea",
    ),
    "absolute path in checksum list": (
        lambda m: _append_line(m, "/tmp/evil.dat"),
        r"'/tmp/evil\.dat' is not allowed",
        "100.hea",
    ),
}


@pytest.mark.parametrize("case", sorted(UNTRUSTED))
def test_http_mirror_is_never_trusted_without_matching_checksums(
    mirror_root, tmp_path, capsys, case
):
    """Folder mirrors and the real mirror's tampering: tests/test_download.py."""
    damage, message, absent = UNTRUSTED[case]
    mirror = tmp_path / "mirror"
    shutil.copytree(mirror_root, mirror)
    damage(mirror)
    data = tmp_path / "data"
    with MirrorServer(mirror) as server:
        capsys.readouterr()
        assert run_cli(download_cmd.main, [*download_argv(data, server.url), "--workers", "1"]) == 2
    errors = error_lines(capsys.readouterr().err)
    assert len(errors) == 1 and re.search(message, errors[0]), errors
    dest = data / "raw" / "mitdb"
    assert not (dest / absent).exists()
    assert not list(tmp_path.rglob("evil.dat")) and not temp_files(data)
    original = listed(mirror_root)
    for f in dest.iterdir() if dest.is_dir() else []:  # whatever was kept is verified
        if f.name in original:
            assert sha256_file(f) == original[f.name]


class _Redirect(http.server.BaseHTTPRequestHandler):
    target = "http://example.com/mitdb/SHA256SUMS.txt"

    def do_GET(self) -> None:
        self.send_response(302)
        self.send_header("Location", self.target)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


@pytest.mark.parametrize(
    "target", ["http://example.com/mitdb/SHA256SUMS.txt", "ftp://127.0.0.1/x", "file:///etc/passwd"]
)
def test_redirect_from_mirror_to_insecure_url_is_refused(tmp_path, target):
    """Plain-http, non-loopback URLs given directly: tests/test_download.py."""
    handler = type("H", (_Redirect,), {"target": target})
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{srv.server_address[1]}"
        with pytest.raises(
            PipelineError,
            match=rf"refusing URL '{re.escape(target)}': only "
            r"https://",
        ):
            download_cmd.main(download_argv(tmp_path / "data", url))
    finally:
        srv.shutdown()
        srv.server_close()
    assert not (tmp_path / "data" / "raw" / "mitdb" / "SHA256SUMS.txt").exists()


def _unsafe_model_files(run: Path) -> dict[str, Path]:
    import keras

    ckpt = run / "checkpoints"
    ckpt.mkdir(parents=True)
    inp = keras.Input((4,), name="x")
    keras.Model(inp, keras.layers.Lambda(lambda t: t * 2.0, name="evil")(inp)).save(
        ckpt / "lambda.keras"
    )
    # The same layer naming os.system as its function (a hand-edited file).
    with zipfile.ZipFile(ckpt / "lambda.keras") as z:
        files = {n: z.read(n) for n in z.namelist()}
    cfg = json.loads(files["config.json"])
    layer = next(la for la in cfg["config"]["layers"] if la["class_name"] == "Lambda")
    layer["config"]["function"] = {
        "module": "os",
        "class_name": "function",
        "config": "system",
        "registered_name": "function",
    }
    files["config.json"] = json.dumps(cfg).encode()
    with zipfile.ZipFile(ckpt / "os_system.keras", "w") as z:
        for n, b in files.items():
            z.writestr(n, b)
    return {"python lambda": ckpt / "lambda.keras", "os.system": ckpt / "os_system.keras"}


@pytest.mark.parametrize("which", ["python lambda", "os.system"])
def test_model_file_with_a_lambda_layer_is_refused_by_our_loader(tmp_path, which):
    files = _unsafe_model_files(tmp_path / "run")
    os.replace(files[which], tmp_path / "run" / "checkpoints" / "best.keras")
    with pytest.raises(
        PipelineError,
        match=r"best\.keras: refusing to load this model file in "
        r"safe mode",
    ):
        train.load_best_model(tmp_path / "run")


def test_damaged_checkpoint_is_a_clear_error(tmp_path):
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "last.keras").write_bytes(b"PK\x03\x04" + bytes(100))
    with pytest.raises(PipelineError, match=r"last\.keras: refusing to load"):
        train.load_best_model(tmp_path, prefer="last")


UNSAFE_CODE = {
    "allow_pickle=True": re.compile(r"allow_pickle\s*=\s*True"),
    "pickle.load": re.compile(r"\b(c?pickle|dill|joblib)\.loads?\("),
    "yaml.load": re.compile(r"\byaml\.(load|unsafe_load|full_load)\("),
    "unsafe Keras loading": re.compile(r"safe_mode\s*=\s*False|enable_unsafe_deserialization"),
}


def test_no_unsafe_deserialization_anywhere_in_the_code():
    sources = [p for d in ("pipeline", "models", "data_tools") for p in (ROOT / d).rglob("*.py")]
    assert len(sources) > 20
    hits = [
        f"{p.relative_to(ROOT)}:{i}: {what}"
        for p in sources
        for i, line in enumerate(p.read_text().splitlines(), 1)
        for what, pattern in UNSAFE_CODE.items()
        if pattern.search(line)
    ]
    assert hits == []
    loads = [
        f"{p.relative_to(ROOT)}:{i}"
        for p in sources
        for i, line in enumerate(p.read_text().splitlines(), 1)
        if "load_model(" in line and "safe_mode=True" not in line
    ]
    assert loads == []  # every Keras model load states safe mode


# --------------------------------------------------------------------------- determinism


def test_same_config_and_seed_give_same_files_and_splits(base, tmp_path):
    twin = copy_stages(base, tmp_path / "twin")  # raw records only; every stage runs again
    assert windows_cmd.main([*argv(twin), "--databases", "mitdb"]) == 0
    assert scalograms_cmd.main(argv(twin)) == 0
    assert tfrecords_cmd.main([*argv(twin), "--kinds", "segments", "beats", "denoise"]) == 0
    for rel, pattern in (
        ("windows/mitdb", "*.npz"),
        ("scalograms/mitdb", "*.npz"),
        *((f"tfrecords/{k}", "*.tfrecord") for k in ("segments", "beats", "denoise")),
    ):
        assert shas(twin / rel, pattern) == shas(base / rel, pattern), rel
        assert manifest(twin / rel) == manifest(base / rel), rel
    for task in (SEG, "mitdb_aami5_sequences", "mitdb_denoise"):
        runs = []
        for root, name in ((base, "a"), (twin, "b")):
            split = X.make_split(cfg_for(root), get_task(task))
            X.save_split(split, tmp_path / name / task)
            runs.append((tmp_path / name / task / "splits.json").read_bytes())
        assert runs[0] == runs[1], task


@pytest.mark.slow
def test_deterministic_training_gives_identical_weights(train_data, tmp_path):
    runs = [tmp_path / "a", tmp_path / "b"]
    for run in runs:
        cmd = train_cmd(
            train_data,
            run,
            "--set",
            "train.epochs=2",
            "--set",
            "train.deterministic=true",
            "--checkpoint-every-s",
            "0",
        )
        r = subprocess.run(
            cmd, cwd=ROOT, env=child_env(), capture_output=True, text=True, timeout=600
        )
        assert r.returncode == 0, r.stderr[-3000:]
    weights = [train.load_best_model(run, prefer="last").get_weights() for run in runs]
    assert len(weights[0]) == len(weights[1]) > 0
    for a, b in zip(*weights, strict=True):
        np.testing.assert_array_equal(a, b)
    h = [json.loads((run / "history.json").read_text()) for run in runs]
    assert [r["loss"] for r in h[0]] == [r["loss"] for r in h[1]]
    assert (runs[0] / "splits.json").read_bytes() == (runs[1] / "splits.json").read_bytes()
