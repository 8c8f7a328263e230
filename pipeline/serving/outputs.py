"""Where prediction outputs go: the output folder's checks and atomic WFDB writes.

Owns :func:`prepare_out_dir` (an existing file or a folder that cannot be written is refused
with one line before any model runs) and :func:`wfdb_out` (wfdb writes into a temporary
folder; its files are renamed into place only when all were written).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from pipeline.core.io_utils import PipelineError


def prepare_out_dir(out_dir: str | Path) -> Path:
    """Creates ``out_dir`` if needed and checks a file can be written in it.

    Raises:
        PipelineError: ``out_dir`` (or a parent) is a file, or the folder is not writable.
    """
    out_dir = Path(out_dir)
    for p in (out_dir, *out_dir.parents):
        if p.exists() and not p.is_dir():
            raise PipelineError(f"--out {out_dir}: {p} is a file, not a folder")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".write_probe.", dir=out_dir)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise PipelineError(f"--out {out_dir}: output folder is not writable "
                            f"({exc.strerror or type(exc).__name__})") from exc
    return out_dir


@contextlib.contextmanager
def wfdb_out(out_dir: Path, files: list[str]) -> Iterator[Path]:
    """A temporary folder inside ``out_dir`` for wfdb to write into; on success ``files``
    are renamed into ``out_dir`` in the given order (signal file before header)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".wfdb.", dir=out_dir))
    try:
        yield tmp
        for f in files:
            os.replace(tmp / f, out_dir / f)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
