"""Building blocks shared by the denoiser builders (the builders themselves live one per file).

This module owns the pieces two or more denoisers really share: the search-space helpers
(tuples of ints, ``output_mode``), the output block every denoiser ends with
(:func:`denoiser_output`: ``direct``, ``residual`` or ``gated``), the recurrent stack behind
``lstm`` and ``rnn``, and the patch-Transformer model (patchify, encoder stack, patch decoder)
behind ``transformer`` and ``vq_transformer``. Argument checks are in :mod:`models.checks`.

Output modes (builder keyword ``output_mode``, default ``"direct"``):
    ``direct``: the last projection (layer ``output``) is the denoised window, as the seed
        models always did; saved models and default builds are unchanged.
    ``residual``: the last projection (layer ``noise``, zero-initialized, so the untrained
        model is the identity) is the predicted noise ``n_hat``, and ``output = ecg - n_hat``.
    ``gated``: ``output = ecg - g * n_hat`` with a pass-through gate ``g`` in ``[0, 1]`` per
        window and lead, computed from the input alone by a small pooled head (layer
        ``pass_gate``, sigmoid). With the gate closed (``g = 0``) the output *is* the input,
        so a clean window can pass through undamaged.
Every layer is a named built-in Keras layer (no ``Lambda``): the models reload in safe mode.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import keras

from models import checks
from models.checks import DENOISER as check
from models.layers import PositionalEmbedding, TransformerBlock

OUTPUT_MODES = ("direct", "residual", "gated")
"""The choices of every denoiser's ``output_mode`` (see the module docstring)."""

NOISE_LAYER = "noise"
"""Name of the layer that gives the predicted noise in ``residual`` and ``gated`` mode."""

GATE_LAYER = "pass_gate"
"""Name of the sigmoid Dense layer that gives the pass-through gate in ``gated`` mode."""

Head = Callable[..., Any]
"""``head(features, *, name, zero_init) -> (batch, samples, leads)``: a builder's last
projection; ``name`` is the name of its last layer, ``zero_init`` asks for zero weights."""


def int_tuple_space(hp, name: str, defaults: tuple[int, ...], values: list[int], max_len: int):
    """Samples a tuple of ints whose default equals ``defaults``.

    ``n_<name>`` picks the length (default ``len(defaults)``); ``<name>_<i>`` picks each entry,
    defaulting to ``defaults[i]`` (the last default beyond the default length).
    """
    n = hp.Int(f"n_{name}", 1, max_len, default=len(defaults))
    return tuple(
        hp.Choice(f"{name}_{i}", values, default=defaults[min(i, len(defaults) - 1)])
        for i in range(n)
    )


def check_output_mode(value: Any) -> str:
    """Returns ``value`` if it is one of :data:`OUTPUT_MODES`; raises ``ValueError`` echoing it."""
    if not isinstance(value, str) or value not in OUTPUT_MODES:
        raise ValueError(
            f"`output_mode` must be one of {list(OUTPUT_MODES)}. Received: output_mode={value!r}"
        )
    return value


def output_mode_space(hp) -> dict[str, Any]:
    """The ``output_mode`` choice every denoiser's search space holds (default ``direct``)."""
    return dict(output_mode=hp.Choice("output_mode", list(OUTPUT_MODES), default="direct"))


def dense_head(leads: int) -> Head:
    """A per-time-step ``Dense(leads)`` head (recurrent denoisers)."""

    def head(features, *, name: str, zero_init: bool):
        init = "zeros" if zero_init else "glorot_uniform"
        return keras.layers.Dense(leads, kernel_initializer=init, name=name)(features)

    return head


def conv_head(leads: int, kernel_size: int = 1) -> Head:
    """A linear ``Conv1D(leads, kernel_size)`` head (convolutional denoisers); ``same``
    padding for kernels longer than 1 sample."""
    padding = "same" if kernel_size > 1 else "valid"

    def head(features, *, name: str, zero_init: bool):
        init = "zeros" if zero_init else "glorot_uniform"
        return keras.layers.Conv1D(
            leads, kernel_size, padding=padding, kernel_initializer=init, name=name
        )(features)

    return head


def patch_head(patch_len: int, samples: int, leads: int) -> Head:
    """The patch decoder: ``Dense(patch_len * leads)`` per token (``patch_decoder``), reshaped
    back to ``(samples, leads)`` (the reshape carries the head's name)."""

    def head(features, *, name: str, zero_init: bool):
        init = "zeros" if zero_init else "glorot_uniform"
        patches = keras.layers.Dense(
            patch_len * leads, kernel_initializer=init, name="patch_decoder"
        )(features)
        return keras.layers.Reshape((samples, leads), name=name)(patches)

    return head


