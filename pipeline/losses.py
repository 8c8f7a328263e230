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


def classification_loss(multilabel: bool, focal: bool, gamma: float = 2.0) -> keras.losses.Loss:
    if multilabel:
        return (keras.losses.BinaryFocalCrossentropy(gamma=gamma) if focal
                else keras.losses.BinaryCrossentropy())
    return (keras.losses.CategoricalFocalCrossentropy(gamma=gamma) if focal
            else keras.losses.CategoricalCrossentropy())
