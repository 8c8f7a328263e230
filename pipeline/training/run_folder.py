"""What every training, tuning and evaluation script shares: split files, run folders.

* :func:`split_files` turns the patient-wise split into lists of TFRecord files (plus masks
  for the leaky intra-patient option). The test part is only handed out inside
  :func:`test_split_access`, which only ``pipeline.final_eval`` opens; anything else asking
  for the test files gets an error. A test checks that no other module opens it.
* :func:`new_run_dir` creates ``Research_Runs/<date>_<task>_<model>[_tag]/`` and writes the
  resolved config and ``env.json`` (git commit, versions, device, the sha256 of
  ``requirements.lock``) into it, after :func:`check_existing_run` has refused a folder trained
  with another task, data or config and left a finished one untouched.
* :func:`locked` holds ``.lock`` (``fcntl.flock``) while a process writes a run folder, and
  :func:`removed_if_failed_early` leaves no stub folder behind a run that failed before its
  first checkpoint.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import errno
import fcntl
import hashlib
import os
import platform
import shutil
import subprocess
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import numpy as np
import yaml

from pipeline.core.config import PipelineConfig, dump_config, to_dict
from pipeline.core.io_utils import PipelineError, atomic_write_json, read_json
from pipeline.data import splits
from pipeline.data.tasks import Task

ROOT = Path(__file__).resolve().parents[2]
RUNS_DIR = ROOT / "Research_Runs"
LOCK_FILE = "requirements.lock"
"""Exact versions of a clean install, at the repository root (its sha256 goes in env.json)."""
RUN_LOCK = ".lock"
STATE_FILE = "train_state.json"
TRAINED_MARKERS = (STATE_FILE, "model.json", "summary.json")
"""Files that say a folder holds (part of) a training run."""
RESUMABLE_KEYS = ("train.epochs", "train.max_train_seconds", "train.distribution")
"""Settings a resumed run may change (everything else that shapes the run must match)."""
IGNORED_SECTIONS = ("tune", "eval", "profile", "loader")
IGNORED_KEYS = ("data.mirror", "data.base_url", "data.databases", "data.timeout_s",
                "data.retries", "windows.workers", "scalograms.workers",
                "scalograms.chunk_beats", "train.progress_every_s")

_TEST_ACCESS: list[str] = []


@contextlib.contextmanager
def test_split_access(caller: str) -> Iterator[None]:
    """Opens access to the held-out test split (``pipeline.final_eval`` only)."""
    _TEST_ACCESS.append(caller)
    try:
        yield
    finally:
        _TEST_ACCESS.pop()


@dataclasses.dataclass(frozen=True)
class SplitFiles:
    """Files of each part of a split for one task (test only under test_split_access)."""

    split: splits.Split
    train: tuple[str, ...]
    val: tuple[str, ...]
    include_train: Mapping[str, np.ndarray] | None = None
    include_val: Mapping[str, np.ndarray] | None = None

    @property
    def leaky(self) -> bool:
        return self.split.leaky


def _manifest(cfg: PipelineConfig, kind: str) -> dict:
    from pipeline.data.paths import tfrecord_dir

    return read_json(tfrecord_dir(cfg, kind) / "manifest.json", f"{kind} TFRecord manifest "
                     "(run `python -m pipeline.tfrecords`)")


def make_split(cfg: PipelineConfig, task: Task) -> splits.Split:
    """The configured split over the records present for ``task``."""
    m = _manifest(cfg, task.kind)
    if task.kind == "ptbxl":
        groups = [e["record"] for e in m["files"]]
        by = splits.ptbxl_split()

        def part(folds: Sequence[int]) -> tuple[str, ...]:
            return tuple(g for g in groups if int(g[4:6]) in folds)

        train = part(by["train"])
        # k folds over training groups: strat_folds are patient-wise; groups hold whole patients.
        return splits.Split("ptbxl_strat_fold", train, part(by["val"]), part(by["test"]),
                       folds=_ptbxl_folds(cfg, task, m, train))
    # A record without examples (no annotated beats, or shorter than a window) has an empty
    # file that no loader can read; it takes no part in the split.
    files = [e for e in m["files"] if int(e.get("examples", 1)) > 0]
    counts = {e["record"]: {m["classes"][int(k)] if m["classes"] else k: v
                            for k, v in e["class_counts"].items()} for e in files}
    if not counts or not any(counts.values()):  # denoise manifests carry no classes
        counts = {e["record"]: {} for e in files}
        wm = cfg.data_dir / "windows" / "mitdb" / "manifest.json"
        if wm.is_file():
            recs = read_json(wm, "windows manifest")["records"]
            counts = {r: recs[r]["beats"] for r in counts if r in recs}
    sc = cfg.splits
    return splits.mitdb_split(sorted(counts), counts, scheme=sc.scheme, n_folds=sc.n_folds,
                         val_fraction=sc.val_fraction, intra_test_fraction=sc.intra_test_fraction,
                         same_subject=sc.same_subject, seed=sc.seed)


def _ptbxl_folds(cfg: PipelineConfig, task: Task, m: dict, train: Sequence[str]):
    """Multi-label stratified folds over PTB-XL training groups (whole patients each)."""
    from iterstrat.ml_stratifiers import MultilabelStratifiedKFold

    groups = list(train)
    if len(groups) < 2:
        return ()
    by_rec = {e["record"]: e for e in m["files"]}
    k = len(task.classes)
    y = np.array([[by_rec[g]["class_counts"].get(str(c), 0) > 0 for c in range(k)]
                  for g in groups], int)
    n = max(2, min(cfg.splits.n_folds, len(groups)))
    cv = MultilabelStratifiedKFold(n_splits=n, shuffle=True, random_state=cfg.splits.seed)
    return tuple((tuple(groups[i] for i in tr), tuple(groups[i] for i in va))
                 for tr, va in cv.split(np.zeros(len(groups)), y))


def files_for(cfg: PipelineConfig, kind: str, records: Sequence[str]) -> tuple[str, ...]:
    from pipeline.data.paths import shard_name, tfrecord_dir

    return tuple(str(tfrecord_dir(cfg, kind) / shard_name(r)) for r in records)


def _intra_masks(cfg: PipelineConfig, task: Task, split: splits.Split, part: int) -> dict[str, np.ndarray]:
    m = _manifest(cfg, task.kind)
    out = {}
    for e in m["files"]:
        a = splits.intra_assignment(int(e["examples"]), e["record"], split.intra)
        out[str(Path(files_for(cfg, task.kind, [e["record"]])[0]))] = a == part
    return out


def split_files(cfg: PipelineConfig, task: Task, split: splits.Split | None = None,
                fold: int | None = None) -> SplitFiles:
    """Training and validation files (fold ``k`` of the k-fold when given)."""
    split = split or make_split(cfg, task)
    splits.check_no_patient_overlap(split)
    if split.intra is not None:
        files = files_for(cfg, task.kind, split.train)
        return SplitFiles(split, files, files, _intra_masks(cfg, task, split, 0),
                          _intra_masks(cfg, task, split, 1))
    if fold is not None:
        if not 0 <= fold < len(split.folds):
            raise PipelineError(f"fold {fold} out of range: the split has {len(split.folds)} folds")
        tr, va = split.folds[fold]
        return SplitFiles(split, files_for(cfg, task.kind, tr), files_for(cfg, task.kind, va))
    return SplitFiles(split, files_for(cfg, task.kind, split.train),
                      files_for(cfg, task.kind, split.val))


def _check_test_access() -> None:
    if not _TEST_ACCESS:
        raise PermissionError(
            "the test split is read only by `python -m pipeline.final_eval` "
            "(use test_split_access there); training, tuning and k-fold never see it"
        )


def test_records(split: splits.Split) -> tuple[str, ...]:
    """Held-out test records; only available inside :func:`test_split_access`."""
    _check_test_access()
    return tuple(split.test)


def test_files(cfg: PipelineConfig, task: Task, split: splits.Split) -> tuple[tuple[str, ...], Mapping[str, np.ndarray] | None]:
    """Held-out test files; only available inside :func:`test_split_access`."""
    _check_test_access()
    files = files_for(cfg, task.kind, split.test)
    if split.intra is not None:
        return files, _intra_masks(cfg, task, split, 2)
    return files, None


# ----------------------------------------------------------------------------- run folders


def _git(*args: str) -> str:
    try:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True,
                              timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def environment() -> dict:
    import importlib.metadata as md

    versions = {}
    for pkg in ("tensorflow", "keras", "keras-tuner", "numpy", "wfdb", "PyWavelets",
                "scikit-learn", "iterative-stratification"):
        try:
            versions[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            versions[pkg] = None
    device = "cpu"
    try:
        import tensorflow as tf

        gpus = tf.config.list_physical_devices("GPU")
        device = f"{len(gpus)} GPU" if gpus else f"CPU ({os.cpu_count()} cores)"
    except Exception:  # noqa: BLE001 - the environment record must not fail a run
        pass
    return {
        "requirements_lock_sha256": lock_file_sha256(),
        "git_commit": _git("rev-parse", "HEAD"),
        "git_dirty": bool(_git("status", "--porcelain", "--untracked-files=no")),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "device": device,
        "versions": versions,
        "created": dt.datetime.now().isoformat(timespec="seconds"),
    }


def lock_file_sha256(root: Path | None = None) -> str | None:
    """sha256 of ``requirements.lock`` at the repository root (None when there is none)."""
    p = (root or ROOT) / LOCK_FILE
    try:
        return hashlib.sha256(p.read_bytes()).hexdigest()
    except FileNotFoundError:
        return None


def run_dir_path(task: str, model: str, tag: str = "", runs_dir: Path | None = None,
                 run_dir: Path | None = None) -> Path:
    """``run_dir``, or ``<runs_dir>/<date>_<task>_<model>[_tag]`` (nothing is created)."""
    if run_dir is not None:
        return Path(run_dir)
    name = f"{dt.date.today():%Y-%m-%d}_{task}_{model}" + (f"_{tag}" if tag else "")
    return (runs_dir or RUNS_DIR) / name


def _flat(d: object, prefix: str = "") -> dict[str, object]:
    if not isinstance(d, dict):
        return {prefix: d}
    out: dict[str, object] = {}
    for k, v in d.items():
        out.update(_flat(v, f"{prefix}.{k}" if prefix else str(k)))
    return out


def config_differences(saved: dict, cfg: PipelineConfig) -> list[str]:
    """``key=saved (now new)`` for every setting that shapes a run and differs."""
    now = _flat(yaml.safe_load(yaml.safe_dump(to_dict(cfg), sort_keys=False)))
    old = _flat(saved)
    out = []
    for key, value in now.items():
        if (key.split(".")[0] in IGNORED_SECTIONS or key in IGNORED_KEYS
                or key in RESUMABLE_KEYS or key not in old):
            continue
        if old[key] != value:
            out.append(f"{key}={old[key]!r} (now {value!r})")
    return out


def check_existing_run(cfg: PipelineConfig, run_dir: Path) -> str:
    """What ``run_dir`` holds: ``new``, ``resumable`` or ``finished``; reads only.

    A folder trained with another task, model, data folder or config raises a one-line
    :class:`PipelineError` naming what differs (``--force`` or a new ``--run-dir`` is the
    way out); settings in :data:`RESUMABLE_KEYS` may change.
    """
    run_dir = Path(run_dir)
    if not any((run_dir / m).is_file() for m in TRAINED_MARKERS):
        return "new"
    cfg_path = run_dir / "config.yaml"
    if cfg_path.is_file():
        try:
            saved = yaml.safe_load(cfg_path.read_text()) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise PipelineError(f"{cfg_path}: unreadable run config ({exc}); use --force") from None
        diff = config_differences(saved if isinstance(saved, dict) else {}, cfg)
        if diff:
            shown = "; ".join(diff[:4]) + (f"; and {len(diff) - 4} more" if len(diff) > 4 else "")
            raise PipelineError(f"{run_dir}: run folder was trained with {shown}; use --force to "
                                "start it over or a new --run-dir")
    state = run_dir / STATE_FILE
    if state.is_file():
        d = read_json(state, "training state")
        if isinstance(d, dict) and d.get("finished") and (run_dir / "summary.json").is_file():
            return "finished"
    return "resumable"


def clear_run(run_dir: Path) -> None:
    """``--force``: removes what training wrote in ``run_dir`` (other files stay)."""
    run_dir = Path(run_dir)
    for name in ("checkpoints", "plots", "tensorboard"):
        shutil.rmtree(run_dir / name, ignore_errors=True)
    for name in (STATE_FILE, "model.json", "summary.json", "history.json", "normalization.json",
                 "splits.json", "config.yaml", "env.json", "history.csv"):
        (run_dir / name).unlink(missing_ok=True)


def _holder(path: Path) -> str:
    try:
        return path.read_text().strip() or "unknown"
    except OSError:
        return "unknown"


@contextlib.contextmanager
def locked(run_dir: Path) -> Iterator[Path]:
    """Holds ``run_dir/.lock`` (exclusive ``fcntl.flock``) while the body writes the folder.

    A second writer gets a one-line :class:`PipelineError` naming the holder's pid. The kernel
    drops the lock of a process that died, so a leftover lock file is simply taken over. The
    file is removed on release.
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / RUN_LOCK
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno not in (errno.EAGAIN, errno.EACCES):
                raise
            raise PipelineError(f"{run_dir}: run folder is being written by pid {_holder(path)} "
                                f"(lock {path}); wait for it or use another --run-dir") from None
        try:
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:  # else the holder removed the file while we opened it: lock the new one
            break
        os.close(fd)
    try:
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        yield path
    finally:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


