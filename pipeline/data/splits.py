"""Patient-wise splits, shared by every later script and saved as ``splits.json`` per run.

* MIT-BIH inter-patient (default): DS1 train / DS2 test of de Chazal et al. 2004, paced records
  102, 104, 107 and 217 excluded. A validation part of DS1 is held out by patient, stratified
  on each patient's S and V counts (:func:`stratified_validation`: the few S- and V-rich
  records, 209 above all, are spread instead of landing together in validation), and k folds
  are formed inside DS1 by class-stratified grouped folds (StratifiedGroupKFold).
* Records 201 and 202 come from one subject: they share a patient id and never cross a split.
* Intra-patient (explicit option): beats of every record are split at random; all outputs of
  such a split are labelled ``leaky`` because one patient's beats sit in train and test.
* PTB-XL: ``strat_fold`` 1-8 train, 9 validation, 10 test.

Record sets that are not MIT-BIH (synthetic demo records) are split by patient with the same
grouped, stratified procedure.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

import numpy as np

DS1 = ("101", "106", "108", "109", "112", "114", "115", "116", "118", "119", "122", "124",
       "201", "203", "205", "207", "208", "209", "215", "220", "223", "230")
DS2 = ("100", "103", "105", "111", "113", "117", "121", "123", "200", "202", "210", "212",
       "213", "214", "219", "221", "222", "228", "231", "232", "233", "234")
PACED = ("102", "104", "107", "217")
SAME_SUBJECT = {"202": "201"}
PTBXL_TRAIN_FOLDS = (1, 2, 3, 4, 5, 6, 7, 8)
PTBXL_VAL_FOLDS = (9,)
PTBXL_TEST_FOLDS = (10,)


def patient_of(record: str) -> str:
    """Patient id of an MIT-BIH record (201 and 202 are one subject)."""
    return SAME_SUBJECT.get(record, record)


@dataclasses.dataclass(frozen=True)
class Split:
    """Record-level split. ``intra`` marks a leaky beat-level split of the same records."""

    scheme: str
    train: tuple[str, ...]
    val: tuple[str, ...]
    test: tuple[str, ...]
    folds: tuple[tuple[tuple[str, ...], tuple[str, ...]], ...]
    leaky: bool = False
    intra: Mapping[str, float] | None = None
    """For intra-patient splits: {"val_fraction", "test_fraction", "seed"} of beats."""

    def to_json(self) -> dict:
        d = dataclasses.asdict(self)
        d["folds"] = [{"train": list(a), "val": list(b)} for a, b in self.folds]
        d["patients"] = {r: patient_of(r) for r in (*self.train, *self.val, *self.test)}
        return d


def _grouped_folds(
    records: Sequence[str],
    class_counts: Mapping[str, Mapping[str, int]] | None,
    n_folds: int,
    seed: int,
) -> list[tuple[list[str], list[str]]]:
    """Patient-grouped, class-stratified folds over ``records`` (each: train, val)."""
    from sklearn.model_selection import StratifiedGroupKFold

    records = sorted(records)
    patients = sorted({patient_of(r) for r in records})
    if len(patients) < 2:
        raise ValueError(f"need at least 2 patients to form folds; got records {records}")
    n_folds = max(2, min(n_folds, len(patients)))
    # One row per beat would be exact but slow; one row per (record, class) with repetition
    # capped keeps the stratification signal at a fraction of the size.
    # StratifiedGroupKFold's shuffle only breaks ties between patients of equal class spread,
    # so with real counts the seed changed nothing; a seeded +-10 % jitter of the repetitions
    # lets the seed choose among near-equal assignments.
    jitter = np.random.default_rng(seed)
    labels, groups = [], []
    for r in records:
        counts = dict((class_counts or {}).get(r, {})) or {"_": 1}
        for cls, n in sorted(counts.items()):
            reps = int(min(max(n, 0), 2000))
            if reps > 1:
                reps = int(round(reps * jitter.uniform(0.9, 1.1)))
            labels += [cls] * reps
            groups += [patient_of(r)] * reps
    if not labels:
        labels, groups = list(records), [patient_of(r) for r in records]
    cv = StratifiedGroupKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    dummy = np.zeros(len(labels))
    folds = []
    for _, val_idx in cv.split(dummy, labels, groups):
        val_pat = {groups[i] for i in val_idx}
        val = [r for r in records if patient_of(r) in val_pat]
        train = [r for r in records if patient_of(r) not in val_pat]
        if val and train:
            folds.append((train, val))
    return folds


BALANCED_CLASSES = (("S", "SVEB"), ("V", "VEB"))
"""The classes :func:`stratified_validation` balances first (AAMI5 or AAMI4 names)."""
BALANCE_WEIGHTS = np.array([1.0, 1.0, 0.5, 0.5])
"""Weights of the S share, V share, beat share and patient share in the balancing."""


def _patient_table(records: Sequence[str],
                   class_counts: Mapping[str, Mapping[str, int]] | None) -> dict[str, np.ndarray]:
    """Per patient: (S beats, V beats, all beats, 1) summed over the patient's records."""
    table: dict[str, np.ndarray] = {}
    for r in records:
        counts = dict((class_counts or {}).get(r, {}))
        row = [sum(max(int(counts.get(c, 0)), 0) for c in names) for names in BALANCED_CLASSES]
        row += [sum(max(int(v), 0) for v in counts.values()), 0]
        p = patient_of(r)
        table[p] = table.get(p, np.zeros(4)) + np.asarray(row, np.float64)
        table[p][3] = 1.0
    return table


