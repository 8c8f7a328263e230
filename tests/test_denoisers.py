"""Denoiser builders and their custom layers: argument errors, shapes, the vector quantizer
(straight-through gradient, codebook/commitment loss, usage tracking, dead-code restarts)
and serialization of the shared layers. The contract over every model (build, train step,
save/reload, search-space defaults) is in ``test_models.py``."""

from __future__ import annotations

import numpy as np
import pytest

keras = pytest.importorskip("keras")
kt = pytest.importorskip("keras_tuner")
tf = pytest.importorskip("tensorflow")

from models import registry  # noqa: E402
from models.layers import PositionalEmbedding, TransformerBlock, VectorQuantizer  # noqa: E402

# A VQ Transformer small enough for CPU tests.
SMALL_VQ = dict(embed_dim=16, num_codes=64, d_model=32, num_heads=2, num_layers=1, ff_mult=2)


def ecg_like(n, samples=360, leads=2, seed=0):
    """Seeded ECG-like windows: three random sinusoids (0.5-15 Hz at 360 Hz) plus spikes."""
    rng = np.random.default_rng(seed)
    t = np.arange(samples) / 360.0
    x = np.zeros((n, samples, leads), "float32")
    for i in range(n):
        for lead in range(leads):
            for _ in range(3):
                freq, phase = rng.uniform(0.5, 15.0), rng.uniform(0.0, 2 * np.pi)
                x[i, :, lead] += rng.uniform(0.1, 1.0) * np.sin(2 * np.pi * freq * t + phase)
            spikes = rng.integers(0, samples, size=rng.integers(2, 6))
            x[i, spikes, lead] += rng.uniform(2.0, 4.0, size=spikes.size)
    return x


@pytest.fixture
def windows():
    return ecg_like(32)


BAD_ARGS = [
    (
        "lstm",
        (360, 2),
        dict(units=()),
        r"`units` must be a non-empty sequence of positive ints\. Received: units=\(\)",
    ),
    (
        "lstm",
        (360, 2),
        dict(dropout=1.5),
        r"`dropout` must be a float in \[0, 1\)\. Received: dropout=1\.5",
    ),
    (
        "lstm",
        (360,),
        {},
        r"`input_shape` must be \(samples or None, leads\).*Received: input_shape=\(360,\)",
    ),
    ("rnn", (360, 2), dict(units=(64, 0)), r"Received: units=\(64, 0\)"),
    (
        "rnn",
        (360, 2),
        dict(bidirectional=1),
        r"`bidirectional` must be a bool\. Received: bidirectional=1",
    ),
    ("cnn", (100, 2), {}, r"divisible by 8 \(3 max-pool blocks\)\. Received: input_shape\[0\]=100"),
    (
        "cnn",
        (360, 2),
        dict(kernel_size=0),
        r"`kernel_size` must be a positive int\. Received: kernel_size=0",
    ),
    (
        "cnn",
        (None, 2),
        {},
        r"`input_shape` must be \(samples, leads\).*Received: input_shape=\(None, 2\)",
    ),
    ("cnn_dae", (360, 2), dict(filters=[]), r"Received: filters=\[\]"),
    (
        "cnn_dae",
        (100, 2),
        {},
        r"divisible by 8 \(3 stride-2 convs\)\. Received: input_shape\[0\]=100",
    ),
    (
        "transformer",
        (365, 2),
        {},
        r"divisible by 10 \(patch_len=10\)\. Received: input_shape\[0\]=365",
    ),
    (
        "transformer",
        (360, 2),
        dict(num_heads=7),
        r"`num_heads` must divide `d_model`=300\. Received: num_heads=7",
    ),
    ("transformer", (360, 2), dict(num_layers=0), r"Received: num_layers=0"),
    ("vq_transformer", (365, 2), {}, r"divisible by 10 \(patch_len=10\)"),
    (
        "vq_transformer",
        (360, 2),
        dict(num_codes=0),
        r"`num_codes` must be a positive int\. Received: num_codes=0",
    ),
    (
        "vq_transformer",
        (360, 2),
        dict(beta=-1.0),
        r"`beta` must be a float >= 0\. Received: beta=-1\.0",
    ),
    (
        "unet1d",
        (1442, 2),
        {},
        r"divisible by 8 \(3 max-pool levels\)\. Received: input_shape\[0\]=1442",
    ),
    ("unet1d", (360, 2), dict(dilations=()), r"Received: dilations=\(\)"),
    (
        "unet1d",
        (360, 2),
        dict(input_skip="yes"),
        r"`input_skip` must be a bool\. Received: input_skip='yes'",
    ),
]


