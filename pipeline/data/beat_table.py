"""Per-beat columns beyond the rhythm features: how a beat looks and the rhythm around it.

For each beat of one record with a 2 s segment (R at the centre): the segment's morphology
(:func:`pipeline.data.morphology.morphology_features`), the beat against the record's median
beat (:func:`pipeline.data.morphology.template_features`) and the rhythm context of the kept
beats (:func:`pipeline.data.rhythm.context_features`). The classic trees' table
(:mod:`pipeline.training.classic`), prediction with the trees and, with
``windows.beat_table: true``, the deep models' ``rr`` input all build them here, so a model
sees the same numbers in training and on a user's recording.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from pipeline.core.io_utils import PipelineError
from pipeline.data import morphology, rhythm


def extra_names(causal: bool = False, context: bool = True) -> tuple[str, ...]:
    """Names of :func:`extra_columns`, in order (``context=False``: without the trailing
    rhythm-context columns)."""
    tail = rhythm.CAUSAL_CONTEXT_FEATURE_NAMES if causal else rhythm.CONTEXT_FEATURE_NAMES
    return morphology.FEATURE_NAMES + morphology.TEMPLATE_FEATURE_NAMES + (tail if context else ())


def stored_names(causal: bool, beat_table: bool) -> tuple[str, ...]:
    """The columns the windows stage stores per beat: the rhythm features, then (with
    ``windows.beat_table``) :func:`extra_names`."""
    return rhythm.feature_names(causal) + (extra_names(causal) if beat_table else ())


def is_causal(names: Sequence[str]) -> bool:
    """Whether rhythm columns ``names`` are the causal variant (no post-RR)."""
    return "post_rr_s" not in tuple(str(n) for n in names)


def base_rhythm(rows: np.ndarray, names: Sequence[str]) -> tuple[np.ndarray, tuple[str, ...]]:
    """The rhythm-feature columns of ``rows`` (without any stored table columns)."""
    names = tuple(str(n) for n in names)
    keep = [i for i, n in enumerate(names) if n in rhythm.FEATURE_NAMES]
    return np.asarray(rows, np.float32)[:, keep], tuple(names[i] for i in keep)


def extra_columns(rhythm_rows: np.ndarray, rhythm_names: Sequence[str], segments: np.ndarray,
                  segment_fs_hz: float) -> np.ndarray:
    """:func:`extra_names` columns of one record's kept beats: ``rhythm_rows`` (in beat order,
    one per segment) and their ``segments``. The context uses the pre-RR (and post-RR)
    columns; the causal variant when the rows have no post-RR."""
    rows, names = np.asarray(rhythm_rows, np.float32), tuple(str(n) for n in rhythm_names)
    shape = morphology.morphology_features(segments, segment_fs_hz)
    if len(rows) != len(shape):
        raise PipelineError(f"{len(rows)} rhythm rows for {len(shape)} segments")
    template = morphology.template_features(segments, segment_fs_hz, morphology=shape)
    causal = is_causal(names)
    post = None if causal else rows[:, names.index("post_rr_s")]
    context = rhythm.context_features(rows[:, names.index("pre_rr_s")], post, causal=causal)
    return np.concatenate([shape, template, context], axis=1).astype(np.float32)


def beat_features(rhythm_rows: np.ndarray, rhythm_names: Sequence[str], segments: np.ndarray,
                  segment_fs_hz: float) -> tuple[np.ndarray, tuple[str, ...]]:
    """The classic trees' table of one record: the rhythm features of the kept beats, then
    :func:`extra_columns`; and the column names."""
    rows, names = base_rhythm(rhythm_rows, rhythm_names)
    extra = extra_columns(rows, names, segments, segment_fs_hz)
    return np.concatenate([rows, extra], axis=1), names + extra_names(is_causal(names))


def every_beat(rows: np.ndarray, names: Sequence[str], keep: np.ndarray, segments: np.ndarray,
               segment_fs_hz: float) -> np.ndarray:
    """``rows`` (the rhythm features of EVERY beat of one record) with :func:`extra_columns`
    appended: the kept beats' (``keep``: their positions, ``segments``: theirs) computed, every
    other beat (no segment: too near an edge) given the kept beats' column medians (zeros for
    a record without any)."""
    rows = np.asarray(rows, np.float32)
    n_extra = len(extra_names(is_causal(names)))
    out = np.zeros((len(rows), n_extra), np.float32)
    if len(keep):
        kept = extra_columns(rows[keep], names, segments, segment_fs_hz)
        out[:] = np.median(kept, axis=0)
        out[keep] = kept
    return np.concatenate([rows, out], axis=1)
