"""Cost profile of Keras models: parameters, size on disk, FLOPs, CPU latency, peak memory.

``measure_model(model, input_shape)`` measures one model in this process;
``measure_model_subprocess(kind, name, ...)`` builds and measures a registered model in a fresh
Python process, so that its peak memory is its own and not the sum of everything profiled
before. The CLI profiles every registered model of a kind and writes a Markdown table and
JSON::

    python -m pipeline.cost --kind classifier --all --out cost/classifiers.md
    python -m pipeline.cost --kind denoiser --name unet1d          # one model, JSON to stdout

What each number means:

* ``params_trainable`` / ``params_non_trainable`` / ``params_total``: scalar weights.
* ``size_bytes``: bytes of the ``.keras`` file written by ``model.save`` (weights + config).
* ``flops``: floating-point operations of one forward pass on one example (batch 1). A
  multiply-add counts 2. Method ``tf_profiler``: TensorFlow's v1 profiler
  (``ProfileOptionBuilder.float_operation()``) on the frozen graph of
  ``tf.function(model).get_concrete_function(TensorSpec([1, *shape]))``; it counts MatMul,
  Conv, BiasAdd, element-wise arithmetic, reductions and softmax (5 per element), not
  activations such as ReLU, sigmoid or tanh. ``Einsum`` gets a flops rule registered here (TensorFlow has none).
  The profiler sees a recurrent loop's body once, not once per time step, so recurrent
  layers (SimpleRNN, GRU, LSTM, also inside Bidirectional) are counted by formula instead,
  ``2 g u (d + u)`` plus bias and gating terms per step (``g`` = 1, 3, 4 gates; ``u`` units;
  ``d`` input features), times the steps: method ``tf_profiler+rnn_formula``. When the
  profiler fails, ``layers``: the same kind of count from Dense, Conv, recurrent and attention
  layers only (other layers omitted: a lower bound).
* ``latency_ms``: median (and 90th percentile) wall time of a compiled
  ``tf.function(lambda x: model(x, training=False))`` call on CPU after warm-up, at batch 1
  and at a larger batch (default 64), with the per-example time ``median / batch``. CPU
  latency depends on the machine and its load: the table records the CPU and thread count.
* Memory (``/proc/self/status``): ``rss_baseline_mb`` after TensorFlow is imported (subprocess
  only), ``peak_rss_mb`` (VmHWM, whole process), and ``inference_peak_delta_mb``: the peak
  resident memory while the timed calls run minus the resident memory just before them (the
  peak counter is reset through ``/proc/self/clear_refs``; ``None`` where not supported).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as _dt
import importlib
import importlib.util
import json
import logging
import math
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.core.io_utils import (
    PipelineError,
    atomic_write_json,
    atomic_write_text,
)

log = logging.getLogger("ecg.cost")

ROOT = Path(__file__).resolve().parents[2]

DEFAULT_INPUT_SHAPES: dict[str, tuple[int, ...]] = {
    "any1d": (720, 1),  # MIT-BIH segment, 2 s at 360 Hz
    "segment": (720, 1),
    "sequence": (3, 32, 187, 1),  # 3 beats x 32 scales x 187 samples
    "window": (1440, 2),  # denoising window, 4 s at 360 Hz, 2 leads
}
DEFAULT_N_OUTPUTS = 5  # AAMI5

_RNN_GATES = {"SimpleRNN": 1, "GRU": 3, "LSTM": 4}
# Element-wise gating operations per unit and step (LSTM: f*c + i*g, o*tanh(c); GRU: r*(Uh),
# z*h + (1-z)*h~). Activations are not counted, as in the TF profiler.
_RNN_ELEMENTWISE = {"SimpleRNN": 1, "GRU": 5, "LSTM": 4}


# ---------------------------------------------------------------------------- memory


def _proc_status_kb(key: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def _peak_rss_mb() -> float | None:
    kb = _proc_status_kb("VmHWM")
    if kb is None:
        try:
            import resource

            kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
        except (ImportError, OSError):
            return None
    return kb / 1024.0


def _rss_mb() -> float | None:
    kb = _proc_status_kb("VmRSS")
    return None if kb is None else kb / 1024.0


def _reset_peak_rss() -> bool:
    """Resets VmHWM to the current RSS (Linux >= 4.0); False where not possible."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


