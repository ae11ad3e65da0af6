"""Entailment: do the node claims plus the circuit's weights imply a behaviour claim?

Encoded with Z3 reals at the answer position of the circuit-alone run, for each encoded block:

    v_self     = s_attn * (resid_pre @ W_V) + b_V           the head's value at the answer position
    z          = a * v_self + m * u                         attention: a on itself, m on earlier positions
    resid_mid  = resid_pre + z @ W_O + b_O
    mlp_pre    = s_mlp * (resid_mid @ W_in) + b_in          post = max(pre, 0) for kept neurons
    resid_out  = resid_mid + post @ W_out + b_out
    logit[t]   = s_out * (resid_out @ W_U[:, t]) + b_U[t]

Ablated channels are constants (zero or global mean ablation; per-position means and resampling vary
with the input and are "not encodable"). The unknowns are the kept residual channels entering the first
encoded block, each within the range it takes on the task's inputs; the norm scales; and, per head with
a kept output channel, its attention pattern at the answer position and the values it reads elsewhere.
Attention is where positions mix, so it is encoded as bounded unknowns: ``a`` and ``m`` are the
attention weights on the answer position itself and on all earlier positions together (the sink takes
the rest), each within the range measured on the claim's inputs; ``u`` is the weighted mean of the
head's values at earlier positions, within the range of those values measured there. Those ranges
are the assumptions, printed with how they were measured and how often a fresh sample of inputs stays
inside them. The premises are the spec's role claims at the answer position whose `when` conditions
hold on every input the behaviour claim covers. Z3 then proves "premises ∧ assumptions ⇒ behaviour", or
returns a counter-model: values of the unknowns under which every premise holds and the behaviour
fails, i.e. the node claims do not explain the behaviour.

How it stays fast: interval bounds are carried through every term, so most ReLUs have a known sign
and need no case split, and products with a scale or an attention weight are linear relaxations
(``relax``); numbers enter Z3 on a dyadic grid (``grid``); the remaining ReLUs' phases are searched by
branch and bound on a floating-point copy of the linear program, and Z3 confirms where it ends
(``guide``), falling back to the same branch and bound with Z3 solving every LP (``search``).
"""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass, field
from fractions import Fraction

import numpy as np
import z3

from ..engine.naming import NodeName, resid_hook
from ..lang.fmt import format_statement
from ..lang.resolve import ResolvedClaim, ResolvedSpec
from ..verify.examples import COMPARISONS, satisfies
from ..verify.runner import RunSettings, run_group
from .grid import down, near, number, real, up
from .guide import guided_search
from .measure import Measurements, measure
from .relax import Bounded, Relaxation, constant, times

MAX_UNKNOWNS = 400  # residual and attention unknowns; beyond this the encoding is not attempted
MAX_NEURONS = 600  # kept MLP neurons: building and linearizing the coarse closing_quote circuit's two
                   # blocks (1,024) took 25 s before any search; its last block alone (512) takes 3 s


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
    status: str  # "proved", "refuted", "counter-model", "vacuous", "unknown" or "not encodable"
    premises: list[str] = field(default_factory=list)
    assumptions: list[Assumption] = field(default_factory=list)
    counter_model: dict[str, float] = field(default_factory=dict)
    spec_names: dict[str, str] = field(default_factory=dict)  # counter-model node -> its node or group in the spec
    note: str = ""
    seconds: float = 0.0  # wall time of the whole check: measuring, encoding and solving
    z3_seconds: float = 0.0  # of which inside Z3's checks
    z3_checks: int = 0  # Z3 checks (each a linear program, or a pinned candidate)
    case_splits: int = 0  # ReLUs whose sign the interval bounds leave open, in the last encoding tried
    counterexample: dict | None = None  # "refuted": a real task input on which the circuit breaks the claim
    inputs_tried: int = 0  # real task inputs the claim was checked on before any encoding


#: Real task inputs a behaviour claim is checked on before it is encoded: a claim one of them breaks is
#: refuted outright (with that input), whatever a relaxed encoding would have said.
REFUTE_SAMPLES = 300


