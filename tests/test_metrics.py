"""Metrics: hand-computed cases, sklearn cross-checks, thresholds that never peek, bootstrap."""

from __future__ import annotations

import inspect
import json
import warnings

import numpy as np
import pytest
from sklearn.metrics import cohen_kappa_score, f1_score, roc_auc_score

from pipeline.evaluation import metrics

# ----------------------------------------------------------------- single-label, by hand
# Four AAMI-like classes; F has no example and is never predicted.
#   row  true  probs (N, S, V, F)        pred
#   0    N     0.7 0.2 0.1 0.0           N
#   1    N     0.6 0.3 0.1 0.0           N
#   2    N     0.3 0.5 0.2 0.0           S
#   3    S     0.2 0.7 0.1 0.0           S
#   4    S     0.5 0.4 0.1 0.0           N
#   5    V     0.1 0.1 0.8 0.0           V
CLASSES4 = ("N", "S", "V", "F")
Y4 = np.array([0, 0, 0, 1, 1, 2])
P4 = np.array(
    [
        [0.7, 0.2, 0.1, 0.0],
        [0.6, 0.3, 0.1, 0.0],
        [0.3, 0.5, 0.2, 0.0],
        [0.2, 0.7, 0.1, 0.0],
        [0.5, 0.4, 0.1, 0.0],
        [0.1, 0.1, 0.8, 0.0],
    ]
)


@pytest.fixture(scope="module")
def m4():
    return metrics.single_label_metrics(Y4, P4, CLASSES4)


def test_single_label_hand_computed_counts(m4):
    assert m4["confusion_matrix"] == [[2, 1, 0, 0], [1, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 0]]
    assert m4["accuracy"] == pytest.approx(4 / 6)
    n = m4["per_class"]["N"]
    assert (n["tp"], n["fp"], n["fn"], n["tn"], n["support"]) == (2, 1, 1, 2, 3)
    assert n["sensitivity"] == pytest.approx(2 / 3)
    assert n["ppv"] == pytest.approx(2 / 3)
    assert n["specificity"] == pytest.approx(2 / 3)
    assert n["f1"] == pytest.approx(2 / 3)
    s = m4["per_class"]["S"]
    assert (s["sensitivity"], s["ppv"], s["specificity"], s["f1"]) == pytest.approx(
        (0.5, 0.5, 0.75, 0.5)
    )
    v = m4["per_class"]["V"]
    assert (v["sensitivity"], v["ppv"], v["specificity"], v["f1"]) == (1.0, 1.0, 1.0, 1.0)


def test_single_label_hand_computed_aucs(m4):
    # N: positives 0.7 0.6 0.3 vs negatives 0.2 0.5 0.1 -> 8 of 9 pairs ordered.
    assert m4["per_class"]["N"]["roc_auc"] == pytest.approx(8 / 9)
    # AP(N): ranks P P N P -> (1/1 + 2/2 + 3/4) / 3.
    assert m4["per_class"]["N"]["pr_auc"] == pytest.approx(2.75 / 3)
    assert m4["per_class"]["S"]["roc_auc"] == pytest.approx(7 / 8)
    assert m4["per_class"]["S"]["pr_auc"] == pytest.approx((1 + 2 / 3) / 2)
    assert m4["per_class"]["V"]["roc_auc"] == 1.0
    assert m4["auc_classes"] == ["N", "S", "V"]
    assert m4["macro_roc_auc"] == pytest.approx((8 / 9 + 7 / 8 + 1) / 3)


def test_class_without_support_is_flagged_not_a_crash(m4):
    f = m4["per_class"]["F"]
    assert f["support"] == 0 and f["n_predicted"] == 0
    assert f["roc_auc"] is None and f["pr_auc"] is None
    assert f["sensitivity"] == 0.0 and f["ppv"] == 0.0 and f["f1"] == 0.0
    assert set(f["undefined"]) == {"sensitivity", "ppv", "f1"}
    assert f["specificity"] == 1.0
    assert any("'F'" in note and "no positive" in note for note in m4["notes"])
    assert m4["per_class"]["N"]["undefined"] == []


def test_single_label_macro_f1_kappa_and_j_index(m4):
    f1s = [2 / 3, 0.5, 1.0, 0.0]
    assert m4["macro_f1"] == pytest.approx(np.mean(f1s))
    assert m4["macro_f1"] == pytest.approx(
        f1_score(Y4, P4.argmax(1), labels=range(4), average="macro", zero_division=0)
    )
    assert m4["macro_f1_present"] == pytest.approx(np.mean(f1s[:3]))
    assert m4["cohen_kappa"] == pytest.approx(10 / 22)
    assert m4["cohen_kappa"] == pytest.approx(cohen_kappa_score(Y4, P4.argmax(1)))
    assert m4["j_index"] == pytest.approx(0.5 + 1.0 + 0.5 + 1.0)
    assert m4["jk_index"] == pytest.approx(0.5 * 10 / 22 + 3.0 / 8)


