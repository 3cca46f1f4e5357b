"""The registry of compare views: each view is one module of this package that owns its rows, its chart and its
section of the HTML report, and registers itself once by name with :func:`register_view`.

`fer-bench compare --view`, `compare --plots` and `fer-bench report` iterate :func:`list_views`, so a new view is
one new module here and nothing else: the modules of this package (those whose names start with ``_`` aside) are
imported the first time the registry is read. As timm's ``register_model`` and TorchBench's ``BACKENDS``: a dict
behind one function, nothing spelled twice.
"""

from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

if TYPE_CHECKING:  # annotations only: the registry imports no view, chart or page code
    import pandas as pd

    from fer_bench.results.report_html import ReportContext, Section
    from fer_bench.results.runs import RunResult
    from fer_bench.results.tables import ViewTable

#: How a view compares cases that differ only in their image counts: always per image (throughput views), never
#: (whole runs and accuracies), or per image when --metric is samples_per_s.
COUNTS = ("per_image", "separate", "by_metric")


@dataclass(frozen=True)
class ViewInputs:
    """What a view's rows are built from: fer_bench.results.records.collect_records' records (the view may add
    fields to them), the loaded runs, and the --metric and --baseline given."""

    records: list[dict]
    runs: Sequence[RunResult]
    metric: str = "time"
    baseline: str | None = None


@dataclass(frozen=True)
class View:
    """One compare view.

    Attributes:
        name: the ``--view`` value and the PNG's name (``<name>.png``).
        rows: builds the view's ViewTable (tidy records, wide table, notes, meta for the chart).
        help: what ``compare --help`` says of it, after ``<name>: ``.
        title: its section's title in the report.
        order: its place in ``--view``'s choices, in ``--plots`` and in the report (then by name).
        counts: one of COUNTS.
        plot: draws its chart into a matplotlib Figure: ``plot(fig, frame, params, styles, meta)``; None: no chart.
        chartable: whether a non-empty frame has something to chart: ``chartable(frame, meta)``; None: always.
        report: its report sections, ``report(context) -> list[Section]``; None: the usual one (chart, table and
            notes, or a line under "Views without data").
        every_run: the view reads every run (ViewInputs.runs), not only the records' latest run of each platform
            and case, so the records' note on the older entries left out is not shown with it.
    """

    name: str
    rows: Callable[[ViewInputs], ViewTable]
    help: str
    title: str
    order: float = 100.0
    counts: str = "by_metric"
    plot: Callable[..., None] | None = None
    chartable: Callable[[pd.DataFrame, Mapping[str, Any]], bool] | None = None
    report: Callable[[ReportContext], list[Section]] | None = None
    every_run: bool = False

    def __post_init__(self) -> None:
        if self.counts not in COUNTS:
            raise ValueError(f"view {self.name!r}: counts {self.counts!r} is not one of {', '.join(COUNTS)}")


_VIEWS: dict[str, View] = {}


def register_view(view: View) -> View:
    """Add a view to the registry (a view module calls this once, at import). Returns the view.

    Raises:
        ValueError: another view already has the name.
    """
    known = _VIEWS.get(view.name)
    if known is not None and known.rows.__module__ != view.rows.__module__:
        raise ValueError(f"view {view.name!r} is registered twice: by {known.rows.__module__} and "
                         f"{view.rows.__module__}")
    _VIEWS[view.name] = view
    return view


def _discover() -> None:
    """Import this package's view modules; each registers its view. A module already imported is not run again."""
    for module in pkgutil.iter_modules(__path__):
        if not module.name.startswith("_"):
            importlib.import_module(f"{__name__}.{module.name}")


def list_views() -> tuple[str, ...]:
    """The registered views' names, in their order."""
    _discover()
    return tuple(sorted(_VIEWS, key=lambda name: (_VIEWS[name].order, name)))


def get_view(name: str) -> View:
    """The view registered under ``name``.

    Raises:
        KeyError: no such view.
    """
    if name not in _VIEWS:
        _discover()
    return _VIEWS[name]
