"""Damaged TFRecords named in real runs: a corrupt record surfacing inside ``model.fit``,
``evaluate``, ``predict`` or a validation loop (``tf.data`` names no file) becomes a one-line
:class:`PipelineError` naming the first damaged file of those the step reads.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence


@contextlib.contextmanager
def damaged_files_named(files: Sequence[str], what: str) -> Iterator[None]:
    """Runs the body; on a TensorFlow read error rereads ``files`` one by one and raises a
    :class:`PipelineError` naming the damaged one (errors no file explains pass unchanged).

    Args:
        files: the TFRecord paths the body reads.
        what: the step, for the message (``training``, ``validation``).
    """
    import tensorflow as tf

    from pipeline.core.io_utils import PipelineError
    from pipeline.data import loader

    try:
        yield
    except (tf.errors.DataLossError, tf.errors.InvalidArgumentError, tf.errors.OutOfRangeError,
            tf.errors.UnknownError) as exc:
        bad = loader.find_damaged_file([str(f) for f in files])
        if bad is None:
            raise
        first = ((getattr(exc, "message", "") or type(exc).__name__).strip().splitlines() or [""])[0]
        raise PipelineError(
            f"{bad}: damaged TFRecord file read during {what} ({type(exc).__name__}: "
            f"{first[:200]}); rerun `python -m pipeline.tfrecords --force`"
        ) from None