def test_single_label_is_json_ready(m4):
    assert json.loads(json.dumps(m4)) == m4


def test_perfect_classifier():
    y = np.array([0, 1, 2, 2, 1, 0, 3])
    m = metrics.single_label_metrics(y, np.eye(4)[y], ("N", "SVEB", "VEB", "Other"))
    assert m["accuracy"] == 1.0 and m["macro_f1"] == 1.0 and m["cohen_kappa"] == 1.0
    assert m["macro_roc_auc"] == 1.0 and m["macro_pr_auc"] == 1.0
    assert m["j_index"] == 4.0 and m["jk_index"] == 1.0
    assert all(r["undefined"] == [] for r in m["per_class"].values())
    assert m["notes"] == []


def test_random_classifier_is_at_chance():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 20_000)
    m = metrics.single_label_metrics(y, rng.dirichlet(np.ones(3), 20_000), ("a", "b", "c"))
    assert m["accuracy"] == pytest.approx(1 / 3, abs=0.02)
    assert m["macro_roc_auc"] == pytest.approx(0.5, abs=0.02)
    assert abs(m["cohen_kappa"]) < 0.03
    assert "j_index" not in m


def test_zero_division_value_is_configurable():
    m = metrics.single_label_metrics(Y4, P4, CLASSES4, zero_division=float("nan"))
    assert np.isnan(m["per_class"]["F"]["sensitivity"])


def test_single_label_input_errors():
    with pytest.raises(ValueError, match=r"`classes` has 3 names but probs has 4 columns"):
        metrics.single_label_metrics(Y4, P4, ("N", "S", "V"))
    with pytest.raises(ValueError, match=r"`y_true` values must be in \[0, 4\)"):
        metrics.single_label_metrics(np.array([0, 0, 0, 1, 1, 4]), P4, CLASSES4)
    with pytest.raises(ValueError, match="NaN or infinite"):
        metrics.single_label_metrics(Y4, np.where(P4 > 0.75, np.nan, P4), CLASSES4)
    with pytest.raises(ValueError, match="must have shape"):
        metrics.single_label_metrics(Y4[:3], P4, CLASSES4)


# ------------------------------------------------------------------ multi-label, by hand
# sample  labels (a, b)  scores (a, b)
#   0     1 0            0.9 0.75
#   1     1 1            0.6 0.7
#   2     0 1            0.4 0.8
#   3     0 0            0.1 0.2
YML = np.array([[1, 0], [1, 1], [0, 1], [0, 0]])
PML = np.array([[0.9, 0.75], [0.6, 0.7], [0.4, 0.8], [0.1, 0.2]])


def test_multilabel_hand_computed():
    m = metrics.multilabel_metrics(YML, PML, ("a", "b"), thresholds=[0.5, 0.5])
    assert m["per_class"]["a"]["roc_auc"] == 1.0
    assert m["per_class"]["b"]["roc_auc"] == pytest.approx(3 / 4)
    assert m["macro_auc"] == pytest.approx(0.875)
    assert m["macro_auc"] == pytest.approx(roc_auc_score(YML, PML, average="macro"))
    b = m["per_class"]["b"]
    assert (b["tp"], b["fp"], b["fn"], b["tn"]) == (2, 1, 0, 1)
    assert (b["sensitivity"], b["ppv"], b["specificity"], b["f1"]) == pytest.approx(
        (1.0, 2 / 3, 0.5, 0.8)
    )
    assert m["per_class"]["a"]["f1"] == 1.0
    assert m["macro_f1"] == pytest.approx(0.9)
    assert m["thresholds_source"] == "given"
    assert json.loads(json.dumps(m)) == m