@pytest.mark.parametrize(
    "name,shape,kwargs,match", BAD_ARGS, ids=[f"{a[0]}-{i}" for i, a in enumerate(BAD_ARGS)]
)
def test_bad_arguments_raise_with_value(name, shape, kwargs, match):
    with pytest.raises(ValueError, match=match):
        registry.build("denoiser", name, shape, **kwargs)


def test_layer_argument_errors():
    with pytest.raises(
        ValueError, match=r"`num_codes` must be a positive int\. Received: num_codes=0"
    ):
        VectorQuantizer(0)
    with pytest.raises(
        ValueError, match=r"`usage_decay` must be a float in \[0, 1\)\. Received: usage_decay=1\.0"
    ):
        VectorQuantizer(8, usage_decay=1.0)
    with pytest.raises(
        ValueError, match=r"`num_heads` must divide the input width 8\. Received: num_heads=3"
    ):
        TransformerBlock(3, 16)(np.zeros((1, 4, 8), "float32"))
    with pytest.raises(
        ValueError, match=r"more than `sequence_length`\. Received: sequence_length=3"
    ):
        PositionalEmbedding(3)(np.zeros((1, 4, 8), "float32"))


@pytest.mark.parametrize(
    "name,shape,kwargs",
    [
        ("cnn", (48, 1), dict(filters=(8, 8))),
        ("cnn_dae", (96, 3), dict(filters=(4, 8, 8, 8, 8))),
        ("unet1d", (40, 1), dict(filters=(4, 8), dilations=(1,))),
        ("transformer", (60, 3), dict(patch_len=20, d_model=16, num_heads=4, num_layers=1)),
        ("lstm", (None, 2), dict(units=(8,))),
        ("rnn", (None, 2), dict(units=(8,), bidirectional=True)),
    ],
)
def test_other_lengths_and_leads_keep_shape(name, shape, kwargs):
    model = registry.build("denoiser", name, shape, **kwargs)
    x = np.zeros((2, shape[0] or 50, shape[1]), "float32")
    assert tuple(model(x).shape) == x.shape


def test_unet1d_with_input_skip_starts_as_identity(windows):
    model = registry.build("denoiser", "unet1d", (360, 2), filters=(4, 8, 8))
    np.testing.assert_allclose(model(windows[:4]).numpy(), windows[:4], atol=1e-6)


def test_int_tuple_search_space_lengths():
    hp = kt.HyperParameters()
    hp.Fixed("n_filters", 4)
    kwargs = registry.get("denoiser", "cnn").search_space(hp)
    assert kwargs["filters"] == (720, 360, 360, 360)


def test_vq_straight_through_gradient_is_identity():
    layer = VectorQuantizer(8, restart_dead_codes=False, name="vq")
    x = tf.Variable(np.random.default_rng(0).standard_normal((2, 5, 4)).astype("float32"))
    w = tf.constant(np.random.default_rng(1).standard_normal((2, 5, 4)).astype("float32"))
    with tf.GradientTape() as tape:
        y = layer(x)
        out = tf.reduce_sum(y * w)
    np.testing.assert_allclose(tape.gradient(out, x).numpy(), w.numpy(), rtol=1e-6)
    codebook = layer.codebook.numpy()
    distances = ((x.numpy()[..., None, :] - codebook) ** 2).sum(-1)
    np.testing.assert_allclose(y.numpy(), codebook[distances.argmin(-1)], atol=1e-6)


