"""Random circuits of a given size, connected like real ones: unions of random input -> output paths.

A random set of channels would mostly be disconnected and trivially unfaithful, which makes any
circuit look good; paths from token embeddings to logits through the model's non-zero weights give
baselines that could carry information, so beating them means something.
"""

from __future__ import annotations

import math
import random
import weakref
from dataclasses import dataclass, field

import networkx as nx
import numpy as np
import torch

from ..engine.graph import walk_tables
from ..engine.masks import Mask, MaskSpace
from ..engine.model import Transformer
from ..engine.naming import NodeName, parse_node_name

_MASKABLE = {"resid", "q", "k", "v", "z", "mlp"}


def random_path(successors: dict[str, list[str]], kinds: dict[str, str], rng: random.Random, starts: list[str],
                max_steps: int = 64) -> list[str]:
    """Maskable nodes on one random walk from a token node along out-edges until the logits."""
    node = rng.choice(starts)
    path = []
    for _ in range(max_steps):
        options = successors[node]
        if not options:
            break
        node = options[rng.randrange(len(options))]
        kind = kinds[node]
        if kind == "logits":
            break
        if kind in _MASKABLE:
            path.append(node)
    return path


_STOP, _KEEP, _PASS = 0, 1, 2  # what a walk does on reaching a node: end (logits), record it (maskable), go on


def _walk(steps: dict[str, tuple[tuple[str, ...], tuple[int, ...]]], randbelow, starts: list[str],
          max_steps: int = 64) -> list[str]:
    """:func:`random_path` on precomputed successor tables, drawing the same numbers: ``randbelow`` is the
    generator's ``_randbelow``, which ``choice`` and ``randrange(n)`` call with these arguments."""
    node = starts[randbelow(len(starts))]
    path = []
    for _ in range(max_steps):
        options, codes = steps[node]
        if not options:
            break
        i = randbelow(len(options))
        node, code = options[i], codes[i]
        if code == _STOP:
            break
        if code == _KEEP:
            path.append(node)
    return path


@dataclass
class _Walks:
    """What the random walks read from a graph, built once per graph (and rebuilt if it grows)."""

    size: tuple  # the source's fingerprint when they were built
    starts: list[str]
    successors: dict[str, list[str]]
    kinds: dict[str, str]
    steps: dict[str, tuple[tuple[str, ...], tuple[int, ...]]]  # node -> (successors, what each one is)
    positions: dict[tuple, dict[str, tuple[str, int]]] = field(default_factory=dict)  # space -> node -> (hook, flat index)


_WALKS: "weakref.WeakKeyDictionary[object, _Walks]" = weakref.WeakKeyDictionary()


def _fingerprint(source: "nx.DiGraph | Transformer") -> tuple:
    """What changes when a graph grows or a model's weights are written to (in place or replaced)."""
    if isinstance(source, nx.DiGraph):
        return (source.number_of_nodes(), source.number_of_edges())
    return tuple((id(p), p._version) for p in source.weight_matrices().values())


def _walks(source: "nx.DiGraph | Transformer") -> _Walks:
    """The walk tables of a model's graph (:func:`~..engine.graph.build_graph`), read from the graph or,
    for a model, straight from its weights (:func:`~..engine.graph.walk_tables`: the same tables)."""
    size = _fingerprint(source)
    walks = _WALKS.get(source)
    if walks is None or walks.size != size:
        if isinstance(source, nx.DiGraph):
            successors = {n: list(source.successors(n)) for n in source.nodes}
            kinds = {n: d["kind"] for n, d in source.nodes(data=True)}
        else:
            successors, kinds = walk_tables(source)
        code = {n: _STOP if k == "logits" else _KEEP if k in _MASKABLE else _PASS for n, k in kinds.items()}
        steps = {n: (tuple(out), tuple(code[m] for m in out)) for n, out in successors.items()}
        walks = _Walks(size, sorted(n for n, k in kinds.items() if k == "tokens" and successors[n]),
                       successors, kinds, steps)
        _WALKS[source] = walks
    return walks


def _flat_position(space: MaskSpace, name: NodeName) -> tuple[str, int]:
    """(hook, flat index into its node mask) of a node, as :meth:`Mask.from_nodes` places it."""
    hook, index = space.node_position(name)
    return hook, int(np.ravel_multi_index(index, space.node_shapes[hook]))


def _draws_like_choice() -> bool:
    """Whether ``Random._randbelow`` is what ``choice`` and ``randrange(n)`` draw with (CPython 3.11-3.13)."""
    a, b = random.Random(1), random.Random(1)
    seq = list(range(7))
    if not hasattr(b, "_randbelow"):
        return False
    return ([a.choice(seq) for _ in range(50)] + [a.randrange(n) for n in range(1, 50)]
            == [seq[b._randbelow(7)] for _ in range(50)] + [b._randbelow(n) for n in range(1, 50)])


_SAME_DRAWS = _draws_like_choice()


def random_circuits(source: "nx.DiGraph | Transformer", space: MaskSpace, size: int, count: int, seed: int) -> list[Mask]:
    """``count`` circuits of exactly ``size`` channels each (node masks, every weight kept; the circuits
    share one set of all-True edge masks, which masks never change in place), walked on the graph of
    ``source``: a model's graph, or the model itself (the same circuits, without building the graph)."""
    rng = random.Random(f"baselines:{seed}:{size}")
    walks = _walks(source)
    # The walks draw from the generator exactly as random_path would (rng.choice, rng.randrange), through
    # the method those two call, when it is there: the same circuits for the same seed, 3-4x faster.
    randbelow = rng._randbelow if _SAME_DRAWS else None
    positions = walks.positions.setdefault((space.n_layers, tuple(space.node_shapes.items())), {})
    total = sum(math.prod(s) for s in space.node_shapes.values())
    size = max(1, min(size, total))
    edges = {p: torch.ones(s, dtype=torch.bool) for p, s in space.edge_shapes.items()}
    circuits = []
    for _ in range(count):
        chosen: dict[str, None] = {}
        stalls = 0
        while len(chosen) < size and stalls < 1000:
            before = len(chosen)
            path = (_walk(walks.steps, randbelow, walks.starts) if randbelow is not None
                    else random_path(walks.successors, walks.kinds, rng, walks.starts))
            for node in path:
                chosen.setdefault(node)
                if len(chosen) == size:
                    break
            stalls = stalls + 1 if len(chosen) == before else 0
        flat: dict[str, list[int]] = {h: [] for h in space.node_shapes}
        for node in chosen:
            if node not in positions:
                positions[node] = _flat_position(space, parse_node_name(node))
            hook, index = positions[node]
            flat[hook].append(index)
        if len(chosen) < size:  # the reachable part of the graph is smaller than the circuit: pad randomly
            pool = [n for n in Mask.full(space).node_names() if str(n) not in chosen]
            for name in rng.sample(pool, size - len(chosen)):
                hook, index = _flat_position(space, name)
                flat[hook].append(index)
        nodes = {}
        for hook, shape in space.node_shapes.items():
            t = torch.zeros(math.prod(shape), dtype=torch.bool)
            t[flat[hook]] = True
            nodes[hook] = t.view(shape)
        circuits.append(Mask(space, nodes, edges))
    return circuits
