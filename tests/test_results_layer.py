"""The layers hold: fer_bench.results reads stored runs and never imports torch, the engine, measure or the plugin.

Two checks, one dynamic and one static: every module of fer_bench.results imported in a fresh interpreter leaves
those packages out of sys.modules, and no import statement in fer_bench/results (function-level ones included)
names them. And the modules of results, and `fer-bench ab`'s, stay under 600 lines.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

import fer_bench

PACKAGE = Path(fer_bench.__file__).resolve().parent
RESULTS = PACKAGE / "results"
#: What results may never import: torch and its kin, and every fer_bench layer that imports them or sits above.
FORBIDDEN = ("torch", "torchvision", "timm", "fer_bench.engine", "fer_bench.measure", "fer_bench.plugin",
             "fer_bench.models", "fer_bench.data", "fer_bench.cli", "fer_bench.ab")


def _results_modules() -> list[str]:
    modules = []
    for path in sorted(RESULTS.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        modules.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return modules


def _is_forbidden(name: str) -> bool:
    return any(name == f or name.startswith(f + ".") for f in FORBIDDEN)


def _package_of(path: Path) -> str:
    """The package a file's relative imports resolve against (the package itself for an __init__.py)."""
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1])


def _imported_names(source: str, package: str) -> list[tuple[int, str]]:
    """(line, module) for every import in ``source``, at any depth, relative ones resolved against ``package``;
    also ``importlib.import_module("...")`` and ``__import__("...")`` with a literal name."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level:
                base = package.split(".")[:len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            found.append((node.lineno, module))
            # `from fer_bench import measure` names the layer in the alias
            found.extend((node.lineno, f"{module}.{alias.name}") for alias in node.names)
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
            if name in ("import_module", "__import__") and isinstance(node.args[0].value, str):
                found.append((node.lineno, node.args[0].value))
    return found


def test_results_modules_are_found():
    modules = _results_modules()
    assert {"fer_bench.results.runs", "fer_bench.results.gate", "fer_bench.results.gate.evaluate"} <= set(modules)


def test_importing_results_loads_no_forbidden_layer():
    """Each module imported in turn in one fresh interpreter: the first one that brings a forbidden module in is
    named."""
    code = (
        "import importlib, json, sys\n"
        f"forbidden = {FORBIDDEN!r}\n"
        "bad = lambda: sorted(m for m in sys.modules if any(m == f or m.startswith(f + '.') for f in forbidden))\n"
        "out = {}\n"
        f"for name in {_results_modules()!r}:\n"
        "    importlib.import_module(name)\n"
        "    out[name] = bad()\n"
        "print(json.dumps(out))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                          cwd=PACKAGE.parent)
    loaded = json.loads(done.stdout)
    assert list(loaded) == _results_modules()
    assert {name: mods for name, mods in loaded.items() if mods} == {}


@pytest.mark.parametrize("path", sorted(RESULTS.rglob("*.py")), ids=lambda p: str(p.relative_to(RESULTS)))
def test_no_import_statement_names_a_forbidden_layer(path):
    names = _imported_names(path.read_text(), _package_of(path))
    bad = [(line, name) for line, name in names if _is_forbidden(name)]
    assert bad == [], f"{path.relative_to(PACKAGE.parent)} imports {bad}"


def test_the_static_check_sees_function_level_relative_and_dynamic_imports():
    source = ("import json\n"
              "def f():\n    import torch\n    from ...measure import turns\n    from .. import runs\n"
              "    import importlib\n    importlib.import_module('fer_bench.plugin.budget')\n")
    names = [name for _, name in _imported_names(source, "fer_bench.results.gate")]
    assert {"torch", "fer_bench.measure.turns", "fer_bench.results.runs", "fer_bench.plugin.budget"} <= set(names)
    assert [n for n in names if _is_forbidden(n)] == ["torch", "fer_bench.measure", "fer_bench.measure.turns",
                                                      "fer_bench.plugin.budget"]


def test_results_and_ab_modules_stay_under_600_lines():
    paths = sorted(RESULTS.rglob("*.py")) + [PACKAGE / "ab.py"]
    sizes = {str(path.relative_to(PACKAGE.parent)): len(path.read_text(encoding="utf-8").splitlines())
             for path in paths}
    assert "fer_bench/results/gate/evaluate.py" in sizes and "fer_bench/ab.py" in sizes
    assert {name: n for name, n in sizes.items() if n > 600} == {}
