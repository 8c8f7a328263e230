"""Classifier-specific contract (the shared build/train/save test is in test_models.py):
the task's output activation is honoured, argument and input-shape errors are clear, the
conformer presets are real ablations, the centre-beat readout reads the centre beat, the
light MIT-BIH models stay light, the frame every builder shares (signature, docstring, argument
bundles, refused bodies) holds, and every architecture matches its stored fingerprint."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

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


# The frame every builder shares (models/classifiers/builder.py) and its argument bundles.


@pytest.mark.parametrize(
    "name,kwargs,match",
    [
        ("se_ecgnet", {"pool_size": 0}, r"`pool_size` must be an integer >= 1\. .*pool_size=0"),
        ("cnn", {"dense_units": 0}, r"`dense_units` must be .*Received: dense_units=0"),
        ("deepecgnet", {"head_dropout": 1.5}, r"`head_dropout` must .*Received: head_dropout=1\.5"),
        ("conformer", {"ff_expansion": 0}, r"Received: ff_expansion=0"),
        ("conformer", {"d_model": 30}, r"Received: d_model=30, num_heads=4"),
        ("liteecgnet", {"stem_stride": 0}, r"Received: stem_stride=0"),
    ],
)
def test_bad_bundle_arguments_raise_with_the_value(name, kwargs, match):
    with pytest.raises(ValueError, match=match):
        _small(name, **kwargs)


def test_unknown_keyword_argument_raises_naming_it():
    with pytest.raises(TypeError, match=r"unexpected keyword argument 'filterz'"):
        registry.build("classifier", "cnn", (96, 1), 3, filterz=(8, 16))
    with pytest.raises(TypeError, match=r"unexpected keyword argument 'dense_units'"):
        registry.build("classifier", "deepecgnet", (96, 1), 3, dense_units=32)


@pytest.mark.parametrize("name", BASE_MODELS)
def test_builder_signature_and_docstring_show_every_argument(name):
    import inspect

    build = registry.get("classifier", name).build
    params = inspect.signature(build).parameters
    assert list(params)[:2] == ["input_shape", "n_outputs"]
    assert list(params)[-2:] == ["n_rr_features", "output_activation"]
    assert params["n_rr_features"].default == 0
    assert params["output_activation"].default == "softmax"
    assert build.__name__ == "build" and build.__module__ == f"models.classifiers.{name}"
    doc = build.__doc__
    for arg in params:
        assert f"{arg}:" in doc or f"{arg}," in doc, f"{name}: {arg} is not documented"
    assert f"``keras.Model`` named ``{name}``" in doc


def test_head_arguments_follow_the_declared_head():
    from models.classifiers import cnn, deepecgnet

    cnn_defaults = registry.get("classifier", "cnn").default_kwargs()
    deep_defaults = registry.get("classifier", "deepecgnet").default_kwargs()
    assert (cnn_defaults["dense_units"], cnn_defaults["dropout"]) == (128, 0.5)
    assert cnn_defaults["filters"] == cnn.CONV.filters
    assert "dense_units" not in deep_defaults
    assert deep_defaults["head_dropout"] == deepecgnet.HEAD.dropout == 0.3
    assert deep_defaults["dropout"] == 0.1  # the transformer's own dropout


def test_conv_stack_bundle_checks_and_keeps_a_tuple():
    from models.classifiers import blocks

    conv = blocks.ConvStack(filters=[8, 16], kernel_size=3, pool_size=2)
    assert conv.filters == (8, 16)
    assert conv.replaced({"kernel_size": 5}).kernel_size == 5
    with pytest.raises(ValueError, match=r"Received: filters=\[8, 0\]"):
        blocks.ConvStack(filters=[8, 0], kernel_size=3, pool_size=2)
    with pytest.raises(ValueError, match=r"Received: kernel_size=0"):
        conv.replaced({"kernel_size": 0})
    with pytest.raises(ValueError, match=r"`head_dropout` must be a number in \[0, 1\)"):
        blocks.Head(dropout=1.0, dropout_name="head_dropout")


def test_widths_space_keeps_the_default_ratios():
    kt = pytest.importorskip("keras_tuner")
    from models.classifiers import blocks

    default = (32, 64, 96, 128)
    assert blocks.widths_space(kt.HyperParameters(), default, (16, 32)) == default
    hp = kt.HyperParameters()
    hp.Fixed("filters_base", 48)
    assert blocks.widths_space(hp, (32, 64, 96, 128), (16, 32, 48)) == (48, 96, 144, 192)


def test_body_that_skips_its_bundle_is_refused():
    from models.classifiers import blocks
    from models.classifiers.builder import classifier

    conv = blocks.ConvStack(filters=(8,), kernel_size=3, pool_size=2)

    def body(ecg, *, units=8):
        return ecg

    with pytest.raises(TypeError, match=r"then its bundles \['conv'\].*Received: .*body\("):
        classifier("never_registered", dict, head=blocks.Head(), conv=conv)(body)
    assert "never_registered" not in registry.names("classifier")


def test_body_keyword_that_repeats_a_bundle_field_is_refused():
    from models.classifiers import blocks
    from models.classifiers.builder import classifier

    conv = blocks.ConvStack(filters=(8,), kernel_size=3, pool_size=2)

    def body(ecg, conv, *, filters=8):
        return ecg

    with pytest.raises(ValueError, match=r"duplicate parameter name: 'filters'"):
        classifier("never_registered", dict, head=blocks.Head(), conv=conv)(body)
    assert "never_registered" not in registry.names("classifier")


# Architecture fingerprints: layer names, types and weight shapes, parameter count, input names
# and output shape of every registered classifier on SMALL_SHAPES, without and with RR
# features. The file was written from the code of commit 10e38f7 (before the builders were made
# declarative) with `write_architecture_fingerprints()`; rewrite it the same way only when an
# architecture is meant to change, and say so in the commit.
FINGERPRINTS = Path(__file__).with_name("classifier_architectures.json")


def architecture_fingerprint(model) -> dict:
    # Top-level layers only: those inside MultiHeadAttention and wrappers take process-wide
    # automatic names; their weights are counted in their parent's shapes.
    rows = [
        [layer.name, type(layer).__name__, [list(w.shape) for w in layer.weights]]
        for layer in model.layers
    ]
    digest = hashlib.sha256(json.dumps(rows).encode()).hexdigest()
    return {
        "layers": digest,
        "n_layers": len(rows),
        "params": model.count_params(),
        "inputs": [i.name for i in model.inputs],
        "output_shape": list(model.outputs[0].shape),
    }


def _fingerprints(name) -> dict:
    models = {n_rr: _small(name, n_rr_features=n_rr)[0] for n_rr in (0, 8)}
    return {f"rr{n_rr}": architecture_fingerprint(model) for n_rr, model in models.items()}


def write_architecture_fingerprints(path=FINGERPRINTS) -> None:
    table = {name: _fingerprints(name) for name in registry.names("classifier")}
    path.write_text(json.dumps(table, indent=1, sort_keys=True) + "\n")


@pytest.mark.parametrize("name", registry.names("classifier"))
def test_architecture_matches_its_fingerprint(name):
    expected = json.loads(FINGERPRINTS.read_text())
    assert name in expected, f"{name}: no fingerprint in {FINGERPRINTS.name}"
    assert _fingerprints(name) == expected[name]
