"""Entailment through the last block: do the node claims plus the circuit's weights imply a behaviour claim?

Encoded exactly (Z3 reals) at the answer position of the circuit-alone run:

    resid_mid  = resid_pre + z @ W_O + b_O                  (last block; ablated channels are constants)
    mlp_pre    = s_mlp * (resid_mid @ W_in) + b_in          post = max(pre, 0) for kept neurons
    resid_out  = resid_mid + post @ W_out + b_out
    logit[t]   = s_out * (resid_out @ W_U[:, t]) + b_U[t]

Unknowns are the kept channels entering the block (``resid_pre``, ``z``): unconstrained except by the
premises, the spec's role claims at the answer position whose `when` conditions hold on every input the
behaviour claim covers. The two norm scales are bounded unknowns; those bounds are the assumptions,
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
from ..verify.examples import sample_examples, satisfies
from ..verify.runner import RunSettings, make_reference
from .consistency import _CMP

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
    model, cfg = resolved.context.model, resolved.context.cfg
    result = EntailmentResult(resolved.file, claim.claim.span.line, format_statement(claim.claim), "unknown")
    if cfg.act_topk is not None:
        result.status, result.note = "not encodable", "activation sparsity (AbsTopK) is not encoded"
        return result
    if claim.ablation is None or claim.ablation.kind == "resample" or claim.ablation.per_position:
        result.status, result.note = "not encodable", f"{claim.ablation} ablation does not make removed channels constant"
        return result
    L = cfg.n_layers - 1
    block = model.blocks[L]
    hooks = {"pre": resid_hook(L, cfg.n_layers), "z": f"blocks.{L}.attn.hook_z", "mid": f"blocks.{L}.hook_resid_mid",
             "post": f"blocks.{L}.mlp.hook_post", "out": resid_hook(cfg.n_layers, cfg.n_layers),
             "s_mlp": f"blocks.{L}.ln2.hook_scale", "s_out": "ln_final.hook_scale"}
    mask = resolved.mask
    unknown_names = [n for n in mask.node_names() if n.hook in (hooks["pre"], hooks["z"])]
    if len(unknown_names) > MAX_UNKNOWNS:
        result.status, result.note = "not encodable", f"{len(unknown_names)} unknowns entering the last block (limit {MAX_UNKNOWNS})"
        return result

    def observe(seed):
        examples = sample_examples(resolved.task, settings.samples, seed, claim.claim.conditions)
        batch = encode_examples(examples, cfg.n_ctx).to(settings.device)
        reference = make_reference(resolved, claim.ablation, claim.ablation_task, batch, settings)
        _, cache = run_conditions_with_cache(model, batch.tokens, [mask], reference, batch.answer_pos, list(hooks.values()))
        rows = {k: _answer_rows(cache[h][0], batch.answer_pos) for k, h in hooks.items()}
        return examples, rows, reference

    examples, rows, reference = observe(f"{settings.seed}:prove")
    fresh_examples, fresh, _ = observe(f"{settings.seed}:prove-check")
    if not examples:
        result.note = "no input satisfies the claim's `when` conditions"
        return result

    def ref_value(hook: str) -> np.ndarray:  # the constant an ablated channel carries
        return reference.value(hook).double().cpu().numpy()

    solver = z3.Solver()
    solver.set("timeout", timeout_ms)
    assumptions: list[Assumption] = []

    W = lambda t: t.detach().double().cpu().numpy()  # noqa: E731
    W_O, b_O, W_in, b_in = W(block.attn.W_O), W(block.attn.b_O), W(block.mlp.W_in), W(block.mlp.b_in)
    W_out, b_out, W_U, b_U = W(block.mlp.W_out), W(block.mlp.b_out), W(model.unembed.W_U), W(model.unembed.b_U)
    H, dh, D = cfg.n_heads, cfg.d_head, cfg.d_model
    keep = {k: mask.nodes[h].numpy() for k, h in hooks.items() if h in mask.nodes}
    const = {k: ref_value(hooks[k]) for k in ("pre", "z", "mid", "post", "out")}
    pre = [z3.Real(str(NodeName(hooks["pre"], i))) if keep["pre"][i] else z3.RealVal(float(const["pre"][i])) for i in range(D)]
    z = [[z3.Real(str(NodeName(hooks["z"], j, h))) if keep["z"][h, j] else z3.RealVal(float(const["z"][h, j]))
          for j in range(dh)] for h in range(H)]
    mid = []
    for i in range(D):
        if not keep["mid"][i]:
            mid.append(z3.RealVal(float(const["mid"][i])))
            continue
        terms = [float(W_O[h, j, i]) * z[h][j] for h in range(H) for j in range(dh) if W_O[h, j, i] != 0]
        mid.append(pre[i] + z3.Sum(terms + [z3.RealVal(float(b_O[i]))]))
    s_mlp, s_out = z3.Real("scale(ln2)"), z3.Real("scale(ln_final)")
    for var, key, label in ((s_mlp, "s_mlp", f"blocks.{L}.ln2.hook_scale"), (s_out, "s_out", "ln_final.hook_scale")):
        values, later = rows[key][:, 0], fresh[key][:, 0]
        lo, hi = float(values.min()), float(values.max())
        solver.add(var >= lo, var <= hi)
        assumptions.append(Assumption(f"{label} in [{lo:.4g}, {hi:.4g}]", f"range on {len(values)} sampled inputs",
                                      float(np.mean((later >= lo) & (later <= hi))) if len(later) else float("nan")))
    post = []
    for n in range(cfg.d_mlp):
        if not keep["post"][n]:
            post.append(z3.RealVal(float(const["post"][n])))
            continue
        weighted = [float(W_in[i, n]) * mid[i] for i in range(D) if W_in[i, n] != 0]
        pre_n = s_mlp * z3.Sum(weighted + [z3.RealVal(0)]) + float(b_in[n])
        post.append(z3.If(pre_n > 0, pre_n, z3.RealVal(0)))
    out = []
    for i in range(D):
        if not keep["out"][i]:
            out.append(z3.RealVal(float(const["out"][i])))
            continue
        writes = [float(W_out[n, i]) * post[n] for n in range(cfg.d_mlp) if W_out[n, i] != 0]
        out.append(mid[i] + z3.Sum(writes + [z3.RealVal(float(b_out[i]))]))

    def logit(t: int) -> z3.ArithRef:
        return s_out * z3.Sum([float(W_U[i, t]) * out[i] for i in range(D) if W_U[i, t] != 0] + [z3.RealVal(0)]) + float(b_U[t])

    for premise in resolved.claims:
        if premise.kind != "role" or premise.position != "answer" or premise.ablation != claim.ablation:
            continue
        if not all(satisfies(ex, premise.claim.conditions) for ex in examples):
            continue
        nodes = [_node_term(n, hooks, pre, z, keep) for n in premise.subject]
        if any(t is None for t in nodes):
            continue
        solver.add(z3.And([_CMP[premise.claim.body.op](t, float(premise.claim.body.threshold)) for t in nodes]))
        result.premises.append(format_statement(premise.claim))
    body = claim.claim.body
    right = logit(claim.logits[1]) if len(claim.logits) > 1 else z3.RealVal(float(body.right))
    solver.add(z3.Not(_CMP[body.op](logit(claim.logits[0]), right)))
    result.assumptions = assumptions
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
