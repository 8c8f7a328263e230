"""Denoiser recipes (issue 16): the shared output block of every denoiser (``output_mode``:
``direct``, ``residual``, ``gated``) and the spectral term of the training loss
(``train.spectral_loss_weight``).

The recipes' promises are tested on built models: a residual model whose noise head is zero and
a gated model whose gate is closed return their input exactly (bit for bit, float32); the
outputs are ``x - n_hat`` and ``x - g * n_hat``; every variant reloads in safe mode with the
same outputs; ``direct`` (the default) builds the same graph as before the recipes existed.
"""

from __future__ import annotations

import numpy as np
import pytest

keras = pytest.importorskip("keras")
kt = pytest.importorskip("keras_tuner")

from models import registry  # noqa: E402
from models.denoisers.common import GATE_LAYER, NOISE_LAYER, OUTPUT_MODES  # noqa: E402

SHAPE = (360, 2)

# Narrow widths: every denoiser builds and runs in well under a second on CPU.
SMALL = {
    "lstm": dict(units=(8,)),
    "rnn": dict(units=(8, 8), bidirectional=True),
    "cnn": dict(filters=(8, 8)),
    "cnn_dae": dict(filters=(4, 8)),
    "transformer": dict(d_model=16, num_heads=2, num_layers=1, ff_mult=2),
    "vq_transformer": dict(
        d_model=16, num_heads=2, num_layers=1, ff_mult=2, embed_dim=8, num_codes=16
    ),
    "unet1d": dict(filters=(4, 8), dilations=(1,)),
}
DENOISERS = registry.names("denoiser")


def _head_layer(model):
    """The layer that holds the noise head's weights (the patch decoder for Transformers)."""
    noise = model.get_layer(NOISE_LAYER)
    return noise if noise.weights else model.get_layer("patch_decoder")


def _build(name, output_mode):
    keras.utils.set_random_seed(0)
    return registry.build("denoiser", name, SHAPE, output_mode=output_mode, **SMALL[name])


def _randomize(layer, seed, scale=0.5):
    rng = np.random.default_rng(seed)
    layer.set_weights([rng.normal(0.0, scale, w.shape).astype("float32") for w in layer.weights])


def _windows(n=3, seed=1):
    return np.random.default_rng(seed).standard_normal((n, *SHAPE)).astype("float32")


def test_every_registered_denoiser_has_narrow_test_widths():
    assert sorted(SMALL) == DENOISERS


EXACT_CASES = [pytest.param(n, marks=pytest.mark.slow) if n == "rnn" else n for n in DENOISERS]
"""The rnn's builds are the slowest (18 s and 12 s); the lstm shares its recurrent stack."""


@pytest.mark.parametrize("name", EXACT_CASES)
def test_gated_variant_with_gate_closed_returns_its_input_exactly(name):
    model = _build(name, "gated")
    _randomize(_head_layer(model), seed=2)  # a noise head that predicts non-zero noise
    gate = model.get_layer(GATE_LAYER)
    gate.kernel.assign(np.zeros(gate.kernel.shape, "float32"))
    gate.bias.assign(np.full(gate.bias.shape, -1e4, "float32"))
    x = _windows()
    noise = keras.Model(model.input, model.get_layer(NOISE_LAYER).output)(x).numpy()
    assert np.abs(noise).max() > 0.1
    np.testing.assert_array_equal(model(x, training=False).numpy(), x)
    np.testing.assert_array_equal(model.predict(x, verbose=0), x)


@pytest.mark.parametrize("name", EXACT_CASES)
def test_residual_variant_with_noise_head_zeroed_returns_its_input_exactly(name):
    model = _build(name, "residual")
    head = _head_layer(model)
    _randomize(head, seed=3)
    x = _windows()
    noise = keras.Model(model.input, model.get_layer(NOISE_LAYER).output)(x).numpy()
    out = model(x, training=False).numpy()
    assert np.abs(out - x).max() > 0.1
    np.testing.assert_allclose(out, x - noise, rtol=0, atol=1e-6)
    head.set_weights([np.zeros(w.shape, "float32") for w in head.weights])
    np.testing.assert_array_equal(model(x, training=False).numpy(), x)
    np.testing.assert_array_equal(model.predict(x, verbose=0), x)


