"""Training: the trainer, run folders, losses, Keras Tuner search and the run profiles of
``run_full_pipeline.sh``. Imports core, data and evaluation.
"""
