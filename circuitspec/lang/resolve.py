"""Resolution: bind a parsed spec's names to a real model and task, and compile its circuit to masks.

Checks everything that needs the model but no forward pass: hook names, head and channel indices
against the model's shape, token literals, edges against the actual non-zero weights, the task and the
features and positions claims refer to. Every problem is a Diagnostic at the span that caused it.

The compiled mask ablates nodes: a channel outside the circuit carries its reference value (zero, mean
or resampled) and every weight stays, so nothing outside the circuit carries information about the
input. Declared edges select weights only for ``minimal each edge`` claims, which remove them one by one,
unless the spec says ``circuit edges``: then the circuit is its stated edges, and every weight between
two kept nodes that no edge (or ``include edges matching``) states is ablated too.

An edge claim ``edge A -> B drop >= T`` is resolved to what ablating that edge removes
(:func:`~circuitspec.engine.paths.edge_cut`: the weights between adjacent ends, the paths through the
residual stream between the others), restricted to what the circuit carries; an edge the circuit does
not carry is an error (E518).

An edge ``a -> b`` exists when a path of non-zero weights leads from a channel of ``a`` to a channel of
``b`` through nothing but residual-stream channels (a write, the identity through later blocks, a read)
or through one attention head (q/k -> pattern -> z, v -> z). The residual channels on such paths join
the circuit, so ``edge opener -> reader`` keeps the information flowing that it claims flows.

Edges and patterns search the model's graph; a :class:`~.limits.WorkBudget` bounds that search for one
spec, so that no spec keeps `check` busy for more than about a second (past it: one E007).
"""

from __future__ import annotations

import difflib
from collections import deque
from dataclasses import dataclass, field, replace
from functools import lru_cache
from pathlib import Path
from typing import Iterable

import networkx as nx

from ..engine.ablation import Ablation as EngineAblation, Reference
from ..engine.corpus_means import corpus_reference
from ..engine.errors import CircuitspecError, ModelError
from ..engine.graph import build_graph
from ..engine.masks import Mask, MaskSpace
from ..engine.model import ModelConfig, Transformer
from ..engine.naming import NodeName, canonical, is_per_head, parse_node_name
from ..engine.paths import EdgeCut, edge_cut
from ..engine.tasks import Task, UnknownTaskError, all_tasks, get_task
from ..engine.tokenizer import NotOneTokenError
from ..engine.zoo import UnknownModelError, load_model, resolve_model_path
from ..verify.pairs import probe
from . import ast
from .diagnostics import Diagnostic, error, warning
from .limits import FOLLOW_COST, OverBudget, WorkBudget

OUTPUT = "logits"  # built-in name for the model's output in edges: `edge reader -> logits`
#: What ResolvedClaim.ablation_task says for `mean over corpus` (reports print it next to the method).
CORPUS_DISTRIBUTION = "pretraining corpus"
_INPUT_HOOKS = ("hook_tokens", "hook_positions")


@dataclass
class ModelContext:
    """A loaded model and what resolution derives from it (graph, mask space, hook names)."""

    ref: str
    path: Path
    model: Transformer
    space: MaskSpace
    _graph: nx.DiGraph | None = field(default=None, repr=False)
    _corpus: Reference | None = field(default=None, repr=False)
    _nodes: list[tuple[str, NodeName]] | None = field(default=None, repr=False)
    _weights: list[tuple[str, str]] | None = field(default=None, repr=False)

    @property
    def cfg(self) -> ModelConfig:
        return self.model.cfg

    @property
    def graph(self) -> nx.DiGraph:
        """The model's channel graph (:func:`~..engine.graph.build_graph`), built on first use: seconds
        for a 4-layer model, and verifying a spec without stated edges never needs it."""
        if self._graph is None:
            self._graph = build_graph(self.model)
        return self._graph

    def corpus_reference(self) -> Reference:
        """The checkpoint's stored pretraining means (``mean over corpus``), validated once and kept;
        ModelError (saying how to make them) when they are missing or stale."""
        if self._corpus is None:
            self._corpus = corpus_reference(self.model, self.path)
        return self._corpus

    def circuit_nodes(self) -> list[tuple[str, NodeName]]:
        """Every circuit node, with its name as patterns see it (computed once per model)."""
        if self._nodes is None:
            self._nodes = [(str(n), n) for n in Mask.full(self.space).node_names()]
        return self._nodes

    def weight_edges(self) -> list[tuple[str, str]]:
        """The ends of every weight of the graph (computed once per model)."""
        if self._weights is None:
            self._weights = [(u, v) for u, v, d in self.graph.edges(data=True) if d["kind"] == "weight"]
        return self._weights

    def hook_names(self) -> list[str]:
        """Hooks a node reference may name (aliases included), inputs and outputs last."""
        L = self.cfg.n_layers
        names = list(self.space.node_shapes)
        names += [f"blocks.{i}.hook_resid_post" for i in range(L - 1)]
        names += [f"blocks.{i}.attn.hook_pattern" for i in range(L)]
        return names + ["hook_logits", *_INPUT_HOOKS]


