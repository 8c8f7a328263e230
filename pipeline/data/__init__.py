"""Data: records and signals, labels, splits, tasks, the TFRecord schema, the stage libraries
(download, windowing, scalogram, tfrecord_writer), the tf.data loader, normalization and noise.

:mod:`.paths` says where every stage keeps its files; :mod:`.signal` holds the signal helpers
(resample, high-pass, RR features) that windowing, the TFRecord writer and predict share.

Imports only :mod:`pipeline.core` (and :mod:`models.registry`, which imports no pipeline
code, to check a model name before any data is read: :func:`.tasks.check_model`). Layer order: core -> data -> evaluation -> training ->
protocol -> serving; a package imports only those before it, and never a command module.
"""
