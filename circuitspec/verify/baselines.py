"""Random circuits of a given size, connected like real ones: unions of random input -> output paths.

A random set of channels would mostly be disconnected and trivially unfaithful, which makes any
circuit look good; paths from token embeddings to logits through the model's non-zero weights give
baselines that could carry information, so beating them means something.
"""

from __future__ import annotations

import math
import random

import networkx as nx

from ..engine.masks import Mask, MaskSpace
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


def random_circuits(graph: nx.DiGraph, space: MaskSpace, size: int, count: int, seed: int) -> list[Mask]:
    """``count`` circuits of exactly ``size`` channels each (node masks, every weight kept)."""
    rng = random.Random(f"baselines:{seed}:{size}")
    starts = sorted(n for n, d in graph.nodes(data=True) if d["kind"] == "tokens" and graph.out_degree(n))
    successors = {n: list(graph.successors(n)) for n in graph.nodes}
    kinds = {n: d["kind"] for n, d in graph.nodes(data=True)}
    parsed: dict[str, NodeName] = {}
    total = sum(math.prod(s) for s in space.node_shapes.values())
    size = max(1, min(size, total))
    circuits = []
    for _ in range(count):
        chosen: dict[str, None] = {}
        stalls = 0
        while len(chosen) < size and stalls < 1000:
            before = len(chosen)
            for node in random_path(successors, kinds, rng, starts):
                chosen.setdefault(node)
                if len(chosen) == size:
                    break
            stalls = stalls + 1 if len(chosen) == before else 0
        names = [parsed[n] if n in parsed else parsed.setdefault(n, parse_node_name(n)) for n in chosen]
        if len(names) < size:  # the reachable part of the graph is smaller than the circuit: pad randomly
            pool = [n for n in Mask.full(space).node_names() if str(n) not in chosen]
            names += rng.sample(pool, size - len(names))
        circuits.append(Mask.from_nodes(space, names))
    return circuits
