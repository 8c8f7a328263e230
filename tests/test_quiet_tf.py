"""TensorFlow's start-up notices are dropped; other stderr lines are kept."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from pipeline.core import quiet_tf

ROOT = Path(__file__).resolve().parents[1]
NOTICES = (
    "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n"
    "I0000 00:00:1796157493.867637   31066 port.cc:153] oneDNN custom operations are on. "
    "You may see slightly different numerical results\n"
    "I0000 00:00:1796157493.868012   31066 cudart_stub.cc:31] Could not find cuda drivers on "
    "your machine, GPU will not be used.\n"
)


def test_known_notices_are_dropped_and_other_lines_kept():
    assert quiet_tf.keep_lines(NOTICES) == ""
    assert quiet_tf.keep_lines(NOTICES + "error: something real\n") == "error: something real\n"


def _run(code: str, **env: str) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "PYTHONPATH": str(ROOT), **env}
    full_env.pop("ECG_TF_VERBOSE", None) if "ECG_TF_VERBOSE" not in env else None
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                          text=True, timeout=300, env=full_env)


def test_a_command_imports_tensorflow_without_start_up_lines():
    code = ("import sys; from pipeline.core.io_utils import run_cli\n"
            "def main(argv):\n"
            "    import keras, tensorflow as tf\n"
            "    print(float(tf.reduce_sum(tf.ones(3))), file=sys.stderr)\n"
            "    return 0\n"
            "sys.exit(run_cli(main, []))\n")
    res = _run(code)
    assert res.returncode == 0, res.stderr
    assert res.stderr.strip() == "3.0"


def test_verbose_switch_keeps_tensorflow_start_up_as_it_is():
    res = _run("from pipeline.core import quiet_tf; print(quiet_tf.install())",
               ECG_TF_VERBOSE="1")
    assert res.stdout.strip() == "False"
