"""``bilstm``: two stacked bidirectional LSTMs over the raw ECG, for PTB-XL records."""

from __future__ import annotations

from keras import layers

from models.checks import CLASSIFIER as check
from models.classifiers import blocks
from models.classifiers.builder import classifier

HEAD = blocks.Head(dense_units=64, dropout=0.3)


def search_space(hp):
    """Builder kwargs sampled from ``hp``; ``HyperParameters()`` gives the builder defaults.
    Every stacked layer gets the same width."""
    units = hp.Choice("units", [64, 128], default=128)
    return {"units": (units, units), **blocks.head_space(hp, HEAD, dense_choices=(32, 64, 128))}


@classifier("bilstm", search_space, head=HEAD)
def build(ecg, *, units=(128, 128)):
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
    """
    units = check.positive_ints("units", units)
    x = ecg
    for i, u in enumerate(units, start=1):
        last = i == len(units)
        x = layers.Bidirectional(
            layers.LSTM(u, return_sequences=not last, name=f"lstm{i}"), name=f"bilstm{i}"
        )(x)
    return x
