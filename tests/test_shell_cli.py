"""run_full_pipeline.sh's command line: bad arguments are refused before anything runs, and the
set-up step builds the venv from requirements.lock, stamped with the lock's sha256.

Every run points ECG_VENV at a folder in tmp_path and PYTHON at /bin/false, so a regression that
reaches the set-up step fails at once instead of building a venv or running a stage.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "run_full_pipeline.sh"
STAGES = "download windows scalograms tfrecords train tune kfold final_eval"


def run_script(venv: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "ECG_VENV": str(venv), "PYTHON": "/bin/false"}
    return subprocess.run(
        ["bash", str(SCRIPT), *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )


def lock_sha256() -> str:
    return hashlib.sha256((ROOT / "requirements.lock").read_bytes()).hexdigest()


def assert_refused(out: subprocess.CompletedProcess, venv: Path, message: str) -> None:
    assert out.returncode == 2, out.stdout + out.stderr
    assert out.stdout == ""  # no stage header, no set-up line: nothing ran
    lines = out.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), out.stderr
    assert message in lines[0]
    assert not venv.exists()


def test_help_exits_before_setup(tmp_path):
    venv = tmp_path / "venv"
    out = run_script(venv, "--help")
    assert out.returncode == 0 and out.stdout.startswith("Usage: ./run_full_pipeline.sh")
    assert "requirements.lock" in out.stdout
    assert not venv.exists()


@pytest.mark.parametrize("option", ["--config", "--mirror", "--data-dir", "--set", "--stages",
                                    "--profile", "--budget-hours"])
def test_option_without_value_is_refused(tmp_path, option):
    venv = tmp_path / "venv"
    assert_refused(run_script(venv, "--quick", option), venv, f"{option} needs a value")


def test_option_followed_by_another_option_is_refused(tmp_path):
    venv = tmp_path / "venv"
    assert_refused(run_script(venv, "--set", "--force"), venv, "--set needs a value")


def test_unknown_stage_is_refused_before_any_stage_runs(tmp_path):
    venv = tmp_path / "venv"
    out = run_script(venv, "--quick", "--stages", "windows tfrecord")
    assert_refused(out, venv, "unknown stage 'tfrecord'")
    assert f"valid stages: {STAGES}" in out.stderr


def test_empty_stage_list_is_refused(tmp_path):
    venv = tmp_path / "venv"
    assert_refused(run_script(venv, "--stages", " "), venv, "--stages is empty")


def test_unknown_option_is_refused(tmp_path):
    venv = tmp_path / "venv"
    assert_refused(run_script(venv, "--quik"), venv, "unknown option --quik")


def fake_venv(tmp_path: Path, stamp: str | None, fail_install: bool = False) -> Path:
    """A venv whose bin/python logs its arguments (and, as the not-in-lock check, names one
    package to remove) instead of running anything; with fail_install, `pip install -r` fails."""
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    py = venv / "bin" / "python"
    py.write_text(
        "#!/bin/sh\n"
        'echo "$*" >> "$(dirname "$0")/calls.log"\n'
        'if [ "$1" = "-" ]; then cat > /dev/null; echo zzz-extra; fi\n'
        + ('case "$*" in *" -r "*) exit 1 ;; esac\n' if fail_install else "")
    )
    py.chmod(0o755)
    if stamp is not None:
        (venv / ".lock.sha256").write_text(stamp + "\n")
    return venv


def test_setup_is_skipped_when_the_stamp_is_the_lock_hash(tmp_path):
    venv = fake_venv(tmp_path, lock_sha256())
    out = run_script(venv, "--setup-only", "--stages", "windows tfrecords")
    assert out.returncode == 0, out.stderr
    assert "is up to date" in out.stdout
    assert not (venv / "bin" / "calls.log").exists()


def test_setup_installs_the_lock_when_the_stamp_differs(tmp_path):
    venv = fake_venv(tmp_path, "0" * 64)
    (venv / ".requirements.sha256").write_text("old stamp\n")
    out = run_script(venv, "--setup-only")
    assert out.returncode == 0, out.stderr
    calls = (venv / "bin" / "calls.log").read_text().splitlines()
    assert calls == [
        "-m pip install --quiet --upgrade pip",
        f"-m pip install --quiet -r {ROOT / 'requirements.lock'}",
        f"- {ROOT / 'requirements.lock'}",
        "-m pip uninstall --quiet --yes zzz-extra",
        "-m pip check",
    ]
    assert (venv / ".lock.sha256").read_text().strip() == lock_sha256()
    assert not (venv / ".requirements.sha256").exists()


def test_failed_install_is_not_stamped(tmp_path):
    venv = fake_venv(tmp_path, "0" * 64, fail_install=True)
    out = run_script(venv, "--setup-only")
    assert out.returncode == 1
    assert "error: stage 'setup' failed" in out.stderr
    assert (venv / "bin" / "calls.log").read_text().splitlines()[-1].endswith("requirements.lock")
    assert (venv / ".lock.sha256").read_text().strip() == "0" * 64
