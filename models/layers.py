"""Custom Keras layers shared by the model builders (every custom layer of :mod:`models`).

Every layer here is registered with ``@keras.saving.register_keras_serializable`` and has a
``get_config()``, so models that use them save to ``.keras`` and reload with
``safe_mode=True`` (no ``Lambda`` layers anywhere). The package is ``ecg``, except for
``PositionEmbedding``, registered as ``ecg_classifiers>PositionEmbedding`` as in the files the
classifiers have already saved.

Layers (all keep their input's shape, :class:`ShapeKeepingLayer`):
    PositionalEmbedding: learned position vectors added to a token sequence (denoisers; the
        table length is an argument, inputs may be shorter).
    PositionEmbedding: learned position vectors, table length fixed by the input at build
        time (classifiers).
    TransformerBlock: pre-norm Transformer encoder block (self-attention + feed-forward).
    VectorQuantizer: VQ-VAE bottleneck with a straight-through estimator, codebook and
        commitment losses, codebook-usage tracking and optional restarts of dead codes.
"""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

from models import checks

# The layers share the denoisers' wording ("must be a positive int").
check = checks.DENOISER


class ShapeKeepingLayer(keras.layers.Layer):
    """Base of the layers here: each returns a tensor of its input's shape."""

    def compute_output_shape(self, input_shape):
        return input_shape


@keras.saving.register_keras_serializable(package="ecg")
class PositionalEmbedding(ShapeKeepingLayer):
    """Adds a learned position vector to every token of a sequence.

    Args:
        sequence_length: Maximum number of tokens; the table has this many rows.
        initializer: Initializer of the position table (default: normal, stddev 0.02).
        **kwargs: Standard layer arguments (``name``, ``dtype``...).

    Call arguments:
        inputs: Float tensor of shape ``(batch, tokens, features)`` with
            ``tokens <= sequence_length``.

    Returns:
        Tensor of the input's shape: ``inputs + table[:tokens]``.
    """

    def __init__(self, sequence_length, initializer=None, **kwargs):
        super().__init__(**kwargs)
        check.positive_int("sequence_length", sequence_length)
        self.sequence_length = sequence_length
        self.initializer = keras.initializers.get(
            initializer or keras.initializers.RandomNormal(stddev=0.02)
        )

    def build(self, input_shape):
        tokens = input_shape[-2]
        if tokens is not None and tokens > self.sequence_length:
            raise ValueError(
                f"Input has {tokens} tokens, more than `sequence_length`. "
                f"Received: sequence_length={self.sequence_length}"
            )
        self.embeddings = self.add_weight(
            shape=(self.sequence_length, input_shape[-1]),
            initializer=self.initializer,
            name="embeddings",
        )

    def call(self, inputs):
        tokens = ops.shape(inputs)[-2]
        table = ops.cast(self.embeddings[:tokens], inputs.dtype)
        return inputs + table

    def get_config(self):
        config = super().get_config()
        config.update(
            sequence_length=self.sequence_length,
            initializer=keras.initializers.serialize(self.initializer),
        )
        return config


@keras.saving.register_keras_serializable(package="ecg_classifiers")
class PositionEmbedding(ShapeKeepingLayer):
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

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(initializer=keras.initializers.serialize(self.initializer))
        return config