# ----------------------------------------------------------------------------- FLOPs

_EINSUM_REGISTERED = False


def _tensor_shape(graph: Any, name: str) -> list[int | None] | None:
    name = name.lstrip("^")
    if ":" not in name:
        name += ":0"
    try:
        shape = graph.get_tensor_by_name(name).shape
    except (KeyError, ValueError):
        return None
    return None if shape.rank is None else shape.as_list()


def _einsum_flops_value(graph: Any, node: Any) -> int | None:
    """2 x (output elements) x (size of the contracted indices) of a two-operand einsum."""
    eq = node.attr["equation"].s.decode().replace(" ", "")
    if "->" not in eq:
        return None
    lhs, out_spec = eq.split("->")
    specs = lhs.split(",")
    inputs = [i for i in node.input if not i.startswith("^")]
    if len(specs) != len(inputs):
        return None
    sizes: dict[str, int] = {}
    for spec, name in zip(specs, inputs, strict=True):
        shape = _tensor_shape(graph, name)
        if shape is None:
            return None
        if "..." in spec:
            head, tail = spec.split("...")
            letters = list(head) + [None] * (len(shape) - len(head) - len(tail)) + list(tail)
        else:
            letters = list(spec)
        if len(letters) != len(shape):
            return None
        for letter, dim in zip(letters, shape, strict=True):
            if letter is not None and dim is not None:
                sizes[letter] = max(sizes.get(letter, 1), dim)
    out_shape = _tensor_shape(graph, node.name)
    if out_shape is None or any(d is None for d in out_shape):
        return None
    contracted = set("".join(specs).replace(".", "")) - set(out_spec)
    if any(c not in sizes for c in contracted):
        return None
    return 2 * math.prod(out_shape) * math.prod(sizes[c] for c in contracted)


def _register_einsum_flops() -> None:
    """Adds a flops rule for ``Einsum`` to TensorFlow's statistics registry (once)."""
    global _EINSUM_REGISTERED
    if _EINSUM_REGISTERED:
        return
    from tensorflow.python.framework import ops

    def _einsum_flops(graph, node):
        return ops.OpStats("flops", _einsum_flops_value(graph, node))

    with contextlib.suppress(KeyError):  # already registered (by TF or a reload)
        ops.RegisterStatistics("Einsum", "flops")(_einsum_flops)
    _EINSUM_REGISTERED = True


def _walk_layers(model: Any) -> list[Any]:
    """Every layer, descending into nested models and layers that hold layers."""
    out: list[Any] = []
    stack = list(getattr(model, "layers", []))
    seen: set[int] = set()
    while stack:
        layer = stack.pop(0)
        if id(layer) in seen:
            continue
        seen.add(id(layer))
        out.append(layer)
        stack.extend(getattr(layer, "layers", []) or [])
    return out


def _input_shape_of(layer: Any) -> list[int | None] | None:
    try:
        x = layer.input
    except Exception:  # a layer never called in a functional graph has no input
        return None
    if isinstance(x, (list, tuple)):
        if not x:
            return None
        x = x[0]
    return list(x.shape)


def _rnn_cost(rnn: Any, in_shape: list[int | None] | None) -> int | None:
    kind = type(rnn).__name__
    if kind not in _RNN_GATES or not in_shape or len(in_shape) != 3:
        return None
    steps, d = in_shape[1], in_shape[2]
    u = getattr(rnn, "units", None) or getattr(getattr(rnn, "cell", None), "units", None)
    if steps is None or d is None or u is None:
        return None
    g = _RNN_GATES[kind]
    biases = 2 * g * u if kind == "GRU" and getattr(rnn, "reset_after", False) else g * u
    per_step = 2 * g * u * (d + u) + biases + _RNN_ELEMENTWISE[kind] * u
    return int(steps * per_step)


