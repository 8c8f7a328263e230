"""What every training, tuning and evaluation script shares: split files, run folders.

* :func:`split_files` turns the patient-wise split into lists of TFRecord files (plus masks
  for the leaky intra-patient option). The test part is only handed out inside
  :func:`test_split_access`, which only ``pipeline.final_eval`` opens; anything else asking
  for the test files gets an error. A test checks that no other module opens it.
* :func:`new_run_dir` creates ``Research_Runs/<date>_<task>_<model>[_tag]/`` and writes the
  resolved config and ``env.json`` (git commit, versions, device) into it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import os
import platform
import subprocess
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import numpy as np

from pipeline.core.config import PipelineConfig, dump_config
from pipeline.core.io_utils import PipelineError, atomic_write_json, read_json
from pipeline.data import splits as S
from pipeline.data.tasks import Task

ROOT = Path(__file__).resolve().parents[2]
RUNS_DIR = ROOT / "Research_Runs"

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

    split: S.Split
    train: tuple[str, ...]
    val: tuple[str, ...]
    include_train: Mapping[str, np.ndarray] | None = None
    include_val: Mapping[str, np.ndarray] | None = None

    @property
    def leaky(self) -> bool:
        return self.split.leaky


def _manifest(cfg: PipelineConfig, kind: str) -> dict:
    from pipeline.data.tfrecord_writer import tfrecord_dir

    return read_json(tfrecord_dir(cfg, kind) / "manifest.json", f"{kind} TFRecord manifest "
                     "(run `python -m pipeline.tfrecords`)")


def make_split(cfg: PipelineConfig, task: Task) -> S.Split:
    """The configured split over the records present for ``task``."""
    m = _manifest(cfg, task.kind)
    if task.kind == "ptbxl":
        groups = [e["record"] for e in m["files"]]
        by = S.ptbxl_split()

        def part(folds: Sequence[int]) -> tuple[str, ...]:
            return tuple(g for g in groups if int(g[4:6]) in folds)

        train = part(by["train"])
        # k folds over training groups: strat_folds are patient-wise; groups hold whole patients.
        return S.Split("ptbxl_strat_fold", train, part(by["val"]), part(by["test"]),
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
    return S.mitdb_split(sorted(counts), counts, scheme=sc.scheme, n_folds=sc.n_folds,
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


def _files_for(cfg: PipelineConfig, kind: str, records: Sequence[str]) -> tuple[str, ...]:
    from pipeline.data.tfrecord_writer import shard_name, tfrecord_dir

    return tuple(str(tfrecord_dir(cfg, kind) / shard_name(r)) for r in records)


def _intra_masks(cfg: PipelineConfig, task: Task, split: S.Split, part: int) -> dict[str, np.ndarray]:
    m = _manifest(cfg, task.kind)
    out = {}
    for e in m["files"]:
        a = S.intra_assignment(int(e["examples"]), e["record"], split.intra)
        out[str(Path(_files_for(cfg, task.kind, [e["record"]])[0]))] = a == part
    return out


def split_files(cfg: PipelineConfig, task: Task, split: S.Split | None = None,
                fold: int | None = None) -> SplitFiles:
    """Training and validation files (fold ``k`` of the k-fold when given)."""
    split = split or make_split(cfg, task)
    S.check_no_patient_overlap(split)
    if split.intra is not None:
        files = _files_for(cfg, task.kind, split.train)
        return SplitFiles(split, files, files, _intra_masks(cfg, task, split, 0),
                          _intra_masks(cfg, task, split, 1))
    if fold is not None:
        if not 0 <= fold < len(split.folds):
            raise PipelineError(f"fold {fold} out of range: the split has {len(split.folds)} folds")
        tr, va = split.folds[fold]
        return SplitFiles(split, _files_for(cfg, task.kind, tr), _files_for(cfg, task.kind, va))
    return SplitFiles(split, _files_for(cfg, task.kind, split.train),
                      _files_for(cfg, task.kind, split.val))


def test_files(cfg: PipelineConfig, task: Task, split: S.Split) -> tuple[tuple[str, ...], Mapping[str, np.ndarray] | None]:
    """Held-out test files; only available inside :func:`test_split_access`."""
    if not _TEST_ACCESS:
        raise PermissionError(
            "the test split is read only by `python -m pipeline.final_eval` "
            "(use test_split_access there); training, tuning and k-fold never see it"
        )
    files = _files_for(cfg, task.kind, split.test)
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
        "git_commit": _git("rev-parse", "HEAD"),
        "git_dirty": bool(_git("status", "--porcelain", "--untracked-files=no")),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "device": device,
        "versions": versions,
        "created": dt.datetime.now().isoformat(timespec="seconds"),
    }


def new_run_dir(cfg: PipelineConfig, task: str, model: str, tag: str = "",
                runs_dir: Path | None = None, run_dir: Path | None = None) -> Path:
    """Creates (or reuses, to resume) a run folder and writes config + environment."""
    if run_dir is None:
        base = runs_dir or RUNS_DIR
        name = f"{dt.date.today():%Y-%m-%d}_{task}_{model}" + (f"_{tag}" if tag else "")
        run_dir = base / name
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    dump_config(cfg, run_dir / "config.yaml")
    atomic_write_json(run_dir / "env.json", environment())
    return run_dir


def save_split(split: S.Split, run_dir: Path) -> None:
    atomic_write_json(run_dir / "splits.json", split.to_json())
