"""Task inputs and their counterfactual partners, for ``ablate resample from corrupted(FEATURE)``.

A claim under this ablation is about the task's inputs that have a partner
(:mod:`circuitspec.engine.tasks.counterfactual`): an input without one is left out, as an input outside
the claim's ``when`` is. The partner search is seeded by the run's seed, so ``verify``, ``falsify`` and the
testing API pair an input with the same partner, and :func:`probe` lets ``check`` say, before any run,
that a task's inputs have no partners for a feature.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

from ..engine.ablation import Ablation
from ..engine.errors import UsageError
from ..engine.tasks import Task, TaskExample
from ..engine.tasks.counterfactual import find_partner
from ..engine.tokenizer import Tokenizer
from ..lang import ast
from .examples import sample_examples

#: Task inputs (meeting a claim's ``when``) on which ``check`` looks for partners: none found is E517.
PROBE_INPUTS = 20


class NoPartnerError(UsageError):
    """An input given to a corrupted-partner ablation has no partner (built by hand, or the search found none)."""


def corrupted_feature(ablation: Ablation | None) -> str | None:
    """The feature an ablation's partners differ in, or None for any other ablation."""
    return None if ablation is None else ablation.corrupted


def has_partner(task: Task, feature: str, seed: int | str, tokenizer: Tokenizer | None = None) -> Callable[[TaskExample], bool]:
    """A test of whether an input of ``task`` has a partner for ``feature`` (searched with ``seed``; lined up
    as the tokens of ``tokenizer`` too, when given)."""
    return lambda example: find_partner(task, example, feature, seed, tokenizer) is not None


def partner_filter(task: Task, ablation: Ablation | None, seed: int | str,
                   tokenizer: Tokenizer | None = None) -> Callable[[TaskExample], bool] | None:
    """What :func:`~.examples.sample_examples` keeps besides a claim's ``when``: inputs with a partner, under
    a corrupted-partner ablation; None (every input) under the others. ``tokenizer``: the model's."""
    feature = corrupted_feature(ablation)
    return None if feature is None else has_partner(task, feature, seed, tokenizer)


def partners_of(task: Task, examples: Sequence[TaskExample], feature: str, seed: int | str,
                tokenizer: Tokenizer | None = None) -> list[TaskExample]:
    """Each input's partner, in order (lined up as the tokens of ``tokenizer`` too, when given); NoPartnerError
    names the first input that has none."""
    partners = []
    for example in examples:
        partner = find_partner(task, example, feature, seed, tokenizer)
        if partner is None:
            raise NoPartnerError(
                f"task input {example.prefix!r} has no counterfactual partner that differs in {feature!r}",
                hint="partners are found for inputs the task generated (their choices are recorded), not for inputs "
                     "built by hand or read from a file; draw inputs with circuitspec.testing.claim_inputs")
        partners.append(partner)
    return partners


@dataclass(frozen=True)
class Probe:
    """What ``check`` learnt about a feature's partners: inputs searched, and whether one had a partner."""

    inputs: int
    found: bool


_PROBES: dict[tuple, tuple[Task, Probe]] = {}


def probe(task: Task, feature: str, conditions: Sequence[ast.Condition] = ()) -> Probe:
    """Search :data:`PROBE_INPUTS` seeded task inputs meeting ``conditions`` for a partner, stopping at the
    first (so ``check`` pays the whole probe only for a feature that has none). Kept per task, feature and
    conditions: a header's ablation is probed once for the claims that inherit it."""
    key = (id(task), feature, tuple(conditions))
    known = _PROBES.get(key)
    if known is not None and known[0] is task:
        return known[1]
    examples = sample_examples(task, PROBE_INPUTS, "partner-probe", conditions)
    searched, found = 0, False
    for example in examples:
        searched += 1
        if find_partner(task, example, feature, "partner-probe") is not None:
            found = True
            break
    result = Probe(searched, found)
    _PROBES[key] = (task, result)
    return result