def _balanced_folds(shares: dict[str, np.ndarray], n_folds: int, seed: int) -> list[list[str]]:
    """Greedy largest-first assignment of patients into ``n_folds`` folds.

    Patients go in order of S share, then V share, then beat share (largest first; the
    seed breaks exact ties), each into the fold where it adds least to the weighted sum of
    squared fold shares (the fold with the smallest dot product of its load and the
    patient's shares; ties: the fold with fewer patients, then the lower index).
    """
    rng = np.random.default_rng(seed)
    tie = {p: rng.random() for p in sorted(shares)}
    order = sorted(shares, key=lambda p: (-shares[p][0], -shares[p][1], -shares[p][2], tie[p]))
    loads = np.zeros((n_folds, 4))
    folds: list[list[str]] = [[] for _ in range(n_folds)]
    for p in order:
        cost = loads @ (BALANCE_WEIGHTS * shares[p])
        f = min(range(n_folds), key=lambda k: (round(float(cost[k]), 12), len(folds[k]), k))
        loads[f] += shares[p]
        folds[f].append(p)
    return folds


def stratified_validation(
    records: Sequence[str],
    class_counts: Mapping[str, Mapping[str, int]] | None,
    val_fraction: float,
    seed: int = 0,
) -> tuple[list[str], list[str]]:
    """Validation patients chosen by grouped stratification on S and V counts.

    Patients (201 and 202 are one) are dealt into ``round(1 / val_fraction)`` folds by
    :func:`_balanced_folds`, and the fold whose S and V shares (then beat share) are closest
    to ``val_fraction`` becomes validation: the S- and V-rich records are spread over the
    folds, and validation holds about its share of each instead of all or none of them.
    Without class counts every share is the patient share.

    Returns:
        ``(train records, validation records)``, sorted.

    Raises:
        ValueError: fewer than 2 patients, or ``val_fraction`` outside (0, 1).
    """
    if not 0 < val_fraction < 1:
        raise ValueError(f"`val_fraction` must be in (0, 1). Received: val_fraction={val_fraction}")
    records = sorted({str(r) for r in records})
    table = _patient_table(records, class_counts)
    if len(table) < 2:
        raise ValueError(f"need at least 2 patients to hold validation out; got records {records}")
    total = np.sum(list(table.values()), axis=0)
    shares = {p: np.divide(v, total, out=np.zeros(4), where=total > 0) for p, v in table.items()}
    folds = _balanced_folds(shares, max(2, min(round(1 / val_fraction), len(table))), seed)
    folds = [f for f in folds if f]
    # A class absent from every record counts as matched (its share is the target).
    target = np.where(total > 0, val_fraction, 0.0)
    gap = [float(np.abs(np.sum([shares[p] for p in f], axis=0) - target) @ BALANCE_WEIGHTS)
           for f in folds]
    val_patients = set(folds[int(np.argmin(gap))])
    val = [r for r in records if patient_of(r) in val_patients]
    return [r for r in records if patient_of(r) not in val_patients], val