@pytest.mark.parametrize("name", DENOISERS)
def test_gated_output_is_input_minus_gate_times_noise(name):
    model = _build(name, "gated")
    _randomize(_head_layer(model), seed=4)
    _randomize(model.get_layer(GATE_LAYER), seed=5, scale=0.2)
    x = _windows()
    probe = keras.Model(
        model.input,
        [model.get_layer("pass_gate_reshape").output, model.get_layer(NOISE_LAYER).output],
    )
    gate, noise = (t.numpy() for t in probe(x))
    assert gate.shape == (x.shape[0], 1, SHAPE[1])
    assert np.all((gate > 0) & (gate < 1)) and np.ptp(gate) > 0
    np.testing.assert_allclose(model(x, training=False).numpy(), x - gate * noise, atol=1e-6)


@pytest.mark.parametrize("name", DENOISERS)
@pytest.mark.parametrize("output_mode", ["residual", "gated"])
def test_untrained_residual_and_gated_variants_are_the_identity(name, output_mode):
    x = _windows()
    np.testing.assert_array_equal(_build(name, output_mode)(x, training=False).numpy(), x)


@pytest.mark.parametrize("output_mode", OUTPUT_MODES)
@pytest.mark.parametrize("name", DENOISERS)
def test_every_output_mode_saves_and_reloads_in_safe_mode(name, output_mode, tmp_path):
    model = _build(name, output_mode)
    if output_mode != "direct":
        _randomize(_head_layer(model), seed=6)
    if output_mode == "gated":
        _randomize(model.get_layer(GATE_LAYER), seed=7, scale=0.2)
    x = _windows()
    before = model.predict(x, verbose=0)
    path = tmp_path / f"{name}_{output_mode}.keras"
    model.save(path)
    reloaded = keras.models.load_model(path, safe_mode=True)
    assert reloaded.name == name
    np.testing.assert_array_equal(reloaded.predict(x, verbose=0), before)


@pytest.mark.parametrize("name", DENOISERS)
def test_direct_output_is_the_default_and_the_seed_graph(name):
    keras.utils.set_random_seed(0)
    default = registry.build("denoiser", name, SHAPE, **SMALL[name])
    direct = _build(name, "direct")
    assert default.get_config() == direct.get_config()
    layer_names = {layer.name for layer in default.layers}
    assert "output" in layer_names
    assert NOISE_LAYER not in layer_names and GATE_LAYER not in layer_names
    assert registry.get("denoiser", name).default_kwargs()["output_mode"] == "direct"


@pytest.mark.parametrize("name", DENOISERS)
def test_unknown_output_mode_is_refused_with_the_value(name):
    with pytest.raises(
        ValueError,
        match=r"`output_mode` must be one of \['direct', 'residual', 'gated'\]\. "
        r"Received: output_mode='x'",
    ):
        registry.build("denoiser", name, SHAPE, output_mode="x", **SMALL[name])


def test_non_string_output_mode_is_refused_with_the_value():
    with pytest.raises(ValueError, match=r"Received: output_mode=\['gated'\]"):
        registry.build("denoiser", "cnn", SHAPE, output_mode=["gated"], **SMALL["cnn"])


@pytest.mark.parametrize("name", DENOISERS)
def test_search_space_offers_every_output_mode_with_direct_as_default(name):
    hp = kt.HyperParameters()
    assert registry.get("denoiser", name).search_space(hp)["output_mode"] == "direct"
    (choice,) = [p for p in hp.space if p.name == "output_mode"]
    assert list(choice.values) == list(OUTPUT_MODES)


@pytest.mark.parametrize("name", ["lstm", "rnn"])
def test_recurrent_gated_variant_keeps_variable_length_and_one_lead(name):
    model = registry.build("denoiser", name, (None, 1), output_mode="gated", units=(4,))
    x = np.random.default_rng(0).standard_normal((2, 50, 1)).astype("float32")
    np.testing.assert_array_equal(model(x).numpy(), x)


