"""`fer-bench gate`: a statistical regression gate between stored pytest-benchmark runs.

Torch-free: numpy and scipy over runs read from JSON. One job per module, from the bottom:

* ``stats``: the statistics (rank test, Holm, bootstrap and t intervals, MDE, run-count estimates);
* ``verdict``: the metrics, scopes and exit statuses, and the GateRow and GateReport the gate returns;
* ``comparable``: which baseline runs and cases may be compared (the same hardware, the same work);
* ``text``: the report as a text table or strict JSON;
* ``evaluate``: the decision, :func:`evaluate_gate` (its docstring explains the method; docs/gate.md its
  calibration);
* ``cli``: the options (shared with `fer-bench ab`) and cmd_gate.

The names below are the gate's public interface, importable from here.
"""

from fer_bench.results.gate.cli import (
    add_gate_arguments,
    add_verdict_arguments,
    cmd_gate,
    parse_alpha,
    parse_threshold,
)
from fer_bench.results.gate.evaluate import (
    MIN_MEMORY_DELTA_BYTES,
    MIN_ROUNDS,
    evaluate_gate,
    paired_log_ratios,
    suite_log_ratios,
)
from fer_bench.results.gate.stats import (
    BOOTSTRAP_SEED,
    MAX_RESAMPLES,
    MAX_RUNS_ESTIMATE,
    MIN_RESAMPLES,
    RESAMPLE_CHUNK,
    bootstrap_ratio_ci,
    collect_run_effects,
    estimate_pairs_to_resolve,
    estimate_runs_to_resolve,
    holm_adjust,
    mann_whitney_p,
    minimum_detectable_effect,
    paired_t,
    pool_run_effects,
    rank_test_floor,
    resample_medians,
    resolve_resamples,
    small_sample_factor,
)
from fer_bench.results.gate.text import format_gate_json, format_gate_text, format_gate_value
from fer_bench.results.gate.verdict import (
    EXIT_BAD_INPUT,
    EXIT_INCONCLUSIVE,
    EXIT_NO_BASELINE,
    EXIT_OK,
    EXIT_REGRESSION,
    HIGHER_BETTER,
    METRICS,
    RUN_VALUE_METRICS,
    SCOPES,
    GateReport,
    GateRow,
)

__all__ = [
    "BOOTSTRAP_SEED", "EXIT_BAD_INPUT", "EXIT_INCONCLUSIVE", "EXIT_NO_BASELINE", "EXIT_OK", "EXIT_REGRESSION",
    "HIGHER_BETTER", "MAX_RESAMPLES", "MAX_RUNS_ESTIMATE", "METRICS", "MIN_MEMORY_DELTA_BYTES", "MIN_RESAMPLES",
    "MIN_ROUNDS", "RESAMPLE_CHUNK", "RUN_VALUE_METRICS", "SCOPES", "GateReport", "GateRow", "add_gate_arguments",
    "add_verdict_arguments", "bootstrap_ratio_ci", "cmd_gate", "collect_run_effects", "estimate_pairs_to_resolve",
    "estimate_runs_to_resolve", "evaluate_gate", "format_gate_json", "format_gate_text", "format_gate_value",
    "holm_adjust", "mann_whitney_p", "minimum_detectable_effect", "paired_log_ratios", "paired_t",
    "pool_run_effects", "rank_test_floor", "resample_medians", "resolve_resamples", "small_sample_factor",
    "suite_log_ratios",
]
