"""scripts/import_graph.py: its cycle finder on small packages, and the lower layers of fer_bench held to it."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "import_graph.py"
PACKAGE = Path(__file__).resolve().parent.parent / "fer_bench"
#: The layers under engine: none of their modules may import a module of the layers above them.
LOWER = ("fer_bench.data", "fer_bench.machine", "fer_bench.models")
UPPER = ("fer_bench.engine", "fer_bench.measure", "fer_bench.plugin", "fer_bench.results", "fer_bench.cli")


@pytest.fixture(scope="module")
def import_graph():
    spec = importlib.util.spec_from_file_location("import_graph", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _write_package(root: Path, files: dict[str, str]) -> Path:
    for name, source in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(source))
    return root / "pkg"


#: a -> b at the top, b -> c inside a function (relative), c -> a through `from pkg import a`; d and e hang off
#: the cycle without closing one.
CYCLIC = {
    "pkg/__init__.py": "",
    "pkg/a.py": "import pkg.b\n",
    "pkg/b.py": """
        def late():
            from . import c
            return c
    """,
    "pkg/c.py": "from pkg import a\nfrom pkg.d import thing\n",
    "pkg/d.py": "thing = 1\n",
    "pkg/sub/__init__.py": "from ..d import thing\n",
    "pkg/sub/e.py": "from .. import a\nimport os\n",
}


def test_cycle_through_a_function_level_relative_import_is_reported(tmp_path, import_graph):
    root = _write_package(tmp_path, CYCLIC)
    graph = import_graph.build_graph(root)
    assert graph == {
        "pkg": set(),
        "pkg.a": {"pkg.b"},
        "pkg.b": {"pkg.c"},
        "pkg.c": {"pkg.a", "pkg.d"},
        "pkg.d": set(),
        "pkg.sub": {"pkg.d"},
        "pkg.sub.e": {"pkg.a"},
    }
    assert import_graph.find_cycles(graph) == [["pkg.a", "pkg.b", "pkg.c"]]


def test_script_prints_the_cycle_and_exits_1(tmp_path):
    root = _write_package(tmp_path, CYCLIC)
    proc = subprocess.run([sys.executable, str(SCRIPT), "--root", str(root)], capture_output=True, text=True)
    assert proc.returncode == 1, proc.stderr
    assert proc.stdout.splitlines() == [
        "cycle of 3 modules: pkg.a, pkg.b, pkg.c",
        "    pkg.a -> pkg.b",
        "    pkg.b -> pkg.c",
        "    pkg.c -> pkg.a",
        "7 modules, 6 import edges, 1 cycle(s)",
    ]


def test_package_without_a_cycle_is_clean(tmp_path, import_graph):
    files = dict(CYCLIC, **{"pkg/c.py": "from pkg.d import thing\n"})
    root = _write_package(tmp_path, files)
    assert import_graph.find_cycles(import_graph.build_graph(root)) == []
    proc = subprocess.run([sys.executable, str(SCRIPT), "--root", str(root)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["7 modules, 5 import edges, 0 cycle(s)"]


def test_two_separate_cycles_and_a_self_import(import_graph):
    graph = {"x": {"x", "y"}, "y": {"x"}, "p": {"q"}, "q": {"r"}, "r": {"p", "x"}, "lone": {"lone"}}
    assert import_graph.find_cycles(graph) == [["p", "q", "r"], ["x", "y"]]


def test_lower_layers_have_no_cycle_and_import_nothing_above_them(import_graph):
    graph = import_graph.build_graph(PACKAGE)
    lower = {m for m in graph if m.startswith(tuple(f"{p}." for p in LOWER)) or m in LOWER}
    assert {"fer_bench.data.cache", "fer_bench.machine.fingerprint", "fer_bench.models.flops"} <= lower
    assert import_graph.find_cycles({m: graph[m] & lower for m in lower}) == []
    upward = sorted(f"{m} -> {t}" for m in lower for t in graph[m]
                    if t in UPPER or t.startswith(tuple(f"{p}." for p in UPPER)))
    assert upward == []


def test_lower_layer_and_energy_modules_stay_under_600_lines():
    folders = [PACKAGE / p.split(".", 1)[1] for p in LOWER] + [PACKAGE / "measure" / "energy"]
    sizes = {str(path.relative_to(PACKAGE.parent)): len(path.read_text(encoding="utf-8").splitlines())
             for folder in folders for path in sorted(folder.rglob("*.py"))}
    assert "fer_bench/machine/fingerprint.py" in sizes and "fer_bench/measure/energy/nvml.py" in sizes
    assert {name: n for name, n in sizes.items() if n > 600} == {}
