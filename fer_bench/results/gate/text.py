"""The gate's report as text: the table and summary lines, values in the metric's units, and strict JSON."""

from __future__ import annotations

import json
import math

from fer_bench.results.format import format_text_table
from fer_bench.results.gate.stats import MAX_RUNS_ESTIMATE
from fer_bench.results.gate.verdict import (
    COUNT_METRICS,
    EXIT_INCONCLUSIVE,
    EXIT_NO_BASELINE,
    EXIT_OK,
    EXIT_REGRESSION,
    RUN_VALUE_METRICS,
    GateReport,
)


def format_fraction(value: float) -> str:
    """0.072 -> '7.2%', 0.05 -> '5%', 0.258 -> '26%'."""
    return (f"{value:.1%}" if value < 0.1 else f"{value:.0%}").replace(".0%", "%")


def format_gate_value(value: float | None, metric: str) -> str:
    """A gate row's baseline or current value in the metric's unit (the text table and the HTML report)."""
    if value is None:
        return "-"
    if not math.isfinite(value):
        return "inf"
    if metric == "time":
        ms = value * 1e3
        return f"{ms:.4g} ms"
    if metric == "samples_per_s":
        return f"{value:.4g}/s"
    if metric == "samples_per_joule":
        return f"{value:.4g}/J"
    if metric == "instructions":
        return f"{value / 1e6:.5g} M"
    return f"{value / 2**20:.4g} MiB"


def format_gate_text(report: GateReport) -> str:
    """The report as a plain-text table with a summary line."""
    n_base = len(report.baseline)
    against = (f"{n_base} baseline runs, paired" if report.paired
               else f"{n_base} baseline run{'s' * (n_base != 1)}")
    head = (f"fer-bench gate: {', '.join(report.current)} vs {against} on {report.machine}; metric {report.metric}, "
            f"threshold {report.threshold:.1%}, alpha {report.alpha:g}")
    if report.metric in COUNT_METRICS:
        head += f" (intervals Bonferroni over {report.n_tested} judged case{'s' * (report.n_tested != 1)})"
    elif report.metric not in RUN_VALUE_METRICS:
        head += f" (Holm over {report.n_tested} tested case{'s' * (report.n_tested != 1)})"
    lines = [head]
    if report.rows:
        ci_head = f"{report.confidence:.2%} CI" if report.confidence is not None else "CI"
        table = []
        for r in report.rows:
            ci = f"[{r.ci_low:.3f}, {r.ci_high:.3f}]" if r.ci_low is not None else "-"
            p = f"{r.p_corrected:.2g}" if r.p_corrected is not None else "-"
            ratio = f"{r.ratio:.3f}" if r.ratio is not None else "-"
            mde = "-" if r.mde is None else "any" if math.isinf(r.mde) else f"{r.mde:.1%}"
            table.append([r.case, format_gate_value(r.baseline_value, report.metric),
                          format_gate_value(r.current_value, report.metric), ratio, ci, mde, p, r.verdict])
        lines.append(format_text_table(
            ["case", "baseline", "current", "ratio", ci_head, "MDE", "p (Holm)", "verdict"], table))
    if report.suite is not None:
        r = report.suite
        ci = f", {1 - report.alpha:.0%} CI [{r.ci_low:.3f}, {r.ci_high:.3f}]" if r.ci_low is not None else ""
        mde = "" if r.mde is None else ", MDE any" if math.isinf(r.mde) else f", MDE {r.mde:.1%}"
        p = f", p {r.p_value:.2g}" if r.p_value is not None else ""
        ratio = f"ratio {r.ratio:.3f}" if r.ratio is not None else "no ratio"
        gated = "gated" if report.scope == "suite" else "not gated (--scope suite gates it)"
        lines.append(f"{r.case} over {r.n_pairs} pairs: {ratio}{ci}{mde}{p}: {r.verdict} [{gated}]")
    lines.extend(f"note: {n}" for n in report.notes)
    if report.baseline_only:
        lines.append(f"{len(report.baseline_only)} baseline case(s) not in the current run: "
                     + ", ".join(report.baseline_only[:5]) + (" ..." if len(report.baseline_only) > 5 else ""))
    n_reg, n_inc = len(report.regressions), len(report.inconclusive)
    outcome = {EXIT_OK: "no regression", EXIT_REGRESSION: f"{n_reg} regression{'s' * (n_reg != 1)}",
               EXIT_NO_BASELINE: "no comparable baseline", EXIT_INCONCLUSIVE: "no regression"}[report.exit_status]
    if n_inc:
        outcome += f", {n_inc} inconclusive" + (" (--allow-inconclusive)" if report.allow_inconclusive else "")
    line = f"result: {outcome} in {len(report.rows)} case(s) -> exit {report.exit_status}"
    if report.scope == "suite" and report.suite is not None:
        line = (f"result: {outcome} (scope suite: the suite row decides) in {len(report.rows)} case(s) -> exit "
                f"{report.exit_status}")
    if any(not r.contended for r in report.inconclusive):  # more runs resolve noise, never a busy machine
        unit = "pairs" if report.paired else "runs a side"
        runs = (f"about {report.runs_to_resolve} {unit}" if report.runs_to_resolve is not None
                else f"no practical number of {unit} (over {MAX_RUNS_ESTIMATE}, or an unbounded interval)")
        suite_decides = report.scope == "suite" and report.suite is not None and report.suite.status != "regression"
        where = "the suite" if suite_decides else "every inconclusive case"
        line += (f"; {runs} would resolve {format_fraction(report.threshold)} in {where} (an estimate: the "
                 f"interval narrows like 1/sqrt({unit}))")
    lines.append(line)
    return "\n".join(lines)


def format_gate_json(report: GateReport) -> str:
    """The report as strict JSON: an infinite or undefined value becomes null."""
    return json.dumps(_finite(report.to_dict()), indent=2, allow_nan=False)


def _finite(obj):
    """``obj`` with every infinite or undefined float, at any depth, made None."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj
