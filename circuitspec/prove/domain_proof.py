"""Prove a behaviour claim for every input of a finite domain, by branch and bound over token boxes.

A behaviour claim ``logit[a] > logit[b] when ...`` of a spec whose task declares a :class:`Domain` with
the claim's feature values is proved, or refuted with an input, on the circuit-alone model (non-circuit
nodes at their ablation constants; real softmax, sink, RMSNorm and ReLUs):

1. The domain's boxes are the roots. A box is bounded by :func:`.intervals.margin_bounds`, which gives a
   lower bound per token of its last position (the answer position). Those tokens whose lower bound is
   positive are proved for every input of the box that ends with them.
2. For the rest, a box is split in two at the earlier position with the largest set (the earliest of
   equals), along the kept
   embedding channel on which its tokens spread most (so each half holds tokens the circuit reads
   alike), and both halves are bounded again.
3. A box whose earlier positions are single tokens is one input per remaining last token: an upper bound
   below zero refutes the claim there (the input is run through the ablation engine to confirm); a
   bound straddling zero by no more than rounding leaves it unknown.

The tree of boxes, each node's proved tokens with their lower bounds, and each split is the
certificate (:func:`certificate`), which :mod:`.certificate_check` re-verifies independently.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import torch

from ..engine.tasks.domain import Domain
from .intervals import CircuitWeights, margin_bounds

#: Boxes bounded in one batch (boxes of one length).
BATCH = 64
CERTIFICATE_FORMAT = "circuitspec-domain-proof/1"


@dataclass
class ProofNode:
    """A box of the search: its token sets, the last-position tokens proved at it (with their lower
    bounds), and where the rest was split (``split`` position, two children) or why not."""

    sets: list[list[int]]
    proved: list[int] = field(default_factory=list)
    bounds: list[float] = field(default_factory=list)
    split: int | None = None
    children: list["ProofNode"] = field(default_factory=list)

    def size(self) -> int:
        return math.prod(len(s) for s in self.sets)


@dataclass
class DomainProof:
    status: str  # "proved", "refuted" or "unknown"
    domain: Domain
    seconds: float = 0.0
    boxes_bounded: int = 0
    proved_inputs: int = 0  # inputs of the domain covered by proved boxes when the search stopped
    least_bound: float = math.inf  # the smallest lower bound of a proved box (the proof's tightest margin)
    counterexample: dict | None = None  # refuted: {"input": text, "margin": exact bound, "engine": float32 run}
    note: str = ""
    roots: list[ProofNode] = field(default_factory=list)


def _split(sets: list[list[int]], rest: list[int], cw: CircuitWeights) -> tuple[int, list[list[list[int]]]]:
    """Halve the largest earlier set (the earliest of equals: on closing_quote's assign_double that needs
    19,025 boxes where the latest needs 21,125) along the kept embedding channel on which its
    tokens differ most; the last position keeps only the tokens still to prove."""
    sizes = [len(s) for s in sets[:-1]]
    p = max(range(len(sizes)), key=lambda i: (sizes[i], -i))
    tokens = sets[p]
    kept = cw.W_E[tokens][:, cw.keep["blocks.0.hook_resid_pre"]]
    spread = kept.amax(0) - kept.amin(0) if kept.shape[1] else torch.zeros(1)
    key = kept[:, int(spread.argmax())] if kept.shape[1] else torch.arange(len(tokens), dtype=torch.float64)
    order = key.argsort(stable=True).tolist()
    half = len(tokens) // 2
    parts = [sorted(tokens[i] for i in order[:half]), sorted(tokens[i] for i in order[half:])]
    return p, [sets[:p] + [part] + sets[p + 1:-1] + [rest] for part in parts]


def prove_over_domain(cw: CircuitWeights, domain: Domain, boxes: list[list[list[int]]], direction: torch.Tensor,
                      offset: float, deadline: float, confirm=None, progress=None) -> DomainProof:
    """Branch and bound over ``boxes`` (the domain as token sets) for ``direction · ln_final(resid) + offset > 0``
    at the last position (:meth:`.intervals.CircuitWeights.margin_direction` makes them for a logit difference).

    ``confirm(tokens) -> float``: the engine's margin on one input, to report beside a counterexample.
    Stops at ``deadline`` (time.monotonic()) with "unknown" and the share proved so far. ``progress(proved,
    size)`` is called after each batch of boxes."""
    started = time.monotonic()
    size = domain.size()
    result = DomainProof("proved", domain)
    result.roots = [ProofNode([sorted(set(s)) for s in box]) for box in boxes]
    todo = list(reversed(result.roots))
    while todo:
        if time.monotonic() > deadline:
            result.status = "unknown"
            result.note = (f"time ran out with {result.proved_inputs:,} of {size:,} inputs proved "
                           f"({result.boxes_bounded:,} boxes bounded)")
            break
        length = len(todo[-1].sets)
        batch = []
        while todo and len(batch) < BATCH and len(todo[-1].sets) == length:
            batch.append(todo.pop())
        bounds = margin_bounds(cw, [node.sets for node in batch], direction, offset)
        result.boxes_bounded += len(batch)
        for node, box in zip(batch, bounds):
            rest = []
            for token, lo, hi in zip(node.sets[-1], box.lo.tolist(), box.hi.tolist()):
                if lo > 0:
                    node.proved.append(token)
                    node.bounds.append(lo)
                else:
                    rest.append((token, lo, hi))
            if node.proved:
                result.least_bound = min(result.least_bound, min(node.bounds))
                result.proved_inputs += math.prod(len(s) for s in node.sets[:-1]) * len(node.proved)
            if not rest:
                continue
            if all(len(s) == 1 for s in node.sets[:-1]):
                token, lo, hi = min(rest, key=lambda r: r[2])
                tokens = [s[0] for s in node.sets[:-1]] + [token]
                result.counterexample = {"tokens": tokens, "margin_bounds": [lo, hi],
                                         "engine_margin": confirm(tokens) if confirm else None}
                if hi < 0:
                    result.status = "refuted"
                    result.note = "the circuit alone breaks the claim on an input of the domain"
                else:
                    result.status = "unknown"
                    result.note = f"on one input the margin is within rounding of 0 ([{lo:.3g}, {hi:.3g}])"
                return _finish(result, started)
            node.split, child_sets = _split(node.sets, [r[0] for r in rest], cw)
            node.children = [ProofNode(sets) for sets in child_sets]
            todo.extend(reversed(node.children))
        if progress is not None:
            progress(result.proved_inputs, size)
    return _finish(result, started)


def _finish(result: DomainProof, started: float) -> DomainProof:
    result.seconds = time.monotonic() - started
    return result


def tree_nodes(roots: list[ProofNode]) -> list[ProofNode]:
    out, todo = [], list(reversed(roots))
    while todo:
        node = todo.pop()
        out.append(node)
        todo.extend(reversed(node.children))
    return out


def certificate(proof: DomainProof, cw: CircuitWeights, meta: dict, a: int, b: int) -> dict:
    """Everything an independent check needs besides the weights: the claim, the domain, the circuit
    (kept channels) and its ablation constants, and the tree (nodes in depth-first order; a node's
    children follow it)."""
    nodes = tree_nodes(proof.roots)
    index = {id(n): i for i, n in enumerate(nodes)}
    return {
        "format": CERTIFICATE_FORMAT,
        **meta,
        "claim_tokens": [a, b],
        "domain": proof.domain.to_json(),
        "status": proof.status,
        "kept": {h: t.nonzero().tolist() for h, t in cw.keep.items()},
        "constants": {h: t.tolist() for h, t in cw.ref.items()},
        "roots": [index[id(r)] for r in proof.roots],
        "nodes": [{"sets": n.sets, "proved": n.proved, "bounds": n.bounds, "split": n.split,
                   "children": [index[id(c)] for c in n.children]} for n in nodes],
    }
