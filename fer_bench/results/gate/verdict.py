"""What the gate answers: its metrics, scopes and exit statuses, and the GateRow and GateReport it returns.

Exit status: 0 no regression, 1 regression, 2 no comparable baseline, 3 bad input, 4 inconclusive (no regression,
but a tested case's noise hides changes of the threshold's size; 0 with --allow-inconclusive). 2 wins over 1, and
1 over 4.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

METRICS = ("time", "samples_per_s", "peak_memory_bytes", "samples_per_joule", "instructions")
#: Metrics recorded once per run (not per round): judged by the threshold on the runs' median, no test.
RUN_VALUE_METRICS = ("peak_memory_bytes", "samples_per_joule")
#: Metrics counted per call under Valgrind (--fer-instructions), judged by fer_bench.results.gate.instructions.
COUNT_METRICS = ("instructions",)
#: Each metric's default threshold (--threshold): what a change must exceed to count, fitted to its noise.
DEFAULT_THRESHOLDS = {"instructions": 0.01}
DEFAULT_THRESHOLD = 0.05
#: Metrics that are better higher.
HIGHER_BETTER = ("samples_per_s", "samples_per_joule")
EXIT_OK, EXIT_REGRESSION, EXIT_NO_BASELINE, EXIT_BAD_INPUT, EXIT_INCONCLUSIVE = 0, 1, 2, 3, 4
SCOPES = ("cases", "suite")
#: Metrics another process on the machine changes (time, and energy on a shared package): a contended case's
#: entries are set aside for them (fer_bench.results.gate.comparable.set_aside_contended); memory is its own.
CONTENTION_METRICS = ("time", "samples_per_s", "samples_per_joule")


def resolve_threshold(threshold: float | None, metric: str) -> float:
    """--threshold as given, else the metric's default (5%; instructions 1%)."""
    return DEFAULT_THRESHOLDS.get(metric, DEFAULT_THRESHOLD) if threshold is None else threshold


@dataclass
class GateRow:
    """The verdict on one case. Ratios are current over baseline in the metric's own terms."""

    case: str
    group: str | None
    status: str  # regression | improvement | unchanged | inconclusive | no baseline | not comparable
    verdict: str
    baseline_value: float | None = None
    current_value: float | None = None
    ratio: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    p_value: float | None = None
    p_corrected: float | None = None
    n_baseline: int = 0
    n_current: int = 0
    tested: bool = False
    #: minimum detectable effect of a tested case, as a fraction in the metric's worse direction (0.12: a 12%
    #: slowdown, or a 12% throughput drop); inf where nothing is detectable (JSON null, as for an untested case)
    mde: float | None = None
    #: for an inconclusive case, about how many runs a side (pairs, when paired) would bring its MDE to the
    #: threshold (an estimate)
    runs_to_resolve: int | None = None
    #: paired gate: the pairs that hold the case
    n_pairs: int = 0
    #: decided outside the statistics (a time-to-accuracy case that stopped reaching its target): gated in every
    #: scope
    always_gated: bool = False
    #: measured only on a contended machine (other processes took it) on a side: no verdict, inconclusive
    contended: bool = False


@dataclass
class GateReport:
    """Everything the gate decided, ready to print as text or JSON."""

    exit_status: int
    metric: str
    threshold: float
    alpha: float
    current: list[str]
    baseline: list[str]
    machine: str
    rows: list[GateRow] = field(default_factory=list)
    baseline_only: list[str] = field(default_factory=list)
    confidence: float | None = None
    n_tested: int = 0
    run_noise: float | None = None
    notes: list[str] = field(default_factory=list)
    messages: list[str] = field(default_factory=list)
    allow_inconclusive: bool = False
    #: about how many runs a side would resolve the threshold for every inconclusive case (an estimate; None
    #: when there is none, or when no practical number would)
    runs_to_resolve: int | None = None
    #: the runs were paired (baseline i with current i): runs_to_resolve counts pairs
    paired: bool = False
    #: cases: every tested case gates (Holm); suite: the suite row gates, then the cases (fixed sequence)
    scope: str = "cases"
    #: the suite row (paired gate): the geometric mean of the tested cases' per-pair ratios
    suite: GateRow | None = None

    @property
    def gated_rows(self) -> list[GateRow]:
        """The rows whose verdicts decide the exit status: every case, or under the suite scope the suite row and,
        once it is a significant regression, the cases."""
        if self.scope != "suite" or self.suite is None:
            return self.rows
        return [self.suite] + (self.rows if self.suite.status == "regression"
                               else [r for r in self.rows if r.always_gated])

    @property
    def regressions(self) -> list[GateRow]:
        return [r for r in self.gated_rows if r.status == "regression"]

    @property
    def inconclusive(self) -> list[GateRow]:
        return [r for r in self.gated_rows if r.status == "inconclusive"]

    def to_dict(self) -> dict:
        out = asdict(self)
        out["n_regressions"] = len(self.regressions)
        out["n_inconclusive"] = len(self.inconclusive)
        return out

