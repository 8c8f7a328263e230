"""``bilstm``: two stacked bidirectional LSTMs over the raw ECG, for PTB-XL records."""

from __future__ import annotations

import keras
from keras import layers

from models.classifiers import _blocks, _checks
from models.registry import register

NAME = "bilstm"


def search_space(hp):
    """Builder kwargs sampled from ``hp``; ``HyperParameters()`` gives the builder defaults."""
    units = hp.Choice("units", [64, 128], default=128)
    return dict(
        units=(units, units),
        dense_units=hp.Choice("dense_units", [32, 64, 128], default=64),
        dropout=hp.Float("dropout", 0.0, 0.5, step=0.1, default=0.3),
    )


@register(NAME, kind="classifier", search_space=search_space, input_kind="any1d")
def build(
    input_shape,
    n_outputs,
    *,
    units=(128, 128),
    dense_units=64,
    dropout=0.3,
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
        n_outputs: number of classes (softmax) or labels (sigmoid).
        units: LSTM units per direction, one entry per stacked layer.
        dense_units: units of the dense layer of the head.
        dropout: dropout rate before the output layer.
        output_activation: ``softmax`` (single-label), ``sigmoid`` (multi-label) or ``linear``.

    Returns:
        ``keras.Model`` named ``bilstm`` mapping ``(batch, *input_shape)`` to
        ``(batch, n_outputs)``.
    """
    units = _checks.positive_ints("units", units)
    dense_units = _checks.positive_int("dense_units", dense_units)
    dropout = _checks.rate("dropout", dropout)
    output_activation = _checks.output_activation(output_activation)
    n_outputs = _checks.positive_int("n_outputs", n_outputs)
    input_shape = _checks.input_1d(NAME, input_shape)

    inputs = _blocks.ecg_input(input_shape)
    x = inputs
    for i, u in enumerate(units, start=1):
        last = i == len(units)
        x = layers.Bidirectional(
            layers.LSTM(u, return_sequences=not last, name=f"lstm{i}"), name=f"bilstm{i}"
        )(x)
    outputs = _blocks.classifier_head(
        x, n_outputs, output_activation, dense_units=dense_units, dropout=dropout
    )
    return keras.Model(inputs, outputs, name=NAME)
