"""Vanilla RNN denoiser: stacked SimpleRNN layers, then a linear per-sample projection.

Architecture:
    ``ecg (samples, leads)`` -> for each width in ``units``: SimpleRNN (tanh, return
    sequences, optionally bidirectional) -> Dropout -> Dense(leads, linear) per time step.

Shapes:
    Input ``(batch, samples, leads)``, normalized amplitudes at the window rate (360 Hz for
    MIT-BIH); ``samples`` may be ``None``. Output: same shape and units.
"""

from __future__ import annotations

import keras

from models.denoisers._common import (
    check_bool,
    check_input_shape,
    check_positive_ints,
    check_rate,
    int_tuple_space,
)
from models.registry import register


def search_space(hp):
    """Builder kwargs sampled from ``hp``; an empty ``HyperParameters()`` gives the defaults."""
    return dict(
        units=int_tuple_space(hp, "units", (128, 128), [32, 64, 128, 256], max_len=4),
        dropout=hp.Float("dropout", 0.0, 0.5, step=0.1, default=0.0),
        bidirectional=hp.Boolean("bidirectional", default=False),
    )


@register("rnn", kind="denoiser", search_space=search_space, input_kind="window")
def build(input_shape, *, units=(128, 128), dropout=0.0, bidirectional=False):
    """Builds the stacked SimpleRNN denoiser.

    Args:
        input_shape: ``(samples, leads)``; ``samples`` may be ``None``.
        units: SimpleRNN widths, first layer first (per direction when bidirectional).
        dropout: Dropout rate after every recurrent layer, in ``[0, 1)``.
        bidirectional: Whether each layer reads the window both ways (non-causal).

    Returns:
        ``keras.Model`` named ``"rnn"`` mapping ``(batch, samples, leads)`` to the same shape.
    """
    _, leads = check_input_shape(input_shape, variable_length=True)
    units = check_positive_ints("units", units)
    check_rate("dropout", dropout)
    check_bool("bidirectional", bidirectional)

    inputs = keras.Input(tuple(input_shape), name="ecg")
    x = inputs
    for i, width in enumerate(units):
        layer = keras.layers.SimpleRNN(width, return_sequences=True, name=f"rnn_{i}")
        if bidirectional:
            layer = keras.layers.Bidirectional(layer, name=f"bidirectional_{i}")
        x = layer(x)
        x = keras.layers.Dropout(dropout, name=f"dropout_{i}")(x)
    outputs = keras.layers.Dense(leads, name="output")(x)
    return keras.Model(inputs, outputs, name="rnn")
