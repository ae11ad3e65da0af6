"""Per-example metrics -> a verdict per claim, with its statistic, interval, and the spread behind it.

- sufficient: F(circuit) >= t with the interval's lower end, and the circuit beats random same-size
  circuits (exact binomial test that it beats 90% of them), and F >= t holds as well under every partial
  ablation of the outside its `robustness` names (the circuit kept, part of the rest kept present):
  random ones, and for `adversarial` (the default) ones chosen against the circuit; the verdict is the
  worst of them, and the statistic stays F(circuit).
- necessary: F(model with only the circuit ablated) <= t with the interval's upper end, and ablating it
  hurts more than ablating a typical random same-size circuit (binomial test on the median).
- minimal: for every unit u, F(C) - F(C without u) >= t; one-sided bootstrap tests, Holm-corrected.
- edge: F(C) - F(C without the edge) >= t, the same test for the one edge the claim names.
- role / behaviour / agreement: evaluated per input in the circuit-alone run (or the full model's, `in full
  model`; an agreement claim compares the circuit-alone run's preferred answer with the full model's).
  The statistic is the share of inputs on which it holds, with one-sided exact Clopper-Pearson bounds
  at the claim's confidence. ``on at least q of inputs``: pass when the lower bound clears q, fail
  when the upper bound is below it. ``on every input`` (the default): any failing input fails it, and a
  clean sample passes only when its lower bound clears 1 - EVERY_INPUT_RESOLUTION (enough inputs are
  drawn for that unless `samples N` says otherwise); the worst inputs are listed.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np

from ..lang import ast
from ..lang.fmt import format_statement
from ..lang.resolve import ResolvedClaim, ResolvedSpec
from ..stats import (BASELINE_QUANTILE, Verdict, binomial_tail, bootstrap_indices, bootstrap_p_at_least,
                     compare_to_baselines, faithfulness, faithfulness_interval, holm, look_alpha, quantiles, verdict_at_least,
                     verdict_at_most)
from .examples import compare
from .runner import EVERY_INPUT_RESOLUTION, GroupData, RunSettings, activation_at, per_input_samples, per_input_target

SEVERITY = {"fail": 0, "inconclusive": 1, "pass": 2}  # the worst of several verdicts is the lowest


@dataclass
class ClaimResult:
    spec: str
    file: str
    line: int
    name: str
    kind: str
    text: str
    verdict: str
    statistic: float | None
    ci: list[float] | None
    threshold: float | None
    op: str
    ablation: str
    metric: str
    confidence: float
    n: int
    seed: int
    inherited: list[str]
    spread: dict[str, float] = field(default_factory=dict)
    baseline: dict[str, Any] | None = None
    units: list[dict[str, Any]] | None = None
    counterexample: dict[str, Any] | None = None
    note: str = ""
    partial: dict[str, Any] | None = None  # sufficient claims: faithfulness under random partial ablations
    when_ablated: dict[str, Any] | None = None  # behaviour/agreement claims: the claim with every node ablated

    def to_json(self) -> dict[str, Any]:
        return {k: _clean(v) for k, v in asdict(self).items()}


def _clean(value):
    """JSON-safe and stable: NaN -> None, floats rounded so repeated runs print identical files."""
    if isinstance(value, float):
        return None if math.isnan(value) or math.isinf(value) else round(value, 6)
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


def clopper_pearson(k: int, n: int, confidence: float) -> tuple[float, float]:
    """Exact (Clopper-Pearson) two-sided interval for a proportion k/n: quantiles of beta distributions."""
    from scipy.special import betaincinv  # the beta quantile; imported when a verdict needs it

    alpha = 1 - confidence
    low = 0.0 if k == 0 else float(betaincinv(k, n - k + 1, alpha / 2))
    high = 1.0 if k == n else float(betaincinv(k + 1, n - k, 1 - alpha / 2))
    return low, high


def judge(resolved: ResolvedSpec, claim: ResolvedClaim, data: GroupData, settings: RunSettings) -> ClaimResult:
    c = claim.claim
    body = c.body
    result = ClaimResult(
        spec=resolved.spec.name or "", file=resolved.file, line=c.span.line, name=c.name, kind=claim.kind,
        text=_claim_text(c), verdict="inconclusive", statistic=None, ci=None, threshold=None, op="",
        ablation=_ablation_text(claim), metric=claim.metric, confidence=claim.confidence, n=len(data.examples),
        seed=settings.seed, inherited=list(claim.inherited))
    if not data.examples:
        result.note = "no sampled input satisfies the claim's `when` conditions"
        return result
    if claim.kind in ("sufficient", "necessary"):
        _faithfulness_claim(result, claim, body, data, settings)
    elif claim.kind == "minimal":
        _minimal_claim(result, claim, body, data, settings)
    elif claim.kind == "unneeded":
        _unneeded_claim(result, claim, body, data, settings)
    elif claim.kind == "edge":
        _edge_claim(result, resolved, claim, body, data, settings)
    else:
        _per_example_claim(result, claim, body, data)
    return result


def _claim_text(claim: ast.Claim) -> str:
    return format_statement(claim)


def _ablation_text(claim: ResolvedClaim) -> str:
    if claim.ablation is None:
        return "none"
    text = str(claim.ablation)
    if claim.ablation.kind == "zero" or claim.ablation.corrupted is not None:  # partners: always the spec's task
        return text
    return f"{text} ({claim.ablation_task})"


def _contributions(m: np.ndarray, data: GroupData) -> np.ndarray:
    """Per-example share of the full model's effect: (m - m_0) / mean(m_M - m_0)."""
    denominator = float(np.mean(data.metric["full"] - data.metric["empty"]))
    return (m - data.metric["empty"]) / denominator if denominator else np.full_like(m, np.nan)


