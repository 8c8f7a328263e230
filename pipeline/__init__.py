"""Staged ECG pipeline: download, windows, scalograms, TFRecords, training and evaluation.

Each stage is ``python -m pipeline.<stage> [--config ...] [--force]``; modules do nothing at
import time.
"""
