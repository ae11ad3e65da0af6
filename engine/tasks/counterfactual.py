"""Counterfactual partners: for a task input, an input of the same task that differs in one feature and
otherwise as little as possible (the "corrupted" input of ACDC, causal scrubbing and the IOI work).

A partner of ``x`` for feature ``f`` is an input ``x'`` of the same task with

- a different value of ``f`` (for a boolean or numeric feature too: any other value),
- the same prefix length (tokens are bytes, so the same number of tokens), and
- every named position at the same index (the answer position included).

so that ablating a node "to its value on the partner" can be done position by position. Of the inputs
that qualify, the closest is taken: the fewest *other* features changed, then the fewest prefix
positions that differ.

How partners are found, for any task: the input's recorded choices (:mod:`.draws`) are replayed with one
of them changed, every other value of every choice in turn (at most :data:`MAX_ALTERNATIVES` values of a
wider choice, picked by the seed). A change that changes the feature often moves a position too (a
longer word, another branch of the generator); when no single change gives a partner, the least
misplaced of those replays are repaired, a further change at a time, each the one that brings the
named positions closest back while keeping the feature changed (:data:`REPAIR_STARTS` replays,
:data:`REPAIR_STEPS` changes each). A search stops early at a partner that changes no other feature and
one position, and after :data:`MAX_REPLAYS` replays. A task may register its own pairing
(``Task.counterfactual``), which is asked first; its partner must meet the same rule.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Sequence

from ..tokenizer import Tokenizer
from .base import RandomSampler, Task, TaskExample, check_example
from .draws import Draws, ReplaySampler, draws_of, record

#: Values of one choice tried in the single-change pass; a wider choice (a pool of names, a two-digit
#: number) gets this many of its other values, drawn by the seed.
MAX_ALTERNATIVES = 12
#: Single changes that change the feature but move a position, repaired when no single change gives a
#: partner (the least misplaced first), and the further changes each repair may make.
REPAIR_STARTS = 4
REPAIR_STEPS = 3
#: Replays one search may make (about 50 microseconds each).
MAX_REPLAYS = 1500


class PartnerRuleError(ValueError):
    """A task's own pairing function returned an input that is not a partner (a bug in the task)."""


@dataclass(frozen=True)
class Closeness:
    """How far a partner is from its input: other features changed, then prefix positions that differ."""

    features: int
    positions: int

    def key(self) -> tuple[int, int]:
        return (self.features, self.positions)


def is_partner(example: TaskExample, candidate: TaskExample, feature: str) -> bool:
    """Whether ``candidate`` may stand in for ``example`` with ``feature`` changed (the module's rule)."""
    return (candidate.features.get(feature) != example.features.get(feature)
            and len(candidate.prefix) == len(example.prefix)
            and dict(candidate.positions) == dict(example.positions))


def tokens_align(example: TaskExample, candidate: TaskExample, tokenizer: Tokenizer | None) -> bool:
    """Whether the two inputs also line up as tokens: as many tokens, and every named position (the answer's
    included) in the token of the same index. Equal character positions do not make equal token positions
    under a BPE (``x = 'ab`` and ``x = 'a ``, say, split differently); byte tokens always line up."""
    if tokenizer is None or tokenizer.name == "bytes":
        return True
    if len(tokenizer.encode(example.prefix)) != len(tokenizer.encode(candidate.prefix)):
        return False
    return all(tokenizer.token_index(example.prefix, index) == tokenizer.token_index(candidate.prefix, index)
               for index in example.positions.values())


def closeness(example: TaskExample, partner: TaskExample, feature: str) -> Closeness:
    others = sum(partner.features.get(name) != value for name, value in example.features.items() if name != feature)
    return Closeness(others, sum(a != b for a, b in zip(example.prefix, partner.prefix)))


def find_partner(task: Task, example: TaskExample, feature: str, seed: int | str = 0,
                 tokenizer: Tokenizer | None = None) -> TaskExample | None:
    """The closest partner of ``example`` for ``feature`` (see the module docstring), or None when there is
    none: the search found none, or the input has no recorded choices (built by hand, read from a file) and
    the task registers no pairing of its own. The same input, feature and seed give the same partner.
    ``tokenizer``: the model's, when it is not byte-level: a partner must then line up as tokens too
    (:func:`tokens_align`)."""
    draws = draws_of(example)
    aligned = tokenizer if tokenizer is not None and tokenizer.name != "bytes" else None
    key = (feature, str(seed)) if aligned is None else (feature, str(seed), aligned.name, id(aligned))
    if draws is not None and key in draws.partners:
        return draws.partners[key]
    partner = None
    if task.counterfactual is not None:
        partner = task.counterfactual(RandomSampler(f"{task.name}:pair:{seed}:{example.prefix}"), example, feature)
        if partner is not None and not is_partner(example, partner, feature):
            raise PartnerRuleError(
                f"task {task.name!r}: its counterfactual for {example.prefix!r} ({feature}) is not a partner: "
                f"{partner.prefix!r} must differ in {feature} and keep the prefix length and every named position")
        if partner is not None and not tokens_align(example, partner, aligned):
            partner = None  # it lines up as characters only: look for one that lines up as tokens too
    if partner is None and draws is not None:
        partner = _search(task, example, draws, feature, random.Random(f"{task.name}:partner:{seed}:{example.prefix}"),
                          aligned)
    if draws is not None:
        draws.partners[key] = partner
    return partner