UNDEFINED_FAITHFULNESS = "the full model and the all-ablated model score the same: faithfulness is undefined"


def _faithfulness_statistic(result: ClaimResult, claim: ResolvedClaim, body, m: np.ndarray, data: GroupData,
                            settings: RunSettings):
    """The faithfulness interval of one condition's per-example metric ``m``, written into ``result`` as its
    statistic, interval, threshold and spread; returns (interval, threshold)."""
    interval = faithfulness_interval(m, data.metric["full"], data.metric["empty"], claim.confidence, settings.resamples,
                                     settings.seed)
    threshold = float(body.threshold)
    result.statistic, result.ci, result.threshold, result.op = interval.estimate, [interval.low, interval.high], threshold, body.op
    result.spread = quantiles(_contributions(m, data))
    return interval, threshold


def _faithfulness_claim(result: ClaimResult, claim: ResolvedClaim, body: ast.FaithfulnessBody, data: GroupData,
                        settings: RunSettings) -> None:
    m_full, m_empty = data.metric["full"], data.metric["empty"]
    sufficient = claim.kind == "sufficient"
    m = data.metric["circuit" if sufficient else "complement"]
    interval, threshold = _faithfulness_statistic(result, claim, body, m, data, settings)
    verdict = verdict_at_least(interval, threshold) if sufficient else verdict_at_most(interval, threshold)
    pool = data.baselines if sufficient else data.baseline_complements
    baseline_f = [faithfulness(b, m_full, m_empty) for b in pool]
    quantile = BASELINE_QUANTILE[claim.kind]
    comparison = compare_to_baselines(interval.estimate, baseline_f, higher_is_better=sufficient, quantile=quantile)
    alpha = 1 - claim.confidence
    # necessity's baselines run in stages (runner._run_staged_complements): judged at the level of the
    # look they stopped at; sufficiency's all run, at one look
    planned = len(pool) if sufficient else data.complements_planned
    level = alpha if sufficient else look_alpha(alpha, len(pool), planned)
    result.baseline = {"random_circuits": comparison.trials, "planned": planned,
                       "as_good_or_better": comparison.losses, "median_faithfulness": comparison.baseline_median,
                       "beats_quantile": quantile, "p_value": comparison.p_value, "alpha": level,
                       "rank_p_value": comparison.rank_p_value}
    if math.isnan(interval.estimate):
        result.note = UNDEFINED_FAITHFULNESS
    elif verdict == "pass" and comparison.p_value > level:
        # fail only when significantly more random circuits do as well than "beats the quantile" allows;
        # otherwise the baselines are too few to tell either way
        if binomial_tail(comparison.losses, comparison.trials, 1 - quantile) > alpha:
            verdict = "inconclusive"
            result.note = (f"{comparison.losses} of {comparison.trials} random same-size circuits do as well: too few "
                           f"baselines to show it beats {quantile:.0%} of them (raise --baselines)")
        else:
            verdict = "fail"
            what = "do as well" if sufficient else "hurt as much when ablated"
            result.note = (f"random same-size circuits {what} ({comparison.losses} of {comparison.trials}): "
                           f"the threshold holds but does not single this circuit out")
    random_parts = data.partials if sufficient and claim.robustness != "none" else []
    chosen_parts = data.chosen if sufficient and claim.robustness == "adversarial" else []
    if (random_parts or chosen_parts) and not math.isnan(interval.estimate):
        partial_verdict, note = _partial_ablation_check(result, claim, data, settings, threshold,
                                                        verdict_at_least(interval, threshold), random_parts, chosen_parts)
        verdict = min(verdict, partial_verdict, key=SEVERITY.__getitem__)
        result.note = f"{result.note}; {note}" if result.note else note
    result.verdict = verdict


