"""Tests of the charts (fer_bench.results.plots) `fer-bench compare --plots` writes and `fer-bench report` inlines:
one colour per platform in every chart, at most 8 series a panel, log scales past 30x, units and titles, SVG fit
for a page."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from fer_bench.results import charts, plots
from fer_bench.results.compare import create_view
from fer_bench.results.lines import pack_series
from fer_bench.results.runs import load_results
from fer_bench.results.views import list_views
from result_factory import (
    create_fingerprint,
    create_precision_cases,
    create_run,
    create_train_cases,
    create_workers_cases,
    write_run,
)

pytest.importorskip("matplotlib", reason="the plots extra (matplotlib) is not installed")

UNITS = ("images/s", "(ms", "(s", "(%)", "(x", "(count)", "per device", "(GPUs", "accuracy")


def _machine(i: int) -> dict:
    return create_fingerprint(f"box-{i:02d}", {"cpu": {"brand": f"CPU {i}", "cores": 2 + i}, "gpus": []})


@pytest.fixture(scope="module")
def twelve_machines(tmp_path_factory) -> Path:
    """12 machines, each with train, workers and precision cases: more platforms than the palette's 10 colours and
    than a panel's 8 series."""
    root = tmp_path_factory.mktemp("twelve")
    for i in range(12):
        speed = 1.0 + 0.4 * i
        cases = (create_train_cases(0.01, factor=1 / speed, seed=i, n=10) + create_workers_cases(seed=i, speed=speed)
                 + create_precision_cases(seed=i))
        write_run(root / f"box-{i:02d}" / "run.json", create_run(cases, _machine(i)))
    return root


@pytest.fixture(scope="module")
def views(twelve_machines) -> dict:
    runs = load_results([twelve_machines])
    return {v: create_view(v, runs) for v in list_views()}


def test_platform_styles_are_fixed_and_distinct():
    names = [f"m{i:02d}/cpu" for i in range(35)]
    styles = charts.create_platform_styles(reversed(names))  # built from the sorted list, whatever the order given
    assert list(styles) == sorted(names)
    assert [styles[n].color for n in names[:10]] == list(charts.PALETTE)  # ten distinct colours first
    assert len({(s.color, s.hatch, s.marker) for s in styles.values()}) == 35  # then hatches and markers too
    assert styles["m10/cpu"].color == styles["m00/cpu"].color and styles["m10/cpu"].hatch != styles["m00/cpu"].hatch
    assert charts.create_platform_styles(names[:3]) == {n: styles[n] for n in names[:3]}


def test_log_scale_rule():
    assert charts.use_log_scale([10, 301]) and not charts.use_log_scale([10, 300])
    assert not charts.use_log_scale([0.0, 1000.0]) and not charts.use_log_scale([])


def test_series_are_packed_at_most_eight_to_a_panel():
    keys = [(f"p{p}", f"v{v}") for p, n in ((1, 3), (2, 6), (3, 11), (4, 1)) for v in range(n)]
    packs = pack_series(keys)
    assert all(len(pack) <= charts.MAX_SERIES for pack in packs)
    assert sorted(k for pack in packs for k in pack) == sorted(keys)
    # a platform's series stay together where they fit: p2's six share a panel
    assert any({k for k in pack if k[0] == "p2"} == {k for k in keys if k[0] == "p2"} for pack in packs)


def _panels(fig) -> list:
    return [ax for ax in fig.axes if ax.has_data()]


def _bar_styles(ax) -> set:
    return {(tuple(round(c, 3) for c in p.get_facecolor()), p.get_hatch()) for p in ax.patches}


def test_platform_chart_facets_groups_and_splits_platforms(views):
    styles = charts.create_platform_styles(plots.collect_platforms(views))
    fig = plots.draw_view("platforms", views["platforms"], styles)
    panels = _panels(fig)
    titles = [ax.get_title(loc="left") for ax in panels]
    assert any(t.startswith("train_step") for t in titles) and any(t.startswith("epoch") for t in titles)
    for ax in panels:
        assert len(_bar_styles(ax)) <= charts.MAX_SERIES
        assert "images/s" in ax.get_xlabel() or "(ms" in ax.get_xlabel()
        assert ax.get_title(loc="left")
    # 12 platforms in train_step: split over panels of at most 8, sharing the group's scale
    train = [ax for ax in panels if ax.get_title(loc="left").startswith("train_step")]
    assert len(train) >= 2 and len({ax.get_xlim() for ax in train}) == 1
    # throughputs within 30x of each other: a linear scale from zero
    ends = [p.get_x() + p.get_width() for ax in train for p in ax.patches]
    assert not charts.use_log_scale(ends) and all(ax.get_xscale() == "linear" for ax in train)
    assert fig.texts and "Throughput" in fig.texts[0].get_text()


