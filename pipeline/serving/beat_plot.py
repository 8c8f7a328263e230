"""The plot predict writes for a beat classifier: the first seconds of the lead it read,
with each beat's predicted class marked (``<name>_beats.png``).

Matplotlib (Agg backend) is imported when a plot is drawn, never at import time.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pipeline.core.io_utils import atomic_path
from pipeline.serving import reader
from pipeline.serving.predict_beats import CLASS_SYMBOL, UNCLASSIFIED_SYMBOL, BeatPrediction

CLASS_COLOURS = {"N": "C0", "S": "C1", "SVEB": "C1", "V": "C3", "VEB": "C3", "F": "C4",
                 "Q": "C2", "Other": "C2"}


def plot_beats(rec: reader.Recording, pred: BeatPrediction, span_s: tuple[float, float],
               path: Path, title: str = "") -> Path:
    """Draws ``span_s`` (start, end in s) of the classified lead with the predicted classes.

    Args:
        rec: the recording predicted on (its lead ``pred.lead`` is drawn, in mV).
        pred: the per-beat results.
        span_s: seconds shown (clipped to the recording).
        path: PNG written atomically.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    j = list(rec.lead_names).index(pred.lead)
    x = reader.leads_in_mv(rec, [j])[:, 0]
    fs = rec.fs_hz
    a = max(0, int(span_s[0] * fs))
    b = min(len(x), max(a + 1, int(span_s[1] * fs)))
    fig, ax = plt.subplots(figsize=(12, 3.2))
    ax.plot(np.arange(a, b) / fs, x[a:b], color="0.35", lw=0.8)
    finite = x[a:b][np.isfinite(x[a:b])]
    lo, hi = (float(finite.min()), float(finite.max())) if len(finite) else (-1.0, 1.0)
    pad = max(hi - lo, 1e-3)
    ax.set_ylim(lo - 0.05 * pad, hi + 0.22 * pad)
    top = hi + 0.06 * pad
    hat = pred.predicted
    seen = set()
    for i, s in enumerate(pred.sample):
        if not a <= s < b:
            continue
        cls = pred.classes[hat[i]] if hat[i] >= 0 else None
        colour = CLASS_COLOURS.get(cls, "0.6") if cls else "0.6"
        label = (f"{cls} ({CLASS_SYMBOL[cls]})" if cls else f"unclassified ({UNCLASSIFIED_SYMBOL})")
        ax.axvline(s / fs, color=colour, lw=0.6, alpha=0.5,
                   label=label if label not in seen else None)
        seen.add(label)
        ax.text(s / fs, top, cls or UNCLASSIFIED_SYMBOL, color=colour, ha="center",
                va="bottom", fontsize=8, fontweight="bold")
    ax.set_xlabel("time (s)")
    ax.set_ylabel(f"{pred.lead} (mV)")
    ax.grid(alpha=0.3)
    if seen:
        ax.legend(loc="lower right", fontsize=7, ncol=min(5, len(seen)))
    ax.set_title(title or f"{rec.name}: predicted beat classes", fontsize=10)
    fig.tight_layout()
    with atomic_path(path, suffix=".tmp.png") as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    return path
