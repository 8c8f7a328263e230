"""Cost profiles (on small models built here) and every plot writing a valid PNG."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from pipeline import cost as cost_cmd
from pipeline.evaluation import metrics as M
from pipeline.evaluation import plots
from pipeline.serving import cost

ROOT = Path(__file__).resolve().parents[1]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def tiny_classifier(input_shape, n_outputs, *, filters=8):
    """Conv1D(filters, 5) -> global average -> Dense: FLOPs countable by hand."""
    import keras

    inputs = keras.Input(input_shape, name="ecg")
    x = keras.layers.Conv1D(filters, 5, name="conv")(inputs)
    x = keras.layers.GlobalAveragePooling1D(name="gap")(x)
    outputs = keras.layers.Dense(n_outputs, activation="softmax", name="out")(x)
    return keras.Model(inputs, outputs, name="tiny_classifier")


def _tiny_flops(n_samples, filters=8, n_out=5):
    steps = n_samples - 4
    conv = 2 * 5 * 1 * filters * steps + filters * steps  # multiply-adds + bias
    mean = filters * steps  # global average (the profiler counts reductions)
    dense = 2 * filters * n_out + n_out
    softmax = 5 * n_out  # the profiler's Softmax rule
    return conv + mean + dense + softmax, conv + dense  # (profiler, layer count)


# ------------------------------------------------------------------------------ cost


@pytest.fixture(scope="module")
def keras():
    return pytest.importorskip("keras")


def test_profile_model_tiny(keras):
    keras.utils.set_random_seed(0)
    model = tiny_classifier((200, 1), 5)
    prof = cost.measure_model(model, (200, 1), batch_size=8, runs=3, warmup=1)
    assert prof["params_total"] == (5 * 1 * 8 + 8) + (8 * 5 + 5)
    assert prof["params_trainable"] == prof["params_total"]
    assert prof["params_non_trainable"] == 0
    assert prof["size_bytes"] > 0
    assert prof["flops_method"] == "tf_profiler"
    assert prof["flops"] == _tiny_flops(200)[0]
    assert set(prof["latency_ms"]) == {"1", "8"}
    b8 = prof["latency_ms"]["8"]
    assert b8["n_runs"] == 3 and b8["median_ms"] > 0
    assert b8["per_example_ms"] == pytest.approx(b8["median_ms"] / 8)
    json.dumps(prof)  # JSON-ready


def test_layer_count_fallback_when_profiler_fails(keras, monkeypatch):
    model = tiny_classifier((200, 1), 5)

    def broken(*a, **k):
        raise RuntimeError("no profiler")

    monkeypatch.setattr(cost, "profiler_flops", broken)
    flops, method, note = cost.count_flops(model, (200, 1))
    assert (flops, method) == (_tiny_flops(200)[1], "layers")
    assert "RuntimeError" in note


def test_recurrent_layers_counted_by_formula(keras):
    inputs = keras.Input((50, 3))
    x = keras.layers.Bidirectional(keras.layers.LSTM(4, return_sequences=True))(inputs)
    x = keras.layers.GRU(2)(x)
    model = keras.Model(inputs, keras.layers.Dense(3)(x))
    lstm = 50 * (2 * 4 * 4 * (3 + 4) + 4 * 4 + 4 * 4)  # matmuls, biases, gating; per direction
    gru = 50 * (2 * 3 * 2 * (8 + 2) + 2 * 3 * 2 + 5 * 2)  # reset_after: two bias vectors
    assert cost.recurrent_flops(model) == (2 * lstm + gru, [])
    flops, method, _ = cost.count_flops(model, (50, 3))
    assert method == "tf_profiler+rnn_formula"
    assert flops >= 2 * lstm + gru


def test_einsum_gets_a_flops_rule(keras):
    inputs = keras.Input((32, 8))
    model = keras.Model(inputs, keras.layers.EinsumDense("abc,cd->abd", (None, 16))(inputs))
    assert cost.count_flops(model, (32, 8))[:2] == (2 * 32 * 8 * 16, "tf_profiler")


def test_profile_in_subprocess_reports_memory():
    prof = cost.measure_model_subprocess(
        "classifier",
        None,
        (120, 1),
        3,
        {"filters": 4},
        builder=f"{__file__}:tiny_classifier",
        batch_size=4,
        runs=3,
        warmup=1,
        threads=1,
        timeout_s=300,
    )
    assert prof["name"] == "tiny_classifier" and prof["kwargs"] == {"filters": 4}
    assert prof["flops"] == _tiny_flops(120, filters=4, n_out=3)[0]
    assert prof["intra_op_threads"] == 1
    assert 0 < prof["rss_baseline_mb"] < prof["peak_rss_mb"]
    assert prof["memory_method"].startswith("/proc/self/status")


def test_subprocess_failure_is_one_line_error():
    with pytest.raises(
        cost.PipelineError,
        match=r"profiling failed \(exit 2\): error: --builder: .* no function 'no_such_builder'",
    ):
        cost.measure_model_subprocess(
            "classifier",
            None,
            (64, 1),
            builder=f"{__file__}:no_such_builder",
            runs=1,
            warmup=0,
            timeout_s=300,
        )


def test_cli_all_writes_table_and_json(tmp_path, monkeypatch):
    from models import registry

    monkeypatch.setattr(registry, "names", lambda kind: ["good", "bad"])

    def fake(kind, name, shape, n_outputs, kwargs, **kw):
        if name == "bad":
            raise cost.PipelineError("classifier 'bad': profiling failed (exit 1): boom")
        return {
            "name": name,
            "kind": kind,
            "input_shape": [720, 1],
            "params_trainable": 90,
            "params_total": 93,
            "size_bytes": 2048,
            "flops": 1_500_000,
            "flops_method": "tf_profiler",
            "batch_size": kw["batch_size"],
            "latency_ms": {
                "1": {"median_ms": 1.5, "per_example_ms": 1.5},
                "16": {"median_ms": 8.0, "per_example_ms": 0.5},
            },
            "peak_rss_mb": 700.0,
            "inference_peak_delta_mb": 3.0,
        }

    monkeypatch.setattr(cost, "measure_model_subprocess", fake)
    out = tmp_path / "cost" / "table.md"
    rc = cost_cmd.main(["--kind", "classifier", "--all", "--batch", "16", "--out", str(out)])
    assert rc == 1  # one model failed
    md = out.read_text()
    assert "| good | 720x1 | 90 / 93 | 2.0 | 1.50 M | 1.50 | 0.500 | 700 | 3.0 |" in md
    assert "| bad | | error: classifier 'bad': profiling failed" in md
    data = json.loads(out.with_suffix(".json").read_text())
    assert [r["name"] for r in data["models"]] == ["good", "bad"]
    assert data["meta"]["batch_size"] == 16


def test_cli_needs_a_model_choice():
    with pytest.raises(SystemExit):
        cost_cmd.main(["--kind", "classifier"])


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["classifier", "denoiser"])
def test_profile_every_registered_model(kind, tmp_path):
    out = tmp_path / f"{kind}.md"
    assert cost_cmd.main(["--kind", kind, "--all", "--runs", "3", "--out", str(out)]) == 0
    rows = json.loads(out.with_suffix(".json").read_text())["models"]
    assert all(r["flops"] and r["params_total"] > 0 for r in rows)


# ----------------------------------------------------------------------------- plots


def _assert_png(path: Path, returned: Path) -> None:
    assert Path(returned) == path
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE and len(data) > 1000
    assert not [p for p in path.parent.iterdir() if p.name.endswith(".tmp")]


def test_plots_module_does_not_import_matplotlib():
    code = "import sys, pipeline.evaluation.plots; print('matplotlib' in sys.modules)"
    res = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(ROOT)},
        check=True,
    )
    assert res.stdout.strip() == "False"


@pytest.fixture(scope="module")
def clf():
    rng = np.random.default_rng(0)
    classes = ("N", "S", "V", "F", "Q")
    y = rng.choice(5, 300, p=[0.6, 0.1, 0.15, 0.1, 0.05])
    logits = rng.normal(size=(300, 5)) + 2.5 * np.eye(5)[y]
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    return classes, y, probs, M.single_label_metrics(y, probs, classes)


def test_plot_history(tmp_path):
    hist = {
        "loss": [1.2, 0.8, 0.6, 0.5],
        "val_loss": [1.3, 0.9, 0.8, 0.85],
        "accuracy": [0.5, 0.7, 0.8, 0.85],
        "val_accuracy": [0.45, 0.65, 0.7, 0.69],
        "learning_rate": [1e-3, 1e-3, 5e-4, 2.5e-4],
    }
    out = tmp_path / "history.png"
    _assert_png(out, plots.plot_history(hist, out, title="liteecgnet"))
    with pytest.raises(ValueError, match="no metric to plot"):
        plots.plot_history({"lr": [1.0]}, tmp_path / "x.png")


def test_plot_confusion_matrix(tmp_path, clf):
    classes, _, _, m = clf
    out = tmp_path / "nested" / "cm.png"
    _assert_png(out, plots.plot_confusion_matrix(m["confusion_matrix"], classes, out))
    with pytest.raises(ValueError, match=r"`cm` must be \(5, 5\)"):
        plots.plot_confusion_matrix(np.eye(3), classes, tmp_path / "bad.png")


def test_plot_roc_pr_single_and_multilabel(tmp_path, clf):
    classes, y, probs, _ = clf
    out = tmp_path / "roc.png"
    _assert_png(out, plots.plot_roc_pr(y, probs, classes, out))
    yml = (np.random.default_rng(1).random((100, 3)) < 0.3).astype(int)
    yml[:, 2] = 0  # a class without positives: listed, no curve
    out2 = tmp_path / "roc_ml.png"
    _assert_png(
        out2,
        plots.plot_roc_pr(
            yml, np.random.default_rng(2).random((100, 3)), ("NORM", "MI", "HYP"), out2
        ),
    )


def test_plot_per_class_bars(tmp_path, clf):
    classes, _, _, m = clf
    out = tmp_path / "bars.png"
    _assert_png(out, plots.plot_per_class_bars(m, out, title="per class"))


def _denoise_rows():
    rows = []
    for model, gain in (("unet1d", 8.0), ("cnn_dae", 6.0), ("lstm", 4.0)):
        for noise in ("em", "ma", "bw"):
            for snr in (0, 6, 12, 24):
                imp = gain * (1 - snr / 30) + {"em": 0.0, "ma": 0.5, "bw": 1.0}[noise]
                rows.append(
                    {
                        "model": model,
                        "noise_type": noise,
                        "input_snr_db": snr,
                        "snr_improvement_db": imp,
                        "prd": 60 * 10 ** (-(snr + imp) / 20),
                        "correlation": 1 - 0.5 * 10 ** (-(snr + imp) / 10),
                    }
                )
    return rows


def test_plot_denoise_figures(tmp_path):
    rows = _denoise_rows()
    out = tmp_path / "by_level.png"
    _assert_png(out, plots.plot_denoise_by_noise_level(rows, out))
    out2 = tmp_path / "by_noise.png"
    unet = [r for r in rows if r["model"] == "unet1d"]
    _assert_png(out2, plots.plot_denoise_by_noise_level(unet, out2, group_by="noise_type"))
    out3 = tmp_path / "grid.png"
    _assert_png(out3, plots.plot_denoise_metrics_grid(rows, out3))
    with pytest.raises(ValueError, match="`rows` is empty"):
        plots.plot_denoise_metrics_grid([], out3)


def test_plot_denoise_overlays(tmp_path):
    rng = np.random.default_rng(0)
    t = np.arange(1440) / 360.0
    clean = np.stack([np.sin(2 * np.pi * 1.1 * t + k) for k in range(3)])[:, :, None]
    clean = np.concatenate([clean, 0.5 * clean], axis=-1)  # two leads
    noisy = clean + 0.3 * rng.normal(size=clean.shape)
    denoised = clean + 0.05 * rng.normal(size=clean.shape)
    out = tmp_path / "overlay.png"
    _assert_png(
        out, plots.plot_denoise_overlays(noisy, clean, denoised, out, titles=["100", "103", "105"])
    )
    with pytest.raises(ValueError, match="same non-empty shape"):
        plots.plot_denoise_overlays(noisy, clean[:, :100], denoised, tmp_path / "bad.png")
