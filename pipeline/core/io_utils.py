"""Small shared helpers: atomic writes, hashing, stage markers, logging and CLI errors.

Every file a stage produces is written to a temporary name in the same folder and renamed
into place, so an interrupted or failing run never leaves a half-written file that a later
run would trust.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import io
import json
import logging
import os
import re
import sys
import tempfile
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger("ecg")

# mkstemp creates files with mode 0600; outputs get the usual mode (0666 minus the umask).
_UMASK = os.umask(0o022)
os.umask(_UMASK)


class PipelineError(RuntimeError):
    """An expected failure (bad input, missing data...) reported as one line, exit code 2."""


class UnknownNameError(PipelineError, KeyError):
    """An unknown name looked up in a table (task, database...), with the known names.

    A :class:`PipelineError` (one line, exit code 2 at the command line) that is also a
    ``KeyError``, so code that looks names up and catches ``KeyError`` keeps working.
    """

    __str__ = RuntimeError.__str__  # KeyError's would quote the message


REGISTRY_KEY_ERROR = re.compile(r"unknown [\w ]+ '[^']*'; (registered|known): \[.*\]")
"""How a registry (``models.registry.get``) words a ``KeyError`` for an unknown name."""


_DISK_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})
_DISK_FULL_TEXTS = ("No space left on device", "Disk quota exceeded", "File too large")


def disk_full_reason(exc: BaseException) -> str | None:
    """Why a write failed for lack of space (``ENOSPC``, ``EDQUOT``, ``EFBIG``), else ``None``.

    Recognizes ``OSError`` and, by their message, errors of libraries that wrap the operating
    system's (TensorFlow's file system raises ``ResourceExhaustedError`` / ``OutOfRangeError``).
    """
    if isinstance(exc, OSError) and exc.errno in _DISK_FULL_ERRNOS:
        return os.strerror(exc.errno)
    text = str(exc)
    return next((t for t in _DISK_FULL_TEXTS if t in text), None)


@contextlib.contextmanager
def atomic_path(path: str | Path, suffix: str = ".tmp") -> Iterator[Path]:
    """Yields a temporary path next to ``path``; renames it into place on success.

    On failure the temporary file is removed, so nothing half-written is left under a name a
    later run would trust; a full disk (or file size limit) becomes a one-line
    :class:`PipelineError` naming ``path``.

    Args:
        path: final file name.
        suffix: end of the temporary name (e.g. ``.tmp.keras`` for Keras, which checks it).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        os.chmod(tmp_path, 0o666 & ~_UMASK)
        yield tmp_path
        os.replace(tmp_path, path)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            tmp_path.unlink()
        reason = disk_full_reason(exc)
        if reason is not None and not isinstance(exc, PipelineError):
            raise PipelineError(
                f"{path}: cannot write ({reason}); nothing partial was kept: free some space "
                "and rerun the same command to resume"
            ) from exc
        raise


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def _json_default(o: Any) -> Any:
    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serializable: {type(o).__name__}")


