"""Train-split normalization: streaming per-channel mean and standard deviation.

Statistics are accumulated in one pass over the *training files only* with Chan et al.'s
parallel update of (count, mean, M2) in float64, saved as JSON with the run and applied by the
loader to training, validation and test data alike. Channels: the single lead of segments,
each scale row of scalograms, each lead of denoising windows and PTB-XL records.

For beats every stored beat counts once (not once per sequence it appears in); for denoising
windows each sample counts once (the non-overlapping evaluation grid).

Tasks with the rhythm side input (``Task.rhythm``) also z-score the rhythm vector, each
feature with its own mean and scale over the training examples (one value per stored beat or
segment). The saved ``mean`` and ``scale`` then hold the signal channels first and one entry
per rhythm feature after them, and the file names the features (``rr_features``), so
:func:`load` knows its length from the file itself and the loader splits the two parts.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np

from pipeline.core.config import PipelineConfig
from pipeline.core.io_utils import PipelineError, atomic_write_json, read_json
from pipeline.data import schema

MIN_SCALE = 1e-6


@dataclasses.dataclass
class RunningStats:
    """Per-channel running count, mean and sum of squared deviations (float64)."""

    n_channels: int
    count: float = 0.0
    mean: np.ndarray | None = None
    m2: np.ndarray | None = None

    def update(self, x: np.ndarray, channel_axis: int) -> None:
        """Adds a block of values; ``channel_axis`` indexes the channels in ``x``."""
        x = np.moveaxis(np.asarray(x, np.float64), channel_axis, -1).reshape(-1, self.n_channels)
        n_b = x.shape[0]
        if n_b == 0:
            return
        mean_b = x.mean(axis=0)
        m2_b = ((x - mean_b) ** 2).sum(axis=0)
        if self.mean is None:
            self.count, self.mean, self.m2 = float(n_b), mean_b, m2_b
            return
        n = self.count + n_b
        delta = mean_b - self.mean
        self.mean = self.mean + delta * (n_b / n)
        self.m2 = self.m2 + m2_b + delta**2 * (self.count * n_b / n)
        self.count = n

    @property
    def std(self) -> np.ndarray:
        if self.mean is None or self.count < 1:
            raise PipelineError("normalization: no training values to fit statistics on")
        return np.sqrt(self.m2 / self.count)


def _batches(files: Sequence[str], kind: str,
             include: Mapping[str, np.ndarray] | None = None) -> Iterable[tuple[str, schema.Batch]]:
    """Yields (file, stored batch) for every stored batch, decoded with NumPy (``include``:
    per file, a mask over its stored examples; only those are kept)."""
    import tensorflow as tf

    for f in files:
        offset = 0
        try:
            for ser in tf.data.TFRecordDataset(f):
                b = schema.decode(ser.numpy(), where=f)
                n = len(b.index)
                if include is not None:
                    keep = np.asarray(include[f], bool)[offset : offset + n]
                    offset += n
                    b = _subset(b, keep, kind)
                yield f, b
        except tf.errors.OpError as exc:
            raise PipelineError(f"{f}: damaged TFRecord file ({exc.message.splitlines()[0]})") from exc
        except schema.SchemaError as exc:
            raise PipelineError(str(exc)) from exc


def _signal_values(b: schema.Batch, kind: str, rr: bool) -> tuple[np.ndarray, int] | None:
    """(values, channel_axis) of one stored batch's signal, or None when it holds none."""
    if kind == "denoise":
        W = b.frame_length
        starts = b.index[b.eval_grid.astype(bool)]
        return (np.stack([b.x[s : s + W] for s in starts]), -1) if len(starts) else None
    if kind == "beats":
        return b.x, 1  # (n, scales, time): one channel per scale row
    if kind == "segments" and rr:
        return schema.with_rr_channels(b.x, b.aux), -1
    if kind == "segments":
        return b.x[..., None], -1
    return b.x, -1


def rhythm_part(aux: np.ndarray, n_features: int, where: str) -> np.ndarray:
    """The stored rhythm features of ``aux`` ``(n, 3 + n_features)`` (after the three RR values).

    Raises:
        PipelineError: ``aux`` has another width (files of another rhythm variant).
    """
    aux = np.asarray(aux, np.float32)
    want = len(schema.RR_AUX) + n_features
    if aux.ndim != 2 or aux.shape[1] != want:
        raise PipelineError(f"{where}: aux holds {aux.shape[-1] if aux.ndim else 0} values per "
                            f"example, the rhythm input needs {want} (3 RR values + "
                            f"{n_features} rhythm features); rerun `python -m pipeline.tfrecords "
                            "--force`")
    return aux[:, len(schema.RR_AUX):]


