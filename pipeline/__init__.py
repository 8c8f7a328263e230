"""Staged ECG pipeline: download, windows, scalograms, TFRecords, training and evaluation.

Each stage is ``python -m pipeline.<stage> [--config ...] [--force]``; ``python -m pipeline``
lists them. Importing the package does no work: the one thing it sets up is a finder that
filters TensorFlow's start-up notices from the first ``import tensorflow``
(:mod:`pipeline.core.quiet_tf`; nothing is imported or read until then).
"""

from pipeline.core import quiet_tf as _quiet_tf

_quiet_tf.install()