@keras.saving.register_keras_serializable(package="ecg")
class TransformerBlock(ShapeKeepingLayer):
    """Pre-norm Transformer encoder block.

    ``x = x + Dropout(MHA(LN(x)))`` then ``x = x + Dropout(W2 act(W1 LN(x)))``. The model
    width ``d_model`` is the input's last dimension; each head has ``d_model // num_heads``
    dimensions. Stack a final ``LayerNormalization`` after the last block (pre-norm).

    Args:
        num_heads: Attention heads; must divide the input width.
        ff_dim: Width of the feed-forward hidden layer (commonly ``4 * d_model``).
        dropout: Dropout rate on the attention weights and both residual branches.
        activation: Feed-forward activation (default ``"gelu"``).
        epsilon: Layer-norm epsilon.
        **kwargs: Standard layer arguments.

    Call arguments:
        inputs: Float tensor of shape ``(batch, tokens, d_model)``.
        training: Python bool, enables dropout.

    Returns:
        Tensor of shape ``(batch, tokens, d_model)``.
    """

    def __init__(self, num_heads, ff_dim, dropout=0.0, activation="gelu", epsilon=1e-6, **kwargs):
        super().__init__(**kwargs)
        check.positive_int("num_heads", num_heads)
        check.positive_int("ff_dim", ff_dim)
        check.rate("dropout", dropout)
        self.num_heads = num_heads
        self.ff_dim = ff_dim
        self.dropout = dropout
        self.activation = keras.activations.get(activation)
        self.epsilon = epsilon

    def build(self, input_shape):
        d_model = input_shape[-1]
        if d_model % self.num_heads:
            raise ValueError(
                f"`num_heads` must divide the input width {d_model}. "
                f"Received: num_heads={self.num_heads}"
            )
        self.attention_norm = keras.layers.LayerNormalization(
            epsilon=self.epsilon, name="attention_norm", dtype=self.dtype_policy
        )
        self.attention = keras.layers.MultiHeadAttention(
            num_heads=self.num_heads,
            key_dim=d_model // self.num_heads,
            dropout=self.dropout,
            name="self_attention",
            dtype=self.dtype_policy,
        )
        self.attention_dropout = keras.layers.Dropout(self.dropout, name="attention_dropout")
        self.ff_norm = keras.layers.LayerNormalization(
            epsilon=self.epsilon, name="ff_norm", dtype=self.dtype_policy
        )
        self.ff_inner = keras.layers.Dense(
            self.ff_dim, activation=self.activation, name="ff_inner", dtype=self.dtype_policy
        )
        self.ff_outer = keras.layers.Dense(d_model, name="ff_outer", dtype=self.dtype_policy)
        self.ff_dropout = keras.layers.Dropout(self.dropout, name="ff_dropout")

        self.attention_norm.build(input_shape)
        self.attention.build(input_shape, input_shape)
        self.ff_norm.build(input_shape)
        self.ff_inner.build(input_shape)
        self.ff_outer.build((*input_shape[:-1], self.ff_dim))

    def call(self, inputs, training=None):
        h = self.attention_norm(inputs)
        h = self.attention(h, h, training=training)
        x = inputs + self.attention_dropout(h, training=training)
        h = self.ff_outer(self.ff_inner(self.ff_norm(x)))
        return x + self.ff_dropout(h, training=training)

    def get_config(self):
        config = super().get_config()
        config.update(
            num_heads=self.num_heads,
            ff_dim=self.ff_dim,
            dropout=self.dropout,
            activation=keras.activations.serialize(self.activation),
            epsilon=self.epsilon,
        )
        return config