def _unneeded_claim(result: ClaimResult, claim: ResolvedClaim, body: ast.UnneededBody, data: GroupData,
                   settings: RunSettings) -> None:
    """F of the model with only the claim's part ablated, judged like sufficiency's all-at-once F (no
    baselines: a random part of the same size says nothing about whether this one is needed)."""
    interval, threshold = _faithfulness_statistic(result, claim, body, data.unneeded[claim.claim.name], data, settings)
    result.verdict = verdict_at_least(interval, threshold)
    if math.isnan(interval.estimate):
        result.verdict, result.note = "inconclusive", UNDEFINED_FAITHFULNESS
    elif result.verdict != "pass":
        result.note = f"ablating {len(claim.subject)} node(s) leaves F = {_g(interval.estimate)}: the part is needed"


def _partial_ablation_check(result: ClaimResult, claim: ResolvedClaim, data: GroupData, settings: RunSettings,
                            threshold: float, all_at_once: Verdict, random_parts: list[tuple[float, np.ndarray]],
                            chosen_parts: list[tuple[str, np.ndarray]]) -> tuple[Verdict, str]:
    """F under each partial ablation of the outside, random (``random_parts``: keep fraction, metric) and
    chosen against the circuit (``chosen_parts``: what, metric), with the same denominator, inputs and
    bootstrap draws as the all-at-once F; the verdict is the worst of them, and the worst is reported."""
    m_full, m_empty = data.metric["full"], data.metric["empty"]
    each = []
    for p, what, m in [(p, None, m) for p, m in random_parts] + [(None, what, m) for what, m in chosen_parts]:
        interval = faithfulness_interval(m, m_full, m_empty, claim.confidence, settings.resamples, settings.seed)
        each.append({"keep_fraction": p, "chosen": what, "faithfulness": interval.estimate,
                     "ci": [interval.low, interval.high], "verdict": verdict_at_least(interval, threshold)})
    worst = min(each, key=lambda c: (SEVERITY[c["verdict"]],
                                     c["faithfulness"] if math.isfinite(c["faithfulness"]) else -math.inf))
    verdict = worst["verdict"]
    failing = sum(c["verdict"] == "fail" for c in each)
    result.partial = {"conditions": len(each), "random": len(random_parts), "chosen": len(chosen_parts),
                      "robustness": claim.robustness, "verdict": verdict, "worst": worst["faithfulness"],
                      "worst_ci": worst["ci"], "keep_fraction": worst["keep_fraction"], "worst_choice": worst["chosen"],
                      "below_threshold": failing, "each": each}
    f = f"F = {_g(worst['faithfulness'])} [{_g(worst['ci'][0])}, {_g(worst['ci'][1])}]"
    where = (f"keeping a random {worst['keep_fraction']:.0%} of the outside" if worst["chosen"] is None
             else f"{worst['chosen']}")
    kinds = (f"{len(random_parts)} random" + (f" and {len(chosen_parts)} chosen" if chosen_parts else "")
             + " partial ablations")
    if verdict == "pass":
        scope = "partial ablation" if chosen_parts else "random partial ablation (the claim says `robustness random`)"
        return verdict, f"robust to {scope}: worst of {kinds} {f} ({where})"
    if verdict == "fail":
        lead = ("holds only with everything outside ablated at once" if all_at_once == "pass"
                else "fails under partial ablation too")
        of = (f"{failing} of the {len(each)} partial ablations ({len(random_parts)} random, {len(chosen_parts)} chosen)"
              if chosen_parts else f"{failing} of {len(random_parts)} random partial ablations")
        return verdict, f"{lead}: {where} gives {f} ({of} below {_g(threshold)})"
    return verdict, f"not shown robust to partial ablation: {where} gives {f}, an interval that straddles {_g(threshold)}"