def mitdb_split(
    records: Sequence[str],
    class_counts: Mapping[str, Mapping[str, int]] | None = None,
    *,
    scheme: str = "inter_patient",
    n_folds: int = 5,
    val_fraction: float = 0.2,
    intra_test_fraction: float = 0.3,
    same_subject: str = "drop_from_test",
    seed: int = 42,
) -> Split:
    """Builds the split of the given records.

    Args:
        records: available record names (paced records are dropped for MIT-BIH).
        class_counts: per record, beats per class; used to stratify validation and folds.
        scheme: ``inter_patient`` or ``intra_patient`` (leaky).
        n_folds: folds inside the training records.
        val_fraction: share of training patients held out for validation.
        intra_test_fraction: share of each record's beats in test (intra-patient only).
        same_subject: ``drop_from_test`` or ``drop_from_train`` for the 201/202 subject.
        seed: fixes the grouped, stratified assignment.
    """
    if same_subject not in ("drop_from_test", "drop_from_train"):
        raise ValueError(
            f"unknown same_subject policy {same_subject!r}; "
            "known: ['drop_from_test', 'drop_from_train']"
        )
    records = sorted({str(r) for r in records} - set(PACED))
    if not records:
        raise ValueError("no records to split")
    if scheme == "intra_patient":
        return Split(
            scheme=scheme,
            train=tuple(records),
            val=tuple(records),
            test=tuple(records),
            folds=(),
            leaky=True,
            intra={"val_fraction": val_fraction * (1 - intra_test_fraction),
                   "test_fraction": intra_test_fraction, "seed": seed},
        )
    if scheme != "inter_patient":
        raise ValueError(f"unknown split scheme {scheme!r}; known: ['inter_patient', 'intra_patient']")
    mitdb = set(DS1) | set(DS2)
    if set(records) <= mitdb:
        train_pool = [r for r in records if r in DS1]
        test = [r for r in records if r in DS2]
        # 201 (DS1) and 202 (DS2) are one subject; the published DS1/DS2 protocol puts them on
        # both sides, which leaks a patient. One of them is dropped, as configured.
        if "201" in train_pool and "202" in test:
            if same_subject == "drop_from_test":
                test.remove("202")
            else:
                train_pool.remove("201")
    else:
        n_test = max(1, round(len({patient_of(r) for r in records}) * 0.3))
        folds = _grouped_folds(records, class_counts, max(2, round(len(records) / n_test)), seed)
        train_pool, test = folds[0]
    if not train_pool or not test:
        raise ValueError(f"inter-patient split needs training and test records; got {records}")
    if 0 < val_fraction < 1 and len({patient_of(r) for r in train_pool}) >= 2:
        train, val = stratified_validation(train_pool, class_counts, val_fraction, seed)
    else:
        train, val = list(train_pool), []
    folds = (
        _grouped_folds(train_pool, class_counts, n_folds, seed)
        if len({patient_of(r) for r in train_pool}) >= 2
        else []
    )
    return Split(
        scheme=scheme,
        train=tuple(sorted(train)),
        val=tuple(sorted(val)),
        test=tuple(sorted(test)),
        folds=tuple((tuple(a), tuple(b)) for a, b in folds),
    )


def check_no_patient_overlap(split: Split) -> None:
    """Raises when a patient appears in two parts of a non-leaky split."""
    if split.leaky:
        return
    parts = {"train": split.train, "val": split.val, "test": split.test}
    seen: dict[str, str] = {}
    for name, recs in parts.items():
        for r in recs:
            p = patient_of(r)
            if p in seen and seen[p] != name:
                raise AssertionError(f"patient {p} (record {r}) is in both {seen[p]} and {name}")
            seen[p] = name
    for i, (tr, va) in enumerate(split.folds):
        overlap = {patient_of(r) for r in tr} & {patient_of(r) for r in va}
        if overlap:
            raise AssertionError(f"fold {i}: patients {sorted(overlap)} in train and val")


def ptbxl_split() -> dict[str, tuple[int, ...]]:
    return {"train": PTBXL_TRAIN_FOLDS, "val": PTBXL_VAL_FOLDS, "test": PTBXL_TEST_FOLDS}


def intra_assignment(n: int, record: str, intra: Mapping[str, float]) -> np.ndarray:
    """Deterministic beat-level part (0 train, 1 val, 2 test) for an intra-patient split."""
    import zlib

    rng = np.random.default_rng([int(intra["seed"]), zlib.crc32(record.encode())])
    u = rng.random(n)
    out = np.zeros(n, np.int8)
    out[u < intra["test_fraction"] + intra["val_fraction"]] = 1
    out[u < intra["test_fraction"]] = 2
    return out


def validation_split(
    records: Sequence[str],
    class_counts: Mapping[str, Mapping[str, int]] | None,
    val_fraction: float,
    seed: int,
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Holds validation patients out of ``records`` (:func:`stratified_validation` on S and V
    counts; ``val_fraction`` outside (0, 1) is taken as 0.5).

    Used inside a k-fold fold's training part, so that stopping and checkpoint choice never
    see the fold's held-out records. Returns ``(train, val)``, sorted; raises ``ValueError``
    when ``records`` hold fewer than 2 patients.
    """
    fraction = val_fraction if 0 < val_fraction < 1 else 0.5
    train, val = stratified_validation(records, class_counts, fraction, seed)
    return tuple(sorted(train)), tuple(sorted(val))