def test_values_over_30x_apart_get_a_log_scale(tmp_path):
    write_run(tmp_path / "a.json", create_run(create_train_cases(0.01, seed=1, n=10), _machine(1)))
    write_run(tmp_path / "b.json", create_run(create_train_cases(0.01, factor=0.01, seed=2, n=10), _machine(2)))
    view = create_view("platforms", load_results([tmp_path]))
    fig = plots.draw_view("platforms", view, charts.create_platform_styles(view.records["platform"]))
    (ax,) = _panels(fig)
    assert ax.get_xscale() == "log" and ax.get_xlabel() == "throughput (images/s), right is faster (log scale)"
    # the speedup over the baseline (the slower machine) beside each of the faster one's four bars
    speedups = [float(t.get_text().rstrip("x")) for t in ax.texts]
    assert len(speedups) == 4 and all(95 < s < 105 for s in speedups)


def test_workers_chart_has_at_most_eight_lines_a_panel_and_units(views):
    styles = charts.create_platform_styles(plots.collect_platforms(views))
    fig = plots.draw_view("workers", views["workers"], styles)
    panels = _panels(fig)
    assert len(panels) >= 2 * 3  # 24 series of the epoch group: 3 rows of throughput and data-wait panels
    for ax in panels:
        lines = [line for line in ax.get_lines() if len(line.get_xdata()) > 1 and line.get_label()[:1] != "_"]
        assert len(lines) <= charts.MAX_SERIES
        looks = {(line.get_color(), line.get_linestyle(), line.get_marker(), line.get_markerfacecolor())
                 for line in lines}
        assert len(looks) == len(lines)  # every line of a panel told apart
        assert any(u in ax.get_xlabel() for u in UNITS) and any(u in ax.get_ylabel() for u in UNITS)
        assert ax.get_title(loc="left")


def test_a_platform_has_one_colour_in_every_chart(views):
    styles = charts.create_platform_styles(plots.collect_platforms(views))
    bars = plots.draw_view("platforms", views["platforms"], styles)
    legend = {t.get_text().split(" ")[0].rstrip(":"): h.get_facecolor()
              for h, t in zip(bars.legends[0].legend_handles, bars.legends[0].get_texts())}
    lines = plots.draw_view("workers", views["workers"], styles)
    from matplotlib.colors import to_rgba

    seen = 0
    for ax in lines.axes:
        for line in ax.get_lines():
            platform = line.get_label().split(" \u00b7 ")[0]
            if platform in legend:
                assert to_rgba(line.get_color()) == pytest.approx(legend[platform])
                seen += 1
    assert seen >= 12


def test_write_plots_keeps_the_file_names(views, tmp_path):
    written = plots.write_plots(views, tmp_path / "p")
    assert sorted(p.name for p in written) == ["batch.png", "platforms.png", "precision.png", "workers.png"]
    for p in written:
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_svg_is_fit_for_a_page(views):
    styles = charts.create_platform_styles(plots.collect_platforms(views))
    svg = charts.figure_to_svg(plots.draw_view("precision", views["precision"], styles), "c7-")
    assert svg.startswith("<svg ") and svg.endswith("</svg>")
    assert "<?xml" not in svg and "<!DOCTYPE" not in svg and "<metadata" not in svg
    ids = re.findall(r'\bid="([^"]+)"', svg)
    assert ids and all(i.startswith("c7-") for i in ids)
    refs = re.findall(r'(?:url\(#|href="#)([^)"]+)', svg)
    assert refs and all(r in ids for r in refs)
    assert "<text" in svg and "speedup over fp32" in svg  # text stays text (svg.fonttype none)
    assert set(re.findall(r"https?://[^\"' ]+", svg)) <= {"http://www.w3.org/2000/svg", "http://www.w3.org/1999/xlink"}
