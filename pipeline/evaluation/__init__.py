"""Evaluation: classifier and denoiser metrics, classic filters, model evaluation over a
dataset, and plots. Imports core and data only.
"""
