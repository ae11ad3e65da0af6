"""Verify one resolved spec: group its claims, run each group's conditions once, judge every claim."""

from __future__ import annotations

from typing import Callable

from ..lang.resolve import ResolvedClaim, ResolvedSpec
from .judge import ClaimResult, judge
from .runner import RunCache, RunSettings, group_key, run_group


def claim_groups(resolved: ResolvedSpec) -> list[list[ResolvedClaim]]:
    """Claims that can share inputs and one batched run (same ablation, conditions, samples, metric)."""
    groups: dict[tuple, list[ResolvedClaim]] = {}
    for claim in resolved.claims:
        groups.setdefault(group_key(claim), []).append(claim)
    return list(groups.values())


def verify_spec(resolved: ResolvedSpec, settings: RunSettings, advance: Callable[[], None] = lambda: None,
                cache: RunCache | None = None) -> list[ClaimResult]:
    """One result per claim, in the spec's order. The groups share what does not change between them
    (references, the full model's run of the same inputs, random baseline circuits: :class:`RunCache`);
    ``cache``: one shared with other specs of the same model object (:func:`shared_cache`)."""
    results: dict[int, ClaimResult] = {}
    cache = RunCache() if cache is None else cache
    for group in claim_groups(resolved):
        data = run_group(resolved, group, settings, advance, cache)
        for claim in group:
            results[id(claim)] = judge(resolved, claim, data, settings)
    return [results[id(c)] for c in resolved.claims]


def shared_cache(caches: dict[int, tuple[object, RunCache]], resolved: ResolvedSpec) -> RunCache:
    """The :class:`RunCache` of the spec's model object in ``caches``, made on first use: everything in it
    is fixed by the model and its key, so specs of one model share it (specs of one task then reuse the
    task-mean references, the full model's logits and the random baseline circuits)."""
    model = resolved.context.model
    entry = caches.get(id(model))
    if entry is None or entry[0] is not model:
        entry = caches[id(model)] = (model, RunCache())
    return entry[1]
