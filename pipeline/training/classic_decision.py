"""How the classic baseline turns its settings' probabilities into one prediction, chosen on
held-out training patients.

After :mod:`pipeline.training.classic` has scored every setting of its grid on held-out
training patients (the patient-grouped folds, or the validation patients), each setting's
held-out probabilities are known for every beat. Two more choices can be made on them
without reading the test split (``eval.classic_decision: tuned``):

* **which settings to average** (:data:`RECIPES`): the best one alone, the mean of the best
  three, or the mean of the best boosted-tree and the best random-forest setting;
* **class weights**: the probabilities multiplied per class and renormalised, a prior shift
  that moves the decision between S and N beats. The weights are found by coordinate ascent
  over :data:`WEIGHT_STEPS_LOG2` on the held-out macro F1.

Every recipe is compared by the same held-out macro F1. A weighted recipe is scored
*nested*: the weights applied to one group of patients (a fold, or a validation record) are
tuned on the other groups only, so tuning is not credited with its own fit. The weights used
on the test split are then tuned on all held-out beats.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from typing import Any

import numpy as np

from pipeline.evaluation.metrics import macro_f1

log = logging.getLogger("ecg.classic")

RECIPES = ("single", "top3", "hgb+forest")
"""Which settings' probabilities are averaged: the best (by held-out macro F1), the best
three, or the best of each model kind."""

WEIGHT_STEPS_LOG2 = tuple(float(s) for s in np.arange(-3.0, 3.01, 0.5))
"""Candidate class weights, as powers of two (1/8 ... 8)."""

WEIGHT_SWEEPS = 2
"""Passes of coordinate ascent over the classes."""


def reweighted(probs: np.ndarray, weights: Sequence[float] | None) -> np.ndarray:
    """``probs * weights`` renormalised per row (``None``: ``probs`` unchanged)."""
    if weights is None:
        return probs
    p = np.asarray(probs, np.float64) * np.asarray(weights, np.float64)
    total = p.sum(axis=1, keepdims=True)
    return np.where(total > 0, p / np.where(total > 0, total, 1.0), probs)


def tune_class_weights(y: np.ndarray, probs: np.ndarray) -> tuple[list[float], float]:
    """Per-class weights maximising the macro F1 of ``reweighted(probs, w)`` against ``y``
    (coordinate ascent from all ones; a weight changes only on a strict gain), and that F1."""
    weights = np.ones(probs.shape[1])
    best = macro_f1(y, probs)
    for _ in range(WEIGHT_SWEEPS):
        for k in range(probs.shape[1]):
            for step in WEIGHT_STEPS_LOG2:
                cand = weights.copy()
                cand[k] = 2.0 ** step
                score = macro_f1(y, reweighted(probs, cand))
                if score > best + 1e-12:
                    best, weights = score, cand
    return [float(w) for w in weights], float(best)


def nested_weighted_f1(y: np.ndarray, probs: np.ndarray, groups: np.ndarray) -> float:
    """Macro F1 of the reweighted ``probs`` when each group's weights are tuned on the other
    groups' beats only (pooled over groups)."""
    out = np.empty_like(probs, dtype=np.float64)
    for g in np.unique(groups):
        held = groups == g
        weights, _ = tune_class_weights(y[~held], probs[~held])
        out[held] = reweighted(probs[held], weights)
    return macro_f1(y, out)


def members(rows: Sequence[dict[str, Any]], recipe: str, score_key: str) -> list[int]:
    """Indices (into ``rows``, the grid's scored settings) of the settings ``recipe`` averages."""
    order = sorted(range(len(rows)), key=lambda i: -rows[i][score_key])
    if recipe == "single":
        return order[:1]
    if recipe == "top3":
        return order[:3]
    if recipe == "hgb+forest":
        kinds = ("hgb", "random_forest")
        firsts = [next((i for i in order if rows[i].get("model", "hgb") == k), None) for k in kinds]
        return [i for i in firsts if i is not None]
    raise ValueError(f"unknown classic recipe {recipe!r}; known: {list(RECIPES)}")


def choose(y: np.ndarray, held_out_probs: Sequence[np.ndarray], rows: Sequence[dict[str, Any]],
           groups: np.ndarray, score_key: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The recipe (members, class weights or ``None``) with the best held-out macro F1, and
    every candidate's row (``held_out_macro_f1``; nested for the weighted ones)."""
    candidates = []
    for recipe in RECIPES:
        idx = members(rows, recipe, score_key)
        probs = np.mean([held_out_probs[i] for i in idx], axis=0)
        plain = {"recipe": recipe, "members": idx, "class_weights": None,
                 "held_out_macro_f1": macro_f1(y, probs)}
        weights, fitted = tune_class_weights(y, probs)
        tuned = {"recipe": f"{recipe}+weights", "members": idx, "class_weights": weights,
                 "held_out_macro_f1": nested_weighted_f1(y, probs, groups),
                 "fitted_macro_f1": fitted}
        for row in (plain, tuned):
            log.info("classic decision %s (members %s): held-out macro F1 %.3f", row["recipe"],
                     idx, row["held_out_macro_f1"])
        candidates += [plain, tuned]
    best = max(candidates, key=lambda r: r["held_out_macro_f1"])
    return best, candidates


DECISIONS = ("argmax", "tuned")
"""``eval.classic_decision``: the selected setting alone, or the recipe :func:`choose` picks."""


@dataclasses.dataclass(frozen=True)
class Decision:
    """The settings whose probabilities are averaged, and the class weights (or ``None``)."""

    recipe: str
    settings: tuple[dict[str, Any], ...]
    class_weights: tuple[float, ...] | None

    def to_json(self) -> dict[str, Any]:
        return {"recipe": self.recipe, "settings": list(self.settings),
                "class_weights": None if self.class_weights is None else list(self.class_weights)}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Decision:
        """The inverse of :meth:`to_json`."""
        weights = d["class_weights"]
        return cls(d["recipe"], tuple(d["settings"]), None if weights is None else tuple(weights))


def decide(selection: Any, how: str) -> tuple[Decision, list[dict[str, Any]]]:
    """The decision for ``eval.classic_decision`` ``how`` from a
    :class:`pipeline.training.classic.Selection`, and every candidate's row (``[]`` for
    ``argmax``)."""
    if how not in DECISIONS:
        raise ValueError(f"unknown eval.classic_decision {how!r}; known: {list(DECISIONS)}")
    if how == "argmax":
        return Decision("single", (selection.best,), None), []
    best, rows = choose(selection.y, selection.probs, selection.rows, selection.groups,
                        selection.score_key)
    settings = tuple({k: selection.rows[i][k] for k in selection.best} for i in best["members"])
    weights = None if best["class_weights"] is None else tuple(best["class_weights"])
    return Decision(best["recipe"], settings, weights), rows


def combine(member_probs: Sequence[np.ndarray], decision: Decision) -> np.ndarray:
    """The decision's probabilities from its members' (mean, then class weights)."""
    return reweighted(np.mean(np.asarray(member_probs, np.float64), axis=0),
                      decision.class_weights)


def describe(decision: Decision) -> str:
    """One line for the report: each member's kind and setting, the mean, the weights."""
    kinds = {"hgb": "HistGradientBoosting", "random_forest": "random forest"}
    parts = [f"{kinds.get(s.get('model', 'hgb'), s.get('model'))} {s}" for s in decision.settings]
    text = parts[0] if len(parts) == 1 else f"mean of {len(parts)} ({'; '.join(parts)})"
    if decision.class_weights is not None:
        text += f", class weights {[round(w, 3) for w in decision.class_weights]}"
    return text
