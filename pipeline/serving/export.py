"""Export a trained run for deployment, with parity numbers against the Keras model.

``python -m pipeline.export --run Research_Runs/<run> --format savedmodel|tflite|onnx [--int8]``

``python -m pipeline.export --preset NAME --format ...`` exports a preset the same way, under
``models/presets/<name>/export/`` (:func:`pipeline.serving.presets.export_preset`).

Writes under ``<run>/export/`` (git-ignored) and records every attempt in
``<run>/export/export.json`` (one entry per format: file, size, parity or the reason it
failed):

* ``savedmodel/``: ``model.export(..., format="tf_saved_model")``; endpoint ``serve``
  (``tf.saved_model.load(path).serve(x)``), dynamic batch.
* ``model.tflite``: ``tf.lite.TFLiteConverter`` on a SavedModel of the model's inference
  function, built-in TFLite ops only (this TensorFlow's interpreter has no Flex delegate, so
  a model needing ``SELECT_TF_OPS`` could be written but not run here, nor on a stock
  LiteRT runtime). Recurrent models (LSTM, GRU, SimpleRNN, Bidirectional) are converted with
  a fixed batch of 1: Keras 3 runs them as a ``while`` loop over ``TensorList`` ops, which
  the converter lowers to built-in ops only when every shape is static (with a dynamic batch
  it needs the Flex ops). Other models keep a dynamic batch.
* Recurrent layers are traced without their cuDNN kernel for every format (same weights;
  :func:`portable_recurrent`), so an export made on a GPU machine runs anywhere.
* ``model_int8.tflite`` (``--int8``): post-training quantization with int8 weights and
  activations calibrated on ``--calibration-examples`` examples drawn from the run's
  *training* files (``splits.json``; loader with the run's normalization; denoisers get
  training-segment noise at mixed levels), float32 input and output, float fallback for ops
  without an int8 kernel. For recurrent models the calibrator crashes on the ``while`` loop
  (segmentation fault in TF 2.21), so they get dynamic-range quantization instead (int8
  weights, float activations) and ``export.json`` says so.
* ``model.onnx``: ``tf2onnx`` (opset 17) when installed (``requirements.txt``), checked by
  loading it in ONNX Runtime. ``Erfc`` (exact GELU) is rewritten as ``1 - Erf``. A model
  whose TensorFlow ops have no ONNX equivalent fails with a message naming the ops.

Parity: the exported model and the Keras model run on the same ``--parity-examples``
examples from the run's *validation* files (never the test split; seeded random normal
inputs when the data folder is not available, and ``export.json`` says which). Reported:
max and mean absolute output difference; for classifiers argmax (or 0.5-threshold)
agreement and accuracy of both against the labels (so the int8 accuracy drop is visible);
for denoisers the MSE of both against the clean windows.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import shutil
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.core.io_utils import (
    PipelineError,
    atomic_write_bytes,
    atomic_write_json,
    read_json,
)

log = logging.getLogger("ecg.export")

FORMATS = ("savedmodel", "tflite", "onnx")
EXPORT_DIR = "export"
ONNX_OPSET = 17
INPUT_NAME = "ecg"


class ExportError(PipelineError):
    """A format cannot hold the model (or its converter is missing); the message says why."""


# ------------------------------------------------------------------------------ helpers


def recurrent_layers(model: Any) -> list[str]:
    """Names of the recurrent layers (RNN subclasses, Bidirectional) anywhere in ``model``."""
    import keras

    out: list[str] = []

    def walk(layer: Any) -> None:
        for sub in getattr(layer, "layers", []):
            if isinstance(sub, (keras.layers.RNN, keras.layers.Bidirectional)):
                out.append(sub.name)
            else:
                walk(sub)

    walk(model)
    return out


@contextlib.contextmanager
def portable_recurrent(model: Any) -> Iterator[list[str]]:
    """Traces LSTM/GRU layers without their cuDNN kernel (same weights), then restores them.

    Keras 3 picks the cuDNN implementation while tracing when a GPU is visible; a graph
    holding ``CudnnRNN`` ops runs on NVIDIA GPUs only and no converter takes it. With
    ``use_cudnn=False`` the layers trace their generic ``while`` loop, which is numerically the
    same computation. Yields the names of the layers changed.
    """
    import keras

    changed: list[tuple[Any, Any]] = []

    def walk(layer: Any) -> None:
        for sub in getattr(layer, "layers", []):
            cands = ([sub.forward_layer, sub.backward_layer]
                     if isinstance(sub, keras.layers.Bidirectional) else [sub])
            for c in cands:
                if getattr(c, "use_cudnn", None) in ("auto", True):
                    changed.append((c, c.use_cudnn))
                    c.use_cudnn = False
            walk(sub)

    walk(model)
    try:
        yield [c.name for c, _ in changed]
    finally:
        for c, v in changed:
            c.use_cudnn = v


def _first_line(exc: BaseException, limit: int = 400) -> str:
    text = str(exc).strip()
    for line in text.splitlines():
        if "error:" in line and "loc(" not in line:
            return line.strip()[:limit]
    return (text.splitlines()[0] if text else type(exc).__name__)[:limit]


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def keras_predict(model: Any, x: np.ndarray, batch_size: int = 64) -> np.ndarray:
    return np.concatenate([np.asarray(model.predict_on_batch(x[i : i + batch_size]))
                           for i in range(0, len(x), batch_size)])


# ---------------------------------------------------------------------------- SavedModel


def export_savedmodel(model: Any, path: Path) -> Path:
    """``model.export(path, format="tf_saved_model")`` (replacing an older export)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    with _quiet(), portable_recurrent(model):
        model.export(str(tmp), format="tf_saved_model", verbose=False)
    shutil.rmtree(path, ignore_errors=True)
    tmp.rename(path)
    return path


