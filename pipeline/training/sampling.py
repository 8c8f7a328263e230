"""What each epoch trains on: fixed validation subsets, a fresh random subset of every
training record per epoch, class weights, the per-class limit and the per-window SNR weights
of denoising.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from pipeline.core.config import PipelineConfig
from pipeline.core.io_utils import PipelineError, read_json


def manifest_counts(cfg: PipelineConfig, kind: str) -> tuple[dict[str, int], dict[str, int]]:
    """Per TFRecord file: stored examples, and those evaluation uses (denoising: the windows
    on the evaluation grid; otherwise all)."""
    from pipeline.data.paths import tfrecord_dir

    folder = tfrecord_dir(cfg, kind)
    m = read_json(folder / "manifest.json", "TFRecord manifest")
    sizes = {str(folder / e["file"]): int(e["examples"]) for e in m["files"]}
    used = {str(folder / e["file"]): int(e.get("eval_windows", e["examples"]))
            if kind == "denoise" else int(e["examples"]) for e in m["files"]}
    return sizes, used


def keep_masks(files: Sequence[str], sizes: Mapping[str, int], fraction: float, seed: int,
               base: Mapping[str, np.ndarray] | None) -> dict[str, np.ndarray]:
    """Each stored example kept with probability ``fraction`` (and only where ``base`` is)."""
    rng = np.random.default_rng(seed)
    out = {}
    for f in files:
        keep = rng.random(sizes[f]) < fraction
        if base is not None:
            keep &= np.asarray(base[f], bool)
        out[f] = keep
    return out


def subsample_masks(files: Sequence[str], cfg: PipelineConfig, kind: str, n_wanted: int,
                    seed: int, base: Mapping[str, np.ndarray] | None = None) -> dict[str, np.ndarray] | None:
    """Fixed random masks keeping about ``n_wanted`` stored examples over ``files``."""
    if n_wanted <= 0:
        return dict(base) if base is not None else None
    sizes, used = manifest_counts(cfg, kind)
    frac = min(1.0, n_wanted / max(1, sum(used[f] for f in files)))
    return keep_masks(files, sizes, frac, seed, base)


def stored_counts(cfg: PipelineConfig, kind: str) -> dict[str, int]:
    """Stored examples per TFRecord file of ``kind`` (from its manifest)."""
    return manifest_counts(cfg, kind)[0]


def epoch_masks(files: Sequence[str], sizes: Mapping[str, int], fraction: float, seed: int,
                base: Mapping[str, np.ndarray] | None = None) -> dict[str, np.ndarray] | None:
    """Masks keeping each stored training example with probability ``fraction``
    (``sizes``: ``stored_counts``, read once per run).

    A fresh draw per epoch (``seed``) spreads an epoch of ``train.examples_per_epoch``
    examples over *every* training record. Without it an epoch would be the first examples
    of the shuffled stream, i.e. a handful of records (for denoising, the overlapping windows
    of a few minutes of a few patients).
    """
    if fraction >= 1.0:
        return dict(base) if base is not None else None
    return keep_masks(files, sizes, fraction, seed, base)


def class_weights(y: np.ndarray, n_classes: int, power: float = 1.0, max_weight: float = 100.0) -> dict[int, float]:
    """Inverse-frequency weights ``(n / (K * n_c)) ** power``, capped at ``max_weight``.

    ``power=1`` is scikit-learn's "balanced"; ``power=0.5`` ("sqrt") tempers the weight of
    very rare classes (MIT-BIH DS1 has 8 Q beats among 51,000). Classes absent from the
    training data get weight 0.
    """
    counts = np.bincount(y.astype(int), minlength=n_classes).astype(float)
    present = counts > 0
    w = np.zeros(n_classes)
    w[present] = np.minimum(max_weight, (counts.sum() / (present.sum() * counts[present])) ** power)
    return {i: float(v) for i, v in enumerate(w)}


def class_weights_for(y: np.ndarray, n_classes: int, weighting: str) -> dict[int, float] | None:
    """``train.class_weighting`` applied to training labels ``y`` (None: no weights)."""
    if weighting in ("balanced", "sqrt"):
        return class_weights(y, n_classes, power=1.0 if weighting == "balanced" else 0.5)
    if weighting not in ("none", "focal"):
        raise PipelineError(f"unknown train.class_weighting {weighting!r}; "
                            "known: none, balanced, sqrt, focal")
    return None


def snr_weights(noisy: Any, clean: Any) -> Any:
    """Per-window weight 1 / max(noise power / clean power, 1e-3) (see train.denoise_weighting)."""
    import tensorflow as tf

    p_noise = tf.reduce_sum(tf.square(noisy - clean), axis=[1, 2])
    p_clean = tf.reduce_sum(tf.square(clean), axis=[1, 2])
    rel = tf.math.divide_no_nan(p_noise, p_clean)
    return noisy, clean, 1.0 / tf.maximum(rel, 1e-3)


def limit_per_class(ds: Any, keep_prob: np.ndarray, batch_size: int, seed: int) -> Any:
    """Drops examples of frequent classes at random so each class stays near its limit."""
    import tensorflow as tf

    probs = tf.constant(keep_prob)

    def keep(x: Any, y: Any) -> Any:
        p = tf.gather(probs, tf.argmax(y, axis=-1))
        return tf.random.uniform([], seed=seed) < p

    return ds.unbatch().filter(keep).batch(batch_size)