def pass_through_gate(inputs, leads: int, *, conv_filters: int = 8, hidden_units: int = 16):
    """Pass-through gate in ``[0, 1]`` per window and lead, from the input window alone.

    ``Conv1D(conv_filters, 9, relu)`` (``pass_gate_conv``: local shape and high-frequency
    content) -> global average and maximum over time (``pass_gate_avg``, ``pass_gate_max``,
    ``pass_gate_pool``) -> ``Dense(hidden_units, relu)`` (``pass_gate_hidden``) ->
    ``Dense(leads, sigmoid)`` (:data:`GATE_LAYER`) -> ``(batch, 1, leads)``
    (``pass_gate_reshape``), broadcast over the samples.
    """
    h = keras.layers.Conv1D(
        conv_filters, 9, padding="same", activation="relu", name="pass_gate_conv"
    )(inputs)
    pooled = keras.layers.Concatenate(name="pass_gate_pool")(
        [
            keras.layers.GlobalAveragePooling1D(name="pass_gate_avg")(h),
            keras.layers.GlobalMaxPooling1D(name="pass_gate_max")(h),
        ]
    )
    h = keras.layers.Dense(hidden_units, activation="relu", name="pass_gate_hidden")(pooled)
    gate = keras.layers.Dense(leads, activation="sigmoid", name=GATE_LAYER)(h)
    return keras.layers.Reshape((1, leads), name="pass_gate_reshape")(gate)


def denoiser_output(inputs, features, output_mode: str, head: Head):
    """The output block every denoiser ends with (modes in the module docstring).

    Args:
        inputs: The model's input ``ecg`` tensor ``(batch, samples, leads)``.
        features: The last hidden tensor, what ``head`` projects to ``leads`` channels.
        output_mode: ``direct``, ``residual`` or ``gated`` (checked by the builder).
        head: The builder's last projection (:data:`Head`).

    Returns:
        The model's output tensor, named ``output``, of the input's shape.
    """
    if output_mode == "direct":
        return head(features, name="output", zero_init=False)
    noise = head(features, name=NOISE_LAYER, zero_init=True)
    if output_mode == "gated":
        gate = pass_through_gate(inputs, inputs.shape[-1])
        noise = keras.layers.Multiply(name="gated_noise")([noise, gate])
    return keras.layers.Subtract(name="output")([inputs, noise])


def recurrent_denoiser(
    name: str,
    layer_class: type,
    input_shape,
    units,
    dropout,
    bidirectional,
    output_mode="direct",
) -> keras.Model:
    """Stacked recurrent denoiser: one ``layer_class`` layer per width, then a linear output.

    ``ecg (samples, leads)`` -> for each width in ``units``: ``layer_class(width,
    return_sequences=True)`` named ``<name>_<i>`` (wrapped in ``Bidirectional`` named
    ``bidirectional_<i>`` when asked) -> ``Dropout`` (``dropout_<i>``) -> ``Dense(leads)``
    per time step, through :func:`denoiser_output`.

    Args:
        name: Model name, also the prefix of the recurrent layers.
        layer_class: ``keras.layers.LSTM``, ``keras.layers.SimpleRNN``...
        input_shape: ``(samples, leads)``; ``samples`` may be ``None``.
        units: Widths, first layer first (per direction when bidirectional).
        dropout: Dropout rate after every recurrent layer, in ``[0, 1)``.
        bidirectional: Whether each layer reads the window both ways (non-causal).
        output_mode: ``direct``, ``residual`` or ``gated`` (:func:`denoiser_output`).

    Returns:
        ``keras.Model`` named ``name`` mapping ``(batch, samples, leads)`` to the same shape.
    """
    _, leads = checks.window_shape(input_shape, variable_length=True)
    units = check.positive_ints("units", units)
    check.rate("dropout", dropout)
    check.boolean("bidirectional", bidirectional)
    check_output_mode(output_mode)

    inputs = keras.Input(tuple(input_shape), name="ecg")
    x = inputs
    for i, width in enumerate(units):
        layer = layer_class(width, return_sequences=True, name=f"{name}_{i}")
        if bidirectional:
            layer = keras.layers.Bidirectional(layer, name=f"bidirectional_{i}")
        x = layer(x)
        x = keras.layers.Dropout(dropout, name=f"dropout_{i}")(x)
    outputs = denoiser_output(inputs, x, output_mode, dense_head(leads))
    return keras.Model(inputs, outputs, name=name)


