"""Task inputs for a claim: seeded samples, filtered by the claim's `when` conditions."""

from __future__ import annotations

import operator
from collections import OrderedDict
from typing import Callable, Sequence

from ..engine.tasks import RandomSampler, Task, TaskExample
from ..lang import ast

#: Comparison operators of the language; they work on numbers and on Z3 terms alike.
COMPARISONS = {">=": operator.ge, "<=": operator.le, "==": operator.eq, "!=": operator.ne, ">": operator.gt, "<": operator.lt}


def compare(left, op: str, right) -> bool:
    try:
        return bool(COMPARISONS[op](left, right))
    except TypeError:  # e.g. a string feature compared with a number: never true
        return False


def satisfies(example: TaskExample, conditions: Sequence[ast.Condition]) -> bool:
    return all(compare(example.features[c.feature], c.op, c.value) for c in conditions)


class _Stream:
    """The inputs a task's sampler for one seed draws, in order, generated once and read many times:
    the claim groups of a spec (and specs of one task) draw from the same seeded stream and differ
    only in which inputs they keep."""

    def __init__(self, task: Task, seed: int | str) -> None:
        self.task = task
        self.sampler = RandomSampler(f"{task.name}:verify:{seed}")
        self.drawn: list[TaskExample] = []

    def __getitem__(self, i: int) -> TaskExample:
        while len(self.drawn) <= i:
            self.drawn.append(self.task.example(self.sampler))
        return self.drawn[i]


#: Streams kept, most recently used last (each holds at most what its largest reader drew).
_STREAMS: "OrderedDict[tuple[int, str], _Stream]" = OrderedDict()
_STREAMS_KEPT = 16


def _stream(task: Task, seed: int | str) -> _Stream:
    key = (id(task), repr(seed))
    stream = _STREAMS.get(key)
    if stream is None or stream.task is not task:
        stream = _STREAMS[key] = _Stream(task, seed)
        while len(_STREAMS) > _STREAMS_KEPT:
            _STREAMS.popitem(last=False)
    _STREAMS.move_to_end(key)
    return stream


def sample_examples(task: Task, n: int, seed: int | str, conditions: Sequence[ast.Condition] = (),
                    max_draws_per_example: int = 50, keep: Callable[[TaskExample], bool] | None = None
                    ) -> list[TaskExample]:
    """Up to ``n`` examples satisfying ``conditions`` (and ``keep``, when given), drawn from a sampler
    seeded by (task, seed); fewer only when they are rarely (or never) met within the draw budget."""
    stream = _stream(task, seed)
    out: list[TaskExample] = []
    for i in range(n * max_draws_per_example):
        example = stream[i]
        if satisfies(example, conditions) and (keep is None or keep(example)):
            out.append(example)
            if len(out) == n:
                break
    return out
