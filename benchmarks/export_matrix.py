"""Which export formats hold each registered model, and Keras vs TFLite latency.

``python -m benchmarks.export_matrix [--out benchmarks/export_matrix.md] [--latency ldcnn ...]``

For every model of ``models.registry.names("classifier")`` and ``("denoiser")``: builds it
at a small size (``SMALL`` below) on its task's input shape, exports it with
:mod:`pipeline.export` (SavedModel, TFLite float, TFLite int8, ONNX) and runs the exported
model and the Keras model on the same 16 seeded random-normal inputs. A cell says ``ok``
with the max absolute output difference (classifiers: also the argmax agreement), or why the
format cannot hold the model. The int8 cells are calibrated on 32 random-normal inputs, so
their differences are pessimistic (``pipeline.export --int8`` calibrates on training data).
Each model runs in its own process (one thread), so a converter crash costs one cell only.

``--latency NAME ...`` (``kind:name`` or a unique name) times one example (batch 1) through
Keras ``predict_on_batch``, the TFLite interpreter and ONNX Runtime at the builders' default
sizes: median of ``--repeats`` calls after warm-up, one thread each.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]

SHAPES = {"any1d": (720, 1), "segment": (720, 1), "sequence": (3, 16, 187, 1), "window": (1440, 2)}
"""Task input shapes: MIT-BIH segments, scalogram sequences (16 scales), denoising windows."""

_CONFORMER = {"filters": (8, 8), "d_model": 16, "n_blocks": 1, "num_heads": 2, "dense_units": 16}
SMALL: dict[tuple[str, str], dict[str, Any]] = {
    ("classifier", "bilstm"): {"units": (8, 8), "dense_units": 8},
    ("classifier", "bircnn"): {"filters": (8, 16), "gru_units": 8, "dense_units": 8},
    ("classifier", "cnn"): {"filters": (8, 16, 16), "dense_units": 16},
    ("classifier", "cnn_lstm"): {"filters": (8, 16, 16), "lstm_units": 8, "dense_units": 8},
    ("classifier", "conformer"): _CONFORMER,
    ("classifier", "conformer_cnn_only"): _CONFORMER,
    ("classifier", "conformer_no_attention"): _CONFORMER,
    ("classifier", "conformer_no_conv"): _CONFORMER,
    ("classifier", "deepecgnet"): {"filters": (8, 8), "d_model": 16, "num_heads": 2, "ff_dim": 16},
    ("classifier", "ecgnet"): {"filters": (8, 16, 16), "dense_units": 16},
    ("classifier", "ldcnn"): {"filters": 8},
    ("classifier", "liteecgnet"): {"stem_filters": 8, "filters": (8, 16, 16, 16)},
    ("classifier", "resnet1d"): {"filters": (8, 16, 16)},
    ("classifier", "se_ecgnet"): {"filters": (8, 16, 16)},
    ("denoiser", "cnn"): {"filters": (16, 16, 16)},
    ("denoiser", "cnn_dae"): {"filters": (8, 16, 16)},
    ("denoiser", "lstm"): {"units": (8, 8)},
    ("denoiser", "rnn"): {"units": (8, 8)},
    ("denoiser", "transformer"): {"d_model": 16, "num_heads": 2, "num_layers": 1, "ff_mult": 2},
    ("denoiser", "unet1d"): {"filters": (8, 8, 16, 16)},
    ("denoiser", "vq_transformer"): {"embed_dim": 16, "num_codes": 64, "d_model": 16,
                                     "num_heads": 2, "num_layers": 1, "ff_mult": 2},
}
COLUMNS = ("savedmodel", "tflite", "tflite_int8", "onnx")


def _single_thread() -> None:
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)


def _build(kind: str, name: str, small: bool) -> tuple[Any, tuple[int, ...]]:
    import keras

    from models import registry

    spec = registry.get(kind, name)
    shape = SHAPES[spec.input_kind]
    kwargs = SMALL.get((kind, name), {}) if small else {}
    keras.utils.set_random_seed(0)
    model = spec(shape, **kwargs) if kind == "denoiser" else spec(shape, 5, **kwargs)
    return model, shape


def family(model: Any) -> str:
    from pipeline.serving.export import recurrent_layers

    if recurrent_layers(model):
        return "recurrent"
    names = {type(la).__name__ for la in model._flatten_layers(include_self=False, recursive=True)}
    if names & {"MultiHeadAttention", "TransformerBlock"}:
        return "attention"
    return "convolutional"


def check_one(kind: str, name: str, n: int = 16) -> dict:
    """Exports one small model to every format; returns a row of the matrix."""
    import tempfile

    from pipeline.serving import export

    _single_thread()
    model, shape = _build(kind, name, small=True)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, *shape)).astype(np.float32)
    rep = rng.standard_normal((32, *shape)).astype(np.float32)
    ref = export.keras_predict(model, x)
    row: dict[str, Any] = {"kind": kind, "model": name, "family": family(model),
                           "params": int(model.count_params()), "shape": list(shape)}

    def cell(fn: Any) -> dict:
        t0 = time.perf_counter()
        try:
            runner, info = fn()
            got = runner(x)
        except export.ExportError as exc:
            return {"ok": False, "error": str(exc)}
        p = export.parity(ref, got, kind=kind)
        return {"ok": True, "max_abs_diff": p["max_abs_diff"],
                "argmax_agreement": p.get("argmax_agreement"), "seconds": round(time.perf_counter() - t0, 1),
                **{k: v for k, v in info.items() if k in ("batch", "quantization")}}

    with tempfile.TemporaryDirectory() as tmp:
        row["savedmodel"] = cell(lambda: (export.SavedModelRunner(export.export_savedmodel(model, Path(tmp) / "sm")), {}))

        def tfl(int8: bool) -> Any:
            content, info = export.convert_tflite(model, shape, int8=int8, representative=rep)
            return export.TFLiteRunner(content), info

        row["tflite"] = cell(lambda: tfl(False))
        row["tflite_int8"] = cell(lambda: tfl(True))

        def onnx() -> Any:
            content, info = export.convert_onnx(model, shape)
            return export.OnnxRunner(content), info

        row["onnx"] = cell(onnx)
    return row


def latency_one(kind: str, name: str, repeats: int = 50) -> dict:
    """Median batch-1 latency (ms) of Keras, TFLite and ONNX Runtime, one thread each."""
    from pipeline.serving import export

    _single_thread()
    model, shape = _build(kind, name, small=False)
    x = np.random.default_rng(0).standard_normal((1, *shape)).astype(np.float32)

    def median_ms(fn: Any) -> float:
        for _ in range(3):
            fn(x)
        ts = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            fn(x)
            ts.append(time.perf_counter() - t0)
        return round(float(np.median(ts)) * 1e3, 3)

    out: dict[str, Any] = {"kind": kind, "model": name, "params": int(model.count_params()),
                           "shape": list(shape), "keras_ms": median_ms(model.predict_on_batch)}
    content, info = export.convert_tflite(model, shape)
    out["tflite_ms"] = median_ms(export.TFLiteRunner(content, num_threads=1))
    out["tflite_batch"] = info["batch"]
    try:
        oc, _ = export.convert_onnx(model, shape)
        out["onnx_ms"] = median_ms(export.OnnxRunner(oc, num_threads=1))
    except export.ExportError as exc:
        out["onnx_ms"] = None
        out["onnx_error"] = str(exc)
    return out


# ------------------------------------------------------------------------------ driver


def _child(args: list[str], timeout_s: float) -> dict:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "OMP_NUM_THREADS": "1",
           "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "benchmarks.export_matrix", *args]
    try:
        p = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        return {"crashed": f"timed out after {timeout_s:g} s"}
    for line in reversed(p.stdout.splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    tail = (p.stderr.strip().splitlines() or ["no output"])[-1]
    return {"crashed": f"exit code {p.returncode} ({tail[:200]})"}


def _fmt_cell(c: dict | None, kind: str) -> str:
    if not c:
        return "?"
    if not c.get("ok"):
        err = c.get("error", "")
        for cut in ("TFLite cannot hold model", "ONNX cannot hold model"):
            if err.startswith(cut):
                err = err.split(": ", 1)[1]
        return f"**no**: {err[:160]}"
    s = f"ok ({c['max_abs_diff']:.1e}"
    if kind == "classifier" and c.get("argmax_agreement") is not None:
        s += f", agree {c['argmax_agreement']:.2f}"
    s += ")"
    if str(c.get("batch", "")).startswith("fixed"):
        s += " batch 1"
    if str(c.get("quantization", "")).startswith("dynamic"):
        s += " dyn-range"
    return s


def table(rows: list[dict]) -> str:
    head = ("| kind | model | family | params | savedmodel | tflite | tflite-int8 | onnx |\n"
            "|---|---|---|---:|---|---|---|---|")
    lines = [head]
    for r in rows:
        if "crashed" in r:
            lines.append(f"| {r['kind']} | {r['model']} | ? | ? | " + " | ".join(
                [f"crashed: {r['crashed']}"] * 4) + " |")
            continue
        cells = [_fmt_cell(r.get(c), r["kind"]) for c in COLUMNS]
        lines.append(f"| {r['kind']} | {r['model']} | {r['family']} | {r['params']:,} | "
                     + " | ".join(cells) + " |")
    return "\n".join(lines)


def latency_table(rows: list[dict]) -> str:
    lines = ["| model | input | params | Keras (ms) | TFLite (ms) | ONNX Runtime (ms) | TFLite batch |",
             "|---|---|---:|---:|---:|---:|---|"]
    for r in rows:
        if "crashed" in r:
            lines.append(f"| {r['model']} | | | crashed: {r['crashed']} | | | |")
            continue
        onnx = f"{r['onnx_ms']:.2f}" if r.get("onnx_ms") is not None else "n/a"
        lines.append(f"| {r['kind']}:{r['model']} | {tuple(r['shape'])} | {r['params']:,} | "
                     f"{r['keras_ms']:.2f} | {r['tflite_ms']:.2f} | {onnx} | {r['tflite_batch']} |")
    return "\n".join(lines)


def _versions() -> str:
    import importlib.metadata as md

    vs = []
    for p in ("tensorflow", "keras", "tf2onnx", "onnxruntime"):
        try:
            vs.append(f"{p} {md.version(p)}")
        except md.PackageNotFoundError:
            vs.append(f"{p} not installed")
    return ", ".join(vs)


def _resolve(spec: str) -> tuple[str, str]:
    from models import registry

    if ":" in spec:
        kind, name = spec.split(":", 1)
        registry.get(kind, name)
        return kind, name
    hits = [(k, spec) for k in ("classifier", "denoiser") if spec in registry.names(k)]
    if len(hits) != 1:
        raise SystemExit(f"{spec!r}: give kind:name (matches {hits or 'nothing'})")
    return hits[0]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m benchmarks.export_matrix", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "export_matrix.md"))
    p.add_argument("--json", default=None, help="also write the matrix rows as JSON here")
    p.add_argument("--models", nargs="*", default=None, help="kind:name subset (default: all)")
    p.add_argument("--latency", nargs="*", default=None,
                   help="models to time at default size (kind:name or a unique name)")
    p.add_argument("--repeats", type=int, default=50)
    p.add_argument("--timeout-s", type=float, default=600)
    p.add_argument("--skip-matrix", action="store_true")
    p.add_argument("--one", nargs=2, metavar=("KIND", "NAME"), help=argparse.SUPPRESS)
    p.add_argument("--one-latency", nargs=2, metavar=("KIND", "NAME"), help=argparse.SUPPRESS)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.one:
        print(json.dumps(check_one(*args.one)))
        return 0
    if args.one_latency:
        print(json.dumps(latency_one(*args.one_latency, repeats=args.repeats)))
        return 0
    from models import registry

    parts = [f"# Export matrix\n\nGenerated by `python -m benchmarks.export_matrix` on "
             f"{platform.machine()} ({os.cpu_count()} cores, {platform.platform()}); {_versions()}.\n"]
    if not args.skip_matrix:
        todo = ([_resolve(m) for m in args.models] if args.models else
                [(k, n) for k in ("classifier", "denoiser") for n in registry.names(k)])
        rows = []
        for kind, name in todo:
            t0 = time.perf_counter()
            r = _child(["--one", kind, name], args.timeout_s)
            rows.append({"kind": kind, "model": name, **r})
            print(f"{kind}:{name} done in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
        parts.append("Small models (see `SMALL` in the script) on the task input shapes "
                     f"{ {k: v for k, v in SHAPES.items() if k != 'segment'} }; cells: max |Keras - "
                     "export| over 16 random-normal inputs (classifiers: argmax agreement). "
                     "`batch 1`: TFLite with a fixed batch of 1 (recurrent models); `dyn-range`: "
                     "int8 weights only (recurrent models; see pipeline/export.py). int8 is "
                     "calibrated on random inputs here, so its differences are pessimistic, and "
                     "the models are untrained (near-uniform softmax), so an int8 difference of "
                     "1e-3 can flip the argmax.\n")
        parts.append(table(rows) + "\n")
        if args.json:
            Path(args.json).write_text(json.dumps(rows, indent=1))
    if args.latency:
        lrows = []
        for spec in args.latency:
            kind, name = _resolve(spec)
            lrows.append({"kind": kind, "model": name,
                          **_child(["--one-latency", kind, name, "--repeats", str(args.repeats)],
                                   args.timeout_s)})
            print(f"latency {kind}:{name}: {lrows[-1]}", file=sys.stderr)
        parts.append(f"## Latency, batch 1, one thread (median of {args.repeats} calls)\n\n"
                     "Builders' default sizes. Keras: `model.predict_on_batch`; TFLite: "
                     "`tf.lite.Interpreter` (XNNPACK); ONNX Runtime: CPU provider. Measured while "
                     "other jobs shared the machine, so treat differences under ~20 % as noise.\n")
        parts.append(latency_table(lrows) + "\n")
    Path(args.out).write_text("\n".join(parts))
    print("\n".join(parts))
    return 0


if __name__ == "__main__":
    sys.exit(main())