def _g(x: float) -> str:
    return f"{x:.3g}"


def _minimal_claim(result: ClaimResult, claim: ResolvedClaim, body: ast.MinimalBody, data: GroupData,
                   settings: RunSettings) -> None:
    threshold = float(body.threshold)
    result.threshold, result.op = threshold, body.op
    knockouts = data.knockouts.get(body.unit, {})  # this claim's units only: a group may hold both kinds
    if not knockouts:
        result.note = f"the spec has no {body.unit} units to remove (name nodes with `node`/`group`, or declare edges)"
        return
    alpha = 1 - claim.confidence
    units, p_values = [], []
    for unit, m_without in knockouts.items():
        drop, interval, p = _drop(m_without, data, claim, settings, threshold)
        units.append({"unit": unit, "drop": drop, "ci": interval})
        p_values.append(p)
    for unit, p in zip(units, holm(p_values)):
        unit["p_holm"] = p
        unit["verdict"] = "pass" if p <= alpha else "fail" if unit["ci"][1] < threshold else "inconclusive"
    worst = min(units, key=lambda u: u["drop"])
    result.units = units
    result.statistic = worst["drop"]
    result.ci = worst["ci"]
    verdicts = {u["verdict"] for u in units}
    result.verdict = "fail" if "fail" in verdicts else "inconclusive" if "inconclusive" in verdicts else "pass"
    if result.verdict != "pass":
        bad = [u["unit"] for u in units if u["verdict"] != "pass"]
        result.note = f"not shown to matter: {', '.join(bad)}"


def _drop(m_without: np.ndarray, data: GroupData, claim: ResolvedClaim, settings: RunSettings,
          threshold: float) -> tuple[float, list[float], float]:
    """What removing a part costs: F(C) - F(C without it), its bootstrap interval at the claim's confidence
    (paired draws over the inputs, the denominator redrawn with them), and the one-sided bootstrap p-value of
    "the cost is at least ``threshold``"."""
    m_full, m_empty, m_circuit = data.metric["full"], data.metric["empty"], data.metric["circuit"]
    idx = bootstrap_indices(len(m_full), settings.resamples, settings.seed)
    den = (m_full - m_empty)[idx].mean(1)
    drop = faithfulness(m_circuit, m_full, m_empty) - faithfulness(m_without, m_full, m_empty)
    with np.errstate(divide="ignore", invalid="ignore"):
        boot = ((m_circuit - m_without)[idx].mean(1)) / den
    tail = (1 - claim.confidence) / 2
    finite = boot[np.isfinite(boot)]
    low, high = (float(np.quantile(finite, tail)), float(np.quantile(finite, 1 - tail))) if finite.size else (math.nan, math.nan)
    return drop, [low, high], bootstrap_p_at_least(boot, threshold)


