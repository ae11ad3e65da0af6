"""Search for inputs that break per-input claims, with Hypothesis, and remember what it finds.

Each role and behaviour claim, plus the implicit claim "the circuit alone answers like the model", is
attacked with the task's input generator driven by Hypothesis (seeded, so a run is reproducible), and,
when that finds nothing, with plain seeded draws from the task's own sampler (as many as the search
budget, run in batches). Hypothesis favours small and boundary choices, so a rare branch at an interior
choice of the generator can escape it where uniform draws find it; with both, falsify is never weaker
than random sampling (what the draws find is reported as drawn: it is not shrunk).
sufficient, necessary and minimal claims are attacked over ablation choices instead (:mod:`.attack`). A
failure is shrunk to a minimal snippet. Counterexamples are stored as readable JSON (one file per spec
and claim under ``.circuitspec/examples/``, :mod:`.example_store`) and replayed before any search on the
next run, so CI keeps failing on a known counterexample until the spec, or the model, changes. (Hypothesis' own example
database is not used: it ignores seeded runs, and its entries are opaque bytes, not reviewable inputs.)
"""

from __future__ import annotations

import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import torch
from hypothesis import HealthCheck, Phase, find, settings
from hypothesis.errors import NoSuchExample, Unsatisfiable

from ..engine.ablation import run_conditions
from ..engine.batch import encode_examples
from ..engine.metrics import logit_diff
from ..engine.tasks import TaskExample
from ..testing import LoadedSpec, check_claim, evaluate_claim_on, task_inputs
from .attack import attack_claim, attack_minimal
from .example_store import ExampleStore
from .examples import sample_examples, satisfies

AGREEMENT = "circuit agrees with model"  # implicit claim of every spec with a `sufficient` claim


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
        return asdict(self)


def _agrees(spec: LoadedSpec, example: TaskExample) -> tuple[bool, dict]:
    """Whether the circuit alone prefers the same answer as the full model on this input."""
    resolved = spec.resolved
    model = resolved.context.model
    batch = encode_examples([example], model.cfg.n_ctx).to(spec.settings.device)
    claim = next(c for c in resolved.claims if c.kind == "sufficient")
    reference = spec.reference(claim, batch)
    circuit = run_conditions(model, batch.tokens, [resolved.mask], reference, batch.answer_pos)[0, 0]
    with torch.no_grad():
        full = model(batch.tokens)[0, batch.answer_pos[0]]
    diff = lambda logits: float(logits[batch.correct[0]] - logits[batch.wrong[0]])  # noqa: E731
    return (diff(circuit) > 0) == (diff(full) > 0), {"circuit_logit_diff": diff(circuit), "model_logit_diff": diff(full)}


def _search(spec: LoadedSpec, conditions, breaks: Callable[[TaskExample], bool], max_examples: int,
            seed: int) -> tuple[TaskExample | None, int, bool]:
    """(shrunk counterexample or None, inputs tried, whether any input met the conditions)."""
    tried = 0
    met = False

    def condition(example: TaskExample) -> bool:
        nonlocal tried, met
        tried += 1
        if not satisfies(example, conditions):
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


def _random_draws(spec: LoadedSpec, claim, conditions, count: int, seed: int) -> tuple[TaskExample | None, int]:
    """Plain seeded draws from the task's sampler (``count`` meeting ``conditions``), evaluated in batches:
    the one that breaks the claim (``claim``; ``None`` = the circuit agrees with the model) by the most,
    or None; and how many were drawn."""
    resolved = spec.resolved
    model = resolved.context.model
    examples = sample_examples(resolved.task, count, f"falsify-random:{seed}", conditions)
    target = next(c for c in resolved.claims if c.kind == "sufficient") if claim is None else claim
    worst: tuple[float, TaskExample] | None = None
    for start in range(0, len(examples), RANDOM_BATCH):
        chunk = examples[start : start + RANDOM_BATCH]
        if claim is not None:
            evaluated = evaluate_claim_on(spec, claim, chunk)
            margins = torch.as_tensor(evaluated.margins)
            broken = ~torch.as_tensor(evaluated.holds)
        else:
            batch = encode_examples(chunk, model.cfg.n_ctx).to(spec.settings.device)
            circuit = run_conditions(model, batch.tokens, [resolved.mask], spec.reference(target, batch), batch.answer_pos)[0]
            with torch.no_grad():
                full = model(batch.tokens)[torch.arange(len(chunk)), batch.answer_pos]
            circuit_diff, full_diff = (logit_diff(lg, batch.correct, batch.wrong) for lg in (circuit, full))
            broken = (circuit_diff > 0) != (full_diff > 0)
            margins = -(circuit_diff - full_diff).abs()
        for i in torch.nonzero(broken).flatten().tolist():
            if worst is None or float(margins[i]) < worst[0]:
                worst = (float(margins[i]), chunk[i])
    return (worst[1] if worst else None), len(examples)


