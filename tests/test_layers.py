"""The one-way layers of fer_bench: no import cycle anywhere (function-level imports included), the layers
contract of setup.cfg kept (lint-imports), and the modules of the layers above data held under 600 lines."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "fer_bench"
SCRIPT = ROOT / "scripts" / "import_graph.py"


def _import_graph():
    spec = importlib.util.spec_from_file_location("import_graph", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_no_import_cycle_anywhere_in_fer_bench():
    import_graph = _import_graph()
    graph = import_graph.build_graph(PACKAGE)
    assert {"fer_bench.axes", "fer_bench.engine.availability", "fer_bench.plugin.presets"} <= set(graph)
    assert import_graph.find_cycles(graph) == []


def test_the_axis_registry_imports_nothing_above_it():
    graph = _import_graph().build_graph(PACKAGE)
    below = {"fer_bench.workload", "fer_bench._atomic", "fer_bench.errors"}
    assert graph["fer_bench.axes"] <= below


def test_the_layers_contract_is_kept():
    """setup.cfg's ``layers`` contract (cli, plugin, measure, engine, data | models | machine, axes, workload |
    _atomic | errors), every import counted."""
    pytest.importorskip("importlinter")
    lint = shutil.which("lint-imports") or str(Path(sys.executable).with_name("lint-imports"))
    proc = subprocess.run([lint, "--contract", "layers", "--no-cache"], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert "KEPT" in proc.stdout


@pytest.mark.parametrize("folder", ["plugin", "measure", "engine"])
def test_modules_stay_under_600_lines(folder):
    paths = sorted((PACKAGE / folder).rglob("*.py"))
    if folder == "plugin":
        paths += [PACKAGE / "axes.py", PACKAGE / "workload.py"]
    sizes = {str(p.relative_to(ROOT)): len(p.read_text(encoding="utf-8").splitlines()) for p in paths}
    assert len(sizes) > 3
    assert {name: n for name, n in sizes.items() if n > 600} == {}
