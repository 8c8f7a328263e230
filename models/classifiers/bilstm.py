"""``bilstm``: two stacked bidirectional LSTMs over the raw ECG, for PTB-XL records."""

from __future__ import annotations

import keras
from keras import layers

from models.checks import CLASSIFIER as check
from models.classifiers import blocks
from models.registry import register

NAME = "bilstm"


def search_space(hp):
    """Builder kwargs sampled from ``hp``; ``HyperParameters()`` gives the builder defaults."""
    units = hp.Choice("units", [64, 128], default=128)
    return dict(
        units=(units, units),
        **blocks.head_space(hp, dropout=0.3, dense_units=64),
    )


@register(NAME, kind="classifier", search_space=search_space, input_kind="any1d")
def build(
    input_shape,
    n_outputs,
    *,
    units=(128, 128),
    dense_units=64,
    dropout=0.3,
    n_rr_features=0,
    output_activation="softmax",
) -> keras.Model:
    """Stacked BiLSTM: ``BiLSTM(128, seq) -> BiLSTM(128, last) -> Dense -> Dropout -> out``.

    Each recurrent layer reads the sequence in both directions and concatenates the two
    states (2 x units features). All but the last return the full sequence; the last returns
    its final states. No recurrent dropout, so the cuDNN kernel is used on GPU. Runs over
    every sample (1000 steps for a 10 s PTB-XL record at 100 Hz), so it is the slowest of
    the 1-D models; about 0.55 M parameters on (1000, 12).

    Args:
        input_shape: ``(n_samples, n_leads)``, e.g. ``(1000, 12)`` or ``(720, 1)``.
        units: LSTM units per direction, one entry per stacked layer.
        dense_units: units of the dense layer of the head.
        dropout, n_outputs, n_rr_features, output_activation: as in :func:`blocks.classifier_io`.

    Returns:
        ``keras.Model`` named ``bilstm``: ``(batch, *input_shape)`` -> ``(batch, n_outputs)``.
    """
    units = check.positive_ints("units", units)
    io = blocks.classifier_io(
        NAME, input_shape, n_outputs, output_activation, n_rr_features, dense_units, dropout
    )

    x = io.ecg
    for i, u in enumerate(units, start=1):
        last = i == len(units)
        x = layers.Bidirectional(
            layers.LSTM(u, return_sequences=not last, name=f"lstm{i}"), name=f"bilstm{i}"
        )(x)
    return io.model(x)