def test_unet1d_gated_replaces_its_bottleneck_gate():
    model = _build("unet1d", "gated")
    names = {layer.name for layer in model.layers}
    assert GATE_LAYER in names and "gate" not in names and "correction" not in names


# ------------------------------------------------------------------ spectral loss term


def _known_pair():
    t = np.arange(720) / 360.0
    clean = np.stack([np.sin(2 * np.pi * 5 * t), np.cos(2 * np.pi * 3 * t)], -1)[None]
    rng = np.random.default_rng(0)
    denoised = 0.8 * clean + 0.05 * rng.standard_normal(clean.shape)
    return clean.astype("float32"), denoised.astype("float32")


def _loss_for(train):
    from pipeline.core.config import load_config
    from pipeline.data.tasks import get_task
    from pipeline.training.trainer import make_loss

    cfg = load_config(None, {"train": train}, apply_env=False)
    return make_loss(get_task("mitdb_denoise"), cfg)


@pytest.mark.parametrize("denoise_loss", ["mse_mae", "snr_db"])
def test_spectral_loss_weight_adds_the_spectral_term_to_the_time_loss(denoise_loss):
    from pipeline.training.losses import SpectralLoss, WithSpectralTerm

    clean, denoised = _known_pair()
    loss = _loss_for({"denoise_loss": denoise_loss, "spectral_loss_weight": 0.5})
    time_loss = _loss_for({"denoise_loss": denoise_loss})
    assert isinstance(loss, WithSpectralTerm) and loss.spectral_weight == 0.5
    assert type(loss.time_loss) is type(time_loss)
    spectral = float(SpectralLoss()(clean, denoised))
    assert spectral > 0.05
    want = float(time_loss(clean, denoised)) + 0.5 * spectral
    assert float(loss(clean, denoised)) == pytest.approx(want, rel=1e-5)


def test_zero_spectral_loss_weight_keeps_the_old_loss_objects():
    from pipeline.training.losses import DenoiseLoss, SNRLoss

    assert type(_loss_for({})) is DenoiseLoss
    assert type(_loss_for({"spectral_loss_weight": 0.0})) is DenoiseLoss
    assert type(_loss_for({"denoise_loss": "snr_db"})) is SNRLoss
    assert _loss_for({"mae_weight": 0.7}).mae_weight == pytest.approx(0.7)


def test_negative_spectral_loss_weight_is_refused_naming_the_key():
    from pipeline.core.config import ConfigError, load_config

    with pytest.raises(ConfigError, match=r"spectral_loss_weight.*must be >= 0.*got -0\.5"):
        load_config(None, {"train": {"spectral_loss_weight": -0.5}}, apply_env=False)


# ------------------------------------------------------------------ throughput benchmark


def test_denoiser_benchmark_has_a_cpu_width_for_every_denoiser():
    from benchmarks import bench_denoisers

    assert sorted(bench_denoisers.CPU_WIDTHS) == DENOISERS
    for name, kwargs in bench_denoisers.CPU_WIDTHS.items():
        registry.build("denoiser", name, bench_denoisers.WINDOW_SHAPE, **kwargs)


def test_denoiser_benchmark_refuses_an_unknown_model(tmp_path, capsys):
    from benchmarks import bench_denoisers
    from pipeline.core.io_utils import run_cli

    out = tmp_path / "denoisers.md"
    argv = ["--models", "nope", "--out", str(out)]
    assert run_cli(bench_denoisers.main, argv) == 2
    assert "error: unknown denoiser(s) ['nope']; known: ['cnn'," in capsys.readouterr().err
    assert not out.exists()


def test_denoiser_benchmark_refuses_a_non_positive_duration(tmp_path, capsys):
    from benchmarks import bench_denoisers
    from pipeline.core.io_utils import run_cli

    argv = ["--seconds", "0", "--out", str(tmp_path / "denoisers.md")]
    assert run_cli(bench_denoisers.main, argv) == 2
    assert "error: --seconds must be > 0" in capsys.readouterr().err
    assert not (tmp_path / "denoisers.md").exists()
