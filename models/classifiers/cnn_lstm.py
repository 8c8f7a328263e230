"""``cnn_lstm``: conv feature extractor followed by a bidirectional LSTM, for PTB-XL."""

from __future__ import annotations

import keras
from keras import layers

from models.checks import CLASSIFIER as check
from models.classifiers import blocks
from models.registry import register

NAME = "cnn_lstm"


def search_space(hp):
    """Builder kwargs sampled from ``hp``; ``HyperParameters()`` gives the builder defaults."""
    base = hp.Choice("filters_base", [32, 64], default=64)
    return dict(
        filters=(base, 2 * base, 2 * base),
        kernel_size=hp.Choice("kernel_size", [3, 5, 7], default=5),
        lstm_units=hp.Choice("lstm_units", [64, 128], default=128),
        **blocks.head_space(hp, dropout=0.3, dense_units=64),
    )


@register(NAME, kind="classifier", search_space=search_space, input_kind="any1d")
def build(
    input_shape,
    n_outputs,
    *,
    filters=(64, 128, 128),
    kernel_size=5,
    pool_size=2,
    lstm_units=128,
    dense_units=64,
    dropout=0.3,
    n_rr_features=0,
    output_activation="softmax",
) -> keras.Model:
    """CNN-LSTM: ``[Conv1D -> BN -> ReLU -> MaxPool] x 3 -> BiLSTM(128) -> Dense -> out``.

    The conv blocks learn local waveform features and shorten the sequence by
    ``pool_size ** len(filters)`` (8: 1000 -> 125 steps at 100 Hz, 720 -> 90 at 360 Hz), so
    the bidirectional LSTM models rhythm over far fewer steps than :mod:`bilstm`.
    About 0.41 M parameters on (1000, 12).

    Args:
        input_shape: ``(n_samples, n_leads)``, e.g. ``(1000, 12)`` or ``(720, 1)``.
        filters: filters of each conv block.
        kernel_size: conv kernel length in samples.
        pool_size: max-pool size after each conv block (``padding="same"``).
        lstm_units: LSTM units per direction (the layer outputs 2 x lstm_units features).
        dense_units: units of the dense layer of the head.
        dropout, n_outputs, n_rr_features, output_activation: as in :func:`blocks.classifier_io`.

    Returns:
        ``keras.Model`` named ``cnn_lstm``: ``(batch, *input_shape)`` -> ``(batch, n_outputs)``.
    """
    filters, kernel_size, pool_size = blocks.conv_stack_args(filters, kernel_size, pool_size)
    lstm_units = check.positive_int("lstm_units", lstm_units)
    io = blocks.classifier_io(
        NAME, input_shape, n_outputs, output_activation, n_rr_features, dense_units, dropout
    )

    x = blocks.conv_stack(io.ecg, filters, kernel_size, pool_size=pool_size)
    x = layers.Bidirectional(layers.LSTM(lstm_units, name="lstm"), name="bilstm")(x)
    return io.model(x)