class SavedModelRunner:
    """Calls a SavedModel's ``serve`` endpoint on NumPy batches."""

    def __init__(self, path: Path):
        import tensorflow as tf

        self._m = tf.saved_model.load(str(path))

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(self._m.serve(np.asarray(x, np.float32)))


# -------------------------------------------------------------------------------- TFLite


def convert_tflite(model: Any, input_shape: tuple[int, ...], *, int8: bool = False,
                   representative: np.ndarray | None = None) -> tuple[bytes, dict]:
    """Converts a Keras model to a TFLite flatbuffer (built-in ops only).

    Args:
        model: the Keras model.
        input_shape: one example's shape (no batch axis).
        int8: post-training quantization (see the module docstring).
        representative: (n, *input_shape) normalized float32 calibration examples
            (needed with ``int8`` unless the model is recurrent).

    Returns:
        (flatbuffer bytes, info) with the batch mode and quantization used.

    Raises:
        ExportError: the converter fails (the message names the unsupported ops).
    """
    import tensorflow as tf
    from keras.export import ExportArchive

    rec = recurrent_layers(model)
    batch = 1 if rec else None
    info: dict[str, Any] = {"batch": "fixed 1" if rec else "dynamic",
                            "recurrent_layers": rec, "quantization": "none (float32)"}
    with (tempfile.TemporaryDirectory(prefix="tflite_src_") as tmp, _quiet(),
          portable_recurrent(model)):
        arch = ExportArchive()
        arch.track(model)
        arch.add_endpoint("serve", lambda x: model(x, training=False),
                          input_signature=[tf.TensorSpec((batch, *input_shape), tf.float32,
                                                         name=INPUT_NAME)])
        arch.write_out(tmp, verbose=False)
        conv = tf.lite.TFLiteConverter.from_saved_model(tmp)
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
        if int8:
            conv.optimizations = [tf.lite.Optimize.DEFAULT]
            if rec:
                info["quantization"] = ("dynamic range: int8 weights, float activations "
                                        "(activation calibration of TFLite while loops crashes "
                                        "in TF 2.21)")
            else:
                if representative is None or not len(representative):
                    raise ExportError("int8 quantization needs calibration examples")
                rep = np.asarray(representative, np.float32)

                def gen() -> Iterator[list[np.ndarray]]:
                    for r in rep:
                        yield [r[None]]

                conv.representative_dataset = gen
                info["quantization"] = (f"int8 weights and activations, calibrated on "
                                        f"{len(rep)} examples; float32 input/output")
                info["calibration_examples"] = len(rep)
        try:
            content = conv.convert()
        except Exception as exc:  # ConverterError and friends; the message names the ops
            raise ExportError(f"TFLite cannot hold model {model.name!r}: {_tflite_reason(exc)}") from exc
    info["bytes"] = len(content)
    return content, info