def test_vq_loss_is_codebook_plus_beta_commitment():
    layer = VectorQuantizer(8, beta=0.25, restart_dead_codes=False)
    x = np.random.default_rng(0).standard_normal((2, 5, 4)).astype("float32")
    y = layer(x).numpy()
    assert len(layer.losses) == 1
    np.testing.assert_allclose(float(layer.losses[0]), 1.25 * np.mean((x - y) ** 2), rtol=1e-5)


def test_vq_transformer_losses_and_encoder_gradient(windows):
    keras.utils.set_random_seed(0)
    model = registry.build("denoiser", "vq_transformer", (360, 2), **SMALL_VQ)
    embedding = model.get_layer("patch_embedding").kernel
    with tf.GradientTape() as tape:
        out = model(windows[:8], training=True)
        reconstruction = tf.reduce_mean(tf.square(out - windows[:8]))
    assert len(model.losses) == 1 and float(model.losses[0]) > 0.0
    grad = tape.gradient(reconstruction, embedding)  # reaches the encoder only straight through
    assert grad is not None and float(tf.reduce_max(tf.abs(grad))) > 0.0


def test_vq_first_training_call_seeds_codebook_from_data():
    layer = VectorQuantizer(16, seed=0)
    x = np.random.default_rng(0).standard_normal((4, 10, 3)).astype("float32")
    layer(x, training=True)
    rows = x.reshape(-1, 3)
    gaps = np.abs(layer.codebook.numpy()[:, None, :] - rows[None]).max(-1).min(-1)
    np.testing.assert_allclose(gaps, 0.0, atol=1e-6)
    counts, codebook = layer.code_counts.numpy().copy(), layer.codebook.numpy().copy()
    assert counts.sum() > 0
    layer(x, training=False)
    np.testing.assert_array_equal(layer.codebook.numpy(), codebook)
    np.testing.assert_array_equal(layer.code_counts.numpy(), counts)


def test_vq_usage_stays_high_after_adam_steps(windows):
    keras.utils.set_random_seed(0)
    model = registry.build("denoiser", "vq_transformer", (360, 2), **SMALL_VQ)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="mse")
    history = model.fit(windows, windows, batch_size=16, epochs=3, verbose=0).history
    vq = model.get_layer("vq")
    assert float(vq.perplexity.numpy()) > 8.0
    assert float(vq.codes_used.numpy()) > 0.25
    assert history["vq_perplexity"][-1] > 8.0
    assert 0.25 < history["vq_codes_used"][-1] <= 1.0
    # EMA of per-batch counts: 6 steps of 16 windows x 36 patches each.
    np.testing.assert_allclose(np.sum(vq.code_counts.numpy()), 576 * (1 - 0.99**6), rtol=1e-4)


@pytest.mark.parametrize(
    "layer,shape",
    [
        (PositionalEmbedding(6, name="pos"), (1, 6, 4)),
        (TransformerBlock(2, 8, dropout=0.1, name="block"), (1, 6, 4)),
        (VectorQuantizer(8, beta=0.5, seed=3, name="vq"), (1, 6, 4)),
    ],
    ids=["positional_embedding", "transformer_block", "vector_quantizer"],
)
def test_custom_layers_round_trip_config(layer, shape):
    x = np.random.default_rng(0).standard_normal(shape).astype("float32")
    layer(x)
    clone = type(layer).from_config(layer.get_config())
    clone(x)
    clone.set_weights(layer.get_weights())
    assert clone.get_config() == layer.get_config()
    np.testing.assert_allclose(clone(x).numpy(), layer(x).numpy(), rtol=1e-6)