@lru_cache(maxsize=8)
def _load_context(path: str) -> ModelContext:
    model = load_model(path)
    return ModelContext(path, Path(path), model, MaskSpace.for_config(model.cfg))


def load_context(ref: str, base: Path | None = None) -> ModelContext:
    """A shipped model name, or a checkpoint path (relative paths are relative to the spec's folder)."""
    candidate = Path(ref)
    if base is not None and not candidate.is_absolute() and (base / candidate).is_dir():
        ref = str(base / candidate)
    return _load_context(str(resolve_model_path(ref)))


# ---- resolved data -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ResolvedEdge:
    source: str  # spec-level text of each end, for reports
    target: str
    weights: tuple[tuple[str, tuple[int, ...]], ...]  # (parameter, entry) on the connecting paths
    through: tuple[NodeName, ...]  # residual channels the paths use (they join the circuit)
    span: ast.Span
    cut: EdgeCut | None = None  # what ablating it removes from the circuit (``minimal each edge``); None: nothing


@dataclass(frozen=True)
class ResolvedClaim:
    claim: ast.Claim
    kind: str
    ablation: EngineAblation | None
    ablation_task: str | None  # the distribution means/resamples come from: a task name, CORPUS_DISTRIBUTION, or None (zero)
    metric: str
    confidence: float
    samples: int | None
    inherited: tuple[str, ...]
    subject: tuple[NodeName, ...] = ()  # role claims: the node(s) whose activation is compared; unneeded: the part
    logits: tuple[int, ...] = ()  # behaviour claims: token ids (left, right)
    position: str = ast.DEFAULT_POSITION
    coverage: float | None = None  # per-input claims: `on at least q of inputs`; None = `on every input`
    in_model: bool = False  # per-input claims: read in the full model (`in full model`), not the circuit alone
    edge: EdgeCut | None = None  # edge claims: what ablating the edge removes from the circuit

    @property
    def robustness(self) -> str:
        """Sufficient claims: which partial ablations of the outside it must also survive (`robustness`)."""
        return self.claim.robustness or ast.DEFAULT_ROBUSTNESS


@dataclass(frozen=True)
class ResolvedSpec:
    spec: ast.Spec
    file: str
    context: ModelContext
    task: Task
    definitions: dict[str, tuple[NodeName, ...]]
    nodes: tuple[NodeName, ...]  # the circuit: every channel it keeps
    edges: tuple[ResolvedEdge, ...]
    claims: tuple[ResolvedClaim, ...]
    mask: Mask  # nodes (+ residual channels on declared edges); every edge kept (node ablation), or with
    # `circuit edges` only the stated ones between kept nodes
    added: tuple[NodeName, ...] = ()  # of ``nodes``, the residual channels only declared edges' paths brought in

    @property
    def edge_level(self) -> bool:
        """`circuit edges`: the circuit is its stated edges, not every weight between its nodes."""
        return self.spec.circuit == "edges"


# ---- references ----------------------------------------------------------------------------------


class _Problem(Exception):
    def __init__(self, diagnostic: Diagnostic) -> None:
        self.diagnostic = diagnostic


def _did_you_mean(word: str, options: Iterable[str]) -> str | None:
    close = difflib.get_close_matches(word, list(options), n=1, cutoff=0.6)
    return f"did you mean {close[0]!r}?" if close else None