def _edge_claim(result: ClaimResult, resolved: ResolvedSpec, claim: ResolvedClaim, body: ast.EdgeBody,
                data: GroupData, settings: RunSettings) -> None:
    """What ablating the one edge costs, judged like a unit of a minimal claim (one test, so nothing to
    correct); ``units`` holds that edge with what its ablation removed: ``weights`` (entries between
    adjacent ends) and ``paths`` (sender channel, residual channel, receiver channel) through the stream."""
    threshold = float(body.threshold)
    m_without = data.edges[claim.claim.name]
    drop, interval, p = _drop(m_without, data, claim, settings, threshold)
    result.spread = quantiles(_contributions(data.metric["circuit"], data) - _contributions(m_without, data))
    verdict = "pass" if p <= 1 - claim.confidence else "fail" if interval[1] < threshold else "inconclusive"
    result.statistic, result.ci, result.threshold, result.op, result.verdict = drop, interval, threshold, body.op, verdict
    result.units = [{"unit": f"{body.source} -> {body.target}", "drop": drop, "ci": interval, "p": p, "verdict": verdict,
                     "weights": claim.edge.weights(), "paths": claim.edge.path_count(resolved.context.model, resolved.mask)}]
    if math.isnan(drop):
        result.verdict, result.note = "inconclusive", UNDEFINED_FAITHFULNESS
    elif verdict != "pass":
        result.note = (f"ablating the edge costs F = {_g(drop)} [{_g(interval[0])}, {_g(interval[1])}]: "
                       f"not shown to carry at least {_g(threshold)}")


@dataclass
class PerInput:
    """A role or behaviour claim evaluated on each input of a circuit-alone run."""

    holds: np.ndarray  # [n] bool
    margins: np.ndarray  # [n] how far on the right side of the comparison (negative: it fails there)
    values: list[dict[str, float]]  # [n] what was compared, by name


def evaluate_per_input(claim: ResolvedClaim, data: GroupData) -> PerInput:
    body = claim.claim.body
    if claim.kind == "role":
        values = np.stack([activation_at(data, node, claim.position, claim.in_model) for node in claim.subject], axis=1)
        threshold = float(body.threshold)
        holds = np.array([all(compare(v, body.op, threshold) for v in row) for row in values])
        margins = _margin(values, body.op, threshold).min(axis=1)
        named = [{str(node): float(row[j]) for j, node in enumerate(claim.subject)} for row in values]
        return PerInput(holds, margins, named)
    if claim.kind == "agreement":
        return _agreement(data)
    logits = (data.model_logits if claim.in_model else data.circuit_logits).cpu().numpy().astype(np.float64)
    left = logits[:, claim.logits[0]]
    right = logits[:, claim.logits[1]] if len(claim.logits) > 1 else np.full_like(left, float(body.right))
    holds = np.array([compare(a, body.op, b) for a, b in zip(left, right)])
    margins = _margin((left - right)[:, None], body.op, 0.0)[:, 0]
    names = [f"logit[{data.tokenizer.token_repr(t)}]" for t in claim.logits]
    right_name = names[1] if len(names) > 1 else "value"
    return PerInput(holds, margins, [{names[0]: float(a), right_name: float(b)} for a, b in zip(left, right)])


def _agreement(data: GroupData) -> PerInput:
    """Whether the circuit alone prefers the answer the full model prefers, of the task's two answers
    (a tie counts as neither). Margin: the circuit's logit difference signed towards the model's choice."""
    rows = np.arange(len(data.examples))
    correct = np.array([data.tokenizer.token_id(ex.correct) for ex in data.examples])
    wrong = np.array([data.tokenizer.token_id(ex.wrong) for ex in data.examples])
    circuit, model = (lg.cpu().numpy().astype(np.float64) for lg in (data.circuit_logits, data.model_logits))
    circuit_diff = circuit[rows, correct] - circuit[rows, wrong]
    model_diff = model[rows, correct] - model[rows, wrong]
    margins = circuit_diff * np.sign(model_diff)
    values = [{"circuit_logit_diff": float(c), "model_logit_diff": float(m)} for c, m in zip(circuit_diff, model_diff)]
    return PerInput(margins > 0, margins, values)