def transformer_encoder(
    tokens, *, d_model: int, num_heads: int, num_layers: int, ff_dim: int, dropout: float
):
    """Token projection, learned positions, ``num_layers`` pre-norm blocks and a final norm.

    Args:
        tokens: Symbolic tensor ``(batch, n_tokens, features)``.
        d_model: Model width.
        num_heads: Attention heads (must divide ``d_model``).
        num_layers: Number of ``TransformerBlock`` layers.
        ff_dim: Feed-forward hidden width.
        dropout: Dropout rate inside the blocks and after the embedding.

    Returns:
        Symbolic tensor ``(batch, n_tokens, d_model)``.
    """
    n_tokens = tokens.shape[1]
    x = keras.layers.Dense(d_model, name="token_projection")(tokens)
    x = PositionalEmbedding(n_tokens, name="positional_embedding")(x)
    x = keras.layers.Dropout(dropout, name="embedding_dropout")(x)
    for i in range(num_layers):
        x = TransformerBlock(num_heads, ff_dim, dropout=dropout, name=f"transformer_block_{i}")(x)
    return keras.layers.LayerNormalization(epsilon=1e-6, name="final_norm")(x)


def patch_encoder_space(hp) -> dict[str, Any]:
    """Search space of the :class:`PatchEncoder` arguments; defaults: 10-sample patches,
    ``d_model=300``, 5 heads, 5 layers, ``ff_mult=4``, dropout 0.1.

    Every ``d_model`` choice is divisible by every ``num_heads`` choice.
    """
    return dict(
        patch_len=hp.Choice("patch_len", [5, 10, 20], default=10),
        d_model=hp.Choice("d_model", [60, 120, 300, 600], default=300),
        num_heads=hp.Choice("num_heads", [2, 5, 10], default=5),
        num_layers=hp.Int("num_layers", 1, 8, default=5),
        ff_mult=hp.Choice("ff_mult", [2, 4], default=4),
        dropout=hp.Float("dropout", 0.0, 0.3, step=0.1, default=0.1),
    )


@dataclasses.dataclass(frozen=True)
class PatchEncoder:
    """The encoder arguments of a patch-Transformer denoiser (checked when it is built).

    Attributes:
        patch_len: Samples per patch (token).
        d_model: Token width.
        num_heads: Attention heads; must divide ``d_model``.
        num_layers: Number of Transformer blocks.
        ff_mult: Feed-forward width as a multiple of ``d_model``.
        dropout: Dropout rate in the blocks and after the embedding, in ``[0, 1)``.
    """

    patch_len: Any
    d_model: Any
    num_heads: Any
    num_layers: Any
    ff_mult: Any
    dropout: Any


def patch_transformer(
    name: str,
    input_shape,
    encoder: PatchEncoder,
    embed: Callable[[Any], Any] | None = None,
    output_mode: str = "direct",
) -> keras.Model:
    """Patch Transformer denoiser: patchify, [embed], encoder stack, linear patch decoder.

    The window is cut into ``samples / patch_len`` patches of ``patch_len`` samples of all
    leads (``patchify``), optionally mapped by ``embed`` (e.g. a patch embedding and a vector
    quantizer), passed through :func:`transformer_encoder`, decoded by a Dense to
    ``patch_len * leads`` (``patch_decoder``) and reshaped back (``output`` in ``direct``
    mode, else ``noise``, through :func:`denoiser_output`).

    Args:
        name: Model name.
        input_shape: ``(samples, leads)``; ``samples`` divisible by ``encoder.patch_len``.
        encoder: The encoder arguments; checked here.
        embed: Optional map from patches ``(batch, n_patches, patch_len * leads)`` to tokens.
        output_mode: ``direct``, ``residual`` or ``gated`` (:func:`denoiser_output`).

    Returns:
        ``keras.Model`` named ``name`` mapping ``(batch, samples, leads)`` to the same shape.
    """
    samples, leads = checks.patch_transformer_args(input_shape, **dataclasses.asdict(encoder))
    check_output_mode(output_mode)
    patch_len = encoder.patch_len
    inputs = keras.Input((samples, leads), name="ecg")
    tokens = keras.layers.Reshape((samples // patch_len, patch_len * leads), name="patchify")(
        inputs
    )
    if embed is not None:
        tokens = embed(tokens)
    x = transformer_encoder(
        tokens,
        d_model=encoder.d_model,
        num_heads=encoder.num_heads,
        num_layers=encoder.num_layers,
        ff_dim=encoder.ff_mult * encoder.d_model,
        dropout=encoder.dropout,
    )
    outputs = denoiser_output(inputs, x, output_mode, patch_head(patch_len, samples, leads))
    return keras.Model(inputs, outputs, name=name)