def _selector_values(sel, size: int, what: str, span_of) -> list[int]:
    if isinstance(sel, ast.All):
        return list(range(size))
    if isinstance(sel, ast.Index):
        if not 0 <= sel.value < size:
            raise _Problem(error(span_of(sel), "E504", f"{what} {sel.value} is out of range", f"valid {what}s: 0..{size - 1}"))
        return [sel.value]
    if isinstance(sel, ast.Range):
        if not (0 <= sel.start < sel.stop <= size):
            raise _Problem(error(span_of(sel), "E504", f"{what} range {sel.start}:{sel.stop} is out of range or empty",
                                 f"valid {what}s: 0..{size - 1}; a range a:b means a, a+1, ..., b-1"))
        return list(range(sel.start, sel.stop))
    raise _Problem(error(span_of(sel), "E509", f"a token literal cannot index {what}s",
                         "token literals index hook_logits and hook_tokens"))


def expand_ref(ref: ast.Ref, ctx: ModelContext) -> list[NodeName]:
    """All channels a reference names, as graph node names (aliases made canonical)."""
    span_of = lambda n: n.span if n.span is not ast.NOWHERE else ref.span  # noqa: E731
    cfg, hook = ctx.cfg, ref.hook
    known = ctx.hook_names()
    if hook == "logits":
        hook = "hook_logits"
    if hook not in known:
        raise _Problem(error(ref.span, "E503", f"the model has no hook point {hook!r}",
                             _did_you_mean(hook, known) or f"hook points look like {known[0]!r} or 'blocks.0.mlp.hook_post'"))
    per_head = is_per_head(hook)
    if per_head and ref.head is None:
        raise _Problem(error(ref.span, "E505", f"{hook} is per head: say which head",
                             f"e.g. {hook}[head=0, 3]; heads are 0..{cfg.n_heads - 1}"))
    if not per_head and ref.head is not None:
        raise _Problem(error(span_of(ref.head), "E505", f"{hook} has no heads", f"write {hook}[i]"))
    heads = _selector_values(ref.head, cfg.n_heads, "head", span_of) if per_head else [None]
    if hook.endswith("hook_pattern"):
        if ref.channels:
            raise _Problem(error(ref.span, "E504", "an attention pattern is one node per head", f"write {hook}[head=h]"))
        return [NodeName(hook, None, h) for h in heads]
    if not ref.channels:
        raise _Problem(error(ref.span, "E504", f"{hook} needs a channel index", f"e.g. {hook}[0]"))
    if hook in ("hook_logits", "hook_tokens"):
        size, what = cfg.d_vocab, "token"
    elif hook == "hook_positions":
        size, what = cfg.n_ctx, "position"
    elif per_head:
        size, what = cfg.d_head, "channel"
    else:
        size, what = ctx.space.node_shapes[canonical(NodeName(hook, 0), cfg.n_layers).hook][0], "channel"
    channels: list[int] = []
    for sel in ref.channels:
        if isinstance(sel, ast.TokenLiteral) and hook in ("hook_logits", "hook_tokens"):
            channels.append(_token(sel, span_of(sel), ctx))
        else:
            channels.extend(_selector_values(sel, size, what, span_of))
    return [canonical(NodeName(hook, c, h), cfg.n_layers) for h in heads for c in channels]


def _token(literal: ast.TokenLiteral, span, ctx: ModelContext) -> int:
    """The id of a token written as a string, in the model's tokenizer: the string must be one token."""
    tokenizer = ctx.model.tokenizer
    try:
        return tokenizer.token_id(literal.text)
    except NotOneTokenError as e:
        pieces = f"{len(e.pieces)} tokens: {' '.join(e.pieces)}" if e.pieces else "no token"
        if tokenizer.name == "bytes":
            hint = "the model's vocabulary is bytes: one ASCII character, or an escape like '\\n'"
        else:
            hint = (f"write a string that is one token of {tokenizer.name} on its own, or the token's id (`logit[N]`); "
                    f"ids 0..{tokenizer.vocab_size - 1}")
        raise _Problem(error(span, "E519", f"{literal.text!r} is not one token of the model's vocabulary "
                             f"({tokenizer.name}: {pieces})", hint)) from None


def _is_circuit_node(name: NodeName, ctx: ModelContext) -> bool:
    try:
        ctx.space.node_position(name)
        return True
    except (KeyError, IndexError):
        return False


# ---- edges ---------------------------------------------------------------------------------------

_PASS_THROUGH = {"resid", "pattern"}


