"""Classifier-specific contract (the shared build/train/save test is in test_models.py):
the task's output activation is honoured, argument and input-shape errors are clear, the
conformer presets are real ablations, the centre-beat readout reads the centre beat, and the
light MIT-BIH models stay light."""

from __future__ import annotations

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from models import registry  # noqa: E402
from models.layers import PositionEmbedding  # noqa: E402

SMALL_SHAPES = {"any1d": (96, 2), "sequence": (3, 8, 16, 1)}
BASE_MODELS = [
    n for n in registry.names("classifier") if registry.get("classifier", n).preset_of is None
]
ONE_D_MODELS = [n for n in BASE_MODELS if registry.get("classifier", n).input_kind == "any1d"]


def _small(name, **kwargs):
    spec = registry.get("classifier", name)
    return spec(SMALL_SHAPES[spec.input_kind], 4, **kwargs), SMALL_SHAPES[spec.input_kind]


def _layer_types(model):
    return {type(layer).__name__ for layer in model._flatten_layers(include_self=False)}


@pytest.fixture
def rng():
    keras.utils.set_random_seed(0)
    return np.random.default_rng(0)


def test_every_expected_classifier_is_registered():
    expected = {
        "cnn",
        "bilstm",
        "cnn_lstm",
        "liteecgnet",
        "ecgnet",
        "se_ecgnet",
        "bircnn",
        "resnet1d",
        "deepecgnet",
        "ldcnn",
        "conformer",
        "conformer_no_attention",
        "conformer_no_conv",
        "conformer_cnn_only",
    }
    assert expected <= set(registry.names("classifier"))


@pytest.mark.parametrize("name", BASE_MODELS)
def test_output_activation_is_honoured(name, rng):
    sigmoid_model, shape = _small(name, output_activation="sigmoid")
    softmax_model, _ = _small(name, output_activation="softmax")
    x = rng.standard_normal((3, *shape)).astype("float32")
    sig = np.asarray(sigmoid_model(x, training=False))
    soft = np.asarray(softmax_model(x, training=False))
    assert sig.shape == soft.shape == (3, 4)
    assert np.all((sig > 0) & (sig < 1))
    assert not np.allclose(sig.sum(axis=1), 1.0, atol=1e-3)
    np.testing.assert_allclose(soft.sum(axis=1), 1.0, atol=1e-5)


@pytest.mark.parametrize("name", BASE_MODELS)
def test_bad_output_activation_raises(name):
    with pytest.raises(ValueError, match=r"`output_activation` must be one of .*tanh"):
        _small(name, output_activation="tanh")


@pytest.mark.parametrize("name", ONE_D_MODELS)
def test_1d_model_rejects_sequence_input(name):
    msg = rf"{name} expects input \(n_samples, n_leads\); Received: input_shape=\(3, 32, 187, 1\)"
    with pytest.raises(ValueError, match=msg):
        registry.build("classifier", name, (3, 32, 187, 1), 5)


@pytest.mark.parametrize("name", ["conformer", "conformer_cnn_only"])
def test_conformer_rejects_1d_input(name):
    msg = (
        r"conformer expects input \(n_beats, n_scales, n_time, 1\); "
        r"Received: input_shape=\(720, 1\)"
    )
    with pytest.raises(ValueError, match=msg):
        registry.build("classifier", name, (720, 1), 5)


@pytest.mark.parametrize(
    "name,kwargs,match",
    [
        ("cnn", {"filters": (0, 32)}, r"`filters` must be .*Received: filters=\(0, 32\)"),
        ("cnn", {"dropout": 1.0}, r"Received: dropout=1\.0"),
        ("liteecgnet", {"kernel_size": 0}, r"Received: kernel_size=0"),
        ("resnet1d", {"kernel_sizes": (7,)}, r"Received: kernel_sizes=\(7,\)"),
        ("deepecgnet", {"d_model": 30}, r"Received: d_model=30, num_heads=4"),
        ("conformer", {"pooling": "max"}, r"Received: pooling='max'"),
        ("conformer", {"use_attention": "no"}, r"Received: use_attention='no'"),
        ("bilstm", {"units": ()}, r"Received: units=\(\)"),
    ],
)
def test_bad_arguments_raise_with_the_value(name, kwargs, match):
    with pytest.raises(ValueError, match=match):
        _small(name, **kwargs)


@pytest.mark.parametrize("value", [-1, 2.0, True])
def test_bad_n_rr_features_raises_with_the_value(value):
    with pytest.raises(
        ValueError,
        match=rf"`n_rr_features` must be an integer >= 0\. Received: n_rr_features={value!r}",
    ):
        registry.build("classifier", "cnn", (96, 1), 3, n_rr_features=value)


