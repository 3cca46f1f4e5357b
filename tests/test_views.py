"""Tests of the compare view registry (fer_bench.results.views): a new view is one new module, found the way the real
views are, and it shows in `compare --view`, `compare --help`, `compare --plots` and `report` with nothing else
edited."""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path

import pytest

from fer_bench.cli import main
from fer_bench.results import views
from fer_bench.results.views import View, list_views, register_view
from result_factory import create_fingerprint, create_run, create_train_cases, write_run

#: A whole new view, as a contributor would add it: one module, nothing else touched.
ROUNDS_VIEW = '''
"""The rounds view: how many timed rounds each platform ran of each case."""

import pandas as pd

from fer_bench.results.tables import ViewTable, records_frame
from fer_bench.results.views import View, ViewInputs, register_view


def create_rounds_view(inputs: ViewInputs) -> ViewTable:
    rows = [{"group": r["group"], "benchmark": r["benchmark"], "platform": r["platform"], "case": r["case"],
             "rounds": r["rounds"]} for r in inputs.records]
    table = pd.DataFrame([{"platform": r["platform"], "case": r["case"], "rounds": r["rounds"]} for r in rows])
    return ViewTable("rounds", records_frame(rows, []), table, ["Timed rounds per case and platform."])


def plot_rounds(fig, frame, params, styles, meta) -> None:
    ax = fig.add_subplot()
    ax.barh(range(len(frame)), frame["rounds"], color=[styles[p].color for p in frame["platform"]])
    ax.set_title("Timed rounds per case")


register_view(View("rounds", create_rounds_view, help="timed rounds per case and platform (100% of them)",
                   title="Rounds per case", plot=plot_rounds))
'''

MACHINE = create_fingerprint("laptop-i5-4c", {"cpu": {"brand": "Intel i5", "cores": 4}, "gpus": []})


@pytest.fixture
def rounds_view(tmp_path, monkeypatch) -> None:
    """ROUNDS_VIEW as a module of a folder the views package searches, as if it were fer_bench/results/views/rounds.py;
    gone again after the test."""
    folder = tmp_path / "more_views"
    folder.mkdir()
    (folder / "rounds.py").write_text(ROUNDS_VIEW)
    monkeypatch.setattr(views, "__path__", [*views.__path__, str(folder)])
    monkeypatch.setattr(views, "_VIEWS", dict(views._VIEWS))
    importlib.invalidate_caches()
    yield
    sys.modules.pop(f"{views.__name__}.rounds", None)


@pytest.fixture
def runs(tmp_path) -> Path:
    write_run(tmp_path / "runs" / "laptop" / "run.json", create_run(create_train_cases(0.010, seed=1), MACHINE))
    return tmp_path / "runs"


def test_the_real_views_in_their_order():
    assert list_views() == ("platforms", "workers", "precision", "batch", "scaling", "stragglers", "convergence",
                            "ops", "paper", "compile", "nodes")


def test_a_new_view_is_one_new_module(rounds_view, runs, tmp_path, capsys):
    assert list_views()[-1] == "rounds"  # found like the real ones; after them (its order, 100, is the default)

    assert main(["compare", str(runs), "--view", "rounds"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("## fer-bench compare: rounds\n") and "Timed rounds per case and platform." in out
    assert "| platform | case | rounds |" in out and "laptop-i5-4c/cpu" in out

    assert main(["compare", str(runs), "--view", "rounds", "--format", "csv"]) == 0
    assert capsys.readouterr().out.splitlines()[0] == "group,benchmark,platform,case,rounds"

    with pytest.raises(SystemExit):
        main(["compare", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert "nodes,rounds}" in help_text
    assert "rounds: timed rounds per case and platform (100% of them). Default:" in help_text  # a % needs no escape

    assert main(["compare", str(runs), "--view", "rounds", "--plots", str(tmp_path / "png")]) == 0
    assert (tmp_path / "png" / "rounds.png").stat().st_size > 1000
    assert "rounds.png" in capsys.readouterr().err

    assert main(["report", str(runs), "-o", str(tmp_path / "report.html")]) == 0
    page = (tmp_path / "report.html").read_text()
    assert '<section id="view-rounds" class="section view" data-kind="view" data-charts="1"' in page
    assert "<h2>Rounds per case <span class=\"kind\">compare --view rounds</span></h2>" in page
    assert page.index('id="view-rounds"') > page.index('id="group-train_step"')  # after the real views' sections


def test_the_new_view_is_gone_after_the_test(runs, capsys):
    assert "rounds" not in list_views()
    with pytest.raises(SystemExit):
        main(["compare", str(runs), "--view", "rounds"])
    assert "invalid choice: 'rounds'" in capsys.readouterr().err


def test_a_name_is_registered_once():
    def rows(inputs):
        raise AssertionError("never built")

    with pytest.raises(ValueError, match="registered twice"):
        register_view(View("platforms", rows, help="", title=""))
    with pytest.raises(ValueError, match="counts 'sometimes'"):
        View("other", rows, help="", title="", counts="sometimes")
    assert "other" not in list_views()


def test_the_views_import_no_torch_and_no_layer_above_results():
    """results/ reads stored runs: every view module, the charts and the report import neither torch nor the engine,
    measure or the plugin."""
    code = ("import sys; from fer_bench.results import compare, plots, report; from fer_bench.results.views import "
            "list_views; list_views(); "
            "bad = [m for m in sys.modules if m == 'torch' or m.split('.')[:2] in (['fer_bench', 'engine'], "
            "['fer_bench', 'measure'], ['fer_bench', 'plugin'])]; assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)
