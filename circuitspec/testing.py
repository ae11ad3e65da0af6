"""Helpers for property-based tests that try to falsify a circuit explanation.

    from hypothesis import given
    from circuitspec.testing import assert_claim, claim_inputs, load_spec

    SPEC = load_spec("specs/closing_quote.circ")

    @given(claim_inputs(SPEC, "reader_double"))
    def test_reader_tracks_the_quote(example):
        assert_claim(SPEC, "reader_double", example)

Task generators draw every choice through a Sampler; here the sampler is Hypothesis itself, so a failing
input shrinks to a minimal Python snippet. ``task_inputs(task)`` draws any input of a task;
``claim_inputs(spec, claim)`` only those meeting the claim's ``when`` conditions. ``assert_claim``
evaluates a role or behaviour claim on one input exactly as ``circuitspec verify`` does (in the
circuit-alone run, with the claim's ablation), and skips inputs outside its ``when`` conditions.

Tests written this way pass under Hypothesis' default settings (the 200 ms deadline and the health
checks): nothing here registers, loads or changes a settings profile. :func:`load_spec` says why the
deadline holds, :func:`claim_inputs` why the filtering health check does. Test claims that hold ``on
every input``: a claim ``on at least Q of inputs`` may fail on some, and a search finds them.

The strategies of :mod:`circuitspec.strategies` are re-exported here. They compose snippets from the
tasks' own vocabulary (``identifiers``, ``numbers``, ``atoms``, ``string_literals``, ``expressions``,
``comparisons``, ``statements``, and ``calls``, ``lists``, ``assignments`` that nest them;
``from_sampler`` lifts any Sampler-style builder) and place a task input in a context of your choosing
(``in_call``, ``in_list``, ``in_assignment``, ``in_return``, ``in_condition``, nested outermost first)::

    @given(claim_inputs(SPEC, "reader_double", context=in_assignment(in_call())))  # x = f("hello
    def test_the_reader_marks_double_quotes_in_call_arguments(example):
        assert_claim(SPEC, "reader_double", example)

A task whose generator has no ``generate_in`` (so far all but closing_quote, bracket_type and
dict_or_set) raises :class:`ContextNotSupportedError` when given a context.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import torch
from hypothesis import assume, reject
from hypothesis import strategies as st
from hypothesis.strategies import SearchStrategy

from .commands.check_cmd import check_file
from .engine.ablation import Reference, plain_answer_logits, run_conditions_with_cache
from .engine.batch import TaskBatch, encode_for
from .engine.masks import Mask
from .engine.tasks import TaskExample
from .lang.ast import PER_INPUT_KINDS
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
from .verify.examples import sample_examples, satisfies
from .verify.judge import PerInput, evaluate_per_input
from .verify.pairs import corrupted_feature, partner_filter
from .verify.runner import GroupData, RunSettings, make_reference


class SpecLoadError(AssertionError):
    """The spec does not parse or resolve; the message is the rendered diagnostics."""


@dataclass
class LoadedSpec:
    resolved: ResolvedSpec
    settings: RunSettings = field(default_factory=RunSettings)
    _references: dict = field(default_factory=dict, repr=False)

    def reference(self, claim: ResolvedClaim, batch: TaskBatch, examples: list[TaskExample] | None = None) -> Reference:
        """What ablated parts carry for ``batch`` (the inputs ``examples``), the same values ``verify`` uses.

        Zeros, global means and the pretraining-corpus means do not depend on the input, and a mean per
        position depends only on the input's length: each is computed once per ablation setting (for the
        longest input the model takes, then cut to the input's length). Only ``resample`` is computed
        for each input, since which reference position a target position reads depends on its length
        (and, from corrupted partners, which partner it reads depends on the input)."""
        ablation = claim.ablation
        key = (ablation, claim.ablation_task)
        if ablation.kind == "resample":
            return make_reference(self.resolved, ablation, claim.ablation_task, batch, self.settings, examples=examples)
        if key not in self._references:
            if ablation.kind == "mean" and ablation.per_position and ablation.source == "task":
                n_ctx = self.resolved.context.model.cfg.n_ctx
                longest = TaskBatch(torch.zeros(1, n_ctx, dtype=torch.long), torch.tensor([n_ctx - 1]),
                                    torch.zeros(1, dtype=torch.long), torch.zeros(1, dtype=torch.long))
                batch_for_key = longest.to(self.settings.device)
            else:
                batch_for_key = batch
            self._references[key] = make_reference(self.resolved, ablation, claim.ablation_task, batch_for_key,
                                                   self.settings)
        reference = self._references[key]
        if ablation.kind == "mean" and ablation.per_position and ablation.source == "task":
            length = batch.tokens.shape[1]
            return Reference({h: v[:length] for h, v in reference.values.items()}, reference.ablation)
        return reference

    def claim(self, name: str) -> ResolvedClaim:
        for claim in self.resolved.claims:
            if claim.claim.label == name or claim.claim.name == name:
                return claim
        known = ", ".join(c.claim.name for c in self.resolved.claims)
        raise KeyError(f"{self.resolved.file} has no claim {name!r} (claims: {known})")

    def prepare(self) -> None:
        """Do once what a test would otherwise pay for on its first input: run each role and behaviour
        claim on one task input, which computes and keeps its reference activations (0.7 s for the task's
        means of ``specs/closing_quote.circ``) and takes torch's first pass (a few ms more than later
        ones). ``load_spec`` calls it; see :func:`load_spec`."""
        per_input = [c for c in self.resolved.claims if c.kind in PER_INPUT_KINDS]
        if not per_input:
            return
        for claim in per_input:
            keep = partner_filter(self.resolved.task, claim.ablation, self.settings.seed, self.resolved.context.model.tokenizer)
            for example in sample_examples(self.resolved.task, 1, f"{self.settings.seed}:warm-up", keep=keep):
                check_claim(self, claim.claim.name, example)


def load_spec(path: str | Path, seed: int = 0) -> LoadedSpec:
    """Parse and resolve a spec (``SpecLoadError`` with the rendered diagnostics if it is wrong) and
    prepare its role and behaviour claims for single-input checks.

    Why the preparation happens here, at load time, and why :func:`check_claim` runs on one CPU thread:
    Hypothesis fails a test when one example takes longer than its deadline (200 ms by default), and it
    times the test function only, not module-level code such as ``SPEC = load_spec(...)``. Measured on
    the project's 2-core machine, shared with other jobs (load average 3-5), with
    ``specs/closing_quote.circ``: when the task's mean activations (a forward pass over 200 reference
    inputs) were computed on a claim's first check, that check took 0.5-2.9 s, and both README examples
    failed with ``DeadlineExceeded`` ("took 895.92ms"); computed here, load_spec takes 1.1-1.7 s and the
    first check 5-14 ms. Later checks took 320-580 ms on that busy machine with torch's default of one
    thread per core (an input of a few dozen tokens is too small to share out, and the threads wait for
    each other), 3-11 ms on one thread, and 4-5 ms on two threads when the load had dropped to 2.5, so
    one thread costs nothing when cores are free. Hence no settings profile: the README examples pass
    under Hypothesis' defaults with the deadline kept, and neither your other tests' settings nor your
    torch thread count (restored after each check) change. (A ``settings`` object exported from here
    would also have frozen whatever profile was loaded when this module was imported, since Hypothesis
    copies the unset values when a settings object is made, and a test takes only one ``@settings``.)
    Means per position are cut from one computed for the longest input (4-13 ms per check). A claim
    with ``ablate resample`` still computes its reference for each input, since the reference is
    aligned to the input's length: 0.65-0.97 s per check on one thread (1.4-2.6 s on two), so such a
    test needs ``@settings(deadline=None)``.
    """
    resolved, diagnostics, sources = check_file(Path(path))
    if resolved is None:
        raise SpecLoadError(render_all(diagnostics, sources))
    spec = LoadedSpec(resolved, RunSettings(seed=seed))
    spec.prepare()
    return spec


@contextmanager
def _one_cpu_thread() -> Iterator[None]:
    """Run torch's CPU operators on one thread, and restore the caller's setting afterwards."""
    threads = torch.get_num_threads()
    if threads == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


@dataclass(frozen=True)
class ClaimCheck:
    holds: bool
    values: dict[str, float]  # what was compared: node activations or logits


def check_claim(spec: LoadedSpec, name: str, example: TaskExample) -> ClaimCheck:
    """Evaluate a role, behaviour or agreement claim on one input (the caller checks its `when` conditions)."""
    claim = spec.claim(name)
    if claim.kind not in PER_INPUT_KINDS:
        raise ValueError(f"claim {name!r} is a {claim.kind} claim: only role, behaviour and agreement claims hold per input")
    with _one_cpu_thread():  # one short input: 3-11 ms on one thread against 320-580 ms on two (load_spec)
        evaluated = evaluate_claim_on(spec, claim, [example])  # exactly what verify judges, on this one input
    return ClaimCheck(bool(evaluated.holds[0]), evaluated.values[0])


def evaluate_claim_on(spec: LoadedSpec, claim: ResolvedClaim, examples: list[TaskExample]) -> PerInput:
    """A per-input claim on a batch of inputs, as verify judges it: in the circuit-alone run, or in the
    unablated model for a claim made `in full model`; an agreement claim compares the two."""
    resolved = spec.resolved
    model = resolved.context.model
    batch = encode_for(model, examples, resolved.task.name).to(spec.settings.device)
    hooks = sorted({node.hook for node in claim.subject})
    full = Mask.full(resolved.mask.space)
    mask = full if claim.in_model else resolved.mask  # `in full model`: nothing ablated
    reference = spec.reference(claim, batch, examples)
    logits, cache = run_conditions_with_cache(model, batch.tokens, [mask], reference, batch.answer_pos, hooks)
    activations = {h: a[0] for h, a in cache.items()}
    model_logits = logits[0]
    if claim.kind == "agreement":
        model_logits = plain_answer_logits(model, batch.tokens, batch.answer_pos)  # as verify's per-input groups
    data = GroupData(examples, circuit_logits=logits[0], activations=activations, model_logits=model_logits,
                     model_activations=activations, tokenizer=model.tokenizer)
    return evaluate_per_input(claim, data)


def in_population(spec: LoadedSpec, claim: ResolvedClaim, example: TaskExample) -> bool:
    """Whether a claim is about ``example``: it meets the claim's `when` conditions and, under
    ``ablate resample from corrupted(F)``, has a partner (as ``verify`` draws its inputs)."""
    if not satisfies(example, claim.claim.conditions):
        return False
    keep = partner_filter(spec.resolved.task, claim.ablation, spec.settings.seed, spec.resolved.context.model.tokenizer)
    return keep is None or keep(example)


def assert_claim(spec: LoadedSpec, name: str, example: TaskExample) -> None:
    """Fail (with the values) if the claim does not hold on this input; inputs outside the claim's
    `when` conditions (or, under a corrupted-partner ablation, without a partner) are rejected with
    ``hypothesis.assume`` (draw from :func:`claim_inputs` to reject few). A claim ``on at least Q of
    inputs`` may fail on some inputs, and a search will find them: test claims that hold ``on every
    input``."""
    claim = spec.claim(name)
    assume(in_population(spec, claim, example))
    result = check_claim(spec, name, example)
    if not result.holds:
        raise AssertionError(f"{spec.resolved.file}:{claim.claim.span.line}: claim {name!r} does not hold on "
                             f"{example.prefix!r}: {result.values}")


# Draws of the task per input of a claim before the input is rejected; see claim_inputs.
CLAIM_INPUT_DRAWS = 25


def claim_inputs(spec: LoadedSpec, name: str, context: Context | SearchStrategy[Context] | None = None
                 ) -> SearchStrategy[TaskExample]:
    """A strategy over the inputs a claim is about: the spec's task inputs (in ``context``, as
    :func:`task_inputs` places them) that meet the claim's ``when`` conditions and, under ``ablate resample
    from corrupted(F)``, have a counterfactual partner.

    ``task_inputs`` with ``assert_claim`` tests the same inputs, but rejects each one outside the ``when``
    with ``assume``, and Hypothesis fails a test (health check ``filter_too_much``) that rejects 50 inputs
    before 10 pass. ``closes_single`` of ``specs/closing_quote.circ`` (single quote, no earlier literal,
    a body of at most 12 characters) takes 30% of the task's Hypothesis draws and 11% of those in
    ``in_assignment(in_call())``, where that health check failed. Here each input is drawn again, up to
    ``CLAIM_INPUT_DRAWS`` times, until it meets the conditions (as Hypothesis' own ``filter`` retries, 3
    times): for ``closes_single`` in that context 6 inputs per 100 were still rejected (the same with 100
    draws), and the test passed the health check; shrinking still reaches the simplest input that meets
    the conditions. A claim whose conditions the task almost never produces still fails the health
    check, which is then worth reading.
    """
    claim = spec.claim(name)
    inputs = task_inputs(spec.resolved.task, context)
    if not claim.claim.conditions and corrupted_feature(claim.ablation) is None:
        return inputs
    return _meeting(inputs, lambda example: in_population(spec, claim, example))


@st.composite
def _meeting(draw, inputs: SearchStrategy[TaskExample], meets: Callable[[TaskExample], bool]) -> TaskExample:
    for _ in range(CLAIM_INPUT_DRAWS):
        example = draw(inputs)
        if meets(example):
            return example
    reject()