def atomic_write_json(path: str | Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n")


def read_json(path: str | Path, what: str = "JSON file") -> Any:
    """Reads JSON, turning any failure into a one-line :class:`PipelineError`."""
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError as exc:
        raise PipelineError(f"{path}: {what} not found") from exc
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise PipelineError(f"{path}: {what} is corrupted (not valid JSON: {exc})") from exc


def atomic_savez(path: str | Path, **arrays: np.ndarray) -> None:
    """Writes an uncompressed ``.npz`` atomically. Object arrays are refused."""
    for k, a in arrays.items():
        if np.asarray(a).dtype == object:
            raise TypeError(f"{path}: array {k!r} has dtype object; refusing to pickle")
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    atomic_write_bytes(path, buf.getvalue())


def load_npz(path: str | Path) -> dict[str, np.ndarray]:
    """Loads an ``.npz`` without pickles; a damaged file raises :class:`PipelineError`."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except FileNotFoundError as exc:
        raise PipelineError(f"{path}: file not found") from exc
    except Exception as exc:  # zipfile.BadZipFile, ValueError, EOFError, OSError ...
        raise PipelineError(f"{path}: damaged array file ({type(exc).__name__}: {exc})") from exc


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


# ---------------------------------------------------------------------------- stage markers


def stage_done(marker: Path, key: Mapping[str, Any]) -> bool:
    """True when ``marker`` exists and records the same key (config hash, inputs...)."""
    if not marker.is_file():
        return False
    try:
        saved = json.loads(marker.read_text())
    except (OSError, json.JSONDecodeError):
        return False
    return saved.get("key") == json.loads(json.dumps(dict(key), default=_json_default))


def mark_done(marker: Path, key: Mapping[str, Any], summary: Mapping[str, Any] | None = None) -> None:
    atomic_write_json(marker, {"key": dict(key), "summary": dict(summary or {})})


# --------------------------------------------------------------------------------- logging


def setup_logging(verbose: bool = False) -> None:
    level = logging.DEBUG if verbose else logging.INFO
    root = logging.getLogger()
    if not root.handlers:
        logging.basicConfig(level=level, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    root.setLevel(level)


def explain(exc: BaseException) -> str | None:
    """The one-line message for an error a user can cause, or ``None`` for a programming error.

    The rule of :func:`run_cli`:

    * :class:`PipelineError` and ``ConfigError``: their own message.
    * ``OSError`` raised by the operating system (it has an ``errno``): ``<file>: <strerror>``
      (a read-only output folder, a missing input, a full disk). An ``OSError`` without an
      ``errno`` was raised by code, not the system, and is not explained.
    * ``KeyError`` worded as a registry's unknown name (``unknown classifier 'x';
      registered: [...]``, :data:`REGISTRY_KEY_ERROR`): that message.
    * TensorFlow's ``NotFoundError`` / ``PermissionDeniedError`` (file system errors, whose
      message names the file): the first line of the message.

    Everything else (``ValueError``, ``TypeError``, any other ``KeyError``...) is a bug or an
    unforeseen case and keeps its traceback: a generic catch would hide where it came from.
    """
    from pipeline.core.config import ConfigError

    if isinstance(exc, (PipelineError, ConfigError)):
        return str(exc)
    if isinstance(exc, OSError) and exc.errno is not None:
        where = exc.filename if exc.filename is not None else ""
        other = f" -> {exc.filename2}" if exc.filename2 is not None else ""
        reason = exc.strerror or os.strerror(exc.errno)
        return f"{where}{other}: {reason}" if where else f"{reason} ({type(exc).__name__})"
    if isinstance(exc, KeyError) and len(exc.args) == 1 and isinstance(exc.args[0], str):
        if REGISTRY_KEY_ERROR.fullmatch(exc.args[0]):
            return exc.args[0]
    tf_module = type(exc).__module__ or ""
    if tf_module.startswith("tensorflow") and type(exc).__name__ in (
        "NotFoundError", "PermissionDeniedError"
    ):  # fmt: skip
        text = str(getattr(exc, "message", "") or exc)
        return text.splitlines()[0] if text else type(exc).__name__
    return None


def run_cli(main: Callable[[list[str] | None], int], argv: list[str] | None = None) -> int:
    """Runs a command's ``main``; errors a user can cause become one line and exit code 2.

    ``error: <message>`` goes to stderr for what :func:`explain` explains (its docstring holds
    the rule); any other exception propagates with its traceback. Ctrl-C exits 130 with a
    hint to rerun. TensorFlow's start-up notices are dropped (:mod:`pipeline.core.quiet_tf`).
    """
    from pipeline.core import quiet_tf

    quiet_tf.install()
    try:
        return main(argv)
    except KeyboardInterrupt:
        print("interrupted; rerun the same command to resume", file=sys.stderr)
        return 130
    except Exception as exc:
        message = explain(exc)
        if message is None:
            raise
        print(f"error: {message}", file=sys.stderr)
        return 2


def safe_name(name: str, what: str = "record name") -> str:
    """Refuses names that could escape a data folder (separators, ``..``, absolute paths)."""
    if (
        not name
        or name in (".", "..")
        or "/" in name
        or "\\" in name
        or "\x00" in name
        or name.startswith(".")
        or ".." in name
    ):
        raise PipelineError(f"{what} {name!r} is not allowed (no path separators or '..')")
    return name


def safe_relpath(rel: str, what: str = "path") -> str:
    """Validates a relative path from a manifest or mirror: no absolute path, no ``..``."""
    if not rel or rel.startswith(("/", "\\")) or "\\" in rel or "\x00" in rel:
        raise PipelineError(f"{what} {rel!r} is not allowed (must be relative, no backslashes)")
    parts = rel.split("/")
    if any(p in ("", ".", "..") for p in parts):
        raise PipelineError(f"{what} {rel!r} is not allowed (no '..' or empty parts)")
    return rel


def inside(root: Path, rel: str) -> Path:
    """Joins ``rel`` under ``root`` and checks the result stays inside ``root``."""
    root = root.resolve()
    p = (root / safe_relpath(rel)).resolve()
    if root != p and root not in p.parents:
        raise PipelineError(f"path {rel!r} escapes {root}")
    return p
