"""Serving: prediction on new recordings, export (SavedModel, TFLite, ONNX) and model cost
measurement. May import every other package.
"""
