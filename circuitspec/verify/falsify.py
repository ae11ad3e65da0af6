"""Search for inputs that break per-input claims, with Hypothesis, and remember what it finds.

Each per-input claim made on every input (role, behaviour, and agreement: "the circuit alone answers
like the model", which is checked only where a spec states it) is attacked with the task's input
generator driven by Hypothesis (seeded, so a run is reproducible), and, when that finds nothing, with
plain seeded draws from the task's own sampler (as many as the search budget, run in batches).
Hypothesis favours small and boundary choices, so a rare branch at an interior choice of the generator
can escape it where uniform draws find it; with both, falsify is never weaker than random sampling
(what the draws find is reported as drawn: it is not shrunk). A claim made ``on at least Q of inputs``
allows failing inputs, so a search cannot refute it: it is judged on the share of random draws it holds
on, as verify judges it.
sufficient, necessary, minimal and "not needed" claims are attacked over ablation choices instead (:mod:`.attack`;
edge claims, like minimal ones, are re-judged on fresh inputs and references). A
failure is shrunk to a minimal snippet. Counterexamples are stored as readable JSON (one file per spec
and claim under ``.circuitspec/examples/``, :mod:`.example_store`) and replayed before any search on the
next run, so CI keeps failing on a known counterexample until the spec, or the model, changes. (Hypothesis' own example
database is not used: it ignores seeded runs, and its entries are opaque bytes, not reviewable inputs.)
"""

from __future__ import annotations

import random
import time
from dataclasses import asdict, dataclass
from typing import Callable

import torch
from hypothesis import HealthCheck, Phase, find, settings
from hypothesis.errors import NoSuchExample, Unsatisfiable

from ..engine.tasks import TaskExample
from ..lang.ast import PER_INPUT_KINDS
from ..schemas import finite
from ..testing import LoadedSpec, check_claim, evaluate_claim_on, in_population, task_inputs
from .attack import attack_claim, attack_minimal
from .example_store import ExampleStore
from .examples import sample_examples
from .judge import one_sided_bounds
from .pairs import partner_filter


@dataclass
class FalsifyResult:
    file: str
    line: int
    name: str
    kind: str
    tried: int  # inputs the Hypothesis search tried (or stored counterexamples replayed, or ablation choices)
    verdict: str  # "survived", "falsified" or "inconclusive" (no input met the claim's conditions)
    counterexample: dict | None = None
    note: str = ""
    seconds: float = 0.0  # wall time of this claim's search or attack
    random_tried: int = 0  # plain seeded draws from the task's sampler tried before the search

    def to_json(self) -> dict:
        """The result as JSON data: a figure that is not a finite number (an attack's undefined F) is null."""
        return finite(asdict(self))


def _search(spec: LoadedSpec, meets: Callable[[TaskExample], bool], breaks: Callable[[TaskExample], bool],
            max_examples: int, seed: int) -> tuple[TaskExample | None, int, bool]:
    """(shrunk counterexample or None, inputs tried, whether any input met the claim's conditions)."""
    tried = 0
    met = False

    def condition(example: TaskExample) -> bool:
        nonlocal tried, met
        tried += 1
        if not meets(example):
            return False
        met = True
        return breaks(example)

    config = settings(max_examples=max_examples, database=None, deadline=None,
                      suppress_health_check=list(HealthCheck), phases=[Phase.generate, Phase.shrink])
    try:
        found = find(task_inputs(spec.resolved.task), condition, settings=config, random=random.Random(seed))
    except (NoSuchExample, Unsatisfiable):
        return None, tried, met
    return found, tried, True


RANDOM_BATCH = 64  # random draws evaluated per batched forward pass


@dataclass
class Draws:
    """What plain seeded draws from the task's sampler showed about a per-input claim."""

    drawn: int  # inputs drawn that meet the claim's conditions
    failures: int  # of them, inputs on which the claim fails
    worst: TaskExample | None  # the failing input with the most negative margin


