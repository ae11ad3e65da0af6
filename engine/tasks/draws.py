"""The choices a generator made for one input, kept so that it can be re-run with a few of them changed.

Every random choice of a task generator goes through a :class:`~.base.Sampler`. A :class:`RecordingSampler`
passes the choices of another sampler through and logs each one as a whole number in a range (an
integer's value, a choice's index, a boolean's 0 or 1); a :class:`ReplaySampler` runs a generator again
on the logged numbers with some of them replaced. That is how a counterfactual partner is found
(:mod:`.counterfactual`) without any task saying how its inputs are built.

:meth:`~.base.Task.example` records every input it makes; :func:`draws_of` gives an input's record back
(``None`` for an input built by hand or read from a file). The record is kept beside the input rather than
in it, so a :class:`~.base.TaskExample` keeps its fields, its equality and its JSON form.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Literal, NamedTuple, Sequence, TypeVar

if TYPE_CHECKING:  # base imports this module
    from .base import Sampler, TaskExample

T = TypeVar("T")

DrawKind = Literal["integer", "choice", "boolean"]


class Draw(NamedTuple):
    """One choice as a whole number in ``[low, high]``: an integer's value, a choice's index, a boolean's 0/1.
    (A named tuple: a generator makes a dozen choices per input, and every input is recorded.)"""

    kind: DrawKind
    value: int
    low: int
    high: int

    def alternatives(self) -> range:
        """Every value this choice could have taken (its own included)."""
        return range(self.low, self.high + 1)


@dataclass(frozen=True)
class Draws:
    """An input's choices, in the order the generator made them, and the generator that made them
    (its context bound, for an input placed in one)."""

    draws: tuple[Draw, ...]
    generate: Callable[["Sampler"], "TaskExample"]
    # partners found for this input, by (feature, seed): a search is done once however often it is asked for
    partners: dict[tuple[str, str], "TaskExample | None"] = field(default_factory=dict, compare=False, repr=False)


def _index(options: Sequence[T], value: T) -> int:
    """The position of the option a sampler returned: by identity first (pools hold functions and
    repeat them, e.g. ``(identifier, identifier, attribute)``), then by equality."""
    for i, option in enumerate(options):
        if option is value:
            return i
    return list(options).index(value)


class RecordingSampler:
    """Passes another sampler's choices through and logs them (the choices themselves are unchanged, so a
    seeded input is the same input whether or not it is recorded)."""

    def __init__(self, inner: "Sampler") -> None:
        self.inner = inner
        self.log: list[Draw] = []

    def integer(self, low: int, high: int) -> int:
        value = self.inner.integer(low, high)
        self.log.append(Draw("integer", value, low, high))
        return value

    def choice(self, options: Sequence[T]) -> T:
        value = self.inner.choice(options)
        self.log.append(Draw("choice", _index(options, value), 0, len(options) - 1))
        return value

    def boolean(self) -> bool:
        value = self.inner.boolean()
        self.log.append(Draw("boolean", int(value), 0, 1))
        return value


class ReplaySampler:
    """Makes the logged choices again, with ``changes`` (index in the log -> value) in place of some.

    After a change the generator may ask for other choices than it did (another branch, a pool of another
    size); a logged value that does not fit the choice asked for, and every choice past the end of the
    log, comes from ``fallback`` instead, and ``diverged`` counts them.
    """

    def __init__(self, draws: Sequence[Draw], changes: dict[int, int], fallback: "Sampler") -> None:
        self.draws, self.changes, self.fallback = draws, changes, fallback
        self.position = 0
        self.diverged = 0

    def _logged(self, kind: DrawKind, low: int, high: int) -> int | None:
        i = self.position
        self.position += 1
        if i >= len(self.draws) or self.draws[i].kind != kind:
            self.diverged += 1
            return None
        value = self.changes.get(i, self.draws[i].value)
        if not low <= value <= high:
            self.diverged += 1
            return None
        return value

    def integer(self, low: int, high: int) -> int:
        value = self._logged("integer", low, high)
        return self.fallback.integer(low, high) if value is None else value

    def choice(self, options: Sequence[T]) -> T:
        index = self._logged("choice", 0, len(options) - 1)
        return self.fallback.choice(options) if index is None else options[index]

    def boolean(self) -> bool:
        value = self._logged("boolean", 0, 1)
        return self.fallback.boolean() if value is None else bool(value)


def record(generate: Callable[["Sampler"], "TaskExample"], sampler: "Sampler") -> tuple["TaskExample", Draws]:
    """Run ``generate`` on ``sampler`` and return the input with its record."""
    recorder = RecordingSampler(sampler)
    example = generate(recorder)
    return example, Draws(tuple(recorder.log), generate)


# Records by the id of the input they belong to, each with a weak reference to that input whose callback
# drops the entry when the input is collected (before its id can be reused).
_RECORDS: dict[int, tuple[weakref.ref, Draws]] = {}


def _forget(key: int) -> Callable[[weakref.ref], None]:
    return lambda _: _RECORDS.pop(key, None)


def remember(example: "TaskExample", draws: Draws) -> "TaskExample":
    """Keep ``draws`` as the record of ``example`` for as long as the input lives; returns the input."""
    key = id(example)
    _RECORDS[key] = (weakref.ref(example, _forget(key)), draws)
    return example


def draws_of(example: "TaskExample") -> Draws | None:
    """The record of an input a task generated (:meth:`~.base.Task.example`), or None."""
    entry = _RECORDS.get(id(example))
    return entry[1] if entry is not None and entry[0]() is example else None
