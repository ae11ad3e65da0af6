"""Entailment: do the node claims plus the circuit's weights imply a behaviour claim?

Encoded exactly (Z3 reals) at the answer position of the circuit-alone run, for each encoded block:

    resid_mid  = resid_pre + z @ W_O + b_O                  (last block; ablated channels are constants)
    mlp_pre    = s_mlp * (resid_mid @ W_in) + b_in          post = max(pre, 0) for kept neurons
    resid_out  = resid_mid + post @ W_out + b_out
    logit[t]   = s_out * (resid_out @ W_U[:, t]) + b_U[t]

Unknowns are the kept channels of the residual stream entering the first encoded block and every encoded
block's attention output ``z`` (attention mixes positions, which is not encoded): unconstrained except by the
premises, the spec's role claims at the answer position whose `when` conditions hold on every input the
behaviour claim covers. The norm scales are bounded unknowns; those bounds are the assumptions,
printed with how they were measured and how often a fresh sample of inputs stays inside them. Z3 then
proves "premises ∧ assumptions ⇒ behaviour", or returns a counter-model: values of the unknowns under
which every premise holds and the behaviour fails, i.e. the node claims do not explain the behaviour.
Ablated channels are constants, so zero and (global) mean ablation are encodable; per-position means and
resampling vary with the input and are not.
"""

from __future__ import annotations

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


def _answer_rows(act: torch.Tensor, answer_pos: torch.Tensor) -> np.ndarray:
    return act[torch.arange(act.shape[0]), answer_pos].double().cpu().numpy()


def prove_behaviour(resolved: ResolvedSpec, claim: ResolvedClaim, settings: RunSettings = RunSettings(),
                    timeout_ms: int = 20_000) -> EntailmentResult:
    """Through the last block first (small, fast, and a proof there is a proof); when that finds a
    counter-model, again through every block, whose tighter encoding may still prove it."""
    last = encode_and_solve(resolved, claim, settings, resolved.context.cfg.n_layers - 1, timeout_ms)
    if last.status != "counter-model" or resolved.context.cfg.n_layers == 1:
        return last
    full = encode_and_solve(resolved, claim, settings, 0, timeout_ms)
    if full.status in ("proved", "counter-model"):
        return full
    last.note = (last.note + "; " if last.note else "") + "through the last block only (the encoding of every block: " + (full.note or full.status) + ")"
    return last