def _random_draws(spec: LoadedSpec, claim, conditions, count: int, seed: int) -> Draws:
    """Plain seeded draws from the task's sampler (``count`` meeting ``conditions``), evaluated in batches
    exactly as verify judges the claim."""
    examples = sample_examples(spec.resolved.task, count, f"falsify-random:{seed}", conditions,
                               keep=partner_filter(spec.resolved.task, claim.ablation, spec.settings.seed,
                                                   spec.resolved.context.model.tokenizer))
    worst: tuple[float, TaskExample] | None = None
    failures = 0
    for start in range(0, len(examples), RANDOM_BATCH):
        chunk = examples[start : start + RANDOM_BATCH]
        evaluated = evaluate_claim_on(spec, claim, chunk)
        margins = torch.as_tensor(evaluated.margins)
        broken = ~torch.as_tensor(evaluated.holds)
        failures += int(broken.sum())
        for i in torch.nonzero(broken).flatten().tolist():
            if worst is None or float(margins[i]) < worst[0]:
                worst = (float(margins[i]), chunk[i])
    return Draws(len(examples), failures, worst[1] if worst else None)


def _counterexample(spec: LoadedSpec, claim, example: TaskExample) -> dict:
    values = check_claim(spec, claim.claim.name, example).values
    return {"input": example.prefix, "answer": example.correct, "features": dict(example.features), **values}


def _every_input_result(spec: LoadedSpec, claim, max_examples: int, seed: int, store: ExampleStore | None) -> FalsifyResult:
    """A claim made on every input: one input that breaks it falsifies it. Stored counterexamples are
    replayed first, then Hypothesis searches (and shrinks), then plain draws cover what it misses."""
    resolved = spec.resolved
    name, conditions = claim.claim.name, claim.claim.conditions
    breaks = lambda ex: not check_claim(spec, name, ex).holds  # noqa: E731
    meets = lambda ex: in_population(spec, claim, ex)  # noqa: E731 (the `when`; a partner, under corrupted(F))
    known = store.load(resolved.file, name) if store else []
    replayed = next((ex for ex in known if meets(ex) and breaks(ex)), None)
    drawn, random_tried = 0, 0
    if replayed is not None:
        found, tried, met = replayed, known.index(replayed) + 1, True
    else:
        found, tried, met = _search(spec, meets, breaks, max_examples, seed)
        if found is None:  # Hypothesis shrinks what it finds; plain draws cover what it does not reach
            draws = _random_draws(spec, claim, conditions, max_examples, seed)
            found, random_tried = draws.worst, draws.drawn
            drawn, met = random_tried, met or random_tried > 0
    result = FalsifyResult(resolved.file, claim.claim.span.line, name, claim.kind, tried, "survived", random_tried=random_tried)
    if replayed is not None:
        result.note = "a stored counterexample still breaks it"
    elif found is not None and drawn:
        result.note = (f"missed by {tried} Hypothesis inputs, found by plain random draws from the task's sampler "
                       f"({drawn} drawn; not shrunk)")
    if found is not None:
        if store:
            store.add(resolved.file, name, found)
        result.verdict = "falsified"
        result.counterexample = _counterexample(spec, claim, found)
    elif not met:
        result.verdict = "inconclusive"
        result.note = "no generated input met the claim's `when` conditions"
    else:
        result.note = (f"no counterexample in {random_tried} random draws and {tried} Hypothesis inputs "
                       f"(search budget --max-examples {max_examples} each)")
    return result


def _coverage_result(spec: LoadedSpec, claim, max_examples: int, seed: int) -> FalsifyResult:
    """A claim made ``on at least Q of inputs`` allows failing inputs, so an input found by search
    refutes nothing: it is judged on the share of plain random draws on which it holds, with the one-sided
    exact bounds verify uses. Falsified when the upper bound is below Q; the worst failing input is shown
    either way."""
    resolved = spec.resolved
    draws = _random_draws(spec, claim, claim.claim.conditions, max_examples, seed)
    result = FalsifyResult(resolved.file, claim.claim.span.line, claim.claim.name, claim.kind, 0, "survived",
                           random_tried=draws.drawn)
    if not draws.drawn:
        result.verdict, result.note = "inconclusive", "no generated input met the claim's `when` conditions"
        return result
    holding = draws.drawn - draws.failures
    low, high = one_sided_bounds(holding, draws.drawn, claim.confidence)
    share = f"holds on {holding} of {draws.drawn} random draws ({low:.3g} to {high:.3g} at {claim.confidence:g})"
    if high < claim.coverage:
        result.verdict = "falsified"
        result.note = f"{share}: fewer than the {claim.coverage:g} it claims"
    else:
        result.note = f"{share}; a claim on at least {claim.coverage:g} of inputs is judged on the share, not searched"
    if draws.worst is not None:
        result.counterexample = _counterexample(spec, claim, draws.worst)
        if result.verdict == "survived":
            result.note += f" (worst failing input {draws.worst.prefix!r}: within the share it allows)"
    return result


