"""What a task is: a seeded, compositional generator of binary next-token problems.

Generators draw every random choice through a :class:`Sampler`, so the same generator can be driven
by ``random.Random`` (seeded datasets) or by Hypothesis (shrinkable counterexamples). A task whose
input ends inside an open expression may also offer ``generate_in``, which places that expression in a
caller's context (``x = f(`` ... ``)\\n``), so tests can check a circuit beyond the training layouts.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Mapping, Protocol, Sequence, TypeVar

from .draws import record, remember

if TYPE_CHECKING:  # domain imports this module
    from .domain import Domain

T = TypeVar("T")

FeatureValue = int | str | bool


class Sampler(Protocol):
    """The only source of randomness a task generator may use."""

    def integer(self, low: int, high: int) -> int:
        """A uniform integer in [low, high] (both inclusive)."""
        ...

    def choice(self, options: Sequence[T]) -> T:
        """One of ``options``; the first option is the "simplest" (Hypothesis shrinks towards it)."""
        ...

    def boolean(self) -> bool:
        ...


class RandomSampler:
    """A :class:`Sampler` backed by ``random.Random`` (seeded, reproducible)."""

    def __init__(self, seed: int | str | random.Random) -> None:
        self.rng = seed if isinstance(seed, random.Random) else random.Random(seed)

    def integer(self, low: int, high: int) -> int:
        return self.rng.randint(low, high)

    def choice(self, options: Sequence[T]) -> T:
        return options[self.rng.randrange(len(options))]

    def boolean(self) -> bool:
        return self.rng.random() < 0.5


@dataclass(frozen=True)
class TaskExample:
    """One problem: after reading ``prefix`` the model should prefer ``correct`` over ``wrong``.

    ``suffix`` continues the snippet after the correct answer so that ``full_text`` is plain valid
    Python, which is what training mixes into the corpus. ``positions`` name character indices into
    ``prefix``; ``"answer"`` (the last index, where the answer is read) is always there. A model reads
    them through its tokenizer (engine/task_tokens.py): each answer must be one of its tokens (with
    bytes: one character), a position is the token that holds its character.
    """

    prefix: str
    correct: str
    wrong: str
    suffix: str
    features: Mapping[str, FeatureValue]
    positions: Mapping[str, int]

    @property
    def full_text(self) -> str:
        return self.prefix + self.correct + self.suffix

    @property
    def answer_position(self) -> int:
        return len(self.prefix) - 1


@dataclass(frozen=True)
class Task:
    """A named binary next-token task.

    ``features`` and ``positions`` document (name -> meaning) what every example carries, so specs
    can condition claims on them and tools can list them.
    """

    name: str
    description: str
    generate: Callable[[Sampler], TaskExample]
    features: Mapping[str, str]
    positions: Mapping[str, str]
    answers: str = ""  # human summary of the answer pair, e.g. "'\"' vs \"'\""
    tags: tuple[str, ...] = field(default_factory=tuple)
    # (sampler, before, after): the same input with its open expression written after ``before`` and
    # closed by ``after``; None when the task's input cannot sit in a caller's context
    generate_in: Callable[[Sampler, str, str], TaskExample] | None = None
    # (sampler, input, feature): a partner of the input that differs in the feature (or None), for a task
    # that knows better than the generic search (.counterfactual) how to make one; None: the search alone
    counterfactual: Callable[[Sampler, TaskExample, str], TaskExample | None] | None = None
    # finite input sets a proof can cover (.domain.Domain), each with the feature values its inputs share
    domains: tuple["Domain", ...] = ()

    def example(self, sampler: Sampler) -> TaskExample:
        """One input; its choices are recorded (:func:`.draws.draws_of`), so a partner can be made from it."""
        example, draws = record(self.generate, sampler)
        check_example(self, example)
        return remember(example, draws)

    def example_in(self, sampler: Sampler, before: str, after: str) -> TaskExample:
        """One input placed in a context: ``before`` precedes its open expression, ``after`` closes it."""
        if self.generate_in is None:
            raise ContextNotSupportedError(self.name)
        generate_in = self.generate_in
        example, draws = record(lambda s: generate_in(s, before, after), sampler)
        check_example(self, example)
        return remember(example, draws)

    def sample(self, n: int, seed: int | str) -> list[TaskExample]:
        """``n`` examples drawn from a sampler seeded by (task name, seed)."""
        sampler = RandomSampler(f"{self.name}:{seed}")
        return [self.example(sampler) for _ in range(n)]


class ContextNotSupportedError(ValueError):
    """A context was given for a task without ``generate_in``; the message names the tasks that have one."""

    def __init__(self, task: str) -> None:
        from .registry import all_tasks  # the registry imports this module

        self.task = task
        self.supported = [t.name for t in all_tasks() if t.generate_in is not None]
        names = ", ".join(self.supported) or "none"
        super().__init__(f"task {task!r} cannot be placed in a context; tasks that can: {names}")


def check_example(task: Task, example: TaskExample) -> None:
    """Generators are user code too: fail loudly on a malformed example, never silently."""
    problems = []
    if not example.prefix:
        problems.append("empty prefix")
    if not example.prefix.isascii() or not (example.correct + example.wrong + example.suffix).isascii():
        problems.append("non-ASCII text (positions are byte indices)")
    if not example.correct or not example.wrong:  # one token each: checked against the model's tokenizer
        problems.append("empty answer")
    if example.correct == example.wrong:
        problems.append("correct and wrong answers are equal")
    if example.positions.get("answer") != len(example.prefix) - 1:
        problems.append("positions['answer'] must be len(prefix) - 1")
    for name, index in example.positions.items():
        if not 0 <= index < len(example.prefix):
            problems.append(f"position {name!r}={index} outside the prefix")
    missing = set(task.features) - set(example.features)
    if missing:
        problems.append(f"missing features {sorted(missing)}")
    missing_pos = set(task.positions) - set(example.positions)
    if missing_pos:
        problems.append(f"missing positions {sorted(missing_pos)}")
    if problems:
        raise ValueError(f"task {task.name!r} produced a bad example ({'; '.join(problems)}): {example.prefix!r}")