def encode_and_solve(resolved: ResolvedSpec, claim: ResolvedClaim, settings: RunSettings, from_layer: int,
                     timeout_ms: int) -> EntailmentResult:
    """Encode blocks ``from_layer`` .. last exactly, with that block's residual input and every encoded
    block's attention output as the unknowns."""
    model, cfg = resolved.context.model, resolved.context.cfg
    result = EntailmentResult(resolved.file, claim.claim.span.line, format_statement(claim.claim), "unknown")
    if cfg.act_topk is not None:
        result.status, result.note = "not encodable", "activation sparsity (AbsTopK) is not encoded"
        return result
    if claim.ablation is None or claim.ablation.kind == "resample" or claim.ablation.per_position:
        result.status, result.note = "not encodable", f"{claim.ablation} ablation does not make removed channels constant"
        return result
    L = cfg.n_layers
    H, dh, D = cfg.n_heads, cfg.d_head, cfg.d_model
    mask = resolved.mask
    z_hooks = {layer: f"blocks.{layer}.attn.hook_z" for layer in range(from_layer, L)}
    unknown_names = [n for n in mask.node_names() if n.hook in (resid_hook(from_layer, L), *z_hooks.values())]
    if len(unknown_names) > MAX_UNKNOWNS:
        result.status, result.note = "not encodable", f"{len(unknown_names)} unknowns (limit {MAX_UNKNOWNS})"
        return result
    scale_hooks = [f"blocks.{layer}.ln2.hook_scale" for layer in range(from_layer, L)] + ["ln_final.hook_scale"]

    def observe(seed):
        examples = sample_examples(resolved.task, settings.samples, seed, claim.claim.conditions)
        if not examples:
            return examples, {}, None
        batch = encode_examples(examples, cfg.n_ctx).to(settings.device)
        reference = make_reference(resolved, claim.ablation, claim.ablation_task, batch, settings)
        _, cache = run_conditions_with_cache(model, batch.tokens, [mask], reference, batch.answer_pos, scale_hooks)
        return examples, {h: _answer_rows(cache[h][0], batch.answer_pos)[:, 0] for h in scale_hooks}, reference

    examples, scales, reference = observe(f"{settings.seed}:prove")
    _, fresh_scales, _ = observe(f"{settings.seed}:prove-check")
    if not examples:
        result.note = "no input satisfies the claim's `when` conditions"
        return result
    solver = z3.Solver()
    solver.set("timeout", timeout_ms)
    W = lambda t: t.detach().double().cpu().numpy()  # noqa: E731
    terms: dict[str, z3.ArithRef] = {}  # node name -> its value at the answer position, as a Z3 term

    def channel(hook: str, index: int, head: int | None = None, computed=None) -> z3.ArithRef:
        """A kept channel's term (``computed``, or a fresh unknown), or its ablated constant."""
        name = NodeName(hook, index, head)
        position = (head, index) if head is not None else (index,)
        if not bool(mask.nodes[hook][position]):
            return z3.RealVal(float(reference.value(hook).double().cpu().numpy()[position]))
        term = computed if computed is not None else z3.Real(str(name))
        terms[str(name)] = term
        return term

    def scale(hook: str) -> z3.ArithRef:
        var = z3.Real(f"scale({hook})")
        values, later = scales[hook], fresh_scales.get(hook, np.array([]))
        lo, hi = float(values.min()), float(values.max())
        solver.add(var >= lo, var <= hi)
        result.assumptions.append(Assumption(f"{hook} in [{lo:.4g}, {hi:.4g}]", f"range on {len(values)} sampled inputs",
                                             float(np.mean((later >= lo) & (later <= hi))) if len(later) else float("nan")))
        return var

    resid = [channel(resid_hook(from_layer, L), i) for i in range(D)]
    for layer, block in enumerate(model.blocks):
        if layer < from_layer:
            continue
        W_O, b_O = W(block.attn.W_O), W(block.attn.b_O)
        W_in, b_in, W_out, b_out = W(block.mlp.W_in), W(block.mlp.b_in), W(block.mlp.W_out), W(block.mlp.b_out)
        z = [[channel(z_hooks[layer], j, h) for j in range(dh)] for h in range(H)]  # attention output: unknowns
        mid_hook = f"blocks.{layer}.hook_resid_mid"
        mid = [channel(mid_hook, i, computed=resid[i] + z3.Sum(
            [float(W_O[h, j, i]) * z[h][j] for h in range(H) for j in range(dh) if W_O[h, j, i] != 0] + [z3.RealVal(float(b_O[i]))]))
            for i in range(D)]
        s_mlp = scale(f"blocks.{layer}.ln2.hook_scale")
        post_hook = f"blocks.{layer}.mlp.hook_post"
        post = []
        for n in range(cfg.d_mlp):
            if not bool(mask.nodes[post_hook][n]):
                post.append(channel(post_hook, n))
                continue
            pre_n = s_mlp * z3.Sum([float(W_in[i, n]) * mid[i] for i in range(D) if W_in[i, n] != 0] + [z3.RealVal(0)]) + float(b_in[n])
            post.append(channel(post_hook, n, computed=z3.If(pre_n > 0, pre_n, z3.RealVal(0))))
        out_hook = resid_hook(layer + 1, L)
        resid = [channel(out_hook, i, computed=mid[i] + z3.Sum(
            [float(W_out[n, i]) * post[n] for n in range(cfg.d_mlp) if W_out[n, i] != 0] + [z3.RealVal(float(b_out[i]))]))
            for i in range(D)]
    s_out = scale("ln_final.hook_scale")
    W_U, b_U = W(model.unembed.W_U), W(model.unembed.b_U)

    def logit(t: int) -> z3.ArithRef:
        return s_out * z3.Sum([float(W_U[i, t]) * resid[i] for i in range(D) if W_U[i, t] != 0] + [z3.RealVal(0)]) + float(b_U[t])

    for premise in resolved.claims:
        if premise.kind != "role" or premise.position != "answer" or premise.ablation != claim.ablation:
            continue
        if not all(satisfies(ex, premise.claim.conditions) for ex in examples):
            continue
        nodes = [terms.get(str(n)) for n in premise.subject]
        if any(t is None for t in nodes):
            continue
        solver.add(z3.And([COMPARISONS[premise.claim.body.op](t, float(premise.claim.body.threshold)) for t in nodes]))
        result.premises.append(format_statement(premise.claim))
    body = claim.claim.body
    right = logit(claim.logits[1]) if len(claim.logits) > 1 else z3.RealVal(float(body.right))
    solver.add(z3.Not(COMPARISONS[body.op](logit(claim.logits[0]), right)))
    answer = solver.check()
    if answer == z3.unsat:
        result.status = "proved"
        if not result.premises:
            result.note = "proved without premises: here the behaviour does not depend on the circuit's unknowns at all"
    elif answer == z3.sat:
        result.status = "counter-model"
        found = solver.model()
        for name in map(str, unknown_names):
            value = found.eval(z3.Real(name), model_completion=True)
            result.counter_model[name] = float(value.as_fraction()) if z3.is_rational_value(value) else float("nan")
    else:
        result.note = f"Z3 gave up ({solver.reason_unknown()})"
    return result


def _node_term(node: NodeName, hooks: dict, pre: list, z: list, keep: dict):
    """The Z3 term of a premise's node, if it is one of the encoded unknowns."""
    if node.hook == hooks["pre"] and keep["pre"][node.index]:
        return pre[node.index]
    if node.hook == hooks["z"] and keep["z"][node.head, node.index]:
        return z[node.head][node.index]
    return None