def connecting_paths(ctx: ModelContext, sources: set[str], targets: set[str],
                     budget: WorkBudget | None = None) -> tuple[set[str], set[tuple[str, tuple]], set[str]]:
    """Targets reached, and the weight entries and residual channels on the paths reaching them, from
    ``sources`` through nothing but residual channels or one head's pattern (OverBudget past ``budget``)."""
    g = ctx.graph
    parents: dict[str, set[str]] = {}
    frontier = deque(sources)
    seen = set(sources)
    reached = set()
    while frontier:
        u = frontier.popleft()
        if budget is not None:
            budget.spend(FOLLOW_COST * g.out_degree(u))
        for _, v in g.out_edges(u):
            if v in targets:
                parents.setdefault(v, set()).add(u)
                reached.add(v)
                continue
            if g.nodes[v]["kind"] in _PASS_THROUGH:
                parents.setdefault(v, set()).add(u)
                if v not in seen:
                    seen.add(v)
                    frontier.append(v)
    weights: set[tuple[str, tuple]] = set()
    through: set[str] = set()
    stack = list(reached)
    visited = set(stack)
    while stack:  # walk back from the targets along recorded parents: only nodes on complete paths
        v = stack.pop()
        for u in parents.get(v, ()):
            data = g.edges[u, v]
            if data["kind"] == "weight":
                weights.add((data["param"], data["entry"]))
            if u not in sources:
                if g.nodes[u]["kind"] == "resid":
                    through.add(u)
                if u not in visited:
                    visited.add(u)
                    stack.append(u)
    return reached, weights, through


# ---- the resolver --------------------------------------------------------------------------------


