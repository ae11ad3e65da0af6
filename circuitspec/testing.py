"""Helpers for property-based tests that try to falsify a circuit explanation.

    from hypothesis import given
    from circuitspec.testing import task_inputs, load_spec, assert_claim

    SPEC = load_spec("specs/closing_quote.circ")

    @given(task_inputs("closing_quote"))
    def test_reader_tracks_the_quote(example):
        assert_claim(SPEC, "reader_double", example)

Task generators draw every choice through a Sampler; here the sampler is Hypothesis itself, so a failing
input shrinks to a minimal Python snippet. ``assert_claim`` evaluates a role or behaviour claim on one
input exactly as ``circuitspec verify`` does (in the circuit-alone run, with the claim's ablation), and
skips inputs outside the claim's ``when`` conditions.

The strategies of :mod:`circuitspec.strategies` are re-exported here. They compose snippets from the
tasks' own vocabulary (``identifiers``, ``numbers``, ``atoms``, ``string_literals``, ``expressions``,
``comparisons``, ``statements``, and ``calls``, ``lists``, ``assignments`` that nest them;
``from_sampler`` lifts any Sampler-style builder) and place a task input in a context of your choosing
(``in_call``, ``in_list``, ``in_assignment``, ``in_return``, ``in_condition``, nested outermost first)::

    @given(task_inputs("closing_quote", context=in_assignment(in_call())))  # x = f("hello
    def test_the_circuit_closes_strings_in_call_arguments(example):
        assert_claim(SPEC, "closes_single", example)

A task whose generator has no ``generate_in`` (so far all but closing_quote, bracket_type and
dict_or_set) raises :class:`ContextNotSupportedError` when given a context.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from hypothesis import assume

from .commands.check_cmd import check_file
from .engine.ablation import Reference, run_conditions_with_cache
from .engine.batch import encode_examples
from .engine.masks import Mask
from .engine.tasks import TaskExample
from .lang.diagnostics import render_all
from .lang.resolve import ResolvedClaim, ResolvedSpec
from .strategies import (  # noqa: F401 (re-exported: the testing API is one import)
    Context,
    ContextNotSupportedError,
    HypothesisSampler,
    assignments,
    atoms,
    calls,
    comparisons,
    expressions,
    from_sampler,
    identifiers,
    in_assignment,
    in_call,
    in_condition,
    in_list,
    in_return,
    lists,
    numbers,
    statements,
    string_literals,
    task_inputs,
)
from .verify.examples import satisfies
from .verify.judge import evaluate_per_input
from .verify.runner import GroupData, RunSettings, make_reference


class SpecLoadError(AssertionError):
    """The spec does not parse or resolve; the message is the rendered diagnostics."""


@dataclass
class LoadedSpec:
    resolved: ResolvedSpec
    settings: RunSettings = field(default_factory=RunSettings)
    _references: dict = field(default_factory=dict, repr=False)

    def reference(self, claim: ResolvedClaim, batch) -> Reference:
        """Global means and zeros do not depend on the input, so they are computed once per claim setting;
        per-position means and resampling are aligned to each input."""
        key = (claim.ablation, claim.ablation_task)
        if claim.ablation.kind == "zero" or (claim.ablation.kind == "mean" and not claim.ablation.per_position):
            if key not in self._references:
                self._references[key] = make_reference(self.resolved, claim.ablation, claim.ablation_task, batch, self.settings)
            return self._references[key]
        return make_reference(self.resolved, claim.ablation, claim.ablation_task, batch, self.settings)

    def claim(self, name: str) -> ResolvedClaim:
        for claim in self.resolved.claims:
            if claim.claim.label == name or claim.claim.name == name:
                return claim
        known = ", ".join(c.claim.name for c in self.resolved.claims)
        raise KeyError(f"{self.resolved.file} has no claim {name!r} (claims: {known})")


def load_spec(path: str | Path, seed: int = 0) -> LoadedSpec:
    resolved, diagnostics, sources = check_file(Path(path))
    if resolved is None:
        raise SpecLoadError(render_all(diagnostics, sources))
    return LoadedSpec(resolved, RunSettings(seed=seed))


@dataclass(frozen=True)
class ClaimCheck:
    holds: bool
    values: dict[str, float]  # what was compared: node activations or logits


def check_claim(spec: LoadedSpec, name: str, example: TaskExample) -> ClaimCheck:
    """Evaluate a role or behaviour claim on one input (the caller checks its `when` conditions)."""
    claim = spec.claim(name)
    if claim.kind not in ("role", "behaviour"):
        raise ValueError(f"claim {name!r} is a {claim.kind} claim: only role and behaviour claims hold per input")
    resolved = spec.resolved
    model = resolved.context.model
    batch = encode_examples([example], model.cfg.n_ctx).to(spec.settings.device)
    reference = spec.reference(claim, batch)
    hooks = sorted({node.hook for node in claim.subject})
    mask = Mask.full(resolved.mask.space) if claim.in_model else resolved.mask  # `in full model`: nothing ablated
    logits, cache = run_conditions_with_cache(model, batch.tokens, [mask], reference, batch.answer_pos, hooks)
    activations = {h: a[0] for h, a in cache.items()}
    data = GroupData([example], circuit_logits=logits[0], activations=activations, model_logits=logits[0],
                     model_activations=activations)
    evaluated = evaluate_per_input(claim, data)  # exactly what verify judges, on this one input
    return ClaimCheck(bool(evaluated.holds[0]), evaluated.values[0])


def assert_claim(spec: LoadedSpec, name: str, example: TaskExample) -> None:
    """Fail (with the values) if the claim does not hold on this input; inputs outside the claim's
    `when` conditions are rejected with ``hypothesis.assume``."""
    claim = spec.claim(name)
    assume(satisfies(example, claim.claim.conditions))
    result = check_claim(spec, name, example)
    if not result.holds:
        raise AssertionError(f"{spec.resolved.file}:{claim.claim.span.line}: claim {name!r} does not hold on "
                             f"{example.prefix!r}: {result.values}")
