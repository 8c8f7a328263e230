"""House rules that keep the code readable, checked over the source tree (no TensorFlow).

- no function or method longer than ``MAX_FUNCTION_LINES`` outside tests;
- every command module (``pipeline/<command>.py``) under ``MAX_COMMAND_LINES``;
- no module imports another module's underscore names (``from x import _y``, ``alias._y``);
- data flows one way: a library package imports only the packages before it in ``LAYERS``,
  and never a command module;
- ``python -m pipeline`` lists every command.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOURCE_DIRS = ("pipeline", "models", "data_tools", "benchmarks")
MAX_FUNCTION_LINES = 80
MAX_COMMAND_LINES = 150
LAYERS = ("core", "data", "evaluation", "training", "protocol", "serving")
COMMANDS = ("download", "windows", "scalograms", "tfrecords", "train", "tune", "tune_filters",
            "tune_gate", "kfold",
            "final_eval", "predict", "export", "cost", "profile")


def _sources() -> list[Path]:
    return sorted(p for d in SOURCE_DIRS for p in (ROOT / d).rglob("*.py"))


def _rel(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def long_functions(limit: int = MAX_FUNCTION_LINES) -> list[str]:
    """``file:line name (N lines)`` for every function or method longer than ``limit``."""
    out = []
    for path in _sources():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1
                if n > limit:
                    out.append(f"{_rel(path)}:{node.lineno} {node.name} ({n} lines)")
    return out


def test_no_function_is_longer_than_the_limit():
    assert long_functions() == []


def test_command_modules_are_thin():
    sizes = {c: len((ROOT / "pipeline" / f"{c}.py").read_text().splitlines()) for c in COMMANDS}
    assert {c: n for c, n in sizes.items() if n >= MAX_COMMAND_LINES} == {}


PRIVATE_FROM = re.compile(r"^\s*from\s+[\w.]+\s+import\s+\(?[^#\n]*\b_[a-z]\w*", re.M)
PRIVATE_ATTR = re.compile(r"\b([A-Za-z]\w*)\._([a-z]\w*)")


def private_uses() -> list[str]:
    """Imports of another module's underscore names, and ``alias._name`` on imported modules."""
    out = []
    for path in _sources():
        text = path.read_text(encoding="utf-8")
        tree = ast.parse(text)
        modules = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module != "__future__":
                for a in node.names:
                    if a.name.startswith("_") and not a.name.startswith("__"):
                        out.append(f"{_rel(path)}:{node.lineno} from {node.module} import {a.name}")
                    modules.add(a.asname or a.name)
            elif isinstance(node, ast.Import):
                modules.update((a.asname or a.name).split(".")[0] for a in node.names)
            elif isinstance(node, ast.Attribute) and node.attr.startswith("_") \
                    and not node.attr.startswith("__") and isinstance(node.value, ast.Name):
                if node.value.id in modules and _is_project_module(tree, node.value.id):
                    out.append(f"{_rel(path)}:{node.lineno} {node.value.id}.{node.attr}")
    return out


def _is_project_module(tree: ast.Module, alias: str) -> bool:
    """Whether ``alias`` names a module of this project (pipeline, models, data_tools)."""
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            for a in node.names:
                if (a.asname or a.name) == alias:
                    return node.module.split(".")[0] in {"pipeline", "models", "data_tools"}
        elif isinstance(node, ast.Import):
            for a in node.names:
                if (a.asname or a.name).split(".")[0] == alias:
                    return a.name.split(".")[0] in {"pipeline", "models", "data_tools"}
    return False


def test_no_module_uses_another_modules_private_names():
    assert private_uses() == []


def layer_violations() -> list[str]:
    """Library imports that go against the layer order or reach a command module."""
    out = []
    for path in sorted((ROOT / "pipeline").rglob("*.py")):
        parts = path.relative_to(ROOT / "pipeline").parts
        if len(parts) < 2 or parts[0] not in LAYERS:
            continue
        here = LAYERS.index(parts[0])
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = []
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("pipeline"):
                names = ([f"pipeline.{a.name}" for a in node.names] if node.module == "pipeline"
                         else [node.module])
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names if a.name.startswith("pipeline.")]
            for name in names:
                top = name.split(".")[1] if name.count(".") else ""
                if top in COMMANDS:
                    out.append(f"{_rel(path)}:{node.lineno} imports the command {name}")
                elif top in LAYERS and LAYERS.index(top) > here:
                    out.append(f"{_rel(path)}:{node.lineno} imports {name} (a later layer)")
    return out


def test_data_flows_one_way():
    assert layer_violations() == []


def test_commands_never_import_each_other():
    bad = []
    for c in COMMANDS:
        tree = ast.parse((ROOT / "pipeline" / f"{c}.py").read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module == "pipeline":
                bad += [f"{c} imports {a.name}" for a in node.names if a.name in COMMANDS]
            elif isinstance(node, ast.ImportFrom) and node.module:
                top = node.module.split(".")[1] if node.module.startswith("pipeline.") else ""
                if top in COMMANDS:
                    bad.append(f"{c} imports {node.module}")
    assert bad == []


def test_python_m_pipeline_lists_every_command():
    res = subprocess.run([sys.executable, "-m", "pipeline"], cwd=ROOT, capture_output=True,
                         text=True, timeout=60, check=True)
    listed = [line.split()[0] for line in res.stdout.splitlines() if line.startswith("  ")]
    assert listed == list(COMMANDS)
    assert all(len(line.split(maxsplit=1)) == 2 for line in res.stdout.splitlines()
               if line.startswith("  "))


def test_python_m_pipeline_refuses_an_unknown_command():
    res = subprocess.run([sys.executable, "-m", "pipeline", "trian"], cwd=ROOT,
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 2
    assert res.stderr.strip().startswith("error: unknown command 'trian'; commands: download")


def test_every_test_the_readme_names_exists():
    """The README's "What happens when" table names a test per case; each must exist."""
    import fnmatch
    import re

    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    table = readme[readme.index("## What happens when"):]
    defined = set()
    for path in (ROOT / "tests").glob("test_*.py"):
        defined |= set(re.findall(r"^\s*def (test_\w+)", path.read_text(encoding="utf-8"), re.M))
    named = set(re.findall(r"`(?:[\w/]+\.py::)?(test_[\w*]+)`", table))
    missing = sorted(n for n in named if not fnmatch.filter(defined, n))
    assert named and missing == []
