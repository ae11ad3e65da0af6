"""Task inputs for a claim: seeded samples, filtered by the claim's `when` conditions."""

from __future__ import annotations

import operator
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


def sample_examples(task: Task, n: int, seed: int | str, conditions: Sequence[ast.Condition] = (),
                    max_draws_per_example: int = 50, keep: Callable[[TaskExample], bool] | None = None
                    ) -> list[TaskExample]:
    """Up to ``n`` examples satisfying ``conditions`` (and ``keep``, when given), drawn from a sampler
    seeded by (task, seed); fewer only when they are rarely (or never) met within the draw budget."""
    sampler = RandomSampler(f"{task.name}:verify:{seed}")
    out: list[TaskExample] = []
    for _ in range(n * max_draws_per_example):
        example = task.example(sampler)
        if satisfies(example, conditions) and (keep is None or keep(example)):
            out.append(example)
            if len(out) == n:
                break
    return out
