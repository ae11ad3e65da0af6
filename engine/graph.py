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
