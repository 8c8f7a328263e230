"""One test over every registered model: builds with defaults, output shape, one training
step with a finite loss, `.keras` save and safe reload with identical outputs, name check, and
`search_space(HyperParameters())` defaults equal to the builder's keyword defaults. The same
contract over every classifier with the RR side input (`n_rr_features=8`, dict input)."""

from __future__ import annotations

import numpy as np
import pytest

keras = pytest.importorskip("keras")
kt = pytest.importorskip("keras_tuner")

from models import registry  # noqa: E402

# Small inputs keep the test fast; widths stay at the builders' (seed-size) defaults.
INPUT_SHAPES = {
    "window": (360, 2),
    "segment": (360, 1),
    "any1d": (200, 12),
    "sequence": (3, 16, 48, 1),
}


N_RR = 8


SLOW_CONTRACTS = {"transformer", "vq_transformer", "conformer_no_conv", "conformer_no_attention"}
"""The slowest builds (15-21 s each on 2 cores), run with --run-slow only: the attention
denoisers are also built, trained and exported by test_denoiser_recipes and test_export, and
the conformer ablations share the conformer's frame, which runs by default."""


def _marks(name):
    return [pytest.mark.slow] if name in SLOW_CONTRACTS else []


def _all(kind):
    return [pytest.param(kind, n, id=f"{kind}-{n}", marks=_marks(n)) for n in registry.names(kind)]


ALL_MODELS = _all("denoiser") + _all("classifier")


def _build(kind, name):
    spec = registry.get(kind, name)
    shape = INPUT_SHAPES[spec.input_kind]
    if kind == "denoiser":
        return spec, shape, spec(shape)
    return spec, shape, spec(shape, 4)


@pytest.mark.parametrize("kind,name", ALL_MODELS)
def test_model_contract(kind, name, tmp_path):
    keras.utils.set_random_seed(0)
    spec, shape, model = _build(kind, name)
    assert model.name == name
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, *shape)).astype("float32")
    if kind == "denoiser":
        y = x
        loss = "mse"
    else:
        y = keras.utils.to_categorical([0, 3], 4).astype("float32")
        loss = "categorical_crossentropy"
    out = model(x, training=False)
    assert tuple(out.shape) == tuple(y.shape)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=loss)
    loss_value = model.train_on_batch(x, y)
    loss_value = np.ravel(loss_value)[0]
    assert np.isfinite(loss_value)
    before = np.asarray(model.predict(x, verbose=0))
    path = tmp_path / f"{name}.keras"
    model.save(path)
    reloaded = keras.models.load_model(path, safe_mode=True)
    after = np.asarray(reloaded.predict(x, verbose=0))
    np.testing.assert_allclose(after, before, rtol=1e-5, atol=1e-5)


SLOW_RR_CONTRACTS = SLOW_CONTRACTS | {"conformer", "bilstm"}
"""Also slow with the rr input (32 s and 16 s): the conformer with rr is built and trained by
test_rhythm_input's sequence run, the bilstm's frame by its default contract."""


@pytest.mark.parametrize("name", [pytest.param(n, marks=[pytest.mark.slow] if n in SLOW_RR_CONTRACTS else [])
                                  for n in registry.names("classifier")])
def test_classifier_with_rr_side_input_contract(name, tmp_path):
    keras.utils.set_random_seed(0)
    spec = registry.get("classifier", name)
    shape = INPUT_SHAPES[spec.input_kind]
    model = spec(shape, 4, n_rr_features=N_RR)
    assert model.name == name
    assert sorted(i.name for i in model.inputs) == ["ecg", "rr"]
    rng = np.random.default_rng(0)
    x = {
        "ecg": rng.standard_normal((2, *shape)).astype("float32"),
        "rr": rng.standard_normal((2, N_RR)).astype("float32"),
    }
    y = keras.utils.to_categorical([0, 3], 4).astype("float32")
    assert tuple(model(x, training=False).shape) == (2, 4)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="categorical_crossentropy")
    loss_value = np.ravel(model.train_on_batch(x, y))[0]
    assert np.isfinite(loss_value)
    before = np.asarray(model.predict(x, verbose=0))
    path = tmp_path / f"{name}_rr.keras"
    model.save(path)
    reloaded = keras.models.load_model(path, safe_mode=True)
    after = np.asarray(reloaded.predict(x, verbose=0))
    np.testing.assert_allclose(after, before, rtol=1e-5, atol=1e-5)
    x_other_rr = {"ecg": x["ecg"], "rr": x["rr"] + 1.0}
    assert not np.allclose(reloaded.predict(x_other_rr, verbose=0), after, atol=1e-6)


@pytest.mark.parametrize("kind,name", ALL_MODELS)
def test_search_space_defaults_equal_builder_defaults(kind, name):
    spec = registry.get(kind, name)
    hp = kt.HyperParameters()
    sampled = spec.search_space(hp)
    defaults = spec.default_kwargs()
    assert sampled, f"{name}: search_space returned nothing"
    for key, value in sampled.items():
        assert key in defaults, f"{name}: search_space key {key!r} is not a builder argument"
        assert value == defaults[key], f"{name}: {key} default {value!r} != builder {defaults[key]!r}"


def test_unknown_model_fails_loudly():
    with pytest.raises(KeyError, match="unknown classifier 'nope'; registered:"):
        registry.get("classifier", "nope")
    with pytest.raises(KeyError, match="unknown model kind"):
        registry.get("widget", "cnn")
