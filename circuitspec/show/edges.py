"""Which connections the picture draws between its boxes, measured with the model's actual weights.

Three kinds (see :class:`~.picture.Link`):

- ``weight``: the non-zero weights between kept channels that the circuit keeps (engine/graph.py's ``weight``
  edges; an edge-level circuit keeps only its stated ones), summed
  per pair of boxes. A coarse circuit has thousands of such pairs, so only the strongest ``max_edges``
  are drawn; every box first keeps its strongest incoming and outgoing connection, so nothing that is
  connected looks disconnected, and the picture says how many were left out.
- ``declared``: each ``edge a -> b`` of the spec, measured by virtual weights: the sum over the paths
  that resolution accepts (through residual channels, or one head's attention) of the product of the
  weights on them. Norms are ignored and a path through an attention pattern carries no number (the
  pattern mixes positions), so such an edge is drawn at the thinnest width and says so.
- ``structural``: the residual stream's identity between kept residual channels, and a head's value
  (and query/key, through its pattern) channels feeding its output channels.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

import networkx as nx
import numpy as np

from ..lang.resolve import ResolvedSpec
from .picture import Link, Unit

_PASS_THROUGH = {"resid", "pattern"}
_UNWEIGHTED = {"attn_query", "attn_key", "attn_pattern"}


@dataclass
class _Pair:
    strength: float = 0.0
    signed: float = 0.0
    count: int = 0
    top: list = field(default_factory=list)  # (|w|, text) of the strongest few
    sources: set = field(default_factory=set)
    targets: set = field(default_factory=set)


def _fmt(x: float) -> str:
    return f"{x:+.3g}"


def weight_links(graph: nx.DiGraph, units: list[Unit], node_unit: dict[str, str], kept=None) -> list[Link]:
    """Every pair of boxes joined by non-zero weights, with the sum of |w| and the strongest entries.
    ``kept``: the circuit's edge masks (weight name -> bool), so that an edge-level circuit draws only the
    weights it keeps."""
    pairs: dict[tuple[str, str], _Pair] = {}
    for unit in units:
        for member in unit.members:
            for _, v, data in graph.out_edges(str(member), data=True):
                if data["kind"] != "weight" or v not in node_unit:
                    continue
                if kept is not None and not bool(kept[data["param"]][data["entry"]]):
                    continue
                pair = pairs.setdefault((unit.id, node_unit[v]), _Pair())
                w = data["weight"]
                pair.strength += abs(w)
                pair.signed += w
                pair.count += 1
                pair.top.append((abs(w), f"{data['param']}{list(data['entry'])} = {_fmt(w)}  ({member} -> {v})"))
                if len(pair.top) > 12:
                    pair.top = sorted(pair.top, reverse=True)[:3]
    links = []
    for (src, dst), p in sorted(pairs.items()):
        top = "\n".join(text for _, text in sorted(p.top, reverse=True)[:3])
        plural = "s" if p.count > 1 else ""
        note = f"{p.count} non-zero weight{plural}, sum |w| = {p.strength:.3g}, sum w = {_fmt(p.signed)}\nstrongest:\n{top}"
        links.append(Link(src, dst, "weight", p.strength, p.signed, p.count, note))
    return links


def structural_links(graph: nx.DiGraph, units: list[Unit], node_unit: dict[str, str]) -> list[Link]:
    """Residual identities and within-head value/query/key -> output connections between shown boxes."""
    pairs: dict[tuple[str, str, str], _Pair] = {}

    def add(src_unit: str, src: str, dst: str, how: str) -> None:
        pair = pairs.setdefault((src_unit, node_unit[dst], how), _Pair())
        pair.count += 1
        pair.sources.add(src)
        pair.targets.add(dst)

    for unit in units:
        for member in unit.members:
            u = str(member)
            for _, v, data in graph.out_edges(u, data=True):
                kind = data["kind"]
                if kind in ("residual", "attn_value") and v in node_unit:
                    add(unit.id, u, v, kind)
                elif kind in ("attn_query", "attn_key"):
                    for _, z, _ in graph.out_edges(v, data=True):
                        if z in node_unit:
                            add(unit.id, u, z, kind)
    text = {"residual": "residual stream: the same channel, carried unchanged to the next stage",
            "attn_value": "value channel -> the same output channel of its head (weighted by the attention pattern)",
            "attn_query": "query channels -> the head's attention pattern -> its output channels",
            "attn_key": "key channels -> the head's attention pattern -> its output channels"}
    links = []
    for (src, dst, how), p in sorted(pairs.items()):
        note = f"{text[how]}\n{len(p.sources)} source and {len(p.targets)} target channels"
        links.append(Link(src, dst, "structural", 0.0, 0.0, p.count, note))
    return links


def virtual_weights(graph: nx.DiGraph, sources: list[str], targets: set[str]) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """For each target reached from ``sources`` the way resolution connects an edge (through residual
    channels or one head's pattern): the summed products of weights per source (structural steps
    count 1; pattern steps contribute nothing), and which sources reach it through a pattern."""
    n = len(sources)
    source_set = set(sources)
    reach: set[str] = set()
    frontier = deque(sources)
    while frontier:  # the pass-through nodes on the way
        u = frontier.popleft()
        for _, v in graph.out_edges(u):
            if v in targets or v in source_set or v in reach or graph.nodes[v]["kind"] not in _PASS_THROUGH:
                continue
            reach.add(v)
            frontier.append(v)
    pending = {v: sum(1 for u, _ in graph.in_edges(v) if u in reach or u in source_set) for v in reach}
    value = {}
    for i, s in enumerate(sources):
        value[s] = np.zeros(n)
        value[s][i] = 1.0
    via_pattern = {s: np.zeros(n, dtype=bool) for s in sources}
    out_value: dict[str, np.ndarray] = {}
    out_pattern: dict[str, np.ndarray] = {}
    queue = deque(sources)
    while queue:  # topological order over the DAG of pass-through nodes
        u = queue.popleft()
        for _, v, data in graph.out_edges(u, data=True):
            if v not in targets and v not in reach:
                continue
            unweighted = data["kind"] in _UNWEIGHTED
            w = data.get("weight", 1.0)
            contribution = np.zeros(n) if unweighted else value[u] * w
            flags = via_pattern[u] | (value[u] != 0) if unweighted else via_pattern[u]
            if v in targets:
                out_value[v] = out_value.get(v, np.zeros(n)) + contribution
                out_pattern[v] = out_pattern.get(v, np.zeros(n, dtype=bool)) | flags
                continue
            value[v] = value.get(v, np.zeros(n)) + contribution
            via_pattern[v] = via_pattern.get(v, np.zeros(n, dtype=bool)) | flags
            pending[v] -= 1
            if pending[v] == 0:
                queue.append(v)
    return out_value, out_pattern


def declared_links(resolved: ResolvedSpec, member_nodes, node_unit: dict[str, str]) -> list[Link]:
    """One link per pair of boxes that an ``edge`` statement of the spec connects."""
    graph = resolved.context.graph
    pairs_of_statements = [pair for stmt in resolved.spec.edges for pair in stmt.pairs()]
    links = []
    for (a, b), edge in zip(pairs_of_statements, resolved.edges):
        sources = [str(n) for n in member_nodes(a)]
        targets = {str(n) for n in member_nodes(b)}
        values, patterns = virtual_weights(graph, sources, targets)
        pairs: dict[tuple[str, str], _Pair] = {}
        hidden = set()
        for t in sorted(values):
            if t not in node_unit:
                hidden.add(t)
                continue
            for i, s in enumerate(sources):
                if s not in node_unit or (values[t][i] == 0 and not patterns[t][i]):
                    continue
                pair = pairs.setdefault((node_unit[s], node_unit[t]), _Pair())
                pair.strength += abs(values[t][i])
                pair.signed += values[t][i]
                pair.count += 1
                if patterns[t][i]:
                    pair.sources.add(s)
        where = f"{Path(edge.span.file).name}:{edge.span.line}"
        for (src, dst), p in sorted(pairs.items()):
            lines = [f"`edge {edge.source} -> {edge.target}` ({where})",
                     f"virtual weight over {p.count} channel pairs: sum |w| = {p.strength:.3g}, sum w = {_fmt(p.signed)}"]
            if p.sources:
                lines.append(f"{len(p.sources)} source channels act through an attention pattern (no weight)")
            lines.append(f"the paths use {len(edge.weights)} weights and {len(edge.through)} residual channels")
            if hidden:
                lines.append(f"also reaches {len(hidden)} nodes not drawn (e.g. logits other than the answer tokens)")
            links.append(Link(src, dst, "declared", p.strength, p.signed, p.count, "\n".join(lines)))
    return links


def select_weight_links(links: list[Link], max_edges: int) -> list[Link]:
    """The strongest ``max_edges`` links, each box's strongest in and out link first."""
    ranked = sorted(links, key=lambda l: (-l.strength, l.source, l.target))
    if len(ranked) <= max_edges:
        return ranked
    best_out, best_in = {}, {}
    for link in ranked:
        best_out.setdefault(link.source, link)
        best_in.setdefault(link.target, link)
    backbone = {id(link) for link in [*best_out.values(), *best_in.values()]}
    chosen = [link for link in ranked if id(link) in backbone][:max_edges]
    chosen_ids = {id(link) for link in chosen}
    chosen += [link for link in ranked if id(link) not in chosen_ids][: max_edges - len(chosen)]
    return sorted(chosen, key=lambda l: (-l.strength, l.source, l.target))