@contextlib.contextmanager
def removed_if_failed_early(run_dir: Path) -> Iterator[None]:
    """Removes what the body created in ``run_dir`` (the folder too, if it made it) when it
    fails before a resumable training state exists: no stub run folders."""
    run_dir = Path(run_dir)
    existed = run_dir.exists()
    before = {p.name for p in run_dir.iterdir()} if existed else set()
    try:
        yield
    except BaseException:
        if run_dir.is_dir() and not (run_dir / STATE_FILE).is_file():
            if not existed:
                shutil.rmtree(run_dir, ignore_errors=True)
            else:
                for p in run_dir.iterdir():
                    if p.name not in before:
                        shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)
        raise


def new_run_dir(cfg: PipelineConfig, task: str, model: str, tag: str = "",
                runs_dir: Path | None = None, run_dir: Path | None = None) -> Path:
    """Creates (or reuses, to resume) a run folder and writes config + environment.

    A finished run with the same settings is left untouched; one trained with other
    settings raises (see :func:`check_existing_run`).
    """
    run_dir = run_dir_path(task, model, tag, runs_dir, run_dir)
    if check_existing_run(cfg, run_dir) == "finished":
        return run_dir
    run_dir.mkdir(parents=True, exist_ok=True)
    dump_config(cfg, run_dir / "config.yaml")
    atomic_write_json(run_dir / "env.json", environment())
    return run_dir


def save_split(split: splits.Split, run_dir: Path) -> None:
    atomic_write_json(run_dir / "splits.json", split.to_json())
