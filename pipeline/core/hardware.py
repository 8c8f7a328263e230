"""Which run profile fits this machine: ``gpu`` where TensorFlow sees a GPU, else ``cpu``.

``python -m pipeline.core.hardware`` prints the profile name (``run_full_pipeline.sh`` calls it
when no ``--profile`` is given) and, with ``--json``, what it saw. The GPU count comes from
TensorFlow's device list; ``ECG_FAKE_GPUS=N`` replaces it (tests, and a quick way to see the
plan of the other profile).
"""

from __future__ import annotations

import argparse
import json
import os
import sys

PROFILES = ("cpu", "gpu", "quick")
"""Run profiles: ``pipeline/configs/<name>.yaml``."""


def gpu_names() -> list[str]:
    """Names of the GPUs TensorFlow sees (``ECG_FAKE_GPUS=N`` fakes N of them)."""
    fake = os.environ.get("ECG_FAKE_GPUS")
    if fake is not None:
        if not fake.isdigit():
            raise ValueError(f"ECG_FAKE_GPUS must be a whole number. Received: {fake!r}")
        return [f"/physical_device:GPU:{i}" for i in range(int(fake))]
    from pipeline.core import quiet_tf

    quiet_tf.install()
    import tensorflow as tf

    return [d.name for d in tf.config.list_physical_devices("GPU")]


def choose_profile(gpus: list[str]) -> str:
    """``gpu`` when there is at least one GPU, else ``cpu``."""
    return "gpu" if gpus else "cpu"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m pipeline.core.hardware",
                                description="Print the run profile that fits this machine.")
    p.add_argument("--json", action="store_true", help="also print the devices seen")
    args = p.parse_args(argv)
    gpus = gpu_names()
    profile = choose_profile(gpus)
    print(json.dumps({"profile": profile, "gpus": gpus, "cpus": os.cpu_count()})
          if args.json else profile)
    return 0


if __name__ == "__main__":
    sys.exit(main())
