"""Custom layers shared by the classifier builders.

Registered serializable (package ``ecg_classifiers``) with a ``get_config``, so models that
use them save to ``.keras`` and reload with ``safe_mode=True`` once this module is imported
(importing :mod:`models.classifiers` or calling :func:`models.registry.get` does that).
"""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

PACKAGE = "ecg_classifiers"


@keras.saving.register_keras_serializable(package=PACKAGE)
class PositionEmbedding(keras.layers.Layer):
    """Adds a learned position embedding to a sequence of tokens.

    The sequence length is fixed when the layer is built: the builders know it from
    ``input_shape`` (tokens after a conv front end, or beats in a scalogram sequence).

    Args:
        initializer: initializer of the ``(seq_len, dim)`` embedding table.
        **kwargs: ``keras.layers.Layer`` arguments (``name``, ``dtype``...).

    Input shape: ``(batch, seq_len, dim)``. Output shape: the same.
    """

    def __init__(self, initializer: Any = "glorot_uniform", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.initializer = keras.initializers.get(initializer)
        self.supports_masking = True

    def build(self, input_shape: tuple[Any, ...]) -> None:
        if len(input_shape) != 3 or input_shape[1] is None or input_shape[2] is None:
            raise ValueError(
                "PositionEmbedding expects input (batch, seq_len, dim) with known seq_len and "
                f"dim. Received: input_shape={tuple(input_shape)}"
            )
        self.embeddings = self.add_weight(
            name="embeddings",
            shape=(int(input_shape[1]), int(input_shape[2])),
            initializer=self.initializer,
            trainable=True,
        )

    def call(self, inputs: Any) -> Any:
        return inputs + ops.cast(self.embeddings, inputs.dtype)

    def compute_output_shape(self, input_shape: tuple[Any, ...]) -> tuple[Any, ...]:
        return input_shape

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(initializer=keras.initializers.serialize(self.initializer))
        return config
