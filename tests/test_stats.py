"""Statistics: exact values on small cases, and Monte Carlo calibration where the truth is known."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from circuitspec.stats import (BASELINE_QUANTILE, Interval, baseline_looks, binomial_cdf, binomial_tail, compare_to_baselines,
                               faithfulness, faithfulness_interval, holm, look_alpha, stops_early, verdict_at_least,
                               verdict_at_most)


def test_faithfulness_definition():
    full, none = np.array([4.0, 2.0]), np.array([1.0, 1.0])
    assert faithfulness(full, full, none) == 1.0
    assert faithfulness(none, full, none) == 0.0
    assert faithfulness(np.array([2.5, 1.5]), full, none) == pytest.approx(0.5)
    assert math.isnan(faithfulness(full, none, none))


@settings(deadline=None)  # exact rationals of tiny floats have huge denominators
@given(st.integers(0, 60), st.integers(0, 60), st.floats(0.0, 1.0))
def test_binomial_cdf_matches_exact_rational_arithmetic(k, trials, p):
    from fractions import Fraction

    q = Fraction(p)
    exact = sum(math.comb(trials, i) * q**i * (1 - q) ** (trials - i) for i in range(0, min(k, trials) + 1))
    assert binomial_cdf(k, trials, p) == pytest.approx(float(exact), abs=1e-12)


def test_binomial_cdf_and_intervals_work_for_thousands_of_inputs():
    """math.comb(n, i) * p**i overflows a float from about a thousand trials on (verify --samples 1500 crashed)."""
    from circuitspec.verify.judge import clopper_pearson

    assert binomial_cdf(2500, 5000, 0.5) == pytest.approx(0.5056, abs=1e-3)
    low, high = clopper_pearson(1497, 1500, 0.95)
    assert 0.99 < low < 0.998 < high < 1.0


def test_binomial_tail_exact():
    assert binomial_tail(0, 5) == 1.0
    assert binomial_tail(5, 5) == pytest.approx(1 / 32)
    assert binomial_tail(4, 5) == pytest.approx(6 / 32)
    assert binomial_cdf(1, 5, 0.5) == pytest.approx(6 / 32)
    assert binomial_cdf(5, 5, 0.3) == pytest.approx(1.0)


def test_holm_matches_hand_computation():
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])


@settings(max_examples=100, deadline=None)
@given(st.lists(st.floats(0, 1), min_size=1, max_size=20))
def test_holm_is_conservative_and_order_preserving(ps):
    adjusted = holm(ps)
    assert all(a >= p - 1e-12 and a <= 1.0 for a, p in zip(adjusted, ps))
    for i in range(len(ps)):
        for j in range(len(ps)):
            if ps[i] < ps[j]:
                assert adjusted[i] <= adjusted[j] + 1e-12


def test_verdicts_from_intervals():
    assert verdict_at_least(Interval(0.95, 0.92, 0.97, 0.95), 0.9) == "pass"
    assert verdict_at_least(Interval(0.8, 0.75, 0.85, 0.95), 0.9) == "fail"
    assert verdict_at_least(Interval(0.9, 0.85, 0.95, 0.95), 0.9) == "inconclusive"
    assert verdict_at_most(Interval(0.1, 0.05, 0.15, 0.95), 0.2) == "pass"
    assert verdict_at_most(Interval(0.3, 0.25, 0.35, 0.95), 0.2) == "fail"
    assert verdict_at_least(Interval(float("nan"), float("nan"), float("nan"), 0.95), 0.9) == "inconclusive"


def synthetic(rng, n, true_f, noise=1.0):
    full = rng.normal(2.0, 1.0, n)
    none = rng.normal(0.0, 1.0, n)
    circuit = none + true_f * (full - none) + rng.normal(0.0, noise, n)
    return circuit, full, none


@pytest.mark.parametrize("verdict, threshold, seed", [(verdict_at_least, 0.9, 0), (verdict_at_most, 0.2, 1)],
                         ids=["sufficient", "necessary"])
def test_faithfulness_false_pass_rate_is_at_most_alpha(verdict, threshold, seed):
    """At a true faithfulness exactly on the threshold, the claim passes at most alpha = 2.5% of the time
    (one side of a 95% interval), within Monte Carlo error."""
    rng = np.random.default_rng(seed)
    trials, passes = 300, 0
    for t in range(trials):
        circuit, full, none = synthetic(rng, 200, threshold)
        interval = faithfulness_interval(circuit, full, none, confidence=0.95, resamples=400, seed=t)
        passes += verdict(interval, threshold) == "pass"
    alpha = 0.025
    assert passes / trials <= alpha + 3 * math.sqrt(alpha * (1 - alpha) / trials)


def test_true_claims_pass_with_enough_data():
    rng = np.random.default_rng(2)
    circuit, full, none = synthetic(rng, 500, 0.97, noise=0.2)
    assert verdict_at_least(faithfulness_interval(circuit, full, none), 0.9) == "pass"


def test_baseline_test_is_calibrated_at_the_null_boundary():
    """A circuit sitting exactly at the 95th percentile of random circuits passes "beats 95%" at p <= 0.05
    at most 5% of the time."""
    rng = np.random.default_rng(3)
    trials, rejections = 2000, 0
    boundary = 1.6448536269514722  # 95th percentile of N(0, 1)
    for _ in range(trials):
        rejections += compare_to_baselines(boundary, rng.normal(size=100)).p_value <= 0.05
    assert rejections / trials <= 0.05 + 3 * math.sqrt(0.05 * 0.95 / trials)


def test_rank_p_value_is_calibrated_for_a_random_circuit():
    rng = np.random.default_rng(4)
    trials, rejections = 2000, 0
    for _ in range(trials):
        draws = rng.normal(size=51)
        rejections += compare_to_baselines(draws[0], draws[1:]).rank_p_value <= 0.05
    assert rejections / trials <= 0.05 + 3 * math.sqrt(0.05 * 0.95 / trials)


def test_baseline_test_detects_a_real_circuit():
    comparison = compare_to_baselines(0.95, np.linspace(0.0, 0.5, 100))
    assert comparison.losses == 0 and comparison.p_value == pytest.approx(0.95**100)
    assert compare_to_baselines(0.1, [0.2, 0.3], higher_is_better=False).losses == 0
    assert compare_to_baselines(0.25, [0.2, 0.3]).losses == 1


def test_clopper_pearson_matches_known_values():
    from circuitspec.verify.judge import clopper_pearson
    assert clopper_pearson(5, 10, 0.95) == pytest.approx((0.1871, 0.8129), abs=1e-4)
    assert clopper_pearson(0, 100, 0.95) == pytest.approx((0.0, 0.03622), abs=1e-4)
    assert clopper_pearson(100, 100, 0.95) == pytest.approx((0.96378, 1.0), abs=1e-4)


def test_minimality_false_pass_rate_is_at_most_alpha():
    """A unit whose true drop sits exactly on the threshold passes the one-sided bootstrap test (p <= 0.05)
    at most 5% of the time; Holm over several such units only makes passing rarer."""
    from circuitspec.stats import bootstrap_indices, bootstrap_p_at_least
    rng = np.random.default_rng(5)
    trials, passes, epsilon = 300, 0, 0.1
    for t in range(trials):
        full, none = rng.normal(2.0, 1.0, 150), rng.normal(0.0, 1.0, 150)
        circuit = full.copy()
        without = circuit - epsilon * (full - none) + rng.normal(0, 0.5, 150)  # true drop = epsilon
        idx = bootstrap_indices(150, 400, t)
        boot = (circuit - without)[idx].mean(1) / (full - none)[idx].mean(1)
        passes += bootstrap_p_at_least(boot, epsilon) <= 0.05
    assert passes / trials <= 0.05 + 3 * math.sqrt(0.05 * 0.95 / trials)


def test_a_baseline_within_float_error_of_the_circuit_is_a_tie():
    # a decoy whose ablation moves F by 1e-6 does not "hurt more than every random circuit"
    decoy = compare_to_baselines(1.0 - 1e-6, [1.0] * 50, higher_is_better=False, quantile=0.5)
    assert decoy.losses == 50 and decoy.p_value > 0.05
    assert compare_to_baselines(0.5 + 1e-6, [0.5] * 10).losses == 10
    # a real difference is still a win
    assert compare_to_baselines(0.9, [0.5] * 10).losses == 0
    assert compare_to_baselines(0.2, [1.0] * 10, higher_is_better=False).losses == 0


def _comparison(losses: int, trials: int):
    """A necessity comparison in which ``losses`` of ``trials`` random circuits hurt as much as the circuit."""
    return compare_to_baselines(0.0, [-1.0] * losses + [1.0] * (trials - losses), higher_is_better=False,
                                quantile=BASELINE_QUANTILE["necessary"])


def test_baseline_looks():
    # the first look as early as a clean sweep can pass within the slack the last look leaves
    assert baseline_looks(50, 0.05) == [6, 16, 26, 36, 46, 50]
    assert baseline_looks(50, 0.01) == [9, 19, 29, 39, 49, 50]
    assert baseline_looks(45, 0.05) == [7, 17, 27, 37, 45]
    assert baseline_looks(10, 0.05) == [5, 10]
    # too few baselines for any count to pass at alpha: one look, at alpha, as a single test
    assert baseline_looks(3, 0.05) == [3] and look_alpha(0.05, 3, 3) == 0.05 and baseline_looks(0, 0.05) == []
    # 6 of 6 random circuits hurting less passes at the first look (p = 1/64), 5 of 6 does not
    assert stops_early(_comparison(0, 6), 6, 50, 0.05) and not stops_early(_comparison(1, 6), 6, 50, 0.05)
    assert not stops_early(_comparison(0, 5), 5, 50, 0.05)  # no look there


@given(st.integers(1, 300), st.sampled_from([0.1, 0.05, 0.01, 0.001]))
def test_the_looks_spend_at_most_alpha_and_keep_the_single_test(planned, alpha):
    looks = baseline_looks(planned, alpha)
    assert looks == sorted(set(looks)) and looks[-1] == planned
    assert sum(look_alpha(alpha, ran, planned) for ran in looks) <= alpha * (1 + 1e-12)
    if len(looks) == 1:
        assert look_alpha(alpha, planned, planned) == alpha
    # the last look passes on exactly the counts a single test of every baseline at alpha passes on: both
    # pass sets are {0, ..., k} (the p-value grows with the count), so their largest counts must agree
    last = look_alpha(alpha, planned, planned)
    assert _largest_passing(planned, last) == _largest_passing(planned, alpha)


def _largest_passing(trials: int, level: float) -> int:
    """The largest count of losses whose p-value is at most ``level`` (-1 for none), by bisection over the
    monotone p-value: a few comparisons instead of one per count, which kept the test under its deadline."""
    low, high = -1, trials  # p(low) <= level (low = -1: vacuous); the answer lies in [low, high]
    while low < high:
        mid = (low + high + 1) // 2
        if _comparison(mid, trials).p_value <= level:
            low = mid
        else:
            high = mid - 1
    return low


@pytest.mark.parametrize("planned", [20, 50, 100])
@pytest.mark.parametrize("alpha", [0.1, 0.05, 0.01])
def test_staged_baselines_pass_at_most_alpha_at_the_null_boundary(planned, alpha):
    """Exact, by dynamic programming over the looks: when each random circuit hurts as much as the
    circuit with probability exactly 1/2 (the null's boundary), the staged test passes (at an interim
    look or the last) with probability at most alpha."""
    looks = baseline_looks(planned, alpha)
    alive = {0: 1.0}  # losses so far -> probability of having reached this look without stopping
    passed, done = 0.0, 0
    for look in looks:
        step = look - done
        grown: dict[int, float] = {}
        for losses, p in alive.items():
            for extra in range(step + 1):
                grown[losses + extra] = grown.get(losses + extra, 0.0) + p * math.comb(step, extra) / 2**step
        done, alive = look, {}
        for losses, p in grown.items():
            comparison = _comparison(losses, look)
            if look < planned and stops_early(comparison, look, planned, alpha):
                passed += p
            elif look == planned and comparison.p_value <= look_alpha(alpha, look, planned):
                passed += p
            else:
                alive[losses] = p
    assert passed <= alpha + 1e-12


@pytest.mark.parametrize("confidence", [0.9, 0.95, 0.99])
def test_the_last_look_passes_on_the_counts_one_look_would_at_50_baselines(confidence):
    alpha = 1 - confidence
    staged = [L for L in range(51) if _comparison(L, 50).p_value <= look_alpha(alpha, 50, 50)]
    single = [L for L in range(51) if _comparison(L, 50).p_value <= alpha]
    assert staged == single and staged


def test_an_interim_look_stops_only_when_its_test_passes():
    assert stops_early(_comparison(0, 6), 6, 50, 0.05)  # p = 0.5^6 = 1/64, the first look's level
    assert not stops_early(_comparison(1, 6), 6, 50, 0.05)  # p = 7 / 64
    assert not stops_early(_comparison(0, 6), 6, 50, 0.01)  # no look there at 0.01 (the first is at 9)
    assert stops_early(_comparison(0, 9), 9, 50, 0.01)
    assert stops_early(_comparison(1, 16), 16, 50, 0.05)  # p = 17 / 65536 <= 0.00048
    assert not stops_early(_comparison(2, 16), 16, 50, 0.05)  # p = 137 / 65536
    assert not stops_early(_comparison(0, 50), 50, 50, 0.05)  # the last look is judged, not stopped
    assert not stops_early(_comparison(0, 15), 15, 50, 0.05)  # not a look
    assert not stops_early(_comparison(0, 5), 6, 50, 0.05)  # a baseline with undefined F: no early stop
