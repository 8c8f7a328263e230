"""Devices and processes: the ``tf.distribute`` strategy of ``train.distribution``, seeds and
op determinism, and who writes under multi-worker training (the chief; workers write into
temporary folders that they delete).

MultiWorkerMirroredStrategy must exist before TensorFlow runs its first operation, so the
trainer creates the strategy first (before normalization, datasets or the model) and
decides who is chief from ``TF_CONFIG`` alone, without TensorFlow. Keras 3 cannot ``fit``
under it; :mod:`pipeline.training.distributed_loop` trains there instead.
"""

from __future__ import annotations

import json
import os
from typing import Any

from pipeline.core.config import PipelineConfig
from pipeline.core.io_utils import PipelineError

KNOWN = ("default", "mirrored", "multi_worker")


def set_determinism(cfg: PipelineConfig) -> None:
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(cfg.train.seed)
    if cfg.train.deterministic:
        tf.config.experimental.enable_op_determinism()


def cluster_role(cfg: PipelineConfig) -> tuple[str, int]:
    """``(task type, index)`` of this process (``("chief", 0)`` unless multi-worker).

    Under ``multi_worker`` the chief is the ``chief`` task, or worker 0 when the cluster
    names no chief (TensorFlow's rule). Read from ``TF_CONFIG``; no TensorFlow op runs.
    """
    if cfg.train.distribution != "multi_worker":
        return "chief", 0
    raw = os.environ.get("TF_CONFIG", "")
    if not raw:
        raise PipelineError("train.distribution=multi_worker needs TF_CONFIG set on every worker")
    try:
        tf_config = json.loads(raw)
        task = tf_config["task"]
        kind, index = str(task["type"]), int(task["index"])
        cluster = dict(tf_config["cluster"])
    except (ValueError, KeyError, TypeError) as exc:
        raise PipelineError(f"TF_CONFIG is not a valid cluster description ({exc})") from None
    if kind not in ("chief", "worker"):
        raise PipelineError(f"TF_CONFIG task type {kind!r}: multi-worker training runs chief "
                            "and worker tasks only")
    members = cluster.get(kind)
    if not isinstance(members, list) or not 0 <= index < len(members):
        size = len(members) if isinstance(members, list) else 0
        raise PipelineError(f"TF_CONFIG task {kind} {index} is not in its cluster "
                            f"({size} {kind} address(es))")
    if kind == "worker" and index == 0 and "chief" not in cluster:
        return "chief", 0
    return kind, index


def is_chief(cfg: PipelineConfig) -> bool:
    return cluster_role(cfg)[0] == "chief"


def get_strategy(cfg: PipelineConfig) -> Any:
    """The configured ``tf.distribute`` strategy (one device by default)."""
    import tensorflow as tf

    d = cfg.train.distribution
    if d not in KNOWN:
        raise PipelineError(f"unknown train.distribution {d!r}; known: {', '.join(KNOWN)}")
    if d == "multi_worker":
        cluster_role(cfg)  # TF_CONFIG checked first
        return tf.distribute.MultiWorkerMirroredStrategy()
    if d == "mirrored":
        # GPUs when there are any; otherwise every logical CPU device (e.g. two in tests).
        devices = [x.name for x in tf.config.list_logical_devices("GPU")] or [
            x.name for x in tf.config.list_logical_devices("CPU")]
        return tf.distribute.MirroredStrategy(devices=devices)
    return tf.distribute.get_strategy()


def distribute_options(ds: Any, cfg: PipelineConfig) -> Any:
    """Multi-worker: shard the training stream by data (each worker keeps every N-th batch),
    since a split may hold fewer files than there are workers."""
    if cfg.train.distribution != "multi_worker":
        return ds
    import tensorflow as tf

    opts = tf.data.Options()
    opts.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return ds.with_options(opts)