def recurrent_flops(model: Any) -> tuple[int, list[str]]:
    """FLOPs of the recurrent layers by formula, and the names of those not countable."""
    from keras import layers as kl

    total, missed = 0, []
    for layer in _walk_layers(model):
        if isinstance(layer, kl.Bidirectional):
            shape = _input_shape_of(layer)
            parts = [layer.forward_layer, layer.backward_layer]
        elif isinstance(layer, kl.RNN):
            shape = _input_shape_of(layer)
            parts = [layer]
        else:
            continue
        for part in parts:
            c = _rnn_cost(part, shape)
            if c is None:
                missed.append(layer.name)
            else:
                total += c
    return total, sorted(set(missed))


def _has_recurrent(model: Any) -> bool:
    from keras import layers as kl

    return any(isinstance(la, (kl.RNN, kl.Bidirectional)) for la in _walk_layers(model))


def _concrete(model: Any, input_shape: Sequence[int], batch: int) -> Any:
    import tensorflow as tf

    fn = tf.function(lambda x: model(x, training=False))
    return fn.get_concrete_function(tf.TensorSpec([batch, *input_shape], tf.float32))


def profiler_flops(model: Any, input_shape: Sequence[int]) -> int:
    """Float operations counted by TF's profiler on the frozen batch-1 graph."""
    import tensorflow as tf
    from tensorflow.python.framework.convert_to_constants import (
        convert_variables_to_constants_v2,
    )

    _register_einsum_flops()
    frozen = convert_variables_to_constants_v2(_concrete(model, input_shape, 1))
    graph_def = frozen.graph.as_graph_def()
    graph = tf.Graph()
    tf_logger = tf.get_logger()
    level = tf_logger.level
    tf_logger.setLevel(logging.ERROR)  # deprecation chatter of the v1 profiler
    try:
        with graph.as_default():
            tf.graph_util.import_graph_def(graph_def, name="")
            builder = tf.compat.v1.profiler.ProfileOptionBuilder
            opts = builder(builder.float_operation()).with_empty_output().build()
            prof = tf.compat.v1.profiler.profile(
                graph=graph, run_meta=tf.compat.v1.RunMetadata(), cmd="op", options=opts
            )
    finally:
        tf_logger.setLevel(level)
    return int(prof.total_float_ops)


def _prod(shape: Sequence[int | None]) -> int | None:
    if any(d is None for d in shape):
        return None
    return math.prod(shape)


def layer_flops(model: Any) -> int:
    """Fallback count from Dense, Conv, recurrent and attention layers (a lower bound)."""
    from keras import layers as kl

    total = 0
    for layer in _walk_layers(model):
        try:
            out_shape = list(layer.output.shape)[1:]
        except Exception:  # not a node of the functional graph
            continue
        in_shape = _input_shape_of(layer)
        n_out = _prod(out_shape)
        if n_out is None or in_shape is None:
            continue
        if isinstance(layer, kl.Dense):
            total += 2 * n_out * int(in_shape[-1]) + n_out
        elif isinstance(layer, (kl.DepthwiseConv1D, kl.DepthwiseConv2D)):
            total += 2 * n_out * math.prod(layer.kernel_size) + n_out
        elif isinstance(layer, (kl.SeparableConv1D, kl.SeparableConv2D)):
            c_in = int(in_shape[-1])
            spatial = n_out // int(out_shape[-1])
            total += 2 * spatial * c_in * layer.depth_multiplier * math.prod(layer.kernel_size)
            total += 2 * n_out * c_in * layer.depth_multiplier + n_out
        elif isinstance(layer, (kl.Conv1D, kl.Conv2D, kl.Conv1DTranspose, kl.Conv2DTranspose)):
            groups = getattr(layer, "groups", 1) or 1
            k = math.prod(layer.kernel_size) * int(in_shape[-1]) // groups
            total += 2 * n_out * k + n_out
        elif isinstance(layer, kl.MultiHeadAttention):
            q = _prod(in_shape[1:])
            steps = q // int(in_shape[-1]) if q else 0
            h, kd = layer.num_heads, layer.key_dim
            vd = layer.value_dim or kd
            d = int(in_shape[-1])
            total += 2 * steps * d * h * (2 * kd + vd)  # q, k, v projections
            total += 2 * steps * steps * h * (kd + vd)  # scores and weighted sum
            total += 2 * steps * h * vd * int(out_shape[-1])  # output projection
    return total + recurrent_flops(model)[0]


