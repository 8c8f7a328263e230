"""Shared fixtures and markers: seeded synthetic records, the PhysioNet mirror, --run-slow."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_MIRROR = ROOT.parent / "shared" / "data"

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def pytest_addoption(parser):
    parser.addoption("--run-slow", action="store_true", default=False, help="run tests marked slow")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--run-slow"):
        return
    skip = pytest.mark.skip(reason="slow: pass --run-slow to run")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


def mirror_dir() -> Path | None:
    """The local PhysioNet mirror ($ECG_MIRROR if it is a folder, else ../shared/data)."""
    env = os.environ.get("ECG_MIRROR", "")
    for cand in (Path(env) if env and "://" not in env else None, DEFAULT_MIRROR):
        if cand is not None and (cand / "mitdb" / "SHA256SUMS.txt").is_file():
            return cand
    return None


@pytest.fixture(scope="session")
def mirror() -> Path:
    m = mirror_dir()
    if m is None:
        pytest.skip("PhysioNet mirror not found (set ECG_MIRROR or place shared/data beside the repo)")
    return m