def prove_behaviour(resolved: ResolvedSpec, claim: ResolvedClaim, settings: RunSettings = RunSettings(),
                    timeout_ms: int = 20_000) -> EntailmentResult:
    """Through the last block first (small, fast, and a proof there is a proof); when that finds a
    counter-model, again through every block, whose tighter encoding may still prove it."""
    started = time.monotonic()
    cfg = resolved.context.cfg
    result = EntailmentResult(resolved.file, claim.claim.span.line, format_statement(claim.claim), "unknown")
    reason = _not_encodable(resolved, claim)
    broken, tried = _refuting_input(resolved, claim, settings)
    if broken is not None:
        result.status, result.counterexample, result.inputs_tried = "refuted", broken, tried
        result.note = (f"the circuit alone breaks the claim on a real task input ({tried} tried before any "
                       f"encoding): {broken['input']!r}")
    elif reason:
        result.status, result.note, result.inputs_tried = "not encodable", reason, tried
    else:
        seen = measure(resolved, claim, settings, range(cfg.n_layers))
        if seen is None:
            result.note = "no input satisfies the claim's `when` conditions"
        else:
            result = encode_and_solve(resolved, claim, seen, cfg.n_layers - 1, timeout_ms)
            if result.status == "counter-model" and cfg.n_layers > 1:
                full = encode_and_solve(resolved, claim, seen, 0, timeout_ms)
                full.z3_seconds += result.z3_seconds
                full.z3_checks += result.z3_checks
                if full.status in ("proved", "counter-model", "vacuous"):
                    result = full
                else:
                    result.z3_seconds, result.z3_checks = full.z3_seconds, full.z3_checks
                    result.note = (result.note + "; " if result.note else "") + "through the last block only (the encoding of every block: " + (full.note or full.status) + ")"
        result.inputs_tried = tried
    result.seconds = time.monotonic() - started
    return result


def _refuting_input(resolved: ResolvedSpec, claim: ResolvedClaim, settings: RunSettings) -> tuple[dict | None, int]:
    """The real task input (meeting the claim's `when`) on which the circuit alone misses the claim by the
    most, among :data:`REFUTE_SAMPLES` drawn with their own seed; ``None`` when it holds on all of them."""
    from ..verify.judge import evaluate_per_input  # judge imports the runner too; kept local to stay acyclic

    data = run_group(resolved, [claim], RunSettings(seed=settings.seed, samples=REFUTE_SAMPLES, baselines=0,
                                                    partial_ablations=0, device=settings.device))
    if not data.examples:
        return None, 0
    evaluated = evaluate_per_input(claim, data)
    if bool(evaluated.holds.all()):
        return None, len(data.examples)
    worst = int(np.argmin(evaluated.margins))
    example = data.examples[worst]
    return ({"input": example.prefix, "features": dict(example.features), **evaluated.values[worst]},
            len(data.examples))


def _not_encodable(resolved: ResolvedSpec, claim: ResolvedClaim) -> str:
    cfg = resolved.context.cfg
    if resolved.edge_level:
        return "an edge-level circuit (`circuit edges`) is not encoded: the encoding keeps every weight between kept nodes"
    if cfg.act_topk is not None or cfg.topk_sites:
        return "activation sparsity (AbsTopK) is not encoded"
    if cfg.act_fn != "relu":
        return f"{cfg.act_fn.upper()} neurons are not encoded (only ReLU is piecewise linear)"
    if cfg.norm_weight:
        return "norm gains (norm_weight) are not encoded"
    if cfg.bigram:
        return "the bigram logit table is not encoded"
    if claim.ablation is None or claim.ablation.kind == "resample" or claim.ablation.per_position:
        return f"{claim.ablation} ablation does not make removed channels constant"
    return ""


