"""The per-beat file of a denoise-then-classify evaluation and the metrics of each condition.

``predictions_noisy.csv.gz`` (:func:`predictions_csv`): one row per beat and condition, with
columns ``condition, denoised, record, sample, label, p_<class>...``; gzip with a zero mtime,
so the same predictions give the same bytes. :func:`condition_metrics` is what both the
evaluation (:mod:`pipeline.serving.noisy_beats`) and the recomputation
(:mod:`pipeline.evaluation.recompute`) run on it.
"""

from __future__ import annotations

import gzip
import io
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

PREDICTIONS_FILE = "predictions_noisy.csv.gz"


def predictions_csv(rows: Sequence[Any], classes: Sequence[str]) -> bytes:
    """Every beat of every condition (``rows``: objects with ``condition``, ``denoised``,
    ``record``, ``sample``, ``y``, ``probs``), gzip-compressed with a zero mtime."""
    buf = io.StringIO()
    buf.write("condition,denoised,record,sample,label," + ",".join(f"p_{c}" for c in classes) + "\n")
    for r in rows:
        for s, y, p in zip(r.sample, r.y, r.probs, strict=True):
            buf.write(f"{r.condition},{int(r.denoised)},{r.record},{int(s)},{classes[int(y)]},"
                      + ",".join(f"{v:.4f}" for v in p) + "\n")
    out = io.BytesIO()
    with gzip.GzipFile(fileobj=out, mode="wb", mtime=0, filename="") as gz:
        gz.write(buf.getvalue().encode("utf-8"))
    return out.getvalue()


def read_predictions(source: Path | bytes) -> dict[tuple[str, bool], dict[str, np.ndarray]]:
    """``{(condition, denoised): {"record", "y", "probs"}}`` from :data:`PREDICTIONS_FILE`
    (a path, or its bytes), in the file's order."""
    raw = source if isinstance(source, bytes) else Path(source).read_bytes()
    with gzip.open(io.BytesIO(raw), "rt", encoding="utf-8") as f:
        header = f.readline().rstrip("\n").split(",")
        classes = [h[2:] for h in header[5:]]
        groups: dict[tuple[str, bool], dict[str, list]] = {}
        for line in f:
            cells = line.rstrip("\n").split(",")
            g = groups.setdefault((cells[0], cells[1] == "1"), {"record": [], "y": [], "probs": []})
            g["record"].append(cells[2])
            g["y"].append(classes.index(cells[4]))
            g["probs"].append([float(v) for v in cells[5:]])
    return {k: {"record": np.asarray(v["record"]), "y": np.asarray(v["y"], np.int64),
                "probs": np.asarray(v["probs"], np.float64).reshape(-1, len(classes))}
            for k, v in groups.items()}


def condition_metrics(group: Mapping[str, np.ndarray], classes: Sequence[str], n_boot: int,
                      seed: int) -> dict[str, Any]:
    """Accuracy, macro F1, per-class Se / +P / F1 and record-bootstrap 95 % intervals of one
    condition's beats (a group of :func:`read_predictions`)."""
    from pipeline.evaluation import metrics

    y, probs = group["y"], group["probs"]
    m = metrics.single_label_metrics(y, probs, list(classes))
    ci = metrics.headline_bootstrap(y, probs, list(classes), multilabel=False, n=n_boot,
                                    seed=seed, groups=group["record"]) if n_boot else {}
    return {"metrics": m, "ci95": ci, "beats": int(len(y))}