def one_sided_bounds(k: int, n: int, confidence: float) -> tuple[float, float]:
    """Lower and upper exact binomial bounds for k/n, each one-sided at ``confidence``."""
    return clopper_pearson(k, n, 2 * confidence - 1)


def _per_example_claim(result: ClaimResult, claim: ResolvedClaim, body, data: GroupData) -> None:
    evaluated = evaluate_per_input(claim, data)
    holds, margins = evaluated.holds, evaluated.margins
    k, n = int(holds.sum()), len(holds)
    target = per_input_target(claim)
    low, high = one_sided_bounds(k, n, claim.confidence)
    result.threshold, result.op = target, ">="  # the share of inputs on which the claim holds
    result.statistic = k / n
    result.ci = [low, high]
    result.spread = quantiles(margins)
    every = claim.coverage is None
    if every and k < n:
        result.verdict, result.note = "fail", f"fails on {n - k} of {n} inputs"
    elif low >= target - 1e-9:  # the bisection's error, not a statistical allowance
        result.verdict = "pass"
    elif not every and high < target:
        result.verdict, result.note = "fail", f"holds on {k} of {n} inputs: fewer than {target:.4g} of them"
    else:
        result.verdict = "inconclusive"
        needed = per_input_samples(claim)
        shown = f"{n - k} of {n} inputs fail" if k < n else f"holds on all {n} inputs"
        what = (f"which shows a failure rate below {1 - low:.2%} only, not below {EVERY_INPUT_RESOLUTION:.2%}" if every
                else f"an interval [{low:.4g}, {high:.4g}] that straddles {target:.4g}")
        more = (f"state `samples {needed}` or more (or drop the `samples` that caps it)" if n < needed
                else f"more inputs would narrow it: state `samples {2 * n}` or more")
        result.note = f"{shown}, {what}: {more}"
    order = np.argsort(margins)[:3]
    worst = [{"input": data.examples[i].prefix, "features": dict(data.examples[i].features), **evaluated.values[i],
              "holds": bool(holds[i])} for i in order]
    if k < n:
        result.counterexample = worst[0]
    result.units = worst
    if claim.kind in ("behaviour", "agreement") and not claim.in_model and data.empty_logits is not None:
        _check_ablated_run(result, claim, data, target, margins)


def _check_ablated_run(result: ClaimResult, claim: ResolvedClaim, data: GroupData, target: float,
                       margins: np.ndarray) -> None:
    """A behaviour or agreement claim that would pass with every node ablated says nothing about the
    circuit: the model with nothing kept (a constant output, under mean ablation) already does it. The
    verdict stands, since what it states is true; the note and ``when_ablated`` say it shows nothing."""
    ablated = evaluate_per_input(claim, replace(data, circuit_logits=data.empty_logits))
    k, n = int(ablated.holds.sum()), len(ablated.holds)
    low, _ = one_sided_bounds(k, n, claim.confidence)
    passes = (k == n if claim.coverage is None else True) and low >= target - 1e-9
    result.when_ablated = {"holds": k, "n": n, "would_pass": passes,
                           "median_margin_circuit": float(np.median(margins)),
                           "median_margin_ablated": float(np.median(ablated.margins))}
    if passes:
        warning = (f"also holds with every node ablated ({k} of {n} inputs; median margin "
                   f"{result.when_ablated['median_margin_ablated']:.3g} against the circuit's "
                   f"{result.when_ablated['median_margin_circuit']:.3g}): it does not show that the circuit computes it")
        result.note = f"{result.note}; {warning}" if result.note else warning


def _margin(values: np.ndarray, op: str, threshold: float) -> np.ndarray:
    """How far each value is on the right side of the comparison (negative: the claim fails there)."""
    if op in (">", ">="):
        return values - threshold
    if op in ("<", "<="):
        return threshold - values
    if op == "==":
        return -np.abs(values - threshold)
    return np.abs(values - threshold)
