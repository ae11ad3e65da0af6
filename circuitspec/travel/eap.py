"""The circuit as EAP-IG's ``Graph`` JSON (``Graph.to_json`` / ``Graph.from_json`` in hannamw/EAP-IG), the
edge-list form attribution-patching users exchange.

EAP-IG's nodes are whole components: ``input``, ``a{L}.h{H}`` (one attention head), ``m{L}`` (one MLP) and
``logits``; an edge joins a component to a later one through the residual stream, and one that ends at a
head names which input it feeds: ``a0.h1->a1.h0<v>``. The file is ``{"cfg": {...}, "nodes": {name:
{"in_graph"}}, "edges": {name: {"score", "in_graph"}}}`` with every edge ``Graph.from_model`` makes.

Our channels aggregate onto theirs like this:
- a head is in the graph when any of its q/k/v/z channels is kept, an MLP when any of its neurons is; the
  input and the logits always are;
- an edge is in the graph when some residual channel carries it: the parent writes the channel through a
  kept weight (W_O, W_out, W_E/W_pos; every embedding and unembedding weight counts as kept in a node-level
  circuit), the channel is kept at every residual position from that write to the child's read, and the
  child reads it through a kept weight (W_Q/W_K/W_V for ``<q>``/``<k>``/``<v>``, W_in, W_U);
- an edge's ``score`` is the number of residual channels that carry it (0 for an edge not in the graph):
  a structural count, not an attribution score.
What does not survive: which channels of a head or MLP, and the weights themselves (a kept head whose q
and k channels are all ablated still reads through its v).
"""

from __future__ import annotations

import re
from typing import Any

_POS = re.compile(r"blocks\.(\d+)\.hook_resid_(pre|mid|post)")


def _component_names(n_layers: int, n_heads: int) -> tuple[list[str], list[str]]:
    """(nodes, edges) as EAP-IG's ``Graph.from_model`` makes them (attention before the MLP, not parallel)."""
    nodes, edges, stream = ["input"], [], ["input"]
    for layer in range(n_layers):
        heads = [f"a{layer}.h{h}" for h in range(n_heads)]
        edges += [f"{p}->{h}<{x}>" for p in stream for h in heads for x in "qkv"]
        stream += heads
        edges += [f"{p}->m{layer}" for p in stream]
        stream.append(f"m{layer}")
        nodes += [*heads, f"m{layer}"]
    edges += [f"{p}->logits" for p in stream]
    return nodes + ["logits"], edges


def _position(hook: str, n_layers: int) -> int | None:
    """Residual positions in order: resid_pre L = 2L, resid_mid L = 2L+1, after the last block 2n."""
    match = _POS.fullmatch(hook)
    if not match:
        return None
    layer, kind = int(match.group(1)), match.group(2)
    return 2 * layer + {"pre": 0, "mid": 1, "post": 2}[kind]


def _layer(name: str) -> int:
    return int(name.split(".")[1])


def to_eap(data: dict[str, Any], cfg) -> dict[str, Any]:
    """EAP-IG's Graph JSON for an exported circuit (:func:`.circuit_json.circuit_json`) of a model with ``cfg``."""
    from ..engine.naming import parse_node_name

    L, H = cfg.n_layers, cfg.n_heads
    kept = set()
    components = {"input", "logits"}
    for node in data["nodes"]:
        pos = _position(node["hook"], L)
        if pos is not None:
            kept.add((pos, node["index"]))
        elif ".attn." in node["hook"]:
            components.add(f"a{_layer(node['hook'])}.h{node['head']}")
        elif ".mlp." in node["hook"]:
            components.add(f"m{_layer(node['hook'])}")
    writes: dict[str, set] = {}
    reads: dict[str, set] = {}
    for e in data["edges"]:
        src, dst, w = parse_node_name(e["source"]), parse_node_name(e["target"]), e["weight"]
        if w.endswith("W_O"):
            writes.setdefault(f"a{_layer(w)}.h{src.head}", set()).add((_position(dst.hook, L), dst.index))
        elif w.endswith("W_out"):
            writes.setdefault(f"m{_layer(w)}", set()).add((_position(dst.hook, L), dst.index))
        elif w in ("embed.W_E", "pos_embed.W_pos"):
            writes.setdefault("input", set()).add((0, dst.index))
        elif w.split(".")[-1] in ("W_Q", "W_K", "W_V"):
            reads.setdefault(f"a{_layer(w)}.h{dst.head}<{w[-1].lower()}>", set()).add((_position(src.hook, L), src.index))
        elif w.endswith("W_in"):
            reads.setdefault(f"m{_layer(w)}", set()).add((_position(src.hook, L), src.index))
        elif w == "unembed.W_U":
            reads.setdefault("logits", set()).add((2 * L, src.index))
    if data.get("circuit", "nodes") == "nodes":  # a node-level circuit keeps every input and output weight
        writes["input"] = {(p, c) for p, c in kept if p == 0}
        reads["logits"] = {(p, c) for p, c in kept if p == 2 * L}

    def carried(parent: str, child: str) -> int:
        out = set()
        for a, c in writes.get(parent, ()):
            for b, c2 in reads.get(child, ()):
                if c == c2 and a <= b and all((p, c) in kept for p in range(a, b + 1)):
                    out.add(c)
        return len(out)

    node_names, edge_names = _component_names(L, H)
    edges = {}
    for name in edge_names:
        parent, child = name.split("->")
        count = carried(parent, child) if parent in components and child.split("<")[0] in components else 0
        edges[name] = {"score": float(count), "in_graph": count > 0}
    return {"cfg": {"n_layers": L, "n_heads": H, "parallel_attn_mlp": False, "d_model": cfg.d_model},
            "nodes": {n: {"in_graph": n in components} for n in node_names}, "edges": edges}


def read_eap(data: dict[str, Any]) -> tuple[set[str], set[str]]:
    """(nodes, edges) in the graph of an EAP-IG Graph JSON, checked as ``Graph.from_json`` would read it:
    ValueError for missing keys or a node or edge name its config does not make."""
    if not isinstance(data, dict) or not {"cfg", "nodes", "edges"} <= data.keys():
        raise ValueError("an EAP-IG graph has the keys cfg, nodes and edges")
    node_names, edge_names = _component_names(int(data["cfg"]["n_layers"]), int(data["cfg"]["n_heads"]))
    unknown = (set(data["nodes"]) - set(node_names)) | (set(data["edges"]) - set(edge_names))
    if unknown:
        raise ValueError(f"names EAP-IG's graph does not have: {', '.join(sorted(unknown)[:3])}")
    return ({n for n, v in data["nodes"].items() if v["in_graph"]},
            {e for e, v in data["edges"].items() if v["in_graph"]})
