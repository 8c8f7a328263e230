"""Classifier builders, one module per model; importing this package registers them all.

Each module registers ``build(input_shape, n_outputs, *, ..., output_activation="softmax")``
under its file name with its ``search_space(hp)``. 1-D models (``input_kind="any1d"``) take
``(n_samples, n_leads)``: MIT-BIH segments ``(720, 1)`` at 360 Hz or PTB-XL records
``(1000, 12)`` at 100 Hz. The conformer (and its presets) takes beat-scalogram sequences
``(n_beats, n_scales, n_time, 1)``. Every builder also takes ``n_rr_features`` (default 0):
when > 0 the model takes ``{"ecg": ..., "rr": (n_rr_features,)}`` and the RR vector joins the
head. A model module writes only its body (input tensor -> pooled features) and declares its
argument bundles; :mod:`models.classifiers.builder` wraps it in the frame every classifier
shares (checked input shape and task arguments, inputs, head, name, registration). The shared
pieces (conv stack, head, the RR hook, the bundles and their search spaces) are in
:mod:`models.classifiers.blocks`; argument checks in :mod:`models.checks`.
"""

from models.classifiers import (  # noqa: F401  (imported to register)
    bilstm,
    bircnn,
    cnn,
    cnn_lstm,
    conformer,
    deepecgnet,
    ecgnet,
    ldcnn,
    liteecgnet,
    resnet1d,
    se_ecgnet,
)
