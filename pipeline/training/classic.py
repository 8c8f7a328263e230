"""The classic baseline: gradient-boosted trees or a random forest on rhythm and morphology
features.

What a user could pick instead of a deep model (Saenz-Cogollo & Agelli 2020 reach F1(S) 0.73
inter-patient with a 30-tree random forest on six RR features): scikit-learn's
``HistGradientBoostingClassifier`` (or a ``RandomForestClassifier``) on each beat's rhythm features (:mod:`pipeline.data.rhythm`,
stored by the windows stage) and its morphology (:mod:`pipeline.data.morphology`, measured on
the 2 s segment), with class weights.

Which features the trees see is part of the setting (:data:`FEATURE_SETS`): ``relative``
(only the patient-relative rhythm ratios), ``relative+morphology`` and ``all`` (the intervals
in seconds too), and ``rr6``, the published six RR features. Absolute values let the trees recognise the training patients rather than
the beat type; the validation patients decide.

Selection follows the protocol: every setting of :data:`GRID` is fitted on the training
patients and scored by macro F1 on the validation patients; the best one is refitted on all
training records (training + validation patients), and only the final evaluation scores it on
the test split. Trees are cheap to refit, so no model file is kept; a preset stores them with
skops, never pickle (:mod:`pipeline.training.classic_store`).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.core.io_utils import PipelineError, load_npz
from pipeline.data import beat_table, morphology

log = logging.getLogger("ecg.classic")

FEATURE_SETS = ("relative", "relative+morphology", "all", "rr6", "relative+template",
                "relative+template+context")
"""Columns of the beat table a setting uses (:func:`feature_columns`). ``rr6`` is the six RR
features of Saenz-Cogollo & Agelli 2020 (:data:`RR6_FEATURE_NAMES`); ``relative+template``
adds to ``relative+morphology`` each beat measured against its own record's median beat
(:func:`pipeline.data.morphology.template_features`); ``relative+template+context`` adds the
rhythm's irregularity around the beat and in its record
(:func:`pipeline.data.rhythm.context_features`). A set sees the template or context columns
only when it names them, so the older sets keep the columns (and results) they had before."""

RR6_FEATURE_NAMES = ("pre_rr_s", "prev_rr_s", "post_rr_s",
                     "pre_over_running", "prev_over_running", "post_over_running")
"""RR0, RR-1, RR+1 (s) and each over the 32-beat running mean."""

MODELS = ("hgb", "random_forest")
"""``hgb``: ``HistGradientBoostingClassifier``; ``random_forest``: ``RandomForestClassifier``
with ``n_trees`` trees (30 in the published recipe)."""

RF_TREES = 30


def _hgb(features: str, leaves: int, power: float) -> dict[str, Any]:
    return {"model": "hgb", "features": features, "learning_rate": 0.1, "max_leaf_nodes": leaves,
            "n_trees": MAX_ITER_HGB, "class_weight_power": power}


def _forest(features: str, power: float) -> dict[str, Any]:
    return {"model": "random_forest", "features": features, "learning_rate": None,
            "max_leaf_nodes": None, "n_trees": RF_TREES, "class_weight_power": power}


MAX_ITER_HGB = 200

def _settings(feature_sets: Sequence[str], forest_sets: Sequence[str]) -> tuple[dict, ...]:
    return (*(_hgb(f, leaves, power) for f in feature_sets for leaves in (15, 31)
              for power in (0.5, 1.0)),
            *(_forest(f, power) for f in forest_sets for power in (0.0, 1.0)))


CONTEXT_SET = "relative+template+context"

GRID: tuple[dict[str, Any], ...] = _settings(
    [f for f in FEATURE_SETS if f != CONTEXT_SET], ("rr6", "relative+morphology", "relative+template"))
"""Settings compared on the validation patients or the folds (``class_weight_power``: weights
are ``(n / (K n_c)) ** power``; 1 = balanced, 0.5 = square root, 0 = none)."""

CONTEXT_GRID: tuple[dict[str, Any], ...] = _settings([CONTEXT_SET], [CONTEXT_SET])
"""The settings on the context feature set, compared only with ``eval.classic_context``
(session 9: the DS1 folds preferred them; DS2 did not, see the config's note)."""


def grid_for(context: bool) -> tuple[dict[str, Any], ...]:
    """:data:`GRID`, plus :data:`CONTEXT_GRID` when ``context`` (``eval.classic_context``)."""
    return GRID + CONTEXT_GRID if context else GRID


def feature_columns(names: Sequence[str], features: str) -> list[int]:
    """Columns of a beat table with feature ``names`` that feature set ``features`` keeps."""
    from pipeline.data import rhythm

    if features not in FEATURE_SETS:
        raise PipelineError(f"unknown classic feature set {features!r}; known: {list(FEATURE_SETS)}")

    def keep(name: str) -> bool:
        if features == "rr6":
            return name in RR6_FEATURE_NAMES
        if name in rhythm.CONTEXT_FEATURE_NAMES:
            return features == CONTEXT_SET
        if name in morphology.TEMPLATE_FEATURE_NAMES:
            return features in ("relative+template", CONTEXT_SET)
        if name in morphology.FEATURE_NAMES:
            return features != "relative"
        return features == "all" or rhythm.is_relative(name)

    return [i for i, n in enumerate(names) if keep(n)]



@dataclasses.dataclass(frozen=True)
class BeatTable:
    """Per-beat features, labels and where each beat comes from."""

    x: np.ndarray  # (n, F) float32
    y: np.ndarray  # (n,) int
    record: np.ndarray  # (n,) str
    index: np.ndarray  # (n,) int: the beat's position among its record's beat annotations
    feature_names: tuple[str, ...]

    def select(self, records: Sequence[str]) -> BeatTable:
        keep = np.isin(self.record, list(records))
        return BeatTable(self.x[keep], self.y[keep], self.record[keep], self.index[keep],
                         self.feature_names)


def check_table_prefix(fitted: Sequence[str], table: Sequence[str], what: str) -> None:
    """Refuses a beat table whose first columns are not ``fitted`` (the columns trees were
    fitted on); columns appended after them are allowed (older trees do not read them)."""
    fitted, table = tuple(fitted), tuple(table)
    if table[: len(fitted)] != fitted:
        differ = next((i for i, (a, b) in enumerate(zip(fitted, table)) if a != b),
                      min(len(fitted), len(table)))
        raise PipelineError(f"{what} differ from the beat table's columns now at column "
                            f"{differ} ({len(fitted)} fitted, {len(table)} in the table)")


def record_features(path: Path, segment_fs_hz: float) -> tuple[np.ndarray, np.ndarray,
                                                                   np.ndarray, tuple[str, ...]]:
    """(features, labels, beat positions, names) of one windows-stage record file."""
    w = load_npz(path)
    if "rhythm" not in w or "rhythm_names" not in w:
        raise PipelineError(f"{path}: no rhythm features (rerun the windows stage with --force)")
    try:
        x, names = beat_table.beat_features(w["rhythm"], w["rhythm_names"], w["segments"],
                                            segment_fs_hz)
    except PipelineError as exc:
        raise PipelineError(f"{path}: {exc}") from None
    index = np.asarray(w["segment_beat_index"], np.int64)
    return x, np.asarray(w["segment_label"]), index, names


def load_table(windows_dir: Path, records: Sequence[str], segment_fs_hz: float) -> BeatTable:
    """Features of every kept segment of ``records`` (windows-stage files in ``windows_dir``)."""
    parts = [(r, *record_features(windows_dir / f"{r}.npz", segment_fs_hz)) for r in records]
    if not parts:
        raise PipelineError("no records to build the classic baseline's table from")
    names = parts[0][4]
    return BeatTable(
        x=np.concatenate([p[1] for p in parts]),
        y=np.concatenate([p[2] for p in parts]).astype(np.int64),
        record=np.concatenate([np.full(len(p[2]), p[0]) for p in parts]),
        index=np.concatenate([p[3] for p in parts]),
        feature_names=names,
    )


def sample_weights(y: np.ndarray, n_classes: int, power: float) -> np.ndarray:
    """``(n / (K n_c)) ** power`` per example; classes absent from ``y`` get no weight."""
    counts = np.bincount(y, minlength=n_classes).astype(np.float64)
    w = np.where(counts > 0, (len(y) / (n_classes * np.maximum(counts, 1))) ** power, 0.0)
    return w[y]


def make_trees(setting: dict[str, Any], seed: int) -> Any:
    """The unfitted scikit-learn model of one setting of :data:`GRID`."""
    kind = setting.get("model", "hgb")
    if kind == "hgb":
        from sklearn.ensemble import HistGradientBoostingClassifier

        return HistGradientBoostingClassifier(
            learning_rate=setting["learning_rate"], max_leaf_nodes=setting["max_leaf_nodes"],
            max_iter=int(setting.get("n_trees", MAX_ITER_HGB)), early_stopping=False,
            random_state=seed)
    if kind == "random_forest":
        from sklearn.ensemble import RandomForestClassifier

        return RandomForestClassifier(n_estimators=int(setting["n_trees"]), random_state=seed,
                                      n_jobs=1)
    raise PipelineError(f"unknown classic model {kind!r}; known: {list(MODELS)}")


def fit(table: BeatTable, n_classes: int, setting: dict[str, Any], seed: int) -> Any:
    """A fitted model for one setting of :data:`GRID` on the setting's feature columns
    (:func:`probabilities` picks the same columns)."""
    trees = make_trees(setting, seed)
    columns = feature_columns(table.feature_names, setting.get("features", "all"))
    trees.fit(table.x[:, columns], table.y, sample_weight=sample_weights(
        table.y, n_classes, setting["class_weight_power"]))
    return FittedTrees(trees, columns)


@dataclasses.dataclass(frozen=True)
class FittedTrees:
    """Trees and the beat-table columns they were fitted on."""

    trees: Any
    columns: list[int]


def probabilities(model: FittedTrees, x: np.ndarray, n_classes: int) -> np.ndarray:
    """``(n, n_classes)`` probabilities (columns of classes absent in training stay 0)."""
    out = np.zeros((len(x), n_classes), np.float64)
    out[:, model.trees.classes_] = model.trees.predict_proba(x[:, model.columns])
    return out


@dataclasses.dataclass(frozen=True)
class Selection:
    """Every grid setting scored on held-out training patients, and the best one.

    ``probs[i]`` holds setting ``rows[i]``'s held-out probabilities of every beat ``y``;
    ``groups`` says which fold (or validation record) each beat was held out in, so that
    :mod:`pipeline.training.classic_decision` can tune more on them, nested.
    """

    best: dict[str, Any]
    rows: list[dict[str, Any]]
    y: np.ndarray
    probs: list[np.ndarray]
    groups: np.ndarray
    score_key: str


def _choose(grid: Sequence[dict[str, Any]], y: np.ndarray, probs_of: Any, classes: Sequence[str],
            prefix: str, groups: np.ndarray) -> Selection:
    """Scores ``probs_of(setting)`` against ``y`` for every setting (``<prefix>_macro_f1``,
    ``<prefix>_f1``)."""
    from pipeline.evaluation.metrics import single_label_metrics

    rows, kept = [], []
    for setting in grid:
        probs = probs_of(setting)
        m = single_label_metrics(y, probs, classes)
        rows.append({**setting, f"{prefix}_macro_f1": m["macro_f1"],
                     f"{prefix}_f1": {c: m["per_class"][c]["f1"] for c in classes}})
        kept.append(probs)
        log.info("classic %s: %s macro F1 %.3f", setting, prefix, m["macro_f1"])
    best = max(rows, key=lambda r: r[f"{prefix}_macro_f1"])
    return Selection({k: best[k] for k in grid[0]}, rows, y, kept, groups, f"{prefix}_macro_f1")


def select(train: BeatTable, val: BeatTable, classes: Sequence[str], seed: int,
           grid: Sequence[dict[str, Any]] | None = None) -> Selection:
    """Every setting of ``grid`` (default :data:`GRID`) scored by macro F1 on the validation
    patients (groups: the validation records)."""
    grid = grid or GRID
    def probs_of(setting: dict[str, Any]) -> np.ndarray:
        return probabilities(fit(train, len(classes), setting, seed), val.x, len(classes))

    return _choose(grid, val.y, probs_of, classes, "val", val.record)


def select_kfold(table: BeatTable, folds: Sequence[tuple[Sequence[str], Sequence[str]]],
                 classes: Sequence[str], seed: int, grid: Sequence[dict[str, Any]] | None = None,
                 ) -> Selection:
    """Every setting scored by the pooled out-of-fold macro F1 over patient-grouped ``folds``
    (each ``(training records, held-out records)`` of ``table``; groups: the fold).

    Every beat of the held-out records of each fold is predicted by trees fitted on that
    fold's training records; the predictions of all folds are pooled and scored once.
    """
    grid = grid or GRID
    if not folds:
        raise PipelineError("k-fold selection needs folds over the training records (none "
                            "were formed: fewer than 2 patients?)")
    groups = np.full(len(table.y), -1, np.int64)
    for k, (_, held_out) in enumerate(folds):
        groups[np.isin(table.record, list(held_out))] = k

    def probs_of(setting: dict[str, Any]) -> np.ndarray:
        probs = np.zeros((len(table.y), len(classes)), np.float64)
        for fold_train, held_out in folds:
            model = fit(table.select(fold_train), len(classes), setting, seed)
            rows_out = np.isin(table.record, list(held_out))
            probs[rows_out] = probabilities(model, table.x[rows_out], len(classes))
        return probs

    return _choose(grid, table.y, probs_of, classes, "kfold", groups)
