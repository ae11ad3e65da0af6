"""Statistics behind verdicts: faithfulness with bootstrap intervals, binomial tests, Holm correction.

Everything works on per-example metric arrays, paired across conditions (example i is the same input in
the full model, the circuit and the all-ablated run), so intervals reflect the spread across inputs,
not only a mean.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Literal, Sequence

import numpy as np

Verdict = Literal["pass", "fail", "inconclusive"]


@dataclass(frozen=True)
class Interval:
    estimate: float
    low: float
    high: float
    confidence: float


def faithfulness(m_circuit: np.ndarray, m_full: np.ndarray, m_ablated: np.ndarray) -> float:
    """F(C) = mean(m_C - m_0) / mean(m_M - m_0): 1 = the circuit recovers the model, 0 = no better than nothing."""
    denominator = float(np.mean(m_full - m_ablated))
    if denominator == 0.0:
        return float("nan")
    return float(np.mean(m_circuit - m_ablated)) / denominator


def bootstrap_indices(n: int, resamples: int, seed: int) -> np.ndarray:
    """[resamples, n] example indices drawn with replacement; one draw shared by every statistic of a run."""
    return np.random.default_rng(seed).integers(0, n, size=(resamples, n))


def faithfulness_interval(m_circuit: np.ndarray, m_full: np.ndarray, m_ablated: np.ndarray, confidence: float = 0.95,
                          resamples: int = 2000, seed: int = 0) -> Interval:
    """Paired percentile bootstrap interval of F (resampling examples)."""
    idx = bootstrap_indices(len(m_full), resamples, seed)
    num = (m_circuit - m_ablated)[idx].mean(1)
    den = (m_full - m_ablated)[idx].mean(1)
    with np.errstate(divide="ignore", invalid="ignore"):
        boot = np.where(den != 0, num / den, np.nan)
    boot = boot[np.isfinite(boot)]
    estimate = faithfulness(m_circuit, m_full, m_ablated)
    if boot.size == 0:
        return Interval(estimate, float("nan"), float("nan"), confidence)
    tail = (1 - confidence) / 2
    return Interval(estimate, float(np.quantile(boot, tail)), float(np.quantile(boot, 1 - tail)), confidence)


def mean_interval(values: np.ndarray, confidence: float = 0.95, resamples: int = 2000, seed: int = 0) -> Interval:
    idx = bootstrap_indices(len(values), resamples, seed)
    boot = values[idx].mean(1)
    tail = (1 - confidence) / 2
    return Interval(float(values.mean()), float(np.quantile(boot, tail)), float(np.quantile(boot, 1 - tail)), confidence)


def verdict_at_least(interval: Interval, threshold: float) -> Verdict:
    """Claim "statistic >= threshold": pass if the whole interval clears it, fail if it lies wholly below."""
    if math.isnan(interval.low) or math.isnan(interval.high):
        return "inconclusive"
    if interval.low >= threshold:
        return "pass"
    if interval.high < threshold:
        return "fail"
    return "inconclusive"


def verdict_at_most(interval: Interval, threshold: float) -> Verdict:
    """Claim "statistic <= threshold"."""
    if math.isnan(interval.low) or math.isnan(interval.high):
        return "inconclusive"
    if interval.high <= threshold:
        return "pass"
    if interval.low > threshold:
        return "fail"
    return "inconclusive"


def binomial_cdf(k: int, trials: int, p: float) -> float:
    """P(X <= k) for X ~ Binomial(trials, p) (scipy's incomplete beta, exact to float rounding at any
    number of trials)."""
    from scipy.special import bdtr  # imported when a verdict needs it: `--help` does not pay for scipy,
    # and verify does not pay for scipy.stats (about 0.5 s more to import than scipy.special)

    if k < 0:
        return 0.0
    if k >= trials:
        return 1.0
    return min(1.0, max(0.0, float(bdtr(k, trials, min(1.0, max(0.0, p))))))


def binomial_tail(successes: int, trials: int, p: float = 0.5) -> float:
    """Exact one-sided P(X >= successes) for X ~ Binomial(trials, p)."""
    return 1.0 if successes <= 0 else 1.0 - binomial_cdf(successes - 1, trials, p)


@dataclass(frozen=True)
class BaselineComparison:
    """How a circuit's statistic ranks among random same-size circuits.

    The hypothesis tested is "the circuit beats at least ``quantile`` of random same-size circuits".
    Given the circuit's statistic, each random circuit independently beats it with some probability
    q; under the null q >= 1 - quantile, so the number of random circuits that beat it is at least
    Binomial(trials, 1 - quantile) and the exact binomial lower tail is a valid p-value. (Testing
    "wins ~ Binomial(n, 1/2)" would not be: wins against shared baselines are not independent.)
    """

    losses: int  # random circuits at least as good as the circuit
    trials: int
    quantile: float
    p_value: float
    baseline_median: float
    rank_p_value: float  # (1 + losses) / (1 + trials): exact under "the circuit is just another random one"


#: Baselines within this much of the circuit's faithfulness count as ties (as good as the circuit).
#: Faithfulness is a ratio of float32 logit-difference means: two conditions that compute the same
#: thing can differ by ~1e-6 through summation order alone, so "better by 1e-6" is not evidence. A tie
#: counts against the circuit, which keeps the test conservative.
TIE_TOLERANCE = 1e-4


def compare_to_baselines(statistic: float, baselines: Sequence[float], higher_is_better: bool = True,
                         quantile: float = 0.95, tie: float = TIE_TOLERANCE) -> BaselineComparison:
    """Rank ``statistic`` among ``baselines``; a baseline within ``tie`` of it counts as at least as good."""
    values = np.asarray([b for b in baselines if np.isfinite(b)], dtype=float)
    if values.size == 0 or not np.isfinite(statistic):
        return BaselineComparison(0, int(values.size), quantile, 1.0, float("nan"), 1.0)
    if higher_is_better:
        losses = int(np.sum(values >= statistic - tie))
    else:
        losses = int(np.sum(values <= statistic + tie))
    n = int(values.size)
    return BaselineComparison(losses, n, quantile, binomial_cdf(losses, n, 1 - quantile), float(np.median(values)),
                              (1 + losses) / (1 + n))


#: How much of the random same-size circuits a circuit must beat. Sufficiency: 90% (random circuits are
#: rarely sufficient, so doing as well as many of them means the threshold is easy). Necessity: the
#: typical one (50%): any set holding a single bottleneck channel is as necessary as the real circuit,
#: so random circuits that happen to hold one are expected, and not evidence against the claim.
BASELINE_QUANTILE = {"sufficient": 0.9, "necessary": 0.5}


#: Necessity's random baselines (each a full forward of the model with a random same-size circuit
#: ablated) are run in stages, with a look at the comparison after each; after the first look, this many
#: at a time.
BASELINE_STAGE = 10


@functools.lru_cache(maxsize=256)
def baseline_schedule(planned: int, alpha: float, stage: int = BASELINE_STAGE) -> tuple[tuple[int, float], ...]:
    """The looks of staged necessity baselines: ``(baselines run, level of the test there)``, in order.

    Built so that staging never changes which counts pass once every baseline has run, and costs as
    few forwards as that allows. A single test of ``planned`` baselines at ``alpha`` passes when at most
    k* of them hurt as much as the circuit, k* the largest count with P(Bin(planned, 1/2) <= k*) <= alpha;
    the last look gets exactly that tail, which keeps its pass set. The slack left (alpha minus the tail)
    pays for the interim looks: the first comes after the fewest baselines that can pass with none
    hurting as much (0.5^m within the slack: 6 at the defaults, 50 baselines and alpha 0.05), the rest
    of the slack is split evenly over a look every ``stage`` baselines after it. The levels sum to at most
    ``alpha`` (Bonferroni over the looks), so a pass at any look keeps its false-pass rate at most ``alpha``
    whatever the dependence between looks."""
    if planned <= 0:
        return ()
    last = None  # the tail at k*: the binomial CDF grows with k, so scan up to the first count above alpha
    for k in range(planned + 1):
        tail = binomial_cdf(k, planned, 0.5)
        if tail > alpha:
            break
        last = tail
    if last is None:
        return ((planned, alpha),)
    slack = alpha - last
    # the first look's level is the p-value of a clean sweep, computed as compare_to_baselines computes
    # it, so that a clean sweep passes there bit for bit
    first = next((m for m in range(1, planned) if binomial_cdf(0, m, 0.5) <= slack), planned)
    if first >= planned:
        return ((planned, alpha),)
    sweep = binomial_cdf(0, first, 0.5)
    later = range(first + stage, planned, stage)
    rest = (slack - sweep) / len(later) if later else 0.0
    return ((first, sweep), *((ran, rest) for ran in later), (planned, last))


def baseline_looks(planned: int, alpha: float, stage: int = BASELINE_STAGE) -> list[int]:
    """How many baselines have run at each look of :func:`baseline_schedule`."""
    return [ran for ran, _ in baseline_schedule(planned, alpha, stage)]


def look_alpha(alpha: float, ran: int, planned: int, stage: int = BASELINE_STAGE) -> float:
    """The level of the baseline test at the look after ``ran`` of ``planned`` staged baselines (the full
    ``alpha`` when there is a single look; the smallest level of the schedule when ``ran`` is none of its
    looks, which no run of the schedule produces)."""
    levels = dict(baseline_schedule(planned, alpha, stage))
    return levels.get(ran, min(levels.values(), default=alpha))


def stops_early(comparison: BaselineComparison, ran: int, planned: int, alpha: float,
                stage: int = BASELINE_STAGE) -> bool:
    """Whether staged baselines may stop after ``ran`` of ``planned``: an interim look whose test already
    passes at its own level (the remaining baselines are then not needed for the verdict)."""
    levels = dict(baseline_schedule(planned, alpha, stage))
    return (ran < planned and ran in levels and comparison.trials == ran
            and comparison.p_value <= levels[ran])


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values (same order as given); controls family-wise error at alpha.
    (scipy has none: ``false_discovery_control`` is Benjamini-Hochberg/Yekutieli, which controls the false
    discovery rate, a weaker promise than "every unit matters" needs.)"""
    m = len(p_values)
    order = sorted(range(m), key=lambda i: p_values[i])
    adjusted = [0.0] * m
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p_values[i]))
        adjusted[i] = running
    return adjusted


def bootstrap_p_at_least(values_boot: np.ndarray, threshold: float) -> float:
    """One-sided bootstrap p-value for "statistic >= threshold": the share of resamples below it."""
    finite = values_boot[np.isfinite(values_boot)]
    if finite.size == 0:
        return 1.0
    return float((np.sum(finite < threshold) + 1) / (finite.size + 1))


def quantiles(values: np.ndarray, qs: Sequence[float] = (0.0, 0.1, 0.25, 0.5, 0.75, 0.9, 1.0)) -> dict[str, float]:
    """Per-example spread for reports (averages hide cancellation)."""
    return {f"q{int(q * 100):02d}": float(np.quantile(values, q)) for q in qs}