def falsify_spec(spec: LoadedSpec, max_examples: int, seed: int, store: ExampleStore | None) -> list[FalsifyResult]:
    resolved = spec.resolved
    results = []
    targets = [(c.claim.name, c.kind, c.claim.span.line, c.claim.conditions,
                (lambda ex, name=c.claim.name: not check_claim(spec, name, ex).holds),
                (lambda ex, name=c.claim.name: check_claim(spec, name, ex).values))
               for c in resolved.claims if c.kind in ("role", "behaviour")]
    sufficient = next((c for c in resolved.claims if c.kind == "sufficient"), None)
    if sufficient is not None:  # only a circuit claimed sufficient should answer like the model on its own
        targets.append((AGREEMENT, "agreement", sufficient.claim.span.line, sufficient.claim.conditions,
                        lambda ex: not _agrees(spec, ex)[0], lambda ex: _agrees(spec, ex)[1]))
    claims = {c.claim.name: c for c in resolved.claims}
    for name, kind, line, conditions, breaks, values in targets:
        started = time.monotonic()
        known = store.load(resolved.file, name) if store else []
        replayed = next((ex for ex in known if satisfies(ex, conditions) and breaks(ex)), None)
        drawn, random_tried = 0, 0
        if replayed is not None:
            found, tried, met = replayed, known.index(replayed) + 1, True
        else:
            found, tried, met = _search(spec, conditions, breaks, max_examples, seed)
            if found is None:  # Hypothesis shrinks what it finds; plain draws cover what it does not reach
                found, random_tried = _random_draws(spec, claims.get(name), conditions, max_examples, seed)
                drawn, met = random_tried, met or random_tried > 0
        result = FalsifyResult(resolved.file, line, name, kind, tried, "survived", random_tried=random_tried)
        if replayed is not None:
            result.note = "a stored counterexample still breaks it"
        elif found is not None and drawn:
            result.note = (f"missed by {tried} Hypothesis inputs, found by plain random draws from the task's sampler "
                           f"({drawn} drawn; not shrunk)")
        if found is not None:
            if store:
                store.add(resolved.file, name, found)
            result.verdict = "falsified"
            result.counterexample = {"input": found.prefix, "answer": found.correct, "features": dict(found.features),
                                     **values(found)}
        elif not met:
            result.verdict = "inconclusive"
            result.note = "no generated input met the claim's `when` conditions"
        else:
            result.note = (f"no counterexample in {random_tried} random draws and {tried} Hypothesis inputs "
                           f"(search budget --max-examples {max_examples} each)")
        result.seconds = time.monotonic() - started
        results.append(result)
    for claim in resolved.claims:
        if claim.kind in ("sufficient", "necessary", "minimal") and claim.ablation is not None:
            started = time.monotonic()
            results.append(_attack_result(resolved, claim, spec))
            results[-1].seconds = time.monotonic() - started
    return results


def _broken_note(claim, outcome) -> str:
    """What the attack showed, in the terms of what was measured: a claim that fails as stated was not
    broken by the attack's choice, it never held."""
    threshold = float(claim.claim.body.threshold)
    if claim.kind == "minimal":
        return "a unit stops mattering on other inputs"
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
    attack = attack_minimal if claim.kind == "minimal" else attack_claim
    outcome = attack(resolved, claim, spec.settings)
    verdict = "falsified" if outcome.broken else "inconclusive" if outcome.inconclusive else "survived"
    result = FalsifyResult(resolved.file, claim.claim.span.line, claim.claim.name, claim.kind, outcome.tried, verdict)
    found = {"ablation choice": outcome.what, "drop" if claim.kind == "minimal" else "faithfulness": round(outcome.worst, 6),
             "interval": [round(x, 6) for x in outcome.interval]}
    if outcome.broken:
        result.counterexample = found
        result.note = _broken_note(claim, outcome)
    elif outcome.inconclusive:
        result.counterexample = found
        measure = "drop" if claim.kind == "minimal" else "F"
        result.note = (f"neither broken nor shown to hold: {measure} = {outcome.worst:.3g} "
                       f"[{outcome.interval[0]:.3g}, {outcome.interval[1]:.3g}] straddles {float(claim.claim.body.threshold):g} "
                       f"({outcome.what}); more inputs (--samples) would decide it")
    else:
        measure = "drop" if claim.kind == "minimal" else "F"
        result.note = f"worst of {outcome.tried} choices: {measure} = {outcome.worst:.3g} ({outcome.what})"
    return result