def count_flops(model: Any, input_shape: Sequence[int]) -> tuple[int | None, str, str]:
    """(FLOPs per example, method, note). See the module docstring for the methods."""
    try:
        flops = profiler_flops(model, input_shape)
        method, note = "tf_profiler", ""
        if _has_recurrent(model):
            rnn, missed = recurrent_flops(model)
            flops += rnn
            method = "tf_profiler+rnn_formula"
            if missed:
                note = f"recurrent layers not counted: {missed}"
        return flops, method, note
    except Exception as exc:  # the profiler is v1 code; any failure falls back
        log.warning("TF profiler failed (%s: %s); counting from layers", type(exc).__name__, exc)
        try:
            return layer_flops(model), "layers", f"profiler failed: {type(exc).__name__}"
        except Exception as exc2:
            return None, "none", f"profiler and layer count failed: {exc2}"


# --------------------------------------------------------------------------- latency


def _block(out: Any) -> None:
    import tensorflow as tf

    for t in tf.nest.flatten(out):
        np.asarray(t)


def time_calls(
    fn: Callable[[Any], Any],
    x: Any,
    *,
    runs: int = 30,
    warmup: int = 3,
    min_runs: int = 5,
    time_budget_s: float = 20.0,
) -> dict[str, Any]:
    """Median and 90th percentile wall time (ms) of ``fn(x)`` after ``warmup`` calls.

    Stops early once ``min_runs`` calls are timed and ``time_budget_s`` is spent.
    """
    for _ in range(warmup):
        _block(fn(x))
    times = []
    t_start = time.perf_counter()
    for i in range(runs):
        t0 = time.perf_counter()
        _block(fn(x))
        times.append((time.perf_counter() - t0) * 1e3)
        if i + 1 >= min_runs and time.perf_counter() - t_start > time_budget_s:
            break
    arr = np.asarray(times)
    return {
        "median_ms": float(np.median(arr)),
        "p90_ms": float(np.percentile(arr, 90)),
        "n_runs": int(arr.size),
    }


# --------------------------------------------------------------------------- profile


def _param_counts(model: Any) -> dict[str, int]:
    trainable = int(sum(math.prod(w.shape) for w in model.trainable_weights))
    total = int(model.count_params())
    return {
        "params_trainable": trainable,
        "params_non_trainable": total - trainable,
        "params_total": total,
    }


def _size_on_disk(model: Any) -> int:
    with tempfile.TemporaryDirectory(prefix="ecg_cost_") as tmp:
        path = Path(tmp) / f"{model.name}.keras"
        model.save(path)
        return path.stat().st_size


def threading_info() -> dict[str, Any]:
    import tensorflow as tf

    return {
        "cpu_count": os.cpu_count(),
        "intra_op_threads": tf.config.threading.get_intra_op_parallelism_threads(),
        "inter_op_threads": tf.config.threading.get_inter_op_parallelism_threads(),
    }


