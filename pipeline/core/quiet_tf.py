"""Quiet TensorFlow start-up: drops the C++ start-up lines TensorFlow prints on import.

TensorFlow writes ``oneDNN custom operations are on``, ``Could not find cuda drivers`` and
``All log messages before absl::InitializeLog() ...`` to file descriptor 2 while it is being
imported, before ``TF_CPP_MIN_LOG_LEVEL`` applies, and ``failed call to cuInit`` when it first
looks for GPUs, so every stage printed several lines of noise on a CPU machine. :func:`install` puts a finder on ``sys.meta_path`` that, on the first
``import tensorflow`` (directly or through Keras), captures fd 2 for the duration of the import
lists the physical devices inside that window, and replays every line that is not one of the
known start-up notices (:data:`NOISE`), so real errors still show. Nothing happens until TensorFlow is imported; ``ECG_TF_VERBOSE=1`` turns it
off. Importing :mod:`pipeline` installs it, and it sets ``TF_CPP_MIN_LOG_LEVEL=2`` unless the
environment says otherwise (TensorFlow's later INFO and WARNING lines).
"""

from __future__ import annotations

import contextlib
import importlib.abc
import importlib.util
import os
import re
import sys
import tempfile
from collections.abc import Iterator

NOISE = re.compile(
    r"WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR"
    r"|\] oneDNN custom operations are on"
    r"|\] Could not find cuda drivers on your machine"
    r"|\] Unable to register cu(DNN|FFT|BLAS) factory"
    r"|\] TF-TRT Warning: Could not find TensorRT"
    r"|\] This TensorFlow binary is optimized to use available CPU instructions"
    r"|To enable the following instructions: .* in other operations, rebuild TensorFlow"
    r"|computation placer already registered"
    r"|\] failed call to cuInit: .*(UNKNOWN ERROR \(303\)|CUDA_ERROR_NO_DEVICE)"
)
"""Start-up notices that say nothing a user can act on."""


def keep_lines(text: str) -> str:
    """``text`` without the lines that match :data:`NOISE`."""
    return "".join(line for line in text.splitlines(keepends=True) if not NOISE.search(line))


@contextlib.contextmanager
def filtered_stderr() -> Iterator[None]:
    """Captures file descriptor 2 and replays it without the :data:`NOISE` lines."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            rest = keep_lines(capture.read().decode("utf-8", "replace"))
            if rest:
                sys.stderr.write(rest)
                sys.stderr.flush()


class _QuietLoader(importlib.abc.Loader):
    def __init__(self, loader: importlib.abc.Loader):
        self.loader = loader

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module) -> None:
        with filtered_stderr():
            self.loader.exec_module(module)
            # the CUDA probe ("failed call to cuInit") runs when devices are first listed:
            # list them here, inside the capture (this creates no op and no eager context)
            module.config.list_physical_devices("GPU")


class QuietTensorFlowFinder(importlib.abc.MetaPathFinder):
    """Wraps the loader of the top-level ``tensorflow`` package once, then steps aside."""

    def find_spec(self, fullname, path, target=None):
        if fullname != "tensorflow":
            return None
        uninstall()
        spec = importlib.util.find_spec(fullname)
        if spec is not None and spec.loader is not None:
            spec.loader = _QuietLoader(spec.loader)
        return spec


def install() -> bool:
    """Installs the finder (idempotent). Returns whether it is active."""
    if os.environ.get("ECG_TF_VERBOSE") == "1" or "tensorflow" in sys.modules:
        return False
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # INFO and WARNING lines after start-up
    if not any(isinstance(f, QuietTensorFlowFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, QuietTensorFlowFinder())
    return True


def uninstall() -> None:
    sys.meta_path[:] = [f for f in sys.meta_path if not isinstance(f, QuietTensorFlowFinder)]
