"""Entailment: do the node claims plus the circuit's weights imply a behaviour claim?

Encoded exactly (Z3 reals) at the answer position of the circuit-alone run, for each encoded block:

    v_self     = s_attn * (resid_pre @ W_V) + b_V           the head's value at the answer position
    z          = a * v_self + m * u                         attention: a on itself, m on earlier positions
    resid_mid  = resid_pre + z @ W_O + b_O
    mlp_pre    = s_mlp * (resid_mid @ W_in) + b_in          post = max(pre, 0) for kept neurons
    resid_out  = resid_mid + post @ W_out + b_out
    logit[t]   = s_out * (resid_out @ W_U[:, t]) + b_U[t]

Ablated channels are constants (zero or global mean ablation; per-position means and resampling vary
with the input and are "not encodable"). The unknowns are the kept residual channels entering the first
encoded block, the norm scales, and, per head with a kept output channel, its attention pattern at the
answer position and the values it reads elsewhere. Attention is where positions mix, so it is encoded
as bounded unknowns: ``a`` and ``m`` are the attention weights on the answer position itself and on all
earlier positions together (the sink takes the rest), each within the range measured on the task's
inputs; ``u`` is the weighted mean of the head's values at
earlier positions, which lies within the range of those values measured on the task. Those ranges are
the assumptions, printed with how they were measured and how often a fresh sample of inputs stays
inside them. The premises are the spec's role claims at the answer position whose `when` conditions
hold on every input the behaviour claim covers. Z3 then proves "premises ∧ assumptions ⇒ behaviour", or
returns a counter-model: values of the unknowns under which every premise holds and the behaviour
fails, i.e. the node claims do not explain the behaviour.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import torch
import z3

from ..engine.ablation import run_conditions_with_cache
from ..engine.batch import encode_examples
from ..engine.naming import NodeName, resid_hook
from ..lang.fmt import format_statement
from ..lang.resolve import ResolvedClaim, ResolvedSpec
from ..verify.examples import COMPARISONS, sample_examples, satisfies
from ..verify.runner import RunSettings, make_reference

MAX_UNKNOWNS = 400  # beyond this the nonlinear problem is not worth Z3's time here
MEASURE_FACTOR = 4  # the assumptions' ranges come from this many times the claim's sample count


@dataclass
class Assumption:
    text: str
    measured: str
    fresh_fraction: float  # share of a fresh sample of inputs on which it holds


@dataclass
class EntailmentResult:
    file: str
    line: int
    claim: str
    status: str  # "proved", "counter-model", "unknown" or "not encodable"
    premises: list[str] = field(default_factory=list)
    assumptions: list[Assumption] = field(default_factory=list)
    counter_model: dict[str, float] = field(default_factory=dict)
    note: str = ""
    seconds: float = 0.0  # wall time of the whole check: measuring, encoding and solving


def prove_behaviour(resolved: ResolvedSpec, claim: ResolvedClaim, settings: RunSettings = RunSettings(),
                    timeout_ms: int = 20_000) -> EntailmentResult:
    """Through the last block first (small, fast, and a proof there is a proof); when that finds a
    counter-model, again through every block, whose tighter encoding may still prove it."""
    started = time.monotonic()
    result = encode_and_solve(resolved, claim, settings, resolved.context.cfg.n_layers - 1, timeout_ms)
    if result.status == "counter-model" and resolved.context.cfg.n_layers > 1:
        full = encode_and_solve(resolved, claim, settings, 0, timeout_ms)
        if full.status in ("proved", "counter-model"):
            result = full
        else:
            result.note = (result.note + "; " if result.note else "") + "through the last block only (the encoding of every block: " + (full.note or full.status) + ")"
    result.seconds = time.monotonic() - started
    return result


@dataclass
class _Observation:
    """What the circuit-alone run shows at the answer position on a sample of inputs."""

    examples: list
    reference: object
    answer: dict[str, np.ndarray]  # scale hook -> [n]; "self/earlier(L, h)" -> attention mass [n]
    value_lo: dict[int, np.ndarray]  # layer -> [n, H, dh]: min / max of each value channel over the
    value_hi: dict[int, np.ndarray]  # positions before the answer, per input


def _observe(resolved: ResolvedSpec, claim: ResolvedClaim, settings: RunSettings, seed: str, layers: range,
             samples: int) -> _Observation | None:
    model, cfg = resolved.context.model, resolved.context.cfg
    examples = sample_examples(resolved.task, samples, seed, claim.claim.conditions)
    if not examples:
        return None
    batch = encode_examples(examples, cfg.n_ctx).to(settings.device)
    reference = make_reference(resolved, claim.ablation, claim.ablation_task, batch, settings)
    scale_hooks = [f"blocks.{layer}.{norm}.hook_scale" for layer in layers for norm in ("ln1", "ln2")] + ["ln_final.hook_scale"]
    attn_hooks = [f"blocks.{layer}.attn.{name}" for layer in layers for name in ("hook_pattern", "hook_v")]
    _, cache = run_conditions_with_cache(model, batch.tokens, [resolved.mask], reference, batch.answer_pos,
                                         scale_hooks + attn_hooks)
    rows, pos = torch.arange(len(examples)), batch.answer_pos
    answer = {h: cache[h][0][rows, pos, 0].double().cpu().numpy() for h in scale_hooks}
    earlier = torch.arange(cfg.n_ctx)[None, :cache[attn_hooks[0]].shape[-1]] < pos[:, None]  # [n, T]
    value_lo, value_hi = {}, {}
    for layer in layers:
        pattern = cache[f"blocks.{layer}.attn.hook_pattern"][0][rows, :, pos]  # [n, H, T]: from the answer position
        for h in range(cfg.n_heads):
            answer[f"self({layer}, {h})"] = pattern[rows, h, pos].double().cpu().numpy()
            answer[f"earlier({layer}, {h})"] = (pattern[:, h] * earlier).sum(-1).double().cpu().numpy()
        v = cache[f"blocks.{layer}.attn.hook_v"][0].double()  # [n, T, H, dh]
        hide = (~earlier)[:, :, None, None]
        value_lo[layer] = v.masked_fill(hide, float("inf")).amin(1).cpu().numpy()
        value_hi[layer] = v.masked_fill(hide, float("-inf")).amax(1).cpu().numpy()
    return _Observation(examples, reference, answer, value_lo, value_hi)


def z3_constant(term: z3.ArithRef) -> float:
    """The value of a term that is a constant (an ablated channel)."""
    return _number(z3.simplify(term))


def _number(value) -> float:
    if z3.is_rational_value(value):
        return float(value.as_fraction())
    if z3.is_algebraic_value(value):
        return float(value.approx(12).as_fraction())
    return float("nan")


def encode_and_solve(resolved: ResolvedSpec, claim: ResolvedClaim, settings: RunSettings, from_layer: int,
                     timeout_ms: int) -> EntailmentResult:
    """Encode blocks ``from_layer`` .. last (see the module docstring) and ask Z3 for a counter-model."""
    cfg = resolved.context.cfg
    result = EntailmentResult(resolved.file, claim.claim.span.line, format_statement(claim.claim), "unknown")
    if cfg.act_topk is not None:
        result.status, result.note = "not encodable", "activation sparsity (AbsTopK) is not encoded"
        return result
    if claim.ablation is None or claim.ablation.kind == "resample" or claim.ablation.per_position:
        result.status, result.note = "not encodable", f"{claim.ablation} ablation does not make removed channels constant"
        return result
    mask, L = resolved.mask, cfg.n_layers
    layers = range(from_layer, L)
    resid_in = resid_hook(from_layer, L)
    unknown_names = [n for n in mask.node_names() if n.hook == resid_in or n.hook in {f"blocks.{l}.attn.hook_z" for l in layers}]
    if len(unknown_names) > MAX_UNKNOWNS:
        result.status, result.note = "not encodable", f"{len(unknown_names)} unknowns (limit {MAX_UNKNOWNS})"
        return result
    # ranges are extremes, so they are measured on more inputs than they are checked on
    seen = _observe(resolved, claim, settings, f"{settings.seed}:prove", layers, MEASURE_FACTOR * settings.samples)
    if seen is None:
        result.note = "no input satisfies the claim's `when` conditions"
        return result
    fresh = _observe(resolved, claim, settings, f"{settings.seed}:prove-check", layers, settings.samples)
    started = time.monotonic()
    encoding = _Encoding(resolved, claim, seen, fresh, from_layer, relaxed=True)
    answer = encoding.check(timeout_ms)
    result.premises, result.assumptions = encoding.premises, encoding.assumptions
    if answer == z3.unsat:
        result.status = "proved"
        if not result.premises:
            result.note = "proved without premises: here the behaviour does not depend on the circuit's unknowns at all"
    elif answer == z3.sat:
        # The relaxed encoding lets every product with a norm scale pick its own scale; confirm the
        # counter-model exactly, with the residual unknowns fixed to the values it found.
        found = encoding.counter_model()
        exact = _Encoding(resolved, claim, seen, fresh, from_layer, relaxed=False,
                          fixed={k: v for k, v in found.items() if k.startswith(resid_in + "[")})
        left = max(1000, timeout_ms - int(1000 * (time.monotonic() - started)))
        confirmed = exact.check(left)
        if confirmed == z3.sat:
            result.status, result.counter_model = "counter-model", exact.counter_model()
        elif confirmed == z3.unsat:
            result.note = ("inconclusive: the relaxed encoding has a counter-model that the exact one (each norm scale "
                           "shared by its whole layer) rules out")
        else:
            result.note = f"Z3 gave up confirming a counter-model ({exact.solver.reason_unknown()})"
    else:
        result.note = f"Z3 gave up ({encoding.solver.reason_unknown()})"
    return result


class _Encoding:
    """One Z3 problem: premises ∧ assumptions ∧ ¬behaviour over blocks ``from_layer`` .. last.

    ``relaxed``: each product of a norm scale s in [lo, hi] with a linear term x becomes a fresh unknown
    between lo·x and hi·x (its exact range for that x), which keeps the problem linear between ReLUs
    but forgets that one scale is shared by the whole layer; it admits more, so its proofs are proofs.
    Exact: the scales are unknowns multiplying their terms (nonlinear), used to confirm counter-models
    with the residual unknowns ``fixed``.
    """

    def __init__(self, resolved: ResolvedSpec, claim: ResolvedClaim, seen: _Observation, fresh: _Observation | None,
                 from_layer: int, relaxed: bool, fixed: dict[str, float] | None = None) -> None:
        self.resolved, self.seen, self.fresh, self.relaxed = resolved, seen, fresh, relaxed
        self.mask = resolved.mask
        self.cfg = resolved.context.cfg
        self.solver = z3.Solver()
        self.terms: dict[str, z3.ArithRef] = {}  # node name -> its value at the answer position, as a Z3 term
        self.reported: dict[str, z3.ArithRef] = {}  # what a counter-model shows
        self.assumptions: list[Assumption] = []
        self.premises: list[str] = []
        self._references: dict[str, np.ndarray] = {}
        self._encode(claim, from_layer, fixed or {})

    def check(self, timeout_ms: int):
        self.solver.set("timeout", timeout_ms)
        return self.solver.check()

    def counter_model(self) -> dict[str, float]:
        found = self.solver.model()
        return {name: _number(found.eval(term, model_completion=True)) for name, term in self.reported.items()}

    # ---- building blocks

    def channel(self, hook: str, index: int, head: int | None = None, computed=None) -> z3.ArithRef:
        """A kept channel's term (``computed``, or a fresh unknown), or its ablated constant."""
        name = NodeName(hook, index, head)
        position = (head, index) if head is not None else (index,)
        if not bool(self.mask.nodes[hook][position]):
            return z3.RealVal(float(self._reference(hook)[position]))
        term = computed if computed is not None else z3.Real(str(name))
        self.terms[str(name)] = term
        return term

    def _reference(self, hook: str) -> np.ndarray:
        """The ablated value of ``hook``'s channels, converted once per hook (it is read per channel)."""
        if hook not in self._references:
            self._references[hook] = self.seen.reference.value(hook).double().cpu().numpy()
        return self._references[hook]

    def measured_range(self, key: str, text: str) -> tuple[float, float]:
        """The range ``key`` takes on the sampled inputs, recorded as an assumption."""
        values = self.seen.answer[key]
        lo, hi = float(values.min()), float(values.max())
        later = self.fresh.answer[key] if self.fresh else np.array([])
        self.assumptions.append(Assumption(f"{text} in [{lo:.4g}, {hi:.4g}]", f"range on {len(values)} sampled inputs",
                                           float(np.mean((later >= lo) & (later <= hi))) if len(later) else float("nan")))
        return lo, hi

    def norm_scale(self, hook: str):
        """A norm's scale at the answer position: (lo, hi) when relaxed, else a bounded unknown."""
        lo, hi = self.measured_range(hook, hook)
        if self.relaxed:
            return lo, hi
        var = z3.Real(f"scale({hook})")
        self.solver.add(var >= lo, var <= hi)
        return var

    def scaled(self, scale, term: z3.ArithRef) -> z3.ArithRef:
        """scale · term: exact, or relaxed to a fresh unknown between lo·term and hi·term (0 < lo <= hi)."""
        if not self.relaxed:
            return scale * term
        return self.between(scale[0], scale[1], term, "scaled")

    def between(self, lo: float, hi: float, term: z3.ArithRef, prefix: str) -> z3.ArithRef:
        """A fresh unknown equal to c·term for some c in [lo, hi] (lo, hi >= 0)."""
        product = z3.FreshReal(prefix)
        self.solver.add(z3.If(term >= 0, z3.And(product >= lo * term, product <= hi * term),
                              z3.And(product >= hi * term, product <= lo * term)))
        return product

    def attention(self, layer: int, head: int, v_self: list, kept: np.ndarray) -> list:
        """The head's output at the answer position, channel by channel: z = a · v_self + m · u.

        Each product is replaced by its exact range given the measured ranges of its factors (a times the
        encoded v_self; m times u, both measured: a constant interval). It forgets that ``a`` and ``m``
        are shared by the head's channels, so it can only admit more: a proof stays a proof."""
        a_lo, a_hi = self.measured_range(f"self({layer}, {head})", f"blocks.{layer} head {head}: attention from the answer position to itself")
        m_lo, m_hi = self.measured_range(f"earlier({layer}, {head})", f"blocks.{layer} head {head}: attention to all earlier positions")
        lo, hi = self.seen.value_lo[layer][:, head].min(0), self.seen.value_hi[layer][:, head].max(0)
        v_kept = self.mask.nodes[f"blocks.{layer}.attn.hook_v"][head].cpu().numpy()
        watched = [j for j in range(self.cfg.d_head) if v_kept[j] and kept[j]]
        if watched:
            fresh = self.fresh
            inside = [] if not fresh else ((fresh.value_lo[layer][:, head, watched] >= lo[watched]).all(-1)
                                           & (fresh.value_hi[layer][:, head, watched] <= hi[watched]).all(-1))
            self.assumptions.append(Assumption(
                f"blocks.{layer} head {head}: values at earlier positions within their ranges "
                f"({', '.join(f'v{j} in [{lo[j]:.3g}, {hi[j]:.3g}]' for j in watched)})",
                f"min and max over the earlier positions of {len(self.seen.examples)} sampled inputs",
                float(np.mean(inside)) if len(inside) else float("nan")))
        z = []
        for j in range(self.cfg.d_head):
            if not kept[j]:
                z.append(None)
                continue
            u_lo, u_hi = (float(lo[j]), float(hi[j])) if v_kept[j] else (z3_constant(v_self[j]),) * 2
            corners = [m * u for m in (m_lo, m_hi) for u in (u_lo, u_hi)]
            earlier_part = z3.FreshReal("attended_earlier")
            self.solver.add(earlier_part >= min(corners), earlier_part <= max(corners))
            z.append(self.between(a_lo, a_hi, v_self[j], "attended_self") + earlier_part)
        return z

    # ---- the circuit, block by block

    def _encode(self, claim: ResolvedClaim, from_layer: int, fixed: dict[str, float]) -> None:
        model, cfg, mask, channel = self.resolved.context.model, self.cfg, self.mask, self.channel
        L, H, dh, D = cfg.n_layers, cfg.n_heads, cfg.d_head, cfg.d_model
        W = lambda t: t.detach().double().cpu().numpy()  # noqa: E731
        resid_in = resid_hook(from_layer, L)
        resid = [channel(resid_in, i) for i in range(D)]
        for i in range(D):
            name = str(NodeName(resid_in, i))
            if name in self.terms:
                self.reported[name] = resid[i]
                if name in fixed:
                    self.solver.add(resid[i] == fixed[name])
        for layer in range(from_layer, L):
            block = model.blocks[layer]
            W_V, b_V, W_O, b_O = W(block.attn.W_V), W(block.attn.b_V), W(block.attn.W_O), W(block.attn.b_O)
            W_in, b_in, W_out, b_out = W(block.mlp.W_in), W(block.mlp.b_in), W(block.mlp.W_out), W(block.mlp.b_out)
            z_hook, v_hook = f"blocks.{layer}.attn.hook_z", f"blocks.{layer}.attn.hook_v"
            z_kept = mask.nodes[z_hook].cpu().numpy()
            s_attn = self.norm_scale(f"blocks.{layer}.ln1.hook_scale") if z_kept.any() else None
            z = []
            for h in range(H):
                if not z_kept[h].any():
                    z.append([channel(z_hook, j, h) for j in range(dh)])
                    continue
                v_self = [channel(v_hook, j, h, computed=self.scaled(s_attn, z3.Sum(
                    [float(W_V[h, i, j]) * resid[i] for i in range(D) if W_V[h, i, j] != 0] + [z3.RealVal(0)])) + float(b_V[h, j]))
                    for j in range(dh)]
                mixed = self.attention(layer, h, v_self, z_kept[h])
                z.append([channel(z_hook, j, h, computed=mixed[j]) for j in range(dh)])  # ablated: constants
                for j in range(dh):
                    if z_kept[h, j]:
                        self.reported[str(NodeName(z_hook, j, h))] = z[h][j]
            mid = [channel(f"blocks.{layer}.hook_resid_mid", i, computed=resid[i] + z3.Sum(
                [float(W_O[h, j, i]) * z[h][j] for h in range(H) for j in range(dh) if W_O[h, j, i] != 0] + [z3.RealVal(float(b_O[i]))]))
                for i in range(D)]
            s_mlp = self.norm_scale(f"blocks.{layer}.ln2.hook_scale")
            post_hook = f"blocks.{layer}.mlp.hook_post"
            post = []
            for n in range(cfg.d_mlp):
                if not bool(mask.nodes[post_hook][n]):
                    post.append(channel(post_hook, n))
                    continue
                pre_n = self.scaled(s_mlp, z3.Sum([float(W_in[i, n]) * mid[i] for i in range(D) if W_in[i, n] != 0] + [z3.RealVal(0)])) + float(b_in[n])
                post.append(channel(post_hook, n, computed=z3.If(pre_n > 0, pre_n, z3.RealVal(0))))
            resid = [channel(resid_hook(layer + 1, L), i, computed=mid[i] + z3.Sum(
                [float(W_out[n, i]) * post[n] for n in range(cfg.d_mlp) if W_out[n, i] != 0] + [z3.RealVal(float(b_out[i]))]))
                for i in range(D)]
        s_out = self.norm_scale("ln_final.hook_scale")
        W_U, b_U = W(model.unembed.W_U), W(model.unembed.b_U)

        def read(t: int) -> z3.ArithRef:
            return z3.Sum([float(W_U[i, t]) * resid[i] for i in range(D) if W_U[i, t] != 0] + [z3.RealVal(0)])

        for premise in self.resolved.claims:
            if premise.kind != "role" or premise.position != "answer" or premise.ablation != claim.ablation:
                continue
            if not all(satisfies(ex, premise.claim.conditions) for ex in self.seen.examples):
                continue
            nodes = [self.terms.get(str(n)) for n in premise.subject]
            if any(t is None for t in nodes):
                continue
            self.solver.add(z3.And([COMPARISONS[premise.claim.body.op](t, float(premise.claim.body.threshold)) for t in nodes]))
            self.premises.append(format_statement(premise.claim))
        body, first = claim.claim.body, claim.logits[0]
        if len(claim.logits) > 1:  # one scale for both logits: compare s·(read1 - read2) + (b1 - b2) with 0
            second = claim.logits[1]
            left, right = self.scaled(s_out, read(first) - read(second)) + float(b_U[first] - b_U[second]), z3.RealVal(0)
        else:
            left, right = self.scaled(s_out, read(first)) + float(b_U[first]), z3.RealVal(float(body.right))
        self.solver.add(z3.Not(COMPARISONS[body.op](left, right)))
