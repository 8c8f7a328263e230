"""Keras model builders for ECG denoising and classification, looked up by name.

Importing :mod:`models` registers nothing by itself; :func:`models.registry.get` imports the
builder modules on first use, so nothing heavy happens at import time.
"""