class Resolver:
    def __init__(self, spec: ast.Spec, file: str, ctx: ModelContext, task: Task) -> None:
        self.spec, self.file, self.ctx, self.task = spec, file, ctx, task
        self.diagnostics: list[Diagnostic] = []
        self.definitions: dict[str, tuple[NodeName, ...]] = {}
        self.budget = WorkBudget()
        self.stated: set[tuple[str, tuple[int, ...]]] = set()  # weights that edges and edge patterns state
        self.edges: list[ResolvedEdge] = []  # declared edges, in order

    def report(self, problem: _Problem) -> None:
        if problem.diagnostic not in self.diagnostics:  # e.g. the header's ablation, inherited by many claims
            self.diagnostics.append(problem.diagnostic)

    def member_nodes(self, member: ast.Member) -> list[NodeName]:
        if isinstance(member, ast.NameRef):
            if member.name in self.definitions:
                return list(self.definitions[member.name])
            if member.name == OUTPUT:
                return [NodeName("hook_logits", v) for v in range(self.ctx.cfg.d_vocab)]
            raise _Problem(error(member.span, "E102", f"unknown name {member.name!r}",
                                 _did_you_mean(member.name, [*self.definitions, OUTPUT])))
        return expand_ref(member, self.ctx)

    def define(self, stmt: ast.NodeDef | ast.GroupDef) -> None:
        members = (stmt.ref,) if isinstance(stmt, ast.NodeDef) else stmt.members
        nodes: list[NodeName] = []
        try:
            for member in members:
                for name in self.member_nodes(member):
                    if not _is_circuit_node(name, self.ctx):
                        raise _Problem(error(member.span, "E510", f"{name} is not a circuit node",
                                             "circuit nodes are residual, q/k/v/z and MLP channels; logits, tokens and "
                                             "attention patterns can only appear in edges and claims"))
                    nodes.append(name)
        except _Problem as p:
            self.report(p)
        self.definitions[stmt.name] = tuple(dict.fromkeys(nodes))

    def edge(self, stmt: ast.EdgePath) -> list[ResolvedEdge]:
        out = []
        for a, b in stmt.pairs():
            try:
                src, dst = self.member_nodes(a), self.member_nodes(b)
            except _Problem as p:
                self.report(p)
                continue
            reached, weights, through = connecting_paths(self.ctx, {str(n) for n in src}, {str(n) for n in dst}, self.budget)
            span = _between(a.span, b.span)
            if not reached:
                self.diagnostics.append(error(span, "E506", f"no non-zero weights connect {a} to {b}",
                                              "in this model nothing written by the first can be read by the second; "
                                              "check the layer order and the channel indices"))
                continue
            through_names = tuple(sorted((parse_node_name(n) for n in through), key=str))
            self.stated |= weights
            out.append(ResolvedEdge(str(a), str(b), tuple(sorted(weights)), through_names, span,
                                    edge_cut(self.ctx.model, src, dst)))
        return out

    def pattern_nodes(self, stmt: ast.IncludeNodes) -> list[NodeName]:
        regex = stmt.regex()
        nodes = self.ctx.circuit_nodes()
        self.budget.spend(len(nodes))
        names = [node for text, node in nodes if regex.fullmatch(text)]
        if not names:
            self.diagnostics.append(error(stmt.span, "E303", f"no circuit node of the model matches {stmt.pattern!r}",
                                          "patterns match node names such as 'blocks.0.mlp.hook_post[*]'"))
        return names

    def pattern_edges(self, stmt: ast.IncludeEdges) -> list[NodeName]:
        """Circuit nodes at either end of the model's weights whose ends match the two patterns."""
        src_re, dst_re = ast.glob_regex(stmt.source), ast.glob_regex(stmt.target)
        weights = self.ctx.weight_edges()
        sources, targets = {u for u, _ in weights}, {v for _, v in weights}
        self.budget.spend(len(weights) + len(sources) + len(targets))
        sources = {u for u in sources if src_re.fullmatch(u)}
        targets = {v for v in targets if dst_re.fullmatch(v)}
        matched = [(u, v) for u, v in weights if u in sources and v in targets]
        ends = {n for pair in matched for n in pair}
        self.budget.spend(FOLLOW_COST * len(ends))  # each is parsed and looked up below
        for u, v in matched:
            data = self.ctx.graph.edges[u, v]
            self.stated.add((data["param"], data["entry"]))
        if not ends:
            self.diagnostics.append(error(stmt.span, "E303", f"no weight of the model connects {stmt.source!r} to {stmt.target!r}",
                                          "check both patterns against node names such as 'blocks.0.mlp.hook_post[*]'; "
                                          "`*` matches any run of characters"))
        names = (parse_node_name(n) for n in sorted(ends))
        return [n for n in names if _is_circuit_node(n, self.ctx)]

    def _circuit_nodes(self, member: ast.Member, problem: str, hint: str) -> tuple[NodeName, ...]:
        """The nodes ``member`` names, each one a circuit node (an activation that can be read and ablated);
        E510 with ``problem`` and ``hint`` at the first that is not."""
        nodes = tuple(self.member_nodes(member))
        for node in nodes:
            if not _is_circuit_node(node, self.ctx):
                raise _Problem(error(member.span, "E510", f"{node} {problem}", hint))
        return nodes

    def claim(self, claim: ast.Claim) -> ResolvedClaim | None:
        settings = self.spec.settings(claim)
        ablation, ablation_task = None, None
        subject: tuple[NodeName, ...] = ()
        logits: tuple[int, ...] = ()
        edge = None
        try:
            if settings.ablation is not None:
                ablation, ablation_task = self._ablation(settings.ablation, claim.conditions)
            body = claim.body
            if isinstance(body, ast.RoleBody):
                subject = self._circuit_nodes(body.subject, "has no activation a role claim can read",
                                              "role claims are about residual, q/k/v/z and MLP channels; use a behaviour "
                                              "claim (logit[...]) for outputs")
            elif isinstance(body, ast.UnneededBody):
                subject = self._circuit_nodes(body.part, "is not a node that can be ablated",
                                              "a part is made of residual, q/k/v/z and MLP channels")
            elif isinstance(body, ast.BehaviourBody):
                sides = [body.left] + ([body.right] if isinstance(body.right, ast.Logit) else [])
                logits = tuple(self._logit(side) for side in sides)
            elif isinstance(body, ast.EdgeBody):
                edge = self._edge_claim(body)
            elif isinstance(body, ast.MinimalBody) and body.unit == "edge" and _has_abs_topk(self.ctx.cfg):
                far = next((e for e in self.edges if e.cut is not None and e.cut.paths), None)
                if far is not None:
                    raise _Problem(error(body.span, "E511", f"`minimal each edge` would cut the paths of `{far.source} -> "
                                         f"{far.target}` through the residual stream, which needs the stream to be "
                                         "linear, and this model has AbsTopK",
                                         "declare edges between adjacent nodes: a residual channel and a node that reads "
                                         "or writes it"))
            for cond in claim.conditions:
                if cond.feature not in self.task.features:
                    raise _Problem(error(cond.feature_span or cond.span, "E507",
                                         f"task {self.task.name!r} has no feature {cond.feature!r}",
                                         _did_you_mean(cond.feature, self.task.features)
                                         or f"features: {', '.join(self.task.features)}"))
            position = claim.position or ast.DEFAULT_POSITION
            if position not in self.task.positions:
                raise _Problem(error(claim.position_span or claim.span, "E508",
                                     f"task {self.task.name!r} has no position {position!r}",
                                     _did_you_mean(position, self.task.positions)
                                     or f"positions: {', '.join(self.task.positions)}"))
        except _Problem as p:
            self.report(p)
            return None
        return ResolvedClaim(claim, claim.kind, ablation, ablation_task, settings.metric, settings.confidence, settings.samples,
                             settings.inherited, subject, logits, position, claim.coverage, claim.in_model, edge)

    def _edge_claim(self, body: ast.EdgeBody) -> EdgeCut:
        """What ablating the claimed edge removes from the model (restricted to the circuit later, by
        :meth:`_edge_in_circuit`): E506 when nothing joins the ends, E511 when only attention does or the
        paths cross AbsTopK."""
        model = self.ctx.model
        cut = edge_cut(model, self.member_nodes(body.source), self.member_nodes(body.target))
        span = _between(body.source.span, body.target.span)
        if cut.empty(model):
            if cut.through_attention:
                raise _Problem(error(span, "E511", f"{body.source} and {body.target} are joined only through a head's "
                                     "attention, which has no weights to ablate",
                                     "claim the edge into the head's q, k or v channels, or out of its z channels"))
            raise _Problem(error(span, "E506", f"no non-zero weights connect {body.source} to {body.target}",
                                 "in this model nothing written by the first can be read by the second; "
                                 "check the layer order and the channel indices"))
        if cut.paths and _has_abs_topk(model.cfg):
            raise _Problem(error(span, "E511", "cutting a path through the residual stream needs the stream to be "
                                 "linear, and this model has AbsTopK",
                                 "claim edges between adjacent nodes: a residual channel and a node that reads or writes it"))
        return cut

    def _edge_in_circuit(self, claim: ResolvedClaim, mask: Mask) -> ResolvedClaim | None:
        """The claim with its edge restricted to what the circuit carries; E518 (None) when that is nothing:
        an end outside the circuit, paths through residual channels outside it, or (`circuit edges`) an
        edge that no statement states."""
        body, model = claim.claim.body, self.ctx.model
        for member in (body.source, body.target):
            for node in self.member_nodes(member):
                if node.hook in (*_INPUT_HOOKS, "hook_logits"):
                    continue  # a circuit always sees its input and is read at the logits
                if not _is_circuit_node(node, self.ctx) or not mask.contains(node):
                    self.diagnostics.append(error(member.span, "E518", f"{node} is not in the circuit, so the edge "
                                                  f"{body.source} -> {body.target} is not an edge of it",
                                                  f"add {member} to the circuit (a `node`, `group` or `edge` statement)"))
                    return None
        span = _between(body.source.span, body.target.span)
        if claim.edge.within(model, Mask(mask.space, mask.nodes, Mask.full(mask.space).edges)).empty(model):
            self.diagnostics.append(error(span, "E518", f"the paths from {body.source} to {body.target} pass only "
                                          "residual channels outside the circuit",
                                          f"add `edge {body.source} -> {body.target}` to the spec: an edge statement adds "
                                          "the residual channels on its paths to the circuit"))
            return None
        kept = claim.edge.within(model, mask)
        if kept.empty(model):
            self.diagnostics.append(error(span, "E518", f"the circuit does not have the edge {body.source} -> "
                                          f"{body.target}: it is `circuit edges`, and no edge statement states it",
                                          f"add `edge {body.source} -> {body.target}` to the spec"))
            return None
        return replace(claim, edge=kept)

    def _ablation(self, ablation: ast.Ablation, conditions: tuple[ast.Condition, ...] = ()
                  ) -> tuple[EngineAblation, str | None]:
        if ablation.distribution is not None and ablation.distribution.corrupted is not None:
            return self._corrupted_ablation(ablation, conditions), self.task.name
        if ablation.method == "resample" and ablation.per_position:
            raise _Problem(error(ablation.span, "E511", "`resample ... per position` is not supported yet",
                                 "`resample from task` already reads each position from the resampled input, "
                                 "aligned at the answer position"))
        task = None
        if ablation.distribution is not None and ablation.distribution.corpus:
            return self._corpus_ablation(ablation), CORPUS_DISTRIBUTION
        if ablation.method != "zero":
            task = self.task.name
            if ablation.distribution is not None and ablation.distribution.task is not None:
                task = ablation.distribution.task
                try:
                    get_task(task)
                except UnknownTaskError as e:
                    raise _Problem(error(ablation.distribution.span, "E502", f"unknown task {task!r}",
                                         _suggestion(e))) from None
        return EngineAblation(ablation.method, ablation.per_position), task

    def _corrupted_ablation(self, ablation: ast.Ablation, conditions: tuple[ast.Condition, ...]) -> EngineAblation:
        """`resample from corrupted(FEATURE)`: the feature is the spec's task's, and some of the task's inputs
        (those meeting the claim's `when`) have partners (a probe of a few seeded inputs, no model run)."""
        distribution = ablation.distribution
        feature = distribution.corrupted
        span = distribution.feature_span or distribution.span
        if ablation.per_position:
            raise _Problem(error(ablation.span, "E511", "`resample from corrupted(...)` takes no `per position`",
                                 "a partner has the input's length and named positions, so every position already "
                                 "reads the same position of the partner; remove `per position`"))
        task = self.task
        if feature not in task.features:
            owners = [t.name for t in all_tasks() if feature in t.features and t.name != task.name]
            listed = f"{task.name}'s features: {', '.join(task.features)}"
            if owners:
                raise _Problem(error(span, "E516", f"{feature!r} is a feature of {', '.join(owners)}, not of {task.name!r}",
                                     f"partners come from the spec's own task; {listed}"))
            raise _Problem(error(span, "E515", f"task {task.name!r} has no feature {feature!r}",
                                 _did_you_mean(feature, task.features) or listed))
        probed = probe(task, feature, conditions)
        if probed.inputs and not probed.found:
            when = " meeting the claim's `when`" if conditions else ""
            positions = ", ".join(task.positions)
            raise _Problem(error(span, "E517", f"none of {probed.inputs} inputs of {task.name!r}{when} has a partner "
                                 f"that differs in {feature!r}",
                                 f"a partner keeps the input's length and its named positions ({positions}), which may "
                                 f"fix {feature}; choose another feature, or give the task a pairing function "
                                 f"(Task.counterfactual, docs/language.md)"))
        return EngineAblation("resample", corrupted=feature)

    def _corpus_ablation(self, ablation: ast.Ablation) -> EngineAblation:
        """`mean over corpus`: a global mean, from means stored with the checkpoint (which must be there)."""
        if ablation.method == "resample":
            raise _Problem(error(ablation.span, "E511", "`resample from corpus` is not supported",
                                 "the checkpoint stores the corpus's means, not inputs to resample; write `mean over corpus`, "
                                 "or `resample from task`"))
        if ablation.per_position:
            raise _Problem(error(ablation.span, "E511", "`mean over corpus per position` is not supported",
                                 "the stored corpus means are one value per channel over all positions; write "
                                 "`mean over corpus`, or `mean over task per position`"))
        try:
            self.ctx.corpus_reference()
        except ModelError as e:
            raise _Problem(error(ablation.span, "E513", e.message, e.hint)) from None
        return EngineAblation("mean", source="corpus")

    def _logit(self, logit: ast.Logit) -> int:
        token = logit.token
        if isinstance(token, ast.TokenLiteral):
            return _token(token, token.span if token.span is not ast.NOWHERE else logit.span, self.ctx)
        if not 0 <= token.value < self.ctx.cfg.d_vocab:
            raise _Problem(error(logit.span, "E504", f"token id {token.value} is out of range",
                                 f"valid token ids: 0..{self.ctx.cfg.d_vocab - 1}"))
        return token.value

    def run(self) -> ResolvedSpec | None:
        nodes: dict[NodeName, None] = {}
        edges = self.edges
        for stmt in self.spec.all_statements():
            if isinstance(stmt, (ast.NodeDef, ast.GroupDef)):
                self.define(stmt)
                nodes.update(dict.fromkeys(self.definitions[stmt.name]))
            elif self.budget.spent:
                continue  # reported once, at the statement that spent it
            try:
                if isinstance(stmt, ast.EdgePath):
                    for member in stmt.members:
                        if isinstance(member, ast.Ref):
                            try:
                                nodes.update(dict.fromkeys(n for n in expand_ref(member, self.ctx) if _is_circuit_node(n, self.ctx)))
                            except _Problem:
                                pass  # reported when the edge itself resolves
                    edges.extend(self.edge(stmt))
                elif isinstance(stmt, ast.IncludeNodes):
                    nodes.update(dict.fromkeys(self.pattern_nodes(stmt)))
                elif isinstance(stmt, ast.IncludeEdges):
                    nodes.update(dict.fromkeys(self.pattern_edges(stmt)))
            except OverBudget:
                self.diagnostics.append(error(stmt.span, "E007", "resolving this statement passes the limit on searching the "
                                              "model's graph for one spec; the edges and patterns after it are not checked",
                                              "use fewer or narrower edges and patterns: an edge between wide references "
                                              "searches much of the model"))
        claims = [c for c in (self.claim(claim) for claim in self.spec.claims) if c is not None]
        if any(d.is_error for d in self.diagnostics):
            return None
        declared = set(nodes)
        for edge in edges:
            nodes.update(dict.fromkeys(edge.through))
        added = tuple(n for n in nodes if n not in declared)
        mask = Mask.from_nodes(self.ctx.space, nodes)  # node ablation: every weight kept, removed nodes carry the reference
        if self.spec.circuit == "edges":  # the circuit is its stated edges: the other weights between its nodes go too
            mask = mask.only_stated_edges(self.stated)
        model = self.ctx.model
        edges = [replace(e, cut=e.cut.within(model, mask) if e.cut is not None else None) for e in edges]
        claims = [c if c.kind != "edge" else self._edge_in_circuit(c, mask) for c in claims]
        if any(d.is_error for d in self.diagnostics):
            return None
        for claim in claims:
            outside = [n for n in claim.subject if not mask.contains(n)]
            if claim.kind == "role" and outside and not claim.in_model:
                self.diagnostics.append(warning(
                    claim.claim.body.subject.span, "W514",
                    f"{outside[0]} is outside the circuit, so in the circuit-alone run this claim reads its ablated value "
                    f"(a constant or a resampled value), not what the node computes",
                    "add the node to the circuit (a `node` or `group`), or end the claim with `in full model` to read it "
                    "in the unablated model"))
        return ResolvedSpec(self.spec, self.file, self.ctx, self.task, dict(self.definitions), tuple(nodes),
                            tuple(edges), tuple(claims), mask, added)


