"""The model as a graph of channels: nodes are named channels, edges are the non-zero weights.

Node kinds (attribute ``kind``): ``tokens``, ``positions`` (embedding rows), ``resid`` (one residual
channel at a block boundary or after attention), ``q``/``k``/``v``/``z`` (per-head channels),
``pattern`` (one per head: where q and k meet), ``mlp`` (a neuron, named by ``mlp.hook_post``),
``logits``.

Edge kinds: ``weight`` edges carry ``param`` (parameter name), ``entry`` (index into it) and ``weight``
(its value) — one per non-zero entry, so ``edges == non-zero weights``. Structural edges have no
weight: ``residual`` (identity through the residual stream), ``attn_value`` (v channel -> the same z
channel), ``attn_query`` / ``attn_key`` (q/k channel -> its head's pattern), ``attn_pattern`` (pattern ->
every z channel of the head). Norms only rescale a whole position, so they add no edges.
"""

from __future__ import annotations

import networkx as nx
import torch

from .model import Transformer
from .naming import NodeName, resid_hook


def build_graph(model: Transformer) -> nx.DiGraph:
    cfg = model.cfg
    L, H, D, dh = cfg.n_layers, cfg.n_heads, cfg.d_model, cfg.d_head
    g = nx.DiGraph(n_layers=L)
    # Every name is formatted once: an entry of a weight matrix picks its two ends from these lists (a
    # 2-layer model has ~50,000 weight edges; formatting their names per edge took most of a second).
    names = _NodeNames(cfg)

    for kind, layer, listed in names.by_kind():
        g.add_nodes_from((n, {"kind": kind, "layer": layer}) for n in listed)
    g.add_nodes_from((n, {"kind": "logits", "layer": None, "token": model.tokenizer.token_repr(v)})
                     for v, n in enumerate(names.logits))

    params = dict(model.named_parameters())

    def add_weight_edges(param: str, *ends: list):
        """One edge per non-zero entry: its first index picks the source from ``ends[0]``, the last the
        target from ``ends[-1]``; a middle index (a head) first picks the list to pick from."""
        w = params[param].detach().cpu()
        entries = torch.nonzero(w)
        values = w[tuple(entries.T)].tolist()
        g.add_edges_from(_weight_edges(param, entries.tolist(), values, *ends))

    add_weight_edges("embed.W_E", names.tokens, names.resid[0])
    add_weight_edges("pos_embed.W_pos", names.positions, names.resid[0])
    for layer in range(L):
        a, mid, heads = f"blocks.{layer}.attn", names.mid[layer], names.heads[layer]
        for kind in ("Q", "K", "V"):  # [H, D, dh] as (h, i, j): residual channel i -> head h's channel j
            add_weight_edges(f"{a}.W_{kind}", names.resid[layer], heads[kind.lower()])
        add_weight_edges(f"{a}.W_O", heads["z"], mid)  # [H, dh, D] as (h, j, i): head h's z channel j -> i
        add_weight_edges(f"blocks.{layer}.mlp.W_in", mid, names.post[layer])
        add_weight_edges(f"blocks.{layer}.mlp.W_out", names.post[layer], names.resid[layer + 1])
        for i in range(D):
            g.add_edge(names.resid[layer][i], mid[i], kind="residual")
            g.add_edge(mid[i], names.resid[layer + 1][i], kind="residual")
        for h in range(H):
            pattern = names.patterns[layer][h]
            for j in range(dh):
                z = heads["z"][h][j]
                g.add_edge(heads["v"][h][j], z, kind="attn_value")
                g.add_edge(heads["q"][h][j], pattern, kind="attn_query")
                g.add_edge(heads["k"][h][j], pattern, kind="attn_key")
                g.add_edge(pattern, z, kind="attn_pattern")
    add_weight_edges("unembed.W_U", names.resid[L], names.logits)
    return g