def _tflite_reason(exc: BaseException) -> str:
    """The converter's reason, naming the TensorFlow ops that are no TFLite built-ins."""
    import re

    text = str(exc)
    ops = re.findall(r"(?:TF Select ops|Flex ops): ([^\n]+)", text)
    names = sorted({o.strip() for line in ops for o in line.split(",")}
                   | set(re.findall(r"'tf\.(\w+)' op is neither a custom op nor a flex op", text)))
    if names:
        return (f"TensorFlow op(s) {names} are not TFLite built-ins (they would need the Flex "
                "delegate, which this TensorFlow's interpreter and stock LiteRT runtimes lack)")
    return _first_line(exc)


def _interpreter(content: bytes, num_threads: int | None) -> Any:
    try:
        import tensorflow as tf

        cls = tf.lite.Interpreter
    except AttributeError:  # pragma: no cover - removed from later TensorFlow versions
        from ai_edge_litert.interpreter import Interpreter as cls
    with _quiet():
        return cls(model_content=content, num_threads=num_threads)


class TFLiteRunner:
    """Runs a TFLite model on NumPy batches (fixed-batch models go example by example)."""

    def __init__(self, content: bytes, num_threads: int | None = None):
        self.it = _interpreter(content, num_threads)
        self.inp = self.it.get_input_details()[0]
        self.out = self.it.get_output_details()[0]
        self.fixed = int(self.inp["shape"][0]) if self.inp["shape_signature"][0] != -1 else None
        self._batch = None
        if self.fixed:
            self.it.allocate_tensors()

    def _run(self, x: np.ndarray) -> np.ndarray:
        if not self.fixed and self._batch != len(x):
            self.it.resize_tensor_input(self.inp["index"], list(x.shape))
            self.it.allocate_tensors()
            self._batch = len(x)
        self.it.set_tensor(self.inp["index"], x)
        self.it.invoke()
        return np.array(self.it.get_tensor(self.out["index"]))

    def __call__(self, x: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(x, np.float32)
        if not self.fixed:
            return self._run(x)
        outs = []
        for i in range(0, len(x), self.fixed):
            chunk = x[i : i + self.fixed]
            k = len(chunk)
            if k < self.fixed:
                chunk = np.concatenate([chunk, np.zeros((self.fixed - k, *x.shape[1:]), np.float32)])
            outs.append(self._run(chunk)[:k])
        return np.concatenate(outs)


# ---------------------------------------------------------------------------------- ONNX


def _erfc_handler(ctx: Any, node: Any, name: str, args: Any) -> None:
    """tf2onnx handler: ``Erfc(x)`` (exact GELU) as ``1 - Erf(x)``; ONNX has no Erfc."""
    from tf2onnx import utils

    one = ctx.make_const(utils.make_name(f"{node.name}_one"), np.array(1.0, np.float32))
    erf = ctx.make_node("Erf", [node.input[0]], name=utils.make_name(f"{node.name}_erf"))
    ctx.replace_inputs(node, [one.output[0], erf.output[0]])
    node.type = "Sub"


def onnx_available() -> str | None:
    """None when tf2onnx and onnxruntime import, else why not."""
    try:
        with _quiet():
            import onnxruntime  # noqa: F401
            import tf2onnx  # noqa: F401
    except Exception as exc:  # ImportError, or a version clash raising at import
        return (f"--format onnx needs tf2onnx and onnxruntime (pip install -r requirements.txt): "
                f"{type(exc).__name__}: {exc}")
    return None


def convert_onnx(model: Any, input_shape: tuple[int, ...], opset: int = ONNX_OPSET) -> tuple[bytes, dict]:
    """Converts a Keras model to ONNX with tf2onnx (dynamic batch); checks it loads.

    Raises:
        ExportError: tf2onnx missing, or TensorFlow ops without an ONNX equivalent.
    """
    why = onnx_available()
    if why:
        raise ExportError(why)
    import onnx
    import onnxruntime as ort
    import tensorflow as tf
    import tf2onnx

    spec = (tf.TensorSpec((None, *input_shape), tf.float32, name=INPUT_NAME),)
    tf2onnx_log = logging.getLogger("tf2onnx")
    level = tf2onnx_log.level
    tf2onnx_log.setLevel(logging.CRITICAL)
    try:
        with _quiet(), portable_recurrent(model):
            proto, _ = tf2onnx.convert.from_keras(model, input_signature=spec, opset=opset,
                                                  custom_op_handlers={"Erfc": (_erfc_handler, [])})
    except Exception as exc:  # tf2onnx raises assorted types
        raise ExportError(f"ONNX (tf2onnx {tf2onnx.__version__}) cannot convert model "
                          f"{model.name!r}: {_first_line(exc)}") from exc
    finally:
        tf2onnx_log.setLevel(level)
    unknown = sorted({n.op_type for n in _all_nodes(proto.graph)
                      if n.domain in ("", "ai.onnx") and not onnx.defs.has(n.op_type)})
    if unknown:
        raise ExportError(f"ONNX cannot hold model {model.name!r}: TensorFlow op(s) {unknown} "
                          f"have no ONNX equivalent in tf2onnx {tf2onnx.__version__} (opset {opset})")
    content = proto.SerializeToString()
    try:
        ort.InferenceSession(content, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime's InvalidGraph, NotImplemented...
        raise ExportError(f"ONNX model of {model.name!r} does not load in ONNX Runtime "
                          f"{ort.__version__}: {_first_line(exc)}") from exc
    return content, {"opset": opset, "bytes": len(content), "batch": "dynamic",
                     "tf2onnx": tf2onnx.__version__}


def _all_nodes(graph: Any) -> Iterator[Any]:
    for n in graph.node:
        yield n
        for a in n.attribute:
            if a.g is not None and len(a.g.node):
                yield from _all_nodes(a.g)
            for g in a.graphs:
                yield from _all_nodes(g)


class OnnxRunner:
    def __init__(self, content: bytes, num_threads: int | None = None):
        import onnxruntime as ort

        opts = ort.SessionOptions()
        if num_threads:
            opts.intra_op_num_threads = num_threads
            opts.inter_op_num_threads = 1
        self.s = ort.InferenceSession(content, opts, providers=["CPUExecutionProvider"])
        self.name = self.s.get_inputs()[0].name

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(self.s.run(None, {self.name: np.asarray(x, np.float32)})[0])


# -------------------------------------------------------------------------------- parity


def parity(reference: np.ndarray, exported: np.ndarray, *, kind: str, multilabel: bool = False,
           y: np.ndarray | None = None) -> dict:
    """Differences between Keras outputs and an exported model's on the same inputs.

    Args:
        reference, exported: outputs of the same shape.
        kind: ``classifier`` or ``denoiser``.
        y: labels (one-hot or multi-hot) or clean windows, when known.
    """
    ref = np.asarray(reference, np.float64)
    out = np.asarray(exported, np.float64)
    d = np.abs(out - ref)
    res: dict[str, Any] = {"examples": len(ref), "max_abs_diff": float(d.max()) if d.size else 0.0,
                           "mean_abs_diff": float(d.mean()) if d.size else 0.0}
    if kind == "classifier":
        if multilabel:
            res["label_agreement_at_0.5"] = float(np.mean((ref >= 0.5) == (out >= 0.5)))
        else:
            res["argmax_agreement"] = float(np.mean(ref.argmax(-1) == out.argmax(-1)))
            if y is not None:
                t = np.asarray(y).argmax(-1)
                res["accuracy_keras"] = float(np.mean(ref.argmax(-1) == t))
                res["accuracy_export"] = float(np.mean(out.argmax(-1) == t))
                res["accuracy_drop"] = res["accuracy_keras"] - res["accuracy_export"]
    elif y is not None:
        yy = np.asarray(y, np.float64)
        res["mse_keras"] = float(np.mean((ref - yy) ** 2))
        res["mse_export"] = float(np.mean((out - yy) ** 2))
    return res


# ------------------------------------------------------------------------------- a run


@dataclasses.dataclass
class RunData:
    x: np.ndarray
    y: np.ndarray | None
    source: str


def _split_of(run_dir: Path) -> Any:
    from pipeline.data import splits

    d = read_json(run_dir / "splits.json", "run split")
    try:
        return splits.Split(d["scheme"], tuple(d["train"]), tuple(d["val"]), tuple(d["test"]),
                       tuple((tuple(f["train"]), tuple(f["val"])) for f in d.get("folds", [])),
                       bool(d.get("leaky", False)), d.get("intra"))
    except (KeyError, TypeError) as exc:
        raise PipelineError(f"{run_dir / 'splits.json'}: not a split ({exc})") from exc


def run_examples(run: Any, part: str, n: int, seed: int = 0) -> RunData:
    """Up to ``n`` normalized examples (and targets) of the run's ``train`` or ``val`` files,
    a seeded shuffled sample over all of them.

    Raises:
        PipelineError: the split, TFRecords or noise records are not available.
    """
    from pipeline.data.loader import create_dataset
    from pipeline.training import run_folder

    if part not in ("train", "val"):
        raise ValueError(f"part must be train or val. Received: {part!r}")  # never test
    cfg, task = run.cfg, run.task
    sf = run_folder.split_files(cfg, task, _split_of(run.path))
    files = sf.train if part == "train" else sf.val
    masks = sf.include_train if part == "train" else sf.include_val
    fn = None
    if task.denoising:
        from pipeline.data import noise

        fn = noise.make_mixed_level_noise_fn(cfg, part, cfg.noise.mix_snr_db, cfg.noise.train_types)
    # Training-mode reading (seeded file and example shuffles) so that a few hundred examples
    # come from every file, not from the first one.
    ds = create_dataset(list(files), cfg, 64, True, run.mean, run.scale, task=task,
                        noise_fn=fn, include=masks, seed=seed)
    xs, ys, got = [], [], 0
    for x, y in ds:
        xs.append(x.numpy())
        ys.append(y.numpy())
        got += len(xs[-1])
        if got >= n:
            break
    if not xs:
        raise PipelineError(f"{run.path}: no {part} examples found")
    return RunData(np.concatenate(xs)[:n], np.concatenate(ys)[:n],
                   f"{part} files of splits.json ({len(files)} files)")


def _random_examples(shape: tuple[int, ...], n: int, seed: int) -> RunData:
    x = np.random.default_rng(seed).standard_normal((n, *shape)).astype(np.float32)
    return RunData(x, None, "seeded random normal inputs (run data not found)")


def _parity_data(run: Any, n: int, seed: int) -> RunData:
    try:
        return run_examples(run, "val", n, seed)
    except (PipelineError, OSError, KeyError) as exc:
        log.warning("parity on random inputs: validation data not available (%s)", exc)
        return _random_examples(run.input_shape, n, seed)


FLOAT_PARITY_TOL = 1e-3
"""Largest max |Keras - export| output difference a float export may show (int8: unchecked)."""


def check_export_args(fmt: str, int8: bool, parity_examples: int, calibration_examples: int,
                      parity_tol: float | None) -> None:
    """Refuses arguments out of range with one line, before anything is loaded."""
    if fmt not in FORMATS:
        raise PipelineError(f"unknown format {fmt!r}; known: {list(FORMATS)}")
    if int8 and fmt != "tflite":
        raise PipelineError("--int8 applies to --format tflite only")
    if not isinstance(parity_examples, int) or parity_examples < 1:
        raise PipelineError(f"--parity-examples must be >= 1. Received: {parity_examples}")
    if not isinstance(calibration_examples, int) or calibration_examples < 1:
        raise PipelineError(f"--calibration-examples must be >= 1. Received: {calibration_examples}")
    if parity_tol is not None and not parity_tol > 0:
        raise PipelineError(f"--parity-tol must be > 0. Received: {parity_tol}")


def artefact_name(fmt: str, int8: bool) -> str:
    """File (or folder) name of a format's export under ``<run>/export/``."""
    return {"savedmodel": "savedmodel", "onnx": "model.onnx"}.get(
        fmt, "model_int8.tflite" if int8 else "model.tflite")


def _staged_file(final: Path, content: bytes) -> Path:
    """``content`` written next to ``final`` under a hidden temporary name."""
    fd, tmp = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".pending", dir=final.parent)
    os.close(fd)
    try:
        atomic_write_bytes(tmp, content)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return Path(tmp)


def _convert(run: Any, fmt: str, int8: bool, final: Path, calibration_examples: int,
             seed: int) -> tuple[Path, Callable[[np.ndarray], np.ndarray], dict]:
    """Converts the run's model into a staged artefact; returns (staged path, runner, info)."""
    if fmt == "savedmodel":
        staged = final.with_name(f".{final.name}.pending")
        shutil.rmtree(staged, ignore_errors=True)
        with _quiet(), portable_recurrent(run.model):
            run.model.export(str(staged), format="tf_saved_model", verbose=False)
        return staged, SavedModelRunner(staged), {"batch": "dynamic", "endpoint": "serve"}
    if fmt == "tflite":
        rep = None
        if int8 and not recurrent_layers(run.model):
            try:
                rep = run_examples(run, "train", calibration_examples, seed).x
            except (PipelineError, OSError, KeyError) as exc:
                raise ExportError(f"int8 calibration needs the run's training data: {exc}") from exc
        content, info = convert_tflite(run.model, run.input_shape, int8=int8, representative=rep)
        return _staged_file(final, content), TFLiteRunner(content), info
    content, info = convert_onnx(run.model, run.input_shape)
    return _staged_file(final, content), OnnxRunner(content), info


def _check_parity(p: dict, key: str, tol: float | None, int8: bool) -> None:
    """Raises ExportError when the export's outputs are not finite or drift beyond ``tol``."""
    diff = p["max_abs_diff"]
    limit = tol if tol is not None else (np.inf if int8 else FLOAT_PARITY_TOL)
    if not np.isfinite(diff):
        raise ExportError(f"{key}: parity failed: the export's outputs are not finite (max |diff| {diff})")
    if diff > limit:
        raise ExportError(f"{key}: parity failed: max |Keras - export| {diff:.3g} > {limit:g} on "
                          f"{p['examples']} examples; the previous export (if any) was kept")


def _promote(staged: Path, final: Path) -> None:
    """Renames the staged artefact over ``final`` (a folder: the old one is removed after)."""
    if staged.is_dir():
        old = final.with_name(f".{final.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        if final.exists():
            final.rename(old)
        staged.rename(final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(staged, final)


def _discard(staged: Path | None) -> None:
    if staged is None:
        return
    if staged.is_dir():
        shutil.rmtree(staged, ignore_errors=True)
    else:
        staged.unlink(missing_ok=True)


def export_run(run_dir: str | Path, fmt: str, *, int8: bool = False, data_dir: str | None = None,
               parity_examples: int = 256, calibration_examples: int = 200,
               seed: int = 0, checkpoint: str = "best", parity_tol: float | None = None) -> dict:
    """Exports one run to one format, measures parity and records it in ``export.json``
    (:func:`export_loaded`, under ``<run>/export/``).

    Returns:
        The format's ``export.json`` entry.

    Raises:
        PipelineError: arguments out of range, or the run cannot be loaded.
        ExportError: the format cannot hold the model, or parity failed (also recorded).
    """
    from pipeline.serving.run_loader import load_run

    check_export_args(fmt, int8, parity_examples, calibration_examples, parity_tol)
    run = load_run(run_dir, checkpoint)
    if run.task.rhythm:  # two inputs ({"ecg", "rr"}); the converters here take one
        raise PipelineError(f"{run_dir}: task {run.task.name} takes two inputs (ecg, rr); "
                            "export handles single-input models only (use `python -m "
                            "pipeline.predict --run ...` for this run)")
    if data_dir:
        run = dataclasses.replace(run, cfg=dataclasses.replace(
            run.cfg, data=dataclasses.replace(run.cfg.data, data_dir=str(data_dir))))
    return export_loaded(run, fmt, int8=int8, parity_examples=parity_examples,
                         calibration_examples=calibration_examples, seed=seed,
                         parity_tol=parity_tol)


def export_loaded(run: Any, fmt: str, *, int8: bool = False, parity_examples: int = 256,
                  calibration_examples: int = 200, seed: int = 0,
                  parity_tol: float | None = None) -> dict:
    """Exports a loaded run (or a preset's ``.run``) under ``<run.path>/export/``.

    The artefact is written under a temporary name and renamed into place only after
    parity passed (finite outputs; float formats within ``parity_tol``, default
    :data:`FLOAT_PARITY_TOL`); ``export.json`` is updated after the rename. A failed
    attempt leaves the previous artefact and its entry as they were (the entry gains
    ``failed_attempt``). Parity runs on the run's validation examples, or on seeded random
    inputs where there are none (a preset), and the entry says which.

    Raises:
        ExportError: the format cannot hold the model, or parity failed (also recorded).
    """
    check_export_args(fmt, int8, parity_examples, calibration_examples, parity_tol)
    out = run.path / EXPORT_DIR
    out.mkdir(parents=True, exist_ok=True)
    key = "tflite_int8" if int8 else fmt
    final = out / artefact_name(fmt, int8)
    entry: dict[str, Any] = {"format": key, "model": run.model_name, "task": run.task.name,
                             "input_shape": list(run.input_shape), "checkpoint": str(run.checkpoint)}
    staged = None
    try:
        t0 = time.perf_counter()
        staged, runner, info = _convert(run, fmt, int8, final, calibration_examples, seed)
        entry.update(info)
        entry["convert_s"] = round(time.perf_counter() - t0, 2)
        entry["path"] = str(final)
        data = _parity_data(run, parity_examples, seed)
        entry["parity"] = {"data": data.source, **parity(
            keras_predict(run.model, data.x), runner(data.x),
            kind="denoiser" if run.task.denoising else "classifier",
            multilabel=run.task.multilabel, y=data.y)}
        _check_parity(entry["parity"], key, parity_tol, int8)
        _promote(staged, final)
        staged = None
        entry["ok"] = True
    except ExportError as exc:
        _record_failure(out, key, entry, exc)
        raise
    finally:
        _discard(staged)
    _record(out, key, entry)
    return entry


def _read_record(out: Path) -> dict:
    path = out / "export.json"
    try:
        return read_json(path, "export record") if path.is_file() else {}
    except PipelineError:
        return {}


def _record(out: Path, key: str, entry: dict) -> None:
    d = _read_record(out)
    d[key] = entry
    atomic_write_json(out / "export.json", d)


def _record_failure(out: Path, key: str, entry: dict, exc: BaseException) -> None:
    """Keeps a previous successful entry (its file is still there) and notes the failure."""
    d = _read_record(out)
    failure = {**entry, "ok": False, "error": str(exc)}
    previous = d.get(key)
    if isinstance(previous, dict) and previous.get("ok"):
        d[key] = {**previous, "failed_attempt": {"error": str(exc), "checkpoint": entry["checkpoint"]}}
    else:
        d[key] = failure
    atomic_write_json(out / "export.json", d)


# ---------------------------------------------------------------------------------- CLI
