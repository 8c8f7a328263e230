"""The classic baseline's fitted trees on disk, without pickle.

``final_eval --classic`` refits its trees in minutes and keeps none; a preset
(:func:`pipeline.serving.classic_preset.save`) and an outside-records evaluation
(``final_eval --run CLASSIC_FOLDER --external DIR``) refit the evaluated decision with
:func:`refit_run`, and a preset needs the result stored. The trees are
written with skops (``skops.io``), whose loader builds only the types it is told to trust;
:data:`TRUSTED_TYPES` lists the two tree types scikit-learn's boosted trees and forests
need beyond skops' own defaults, and :func:`load` refuses a file asking for anything else,
naming the types. :data:`META_FILE` beside it holds the decision (members, class weights),
each member's columns, the feature names and classes, and the sha256 of :data:`TREES_FILE`.
"""

from __future__ import annotations

import dataclasses
import time
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.core.config import PipelineConfig, load_config
from pipeline.core.io_utils import PipelineError, atomic_path, atomic_write_json, read_json, sha256_file
from pipeline.data.tasks import Task, get_task
from pipeline.training import classic
from pipeline.training.classic_decision import Decision, combine

TREES_FILE = "trees.skops"
META_FILE = "classic.json"
FORMAT = "classic_trees"
TRUSTED_TYPES = ("sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
                 "sklearn.tree._tree.Tree")


@dataclasses.dataclass(frozen=True)
class StoredTrees:
    """Fitted members, the decision that combines them, and the table they read."""

    models: tuple[classic.FittedTrees, ...]
    decision: Decision
    feature_names: tuple[str, ...]
    classes: tuple[str, ...]
    kind: str = FORMAT

    def probabilities(self, x: np.ndarray) -> np.ndarray:
        """``(n, n_classes)`` float32 probabilities of beat-table rows ``x``."""
        k = len(self.classes)
        return combine([classic.probabilities(m, x, k) for m in self.models],
                       self.decision).astype(np.float32)

    @property
    def n_nodes(self) -> int:
        """Tree nodes over all members (the model's size)."""
        return int(sum(_nodes(m.trees) for m in self.models))


def _nodes(trees: Any) -> int:
    if hasattr(trees, "estimators_"):
        return sum(int(t.tree_.node_count) for t in trees.estimators_)
    return sum(len(p.nodes) for stage in trees._predictors for p in stage)


def save(folder: Path, stored: StoredTrees) -> dict[str, Any]:
    """Writes :data:`TREES_FILE` and :data:`META_FILE` into ``folder``; returns the meta."""
    import skops.io as sio

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    with atomic_path(folder / TREES_FILE) as tmp:  # deflated: node arrays shrink about 3x
        sio.dump([m.trees for m in stored.models], tmp, compression=zipfile.ZIP_DEFLATED,
                 compresslevel=9)
    meta = {"format": FORMAT, "decision": stored.decision.to_json(),
            "columns": [list(map(int, m.columns)) for m in stored.models],
            "feature_names": list(stored.feature_names), "classes": list(stored.classes),
            "n_nodes": stored.n_nodes, "trees_sha256": sha256_file(folder / TREES_FILE)}
    atomic_write_json(folder / META_FILE, meta)
    return meta


def load(folder: Path) -> StoredTrees:
    """The trees of ``folder`` (hash checked; only :data:`TRUSTED_TYPES` beyond skops' safe
    defaults are built).

    Raises:
        PipelineError: a file is missing, the hash differs, the file asks for other types.
    """
    import skops.io as sio

    folder = Path(folder)
    meta = read_json(folder / META_FILE, "classic trees description")
    path = folder / TREES_FILE
    if not path.is_file():
        raise PipelineError(f"{path}: trees file not found")
    if sha256_file(path) != meta.get("trees_sha256"):
        raise PipelineError(f"{path}: sha256 differs from {META_FILE}'s trees_sha256 (file "
                            "changed or damaged)")
    untrusted = sio.get_untrusted_types(file=path)
    unknown = sorted(set(untrusted) - set(TRUSTED_TYPES))
    if unknown:
        raise PipelineError(f"{path}: refusing to load types outside the classic trees' "
                            f"allowlist: {unknown}")
    trees = sio.load(path, trusted=list(untrusted))
    decision = Decision.from_json(meta["decision"])
    models = tuple(classic.FittedTrees(t, list(c)) for t, c in zip(trees, meta["columns"]))
    return StoredTrees(models, decision, tuple(meta["feature_names"]), tuple(meta["classes"]))


def refit(table: classic.BeatTable, decision: Decision, classes: Sequence[str],
          seed: int) -> StoredTrees:
    """Every member of ``decision`` fitted on ``table`` (what ``final_eval --classic`` fits)."""
    models = tuple(classic.fit(table, len(classes), s, seed) for s in decision.settings)
    return StoredTrees(models, decision, table.feature_names, tuple(classes))


def is_classic_run(run_dir: Path) -> bool:
    """An evaluated ``final_eval --classic`` folder of a beat task."""
    m = Path(run_dir) / "metrics_test.json"
    return (Path(run_dir) / "selection.json").is_file() and m.is_file() and \
        read_json(m, "final evaluation metrics").get("model") == "classic_trees"


def refit_run(run_dir: Path) -> tuple[StoredTrees, PipelineConfig, Task, float]:
    """(the run's decision refitted on its training records, its config, task, fit seconds)."""
    from pipeline.data import windowing

    run_dir = Path(run_dir)
    cfg = load_config(run_dir / "config.yaml", apply_env=False)
    metrics = read_json(run_dir / "metrics_test.json", "final evaluation metrics")
    task = get_task(str(metrics["task"]))
    sel = read_json(run_dir / "selection.json", "classic selection")
    decision = Decision.from_json(sel.get("decision") or {  # runs before classic_decision
        "recipe": "single", "settings": [sel["chosen"]], "class_weights": None})
    split = read_json(run_dir / "splits.json", "run split")
    records = sorted(set(split["train"]) | set(split["val"]))
    t0 = time.perf_counter()
    table = classic.load_table(windowing.windows_dir(cfg, "mitdb"), records,
                               cfg.windows.segment_fs_hz)
    try:
        classic.check_table_prefix(sel.get("features", table.feature_names), table.feature_names,
                                   f"{run_dir / 'selection.json'}: the run's features")
    except PipelineError as exc:
        raise PipelineError(f"{exc} (rerun final_eval --classic)") from None
    stored = refit(table, decision, task.classes, cfg.train.seed)
    return stored, cfg, task, time.perf_counter() - t0
