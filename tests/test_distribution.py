"""Training under tf.distribute.MirroredStrategy over two logical CPU devices."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

SCRIPT = textwrap.dedent(
    """
    import sys
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()])
    from pipeline.data import tfrecord_writer as tfrecords
    from pipeline import tfrecords as tfrecords_cmd
    from pipeline.data import windowing as windows
    from pipeline import windows as windows_cmd
    from pipeline.train import main
    from data_tools.synthetic import write_synthetic_database
    from pathlib import Path

    root = Path(sys.argv[1])
    write_synthetic_database(root / "raw" / "mitdb", n_records=4, seed=3, duration_s=30)
    sets = ["--set", "windows.workers=1"]
    assert windows_cmd.main(["--data-dir", str(root), "--databases", "mitdb", *sets]) == 0
    assert tfrecords_cmd.main(["--data-dir", str(root), "--kinds", "segments", *sets]) == 0
    sys.exit(main(["--data-dir", str(root), "--task", "mitdb_aami5_segments", "--model", "ldcnn",
                   "--model-kwargs", '{"filters": 8, "dilations": [1, 2]}',
                   "--run-dir", str(root / "run"), *sets,
                   "--set", "train.distribution=mirrored", "--set", "train.epochs=1",
                   "--set", "train.batch_size=16", "--set", "train.examples_per_epoch=64",
                   "--set", "splits.val_fraction=0.5"]))
    """
)


@pytest.mark.slow  # 22 s; the distributed loop's parity with fit runs by default in test_scaleout
def test_mirrored_strategy_over_two_logical_cpus(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "3"}
    r = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path)], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["replicas"] == 2 and summary["distribution"] == "mirrored"
    assert summary["epochs_done"] == 1