def falsify_spec(spec: LoadedSpec, max_examples: int, seed: int, store: ExampleStore | None) -> list[FalsifyResult]:
    """Falsification results for every claim of a spec: per-input claims (role, behaviour, agreement) by
    search and random draws, sufficient / necessary / minimal / unneeded / edge claims by ablation choices."""
    resolved = spec.resolved
    results = []
    for claim in resolved.claims:
        started = time.monotonic()
        if claim.kind in PER_INPUT_KINDS:
            result = (_every_input_result(spec, claim, max_examples, seed, store) if claim.coverage is None
                      else _coverage_result(spec, claim, max_examples, seed))
        elif claim.ablation is not None:
            result = _attack_result(resolved, claim, spec)
        else:
            continue
        result.seconds = time.monotonic() - started
        results.append(result)
    return results


def _broken_note(claim, outcome) -> str:
    """What the attack showed, in the terms of what was measured: a claim that fails as stated was not
    broken by the attack's choice, it never held."""
    threshold = float(claim.claim.body.threshold)
    if claim.kind == "minimal":
        return "a unit stops mattering on other inputs"
    if claim.kind == "edge":
        return "the edge stops carrying the effect on other inputs"
    if outcome.as_stated_broken and claim.kind == "unneeded":
        return (f"ablating the part leaves F = {outcome.as_stated:.3g} (against >= {threshold:g}) with the claim's own "
                f"reference inputs: the part is needed")
    if outcome.as_stated_broken:
        if claim.kind == "sufficient":
            return (f"it does not hold even with everything outside the circuit ablated at once (F = {outcome.as_stated:.3g} "
                    f"against >= {threshold:g}), so no partial ablation was needed")
        return (f"ablating the circuit leaves F = {outcome.as_stated:.3g} (against <= {threshold:g}) with the claim's own "
                f"reference: the circuit is not necessary, whichever reference inputs are used")
    if claim.kind == "sufficient" and outcome.what.startswith("ablating"):
        return "it holds only when everything outside the circuit is ablated at once"
    return "it holds with the claim's own reference inputs but not with others: it depends on which inputs the reference comes from"


def _attack_result(resolved, claim, spec: LoadedSpec) -> FalsifyResult:
    drop = claim.kind in ("minimal", "edge")  # judged on what removing a part costs, re-judged on fresh inputs
    attack = attack_minimal if drop else attack_claim
    outcome = attack(resolved, claim, spec.settings)
    verdict = "falsified" if outcome.broken else "inconclusive" if outcome.inconclusive else "survived"
    result = FalsifyResult(resolved.file, claim.claim.span.line, claim.claim.name, claim.kind, outcome.tried, verdict)
    found = {"ablation choice": outcome.what, "drop" if drop else "faithfulness": round(outcome.worst, 6),
             "interval": [round(x, 6) for x in outcome.interval]}
    if outcome.broken:
        result.counterexample = found
        result.note = _broken_note(claim, outcome)
    elif outcome.inconclusive:
        result.counterexample = found
        measure = "drop" if drop else "F"
        result.note = (f"neither broken nor shown to hold: {measure} = {outcome.worst:.3g} "
                       f"[{outcome.interval[0]:.3g}, {outcome.interval[1]:.3g}] straddles {float(claim.claim.body.threshold):g} "
                       f"({outcome.what}); more inputs (--samples) would decide it")
    else:
        measure = "drop" if drop else "F"
        result.note = f"worst of {outcome.tried} choices: {measure} = {outcome.worst:.3g} ({outcome.what})"
    return result
