"""AAMI labels from MIT-BIH symbols, and patient-wise splits (DS1/DS2, folds, leaky intra)."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.data import labels as L
from pipeline.data import splits as S

# ------------------------------------------------------------------------------ labels

# AAMI EC57 as written in shared REFERENCES.md.
AAMI5 = {
    "N": "NLRej",
    "S": "AaJS",
    "V": "VE",
    "F": "F",
    "Q": "/fQ",
}
# Non-beat annotations that occur in mitdb (README: + ~ ! " x | [ ]) and a few more.
MITDB_NON_BEATS = ["+", "~", "!", '"', "x", "|", "[", "]"]


@pytest.mark.parametrize("cls, symbols", sorted(AAMI5.items()))
def test_aami5_mapping_per_references(cls, symbols):
    for s in symbols:
        assert L.symbol_class(s) == cls
        assert L.symbol_class(s, "aami5") == cls
        assert L.class_names("aami5").index(L.symbol_class(s)) == L.AAMI5_CLASSES.index(cls)


def test_aami5_covers_exactly_the_reference_symbols_among_mitdb_beats():
    ref = {s: c for c, syms in AAMI5.items() for s in syms}
    mapped = {s: c for s, c in L.SYMBOL_TO_AAMI5.items() if s in ref}
    assert mapped == ref
    # The four extra beat symbols (documented in labels.py; none occurs in mitdb).
    assert set(L.SYMBOL_TO_AAMI5) - set(ref) == {"B", "n", "r", "?"}
    assert [L.symbol_class(s) for s in "Bnr?"] == ["N", "S", "V", "Q"]


@pytest.mark.parametrize("symbol", MITDB_NON_BEATS + ["p", "t", "(", ")", "@", "T"])
def test_non_beats_are_none(symbol):
    assert L.symbol_class(symbol) is None
    assert L.symbol_class(symbol, "aami4") is None


def test_beat_and_non_beat_sets_are_disjoint():
    assert not (L.BEAT_SYMBOLS & L.NON_BEAT_SYMBOLS)


@pytest.mark.parametrize("symbol", ["Z", "", "NN", "n ", "1"])
def test_unknown_symbol_raises(symbol):
    with pytest.raises(ValueError, match="unknown annotation symbol"):
        L.symbol_class(symbol)


def test_aami4_variant():
    assert L.class_names("aami4") == ("N", "SVEB", "VEB", "Other")
    expect = {"N": "N", "S": "SVEB", "V": "VEB", "F": "Other", "Q": "Other"}
    for cls, symbols in AAMI5.items():
        for s in symbols:
            assert L.symbol_class(s, "aami4") == expect[cls]
    aami4 = L.class_names("aami4")  # the label index the windows stage stores
    assert aami4.index(L.symbol_class("F", "aami4")) == aami4.index(L.symbol_class("/", "aami4")) == 3
    assert aami4.index(L.symbol_class("A", "aami4")) == 1


def test_unknown_scheme_raises():
    with pytest.raises(
        ValueError, match=r"unknown label scheme 'aami3'; known: \['aami4', 'aami5'\]"
    ):
        L.class_names("aami3")
    # A typo in the scheme must not silently fall back to aami4 (or to "not a beat").
    for s in ("A", "+"):
        with pytest.raises(ValueError, match="unknown label scheme 'AAMI5'"):
            L.symbol_class(s, "AAMI5")


def test_ptbxl_superclasses():
    assert L.PTBXL_SUPERCLASSES == ("NORM", "MI", "STTC", "CD", "HYP")


# ------------------------------------------------------------------------------ splits

ALL_MITDB = sorted([*S.DS1, *S.DS2, *S.PACED])
REF_DS1 = "101 106 108 109 112 114 115 116 118 119 122 124 201 203 205 207 208 209 215 220 223 230"
REF_DS2 = "100 103 105 111 113 117 121 123 200 202 210 212 213 214 219 221 222 228 231 232 233 234"


def _counts(records, seed=0):
    """Seeded per-record class counts, roughly shaped like mitdb."""
    rng = np.random.default_rng(seed)
    return {
        r: {
            "N": int(rng.integers(1000, 2500)),
            "S": int(rng.integers(0, 100)),
            "V": int(rng.integers(0, 300)),
            "F": int(rng.integers(0, 20)),
        }
        for r in records
    }


def _patients(recs):
    return {S.patient_of(r) for r in recs}


def _assert_disjoint(split):
    """The direct form of check_no_patient_overlap."""
    tr, va, te = _patients(split.train), _patients(split.val), _patients(split.test)
    assert not (tr & va) and not (tr & te) and not (va & te)
    for f_tr, f_va in split.folds:
        assert not (_patients(f_tr) & _patients(f_va))


def test_ds1_ds2_exact_lists():
    assert S.DS1 == tuple(REF_DS1.split())
    assert S.DS2 == tuple(REF_DS2.split())
    assert S.PACED == ("102", "104", "107", "217")
    assert len(set(S.DS1) | set(S.DS2) | set(S.PACED)) == 48
    assert not (set(S.DS1) & set(S.DS2))


def test_patient_of_joins_201_and_202():
    assert S.patient_of("202") == S.patient_of("201") == "201"
    assert S.patient_of("100") == "100"
    assert S.patient_of("s03") == "s03"


@pytest.mark.parametrize("policy", ["drop_from_test", "drop_from_train"])
def test_inter_patient_split_on_all_records(policy):
    sp = S.mitdb_split(ALL_MITDB, _counts(ALL_MITDB), same_subject=policy, seed=42)
    used = set(sp.train) | set(sp.val) | set(sp.test)
    assert not (used & set(S.PACED))
    assert not sp.leaky and sp.intra is None
    assert set(sp.test) <= set(S.DS2)
    assert set(sp.train) | set(sp.val) <= set(S.DS1)
    # 201 and 202 are one subject: never on both sides, whichever side gives way.
    assert not ({"201", "202"} <= used)
    if policy == "drop_from_test":
        assert "202" not in sp.test and "201" in set(sp.train) | set(sp.val)
        assert set(sp.test) == set(S.DS2) - {"202"}
        assert set(sp.train) | set(sp.val) == set(S.DS1)
    else:
        assert "201" not in set(sp.train) | set(sp.val) and "202" in sp.test
        assert set(sp.test) == set(S.DS2)
        assert set(sp.train) | set(sp.val) == set(S.DS1) - {"201"}
    S.check_no_patient_overlap(sp)
    _assert_disjoint(sp)


def test_validation_and_folds_are_patient_disjoint_and_cover_train_pool():
    sp = S.mitdb_split(ALL_MITDB, _counts(ALL_MITDB), n_folds=5, val_fraction=0.2, seed=7)
    pool = set(sp.train) | set(sp.val)
    assert sp.val and 3 <= len(sp.val) <= 7  # about 20 % of 22 patients
    assert len(sp.folds) == 5
    seen = []
    for tr, va in sp.folds:
        assert set(tr) | set(va) == pool and not (set(tr) & set(va))
        assert not (_patients(tr) & _patients(va))
        seen += list(va)
    assert sorted(seen) == sorted(pool)  # each record validates exactly once
    S.check_no_patient_overlap(sp)
    _assert_disjoint(sp)


def test_check_no_patient_overlap_catches_leaks():
    bad = S.Split("inter_patient", train=("201", "101"), val=(), test=("202",), folds=())
    with pytest.raises(
        AssertionError, match=r"patient 201 \(record 202\) is in both train and test"
    ):
        S.check_no_patient_overlap(bad)
    bad_fold = S.Split(
        "inter_patient",
        train=("101", "201", "202"),
        val=(),
        test=("100",),
        folds=((("101", "201"), ("202",)),),
    )
    with pytest.raises(AssertionError, match=r"fold 0: patients \['201'\] in train and val"):
        S.check_no_patient_overlap(bad_fold)
    # A leaky split is labelled as such and not checked.
    S.check_no_patient_overlap(
        S.Split("intra_patient", ("100",), ("100",), ("100",), (), leaky=True)
    )


def test_same_seed_same_split_different_seed_may_differ():
    c = _counts(ALL_MITDB)
    a = S.mitdb_split(ALL_MITDB, c, seed=1)
    b = S.mitdb_split(list(reversed(ALL_MITDB)), c, seed=1)  # input order does not matter
    assert a == b and a.to_json() == b.to_json()
    others = [S.mitdb_split(ALL_MITDB, c, seed=s) for s in range(2, 8)]
    assert any((o.val, o.folds) != (a.val, a.folds) for o in others)
    for o in others:
        assert o.test == a.test  # DS2 is fixed; only val/folds move
        _assert_disjoint(o)


def test_split_without_class_counts():
    sp = S.mitdb_split(ALL_MITDB, None, seed=0)
    _assert_disjoint(sp)
    assert len(sp.folds) == 5


def test_unknown_policies_raise():
    with pytest.raises(ValueError, match="unknown same_subject policy 'keep_both'"):
        S.mitdb_split(ALL_MITDB, same_subject="keep_both")
    # Even when 201/202 are not both present, a typo is reported.
    with pytest.raises(ValueError, match="unknown same_subject policy"):
        S.mitdb_split(["100", "101"], same_subject="drop_form_test")
    with pytest.raises(ValueError, match="unknown split scheme 'random'"):
        S.mitdb_split(ALL_MITDB, scheme="random")
    with pytest.raises(ValueError, match="no records to split"):
        S.mitdb_split(list(S.PACED))
    with pytest.raises(ValueError, match="needs training and test records"):
        S.mitdb_split(["101", "106"])  # DS1 only: nothing to test on


def test_intra_patient_split_is_marked_leaky():
    sp = S.mitdb_split(
        ALL_MITDB, scheme="intra_patient", val_fraction=0.2, intra_test_fraction=0.3, seed=5
    )
    assert sp.leaky and sp.scheme == "intra_patient"
    assert sp.train == sp.val == sp.test and "102" not in sp.train
    assert sp.intra == {"val_fraction": pytest.approx(0.14), "test_fraction": 0.3, "seed": 5}
    assert sp.to_json()["leaky"] is True
    S.check_no_patient_overlap(sp)  # leaky: no check, no error


def test_intra_assignment_deterministic_with_fractions():
    intra = {"val_fraction": 0.14, "test_fraction": 0.3, "seed": 5}
    a = S.intra_assignment(20_000, "100", intra)
    assert a.dtype == np.int8 and set(np.unique(a)) == {0, 1, 2}
    np.testing.assert_array_equal(a, S.intra_assignment(20_000, "100", intra))
    assert not np.array_equal(a, S.intra_assignment(20_000, "101", intra))
    assert not np.array_equal(a, S.intra_assignment(20_000, "100", {**intra, "seed": 6}))
    frac = np.bincount(a, minlength=3) / len(a)
    np.testing.assert_allclose(frac, [0.56, 0.14, 0.30], atol=0.015)
    assert len(S.intra_assignment(0, "100", intra)) == 0


def test_split_to_json_lists_patients_and_folds():
    sp = S.mitdb_split(ALL_MITDB, _counts(ALL_MITDB), seed=3)
    d = sp.to_json()
    assert d["patients"]["201"] == "201"
    assert len(d["folds"]) == len(sp.folds) and set(d["folds"][0]) == {"train", "val"}


def test_synthetic_record_names_split_by_patient():
    names = [f"s{i:02d}" for i in range(10)]
    counts = _counts(names, seed=1)
    sp = S.mitdb_split(names, counts, seed=0)
    assert not sp.leaky
    assert set(sp.train) | set(sp.val) | set(sp.test) == set(names)
    assert sp.train and sp.val and sp.test
    assert 2 <= len(sp.test) <= 5  # about 30 % of the patients
    S.check_no_patient_overlap(sp)
    _assert_disjoint(sp)
    assert sp == S.mitdb_split(names, counts, seed=0)
    # Mixed with 201/202 (one subject): they stay together wherever they land.
    mixed = names + ["201", "202"]
    for seed in range(4):
        sp = S.mitdb_split(mixed, _counts(mixed), seed=seed)
        _assert_disjoint(sp)
        sides = [
            i for i, part in enumerate((sp.train, sp.val, sp.test)) if {"201", "202"} & set(part)
        ]
        assert len(sides) == 1


def test_two_synthetic_patients():
    sp = S.mitdb_split(["s00", "s01"], seed=0)
    assert len(sp.train) == 1 and len(sp.test) == 1 and sp.val == () and sp.folds == ()
    with pytest.raises(ValueError, match="at least 2 patients"):
        S.mitdb_split(["s00"])


def test_ptbxl_split_folds():
    assert S.ptbxl_split() == {"train": (1, 2, 3, 4, 5, 6, 7, 8), "val": (9,), "test": (10,)}


# ------------------------------------------------- validation stratified on S and V counts


def _sv_table():
    """A synthetic DS1-like count table: three S-rich records, four V-rich ones, 201/202."""
    rng = np.random.default_rng(4)
    recs = [f"r{i:02d}" for i in range(18)] + ["201", "202"]
    counts = {r: {"N": int(rng.integers(1500, 2500)), "S": int(rng.integers(0, 12)),
                  "V": int(rng.integers(0, 40)), "F": 0, "Q": 0} for r in recs}
    for r, s in (("r00", 400), ("r01", 150), ("r02", 120)):
        counts[r]["S"] = s
    for r, v in (("r03", 500), ("r04", 420), ("r05", 300), ("r06", 260)):
        counts[r]["V"] = v
    counts["201"]["S"], counts["202"]["S"] = 90, 40
    return recs, counts


def _share(recs, counts, cls, of):
    return sum(counts[r][cls] for r in recs) / sum(counts[r][cls] for r in of)


@pytest.mark.parametrize("seed", [0, 1, 42])
def test_stratified_validation_spreads_s_and_v_rich_records(seed):
    recs, counts = _sv_table()
    train, val = S.stratified_validation(recs, counts, 0.25, seed)
    assert sorted(train + val) == sorted(recs) and val and train
    assert not ({"201", "202"} & set(train) and {"201", "202"} & set(val))  # one subject
    top_s = sorted(recs, key=lambda r: -counts[r]["S"])[:3]
    assert not set(top_s) <= set(val)
    assert not {"r03", "r04", "r05"} <= set(val)
    assert abs(_share(val, counts, "S", recs) - 0.25) <= 0.12
    assert abs(_share(val, counts, "V", recs) - 0.25) <= 0.12


def test_stratified_validation_without_counts_holds_out_about_the_fraction():
    recs = [f"s{i:02d}" for i in range(10)]
    train, val = S.stratified_validation(recs, None, 0.2, 0)
    assert len(val) == 2 and len(train) == 8


def test_stratified_validation_refuses_bad_input():
    with pytest.raises(ValueError, match=r"`val_fraction` must be in \(0, 1\)\. Received: "
                                         r"val_fraction=1\.5"):
        S.stratified_validation(["s00", "s01"], None, 1.5)
    with pytest.raises(ValueError, match=r"need at least 2 patients to hold validation out; "
                                         r"got records \['201', '202'\]"):
        S.stratified_validation(["201", "202"], None, 0.2)


def test_inter_patient_validation_is_the_stratified_choice():
    c = _counts(ALL_MITDB)
    sp = S.mitdb_split(ALL_MITDB, c, seed=5)
    train, val = S.stratified_validation(set(sp.train) | set(sp.val), c, 0.2, 5)
    assert (sp.train, sp.val) == (tuple(train), tuple(val))