def encode_and_solve(resolved: ResolvedSpec, claim: ResolvedClaim, seen: Measurements, from_layer: int,
                     timeout_ms: int) -> EntailmentResult:
    """Encode blocks ``from_layer`` .. last (see the module docstring) and search for a counter-model."""
    result = EntailmentResult(resolved.file, claim.claim.span.line, format_statement(claim.claim), "unknown")
    mask, L = resolved.mask, resolved.context.cfg.n_layers
    resid_in = resid_hook(from_layer, L)
    z_hooks = {f"blocks.{layer}.attn.hook_z" for layer in range(from_layer, L)}
    unknowns = sum(1 for n in mask.node_names() if n.hook == resid_in or n.hook in z_hooks)
    neurons = sum(int(mask.nodes[f"blocks.{layer}.mlp.hook_post"].sum()) for layer in range(from_layer, L))
    if unknowns > MAX_UNKNOWNS or neurons > MAX_NEURONS:
        result.status = "not encodable"
        result.note = (f"{unknowns} unknowns (limit {MAX_UNKNOWNS})" if unknowns > MAX_UNKNOWNS
                       else f"{neurons} kept MLP neurons (limit {MAX_NEURONS})")
        return result
    deadline = time.monotonic() + timeout_ms / 1000
    encoding = Encoding(resolved, claim, seen, from_layer)
    result.premises, result.assumptions, result.case_splits = encoding.premises, encoding.assumptions, len(encoding.relus)
    found = encoding.search(deadline, negate_behaviour=True)
    result.z3_checks = found.checks
    if found.answer == z3.unsat:
        vacuity = encoding.search(deadline, negate_behaviour=False)
        result.z3_checks += vacuity.checks
        if vacuity.answer == z3.unsat:
            result.status = "vacuous"
            result.note = ("the premises cannot hold together in this circuit under the assumptions, so they "
                           "entail anything; a premise or an assumption is wrong")
        else:
            result.status = "proved"
            if not result.premises:
                result.note = "proved without premises: here the behaviour does not depend on the circuit's unknowns at all"
    elif found.answer == z3.sat:
        _confirm(resolved, claim, seen, from_layer, encoding, found.model, deadline, result)
    else:
        result.note = (f"Z3 gave up ({found.reason})" if found.checks else
                       f"the time limit ran out before Z3 was called ({found.reason}): building and bounding the encoding "
                       f"took it all; raise --timeout")
    result.z3_seconds = encoding.z3_seconds
    return result


def _confirm(resolved: ResolvedSpec, claim: ResolvedClaim, seen: Measurements, from_layer: int,
             relaxed: Encoding, model: z3.ModelRef, deadline: float, result: EntailmentResult) -> None:
    """The relaxed encoding lets every product with a norm scale pick its own scale. Confirm its
    counter-model with one scale per norm, the residual unknowns fixed to the values it found: first
    each scale at the average the relaxed model implies, then at the middle of its range."""
    resid_in = resid_hook(from_layer, resolved.context.cfg.n_layers)
    fixed = {name: number(model.eval(term, model_completion=True)) for name, term in relaxed.reported.items()
             if name.startswith(resid_in + "[")}
    fixed = {name: value for name, value in fixed.items() if value is not None}
    tried = set()
    for scales in (relaxed.implied_scales(model), relaxed.middle_scales()):
        if tuple(sorted(scales.items())) in tried:
            continue
        tried.add(tuple(sorted(scales.items())))
        exact = Encoding(resolved, claim, seen, from_layer, scales=scales, fixed=fixed)
        found = exact.search(deadline, negate_behaviour=True)
        relaxed.z3_seconds += exact.z3_seconds
        result.z3_checks += found.checks
        if found.answer == z3.sat:
            result.status = "counter-model"
            result.counter_model = exact.counter_model(found.model) | {f"scale({hook})": float(s) for hook, s in scales.items()}
            defined = {str(node): name for name, nodes in reversed(resolved.definitions.items()) for node in nodes}
            result.spec_names = {key: defined[key] for key in result.counter_model if key in defined}
            return
        if found.answer == z3.unknown:
            result.note = f"Z3 gave up confirming a counter-model ({found.reason})"
            return
    result.note = ("inconclusive: the relaxed encoding has a counter-model that the exact one (each norm scale "
                   "shared by its whole layer) rules out")


