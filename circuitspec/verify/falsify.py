"""Search for inputs that break per-input claims, with Hypothesis, and remember what it finds.

Each role and behaviour claim, plus the implicit claim "the circuit alone answers like the model", is
attacked with the task's input generator driven by Hypothesis (seeded, so a run is reproducible);
sufficient, necessary and minimal claims are attacked over ablation choices instead (:mod:`.attack`). A
failure is shrunk to a minimal snippet. Counterexamples are stored as readable JSON (one file per spec
and claim under ``.circuitspec/examples/``) and replayed before any search on the next run, so CI keeps
failing on a known counterexample until the spec, or the model, changes. (Hypothesis' own example
database is not used: it ignores seeded runs, and its entries are opaque bytes, not reviewable inputs.)
"""

from __future__ import annotations

import json
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
from ..engine.tasks import TaskExample
from ..testing import LoadedSpec, check_claim, task_inputs
from .attack import attack_claim, attack_minimal
from .examples import satisfies

AGREEMENT = "circuit agrees with model"  # implicit claim of every spec with a `sufficient` claim


@dataclass
class FalsifyResult:
    file: str
    line: int
    name: str
    kind: str
    tried: int
    verdict: str  # "survived", "falsified" or "inconclusive" (no input met the claim's conditions)
    counterexample: dict | None = None
    note: str = ""
    seconds: float = 0.0  # wall time of this claim's search or attack

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


class ExampleStore:
    """Counterexamples as JSON files: ``<root>/<spec file stem>/<claim>.json`` holding a list of inputs."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def _path(self, spec_file: str, claim: str) -> Path:
        safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in claim)
        return self.root / Path(spec_file).stem / f"{safe}.json"

    def load(self, spec_file: str, claim: str) -> list[TaskExample]:
        path = self._path(spec_file, claim)
        if not path.is_file():
            return []
        try:
            return [TaskExample(**item) for item in json.loads(path.read_text())]
        except (ValueError, TypeError):
            return []  # a hand-edited or foreign file is not worth failing the run over

    def add(self, spec_file: str, claim: str, example: TaskExample) -> None:
        known = self.load(spec_file, claim)
        if example in known:
            return
        path = self._path(spec_file, claim)
        path.parent.mkdir(parents=True, exist_ok=True)
        items = [asdict(e) for e in [*known, example]]
        path.write_text(json.dumps(items, indent=2, sort_keys=True) + "\n")


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
    for name, kind, line, conditions, breaks, values in targets:
        started = time.monotonic()
        known = store.load(resolved.file, name) if store else []
        replayed = next((ex for ex in known if satisfies(ex, conditions) and breaks(ex)), None)
        if replayed is not None:
            found, tried, met = replayed, known.index(replayed) + 1, True
        else:
            found, tried, met = _search(spec, conditions, breaks, max_examples, seed)
        result = FalsifyResult(resolved.file, line, name, kind, tried, "survived")
        if replayed is not None:
            result.note = "a stored counterexample still breaks it"
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
            result.note = f"no counterexample in {tried} inputs (search budget --max-examples {max_examples})"
        result.seconds = time.monotonic() - started
        results.append(result)
    for claim in resolved.claims:
        if claim.kind in ("sufficient", "necessary", "minimal") and claim.ablation is not None:
            started = time.monotonic()
            results.append(_attack_result(resolved, claim, spec))
            results[-1].seconds = time.monotonic() - started
    return results


def _attack_result(resolved, claim, spec: LoadedSpec) -> FalsifyResult:
    attack = attack_minimal if claim.kind == "minimal" else attack_claim
    outcome = attack(resolved, claim, spec.settings)
    result = FalsifyResult(resolved.file, claim.claim.span.line, claim.claim.name, claim.kind, outcome.tried,
                           "falsified" if outcome.broken else "survived")
    found = {"ablation choice": outcome.what, "drop" if claim.kind == "minimal" else "faithfulness": round(outcome.worst, 6),
             "interval": [round(x, 6) for x in outcome.interval]}
    if outcome.broken:
        result.counterexample = found
        if claim.kind == "minimal":
            result.note = "a unit stops mattering on other inputs"
        elif claim.kind == "sufficient" and outcome.what.startswith("ablating"):
            result.note = "it holds only when everything outside the circuit is ablated at once"
        else:
            result.note = "it depends on which inputs the reference comes from"
    else:
        measure = "drop" if claim.kind == "minimal" else "F"
        result.note = f"worst of {outcome.tried} choices: {measure} = {outcome.worst:.3g} ({outcome.what})"
    return result