def _search(task: Task, example: TaskExample, draws: Draws, feature: str, rng: random.Random,
            tokenizer: Tokenizer | None = None) -> TaskExample | None:
    """Single changes first; then, from the single changes that change the feature but move a position,
    a few steps of repair (:data:`REPAIR_STARTS`, :data:`REPAIR_STEPS`), each the single further change that
    brings the positions closest back, keeping the feature changed."""
    search = _Search(task, example, feature, rng, tokenizer)
    flips = search.around(draws)
    if search.best is not None or search.done:
        return search.partner()
    for _, _, start in sorted(flips, key=lambda f: f[:2])[:REPAIR_STARTS]:
        current, distance = start, _misplaced(example, start[0])
        for _ in range(REPAIR_STEPS):
            steps = search.around(current[1])
            if search.done or not steps:
                break
            step_distance, _, step = min(steps, key=lambda f: f[:2])
            if step_distance >= distance:
                break
            current, distance = step, step_distance
        if search.best is not None:
            break
    return search.partner()


class _Search:
    """Replays around recorded choices for one input and feature, keeping the closest partner found."""

    def __init__(self, task: Task, example: TaskExample, feature: str, rng: random.Random,
                 tokenizer: Tokenizer | None = None) -> None:
        self.task, self.example, self.feature, self.rng = task, example, feature, rng
        self.tokenizer = tokenizer
        self.best: tuple[tuple[int, int], TaskExample] | None = None
        self.replays = 0

    @property
    def done(self) -> bool:
        """Out of replays, or holding a partner nothing can beat (no other feature changed, one position)."""
        return self.replays >= MAX_REPLAYS or (self.best is not None and self.best[0] == (0, 1))

    def partner(self) -> TaskExample | None:
        return None if self.best is None else self.best[1]

    def around(self, draws: Draws) -> list[tuple[int, int, tuple[TaskExample, Draws]]]:
        """Replay every single change of ``draws``; keep partners, and return the replays that change the
        feature without being partners, as (misplacement, order, (input, its choices))."""
        flips = []
        for position, value in _single_changes(draws.draws, self.rng):
            if self.done:
                break
            self.replays += 1
            replayed = _replay(self.task, draws, {position: value}, self.rng)
            if replayed is None or replayed[0].features.get(self.feature) == self.example.features.get(self.feature):
                continue
            candidate = replayed[0]
            if is_partner(self.example, candidate, self.feature) and tokens_align(self.example, candidate, self.tokenizer):
                key = closeness(self.example, candidate, self.feature).key()
                if self.best is None or key < self.best[0]:
                    self.best = (key, candidate)
            else:
                flips.append((_misplaced(self.example, candidate), len(flips), replayed))
        return flips


def _misplaced(example: TaskExample, candidate: TaskExample) -> int:
    """How far ``candidate``'s named positions (the answer's included) are from ``example``'s, in characters."""
    return sum(abs(candidate.positions.get(name, -1) - index) for name, index in example.positions.items())


def _single_changes(draws: Sequence, rng: random.Random) -> list[tuple[int, int]]:
    """(choice, new value) for one pass of single changes: every other value of a narrow choice, a seeded
    sample of a wide one, choices in the order the generator made them."""
    changes = []
    for position, draw in enumerate(draws):
        others = [v for v in draw.alternatives() if v != draw.value]
        if len(others) > MAX_ALTERNATIVES:
            others = sorted(rng.sample(others, MAX_ALTERNATIVES))
        changes += [(position, v) for v in others]
    return changes


def _replay(task: Task, draws: Draws, changes: dict[int, int], rng: random.Random) -> tuple[TaskExample, Draws] | None:
    """The input the generator makes from the recorded choices with ``changes``, and the choices it made
    (choices the record cannot answer come from a sampler seeded by ``rng``); None when the generator
    rejects the combination."""
    sampler = ReplaySampler(draws.draws, changes, RandomSampler(rng.getrandbits(64)))
    try:
        candidate, made = record(draws.generate, sampler)
        check_example(task, candidate)
    except (ValueError, IndexError):  # a combination of choices the generator was never meant to meet
        return None
    return candidate, made


@dataclass(frozen=True)
class PartnerRate:
    """How often inputs of a task have a partner for a feature, on a seeded sample."""

    task: str
    feature: str
    inputs: int
    found: int
    mean_positions: float  # mean prefix positions that differ, over the partners found
    changed_features: int  # partners that also change another feature

    @property
    def share(self) -> float:
        return self.found / self.inputs if self.inputs else 0.0


def partner_rate(task: Task, feature: str, examples: Sequence[TaskExample], seed: int | str = 0) -> PartnerRate:
    """Search a partner for each of ``examples`` (inputs of ``task``) and count."""
    found, positions, changed = 0, 0, 0
    for example in examples:
        partner = find_partner(task, example, feature, seed)
        if partner is None:
            continue
        found += 1
        near = closeness(example, partner, feature)
        positions += near.positions
        changed += near.features > 0
    return PartnerRate(task.name, feature, len(examples), found, positions / found if found else 0.0, changed)
