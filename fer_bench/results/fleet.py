"""The fleet test behind `fer-bench compare --view nodes`: which sibling nodes (one hardware identity) lie outside the
fleet's own run-to-run noise, on which cases. Numpy only; never torch.

Per case, on the log of each run's median time per round:

* a node's value is the median over its runs, the fleet's centre the median over the nodes (each node one vote);
* the noise scale is robust: 1.4826 x the MAD of the per-run medians around the centre, over all the fleet's runs
  (each run weighted by one over its node's runs, so every node counts once however often it ran), taken as the
  larger of the case's own MAD and the median of the cases' MADs (a MAD of four runs alone can be near zero by
  chance; a typical case's cannot, and a noisy case keeps its own larger one), floored at 0.1%;
* ``z = (node value - centre) / scale``. A node's several runs give it a steadier median but no smaller allowance:
  sibling nodes differ by more than one node's run-to-run noise, and the spread of the per-run medians over the
  fleet covers both;
* two tests: the case test flags a (node, case) whose ``|z|`` is over its threshold; the node test flags a node
  whose median ``z`` over its cases is over its own threshold, a node off in the same direction on every case
  though each case alone is within the noise (a node 15% slow among four, with a 3.5% noise: +10% to +21% on
  each case, a median z of 3.5). A node the node test flags names the cases more than NAMING_Z noise units off in
  its direction. Each threshold is chosen so that a fleet with no slow node flags anything in ``alpha / 2`` of
  fleets, so the two together keep the family-wise false-alarm rate at ``alpha`` (1%) over all N x M comparisons. It is the 1 - alpha quantile of the largest
  ``|z|`` over simulated healthy fleets of the same shape (nodes, cases present) by the same estimator, because the
  MAD of a few nodes is itself uncertain and a normal quantile would flag too often. The simulated fleets have one
  run a node: the worst case, where sibling nodes differ as much as runs do; nodes with several runs that vary
  among themselves are then judged conservatively.
  Bonferroni's normal threshold for the same N x M comparisons is shown beside it for the arithmetic.

It finds the odd nodes while fewer than half of the fleet's nodes are off (the median and MAD break down at half).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from functools import lru_cache
from statistics import NormalDist
from typing import Sequence

import numpy as np

#: The family-wise false-alarm rate: the share of healthy fleets in which any (node, case) is flagged.
FAMILY_ALPHA = 0.01
#: 1.4826 x the MAD estimates a normal standard deviation.
MAD_TO_SIGMA = 1.4826
#: The smallest noise scale (0.1% on the log scale): identical medians must not make every difference significant.
MIN_SCALE = 0.001
#: A node the node test flags names the cases where it is more than this many noise units off in its direction.
NAMING_Z = 2.0
#: A fleet needs this many nodes before one of them can be told to be the odd one.
MIN_NODES = 3
_SEED = 20240
#: Simulated healthy fleets: at most this many numbers drawn in all, and between these many fleets.
_DRAWS, _MIN_SIMS, _MAX_SIMS = 4_000_000, 2000, 20000


@dataclass(frozen=True)
class FleetThreshold:
    """The |z| beyond which a (node, case) is outside the fleet's noise, and what it implies.

    Attributes:
        z: the threshold on |z|.
        comparisons: the (node, case) pairs tested (N x M where every node ran every case).
        family_alpha: the share of healthy fleets of this shape that would flag any pair (by construction).
        per_comparison: the share of single healthy (node, case) pairs beyond ``z`` in the simulation.
        bonferroni_z: the normal quantile of a two-sided test at ``family_alpha / comparisons``.
        simulations: healthy fleets simulated.
    """

    z: float
    comparisons: int
    family_alpha: float
    per_comparison: float
    bonferroni_z: float
    simulations: int
    #: the threshold on a node's median z over its cases (the node test)
    node_z: float = float("inf")

    def describe(self, nodes: int, cases: int) -> str:
        """The test, its threshold and the arithmetic, in one note."""
        per = self.family_alpha / max(1, self.comparisons)
        return (f"Node test: |median of a node's z over its cases| > {self.node_z:.2f} (a node slower or faster on "
                f"every case, each within the noise alone, is off: the cases named are those more than "
                f"{NAMING_Z:g} noise units off in its direction); case test: "
                f"|z| > {self.z:.2f}, z = (node median - fleet median) / fleet noise, on log times; the "
                f"noise is 1.4826 x the MAD of the per-run medians (the larger of the case's own and all cases'). "
                f"Each threshold is chosen so a fleet of {nodes} healthy nodes x {cases} cases ({self.comparisons} "
                f"comparisons) flags any node in {self.family_alpha / 2:.1%} of fleets, {self.family_alpha:.0%} for "
                f"the two tests together (family-wise, "
                f"{self.simulations} simulated healthy fleets of this shape, one run a node): about "
                f"{self.family_alpha / 2:.1%} / {self.comparisons} = {per / 2:.3%} per (node, case) (simulated: "
                f"{self.per_comparison:.3%}). Bonferroni with a known noise would say |z| > {self.bonferroni_z:.2f} "
                f"(two-sided, {self.family_alpha:g} / {self.comparisons})"
                + ("; the larger threshold pays for a noise estimated from few nodes." if self.z > self.bonferroni_z
                   else "."))


@dataclass(frozen=True)
class FleetJudgement:
    """The fleet test of one hardware identity: per node and case (arrays of shape N x M; NaN where a node did not
    run a case) and per case (shape M).

    Attributes:
        median_s: each node's median seconds per round (the median over its runs' medians).
        centre_s: the fleet's median per case.
        deviation: node median / fleet median - 1.
        z: deviation on the log scale over the noise scale.
        scale: the noise scale per case (log, a relative standard deviation).
        runs: each node's runs of each case.
        flagged: |z| over the case threshold, or the node test flagged the node and the case is more than NAMING_Z
            noise units off in its direction (never with fewer than MIN_NODES nodes).
        threshold: the threshold and its arithmetic; None with fewer than MIN_NODES nodes.
        node_score: each node's median z over the cases it ran (shape N).
        node_flagged: the node test's verdict per node (shape N).
    """

    median_s: np.ndarray
    centre_s: np.ndarray
    deviation: np.ndarray
    z: np.ndarray
    scale: np.ndarray
    runs: np.ndarray
    flagged: np.ndarray
    threshold: FleetThreshold | None
    node_score: np.ndarray | None = None
    node_flagged: np.ndarray | None = None


def _nanmedian(a: np.ndarray, axis) -> np.ndarray:
    if not np.isnan(a).any():
        return np.median(a, axis=axis)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # an all-NaN slice is a case no node ran: NaN
        return np.nanmedian(a, axis=axis)


def _weighted_median(values: np.ndarray, weights: np.ndarray) -> float:
    """The median of ``values`` (NaN left out) where each value counts ``weights`` times."""
    keep = ~np.isnan(values)
    v, w = values[keep], weights[keep]
    if not len(v):
        return float("nan")
    order = np.argsort(v)
    v, w = v[order], w[order]
    cum = np.cumsum(w)
    half = cum[-1] / 2.0
    i = int(np.searchsorted(cum, half))
    if np.isclose(cum[i], half) and i + 1 < len(v):
        return float((v[i] + v[i + 1]) / 2.0)  # as the plain median of an even count
    return float(v[i])


def _scores(x: np.ndarray, node_runs: Sequence[np.ndarray],
            run_weight: np.ndarray | None = None) -> tuple[np.ndarray, ...]:
    """Node values, centre, scale and z of fleets ``x`` (B x R runs x M cases, log times, NaN where missing).

    ``run_weight`` (R): how much each run counts in the noise scale (1 / its node's runs of the case, so each node
    counts once however often it ran); None: each run once (the simulated fleets, one run a node).
    """
    y = np.stack([_nanmedian(x[:, idx, :], axis=1) for idx in node_runs], axis=1)  # B x N x M
    centre = _nanmedian(y, axis=1)  # B x M
    resid = np.abs(x - centre[:, None, :])
    if run_weight is None:
        per_case = _nanmedian(resid, axis=1)
    else:  # one fleet: weighted medians, a case at a time
        r = resid[0]
        per_case = np.array([[_weighted_median(r[:, c], run_weight[:, c]) for c in range(r.shape[1])]])
    # a typical case's MAD: a floor for a case whose few runs agree by chance, which neither the noisiest cases nor
    # the odd node's own deviations (all of one sign) raise as a MAD over every residual would
    pooled = _nanmedian(per_case, axis=1)
    scale = np.maximum(MAD_TO_SIGMA * np.maximum(per_case, pooled[:, None]), MIN_SCALE)
    z = (y - centre[:, None, :]) / scale[:, None, :]
    return y, centre, scale, z


@lru_cache(maxsize=64)
def _calibrate(present: bytes, shape: tuple[int, int], node_of_run: tuple[int, ...], alpha: float) -> FleetThreshold:
    mask = np.frombuffer(present, dtype=bool).reshape(shape)
    n_nodes = max(node_of_run) + 1
    node_runs = [np.flatnonzero(np.asarray(node_of_run) == n) for n in range(n_nodes)]
    sims = int(min(_MAX_SIMS, max(_MIN_SIMS, _DRAWS // max(1, mask.size))))
    rng = np.random.default_rng(_SEED)
    x = rng.standard_normal((sims, *shape))
    x[:, ~mask] = np.nan
    _, _, _, z = _scores(x, node_runs)
    valid = ~np.isnan(z[0])
    comparisons = int(valid.sum())
    # two tests, each at half the family's rate: together at most alpha (the union bound)
    top = np.abs(z[:, valid]).max(axis=1)
    threshold = float(np.quantile(top, 1.0 - alpha / 2))
    node_top = np.nan_to_num(np.abs(_nanmedian(z, axis=2))).max(axis=1)
    node_threshold = float(np.quantile(node_top, 1.0 - alpha / 2))
    per_comparison = float((np.abs(z[:, valid]) > threshold).mean())
    bonferroni = NormalDist().inv_cdf(1.0 - alpha / (2 * max(1, comparisons)))
    return FleetThreshold(threshold, comparisons, alpha, per_comparison, bonferroni, sims, node_threshold)


def calibrate_threshold(present: np.ndarray, node_of_run: Sequence[int],
                        alpha: float = FAMILY_ALPHA) -> FleetThreshold:
    """The |z| threshold whose family-wise false-alarm rate is ``alpha`` for fleets of this shape: ``present`` (runs x
    cases, bool) says which run has which case, ``node_of_run`` each run's node (0..N-1). Deterministic (a fixed
    seed), so one input always gets one threshold."""
    present = np.ascontiguousarray(present, dtype=bool)
    return _calibrate(present.tobytes(), present.shape, tuple(int(n) for n in node_of_run), float(alpha))


def judge_fleet(median_s: np.ndarray, node_of_run: Sequence[int], alpha: float = FAMILY_ALPHA) -> FleetJudgement:
    """The fleet test of runs x cases median seconds (NaN where a run lacks a case); ``node_of_run`` gives each run's
    node, numbered 0..N-1."""
    values = np.asarray(median_s, dtype=float)
    nodes = np.asarray(node_of_run, dtype=int)
    n_nodes = int(nodes.max()) + 1
    present = np.isfinite(values) & (values > 0)
    logs = np.where(present, np.log(np.where(present, values, 1.0)), np.nan)
    node_runs = [np.flatnonzero(nodes == n) for n in range(n_nodes)]
    runs = np.stack([present[idx].sum(axis=0) for idx in node_runs])
    with np.errstate(divide="ignore"):
        weight = np.where(present, 1.0 / runs[nodes], 0.0)
    y, centre, scale, z = (a[0] for a in _scores(logs[None], node_runs, weight))
    # calibrated with one run per node: the worst case, where all of the runs' spread is between the nodes (a node's
    # median over several runs then varies as much as one run); where runs of a node vary more, it is conservative
    threshold = calibrate_threshold(runs > 0, range(n_nodes)) if n_nodes >= MIN_NODES else None
    node_score = _nanmedian(z, axis=1)
    if threshold is None:
        flagged = np.zeros_like(z, dtype=bool)
        node_flagged = np.zeros(n_nodes, dtype=bool)
    else:
        zz = np.nan_to_num(z)
        node_flagged = np.abs(np.nan_to_num(node_score)) > threshold.node_z
        named = node_flagged[:, None] & (zz * np.sign(np.nan_to_num(node_score))[:, None] > NAMING_Z)
        flagged = (np.abs(zz) > threshold.z) | named
    return FleetJudgement(np.exp(y), np.exp(centre), np.exp(y - centre) - 1.0, z, scale, runs, flagged, threshold,
                          node_score, node_flagged)