def measure_model(
    model: Any,
    input_shape: Sequence[int],
    *,
    batch_size: int = 64,
    runs: int = 30,
    warmup: int = 3,
    time_budget_s: float = 20.0,
    seed: int = 0,
) -> dict[str, Any]:
    """Cost profile of a built Keras model, measured in this process on CPU.

    Args:
        model: a built ``keras.Model`` taking ``(batch, *input_shape)`` float32.
        input_shape: one example's shape, without the batch axis.
        batch_size: the batched latency's batch size (batch 1 is always measured).
        runs: timed calls per batch size (fewer when ``time_budget_s`` runs out).
        warmup: untimed calls first (tracing, allocator warm-up).
        time_budget_s: soft time limit per batch size.
        seed: seed of the random input.

    Returns:
        A JSON-ready dict (keys described in the module docstring).
    """
    import tensorflow as tf

    shape = tuple(int(d) for d in input_shape)
    if not shape or min(shape) < 1:
        raise ValueError(f"`input_shape` must be positive dims. Received: input_shape={shape}")
    if batch_size < 1:
        raise ValueError(f"`batch_size` must be >= 1. Received: batch_size={batch_size}")
    out: dict[str, Any] = {"model": model.name, "input_shape": list(shape)}
    out.update(_param_counts(model))
    out["size_bytes"] = _size_on_disk(model)
    out["flops"], out["flops_method"], out["flops_note"] = count_flops(model, shape)

    rng = np.random.default_rng(seed)
    rss_before = _rss_mb()
    reset_ok = _reset_peak_rss()
    latency: dict[str, Any] = {}
    with tf.device("/CPU:0"):
        fn = tf.function(lambda x: model(x, training=False), reduce_retracing=True)
        for b in sorted({1, batch_size}):
            x = tf.constant(rng.standard_normal((b, *shape)).astype("float32"))
            t = time_calls(fn, x, runs=runs, warmup=warmup, time_budget_s=time_budget_s)
            t["per_example_ms"] = t["median_ms"] / b
            latency[str(b)] = t
    peak_after = _peak_rss_mb()
    out["latency_ms"] = latency
    out["batch_size"] = batch_size
    out["inference_peak_delta_mb"] = (
        peak_after - rss_before
        if reset_ok and peak_after is not None and rss_before is not None
        else None
    )
    out["peak_rss_mb"] = peak_after
    out.update(threading_info())
    return out


# ------------------------------------------------------------------------ subprocess


def default_input_shape(kind: str, name: str) -> tuple[int, ...]:
    """The profiling shape of a registered model, from its ``input_kind``."""
    from models import registry

    spec = registry.get(kind, name)
    try:
        return DEFAULT_INPUT_SHAPES[spec.input_kind]
    except KeyError:
        raise PipelineError(
            f"{kind} {name!r}: no default input shape for input_kind {spec.input_kind!r}; "
            "pass --input-shape"
        ) from None


def load_builder(ref: str) -> Callable[..., Any]:
    """``"package.module:function"`` or ``"path/to/file.py:function"`` -> the function."""
    mod_ref, _, fn_name = ref.rpartition(":")
    if not mod_ref or not fn_name:
        raise PipelineError(f"--builder must be MODULE:FUNCTION. Received: {ref!r}")
    if mod_ref.endswith(".py"):
        path = Path(mod_ref).resolve()
        spec = importlib.util.spec_from_file_location(f"_cost_builder_{path.stem}", path)
        if spec is None or spec.loader is None or not path.is_file():
            raise PipelineError(f"--builder: cannot load {path}")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    else:
        module = importlib.import_module(mod_ref)
    try:
        return getattr(module, fn_name)
    except AttributeError:
        raise PipelineError(f"--builder: {mod_ref} has no function {fn_name!r}") from None


def _build(
    kind: str,
    name: str | None,
    input_shape: Sequence[int],
    n_outputs: int,
    kwargs: dict[str, Any],
    builder: str | None = None,
) -> Any:
    if builder:
        fn = load_builder(builder)
    else:
        from models import registry

        fn = registry.get(kind, name)
    if kind == "denoiser":
        return fn(tuple(input_shape), **kwargs)
    return fn(tuple(input_shape), n_outputs, **kwargs)


