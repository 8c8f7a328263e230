"""Bad input to the data layer and to every command: one line, exit code 2, nothing half-done.

Covers the config range rules (every value checked where the config is read), unknown task
and model names given to every command before any data is read, ``run_cli``'s rule for
``OSError`` / registry ``KeyError`` / programming errors, CLI number arguments, and the
scalogram stage's bytes not depending on BLAS threads, worker count or chunk size.
"""

from __future__ import annotations

import errno
import hashlib
import importlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from pipeline.core import config as config_module
from pipeline.core.config import ConfigError, load_config, parse_override
from pipeline.core.io_utils import PipelineError, UnknownNameError, explain, run_cli
from pipeline.data import tasks

REPO = Path(__file__).resolve().parents[1]
COMMANDS = ("download", "windows", "scalograms", "tfrecords", "train", "tune", "kfold",
            "final_eval", "predict", "export")
TASK_COMMANDS = ("train", "tune", "kfold", "final_eval")
"""Commands that take ``--task`` and ``--model``; predict and export read both from a run."""


def error_lines(err: str) -> list[str]:
    return [ln for ln in err.splitlines() if ln.strip()]


def run_command(name: str, argv: list[str], capsys) -> tuple[int, str]:
    capsys.readouterr()
    main = importlib.import_module(f"pipeline.{name}").main
    try:
        rc = run_cli(main, argv)
    except SystemExit as exc:  # argparse
        rc = exc.code
    return rc, capsys.readouterr().err


# ------------------------------------------------------------------------ config ranges

RANGE_CASES = {
    "train.epochs=-1": r"train\.epochs: must be >= 1, got -1$",
    "train.epochs=0": r"train\.epochs: must be >= 1, got 0$",
    "train.learning_rate=-0.001": r"train\.learning_rate: must be > 0, got -0\.001$",
    "train.learning_rate=0": r"train\.learning_rate: must be > 0, got 0\.0$",
    "splits.val_fraction=1.5": r"splits\.val_fraction: must be > 0 and < 1, got 1\.5$",
    "splits.val_fraction=0": r"splits\.val_fraction: must be > 0 and < 1, got 0\.0$",
    "tune.max_trials=0": r"tune\.max_trials: must be >= 1, got 0$",
    "data.databases=[]": r"data\.databases: must be a non-empty list, got \[\]$",
    "train.batch_size=0": r"train\.batch_size: must be >= 1, got 0$",
    "train.examples_per_epoch=-5":
        r"train\.examples_per_epoch: must be >= 0 \(0: a full pass\), got -5$",
    "windows.beat_fs_hz=-125": r"windows\.beat_fs_hz: must be > 0, got -125\.0$",
    "windows.workers=0": r"windows\.workers: must be >= 1, got 0$",
    "scalograms.workers=0": r"scalograms\.workers: must be >= 1, got 0$",
    "scalograms.chunk_beats=0": r"scalograms\.chunk_beats: must be >= 1, got 0$",
    "scalograms.scales=[1, -2]":
        r"scalograms\.scales: every item must be > 0, got \[1\.0, -2\.0\]$",
    "tfrecords.examples_per_batch=300":
        r"tfrecords\.examples_per_batch: must be >= 1 and <= 256, got 300$",
    "noise.train_fraction=1": r"noise\.train_fraction: must be > 0 and < 1, got 1\.0$",
    "noise.curriculum_snr_db=[]": r"noise\.curriculum_snr_db: must be a non-empty list, got \[\]$",
    "train.reduce_lr_factor=1.5": r"train\.reduce_lr_factor: must be > 0 and < 1, got 1\.5$",
    "splits.n_folds=1": r"splits\.n_folds: must be >= 2, got 1$",
    "data.timeout_s=0": r"data\.timeout_s: must be > 0, got 0\.0$",
    "data.retries=-1": r"data\.retries: must be >= 0, got -1$",
    "eval.bootstrap_samples=-1": r"eval\.bootstrap_samples: must be >= 0, got -1$",
}


@pytest.mark.parametrize("override", list(RANGE_CASES), ids=list(RANGE_CASES))
def test_out_of_range_config_value_is_a_config_error_naming_key_value_and_range(override):
    with pytest.raises(ConfigError, match=r"^overrides\." + RANGE_CASES[override]):
        load_config(None, parse_override(override), apply_env=False)