def test_fmax_hand_computed():
    # Sample 3 has no true label: out of the recall mean. (precision, recall, F) by t:
    #   t <= 0.2       (1/2 + 1 + 1/2 + 0) / 4, 1      -> 2/3
    #   0.2 < t <= 0.4 (1/2 + 1 + 1/2) / 3,     1      -> 4/5
    #   0.4 < t <= 0.6 (1/2 + 1 + 1) / 3,       1      -> 10/11 (best; grid point 0.41)
    #   0.6 < t <= 0.7 (1/2 + 1 + 1) / 3,  (1 + 1/2 + 1) / 3 -> 5/6
    #   0.7 < t <= 0.75 (1/2 + 1) / 2,     (1 + 0 + 1) / 3   -> 12/17
    #   0.75 < t <= 0.8  1,                 2/3              -> 4/5
    #   0.8 < t <= 0.9   1,                 1/3              -> 1/2
    fmax, t = metrics.fmax_score(YML, PML)
    assert fmax == pytest.approx(10 / 11)
    assert t == pytest.approx(0.41)
    # 0.6 < t <= 0.7: precision 5/6, recall 5/6.
    f, _ = metrics.fmax_score(YML, PML, grid=[0.65])
    assert f == pytest.approx(5 / 6)
    m = metrics.multilabel_metrics(YML, PML, ("a", "b"))
    assert m["fmax"] == pytest.approx(10 / 11)
    assert m["thresholds"] == [0.5, 0.5] and m["thresholds_source"].startswith("default")


def test_multilabel_absent_class_is_none():
    y = YML.copy()
    y[:, 1] = 0
    m = metrics.multilabel_metrics(y, PML, ("a", "b"))
    assert m["per_class"]["b"]["roc_auc"] is None
    assert m["auc_classes"] == ["a"]
    assert m["macro_auc"] == 1.0
    assert "ppv" not in m["per_class"]["b"]["undefined"]  # predicted, just wrong
    assert "sensitivity" in m["per_class"]["b"]["undefined"]


def test_multilabel_input_errors():
    with pytest.raises(ValueError, match="only 0 and 1"):
        metrics.multilabel_metrics(YML * 2, PML, ("a", "b"))
    with pytest.raises(ValueError, match="`thresholds` must have 2 values"):
        metrics.multilabel_metrics(YML, PML, ("a", "b"), thresholds=[0.5])


# ----------------------------------------------------------------------- thresholds


def test_choose_thresholds_hand_computed():
    # a: best F1 (=1) predicting {0.9, 0.6}; midway to 0.4 -> 0.5.
    # b: F1 at >=0.8: 2/3, >=0.75: 1/2, >=0.7: 4/5 (best), >=0.2: 2/3; midway 0.7/0.2 -> 0.45.
    t = metrics.choose_thresholds(YML, PML)
    assert t.dtype == np.float64 and t.shape == (2,)
    np.testing.assert_allclose(t, [0.5, 0.45])
    tg = metrics.choose_thresholds(YML, PML, grid=metrics.FMAX_GRID)
    np.testing.assert_allclose(tg, [0.6, 0.7])  # highest grid value among the ties


def _f1(y, pred):
    tp = np.sum(y & pred)
    den = 2 * tp + np.sum(~y & pred) + np.sum(y & ~pred)
    return 2 * tp / den if den else 0.0


def test_choose_thresholds_reaches_the_best_validation_f1():
    rng = np.random.default_rng(3)
    y = rng.random((300, 5)) < [0.4, 0.2, 0.1, 0.05, 0.3]
    p = np.clip(0.3 * y + rng.random((300, 5)) * 0.8, 0, 1).round(2)  # many ties
    t = metrics.choose_thresholds(y.astype(int), p)
    for k in range(5):
        brute = max(_f1(y[:, k], p[:, k] >= c) for c in np.unique(p[:, k]))
        assert _f1(y[:, k], p[:, k] >= t[k]) == pytest.approx(brute)


def test_choose_thresholds_never_peeks():
    """A pure function of (y_val, probs_val): no state, no randomness, no writes."""
    params = list(inspect.signature(metrics.choose_thresholds).parameters)
    assert params == ["y_val", "probs_val", "grid", "default"]
    rng = np.random.default_rng(1)
    y = (rng.random((200, 5)) < 0.3).astype(int)
    p = rng.random((200, 5))
    y.setflags(write=False)  # any in-place write would raise
    p.setflags(write=False)
    y0, p0 = y.copy(), p.copy()
    first = metrics.choose_thresholds(y, p)
    # Other data seen in between (a "test" fold scored with the same module) changes nothing.
    metrics.multilabel_metrics(1 - y, 1 - p, list("abcde"), thresholds=first)
    np.random.seed(123)
    second = metrics.choose_thresholds(y, p)
    np.random.seed(999)
    third = metrics.choose_thresholds(y.copy(), p.copy())
    np.testing.assert_array_equal(first, second)
    np.testing.assert_array_equal(first, third)
    np.testing.assert_array_equal(y, y0)
    np.testing.assert_array_equal(p, p0)


def test_choose_thresholds_class_without_positives_warns():
    y = YML.copy()
    y[:, 1] = 0
    with pytest.warns(UserWarning, match=r"columns \[1\] have no positive"):
        t = metrics.choose_thresholds(y, PML, default=0.5)
    assert t[1] == 0.5