def test_rr_features_join_the_head_only_when_asked():
    plain = registry.build("classifier", "ldcnn", (96, 1), 3)
    with_rr = registry.build("classifier", "ldcnn", (96, 1), 3, n_rr_features=3)
    assert [i.name for i in plain.inputs] == ["ecg"]
    assert not {"rr_dense", "rr_join"} & {layer.name for layer in plain.layers}
    assert (
        with_rr.get_layer("rr_join").output.shape[-1]
        == plain.get_layer("gap").output.shape[-1] + with_rr.get_layer("rr_dense").units
    )


def test_bad_n_outputs_raises():
    with pytest.raises(ValueError, match=r"Received: n_outputs=0"):
        registry.build("classifier", "ldcnn", (96, 1), 0)


def test_sequence_arguments_from_yaml_lists_are_accepted():
    model = registry.build("classifier", "cnn", (96, 1), 3, filters=[8, 16])
    assert model.get_layer("block2_conv").filters == 16


def test_conformer_presets_are_ablations():
    shape = SMALL_SHAPES["sequence"]
    models = {
        n: registry.build("classifier", n, shape, 4)
        for n in ("conformer", "conformer_no_attention", "conformer_no_conv", "conformer_cnn_only")
    }
    types = {n: _layer_types(m) for n, m in models.items()}
    for name, model in models.items():
        assert model.name == name
    assert {"MultiHeadAttention", "DepthwiseConv1D"} <= types["conformer"]
    assert "MultiHeadAttention" not in types["conformer_no_attention"]
    assert "DepthwiseConv1D" in types["conformer_no_attention"]
    assert "DepthwiseConv1D" not in types["conformer_no_conv"]
    assert "MultiHeadAttention" in types["conformer_no_conv"]
    assert (
        not {"MultiHeadAttention", "DepthwiseConv1D", "PositionEmbedding"}
        & types["conformer_cnn_only"]
    )
    params = {n: m.count_params() for n, m in models.items()}
    assert params["conformer_cnn_only"] < params["conformer_no_attention"] < params["conformer"]
    assert params["conformer_no_conv"] < params["conformer"]


def test_center_readout_reads_only_the_centre_beat(rng):
    """Without the encoder, beats do not mix: changing the neighbours leaves the output be;
    with it (attention over beats), they do matter."""
    shape = (5, 8, 16, 1)
    x = rng.standard_normal((2, *shape)).astype("float32")
    x2 = x.copy()
    x2[:, [0, 1, 3, 4]] = rng.standard_normal(x2[:, [0, 1, 3, 4]].shape)
    cnn_only = registry.build("classifier", "conformer_cnn_only", shape, 4)
    np.testing.assert_allclose(
        np.asarray(cnn_only(x2, training=False)),
        np.asarray(cnn_only(x, training=False)),
        rtol=1e-5,
        atol=1e-6,
    )
    full = registry.build("classifier", "conformer", shape, 4)
    assert not np.allclose(full(x2, training=False), full(x, training=False), atol=1e-6)
    x3 = x.copy()
    x3[:, 2] = rng.standard_normal(x3[:, 2].shape)
    assert not np.allclose(cnn_only(x3, training=False), cnn_only(x, training=False), atol=1e-6)


def test_conformer_mean_pooling_and_even_beats(rng):
    for pooling, n_beats in (("mean", 3), ("center", 4)):
        model = registry.build(
            "classifier", "conformer", (n_beats, 8, 16, 1), 2, pooling=pooling, n_blocks=1
        )
        out = model(rng.standard_normal((2, n_beats, 8, 16, 1)).astype("float32"))
        assert tuple(out.shape) == (2, 2)


def test_position_embedding_round_trips_its_config():
    layer = PositionEmbedding(initializer="zeros", name="pe")
    clone = PositionEmbedding.from_config(layer.get_config())
    assert clone.name == "pe"
    assert isinstance(clone.initializer, keras.initializers.Zeros)
    with pytest.raises(ValueError, match=r"Received: input_shape=\(None, 8\)"):
        clone.build((None, 8))


# Upper bounds on parameters at the builders' defaults: the MIT-BIH set is meant to be light.
PARAM_BOUNDS = {
    "liteecgnet": ((720, 1), 100_000),
    "ldcnn": ((720, 1), 50_000),
    "bircnn": ((720, 1), 100_000),
    "deepecgnet": ((720, 1), 150_000),
    "ecgnet": ((720, 1), 300_000),
    "se_ecgnet": ((720, 1), 300_000),
    "resnet1d": ((720, 1), 1_000_000),
    "cnn": ((1000, 12), 500_000),
    "cnn_lstm": ((1000, 12), 1_000_000),
    "bilstm": ((1000, 12), 1_000_000),
    "conformer": ((3, 32, 187, 1), 500_000),
}


@pytest.mark.parametrize("name", sorted(PARAM_BOUNDS))
def test_parameter_counts_are_reasonable(name):
    shape, bound = PARAM_BOUNDS[name]
    n_params = registry.build("classifier", name, shape, 5).count_params()
    assert 1_000 < n_params < bound, f"{name}: {n_params:,} parameters on {shape}"