class _NodeNames:
    """Every node name of a model's graph, formatted once, as lists indexed like the weights' dimensions."""

    def __init__(self, cfg) -> None:
        L, H, D, dh = cfg.n_layers, cfg.n_heads, cfg.d_model, cfg.d_head

        def listed(hook: str, count: int, head: int | None = None) -> list[str]:
            return [str(NodeName(hook, i, head)) for i in range(count)]

        self.tokens, self.positions = listed("hook_tokens", cfg.d_vocab), listed("hook_positions", cfg.n_ctx)
        self.resid = [listed(resid_hook(b, L), D) for b in range(L + 1)]
        self.heads = [{kind: [listed(f"blocks.{layer}.attn.hook_{kind}", dh, h) for h in range(H)] for kind in "qkvz"}
                      for layer in range(L)]
        self.patterns = [[str(NodeName(f"blocks.{layer}.attn.hook_pattern", None, h)) for h in range(H)]
                         for layer in range(L)]
        self.mid = [listed(f"blocks.{layer}.hook_resid_mid", D) for layer in range(L)]
        self.post = [listed(f"blocks.{layer}.mlp.hook_post", cfg.d_mlp) for layer in range(L)]
        self.logits = listed("hook_logits", cfg.d_vocab)

    def by_kind(self):
        """(kind, layer, names) of every node but the logits, in the order the graph adds them."""
        yield "tokens", None, self.tokens
        yield "positions", None, self.positions
        for b, listed in enumerate(self.resid):
            yield "resid", b, listed
        for layer, (heads, patterns, mid, post) in enumerate(zip(self.heads, self.patterns, self.mid, self.post)):
            for kind in "qkvz":
                yield kind, layer, [n for head in heads[kind] for n in head]
            yield "pattern", layer, patterns
            yield "resid", layer, mid
            yield "mlp", layer, post


def _weight_edges(param: str, entries: list[list[int]], values: list[float], source: list, target: list):
    """(source, target, attributes) of each non-zero entry of a 2-d weight, or of a per-head 3-d one whose
    head index selects the list of sources (W_O: ``source[h][j]``) or of targets (W_Q/K/V: ``target[h][j]``)."""
    per_head_source = isinstance(source[0], list)
    for e, val in zip(entries, values):
        if len(e) == 2:
            u, v = source[e[0]], target[e[1]]
        elif per_head_source:
            u, v = source[e[0]][e[1]], target[e[2]]
        else:
            u, v = source[e[1]], target[e[0]][e[2]]
        yield u, v, {"kind": "weight", "param": param, "entry": tuple(e), "weight": val}


def weight_edges(g: nx.DiGraph) -> list[tuple[str, str, dict]]:
    return [(u, v, d) for u, v, d in g.edges(data=True) if d["kind"] == "weight"]


def walk_tables(model: Transformer) -> tuple[dict[str, list[str]], dict[str, str]]:
    """Each node's successors, in the order :func:`build_graph` adds their edges, and each node's kind:
    what a random walk over the graph reads, built from the weights in a fraction of the graph's time
    (it stores no edge attributes). Tests check it against the graph."""
    cfg = model.cfg
    L, H, D, dh = cfg.n_layers, cfg.n_heads, cfg.d_model, cfg.d_head
    params = dict(model.named_parameters())
    succ: dict[str, list[str]] = {}
    kinds: dict[str, str] = {}

    def nodes(kind: str, listed: list[str]) -> None:
        for n in listed:
            kinds[n] = kind
            succ[n] = []

    def link(param: str, src_names, dst_names) -> None:
        """Edges of the non-zero entries of ``param`` seen as a [sources, targets] matrix (row-major, the
        order of ``torch.nonzero`` on the parameter, which is the graph's)."""
        w = params[param].detach().cpu()
        rows, cols = w.reshape(len(src_names), len(dst_names)).nonzero(as_tuple=True)
        for r, c in zip(rows.tolist(), cols.tolist()):
            succ[src_names[r]].append(dst_names[c])

    names = _NodeNames(cfg)
    resid = names.resid
    for kind, _, listed in names.by_kind():
        nodes(kind, listed)
    nodes("logits", names.logits)
    link("embed.W_E", names.tokens, resid[0])
    link("pos_embed.W_pos", names.positions, resid[0])
    for layer in range(L):
        a = f"blocks.{layer}.attn"
        heads, patterns, mid, post = names.heads[layer], names.patterns[layer], names.mid[layer], names.post[layer]
        for kind in "QKV":  # [H, D, dh] as (h, i, j): row-major over the head first, so per head
            w = params[f"{a}.W_{kind}"].detach().cpu()
            h_idx, i_idx, j_idx = w.nonzero(as_tuple=True)
            for h, i, j in zip(h_idx.tolist(), i_idx.tolist(), j_idx.tolist()):
                succ[resid[layer][i]].append(heads[kind.lower()][h][j])
        link(f"{a}.W_O", [n for head in heads["z"] for n in head], mid)
        link(f"blocks.{layer}.mlp.W_in", mid, post)
        link(f"blocks.{layer}.mlp.W_out", post, resid[layer + 1])
        for i in range(D):
            succ[resid[layer][i]].append(mid[i])
            succ[mid[i]].append(resid[layer + 1][i])
        for h in range(H):
            for j in range(dh):
                succ[heads["v"][h][j]].append(heads["z"][h][j])
                succ[heads["q"][h][j]].append(patterns[h])
                succ[heads["k"][h][j]].append(patterns[h])
                succ[patterns[h]].append(heads["z"][h][j])
    link("unembed.W_U", resid[L], names.logits)
    return succ, kinds
