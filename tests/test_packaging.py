"""Packaging: requirements.txt, pyproject.toml and requirements.lock agree; `pip install -e .`
gives the `ecg-pipeline` command; the built package holds every module and the YAML profiles."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tomllib
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
LOCK = ROOT / "requirements.lock"
PACKAGES = ("pipeline", "models", "data_tools")
COMMANDS = (
    "download windows scalograms tfrecords train tune kfold final_eval predict export".split()
)
needs_main = pytest.mark.skipif(
    not (ROOT / "pipeline" / "__main__.py").is_file(), reason="pipeline/__main__.py not there yet"
)


def requirement_lines(path: Path) -> list[str]:
    """The requirement lines of a requirements file, comments and blanks dropped."""
    lines = (line.split("#", 1)[0].strip() for line in path.read_text().splitlines())
    return [line for line in lines if line]


def lock_pins() -> dict[str, str]:
    """requirements.lock as {canonical name: version}; every line must be `name==version`."""
    pins = {}
    for line in requirement_lines(LOCK):
        m = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s=;]+)", line)
        assert m, f"requirements.lock: not a `name==version` line: {line!r}"
        name = canonicalize_name(m[1])
        assert name not in pins, f"requirements.lock pins {name} twice"
        pins[name] = m[2]
    return pins


def pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_pyproject_declares_the_package():
    project = pyproject()["project"]
    assert project["name"] == "ecg-pipeline"
    assert project["version"] == "0.3.0"
    assert project["requires-python"] == ">=3.11"
    assert project["scripts"] == {"ecg-pipeline": "pipeline.__main__:main"}
    assert set(project["optional-dependencies"]) == {"test", "onnx"}


def test_requirements_txt_is_pyproject_dependencies_plus_extras():
    project = pyproject()["project"]
    declared = list(project["dependencies"])
    for extra in project["optional-dependencies"].values():
        declared += extra
    in_txt = {str(Requirement(r)) for r in requirement_lines(ROOT / "requirements.txt")}
    assert in_txt == {str(Requirement(r)) for r in declared}
    test_names = {Requirement(r).name for r in project["optional-dependencies"]["test"]}
    assert test_names == {"pytest", "hypothesis", "pytest-xdist"}
    assert not test_names & {Requirement(r).name for r in project["dependencies"]}


def test_lock_pins_every_requirement_within_its_range():
    pins = lock_pins()
    assert not {"pip", "setuptools", "wheel", "ecg-pipeline"} & set(pins)
    for line in requirement_lines(ROOT / "requirements.txt"):
        req = Requirement(line)
        if req.marker is not None and not req.marker.evaluate():
            continue
        name = canonicalize_name(req.name)
        assert name in pins, f"{req.name} is in requirements.txt but not in requirements.lock"
        assert req.specifier.contains(pins[name], prereleases=True), (
            f"requirements.lock pins {name}=={pins[name]}, outside requirements.txt's {req}; "
            "regenerate the lock with data_tools/lock.sh"
        )
    assert "data_tools/lock.sh" in LOCK.read_text().split("\n\n")[0]


def test_venv_matches_lock():
    """The interpreter running the tests has exactly the locked versions (when it is a venv
    built by run_full_pipeline.sh's set-up step, which stamps it with the lock's sha256)."""
    stamp = Path(sys.prefix) / ".lock.sha256"
    if not stamp.is_file():
        pytest.skip(f"{sys.prefix} was not built from requirements.lock")
    want = hashlib.sha256(LOCK.read_bytes()).hexdigest()
    assert stamp.read_text().strip() == want, (
        "requirements.lock changed since the venv was built: run ./run_full_pipeline.sh --setup-only"
    )
    installed = {canonicalize_name(d.metadata["Name"]): d.version for d in metadata.distributions()}
    wrong = {n: (v, installed.get(n)) for n, v in lock_pins().items() if installed.get(n) != v}
    assert not wrong, f"locked vs installed versions differ: {wrong}"


def copy_project(dest: Path) -> Path:
    """What a source checkout needs to build: pyproject, requirements, README and the packages."""
    dest.mkdir()
    for name in ("pyproject.toml", "requirements.txt", "README.md"):
        shutil.copy2(ROOT / name, dest / name)
    for pkg in PACKAGES:
        shutil.copytree(ROOT / pkg, dest / pkg, ignore=shutil.ignore_patterns("__pycache__"))
    return dest


@needs_main
def test_python_m_pipeline_lists_every_command():
    out = subprocess.run(
        [sys.executable, "-m", "pipeline"], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    listed = re.findall(r"^\s+(\w+)\s", out.stdout, flags=re.M)
    assert set(COMMANDS) <= set(listed), out.stdout


def test_editable_install_gives_the_console_script(tmp_path):
    """`pip install -e .` into a new venv (without build isolation or an index, so offline) that
    sees this interpreter's packages through a .pth file: the declared dependencies must be met by
    the installed (locked) versions, the packages must import from the checkout, and the
    `ecg-pipeline` command must list the commands."""
    src = copy_project(tmp_path / "src")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    vpy = venv / "bin" / "python"
    site = subprocess.run(
        [vpy, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    Path(site, "_base_env.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    env = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    install = ["install", "--no-index", "--no-build-isolation", "-e", str(src)]
    pip = subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(vpy), *install],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert pip.returncode == 0, pip.stdout[-3000:] + pip.stderr[-3000:]
    assert "Successfully installed ecg-pipeline-0.3.0" in pip.stdout

    where = subprocess.run(
        [vpy, "-c", "import pipeline, models, data_tools; print(pipeline.__file__)"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert Path(where) == src / "pipeline" / "__init__.py"

    if not (ROOT / "pipeline" / "__main__.py").is_file():
        pytest.skip("pipeline/__main__.py not there yet")
    cli = venv / "bin" / "ecg-pipeline"
    assert cli.is_file()
    out = subprocess.run([cli, "--help"], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    for command in ("train", "predict"):
        assert re.search(rf"^\s+{command}\s", out.stdout, flags=re.M), out.stdout


def test_build_holds_every_module_and_the_profiles(tmp_path):
    """setuptools' build_py with the pyproject settings (what a wheel is made of) copies every
    .py file under pipeline/, models/ and data_tools/ and pipeline/configs/*.yaml, nothing else,
    and without 'Package would be ignored' warnings (a subpackage the discovery misses)."""
    src = copy_project(tmp_path / "src")
    out = tmp_path / "build"
    build_py = ["-c", "from setuptools import setup; setup()", "-q", "build_py", "-d", str(out)]
    run = subprocess.run(
        [sys.executable, *build_py], cwd=src, capture_output=True, text=True, timeout=120
    )
    assert run.returncode == 0, run.stderr
    assert "would be ignored" not in run.stderr and "as data is deprecated" not in run.stderr, (
        run.stderr
    )
    want = {
        p.relative_to(src).as_posix()
        for pkg in PACKAGES
        for p in (src / pkg).rglob("*")
        if p.is_file() and (p.suffix == ".py" or p.match("pipeline/configs/*.yaml"))
    }
    got = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()}
    assert "pipeline/configs/quick.yaml" in got and "pipeline/configs/full.yaml" in got
    assert got == want
