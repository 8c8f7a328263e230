"""The classic baseline's decision step: class weights, nested scoring, recipes."""

import numpy as np
import pytest

from pipeline.evaluation.metrics import macro_f1
from pipeline.training import classic_decision as cd


def _shy_minority(n=600, seed=0):
    """Labels with a 20 % minority whose probability is shrunk by 4: argmax misses most of
    it, a weight of about 4 on that class restores it."""
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.2).astype(np.int64)
    p1 = np.clip(np.where(y == 1, 0.7, 0.3) + rng.normal(0, 0.1, n), 0.01, 0.99) / 4
    probs = np.stack([1 - p1, p1], axis=1)
    return y, probs / probs.sum(axis=1, keepdims=True)


def test_reweighted_renormalises_rows_and_none_leaves_probs_alone():
    p = np.array([[0.5, 0.5], [0.9, 0.1]])
    assert cd.reweighted(p, None) is p
    out = cd.reweighted(p, [1.0, 3.0])
    assert np.allclose(out, [[0.25, 0.75], [0.75, 0.25]])
    assert np.allclose(out.sum(axis=1), 1.0)


def test_class_weights_recover_a_shrunk_minority_class():
    y, probs = _shy_minority()
    before = macro_f1(y, probs)
    weights, after = cd.tune_class_weights(y, probs)
    assert weights[1] / weights[0] >= 2.0
    assert after > before + 0.2
    assert after == pytest.approx(macro_f1(y, cd.reweighted(probs, weights)))


def test_weights_stay_at_one_when_argmax_is_already_right():
    y = np.array([0, 1, 0, 1])
    probs = np.array([[0.9, 0.1], [0.1, 0.9], [0.8, 0.2], [0.3, 0.7]])
    weights, f1 = cd.tune_class_weights(y, probs)
    assert weights == [1.0, 1.0] and f1 == 1.0


def test_nested_score_is_no_better_than_the_fitted_one():
    y, probs = _shy_minority(seed=3)
    groups = np.arange(len(y)) % 4
    _, fitted = cd.tune_class_weights(y, probs)
    nested = cd.nested_weighted_f1(y, probs, groups)
    assert nested <= fitted + 1e-12
    assert nested > macro_f1(y, probs)  # the shift generalises across groups here


def test_recipe_members_follow_the_held_out_ranking():
    rows = [{"model": "hgb", "s": 0.5}, {"model": "random_forest", "s": 0.3},
            {"model": "hgb", "s": 0.7}, {"model": "hgb", "s": 0.6}]
    assert cd.members(rows, "single", "s") == [2]
    assert cd.members(rows, "top3", "s") == [2, 3, 0]
    assert cd.members(rows, "hgb+forest", "s") == [2, 1]
    with pytest.raises(ValueError, match="unknown classic recipe 'top9'"):
        cd.members(rows, "top9", "s")


def _selection(y, probs_list, rows):
    from pipeline.training.classic import Selection

    best = max(rows, key=lambda r: r["s"])
    return Selection({"model": best["model"], "k": best["k"]}, rows, y, probs_list,
                     np.arange(len(y)) % 3, "s")


def test_decide_argmax_keeps_the_selected_setting_alone():
    y, probs = _shy_minority(n=90)
    rows = [{"model": "hgb", "k": 1, "s": 0.4}, {"model": "hgb", "k": 2, "s": 0.6}]
    decision, candidates = cd.decide(_selection(y, [probs, probs], rows), "argmax")
    assert decision.settings == ({"model": "hgb", "k": 2},) and decision.class_weights is None
    assert candidates == []
    with pytest.raises(ValueError, match="unknown eval.classic_decision 'vote'"):
        cd.decide(_selection(y, [probs], rows[:1]), "vote")


def test_decide_tuned_picks_the_weighted_recipe_when_it_wins_nested():
    y, probs = _shy_minority(n=600, seed=5)
    rows = [{"model": "hgb", "k": 1, "s": 0.6}, {"model": "random_forest", "k": 2, "s": 0.5}]
    decision, candidates = cd.decide(_selection(y, [probs, probs], rows), "tuned")
    assert len(candidates) == 2 * len(cd.RECIPES)
    w = decision.class_weights
    assert decision.recipe.endswith("+weights") and w[1] / w[0] > 1.0
    member_probs = [probs] * len(decision.settings)
    assert np.allclose(cd.combine(member_probs, decision),
                       cd.reweighted(probs, decision.class_weights))
    assert "class weights" in cd.describe(decision)
