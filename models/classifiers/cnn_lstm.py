"""``cnn_lstm``: conv feature extractor followed by a bidirectional LSTM, for PTB-XL."""

from __future__ import annotations

from keras import layers

from models.checks import CLASSIFIER as check
from models.classifiers import blocks
from models.classifiers.builder import classifier

CONV = blocks.ConvStack(filters=(64, 128, 128), kernel_size=5, pool_size=2)
HEAD = blocks.Head(dense_units=64, dropout=0.3)


def search_space(hp):
    """Builder kwargs sampled from ``hp``; ``HyperParameters()`` gives the builder defaults."""
    return dict(
        **blocks.conv_space(hp, CONV, bases=(32, 64), kernel_sizes=(3, 5, 7)),
        lstm_units=hp.Choice("lstm_units", [64, 128], default=128),
        **blocks.head_space(hp, HEAD, dense_choices=(32, 64, 128)),
    )


@classifier("cnn_lstm", search_space, head=HEAD, conv=CONV)
def build(ecg, conv, *, lstm_units=128):
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
    """
    lstm_units = check.positive_int("lstm_units", lstm_units)
    x = conv(ecg)
    return layers.Bidirectional(layers.LSTM(lstm_units, name="lstm"), name="bilstm")(x)
