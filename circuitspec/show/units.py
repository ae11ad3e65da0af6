"""Which boxes the picture has: the circuit's nodes grouped into columns and units.

Columns follow the forward pass (engine/model.py): inputs, then per block resid_pre, attention
q/k/v, attention z, resid_mid, MLP neurons, then the final residual stream and the logits.

A coarse circuit keeps thousands of channels, far too many boxes to read. Channels of one hook (and
one head) that the spec names the same way are one cluster; a cluster of more than ``expand``
channels becomes one collapsed box with a count. A channel named on its own by a ``node`` statement
always keeps its own box, so the nodes a spec singles out stay visible inside big groups.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..engine.naming import NodeName, resid_hook
from ..lang import ast
from ..lang.resolve import OUTPUT, ResolvedSpec, Resolver, expand_ref
from .picture import Column, Unit

_KIND_ORDER = {"q": 0, "k": 1, "v": 2}
_INPUT_HOOKS = ("hook_tokens", "hook_positions")


def columns(n_layers: int) -> list[Column]:
    """Every column a model of ``n_layers`` blocks can have, left to right."""
    cols = [Column("inputs", "hook_tokens / hook_positions", None)]
    for layer in range(n_layers):
        cols += [
            Column(f"block {layer} · resid_pre", f"blocks.{layer}.hook_resid_pre", layer),
            Column(f"block {layer} · attention q k v", f"blocks.{layer}.attn.hook_q/k/v", layer),
            Column(f"block {layer} · attention z", f"blocks.{layer}.attn.hook_z", layer),
            Column(f"block {layer} · resid_mid", f"blocks.{layer}.hook_resid_mid", layer),
            Column(f"block {layer} · MLP neurons", f"blocks.{layer}.mlp.hook_post", layer),
        ]
    cols += [Column("resid_post", resid_hook(n_layers, n_layers), None), Column("logits", "hook_logits", None)]
    return cols


def column_of(node: NodeName, n_layers: int) -> int:
    hook = node.hook
    if hook in _INPUT_HOOKS:
        return 0
    if hook == "hook_logits":
        return 5 * n_layers + 2
    if hook == resid_hook(n_layers, n_layers):
        return 5 * n_layers + 1
    base = 1 + 5 * node.layer
    suffix = hook.split(".", 2)[2]
    return base + {"hook_resid_pre": 0, "attn.hook_q": 1, "attn.hook_k": 1, "attn.hook_v": 1, "attn.hook_z": 2,
                   "hook_resid_mid": 3, "mlp.hook_post": 4}[suffix]


def kind_of(node: NodeName) -> str:
    hook = node.hook
    if hook in ("hook_tokens", "hook_positions"):
        return hook[5:]
    if hook == "hook_logits":
        return "logits"
    if "resid" in hook:
        return "resid"
    if hook.endswith("mlp.hook_post"):
        return "mlp"
    return hook[-1]  # attn.hook_q / _k / _v / _z


def compact(indices: list[int], size: int) -> str:
    """``[0, 1, 2, 5]`` -> ``0:3, 5`` (half-open ranges, as the language writes them); ``*`` for all."""
    indices = sorted(indices)
    if indices == list(range(size)):
        return "*"
    runs, start = [], indices[0]
    for prev, cur in zip(indices, indices[1:] + [None]):
        if cur != prev + 1:
            runs.append(str(start) if prev == start else f"{start}:{prev + 1}")
            start = cur
    return ", ".join(runs)


@dataclass(frozen=True)
class _Node:
    name: NodeName
    names: tuple[str, ...]
    origin: str
    single: bool


class UnitBuilder:
    """Groups a resolved spec's nodes (plus the inputs and logits it refers to) into units."""

    def __init__(self, resolved: ResolvedSpec, answer_tokens: list[int], expand: int) -> None:
        self.resolved = resolved
        self.ctx = resolved.context
        self.L = resolved.context.cfg.n_layers
        self.expand = expand
        self.answer_tokens = answer_tokens
        spec = resolved.spec
        order = list(resolved.definitions)
        self.definitions = sorted(resolved.definitions.items(), key=lambda kv: (len(kv[1]), order.index(kv[0])))
        self.statements = spec.definitions
        resolver = Resolver(spec, resolved.file, self.ctx, resolved.task)
        resolver.definitions = dict(resolved.definitions)
        self.member_nodes = resolver.member_nodes

    # -- what each node is called and why it is there
    def _where(self, stmt: ast.Statement) -> str:
        return f"{Path(stmt.span.file).name}:{stmt.span.line}"

    def describe(self, names: tuple[str, ...]) -> str | None:
        return next((self.statements[n].description for n in names if self.statements[n].description), None)

    def _origins(self) -> dict[NodeName, str]:
        """The first statement that brought each unnamed node in: patterns, then (as resolution adds
        them last) the residual channels on declared edges' paths."""
        origin: dict[NodeName, str] = {}
        for stmt in self.resolved.spec.all_statements():
            if isinstance(stmt, ast.IncludeNodes):
                regex = stmt.regex()
                text = f'`include nodes matching "{stmt.pattern}"` ({self._where(stmt)})'
                for node in self.resolved.nodes:
                    if node not in origin and regex.fullmatch(str(node)):
                        origin[node] = text
            elif isinstance(stmt, ast.IncludeEdges):
                text = f'`include edges matching "{stmt.source}" -> "{stmt.target}"` ({self._where(stmt)})'
                src, dst = ast.glob_regex(stmt.source), ast.glob_regex(stmt.target)
                for node in self.resolved.nodes:
                    if node not in origin and (src.fullmatch(str(node)) or dst.fullmatch(str(node))):
                        origin[node] = text
        for edge in self.resolved.edges:
            for node in edge.through:
                origin.setdefault(node, f"residual channel on the paths of `edge {edge.source} -> {edge.target}` "
                                        f"({Path(edge.span.file).name}:{edge.span.line})")
        return origin

    def circuit_nodes(self) -> list[_Node]:
        named: dict[NodeName, list[str]] = {}
        for name, members in self.definitions:
            for m in members:
                named.setdefault(m, []).append(name)
        origins = self._origins()
        out = []
        for node in self.resolved.nodes:
            names = tuple(named.get(node, ()))
            if names:
                stmt = self.statements[names[0]]
                keyword = "node" if isinstance(stmt, ast.NodeDef) else "group"
                origin = f"`{keyword} {names[0]}` ({self._where(stmt)})"
            else:
                origin = origins.get(node, "named in an `edge` statement")
            single = any(len(self.resolved.definitions[n]) == 1 for n in names)
            out.append(_Node(node, names, origin, single))
        return out

    # -- inputs and outputs the spec refers to
    def _edge_refs(self, hooks: tuple[str, ...]) -> list[NodeName]:
        found: dict[NodeName, None] = {}
        for stmt in self.resolved.spec.edges:
            for member in stmt.members:
                if isinstance(member, ast.Ref) and member.hook in hooks:
                    found.update(dict.fromkeys(expand_ref(member, self.ctx)))
        return list(found)

    def input_nodes(self) -> list[_Node]:
        """Inputs named in edges, each on its own; the other embedding rows as two collapsed boxes when
        the circuit keeps channels of the first residual stream (inputs are never ablated)."""
        named = self._edge_refs(_INPUT_HOOKS)
        out = [_Node(n, (), "named in an `edge` statement", True) for n in named]
        first = resid_hook(0, self.L)
        if any(n.hook == first for n in self.resolved.nodes):
            cfg = self.ctx.cfg
            for hook, size in (("hook_tokens", cfg.d_vocab), ("hook_positions", cfg.n_ctx)):
                out += [_Node(NodeName(hook, i), (), "the embedding: inputs are never ablated", False)
                        for i in range(size) if NodeName(hook, i) not in named]
        return out

    def logit_nodes(self, declared_to_logits: bool) -> list[_Node]:
        """The task's answer tokens and the tokens claims or edges name, when the circuit reaches the output."""
        final = resid_hook(self.L, self.L)
        if not declared_to_logits and not any(n.hook == final for n in self.resolved.nodes):
            return []
        tokens: dict[int, str] = {t: "an answer token of the task" for t in self.answer_tokens}
        for claim in self.resolved.claims:
            for t in claim.logits:
                tokens.setdefault(t, f"compared in claim {claim.claim.name}")
        for node in self._edge_refs(("hook_logits",)):
            tokens.setdefault(node.index, "named in an `edge` statement")
        return [_Node(NodeName("hook_logits", t), (), why, True) for t, why in sorted(tokens.items())]

    def declared_targets_logits(self) -> bool:
        for stmt in self.resolved.spec.edges:
            for _, b in stmt.pairs():
                if (isinstance(b, ast.NameRef) and b.name == OUTPUT) or (isinstance(b, ast.Ref) and b.hook in ("logits", "hook_logits")):
                    return True
        return False

    # -- grouping
    def _size(self, hook: str) -> int:
        cfg = self.ctx.cfg
        if hook in ("hook_tokens", "hook_logits"):
            return cfg.d_vocab
        if hook == "hook_positions":
            return cfg.n_ctx
        return self.ctx.space.node_shapes[hook][-1]

    def _label(self, members: list[NodeName]) -> str:
        first = members[0]
        if len(members) == 1:
            return str(first)
        head = f"head={first.head}, " if first.head is not None else ""
        return f"{first.hook}[{head}{compact([m.index for m in members], self._size(first.hook))}]"

    def _token(self, members: list[NodeName]) -> str:
        """``hook_logits[34]`` -> ``'"'`` (byte-level): how a lone token reads in a box title."""
        first = members[0]
        if len(members) > 1 or first.hook not in ("hook_logits", "hook_tokens"):
            return ""
        return self.ctx.model.tokenizer.token_repr(first.index)

    def build(self) -> tuple[list[Unit], list[NodeName]]:
        """Units sorted by column then position in it, and every node they contain (for measuring)."""
        nodes = self.input_nodes() + self.circuit_nodes() + self.logit_nodes(self.declared_targets_logits())
        clusters: dict[tuple, list[_Node]] = {}
        for node in nodes:
            n = node.name
            key = (column_of(n, self.L), n.head if n.head is not None else -1, _KIND_ORDER.get(kind_of(n), 0), n.hook,
                   node.names)
            if node.single:
                key += (n.index,)
            clusters.setdefault(key, []).append(node)
        groups: list[tuple[tuple, list[_Node]]] = []
        for key, members in clusters.items():
            members.sort(key=lambda m: m.name.index)
            if len(members) <= self.expand or len(members) == 1:
                groups += [(key + (m.name.index,), [m]) for m in members]
            else:
                groups.append((key + (members[0].name.index,), members))
        groups.sort(key=lambda kv: (kv[0][0], kv[0][1], kv[0][2], kv[1][0].name.index, kv[0][3], len(kv[1])))
        units = []
        for i, (key, members) in enumerate(groups):
            names = members[0].names
            units.append(Unit(
                id=f"u{i}", kind=kind_of(members[0].name), column=key[0], members=tuple(m.name for m in members),
                label=self._label([m.name for m in members]), names=names, description=self.describe(names),
                origin=_origin_text(members), token=self._token([m.name for m in members])))
        return units, [n.name for n in nodes]


def _origin_text(members: list[_Node]) -> str:
    """One origin, or each origin with how many of the members it brought in."""
    counts: dict[str, int] = {}
    for m in members:
        counts[m.origin] = counts.get(m.origin, 0) + 1
    if len(counts) == 1:
        return next(iter(counts))
    return "; ".join(f"{n} by {origin}" for origin, n in counts.items())
