"""Train-split normalization: streaming per-channel mean and standard deviation.

Statistics are accumulated in one pass over the *training files only* with Chan et al.'s
parallel update of (count, mean, M2) in float64, saved as JSON with the run and applied by the
loader to training, validation and test data alike. Channels: the single lead of segments,
each scale row of scalograms, each lead of denoising windows and PTB-XL records.

For beats every stored beat counts once (not once per sequence it appears in); for denoising
windows each sample counts once (the non-overlapping evaluation grid).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np

from pipeline.data import schema
from pipeline.core.config import PipelineConfig
from pipeline.core.io_utils import PipelineError, atomic_write_json, read_json

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


def _blocks(files: Sequence[str], kind: str, rr: bool = False,
            include: Mapping[str, np.ndarray] | None = None) -> Iterable[tuple[np.ndarray, int]]:
    """Yields (values, channel_axis) per stored batch, decoding with NumPy (``include``: per
    file, a mask over its stored examples; only those count)."""
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
                if kind == "denoise":
                    W = b.frame_length
                    starts = b.index[b.eval_grid.astype(bool)]
                    if len(starts):
                        yield np.stack([b.x[s : s + W] for s in starts]), -1
                elif kind == "beats":
                    yield b.x, 1  # (n, scales, time): one channel per scale row
                elif kind == "segments" and rr:
                    yield schema.with_rr_channels(b.x, b.aux), -1
                elif kind == "segments":
                    yield b.x[..., None], -1
                else:
                    yield b.x, -1
        except tf.errors.OpError as exc:
            raise PipelineError(f"{f}: damaged TFRecord file ({exc.message.splitlines()[0]})") from exc
        except schema.SchemaError as exc:
            raise PipelineError(str(exc)) from exc


def _subset(b: schema.Batch, keep: np.ndarray, kind: str) -> schema.Batch:
    """The examples of a stored batch that ``keep`` selects (denoising: windows of the chunk)."""
    names = ("index", "eval_grid") if kind == "denoise" else ("x", "y", "aux", "index")
    n = len(b.index)
    return dataclasses.replace(b, **{k: getattr(b, k)[keep] for k in names
                                     if getattr(b, k) is not None and len(getattr(b, k)) == n})


def n_channels(kind: str, cfg: PipelineConfig, rr: bool = False) -> int:
    """Channels normalized separately (``rr``: segments with the three RR channels)."""
    shape = schema.example_shape(kind, cfg)
    if kind == "segments":
        return 1 + (len(schema.RR_FEATURES) if rr else 0)
    return shape[0] if kind == "beats" else shape[-1]


def fit(train_files: Sequence[str], cfg: PipelineConfig, kind: str, rr: bool = False,
        include: Mapping[str, np.ndarray] | None = None) -> dict:
    """Fits per-channel mean and scale on the training files of one kind (``include``: only
    the masked examples, e.g. the training beats of an intra-patient split)."""
    rs = RunningStats(n_channels(kind, cfg, rr))
    for block, axis in _blocks(list(train_files), kind, rr, include):
        rs.update(block, axis)
    std = rs.std
    scale = np.where(std < MIN_SCALE, 1.0, std)
    return {
        "kind": kind,
        "mean": rs.mean.tolist(),
        "scale": scale.tolist(),
        "count_per_channel": int(rs.count),
        "train_files": [Path(f).name for f in train_files],
    }


def save(stats: dict, path: Path) -> None:
    atomic_write_json(path, stats)


def load(path: Path, kind: str | None = None, n_ch: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Loads saved statistics, validating them (a damaged file raises, naming it)."""
    d = read_json(path, "normalization statistics")
    try:
        mean = np.asarray(d["mean"], np.float64)
        scale = np.asarray(d["scale"], np.float64)
    except (KeyError, TypeError, ValueError, OverflowError) as exc:
        raise PipelineError(f"{path}: normalization statistics lack mean/scale ({exc})") from exc
    if kind is not None and d.get("kind") != kind:
        raise PipelineError(f"{path}: statistics are for {d.get('kind')!r}, not {kind!r}")
    if mean.ndim != 1 or not len(mean) or mean.shape != scale.shape or (n_ch is not None and len(mean) != n_ch):
        raise PipelineError(f"{path}: statistics have shape {mean.shape}/{scale.shape}, expected ({n_ch},)")
    if not (np.isfinite(mean).all() and np.isfinite(scale).all() and (scale > 0).all()):
        raise PipelineError(f"{path}: statistics contain non-finite or non-positive values")
    return mean, scale
