"""Beat classification of one recording with the classic trees (a ``classic_trees`` preset).

The trees read a table, not a window: per beat, the rhythm features of all the record's
beats (:func:`pipeline.data.windowing.record_rhythm`, as the windows stage computes them),
the morphology of its 2 s segment and the beat against the record's median beat
(:func:`pipeline.data.beat_table.beat_features`, shared with the windows-stage table). The
template is the median over every segment the record yields, as in training; beats whose
segment overlaps a flat span are then left unclassified, like the deep models' beats.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from pipeline.core.config import WindowsConfig
from pipeline.data import beat_table, rhythm, windowing
from pipeline.serving.run_loader import Run
from pipeline.training import classic


def record_table(rhythm_rows: np.ndarray, lead360: np.ndarray, r360: np.ndarray,
                 wcfg: WindowsConfig, stored_names: Sequence[str] | None = None,
                 ) -> tuple[np.ndarray, np.ndarray, list[tuple[int, str]]]:
    """(beat-table rows of the kept segments, their beat positions, skipped beats + reasons)
    from the record's rhythm features of every beat (``windowing.record_rhythm``).

    ``stored_names``: the columns the trees were fitted on. Columns added to the table since
    come after them and are not read, so older trees keep working; any other difference is
    refused."""
    segs, keep, skipped = windowing.cut_segments(lead360, r360, wcfg)
    x, names = beat_table.beat_features(rhythm_rows[keep], rhythm.feature_names(wcfg.rhythm_causal),
                                        segs, wcfg.segment_fs_hz)
    if stored_names is not None:
        classic.check_table_prefix(tuple(stored_names), names, "the trees' stored features")
    return x, keep, skipped


def classify(run: Run, rhythm_rows: np.ndarray, lead360: np.ndarray, r360: np.ndarray,
             reason: list[str], bad360: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(probabilities, beat positions) of the beats the trees classify; ``reason`` gets why
    the others are not."""
    from pipeline.serving.predict_beats import segment_reasons

    wcfg = run.cfg.windows
    x, keep, skipped = record_table(rhythm_rows, lead360, r360, wcfg, run.model.feature_names)
    flat = segment_reasons(wcfg, r360, keep, skipped, bad360, reason)
    return run.model.probabilities(x[~flat]), keep[~flat]