@keras.saving.register_keras_serializable(package="ecg")
class VectorQuantizer(ShapeKeepingLayer):
    """Vector quantizer (VQ-VAE) with a straight-through estimator and usage tracking.

    Each vector of the last axis is replaced by its nearest (Euclidean) codebook entry.
    The forward output is the code; the backward pass copies the gradient to the input
    unchanged (straight-through: ``x + stop_gradient(q - x)``). The layer adds
    ``mean((sg(x) - q)^2) + beta * mean((x - sg(q))^2)`` (codebook + commitment loss) with
    ``self.add_loss``, so ``model.losses`` holds it and ``fit`` adds it to the loss.

    Codebook usage, so that collapse is visible:

    * Metrics ``<name>_perplexity`` (``exp`` of the entropy of the batch's code histogram:
      1 means one code for everything, ``num_codes`` means uniform use) and
      ``<name>_codes_used`` (fraction of the codebook used at least once in the batch) are
      ``keras.metrics.Mean`` trackers updated on every call (training and inference). They
      are part of ``model.metrics``, so ``fit``/``evaluate`` logs and ``History`` carry them
      (``vq_perplexity``, ``val_vq_perplexity``...) with no extra code, averaged per epoch.
    * Non-trainable variables updated on each *training* call and saved with the model:
      ``perplexity`` and ``codes_used`` (same quantities for the last training batch) and
      ``code_counts`` (``num_codes``, an EMA with decay ``usage_decay`` of the per-batch
      assignment counts). A custom loop reads them as
      ``float(model.get_layer("vq").perplexity.numpy())``.

    Dead codes: with ``restart_dead_codes=True`` (default) every training call first
    replaces the entries whose ``code_counts`` EMA is below ``dead_code_threshold`` by
    randomly chosen encodings of the current batch (as in Jukebox). ``code_counts`` starts
    at zero, so the first training batch initializes the whole codebook from data; entries
    that stay unused are re-seeded until they win assignments. Inference never changes the
    codebook.

    Args:
        num_codes: Codebook size.
        beta: Commitment-loss weight.
        usage_decay: EMA decay of ``code_counts``, in ``[0, 1)``.
        dead_code_threshold: A code whose EMA count (assignments per batch) is below this
            is restarted. ``0`` disables restarts in effect.
        restart_dead_codes: Whether training calls restart dead codes.
        seed: Seed for choosing restart encodings.
        **kwargs: Standard layer arguments.

    Call arguments:
        inputs: Float tensor ``(..., code_dim)``; usually ``(batch, tokens, code_dim)``.
        training: Python bool; usage EMA and restarts happen only when true.

    Returns:
        Tensor of the input's shape holding codebook vectors (straight-through gradient).
    """

    def __init__(
        self,
        num_codes,
        beta=0.25,
        usage_decay=0.99,
        dead_code_threshold=0.01,
        restart_dead_codes=True,
        seed=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.num_codes = check.positive_int("num_codes", num_codes)
        self.beta = checks.non_negative_float("beta", beta)
        self.usage_decay = check.rate("usage_decay", usage_decay)
        self.dead_code_threshold = checks.non_negative_float(
            "dead_code_threshold", dead_code_threshold
        )
        self.restart_dead_codes = bool(restart_dead_codes)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed, name="restart_seed")
        self.perplexity_tracker = keras.metrics.Mean(name=f"{self.name}_perplexity")
        self.codes_used_tracker = keras.metrics.Mean(name=f"{self.name}_codes_used")

    def build(self, input_shape):
        code_dim = input_shape[-1]
        if code_dim is None:
            raise ValueError(
                f"The last input axis must be known. Received: input_shape={input_shape}"
            )
        self.codebook = self.add_weight(
            shape=(self.num_codes, code_dim),
            initializer=keras.initializers.RandomUniform(
                -1.0 / self.num_codes, 1.0 / self.num_codes
            ),
            name="codebook",
        )
        self.code_counts = self.add_weight(
            shape=(self.num_codes,), initializer="zeros", trainable=False, name="code_counts"
        )
        self.perplexity = self.add_weight(
            shape=(), initializer="zeros", trainable=False, name="perplexity"
        )
        self.codes_used = self.add_weight(
            shape=(), initializer="zeros", trainable=False, name="codes_used"
        )

    def _restart(self, codebook, flat):
        """Codebook with dead entries replaced by random rows of ``flat`` (N, D)."""
        dead = ops.less(self.code_counts, self.dead_code_threshold)
        n = ops.cast(ops.shape(flat)[0], "float32")
        u = keras.random.uniform((self.num_codes,), seed=self.seed_generator)
        rows = ops.minimum(ops.cast(ops.floor(u * n), "int32"), ops.cast(n, "int32") - 1)
        candidates = ops.stop_gradient(ops.take(flat, rows, axis=0))
        codebook = ops.where(
            ops.expand_dims(dead, 1), ops.cast(candidates, codebook.dtype), codebook
        )
        self.codebook.assign(codebook)
        return codebook

    def call(self, inputs, training=None):
        code_dim = ops.shape(inputs)[-1]
        flat = ops.reshape(inputs, (-1, code_dim))
        codebook = ops.convert_to_tensor(self.codebook)
        if training and self.restart_dead_codes:
            codebook = self._restart(codebook, flat)
        codebook = ops.cast(codebook, flat.dtype)
        distances = (
            ops.sum(ops.square(flat), axis=1, keepdims=True)
            - 2.0 * ops.matmul(flat, ops.transpose(codebook))
            + ops.expand_dims(ops.sum(ops.square(codebook), axis=1), 0)
        )
        # tf.math.argmin rather than keras.ops.argmin: the latter's signed-zero handling emits
        # BitwiseAnd/Bitcast ops that TFLite and ONNX cannot hold (the project runs on TF).
        import tensorflow as tf

        indices = tf.math.argmin(distances, axis=1, output_type="int32")
        quantized = ops.reshape(ops.take(codebook, indices, axis=0), ops.shape(inputs))

        codebook_loss = ops.mean(ops.square(ops.stop_gradient(inputs) - quantized))
        commitment_loss = ops.mean(ops.square(inputs - ops.stop_gradient(quantized)))
        self.add_loss(ops.cast(codebook_loss + self.beta * commitment_loss, "float32"))

        counts = ops.sum(ops.one_hot(indices, self.num_codes, dtype="float32"), axis=0)
        probs = counts / ops.maximum(ops.sum(counts), 1.0)
        perplexity = ops.exp(-ops.sum(probs * ops.log(probs + 1e-10)))
        codes_used = ops.mean(ops.cast(counts > 0, "float32"))
        if training:
            decay = self.usage_decay
            self.code_counts.assign(decay * self.code_counts + (1.0 - decay) * counts)
            self.perplexity.assign(perplexity)
            self.codes_used.assign(codes_used)
        self.perplexity_tracker.update_state(perplexity)
        self.codes_used_tracker.update_state(codes_used)
        return inputs + ops.stop_gradient(quantized - inputs)

    def compute_output_spec(self, inputs, training=None):
        return keras.KerasTensor(inputs.shape, dtype=self.compute_dtype)

    def get_config(self):
        config = super().get_config()
        config.update(
            num_codes=self.num_codes,
            beta=self.beta,
            usage_decay=self.usage_decay,
            dead_code_threshold=self.dead_code_threshold,
            restart_dead_codes=self.restart_dead_codes,
            seed=self.seed,
        )
        return config
