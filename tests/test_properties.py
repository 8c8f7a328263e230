"""Property-based bad input (hypothesis): any input gives a result or a clear error.

"Clear error" is the project's own: ``PipelineError`` / ``ConfigError`` / ``SchemaError`` (a
``ValueError``) with a message; any other exception is a crash, and every example runs under a
deadline, so a hang (or a runaway allocation) fails too. Examples are derandomized (the same
inputs on every run) and their number is modest, so the file runs in well under a minute.

Covered: the WFDB header reader and what the windows stage does with the header's values, the
config loader (mappings, YAML text, ``--set`` overrides), the TFRecord decoder (bytes and
mutated Examples), the loader on generated files, normalization statistics, and the path
checks that keep names from configs and mirrors inside the data folder.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import typing
from pathlib import Path

import numpy as np
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # `.venv/bin/pytest` alone does not put the checkout on the path
    sys.path.insert(0, str(ROOT))

hypothesis = pytest.importorskip("hypothesis")
wfdb = pytest.importorskip("wfdb")

from hypothesis import HealthCheck, event, example, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from data_tools.synthetic import write_record  # noqa: E402
from pipeline.core import config as C  # noqa: E402
from pipeline.core.io_utils import PipelineError, inside, safe_name, safe_relpath  # noqa: E402
from pipeline.data import (
    loader,  # noqa: E402
    normalization,  # noqa: E402
    schema,  # noqa: E402
)
from pipeline.data import windowing as windows  # noqa: E402
from pipeline.data.download import parse_sha256sums  # noqa: E402

FUZZ_SCALE = int(os.environ.get("ECG_FUZZ_SCALE", "1"))
"""``ECG_FUZZ_SCALE=20`` runs 20 times the examples, with fresh random seeds (a long local search);
the default run is derandomized: the same examples every time."""


def fuzz(max_examples: int, deadline_ms: int | None = 5000):
    return settings(
        max_examples=max_examples * FUZZ_SCALE,
        deadline=deadline_ms,
        derandomize=FUZZ_SCALE == 1,
        database=None,
        print_blob=True,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


# ------------------------------------------------------------------------- WFDB headers


# A valid header for the 10 s two-lead format-212 record below (checksums left at 0).
GOOD_HEADER = (
    "s00 2 360 3600\n"
    "s00.dat 212 200.0(1024)/mV 12 0 1024 0 0 MLII\n"
    "s00.dat 212 200.0(1024)/mV 12 0 1024 0 0 V1\n"
)


@pytest.fixture(scope="module")
def record_dir(tmp_path_factory) -> Path:
    """A folder with a valid 10 s record ``s00`` (.dat and .atr); the tests write its .hea."""
    folder = tmp_path_factory.mktemp("hea")
    write_record(folder, "s00", seed=0, duration_s=10.0)
    (folder / "s00.hea").write_text(GOOD_HEADER)
    windows.process_record(folder, "s00", windows.WindowsConfig())  # imports done before timing
    return folder


_num_text = st.one_of(
    st.integers(-10, 10**12).map(str),
    st.floats(1e-7, 1.0).map(repr),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.sampled_from(
        [
            "360",
            "250",
            "20",
            "360/2",
            "1e-5",
            "0",
            "-360",
            "nan",
            "x",
            "360(0)",
            "200.0(1024)/mV",
            "12",
            "1024",
        ]
    ),
    st.text(alphabet="0123456789.-+e/()x:", max_size=8),
)
_signal_line = st.builds(
    "{} {} {} {} {} {} {} 0 {}".format,
    st.sampled_from(["s00.dat", "../s00.dat", "s01.dat", "/etc/passwd", "~", "-", "s00.dat"]),
    st.sampled_from(
        [
            "212",
            "16",
            "8",
            "80",
            "0",
            "508",
            "61",
            "310",
            "311",
            "24",
            "32",
            "x",
            "16x2",
            "212:1",
            "16+4",
        ]
    ),
    _num_text,
    _num_text,
    _num_text,
    _num_text,
    _num_text,
    st.sampled_from(["MLII", "V1", "", "x y"]),
)
_structured_header = st.builds(
    lambda name, n_sig, fs, sig_len, lines: (
        "\n".join([f"{name} {n_sig} {fs} {sig_len}", *lines]) + "\n"
    ),
    st.sampled_from(["s00", "s01", "s00/2", "", "s00 x"]),
    st.one_of(st.integers(-1, 4).map(str), _num_text),
    _num_text,
    st.one_of(st.integers(0, 4000).map(str), _num_text),
    st.lists(_signal_line, max_size=3),
)


@st.composite
def _one_field_replaced(draw, good: str) -> str:
    """The valid header with one field (fs, length, format, gain...) replaced."""
    lines = [ln.split(" ") for ln in good.splitlines()]
    i = draw(st.integers(0, len(lines) - 1))
    j = draw(st.integers(0, len(lines[i]) - 1))
    lines[i][j] = draw(_num_text)
    return "\n".join(" ".join(ln) for ln in lines) + "\n"


@st.composite
def _damaged_header(draw, good: str) -> str:
    data = bytearray(good.encode())
    for _ in range(draw(st.integers(1, 4))):
        pos = draw(st.integers(0, len(data) - 1))
        data[pos] = draw(st.integers(32, 126))
    return data.decode(errors="replace")[: draw(st.integers(0, len(data)))]


@given(
    text=st.one_of(
        _structured_header,
        _one_field_replaced(GOOD_HEADER),
        _damaged_header(GOOD_HEADER),
        st.text(max_size=300),
    )
)
@example(text=GOOD_HEADER.replace(" 360 ", " 0.00001 ", 1))  # was: a 5 GB resampling buffer
@fuzz(60)
def test_any_header_gives_windows_or_a_pipeline_error(record_dir, text):
    (record_dir / "s00.hea").write_text(text, encoding="utf-8", errors="surrogateescape")
    try:
        arrays, entry = windows.process_record(record_dir, "s00", windows.WindowsConfig())
    except PipelineError as exc:
        assert str(exc).startswith("record s00: ")
        event("clear error")
        return
    event("result")
    assert np.isfinite(arrays["beats"]).all() and np.isfinite(arrays["denoise_signal"]).all()
    assert entry["record"] == "s00"


# ------------------------------------------------------------------------------ configs

_scalar = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**6), 10**6),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=8),
    st.sampled_from(["1e-3", "125Hz", ".inf", "s00", "[1, 2]"]),
)
_odd_key = st.one_of(st.text(max_size=6), st.integers(-3, 3), st.booleans(), st.none())
_value = st.recursive(
    _scalar,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_odd_key, inner, max_size=3),
    max_leaves=8,
)


def _section(cls: type) -> st.SearchStrategy:
    """A section mapping: known field names mostly, with values right or wrong for them."""
    hints = typing.get_type_hints(cls)
    fields = {}
    for f in dataclasses.fields(cls):
        default = getattr(cls(), f.name)
        right = st.just(list(default) if isinstance(default, tuple) else default)
        if hints[f.name] is int:
            right = st.integers(-5, 500)
        elif hints[f.name] is float:
            right = st.floats(-1e3, 1e3) | st.integers(-5, 500)
        fields[f.name] = st.one_of(right, _value)
    return st.fixed_dictionaries({}, optional=fields) | st.dictionaries(
        st.sampled_from(sorted(fields)) | _odd_key, _value, max_size=3
    )


_config_dict = st.fixed_dictionaries(
    {},
    optional={
        f.name: _section(typing.get_type_hints(C.PipelineConfig)[f.name])
        for f in dataclasses.fields(C.PipelineConfig)
    },
) | st.dictionaries(_odd_key, _value, max_size=3)


@given(raw=_config_dict)
@fuzz(100)
def test_any_config_mapping_gives_a_config_or_a_config_error(raw):
    try:
        cfg = C.from_dict(raw, "generated")
    except C.ConfigError as exc:
        assert str(exc).startswith("generated")
        event("clear error")
        return
    event("result")
    assert isinstance(cfg, C.PipelineConfig)
    assert C.from_dict(C.to_dict(cfg)) == cfg  # what loads, dumps and reloads unchanged


@given(raw=_config_dict, as_text=st.booleans(), junk=st.binary(max_size=40))
@fuzz(80)
def test_any_config_file_gives_a_config_or_a_config_error(tmp_path_factory, raw, as_text, junk):
    p = tmp_path_factory.getbasetemp() / "generated.yaml"
    p.write_bytes(yaml.safe_dump(raw).encode() if as_text else junk)
    try:
        cfg = C.load_config(p, apply_env=False)
    except C.ConfigError as exc:
        assert "generated.yaml" in str(exc) or "config not found" in str(exc)
        event("clear error")
        return
    event("result")
    assert isinstance(cfg, C.PipelineConfig)


@given(
    text=st.one_of(
        st.text(max_size=40),
        st.builds(
            "{}.{}={}".format, st.text(max_size=8), st.text(max_size=8), st.text(max_size=12)
        ),
    )
)
@fuzz(100)
def test_any_override_gives_a_mapping_or_a_config_error(text):
    try:
        over = C.parse_override(text)
    except C.ConfigError as exc:
        assert "override" in str(exc)
        event("clear error")
        return
    event("result")
    try:
        C.load_config(None, over, apply_env=False)
    except C.ConfigError as exc:
        assert str(exc).startswith("overrides")
        event("clear error from the config")


# ------------------------------------------------------------------------ TFRecord decode


def _batches() -> list[schema.Batch]:
    rng = np.random.default_rng(0)
    z = np.zeros
    return [
        schema.Batch(
            "segments",
            "s00",
            rng.random((3, 720), np.float32),
            np.array([0, 1, 2], np.int8),
            np.arange(3, dtype=np.int32),
            z((3, 3), np.float32),
        ),
        schema.Batch(
            "beats",
            "s00",
            rng.random((2, 4, 187)).astype(np.float16),
            np.array([0, 1], np.int8),
            np.arange(2, dtype=np.int32),
            z((2, 3), np.float32),
        ),
        schema.Batch(
            "denoise",
            "s00",
            rng.random((1500, 2), np.float32),
            z(2, np.int8),
            np.array([0, 45], np.int32),
            z((2, 0), np.float32),
            frame_length=1440,
            eval_grid=np.array([1, 0], np.uint8),
            chunk_start=90,
        ),
        schema.Batch(
            "ptbxl",
            "fold01_g000",
            rng.random((2, 1000, 12), np.float32),
            np.array([[1, 0, 0, 1, 0], [0, 1, 0, 0, 0]], np.int8),
            np.array([1, 2], np.int32),
            z((2, 1), np.float32),
        ),
    ]


KEYS = sorted(
    {
        "schema_version",
        "kind",
        "record",
        "n",
        "shape",
        "dtype",
        "x",
        "label_dim",
        "y",
        "index",
        "aux_dim",
        "aux",
        "frame_length",
        "eval_grid",
        "chunk_start",
    }
)
_int64 = st.integers(-(2**63), 2**63 - 1)
_mutation = st.tuples(
    st.sampled_from([*KEYS, "extra"]),
    st.sampled_from(["ints", "bytes", "delete", "empty"]),
    st.one_of(
        st.lists(
            st.one_of(st.integers(-3, 300), _int64, st.sampled_from([2**31, 2**32])), max_size=3
        ),
        st.binary(max_size=64),
        st.sampled_from([b"float64", b"denoise", b"beats", b""]),
    ),
)


def _mutate(serialized: bytes, mutations) -> bytes:
    import tensorflow as tf

    ex = tf.train.Example.FromString(serialized)
    f = ex.features.feature
    for key, op, value in mutations:
        if op == "delete":
            if key in f:
                del f[key]
        elif op == "empty":
            f[key].CopyFrom(tf.train.Feature())
        elif op == "ints":
            vals = value if isinstance(value, list) else list(value[:3])
            f[key].CopyFrom(tf.train.Feature(int64_list=tf.train.Int64List(value=vals)))
        else:
            raw = value if isinstance(value, bytes) else bytes(str(value), "ascii")
            f[key].CopyFrom(tf.train.Feature(bytes_list=tf.train.BytesList(value=[raw])))
    return ex.SerializeToString()


def _check_decoded(b: schema.Batch) -> None:
    assert 0 < b.n <= schema.MAX_BATCH and b.kind in schema.KINDS
    assert b.index.shape == (b.n,) and b.aux.shape[0] == b.n
    if b.kind == "denoise":
        assert b.eval_grid.shape == (b.n,) and b.x.ndim == 2
        assert 0 <= b.index.min() and b.index.max() + b.frame_length <= b.x.shape[0]
    else:
        assert b.x.shape[0] == b.n


@pytest.fixture(scope="module")
def tf_ready() -> None:
    """Imports TensorFlow before the timed examples (the first decode would otherwise)."""
    schema.decode(schema.encode(_batches()[0]))


def _decode_or_clear_error(data: bytes) -> None:
    """Decodes ``data``: a well-formed batch, or a ``SchemaError`` naming where it came from."""
    try:
        b = schema.decode(data, where="generated")
    except schema.SchemaError as exc:
        assert str(exc).startswith("generated: ")
        event("clear error")
        return
    event("result")
    _check_decoded(b)


@given(data=st.binary(max_size=3000))
@fuzz(150)
def test_any_bytes_decode_to_a_batch_or_a_schema_error(tf_ready, data):
    _decode_or_clear_error(data)


@given(which=st.integers(0, 3), mutations=st.lists(_mutation, min_size=1, max_size=3))
@example(which=0, mutations=[("shape", "ints", [2**32, 2**32]), ("x", "bytes", b"")])
@fuzz(200)
def test_any_mutated_example_decodes_or_raises_a_schema_error(tf_ready, which, mutations):
    """Was: a shape whose product overflows int64 passed the size check (ValueError later)."""
    _decode_or_clear_error(_mutate(schema.encode(_batches()[which]), mutations))


# ---------------------------------------------------------------------- loader on files


@pytest.fixture(scope="module")
def seg_cfg(tmp_path_factory):
    root = tmp_path_factory.mktemp("lfuzz")
    (root / "tfrecords" / "segments").mkdir(parents=True)
    return root, C.load_config(None, {"data": {"data_dir": str(root)}}, apply_env=False)


def _tfrecord(payloads: list[bytes]) -> bytes:
    import tempfile

    import tensorflow as tf

    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "f.tfrecord"
        with tf.io.TFRecordWriter(str(path)) as wr:
            for p in payloads:
                wr.write(p)
        return path.read_bytes()


@st.composite
def _tfrecord_file(draw) -> bytes:
    seg = schema.encode(_batches()[0])
    kind = draw(st.sampled_from(["bytes", "one mutated example", "cut", "flipped"]))
    if kind == "bytes":
        return draw(st.binary(max_size=4000))
    if kind == "one mutated example":
        return _tfrecord([_mutate(seg, draw(st.lists(_mutation, min_size=1, max_size=3)))])
    good = _tfrecord([seg, seg, seg])
    if kind == "cut":
        return good[: draw(st.integers(0, len(good) - 1))]
    data = bytearray(good)
    data[draw(st.integers(0, len(data) - 1))] ^= 1 << draw(st.integers(0, 7))
    return bytes(data)


@given(content=_tfrecord_file())
@fuzz(30, deadline_ms=None)  # each example builds a tf.data pipeline; hangs still time out
def test_loader_on_any_file_yields_batches_or_names_the_file(seg_cfg, content):
    """Files of one mutated Example, random bytes, a valid file cut or bit-flipped anywhere.

    (A valid first Example followed by an inconsistent one is a known loader bug, reported:
    tests/test_reliability.py::test_inconsistent_later_example_is_named.)
    """
    root, cfg = seg_cfg
    f = root / "tfrecords" / "segments" / "s00-00000-of-00001.tfrecord"
    f.write_bytes(content)
    try:
        ds = loader.create_dataset(["s00"], cfg, 4, False, task="mitdb_aami5_segments")
        n = sum(int(x.shape[0]) for x, _ in loader.iterate_checked(ds, [str(f)]))
    except PipelineError as exc:
        assert str(exc).startswith(str(f))
        event("clear error")
        return
    event("result")
    assert 0 < n <= 9


# ------------------------------------------------------------------- normalization JSON

_json = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=5)),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=4)
    ),
    max_leaves=12,
)
_floats = st.lists(st.floats(-1e3, 1e3), min_size=1, max_size=2)
_stats = st.fixed_dictionaries(
    {},
    optional={
        "kind": st.sampled_from(["segments", "beats", 3]),
        "mean": _json | _floats,
        "scale": _json | _floats | _floats.map(lambda v: [abs(x) + 0.1 for x in v]),
    },
)


@given(obj=st.one_of(_json, _stats))
@fuzz(150)
def test_any_normalization_file_loads_valid_statistics_or_names_the_file(tmp_path_factory, obj):
    p = tmp_path_factory.getbasetemp() / "norm.json"
    p.write_text(json.dumps(obj))
    try:
        mean, scale = normalization.load(p, "segments", None)
    except PipelineError as exc:
        assert str(exc).startswith(str(p))
        event("clear error")
        return
    event("result")
    assert mean.ndim == 1 and len(mean) and mean.shape == scale.shape
    assert np.isfinite(mean).all() and (scale > 0).all() and np.isfinite(scale).all()


# ------------------------------------------------------------------------------- paths

_path_text = (
    st.lists(
        st.sampled_from(
            ["..", ".", "a", "b.dat", "", "/", "\\", "\x00", "~", "..a", "a..", " ", "%2e%2e"]
        ),
        max_size=6,
    ).map("".join)
    | st.lists(st.sampled_from(["..", ".", "a", "", "b"]), max_size=5).map("/".join)
    | st.text(max_size=12)
)


@given(rel=_path_text)
@fuzz(300)
def test_any_relative_path_stays_inside_the_data_folder_or_is_refused(tmp_path_factory, rel):
    root = tmp_path_factory.getbasetemp() / "data"
    try:
        p = inside(root, rel)
    except PipelineError:
        event("refused")
        return
    event("result")
    assert p == root.resolve() / rel and root.resolve() in p.parents


@given(name=_path_text)
@fuzz(300)
def test_any_accepted_record_name_is_one_plain_file_name(name):
    try:
        safe_name(name)
    except PipelineError:
        event("refused")
        return
    event("result")
    assert Path(name).name == name and name not in (".", "..") and "/" not in name


_digest = st.sampled_from(["0" * 64, "ab" * 32, "AB" * 32, "0" * 63, "z" * 64, ""])


@given(
    lines=st.lists(st.builds("{} {}".format, _digest, _path_text | st.just("*a.dat")), max_size=5)
)
@fuzz(200)
def test_any_checksum_list_gives_safe_paths_or_a_pipeline_error(lines):
    try:
        sums = parse_sha256sums("\n".join(lines), "generated")
    except PipelineError as exc:
        assert str(exc).startswith("generated")
        event("clear error")
        return
    event("result")
    for rel, digest in sums.items():
        assert safe_relpath(rel) == rel and len(digest) == 64
        assert ".." not in rel.split("/") and not rel.startswith("/")
