"""The run profile follows the machine: a GPU picks ``gpu``, none picks ``cpu``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.core import hardware

ROOT = Path(__file__).resolve().parents[1]


def test_a_gpu_picks_the_gpu_profile_and_none_the_cpu_profile():
    assert hardware.choose_profile(["/physical_device:GPU:0"]) == "gpu"
    assert hardware.choose_profile([]) == "cpu"


@pytest.mark.parametrize("fake, want", [("0", "cpu"), ("2", "gpu")])
def test_faked_gpu_list_through_the_command(fake, want):
    env = {**os.environ, "ECG_FAKE_GPUS": fake, "PYTHONPATH": str(ROOT)}
    res = subprocess.run([sys.executable, "-m", "pipeline.core.hardware", "--json"], cwd=ROOT,
                         env=env, capture_output=True, text=True, timeout=60, check=True)
    seen = json.loads(res.stdout)
    assert seen["profile"] == want and len(seen["gpus"]) == int(fake)


def test_a_bad_fake_count_is_refused(monkeypatch):
    monkeypatch.setenv("ECG_FAKE_GPUS", "two")
    with pytest.raises(ValueError, match="ECG_FAKE_GPUS must be a whole number. Received: 'two'"):
        hardware.gpu_names()