def _has_abs_topk(cfg: ModelConfig) -> bool:
    """AbsTopK somewhere: the residual stream is not linear, so paths through it cannot be cut."""
    return cfg.act_topk is not None or bool(cfg.topk_sites)


def _between(first: ast.Span, last: ast.Span) -> ast.Span:
    """From the start of ``first`` to the end of ``last`` (the two ends of an edge)."""
    return ast.Span(first.file, first.line, first.col, last.end_line, last.end_col)


def _suggestion(e: UnknownTaskError) -> str:
    suggestions = getattr(e, "suggestions", None)
    return f"did you mean {suggestions[0]!r}?" if suggestions else "run `circuitspec tasks` to list them"


def _header_span(spec: ast.Spec, kind) -> ast.Span:
    stmt = next((s for s in spec.statements if isinstance(s, kind)), None)
    if stmt is None:
        return ast.Span(spec.file, 1, 1, 1, 2)
    for attr in ("task_span",):
        if getattr(stmt, attr, None) is not None:
            return getattr(stmt, attr)
    return stmt.span


def resolve(spec: ast.Spec, file: str | None = None) -> tuple[ResolvedSpec | None, list[Diagnostic]]:
    """Bind ``spec`` to its model and task; diagnostics instead of exceptions for every user error."""
    file = file or spec.file
    if spec.model is None or spec.task is None:
        return None, []  # the parser already reported the missing header statement
    try:
        ctx = load_context(spec.model, Path(file).parent)
    except UnknownModelError as e:
        return None, [error(_header_span(spec, ast.ModelStmt), "E501", e.message, e.hint)]
    except CircuitspecError as e:  # the checkpoint exists but cannot be trusted
        return None, [error(_header_span(spec, ast.ModelStmt), "E512", e.message, e.hint)]
    try:
        task = get_task(spec.task)
    except UnknownTaskError as e:
        return None, [error(_header_span(spec, ast.TaskStmt), "E502", f"unknown task {spec.task!r}", _suggestion(e))]
    resolver = Resolver(spec, file, ctx, task)
    resolved = resolver.run()
    return resolved, resolver.diagnostics
