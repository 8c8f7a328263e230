"""Where every stage keeps its files under the data folder, in one place.

``<data_dir>/raw/<db>`` (download), ``windows/<db>`` (windows), ``scalograms/<db>``
(scalograms), ``tfrecords/<kind>`` (tfrecords), and the TFRecord shard names
``<record>-00000-of-00001.tfrecord``. Every module that reads or writes a stage's files asks
here, so a layout change is one edit.
"""

from __future__ import annotations

from pathlib import Path

from pipeline.core.config import PipelineConfig


def raw_dir(cfg: PipelineConfig, db: str) -> Path:
    """Downloaded records of a database: ``<data_dir>/raw/<db>``."""
    return cfg.data_dir / "raw" / db


def windows_dir(cfg: PipelineConfig, db: str) -> Path:
    """Windows stage output: ``<data_dir>/windows/<db>``."""
    return cfg.data_dir / "windows" / db


def scalogram_dir(cfg: PipelineConfig, db: str = "mitdb") -> Path:
    """Scalogram stage output: ``<data_dir>/scalograms/<db>``."""
    return cfg.data_dir / "scalograms" / db


def tfrecord_dir(cfg: PipelineConfig, kind: str) -> Path:
    """TFRecord files of one kind: ``<data_dir>/tfrecords/<kind>``."""
    return cfg.data_dir / "tfrecords" / kind


def shard_name(record: str, shard: int = 0, n_shards: int = 1) -> str:
    """``<record>-<shard:05d>-of-<n_shards:05d>.tfrecord`` (tensorflow/models' shard names)."""
    return f"{record}-{shard:05d}-of-{n_shards:05d}.tfrecord"


def external_name(folder: str | Path) -> str:
    """The label of a folder of outside records (its name): ``final_eval --external DIR``
    scores a run into ``RUN/external_<label>/``."""
    return Path(folder).resolve().name