class Encoding(Relaxation):
    """One Z3 problem: premises ∧ assumptions (∧ ¬behaviour) over blocks ``from_layer`` .. last.

    Every term carries interval bounds, propagated from the box of the residual entering the first
    encoded block, the measured scale and attention ranges, and the premises. A ReLU whose input
    bounds have one sign is encoded as 0 or as its input; the others go to the branch and bound.

    With ``scales`` None (relaxed), each product of a norm scale s in [lo, hi] with a term x becomes a
    fresh unknown between lo·x and hi·x, which keeps the problem linear but forgets that one scale is
    shared by the whole layer: it admits more, so its proofs are proofs. With ``scales`` (exact, used to
    confirm a counter-model with the residual unknowns ``fixed``), each norm has that one scale.
    """

    def __init__(self, resolved: ResolvedSpec, claim: ResolvedClaim, seen: Measurements, from_layer: int,
                 scales: dict[str, Fraction] | None = None, fixed: dict[str, Fraction] | None = None) -> None:
        self.resolved, self.seen, self.scales = resolved, seen, scales
        self.mask = resolved.mask
        self.cfg = resolved.context.cfg
        super().__init__(z3.Solver())
        self.terms: dict[str, z3.ArithRef] = {}  # node name -> its value at the answer position, as a Z3 term
        self.errors: dict[str, float] = {}  # node name -> its term's rounding error (see Bounded)
        self.reported: dict[str, z3.ArithRef] = {}  # what a counter-model shows
        self.assumptions: list[Assumption] = []
        self.premises: list[str] = []
        self.scale_ranges: dict[str, tuple[float, float]] = {}
        self.scaled_products: dict[str, list[tuple[z3.ArithRef, z3.ArithRef]]] = defaultdict(list)
        self.negated_behaviour: z3.BoolRef | None = None
        self.z3_seconds = 0.0
        self._references: dict[str, np.ndarray] = {}
        self._premise_claims = self._applicable_premises(claim)
        self._premise_bounds = self._bounds_from(self._premise_claims)
        self._encode(claim, from_layer, fixed or {})

    def search(self, deadline: float, negate_behaviour: bool):
        """Branch and bound on the premises and assumptions, with the behaviour negated or (to see
        whether the premises can hold at all) without it."""
        self.solver.push()
        try:
            if negate_behaviour:
                self.solver.add(self.negated_behaviour)
            found = guided_search(self.solver, self.relus, deadline)
            self.z3_seconds += found.z3_seconds
            return found
        finally:
            self.solver.pop()

    def counter_model(self, model: z3.ModelRef) -> dict[str, float]:
        values = {name: number(model.eval(term, model_completion=True)) for name, term in self.reported.items()}
        return {name: float(v) if v is not None else float("nan") for name, v in values.items()}

    def implied_scales(self, model: z3.ModelRef) -> dict[str, Fraction]:
        """Per norm, the average scale the relaxed model's products imply (product / term), on the grid."""
        scales = {}
        for hook, (lo, hi) in self.scale_ranges.items():
            ratios = []
            for product, term in self.scaled_products.get(hook, []):
                p, x = number(model.eval(product, model_completion=True)), number(model.eval(term, model_completion=True))
                if p is not None and x is not None and abs(x) > 1e-6:
                    ratios.append(float(p / x))
            scales[hook] = self._on_grid_within(float(np.mean(ratios)) if ratios else (lo + hi) / 2, lo, hi)
        return scales

    def middle_scales(self) -> dict[str, Fraction]:
        return {hook: self._on_grid_within((lo + hi) / 2, lo, hi) for hook, (lo, hi) in self.scale_ranges.items()}

    @staticmethod
    def _on_grid_within(value: float, lo: float, hi: float) -> Fraction:
        return min(max(near(value), down(lo)), up(hi))

    # ---- premises

    def _applicable_premises(self, claim: ResolvedClaim) -> list[ResolvedClaim]:
        """Role claims at the answer position, in the same run, whose `when` covers every sampled input."""
        return [p for p in self.resolved.claims
                if p.kind == "role" and p.position == "answer" and p.ablation == claim.ablation
                and all(satisfies(ex, p.claim.conditions) for ex in self.seen.claim_inputs.examples)]

    @staticmethod
    def _bounds_from(premises: list[ResolvedClaim]) -> dict[str, tuple[float, float]]:
        """The interval each premise puts on each node it names (a group's claim holds for every node)."""
        bounds: dict[str, tuple[float, float]] = {}
        for premise in premises:
            op, t = premise.claim.body.op, float(premise.claim.body.threshold)
            lo, hi = {">": (t, np.inf), ">=": (t, np.inf), "<": (-np.inf, t), "<=": (-np.inf, t),
                      "==": (t, t)}.get(op, (-np.inf, np.inf))
            for node in premise.subject:
                old = bounds.get(str(node), (-np.inf, np.inf))
                bounds[str(node)] = (max(old[0], lo), min(old[1], hi))
        return bounds

    def _add_premises(self) -> None:
        """Each premise constrains the nodes it names that are encoded. The interval bounds used its
        claims on exactly those nodes, so every one of them is asserted here."""
        for premise in self._premise_claims:
            nodes = [self.as_term(Bounded(self.terms[str(n)], -np.inf, np.inf, self.errors[str(n)]))
                     for n in premise.subject if str(n) in self.terms]
            if not nodes:
                continue
            self.solver.add(z3.And([COMPARISONS[premise.claim.body.op](t, float(premise.claim.body.threshold)) for t in nodes]))
            text = format_statement(premise.claim)
            if len(nodes) < len(premise.subject):
                text += f"  (on the {len(nodes)} of its {len(premise.subject)} nodes that are encoded)"
            self.premises.append(text)

    # ---- building blocks

    def channel(self, hook: str, index: int, head: int | None = None, computed: Bounded | None = None,
                box: tuple[float, float] = (-np.inf, np.inf)) -> Bounded:
        """A channel's value: its ablated constant, or (kept) ``computed`` or a fresh unknown in ``box``,
        its bounds narrowed by the premises on it."""
        name = NodeName(hook, index, head)
        position = (head, index) if head is not None else (index,)
        if not bool(self.mask.nodes[hook][position]):
            return constant(float(self._reference(hook)[position]))
        if computed is None:
            computed = Bounded(z3.Real(str(name)), *box)
            if np.isfinite(box[0]):
                self.solver.add(computed.term >= real(down(box[0])))
            if np.isfinite(box[1]):
                self.solver.add(computed.term <= real(up(box[1])))
        elif computed.constant:  # a kept node the premises may speak of needs a term
            computed = Bounded(self.as_term(computed), computed.lo, computed.hi)
        self.terms[str(name)] = computed.term
        self.errors[str(name)] = computed.err
        p_lo, p_hi = self._premise_bounds.get(str(name), (-np.inf, np.inf))
        return Bounded(computed.term, max(computed.lo, p_lo), min(computed.hi, p_hi), computed.err)

    def _reference(self, hook: str) -> np.ndarray:
        """The ablated value of ``hook``'s channels, converted once per hook (it is read per channel)."""
        if hook not in self._references:
            self._references[hook] = self.seen.claim_inputs.reference.value(hook).double().cpu().numpy()
        return self._references[hook]

    def measured_range(self, key: str, text: str) -> tuple[float, float]:
        """The range ``key`` takes on the sampled inputs, recorded as an assumption."""
        values = self.seen.claim_inputs.answer[key]
        lo, hi = float(values.min()), float(values.max())
        later = self.seen.claim_check.answer[key] if self.seen.claim_check else np.array([])
        self.assumptions.append(Assumption(f"{text} in [{lo:.4g}, {hi:.4g}]", f"range on {len(values)} sampled inputs",
                                           float(np.mean((later >= lo) & (later <= hi))) if len(later) else float("nan")))
        return lo, hi

    def residual_box(self, layer: int, kept: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The range of each kept residual channel entering block ``layer``, over the task's inputs
        without the claim's `when` (so what tells the claim's inputs apart still has to come from the
        premises and the measured attention), recorded as one assumption."""
        values, later = self.seen.task_inputs.entering[layer], self.seen.task_check.entering[layer]
        lo, hi = values.min(0), values.max(0)
        if kept.any():
            inside = ((later[:, kept] >= lo[kept]) & (later[:, kept] <= hi[kept])).all(-1)
            shown = np.flatnonzero(kept)
            self.assumptions.append(Assumption(
                f"{resid_hook(layer, self.cfg.n_layers)}: each of the circuit's {len(shown)} channels within its range "
                f"({', '.join(f'{i} in [{lo[i]:.3g}, {hi[i]:.3g}]' for i in shown[:4])}{', ...' if len(shown) > 4 else ''})",
                f"min and max at the answer position over {len(values)} task inputs with any feature values",
                float(np.mean(inside))))
        return lo, hi

    def norm_scale(self, hook: str) -> str:
        """Record a norm's measured scale range at the answer position; ``scaled`` reads it by ``hook``."""
        self.scale_ranges[hook] = self.measured_range(hook, hook)
        return hook

    def scaled(self, hook: str, x: Bounded) -> Bounded:
        """s · x for the norm scale s of ``hook``: fixed (exact), or relaxed to between lo·x and hi·x."""
        lo, hi = self.scale_ranges[hook]
        if self.scales is None:
            product = self.between(lo, hi, x, "scaled")
            if not x.constant:
                self.scaled_products[hook].append((product.term, x.term))
            return product
        s = self.scales[hook]
        if x.constant:
            return constant(float(s) * x.lo)
        return Bounded(real(s) * x.term, *times(x.lo, x.hi, float(s), float(s)), float(s) * x.err)

    def attention(self, layer: int, head: int, v_self: list[Bounded], kept: np.ndarray) -> list[Bounded | None]:
        """The head's output at the answer position, channel by channel: z = a · v_self + m · u.

        Each product is replaced by its range given the measured ranges of its factors (a times the
        encoded v_self; m times u, both measured: a constant interval). It forgets that ``a`` and ``m``
        are shared by the head's channels, so it can only admit more: a proof stays a proof."""
        seen = self.seen.claim_inputs
        a_lo, a_hi = self.measured_range(f"self({layer}, {head})", f"blocks.{layer} head {head}: attention from the answer position to itself")
        m_lo, m_hi = self.measured_range(f"earlier({layer}, {head})", f"blocks.{layer} head {head}: attention to all earlier positions")
        lo, hi = seen.value_lo[layer][:, head].min(0), seen.value_hi[layer][:, head].max(0)
        v_kept = self.mask.nodes[f"blocks.{layer}.attn.hook_v"][head].cpu().numpy()
        watched = [j for j in range(self.cfg.d_head) if v_kept[j] and kept[j]]
        if watched:
            check = self.seen.claim_check
            inside = [] if check is None else ((check.value_lo[layer][:, head, watched] >= lo[watched]).all(-1)
                                               & (check.value_hi[layer][:, head, watched] <= hi[watched]).all(-1))
            self.assumptions.append(Assumption(
                f"blocks.{layer} head {head}: values at earlier positions within their ranges "
                f"({', '.join(f'v{j} in [{lo[j]:.3g}, {hi[j]:.3g}]' for j in watched)})",
                f"min and max over the earlier positions of {len(seen.examples)} sampled inputs",
                float(np.mean(inside)) if len(inside) else float("nan")))
        z: list[Bounded | None] = []
        for j in range(self.cfg.d_head):
            if not kept[j]:
                z.append(None)
                continue
            u_lo, u_hi = (float(lo[j]), float(hi[j])) if v_kept[j] else (v_self[j].lo, v_self[j].hi)
            corners = [m * u for m in (m_lo, m_hi) for u in (u_lo, u_hi)]
            earlier_part = z3.FreshReal("attended_earlier")
            self.solver.add(earlier_part >= real(down(min(corners))), earlier_part <= real(up(max(corners))))
            own = self.between(a_lo, a_hi, v_self[j], "attended_self")
            z.append(Bounded(own.term + earlier_part, own.lo + min(corners), own.hi + max(corners)))
        return z

    # ---- the circuit, block by block

    def _encode(self, claim: ResolvedClaim, from_layer: int, fixed: dict[str, Fraction]) -> None:
        model, cfg, mask, channel = self.resolved.context.model, self.cfg, self.mask, self.channel
        L, H, dh, D = cfg.n_layers, cfg.n_heads, cfg.d_head, cfg.d_model
        W = lambda t: t.detach().double().cpu().numpy()  # noqa: E731
        resid_in = resid_hook(from_layer, L)
        box_lo, box_hi = self.residual_box(from_layer, mask.nodes[resid_in].cpu().numpy().astype(bool))
        resid = [channel(resid_in, i, box=(float(box_lo[i]), float(box_hi[i]))) for i in range(D)]
        for i in range(D):
            name = str(NodeName(resid_in, i))
            if name in self.terms:
                self.reported[name] = resid[i].term
                if name in fixed:  # tight bounds decide most ReLUs of the confirmation
                    self.solver.add(resid[i].term == real(fixed[name]))
                    resid[i] = Bounded(resid[i].term, float(fixed[name]), float(fixed[name]))
        one = np.ones(1)
        for layer in range(from_layer, L):
            block = model.blocks[layer]
            W_V, b_V, W_O, b_O = W(block.attn.W_V), W(block.attn.b_V), W(block.attn.W_O), W(block.attn.b_O)
            W_in, b_in, W_out, b_out = W(block.mlp.W_in), W(block.mlp.b_in), W(block.mlp.W_out), W(block.mlp.b_out)
            z_hook, v_hook = f"blocks.{layer}.attn.hook_z", f"blocks.{layer}.attn.hook_v"
            z_kept = mask.nodes[z_hook].cpu().numpy()
            s_attn = self.norm_scale(f"blocks.{layer}.ln1.hook_scale") if z_kept.any() else None
            z: list[Bounded] = []
            for h in range(H):
                if not z_kept[h].any():
                    z.extend(channel(z_hook, j, h) for j in range(dh))
                    continue
                v_self = [channel(v_hook, j, h, computed=self.linear(
                    one, [self.scaled(s_attn, self.linear(W_V[h, :, j], resid))], float(b_V[h, j]))) for j in range(dh)]
                mixed = self.attention(layer, h, v_self, z_kept[h])
                for j in range(dh):
                    z.append(channel(z_hook, j, h, computed=mixed[j]))  # ablated: constants
                    if z_kept[h, j]:
                        self.reported[str(NodeName(z_hook, j, h))] = z[-1].term
            W_O_flat = W_O.reshape(H * dh, D)
            mid = [channel(f"blocks.{layer}.hook_resid_mid", i, computed=self.linear(
                np.concatenate([one, W_O_flat[:, i]]), [resid[i]] + z, float(b_O[i]))) for i in range(D)]
            s_mlp = self.norm_scale(f"blocks.{layer}.ln2.hook_scale")
            post_hook = f"blocks.{layer}.mlp.hook_post"
            post = []
            for n in range(cfg.d_mlp):
                if not bool(mask.nodes[post_hook][n]):
                    post.append(channel(post_hook, n))
                    continue
                pre = self.linear(one, [self.scaled(s_mlp, self.linear(W_in[:, n], mid))], float(b_in[n]))
                post.append(channel(post_hook, n, computed=self.relu(pre)))
            resid = [channel(resid_hook(layer + 1, L), i, computed=self.linear(
                np.concatenate([one, W_out[:, i]]), [mid[i]] + post, float(b_out[i]))) for i in range(D)]
        s_out = self.norm_scale("ln_final.hook_scale")
        W_U, b_U = W(model.unembed.W_U), W(model.unembed.b_U)
        self._add_premises()
        body, first = claim.claim.body, claim.logits[0]
        if len(claim.logits) > 1:  # one scale for both logits: compare s·(read1 - read2) + (b1 - b2) with 0
            second = claim.logits[1]
            read, bias, right = W_U[:, first] - W_U[:, second], float(b_U[first] - b_U[second]), z3.RealVal(0)
        else:
            read, bias, right = W_U[:, first], float(b_U[first]), z3.RealVal(str(body.right))
        left = self.linear(one, [self.scaled(s_out, self.linear(read, resid))], bias)  # scaled() has no error
        self.negated_behaviour = z3.Not(COMPARISONS[body.op](self.as_term(left), right))
