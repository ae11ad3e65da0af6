"""Circuit masks: which channels (nodes) and which weight entries (edges) a circuit keeps.

A :class:`Mask` holds one boolean tensor per maskable hook point (True = in the circuit) and one per
weight matrix. Node masks index the channel dimensions of a hook (``[head, d_head]`` for q/k/v/z,
``[channel]`` otherwise); edge masks have the weight's own shape. Attention patterns are graph nodes
but not maskable: a head's pattern is ablated through its q and k channels.
Inputs (token and position rows) and outputs (logits) are never masked: a circuit always sees its
input and is always read at the logits.

The algebra (union, intersection, complement, difference, one node removed, node-induced edges) is
plain set algebra applied per tensor, so it obeys the usual laws; tests check them with Hypothesis.

A mask may also carry path cuts (:class:`~.paths.PathCut`, ``cuts``): paths through the residual stream
whose receiver reads the sender's reference value, which is how an edge between two nodes that are not
adjacent is ablated. Cuts are not sets of tensor entries, so a mask with cuts takes no part in the algebra
(``ValueError``); masks built from it by removing or adding nodes keep them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Iterator

import torch

from .model import ModelConfig, Transformer
from .naming import NodeName, canonical, is_per_head, resid_hook


@dataclass(frozen=True)
class Endpoints:
    """How a weight matrix's entries map to node-mask entries: ``src``/``dst`` hook (None = input/output)
    and the shape each node mask is viewed as so it broadcasts against the weight."""

    src: str | None
    src_view: tuple[int, ...]
    dst: str | None
    dst_view: tuple[int, ...]


#: The embeddings' one-hot inputs, named as the sources of their weight matrices (token rows, position rows)
#: where the ablation engine and the path cuts need a name for them.
TOKENS, POSITIONS = "<tokens>", "<positions>"

#: Weights with one end outside the circuit's nodes (the token and position inputs, the logits): they are
#: not circuit edges when a circuit's size is counted.
IO_WEIGHTS = frozenset({"embed.W_E", "pos_embed.W_pos", "unembed.W_U"})


@dataclass(frozen=True)
class MaskSpace:
    """The maskable hook points and weight matrices of one model shape."""

    node_shapes: dict[str, tuple[int, ...]]
    edge_shapes: dict[str, tuple[int, ...]]
    endpoints: dict[str, Endpoints]
    n_layers: int

    @classmethod
    def for_config(cls, cfg: ModelConfig) -> "MaskSpace":
        L, H, D, dh, M, V = cfg.n_layers, cfg.n_heads, cfg.d_model, cfg.d_head, cfg.d_mlp, cfg.d_vocab
        nodes: dict[str, tuple[int, ...]] = {}
        edges: dict[str, tuple[int, ...]] = {"embed.W_E": (V, D), "pos_embed.W_pos": (cfg.n_ctx, D)}
        ends = {"embed.W_E": Endpoints(None, (), resid_hook(0, L), (1, D)),
                "pos_embed.W_pos": Endpoints(None, (), resid_hook(0, L), (1, D))}
        for layer in range(L):
            pre, mid, post = resid_hook(layer, L), f"blocks.{layer}.hook_resid_mid", resid_hook(layer + 1, L)
            a, mlp = f"blocks.{layer}.attn", f"blocks.{layer}.mlp"
            nodes[pre] = (D,)
            for kind in "qkvz":
                nodes[f"{a}.hook_{kind}"] = (H, dh)
            nodes[mid] = (D,)
            nodes[f"{mlp}.hook_post"] = (M,)
            for kind in "QKV":
                edges[f"{a}.W_{kind}"] = (H, D, dh)
                ends[f"{a}.W_{kind}"] = Endpoints(pre, (1, D, 1), f"{a}.hook_{kind.lower()}", (H, 1, dh))
            edges[f"{a}.W_O"] = (H, dh, D)
            ends[f"{a}.W_O"] = Endpoints(f"{a}.hook_z", (H, dh, 1), mid, (1, 1, D))
            edges[f"{mlp}.W_in"] = (D, M)
            ends[f"{mlp}.W_in"] = Endpoints(mid, (D, 1), f"{mlp}.hook_post", (1, M))
            edges[f"{mlp}.W_out"] = (M, D)
            ends[f"{mlp}.W_out"] = Endpoints(f"{mlp}.hook_post", (M, 1), post, (1, D))
        nodes[resid_hook(L, L)] = (D,)
        edges["unembed.W_U"] = (D, V)
        ends["unembed.W_U"] = Endpoints(resid_hook(L, L), (D, 1), None, ())
        return cls(nodes, edges, ends, L)

    def node_position(self, name: NodeName) -> tuple[str, tuple[int, ...]]:
        """(hook, index into its node mask) of a node name; ``KeyError`` / ``IndexError`` if invalid."""
        name = canonical(name, self.n_layers)
        if name.hook not in self.node_shapes:
            raise KeyError(f"{name.hook} is not a maskable hook point")
        shape = self.node_shapes[name.hook]
        if is_per_head(name.hook):
            index: tuple[int, ...] = (name.head, name.index) if name.head is not None and name.index is not None else ()
        else:
            index = (name.index,) if name.index is not None and name.head is None else ()
        if len(index) != len(shape):
            raise IndexError(f"{name} does not address one channel of {name.hook} (channel shape {shape})")
        for i, n in zip(index, shape):
            if not 0 <= i < n:
                raise IndexError(f"{name}: index {i} out of range 0..{n - 1}")
        return name.hook, index


class Mask:
    """Node and edge membership of a circuit; immutable (operations return new masks)."""

    def __init__(self, space: MaskSpace, nodes: dict[str, torch.Tensor], edges: dict[str, torch.Tensor],
                 cuts: tuple = ()) -> None:
        if set(nodes) != set(space.node_shapes) or set(edges) != set(space.edge_shapes):
            raise ValueError("mask does not cover exactly the space's hook points and weights")
        for name, t in [*nodes.items(), *edges.items()]:
            expected = space.node_shapes.get(name) or space.edge_shapes.get(name)
            if t.dtype != torch.bool or tuple(t.shape) != expected:
                raise ValueError(f"mask for {name}: expected bool {expected}, got {t.dtype} {tuple(t.shape)}")
        self.space = space
        self.nodes = nodes
        self.edges = edges
        self.cuts = tuple(cuts)

    # -- construction
    @classmethod
    def full(cls, space: MaskSpace, value: bool = True) -> "Mask":
        make = torch.ones if value else torch.zeros
        return cls(space, {h: make(s, dtype=torch.bool) for h, s in space.node_shapes.items()},
                   {p: make(s, dtype=torch.bool) for p, s in space.edge_shapes.items()})

    @classmethod
    def empty(cls, space: MaskSpace) -> "Mask":
        return cls.full(space, False)

    @classmethod
    def from_nodes(cls, space: MaskSpace, names: Iterable[NodeName], all_edges: bool = True) -> "Mask":
        """The given nodes, and every edge (``all_edges``) or none: edges are then restricted by the caller."""
        mask = cls.empty(space)
        nodes = {h: t.clone() for h, t in mask.nodes.items()}
        for name in names:
            hook, index = space.node_position(name)
            nodes[hook][index] = True
        edges = {p: torch.full(s, all_edges, dtype=torch.bool) for p, s in space.edge_shapes.items()}
        return cls(space, nodes, edges)

    # -- algebra
    def _no_cuts(self, *others: "Mask") -> None:
        if any(m.cuts for m in (self, *others)):
            raise ValueError("a mask with path cuts does not combine by set algebra")

    def _zip(self, other: "Mask", op) -> "Mask":
        if other.space != self.space:
            raise ValueError("masks belong to different models")
        self._no_cuts(other)
        return Mask(self.space, {h: op(t, other.nodes[h]) for h, t in self.nodes.items()},
                    {p: op(t, other.edges[p]) for p, t in self.edges.items()})

    def __or__(self, other: "Mask") -> "Mask":
        return self._zip(other, torch.logical_or)

    def __and__(self, other: "Mask") -> "Mask":
        return self._zip(other, torch.logical_and)

    def __sub__(self, other: "Mask") -> "Mask":
        return self._zip(other, lambda a, b: a & ~b)

    def __invert__(self) -> "Mask":
        self._no_cuts()
        return Mask(self.space, {h: ~t for h, t in self.nodes.items()}, {p: ~t for p, t in self.edges.items()})

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, Mask) and other.space == self.space
                and all(torch.equal(t, other.nodes[h]) for h, t in self.nodes.items())
                and all(torch.equal(t, other.edges[p]) for p, t in self.edges.items())
                and len(self.cuts) == len(other.cuts) and all(a == b for a, b in zip(self.cuts, other.cuts)))

    __hash__ = None  # type: ignore[assignment]

    def with_node(self, name: NodeName, present: bool = True) -> "Mask":
        hook, index = self.space.node_position(name)
        nodes = dict(self.nodes)
        nodes[hook] = nodes[hook].clone()
        nodes[hook][index] = present
        return Mask(self.space, nodes, self.edges, self.cuts)

    def without_node(self, name: NodeName) -> "Mask":
        """This circuit minus one node (the edges touching it stop mattering: see :meth:`induced`)."""
        return self.with_node(name, False)

    def contains(self, name: NodeName) -> bool:
        hook, index = self.space.node_position(name)
        return bool(self.nodes[hook][index])

    # -- queries
    def node_count(self) -> int:
        return int(sum(t.sum() for t in self.nodes.values()))

    def edge_count(self) -> int:
        return int(sum(t.sum() for t in self.edges.values()))

    def node_names(self) -> Iterator[NodeName]:
        """Kept nodes, in the space's hook order then index order."""
        for hook, t in self.nodes.items():
            for index in torch.nonzero(t).tolist():
                if is_per_head(hook):
                    yield NodeName(hook, index[1], index[0])
                else:
                    yield NodeName(hook, index[0])

    def only_stated_edges(self, stated: Iterable[tuple[str, tuple[int, ...]]]) -> "Mask":
        """An edge-level circuit: of the weights between kept nodes (inputs and outputs count as kept) only the
        ``stated`` entries (weight name, index) stay. Weights touching an ablated node stay as they are: node
        ablation already gives them the reference input, and a partial ablation that restores the node
        restores them with it."""
        edges = {p: ~t & self.edges[p] for p, t in self.induced().edges.items()}
        for param, entry in stated:
            edges[param][entry] = self.edges[param][entry]
        return Mask(self.space, self.nodes, edges, self.cuts)

    def induced(self, model: Transformer | None = None) -> "Mask":
        """Keep exactly the edges between kept nodes (inputs/outputs count as kept); with ``model``,
        also only the edges that exist, i.e. non-zero weights."""
        weights = model.weight_matrices() if model is not None else {}
        edges = {}
        for param, ends in self.space.endpoints.items():
            keep = torch.ones(self.space.edge_shapes[param], dtype=torch.bool)
            if ends.src is not None:
                keep = keep & self.nodes[ends.src].reshape(ends.src_view)
            if ends.dst is not None:
                keep = keep & self.nodes[ends.dst].reshape(ends.dst_view)
            if param in weights:
                keep = keep & (weights[param].detach().cpu() != 0)
            edges[param] = keep
        return Mask(self.space, self.nodes, edges, self.cuts)
