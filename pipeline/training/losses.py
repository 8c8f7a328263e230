"""Losses shared by training, tuning and evaluation (registered so `.keras` files reload)."""

from __future__ import annotations

import keras


@keras.saving.register_keras_serializable(package="ecg")
class DenoiseLoss(keras.losses.Loss):
    """``MSE + mae_weight * MAE`` over every sample and lead (default weight 0.3)."""

    def __init__(self, mae_weight: float = 0.3, name: str = "denoise_loss", **kwargs):
        super().__init__(name=name, **kwargs)
        if mae_weight < 0:
            raise ValueError(f"`mae_weight` must be >= 0. Received: mae_weight={mae_weight}")
        self.mae_weight = float(mae_weight)

    def call(self, y_true, y_pred):
        err = y_pred - keras.ops.cast(y_true, y_pred.dtype)
        return keras.ops.mean(keras.ops.square(err), axis=(-2, -1)) + self.mae_weight * keras.ops.mean(
            keras.ops.abs(err), axis=(-2, -1)
        )

    def get_config(self):
        return {**super().get_config(), "mae_weight": self.mae_weight}


@keras.saving.register_keras_serializable(package="ecg")
class SNRLoss(keras.losses.Loss):
    """Minus each window's output SNR in dB, capped at ``max_snr_db``.

    ``loss = 10 log10((sum(err^2) + 10^(-max_snr_db/10) sum(y^2)) / sum(y^2))`` over the
    window's samples and leads, so the mean over windows is minus the mean output SNR: the
    SNR-improvement metric itself (the input SNR is fixed by the data). Every window then
    counts by its *relative* error, whatever its input noise level, instead of the noisiest
    windows dominating a squared-error loss. The cap keeps clean windows (zero error under
    the identity) from giving unbounded gradients.
    """

    def __init__(self, max_snr_db: float = 40.0, name: str = "snr_loss", **kwargs):
        super().__init__(name=name, **kwargs)
        if not max_snr_db > 0:
            raise ValueError(f"`max_snr_db` must be > 0. Received: max_snr_db={max_snr_db}")
        self.max_snr_db = float(max_snr_db)

    def call(self, y_true, y_pred):
        y = keras.ops.cast(y_true, y_pred.dtype)
        err = keras.ops.sum(keras.ops.square(y_pred - y), axis=(-2, -1))
        power = keras.ops.sum(keras.ops.square(y), axis=(-2, -1)) + 1e-12
        floor = 10.0 ** (-self.max_snr_db / 10.0)
        return 10.0 * keras.ops.log((err + floor * power) / power) / keras.ops.log(10.0)

    def get_config(self):
        return {**super().get_config(), "max_snr_db": self.max_snr_db}


def classification_loss(multilabel: bool, focal: bool, gamma: float = 2.0) -> keras.losses.Loss:
    if multilabel:
        return (keras.losses.BinaryFocalCrossentropy(gamma=gamma) if focal
                else keras.losses.BinaryCrossentropy())
    return (keras.losses.CategoricalFocalCrossentropy(gamma=gamma) if focal
            else keras.losses.CategoricalCrossentropy())
