"""``pipeline.export``: SavedModel, TFLite (float and int8) and ONNX parity with Keras for a
classifier and a denoiser of each family (convolutional, recurrent, attention).

The convolutional runs are trained through the real stages (_trained_runs.py); the other
families reuse those runs' config, split and normalization with an untrained model of the
family (parity does not depend on training). Parity runs on the run's validation files and
int8 calibration on its training files.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("tensorflow")

import _trained_runs as TR  # noqa: E402

from pipeline import export as export_cmd  # noqa: E402
from pipeline.core.io_utils import PipelineError, run_cli  # noqa: E402
from pipeline.serving import export as E  # noqa: E402

HAS_ONNX = E.onnx_available() is None
FLOAT_TOL = 1e-4

# family -> (kind, model, kwargs, source run)
MODELS = {
    "conv-classifier": ("classifier", "ldcnn", None, "segments"),
    "conv-denoiser": ("denoiser", "cnn_dae", None, "denoise"),
    "recurrent-classifier": ("classifier", "bilstm", {"units": [4, 4], "dense_units": 8}, "segments"),
    "recurrent-denoiser": ("denoiser", "rnn", {"units": [4]}, "denoise"),
    "attention-classifier": ("classifier", "deepecgnet",
                             {"filters": [8, 8], "d_model": 16, "num_heads": 2, "ff_dim": 16},
                             "segments"),
    "attention-denoiser": ("denoiser", "transformer",
                           {"d_model": 16, "num_heads": 2, "num_layers": 1, "ff_mult": 2},
                           "denoise"),
}


def _run(tmp_path_factory, family):
    kind, name, kwargs, src = MODELS[family]
    run = TR.trained_run(tmp_path_factory, src)
    if kwargs is None:
        return run
    return TR.clone_run(run, tmp_path_factory.mktemp(f"run_{name}"), kind, name, kwargs)


def _check(entry, kind, tol):
    assert entry["ok"], entry
    p = entry["parity"]
    assert p["data"].startswith("val files of splits.json")
    assert p["max_abs_diff"] <= tol, p
    if kind == "classifier":
        assert {"accuracy_keras", "accuracy_export", "accuracy_drop"} <= set(p)
    else:
        assert {"mse_keras", "mse_export"} <= set(p)
    return p


@pytest.mark.parametrize("family", [
    "conv-classifier",
    "conv-denoiser",
    "recurrent-classifier",
    "recurrent-denoiser",
    "attention-classifier",
    "attention-denoiser",
])
def test_export_parity_per_family(tmp_path_factory, family):
    kind = MODELS[family][0]
    run = _run(tmp_path_factory, family)
    n = 24 if "recurrent" in family else 64  # recurrent TFLite runs one example at a time
    common = dict(parity_examples=n, calibration_examples=32)
    e = E.export_run(run, "tflite", **common)
    p = _check(e, kind, FLOAT_TOL)
    if kind == "classifier":
        assert p["argmax_agreement"] == 1.0
    assert e["batch"] == ("fixed 1" if "recurrent" in family else "dynamic")

    q = E.export_run(run, "tflite", int8=True, **common)
    pq = _check(q, kind, np.inf)
    assert np.isfinite(pq["max_abs_diff"])
    if "recurrent" in family:
        assert q["quantization"].startswith("dynamic range")
    else:
        assert q["quantization"].startswith("int8 weights and activations, calibrated on 32")
    if kind == "classifier":
        assert pq["accuracy_drop"] == pytest.approx(pq["accuracy_keras"] - pq["accuracy_export"])

    if HAS_ONNX:
        _check(E.export_run(run, "onnx", **common), kind, FLOAT_TOL)
    record = json.loads((run / "export" / "export.json").read_text())
    assert {"tflite", "tflite_int8"} <= set(record)
    assert (run / "export" / "model.tflite").is_file()


def test_savedmodel_cli_and_argument_errors(tmp_path_factory, capsys):
    run = TR.trained_run(tmp_path_factory, "segments")
    assert export_cmd.main(["--run", str(run), "--format", "savedmodel", "--parity-examples", "32"]) == 0
    out = capsys.readouterr().out
    assert "savedmodel" in out and "max |diff|" in out
    rec = json.loads((run / "export" / "export.json").read_text())["savedmodel"]
    assert rec["ok"] and rec["parity"]["max_abs_diff"] <= FLOAT_TOL
    loaded = E.SavedModelRunner(run / "export" / "savedmodel")
    x = np.zeros((3, 720, 1), np.float32)
    assert loaded(x).shape == (3, 5)
    with pytest.raises(PipelineError, match="--int8 applies to --format tflite only"):
        E.export_run(run, "onnx", int8=True)
    assert run_cli(export_cmd.main, ["--run", str(run), "--format", "savedmodel", "--int8"]) == 2
    assert "--int8 applies to --format tflite only" in capsys.readouterr().err


def test_unsupported_ops_fail_with_a_clear_message():
    """keras.ops.argmin's negative-zero handling emits Bitcast + BitwiseAnd, which have no TFLite
    built-in or ONNX equivalent: the error names the op (why VectorQuantizer uses tf.argmin)."""
    import keras

    class ArgminLayer(keras.layers.Layer):
        def call(self, x):
            idx = keras.ops.argmin(x, axis=-1)
            return keras.ops.cast(keras.ops.expand_dims(idx, -1), "float32") + x[..., :1]

    inputs = keras.Input((16, 4))
    model = keras.Model(inputs, ArgminLayer(name="argmin")(inputs), name="argmin_model")
    with pytest.raises(E.ExportError, match=r"TensorFlow op\(s\) \['BitwiseAnd'\] are not TFLite built-ins"):
        E.convert_tflite(model, (16, 4))
    if HAS_ONNX:
        with pytest.raises(E.ExportError, match=r"TensorFlow op\(s\) \['Bitcast'"):
            E.convert_onnx(model, (16, 4))


def test_vq_transformer_exports_to_tflite(tmp_path_factory):
    src = TR.trained_run(tmp_path_factory, "denoise")
    run = TR.clone_run(src, tmp_path_factory.mktemp("run_vq"), "denoiser", "vq_transformer",
                       {"embed_dim": 8, "num_codes": 16, "d_model": 16, "num_heads": 2,
                        "num_layers": 1, "ff_mult": 2})
    E.export_run(run, "tflite", parity_examples=8)
    rec = json.loads((run / "export" / "export.json").read_text())
    assert rec["tflite"]["ok"] is True and rec["tflite"]["parity"]["max_abs_diff"] < 1e-3


def test_onnx_missing_converter_message(monkeypatch):
    monkeypatch.setattr(E, "onnx_available", lambda: "--format onnx needs tf2onnx and onnxruntime (x)")
    with pytest.raises(E.ExportError, match="needs tf2onnx and onnxruntime"):
        E.convert_onnx(object(), (720, 1))


def test_recurrent_layers_traced_without_cudnn_then_restored():
    from models import registry

    model = registry.build("classifier", "bilstm", (32, 1), 3, units=(4, 4), dense_units=4)
    names = [la.name for la in model.layers if la.name.startswith("bilstm")]
    assert E.recurrent_layers(model) == names and len(names) == 2
    bi = model.get_layer(names[0])
    assert bi.forward_layer.use_cudnn == "auto"
    with E.portable_recurrent(model) as changed:
        assert len(changed) == 4  # forward and backward LSTM of both layers
        assert bi.forward_layer.use_cudnn is False and bi.backward_layer.use_cudnn is False
    assert bi.forward_layer.use_cudnn == "auto" and bi.backward_layer.use_cudnn == "auto"
