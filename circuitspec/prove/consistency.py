"""Consistency of a spec's per-input claims, checked with Z3.

Role and behaviour claims constrain quantities of the circuit-alone run: node activations at a task
position and output logits (one variable each, per ablation, since claims under different ablations
speak of different runs). For every combination of task features that the task actually produces
(observed on sampled inputs), the claims whose ``when`` conditions hold there must be satisfiable
together; if not, Z3's unsat core names a smallest set of claims that contradict each other, and the
feature values are the witness.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import z3

from ..engine.tokenizer import BYTES, Tokenizer
from ..lang.fmt import format_statement
from ..lang.resolve import ResolvedClaim, ResolvedSpec
from ..verify.examples import COMPARISONS, satisfies


@dataclass(frozen=True)
class ClaimRef:
    file: str
    line: int
    name: str
    text: str


@dataclass
class Inconsistency:
    claims: list[ClaimRef]
    witness: dict  # task feature values under which these claims cannot all hold
    witnesses: int = 1  # how many observed feature combinations show the same contradiction


@dataclass
class ConsistencyReport:
    file: str
    checked_claims: int
    feature_combinations: int
    inconsistencies: list[Inconsistency] = field(default_factory=list)

    @property
    def consistent(self) -> bool:
        return not self.inconsistencies




def _run_tag(claim: ResolvedClaim) -> str:
    return f"{claim.ablation}|{claim.ablation_task}"


def encode(claim: ResolvedClaim, tokenizer: Tokenizer = BYTES) -> z3.BoolRef:
    """The claim's consequent as a Z3 formula over activation and logit variables (logits named in the
    model's ``tokenizer``)."""
    body = claim.claim.body
    tag = _run_tag(claim)
    if claim.kind == "role":
        return z3.And([COMPARISONS[body.op](z3.Real(f"{node}@{claim.position}|{tag}"), z3.RealVal(float(body.threshold)))
                       for node in claim.subject])
    left = z3.Real(f"logit[{tokenizer.token_repr(claim.logits[0])}]|{tag}")
    right = z3.Real(f"logit[{tokenizer.token_repr(claim.logits[1])}]|{tag}") if len(claim.logits) > 1 else z3.RealVal(float(body.right))
    return COMPARISONS[body.op](left, right)


def check_consistency(resolved: ResolvedSpec, samples: int = 500, seed: int = 0) -> ConsistencyReport:
    claims = [c for c in resolved.claims if c.kind in ("role", "behaviour")]
    examples = resolved.task.sample(samples, f"prove:{seed}")
    combos = list({tuple(sorted(ex.features.items())): ex for ex in examples}.values())
    report = ConsistencyReport(resolved.file, len(claims), len(combos))
    found: dict[frozenset[int], Inconsistency] = {}
    for example in combos:
        solver = z3.Solver()
        solver.set("core.minimize", True)
        for i, claim in enumerate(claims):
            if satisfies(example, claim.claim.conditions):
                solver.assert_and_track(encode(claim, resolved.context.model.tokenizer), z3.Bool(f"claim_{i}"))
        if solver.check() != z3.unsat:
            continue
        core = frozenset(int(str(label).removeprefix("claim_")) for label in solver.unsat_core())
        if core in found:
            found[core].witnesses += 1
            continue
        refs = [ClaimRef(resolved.file, claims[i].claim.span.line, claims[i].claim.name, _text(claims[i])) for i in sorted(core)]
        found[core] = Inconsistency(refs, dict(example.features))
    report.inconsistencies = list(found.values())
    return report


def _text(claim: ResolvedClaim) -> str:
    return format_statement(claim.claim)
