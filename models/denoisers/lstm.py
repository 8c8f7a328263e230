"""LSTM denoiser: stacked LSTM layers over time, then a linear per-sample projection.

Architecture:
    ``ecg (samples, leads)`` -> for each width in ``units``: LSTM (return sequences,
    optionally bidirectional) -> Dropout -> Dense(leads, linear) per time step;
    with ``output_mode`` ``residual`` or ``gated`` that projection is the predicted noise,
    subtracted from the input (:func:`models.denoisers.common.denoiser_output`).

Shapes:
    Input ``(batch, samples, leads)``, normalized amplitudes sampled at the window rate
    (360 Hz for MIT-BIH); ``samples`` may be ``None``. Output: same shape and units.
"""

from __future__ import annotations

from keras import layers

from models.denoisers.common import int_tuple_space, output_mode_space, recurrent_denoiser
from models.registry import register


def search_space(hp):
    """Builder kwargs sampled from ``hp``; an empty ``HyperParameters()`` gives the defaults."""
    return dict(
        units=int_tuple_space(hp, "units", (512, 256, 256), [32, 64, 128, 256, 512], max_len=4),
        dropout=hp.Float("dropout", 0.0, 0.5, step=0.1, default=0.1),
        bidirectional=hp.Boolean("bidirectional", default=False),
        **output_mode_space(hp),
    )


@register("lstm", kind="denoiser", search_space=search_space, input_kind="window")
def build(
    input_shape, *, units=(512, 256, 256), dropout=0.1, bidirectional=False, output_mode="direct"
):
    """Builds the stacked-LSTM denoiser: :func:`models.denoisers.common.recurrent_denoiser`
    with ``keras.layers.LSTM`` (the arguments are documented there).

    Returns:
        ``keras.Model`` named ``"lstm"`` mapping ``(batch, samples, leads)`` to the same shape.
    """
    return recurrent_denoiser(
        "lstm", layers.LSTM, input_shape, units, dropout, bidirectional, output_mode
    )
