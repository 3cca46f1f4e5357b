"""Which items run and in what order: the benchmark group of an item, the preset's deselections, the emulated CPU
precisions left out, the budget's order, the same cases on every rank of a launch."""

from __future__ import annotations

from pathlib import Path

import pytest

from fer_bench.axes import AXES
from fer_bench.plugin.session import FerSession
from fer_bench.plugin.state import FER_FIXTURES
from fer_bench.plugin.summary import load_budget_prior


def benchmark_group(metafunc) -> str:
    marker = metafunc.definition.get_closest_marker("benchmark")
    if marker and marker.kwargs.get("group"):
        return marker.kwargs["group"]
    return metafunc.function.__name__.removeprefix("test_")


def explicitly_parametrized(metafunc) -> set[str]:
    names: set[str] = set()
    for marker in metafunc.definition.iter_markers("parametrize"):
        argnames = marker.args[0] if marker.args else marker.kwargs.get("argnames", ())
        if isinstance(argnames, str):
            argnames = [n.strip() for n in argnames.split(",")]
        names.update(argnames)
    return names


def emulated_here(session: FerSession, case: dict) -> str | None:
    """Why this CPU emulates the case's precision (``amp_bf16 is emulated on this CPU (no avx512_bf16/amx_bf16)``),
    for a CPU case whose precision is not fp32; else None. Asked once per precision."""
    precision = case["precision"]
    if precision == "fp32" or case.get("device") != "cpu":
        return None
    if precision not in session.emulated_verdicts:
        from fer_bench.engine.precision import resolve_precision_native

        flags = session.get_fingerprint().get("cpu", {}).get("flags") or ()
        native, note = resolve_precision_native(precision, "cpu", cpu_flags=flags)
        session.emulated_verdicts[precision] = None if native else (note or precision).split(":")[0]
    return session.emulated_verdicts[precision]


def leave_out_emulated(config, fer: FerSession, items) -> None:
    """The preset's CPU cases of a precision this CPU emulates (bf16 without avx512_bf16 or AMX, or under an ISA
    cap; marked ``fer_emulated`` when the plugin made them from the preset, emulated_here) are deselected: a call
    takes tens of seconds where fp32 takes a fraction of one, so they would spend the budget that the fp32 cases
    and the epochs need, to measure the emulation. ``--fer-precisions`` naming the precision runs them (flagged as
    emulated, as before); the terminal summary names what was left out. A test's own parametrize is never left
    out."""
    if fer.launch is not None:
        return  # under a launcher, whose ranks must collect the same cases on any CPU
    kept, dropped = [], []
    for item in items:
        marker = item.get_closest_marker("fer_emulated")
        (dropped if marker else kept).append(item)
        if marker:
            precision, why = marker.args
            fer.left_out_emulated.setdefault(precision, [why, 0])[1] += 1
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept


def order_for_budget(fer: FerSession, items) -> None:
    """Under a time budget, each benchmark's cheapest item runs before any benchmark's second
    (fer_bench.plugin.budget.budget_order), with the stored times that choose it and guess the time left."""
    from fer_bench.plugin.budget import budget_order

    runnable = [item.nodeid for item in items if will_run_benchmark(item)]
    planned = set(runnable)
    prior = load_budget_prior(fer, [(item.nodeid, item.name) for item in items if item.nodeid in planned])
    fer.budget_prior = {} if prior is None else {nodeid: prior.times[name] for nodeid, name in
                                                  ((item.nodeid, item.name) for item in items) if name in prior.times}
    fer.prior_source = None if prior is None else prior.describe()
    order, fer.budget_firsts = budget_order([item.nodeid for item in items], runnable, fer.budget_prior)
    position = {nodeid: i for i, nodeid in enumerate(order)}
    items.sort(key=lambda item: position[item.nodeid])


def item_group(item, suite: Path) -> str | None:
    """The benchmark group (its marker's group, else its name) of a fer_bench benchmark: one that uses the plugin's
    fixtures or axes, or any benchmark of the project's own suite folder; None for anything else (a user's own
    benchmark is never deselected by a preset)."""
    names = set(getattr(item, "fixturenames", ()))
    if "benchmark" not in names:
        return None
    ours = bool(names & FER_FIXTURES or names & set(AXES))
    if not ours:
        try:
            ours = Path(item.path).resolve().is_relative_to(suite.resolve())
        except (OSError, ValueError, AttributeError):
            ours = False
    if not ours:
        return None
    marker = item.get_closest_marker("benchmark")
    if marker and marker.kwargs.get("group"):
        return marker.kwargs["group"]
    return getattr(item, "originalname", item.name).removeprefix("test_")


def check_same_cases(fer: FerSession, items) -> None:
    """Every rank of a launch must run the same cases in the same order, or a collective waits forever."""
    from fer_bench.engine import launch

    mine = [item.nodeid for item in items]
    every = launch.gather(mine)
    for rank, theirs in enumerate(every):
        if theirs != every[0]:
            first = next((a for a, b in zip(every[0], theirs) if a != b), None) or f"{len(theirs)} vs " \
                f"{len(every[0])} cases"
            pytest.exit(f"fer_bench: rank {rank} collected other cases than rank 0 (first difference: {first}); "
                        f"every rank must run the same pytest command", returncode=pytest.ExitCode.USAGE_ERROR)


def start_budget(fer: FerSession, items) -> None:
    """The items the budget is shared among: benchmarks that will run (collected, not marked skip)."""
    fer.total_items = len(items)
    fer.collected = [(item.nodeid, item.name) for item in items]
    fer.item_index = {item.nodeid: i for i, item in enumerate(items, 1)}
    fer.start_budget([item.nodeid for item in items if will_run_benchmark(item)])
    fer.budget.prior = dict(fer.budget_prior)
    fer.budget.firsts = set(fer.budget_firsts)


def will_run_benchmark(item) -> bool:
    if "benchmark" not in getattr(item, "fixturenames", ()) or item.get_closest_marker("skip"):
        return False
    return not any(m.args and m.args[0] is True for m in item.iter_markers("skipif"))


def skip_unless_launched_ddp(item, session: FerSession) -> None:
    """Under a launcher only parallel=ddp cases of the launch's world size run: the ranks are the case's
    processes (the same decision on every rank, from the case's params alone)."""
    params = getattr(getattr(item, "callspec", None), "params", {})
    world = session.launch.world_size
    if params.get("parallel") != "ddp":
        pytest.skip(f"under {session.launch.launcher} ({world} ranks) only parallel=ddp cases run; run the others "
                    f"without a launcher")
    if params.get("num_gpus") != world:
        pytest.skip(f"this launch has {world} ranks; the case asks num_gpus={params.get('num_gpus')}")