def _subset(b: schema.Batch, keep: np.ndarray, kind: str) -> schema.Batch:
    """The examples of a stored batch that ``keep`` selects (denoising: windows of the chunk)."""
    names = ("index", "eval_grid") if kind == "denoise" else ("x", "y", "aux", "index")
    n = len(b.index)
    return dataclasses.replace(b, **{k: getattr(b, k)[keep] for k in names
                                     if getattr(b, k) is not None and len(getattr(b, k)) == n})


def n_channels(kind: str, cfg: PipelineConfig, rr: bool = False, rhythm: bool = False) -> int:
    """Channels normalized separately (``rr``: segments with the three RR channels;
    ``rhythm``: plus one per rhythm feature of the side input)."""
    shape = schema.example_shape(kind, cfg)
    extra = len(schema.rhythm_names(cfg)) if rhythm else 0
    if kind == "segments":
        return 1 + (len(schema.RR_FEATURES) if rr else 0) + extra
    return (shape[0] if kind == "beats" else shape[-1]) + extra


def fit(train_files: Sequence[str], cfg: PipelineConfig, kind: str, rr: bool = False,
        include: Mapping[str, np.ndarray] | None = None, rhythm: bool = False) -> dict:
    """Fits per-channel mean and scale on the training files of one kind (``include``: only
    the masked examples, e.g. the training beats of an intra-patient split; ``rhythm``: the
    rhythm features too, appended after the signal channels, see the module doc)."""
    rs = RunningStats(n_channels(kind, cfg, rr))
    names = schema.rhythm_names(cfg) if rhythm else ()
    rs_rr = RunningStats(len(names))
    for f, b in _batches(list(train_files), kind, include):
        values = _signal_values(b, kind, rr)
        if values is not None:
            rs.update(*values)
        if rhythm:
            stored = rhythm_part(b.aux, len(schema.stored_rhythm_names(cfg)), f)
            rs_rr.update(schema.select_rhythm(cfg, stored), -1)
    mean, std = rs.mean, rs.std
    extra: dict = {}
    if rhythm:
        mean, std = np.concatenate([mean, rs_rr.mean]), np.concatenate([std, rs_rr.std])
        extra = {"rr_features": list(names), "rr_count": int(rs_rr.count)}
    scale = np.where(std < MIN_SCALE, 1.0, std)
    return {
        "kind": kind,
        "mean": mean.tolist(),
        "scale": scale.tolist(),
        "count_per_channel": int(rs.count),
        "train_files": [Path(f).name for f in train_files],
        **extra,
    }


def save(stats: dict, path: Path) -> None:
    atomic_write_json(path, stats)


def load(path: Path, kind: str | None = None, n_ch: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Loads saved statistics, validating them (a damaged file raises, naming it).

    ``n_ch``: the signal channels expected; statistics with the rhythm features
    (``rr_features`` in the file) hold one more entry per feature after them.
    """
    d = read_json(path, "normalization statistics")
    try:
        mean = np.asarray(d["mean"], np.float64)
        scale = np.asarray(d["scale"], np.float64)
        n_rr = len(d.get("rr_features") or ()) if isinstance(d, dict) else 0
    except (KeyError, TypeError, ValueError, OverflowError) as exc:
        raise PipelineError(f"{path}: normalization statistics lack mean/scale ({exc})") from exc
    n_ch = None if n_ch is None else n_ch + n_rr
    if kind is not None and d.get("kind") != kind:
        raise PipelineError(f"{path}: statistics are for {d.get('kind')!r}, not {kind!r}")
    if mean.ndim != 1 or not len(mean) or mean.shape != scale.shape or (n_ch is not None and len(mean) != n_ch):
        raise PipelineError(f"{path}: statistics have shape {mean.shape}/{scale.shape}, expected ({n_ch},)")
    if not (np.isfinite(mean).all() and np.isfinite(scale).all() and (scale > 0).all()):
        raise PipelineError(f"{path}: statistics contain non-finite or non-positive values")
    return mean, scale