def _child_args(kind: str, name: str | None, input_shape: Sequence[int] | None, n_outputs: int,
                kwargs: dict[str, Any] | None, *, builder: str | None, batch_size: int, runs: int,
                warmup: int, time_budget_s: float, threads: int) -> list[str]:
    """The ``python -m pipeline.cost`` flags that profile one model in a child process."""
    args = ["--kind", kind, "--n-outputs", str(n_outputs), "--batch", str(batch_size),
            "--runs", str(runs), "--warmup", str(warmup), "--budget-s", str(time_budget_s),
            "--threads", str(threads), "--kwargs", json.dumps(kwargs or {})]
    if builder:
        args += ["--builder", builder]
    if name:
        args += ["--name", name]
    if input_shape is not None:
        args += ["--input-shape", ",".join(str(int(d)) for d in input_shape)]
    return args


def _child_env() -> dict[str, str]:
    """The child's environment: this checkout importable, quiet TensorFlow, CPU only."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(ROOT)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])
    )
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    env["CUDA_VISIBLE_DEVICES"] = "-1"
    return env


def measure_model_subprocess(
    kind: str,
    name: str | None,
    input_shape: Sequence[int] | None = None,
    n_outputs: int = DEFAULT_N_OUTPUTS,
    kwargs: dict[str, Any] | None = None,
    *,
    builder: str | None = None,
    batch_size: int = 64,
    runs: int = 30,
    warmup: int = 3,
    time_budget_s: float = 20.0,
    threads: int = 0,
    timeout_s: float = 1800.0,
) -> dict[str, Any]:
    """Builds and profiles one model in a fresh ``python -m pipeline.cost`` process.

    A fresh process per model makes peak memory that model's own. The child runs on CPU
    (``CUDA_VISIBLE_DEVICES=-1``).

    Args:
        kind: ``classifier`` or ``denoiser``.
        name: registered model name (``None`` when ``builder`` is given).
        input_shape: one example's shape; default from the model's ``input_kind``.
        n_outputs: classes (classifiers only).
        kwargs: builder keyword arguments (JSON-serializable).
        builder: ``"module:function"`` or ``"file.py:function"`` of an unregistered builder,
            used instead of ``name``.
        batch_size, runs, warmup, time_budget_s: as in :func:`measure_model`.
        threads: TensorFlow intra- and inter-op threads in the child (0: TF default).
        timeout_s: the child is killed after this many seconds.

    Returns:
        The child's profile dict, plus ``rss_baseline_mb`` and ``wall_s``.

    Raises:
        PipelineError: the child failed or timed out (the message ends with its stderr).
    """
    args = _child_args(kind, name, input_shape, n_outputs, kwargs, builder=builder,
                       batch_size=batch_size, runs=runs, warmup=warmup,
                       time_budget_s=time_budget_s, threads=threads)
    env = _child_env()
    label = name or builder
    with tempfile.TemporaryDirectory(prefix="ecg_cost_") as tmp:
        json_out = Path(tmp) / "profile.json"
        cmd = [sys.executable, "-m", "pipeline.cost", *args, "--json-out", str(json_out)]
        t0 = time.perf_counter()
        try:
            proc = subprocess.run(
                cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout_s
            )
        except subprocess.TimeoutExpired as exc:
            raise PipelineError(
                f"{kind} {label!r}: profiling timed out after {timeout_s:g} s"
            ) from exc
        if proc.returncode != 0 or not json_out.is_file():
            lines = proc.stderr.strip().splitlines()
            errors = [ln for ln in lines if ln.startswith("error:") or "Error" in ln]
            tail = errors[-1] if errors else " | ".join(lines[-3:])
            raise PipelineError(
                f"{kind} {label!r}: profiling failed (exit {proc.returncode}): {tail}"
            )
        result = json.loads(json_out.read_text())
    result["wall_s"] = round(time.perf_counter() - t0, 2)
    return result


def measure_here(args: argparse.Namespace) -> dict[str, Any]:
    """Child side: set threads, build, profile, add memory of this process."""
    import tensorflow as tf

    if args.threads:
        tf.config.threading.set_intra_op_parallelism_threads(args.threads)
        tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    import keras

    rss_baseline = _rss_mb()
    keras.utils.set_random_seed(0)
    kwargs = json.loads(args.kwargs)
    if args.input_shape:
        shape = tuple(int(s) for s in args.input_shape.split(","))
    elif args.builder:
        raise PipelineError("--builder needs --input-shape")
    else:
        shape = default_input_shape(args.kind, args.name)
    model = _build(args.kind, args.name, shape, args.n_outputs, kwargs, args.builder)
    prof = measure_model(
        model,
        shape,
        batch_size=args.batch,
        runs=args.runs,
        warmup=args.warmup,
        time_budget_s=args.budget_s,
    )
    prof["kind"] = args.kind
    prof["name"] = args.name or model.name
    prof["kwargs"] = kwargs
    prof["rss_baseline_mb"] = rss_baseline
    prof["peak_rss_mb"] = _peak_rss_mb()  # whole process: build, save, trace, run
    prof["memory_method"] = "/proc/self/status VmHWM in a fresh process"
    return prof


# ----------------------------------------------------------------------------- table


def _fmt_int(v: Any) -> str:
    return "n/a" if v is None else f"{int(v):,}"


def _fmt_num(v: Any, digits: int = 2) -> str:
    return "n/a" if v is None else f"{float(v):.{digits}f}"


def _fmt_flops(v: Any) -> str:
    if v is None:
        return "n/a"
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if v >= scale:
            return f"{v / scale:.2f} {unit}"
    return str(int(v))


def markdown_table(rows: Sequence[dict[str, Any]], meta: dict[str, Any] | None = None) -> str:
    """Markdown table of profiles (rows with an ``error`` key are shown as failures)."""
    b = next((r["batch_size"] for r in rows if "batch_size" in r), 64)
    head = (
        "| model | input | params (trainable / total) | size (KB) | FLOPs / example | "
        f"latency b1 (ms, median) | latency b{b} (ms / example) | peak RSS (MB) | "
        f"inference RSS delta (MB) |"
    )
    lines = [head, "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['name']} | | error: {r['error']} | | | | | | |")
            continue
        lat = r["latency_ms"]
        bkey = str(r["batch_size"])
        flops = _fmt_flops(r["flops"])
        if r.get("flops_method") != "tf_profiler":
            flops += f" ({r.get('flops_method')})"
        lines.append(
            f"| {r['name']} | {'x'.join(str(d) for d in r['input_shape'])} | "
            f"{_fmt_int(r['params_trainable'])} / {_fmt_int(r['params_total'])} | "
            f"{r['size_bytes'] / 1024:.1f} | {flops} | {_fmt_num(lat['1']['median_ms'])} | "
            f"{_fmt_num(lat.get(bkey, lat['1'])['per_example_ms'], 3)} | "
            f"{_fmt_num(r.get('peak_rss_mb'), 0)} | {_fmt_num(r.get('inference_peak_delta_mb'), 1)} |"
        )
    text = "\n".join(lines) + "\n"
    if meta:
        text += (
            "\nFLOPs: batch-1 forward pass, a multiply-add = 2; method tf_profiler unless "
            "noted (see pipeline/cost.py). Latency: median of timed calls of a compiled "
            f"tf.function on CPU ({meta.get('cpu_count')} logical CPUs, intra-op threads "
            f"{meta.get('threads') or 'TF default'}; TF {meta.get('tensorflow')}, "
            f"{meta.get('platform')}); numbers depend on machine load. Peak RSS: whole "
            "fresh process (TF runtime included).\n"
        )
    return text


# ------------------------------------------------------------------------------- CLI




def run_meta(args: argparse.Namespace) -> dict[str, Any]:
    import keras
    import tensorflow as tf

    return {
        "date": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "threads": args.threads,
        "batch_size": args.batch,
        "runs": args.runs,
        "warmup": args.warmup,
    }


def write_table(out: Path, rows: list[dict[str, Any]], meta: dict[str, Any]) -> None:
    atomic_write_text(out, markdown_table(rows, meta))
    atomic_write_json(out.with_suffix(".json"), {"meta": meta, "models": rows})
    log.info("wrote %s and %s (%d models)", out, out.with_suffix(".json"), len(rows))