# ------------------------------------------------------------------------- bootstrap


def test_bootstrap_is_seeded_and_brackets_the_point():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 2000)
    correct = rng.random(2000) < 0.8
    pred = np.where(correct, y, 1 - y)
    probs = np.eye(2)[pred]
    a = metrics.bootstrap_ci(metrics.accuracy, y, probs, n=300, seed=7)
    b = metrics.bootstrap_ci(metrics.accuracy, y, probs, n=300, seed=7)
    c = metrics.bootstrap_ci(metrics.accuracy, y, probs, n=300, seed=8)
    assert tuple(a) == tuple(b) and tuple(a) != tuple(c)
    low, high, point = a
    assert point == pytest.approx(correct.mean())
    assert low < point < high
    # Binomial standard error sqrt(0.16 / 2000) ~ 0.009: 95 % width ~ 0.035.
    assert 0.025 < high - low < 0.045
    assert a.n_valid == 300 and a.n_skipped == 0
    assert a.as_dict()["point"] == point


def test_bootstrap_by_group_is_wider_for_clustered_errors():
    # 100 records of 20 beats; a record is either all right or all wrong.
    rng = np.random.default_rng(2)
    groups = np.repeat(np.arange(100), 20)
    record_ok = rng.random(100) < 0.7
    y = np.zeros(2000, dtype=int)
    probs = np.eye(2)[np.where(record_ok[groups], 0, 1)]
    beat = metrics.bootstrap_ci(metrics.accuracy, y, probs, n=300, seed=0)
    rec = metrics.bootstrap_ci(metrics.accuracy, y, probs, n=300, seed=0, groups=groups)
    assert beat.point == rec.point
    assert (rec.high - rec.low) > 3 * (beat.high - beat.low)


def test_bootstrap_skips_undefined_replicates():
    y = np.zeros(30, dtype=int)
    y[0] = 1  # one positive: many resamples miss it and the AUC is undefined
    probs = np.random.default_rng(0).dirichlet([1, 1], 30)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ci = metrics.bootstrap_ci(metrics.macro_auc, y, probs, n=200, seed=0)
    assert 0 < ci.n_skipped < 200 and ci.n_valid + ci.n_skipped == 200


def test_bootstrap_errors():
    y, p = np.array([0, 1]), np.eye(2)
    with pytest.raises(ValueError, match=r"`alpha` must be in \(0, 1\)"):
        metrics.bootstrap_ci(metrics.accuracy, y, p, alpha=1.5)
    with pytest.raises(ValueError, match="`groups` needs 2 entries"):
        metrics.bootstrap_ci(metrics.accuracy, y, p, groups=[0])
    with pytest.raises(ValueError, match="no bootstrap replicate"):
        metrics.bootstrap_ci(lambda a, b: None, y, p, n=5)


def test_headline_functions_match_full_metrics(m4):
    assert metrics.accuracy(Y4, P4) == pytest.approx(m4["accuracy"])
    assert metrics.macro_f1(Y4, P4) == pytest.approx(m4["macro_f1"])
    assert metrics.macro_auc(Y4, P4) == pytest.approx(m4["macro_roc_auc"])
    assert metrics.macro_auc(YML, PML) == pytest.approx(0.875)


# -------------------------------------------------------------------------- markdown


def test_format_markdown_single_label(m4):
    md = metrics.format_markdown(m4, CLASSES4, ci={"accuracy": (0.5, 0.8, 0.667)})
    assert "| class | Se | +P | Sp | F1 | ROC AUC | PR AUC | support |" in md
    assert "| N | 0.667 | 0.667 | 0.667 | 0.667 | 0.889 | 0.917 | 3 |" in md
    assert "| F | 0.000* | 0.000* | 1.000 | 0.000* | n/a | n/a | 0 |" in md
    assert "- accuracy: 0.667 (95% CI 0.500 to 0.800)" in md
    assert "macro ROC AUC (over N, S, V)" in md
    assert "| S | 1 | 1 | 0 | 0 |" in md  # confusion-matrix row
    assert "Notes:" in md


def test_format_markdown_multilabel():
    m = metrics.multilabel_metrics(YML, PML, ("a", "b"), thresholds=metrics.choose_thresholds(YML, PML))
    md = metrics.format_markdown(m)
    assert "F-max (sample-centric): 0.909" in md
    assert "| b | 1.000 | 0.667 | 0.500 | 0.800 | 0.750 | 0.833 | 0.450 | 2 |" in md
    assert "threshold |" in md and "Confusion matrix" not in md