def test_out_of_range_value_in_a_yaml_file_names_the_file(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text("train:\n  epochs: -1\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml\.train\.epochs: must be >= 1, got -1$"):
        load_config(p, apply_env=False)


def test_values_at_the_edge_of_their_range_are_accepted():
    cfg = load_config(None, {
        "train": {"epochs": 1, "batch_size": 1, "examples_per_epoch": 0, "learning_rate": 1e-9},
        "tune": {"max_trials": 1}, "splits": {"val_fraction": 0.01},
        "data": {"databases": ["mitdb"]},
        "tfrecords": {"examples_per_batch": 256}}, apply_env=False)
    assert cfg.train.epochs == 1 and cfg.tfrecords.examples_per_batch == 256


def test_every_shipped_config_and_every_default_passes_its_own_range_rules():
    defaults = config_module.to_dict(config_module.PipelineConfig())
    assert config_module.from_dict(defaults) == config_module.PipelineConfig()
    for name in ("quick", "full"):
        load_config(name, apply_env=False)


def test_out_of_range_set_on_the_command_line_is_one_line_exit_2(tmp_path, capsys):
    rc, err = run_command("windows", ["--data-dir", str(tmp_path), "--set", "train.epochs=-1"],
                          capsys)
    assert rc == 2 and error_lines(err) == [
        "error: overrides.train.epochs: must be >= 1, got -1"]


# --------------------------------------------------------------- unknown task and model

def test_get_task_typo_is_a_one_line_pipeline_error_listing_the_tasks():
    with pytest.raises(PipelineError, match=r"^unknown task 'typo'; known: \[.*'mitdb_denoise'"):
        tasks.get_task("typo")
    with pytest.raises(KeyError):  # still a KeyError for code that looks names up
        tasks.get_task("typo")
    assert str(UnknownNameError("x")) == "x"


@pytest.mark.parametrize("command", TASK_COMMANDS)
def test_unknown_task_to_a_command_is_one_line_exit_2_before_any_data_is_read(
        command, tmp_path, capsys):
    rc, err = run_command(command, ["--data-dir", str(tmp_path / "none"), "--task", "typo",
                                    "--model", "cnn"], capsys)
    lines = error_lines(err)
    assert rc == 2 and len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith("error: unknown task 'typo'; known: ["), err
    assert not (tmp_path / "none").exists()


@pytest.mark.parametrize("command", TASK_COMMANDS)
def test_unknown_model_to_a_command_is_one_line_exit_2_before_any_data_is_read(
        command, tmp_path, capsys):
    rc, err = run_command(command, ["--data-dir", str(tmp_path / "none"), "--task",
                                    "mitdb_aami5_segments", "--model", "typo"], capsys)
    lines = error_lines(err)
    assert rc == 2 and len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith("error: unknown classifier 'typo'; registered: ["), err
    assert not (tmp_path / "none").exists()


def _fake_run(folder: Path, task: str, model: str) -> Path:
    folder.mkdir(parents=True)
    (folder / "model.json").write_text(json.dumps(
        {"task": task, "model": model, "input_shape": [720, 1]}))
    return folder


@pytest.mark.parametrize("command", ["predict", "export"])
def test_run_folder_naming_an_unknown_task_is_one_line_exit_2(command, tmp_path, capsys):
    run = _fake_run(tmp_path / "run", "typo", "cnn")
    if command == "predict":
        import wfdb

        wfdb.wrsamp("r", fs=360, units=["mV"], sig_name=["MLII"], write_dir=str(tmp_path),
                    p_signal=np.zeros((3600, 1)), fmt=["16"])
        extra = ["--record", str(tmp_path / "r")]
    else:
        extra = ["--format", "onnx"]
    rc, err = run_command(command, ["--run", str(run), *extra], capsys)
    lines = error_lines(err)
    assert rc == 2 and len(lines) == 1 and "Traceback" not in err, err
    assert "model.json: unknown task 'typo'; known: [" in lines[0], err


@pytest.mark.parametrize("command", ["download", "windows", "scalograms", "tfrecords"])
@pytest.mark.parametrize("flag", ["--task", "--model"])
def test_data_stages_refuse_task_and_model_flags_with_one_usage_error(command, flag, capsys):
    """The data stages take no task or model; argparse names the flag (exit 2)."""
    rc, err = run_command(command, [flag, "typo"], capsys)
    assert rc == 2 and f"error: unrecognized arguments: {flag} typo" in err
    assert "Traceback" not in err


# ------------------------------------------------------------------------ run_cli's rule

def _raiser(exc: BaseException):
    def main(argv):
        raise exc
    return main


def test_os_error_with_a_file_name_is_one_line_naming_the_file(capsys):
    exc = PermissionError(errno.EACCES, os.strerror(errno.EACCES), "/ro/out/manifest.json")
    assert run_cli(_raiser(exc), []) == 2
    assert error_lines(capsys.readouterr().err) == [
        f"error: /ro/out/manifest.json: {os.strerror(errno.EACCES)}"]


def test_read_only_output_folder_is_one_line_exit_2(tmp_path, capsys):
    if os.geteuid() == 0:
        pytest.skip("root ignores folder permissions")
    out = tmp_path / "ro"
    out.mkdir()
    out.chmod(0o500)
    try:
        rc, err = run_command("download", ["--data-dir", str(out), "--source", "synthetic"],
                              capsys)
    finally:
        out.chmod(0o700)
    lines = error_lines(err)
    assert rc == 2 and len(lines) == 1 and "Traceback" not in err, err
    assert str(out) in lines[0] and os.strerror(errno.EACCES) in lines[0]


def test_data_dir_that_is_a_file_is_one_line_naming_it(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    rc, err = run_command("download", ["--data-dir", str(blocker / "data"), "--source",
                                       "synthetic"], capsys)
    lines = error_lines(err)
    assert rc == 2 and len(lines) == 1 and "Traceback" not in err, err
    assert str(blocker) in lines[0] and os.strerror(errno.ENOTDIR) in lines[0], err


def test_registry_key_error_is_one_line_but_a_bare_key_error_keeps_its_traceback(capsys):
    msg = "unknown classifier 'x'; registered: ['cnn', 'ldcnn']"
    assert run_cli(_raiser(KeyError(msg)), []) == 2
    assert error_lines(capsys.readouterr().err) == [f"error: {msg}"]
    with pytest.raises(KeyError, match="'loss'"):
        run_cli(_raiser(KeyError("loss")), [])


@pytest.mark.parametrize("exc", [ValueError("bug"), TypeError("bug"), OSError("no errno"),
                                 ZeroDivisionError()])
def test_programming_errors_are_not_swallowed_by_run_cli(exc):
    assert explain(exc) is None
    with pytest.raises(type(exc)):
        run_cli(_raiser(exc), [])


# ------------------------------------------------------------------- CLI number arguments

@pytest.mark.parametrize("argv, match", [
    (["--workers", "0"], r"--workers must be >= 1\. Received: --workers=0"),
    (["--workers", "-3"], r"--workers must be >= 1\. Received: --workers=-3"),
])
def test_download_workers_below_one_is_one_usage_error(argv, match, capsys):
    rc, err = run_command("download", argv, capsys)
    assert rc == 2 and "Traceback" not in err
    import re
    assert re.search(match, err), err


# ------------------------------------------------------------- byte-stable scalogram stage

_STAGE_SCRIPT = r"""
import hashlib, json, sys
from pathlib import Path
from pipeline.core.config import load_config
from pipeline.data import scalogram
root, workers, chunk, dtype = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
cfg = load_config(None, {"data": {"data_dir": root}, "scalograms": {
    "workers": workers, "chunk_beats": chunk, "dtype": dtype}}, apply_env=False)
scalogram.run(cfg, force=True)
out = {}
for p in sorted((Path(root) / "scalograms" / "mitdb").glob("*.npz")):
    out[p.name] = hashlib.sha256(p.read_bytes()).hexdigest()
print(json.dumps(out))
"""


def _windows_folder(root: Path, n_records: int = 2) -> None:
    """Windows files of random beats (in mV, like MIT-BIH), enough beats for many chunks."""
    from pipeline.core.io_utils import atomic_savez, atomic_write_json

    rng = np.random.default_rng(7)
    wdir = root / "windows" / "mitdb"
    names = [f"s{i:02d}" for i in range(n_records)]
    for i, rec in enumerate(names):
        n = 700 + 37 * i  # not a multiple of any chunk size used below
        beats = (rng.standard_normal((n, 187)) * 0.4).astype(np.float32)
        atomic_savez(wdir / f"{rec}.npz", beats=beats, beat_index=np.arange(n, dtype=np.int32))
    atomic_write_json(wdir / "manifest.json", {"records": {r: {} for r in names}})


def _stage_hashes(root: Path, dtype: str, workers: int, chunk: int, threads: int) -> dict[str, str]:
    env = {**os.environ, "OPENBLAS_NUM_THREADS": str(threads), "OMP_NUM_THREADS": str(threads),
           "MKL_NUM_THREADS": str(threads), "PYTHONPATH": str(REPO)}
    out = subprocess.run([sys.executable, "-c", _STAGE_SCRIPT, str(root), str(workers),
                          str(chunk), dtype], env=env, cwd=REPO, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("dtype", ["float16", "float32"])
def test_scalogram_bytes_do_not_depend_on_blas_threads_workers_or_chunk_size(tmp_path, dtype):
    """(workers, chunk_beats, BLAS threads) vary; the sha256 of every output file may not."""
    _windows_folder(tmp_path)
    runs = [(1, 97, 1), (2, 512, 2), (1, 16, 2), (2, 1, 1), (1, 4096, 2)]
    hashes = {run: _stage_hashes(tmp_path, dtype, *run) for run in runs}
    first = hashes[runs[0]]
    assert len(first) == 2
    for run, got in hashes.items():
        assert got == first, f"(workers, chunk_beats, BLAS threads)={run} wrote other bytes"


def test_cwt_batch_rows_do_not_depend_on_chunk_size():
    from pipeline.data import scalogram

    rng = np.random.default_rng(3)
    beats = rng.standard_normal((301, 187)).astype(np.float32)
    scales = scalogram.scales_for(config_module.PipelineConfig())
    ref = scalogram.cwt_batch(beats, scales, "morl", 125.0, chunk_beats=512)
    for chunk in (1, 7, 64, 300):
        got = scalogram.cwt_batch(beats, scales, "morl", 125.0, chunk_beats=chunk)
        assert hashlib.sha256(got.tobytes()).digest() == hashlib.sha256(ref.tobytes()).digest()
    one = scalogram.cwt_batch(beats[150:151], scales, "morl", 125.0)
    assert one.tobytes() == ref[150:151].tobytes()


# --------------------------------------------------------------- damaged TFRecord, named

def _segment_file(path: Path, n_batches: int = 3) -> str:
    import tensorflow as tf

    from pipeline.data import schema

    rng = np.random.default_rng(0)
    with tf.io.TFRecordWriter(str(path)) as writer:
        for _ in range(n_batches):
            writer.write(schema.encode(schema.Batch(
                "segments", "s00", rng.random((4, 720), np.float32),
                np.zeros(4, np.int8), np.arange(4, dtype=np.int32), np.zeros((4, 3), np.float32))))
    return str(path)


def _flip_a_byte_in_the_last_record(path: str) -> None:
    data = bytearray(Path(path).read_bytes())
    data[-100] ^= 0xFF  # same size: only the CRC tells
    Path(path).write_bytes(bytes(data))


def test_damaged_tfrecord_inside_naming_damaged_file_is_one_line_naming_it(tmp_path):
    import tensorflow as tf

    from pipeline.data import loader

    good = _segment_file(tmp_path / "s00-00000-of-00001.tfrecord")
    bad = _segment_file(tmp_path / "s01-00000-of-00001.tfrecord")
    _flip_a_byte_in_the_last_record(bad)
    assert loader.find_damaged_file([good, bad]) == bad
    with pytest.raises(PipelineError, match=rf"^{bad}: damaged TFRecord file \(DataLossError"):
        with loader.naming_damaged_file([good, bad]):
            for _ in tf.data.TFRecordDataset([good, bad]):
                pass


def test_naming_damaged_file_passes_other_errors_unchanged(tmp_path):
    from pipeline.data import loader

    good = _segment_file(tmp_path / "s00-00000-of-00001.tfrecord")
    with pytest.raises(ZeroDivisionError):
        with loader.naming_damaged_file([good]):
            1 / 0
    assert loader.find_damaged_file([good]) is None


def test_signal_and_paths_helpers_are_public_and_shared():
    from pipeline.data import paths, signal, tfrecord_writer, windowing

    assert windowing.raw_dir is paths.raw_dir and tfrecord_writer.shard_name is paths.shard_name
    assert paths.shard_name("100") == "100-00000-of-00001.tfrecord"
    pre, post, local = signal.rr_features(np.array([0.0, 1.0, 3.0]), 2)
    np.testing.assert_allclose([pre, post, local], [[1, 1, 2], [1, 2, 2], [1, 1, 1.5]])
    table = {"beat_index": np.array([0, 2]), "rr_pre_s": np.array([1.0, 3.0]),
             "rr_post_s": np.array([1.0, 3.0]), "rr_local_s": np.array([1.0, 3.0])}
    np.testing.assert_allclose(signal.rr_for_beats(table, np.array([0, 1, 2]))[:, 0], [1, 2, 3])
