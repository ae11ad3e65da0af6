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


def _resid(boundary: int, n_layers: int, i: int) -> str:
    return str(NodeName(resid_hook(boundary, n_layers), i))


def build_graph(model: Transformer) -> nx.DiGraph:
    cfg = model.cfg
    L, H, D, dh = cfg.n_layers, cfg.n_heads, cfg.d_model, cfg.d_head
    g = nx.DiGraph(n_layers=L)

    def add_nodes(names, kind, layer=None, **extra):
        g.add_nodes_from((str(n), {"kind": kind, "layer": layer, **extra}) for n in names)

    add_nodes((NodeName("hook_tokens", c) for c in range(cfg.d_vocab)), "tokens")
    add_nodes((NodeName("hook_positions", p) for p in range(cfg.n_ctx)), "positions")
    for b in range(L + 1):
        add_nodes((NodeName(resid_hook(b, L), i) for i in range(D)), "resid", layer=b)
    for layer in range(L):
        a = f"blocks.{layer}.attn"
        for kind in ("q", "k", "v", "z"):
            add_nodes((NodeName(f"{a}.hook_{kind}", j, h) for h in range(H) for j in range(dh)), kind, layer)
        add_nodes((NodeName(f"{a}.hook_pattern", None, h) for h in range(H)), "pattern", layer)
        add_nodes((NodeName(f"blocks.{layer}.hook_resid_mid", i) for i in range(D)), "resid", layer)
        add_nodes((NodeName(f"blocks.{layer}.mlp.hook_post", n) for n in range(cfg.d_mlp)), "mlp", layer)
    g.add_nodes_from(
        (str(NodeName("hook_logits", v)), {"kind": "logits", "layer": None, "token": model.tokenizer.token_repr(v)})
        for v in range(cfg.d_vocab)
    )

    params = dict(model.named_parameters())

    def add_weight_edges(param: str, src, dst):
        """One edge per non-zero entry; ``src``/``dst`` map the entry index to node names."""
        w = params[param].detach().cpu()
        entries = torch.nonzero(w)
        values = w[tuple(entries.T)].tolist()
        g.add_edges_from(
            (src(*e), dst(*e), {"kind": "weight", "param": param, "entry": tuple(e), "weight": val})
            for e, val in zip(entries.tolist(), values)
        )

    add_weight_edges("embed.W_E", lambda c, i: str(NodeName("hook_tokens", c)), lambda c, i: _resid(0, L, i))
    add_weight_edges("pos_embed.W_pos", lambda p, i: str(NodeName("hook_positions", p)), lambda p, i: _resid(0, L, i))
    for layer in range(L):
        a, mid = f"blocks.{layer}.attn", f"blocks.{layer}.hook_resid_mid"
        for kind in ("Q", "K", "V"):
            hook = f"{a}.hook_{kind.lower()}"
            add_weight_edges(f"{a}.W_{kind}", lambda h, i, j: _resid(layer, L, i), lambda h, i, j, hook=hook: str(NodeName(hook, j, h)))
        add_weight_edges(f"{a}.W_O", lambda h, j, i: str(NodeName(f"{a}.hook_z", j, h)), lambda h, j, i: str(NodeName(mid, i)))
        add_weight_edges(f"blocks.{layer}.mlp.W_in", lambda i, n: str(NodeName(mid, i)),
                         lambda i, n: str(NodeName(f"blocks.{layer}.mlp.hook_post", n)))
        add_weight_edges(f"blocks.{layer}.mlp.W_out", lambda n, i: str(NodeName(f"blocks.{layer}.mlp.hook_post", n)),
                         lambda n, i: _resid(layer + 1, L, i))
        for i in range(D):
            g.add_edge(_resid(layer, L, i), str(NodeName(mid, i)), kind="residual")
            g.add_edge(str(NodeName(mid, i)), _resid(layer + 1, L, i), kind="residual")
        for h in range(H):
            pattern = str(NodeName(f"{a}.hook_pattern", None, h))
            for j in range(dh):
                z = str(NodeName(f"{a}.hook_z", j, h))
                g.add_edge(str(NodeName(f"{a}.hook_v", j, h)), z, kind="attn_value")
                g.add_edge(str(NodeName(f"{a}.hook_q", j, h)), pattern, kind="attn_query")
                g.add_edge(str(NodeName(f"{a}.hook_k", j, h)), pattern, kind="attn_key")
                g.add_edge(pattern, z, kind="attn_pattern")
    add_weight_edges("unembed.W_U", lambda i, v: _resid(L, L, i), lambda i, v: str(NodeName("hook_logits", v)))
    return g


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

    def names(hook: str, count: int, head: int | None = None) -> list[str]:
        return [str(NodeName(hook, i, head)) for i in range(count)]

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

    tokens, positions = names("hook_tokens", cfg.d_vocab), names("hook_positions", cfg.n_ctx)
    nodes("tokens", tokens)
    nodes("positions", positions)
    resid = [names(resid_hook(b, L), D) for b in range(L + 1)]
    for b in range(L + 1):
        nodes("resid", resid[b])
    per_layer = []
    for layer in range(L):
        a = f"blocks.{layer}.attn"
        heads = {kind: [names(f"{a}.hook_{kind}", dh, h) for h in range(H)] for kind in "qkvz"}
        for kind in "qkvz":
            nodes(kind, [n for head in heads[kind] for n in head])
        patterns = [str(NodeName(f"{a}.hook_pattern", None, h)) for h in range(H)]
        nodes("pattern", patterns)
        mid = names(f"blocks.{layer}.hook_resid_mid", D)
        nodes("resid", mid)
        post = names(f"blocks.{layer}.mlp.hook_post", cfg.d_mlp)
        nodes("mlp", post)
        per_layer.append((a, heads, patterns, mid, post))
    logits = names("hook_logits", cfg.d_vocab)
    nodes("logits", logits)
    link("embed.W_E", tokens, resid[0])
    link("pos_embed.W_pos", positions, resid[0])
    for layer, (a, heads, patterns, mid, post) in enumerate(per_layer):
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
    link("unembed.W_U", resid[L], logits)
    return succ, kinds
