"""Per-node activations of the full model on a seeded sample of the task, split by one task feature.

A box should say what its node does on real inputs, not only where it sits: the picture shows each
node's activation at the answer position (mean and spread), separately for each value of the task
feature the spec's claims talk about, so "fires on double quotes" is visible at a glance.
"""

from __future__ import annotations

import difflib
from collections import Counter
from dataclasses import dataclass

import numpy as np
import torch

from ..engine.batch import encode_for
from ..engine.errors import UsageError
from ..engine.naming import NodeName
from ..engine.tasks import Task, TaskExample
from ..lang.resolve import ResolvedSpec
from .picture import Split, UnitStats, ValueStats

MAX_SPLIT_VALUES = 8  # more values than this would not fit a box; such features are not split on
NO_SPLIT = "none"


@dataclass(frozen=True)
class Activations:
    """Each recorded node's activation per input ([n]) and the split value index of every input."""

    split: Split
    group: np.ndarray  # [n] index into split.values (all 0 when unsplit)
    values: dict[NodeName, np.ndarray]

    def value_stats(self, x: np.ndarray) -> tuple[ValueStats, ...]:
        out = []
        for g in range(len(self.split.labels)):
            part = x[self.group == g]
            if part.size == 0:
                out.append(ValueStats(0.0, 0.0, 0.0, 0.0))
                continue
            out.append(ValueStats(float(part.mean()), float(part.std()), float(part.min()), float(part.max())))
        return tuple(out)

    def delta(self, x: np.ndarray) -> float:
        """Mean at the last split value minus mean at the first (the plain mean when unsplit)."""
        if len(self.split.labels) < 2:
            return float(x.mean())
        last, first = x[self.group == len(self.split.labels) - 1], x[self.group == 0]
        if last.size == 0 or first.size == 0:
            return 0.0
        return float(last.mean() - first.mean())

    def unit_stats(self, members: tuple[NodeName, ...]) -> UnitStats | None:
        if any(m not in self.values for m in members):
            return None
        if len(members) == 1:
            return UnitStats(self.value_stats(self.values[members[0]]))
        stacked = np.stack([self.values[m] for m in members])  # [members, n]
        rms = np.sqrt((stacked ** 2).mean(0))
        return UnitStats(self.value_stats(rms), tuple((m, self.delta(self.values[m])) for m in members),
                         "rms over members")


def choose_feature(resolved: ResolvedSpec, requested: str | None) -> str | None:
    """The feature to split by: the one asked for (``none`` for no split), else the feature the spec's
    claims condition on most often, else the task's first feature."""
    task = resolved.task
    if requested == NO_SPLIT:
        return None
    if requested is not None:
        if requested not in task.features:
            close = difflib.get_close_matches(requested, list(task.features), n=1)
            hint = f"did you mean {close[0]!r}?" if close else f"features of {task.name}: {', '.join(task.features)} (or '{NO_SPLIT}')"
            raise UsageError(f"task {task.name!r} has no feature {requested!r}", hint=hint)
        return requested
    used = Counter(c.feature for claim in resolved.spec.claims for c in claim.conditions if c.feature in task.features)
    if used:
        order = list(task.features)
        return max(used, key=lambda f: (used[f], -order.index(f)))
    return next(iter(task.features), None)


def _sort_key(value) -> tuple:
    return (type(value).__name__, value)


def _label(value) -> str:
    return repr(value) if isinstance(value, str) else str(value)


def sample(task: Task, n: int, seed: int) -> list[TaskExample]:
    """The inputs the picture is measured on: seeded, and apart from the ones verify draws."""
    return task.sample(n, f"show:{seed}")


def measure(resolved: ResolvedSpec, examples: list[TaskExample], nodes: list[NodeName], seed: int,
            feature: str | None, device: str = "cpu", explicit_feature: bool = False) -> Activations:
    """Run the full model on ``examples`` and record ``nodes`` at the answer position."""
    n = len(examples)
    values = sorted({ex.features[feature] for ex in examples}, key=_sort_key) if feature else []
    if len(values) > MAX_SPLIT_VALUES:
        if explicit_feature:
            raise UsageError(f"feature {feature!r} takes {len(values)} values on this sample; at most {MAX_SPLIT_VALUES} fit a box",
                             hint=f"choose another feature with --split, or --split {NO_SPLIT}")
        feature, values = None, []
    if feature:
        index = {v: i for i, v in enumerate(values)}
        group = np.array([index[ex.features[feature]] for ex in examples])
        counts = tuple(int((group == i).sum()) for i in range(len(values)))
        split = Split(feature, tuple(values), tuple(_label(v) for v in values), counts, n, seed)
    else:
        group = np.zeros(n, dtype=int)
        split = Split(None, (), ("all inputs",), (n,), n, seed)

    model = resolved.context.model
    batch = encode_for(model, examples, resolved.task.name).to(device)
    hooks = sorted({node.hook for node in nodes})
    rows = torch.arange(len(examples), device=device)
    with torch.no_grad():
        _, cache = model.run_with_cache(batch.tokens, hooks)
    at_answer = {hook: cache[hook][rows, batch.answer_pos].float().cpu() for hook in hooks}
    recorded = {}
    for node in nodes:
        act = at_answer[node.hook]
        column = act[:, node.head, node.index] if node.head is not None else act[:, node.index]
        recorded[node] = column.numpy().astype(np.float64)
    return Activations(split, group, recorded)
