"""Data: records and signals, labels, splits, tasks, the TFRecord schema, the stage libraries
(download, windowing, scalogram, tfrecord_writer), the tf.data loader, normalization and noise.

Imports only :mod:`pipeline.core`. Layer order: core -> data -> evaluation -> training ->
protocol -> serving; a package imports only those before it, and never a command module.
"""
