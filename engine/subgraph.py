"""Run a node-ablated circuit by computing only its own channels.

Under node ablation every channel outside the circuit carries its reference value, which does not
depend on the circuit. So each matrix product splits into the kept rows (computed) and a constant
(the reference part, computed once per call), and only the kept output columns are needed:

    x @ W[:, kept_out] = x[kept_in] @ W[kept_in, kept_out] + ref[~kept_in] @ W[~kept_in, kept_out]

Norms need the sum of squares of the whole residual vector: kept channels' squares plus the reference
channels' squares. Attention is computed only for heads with a kept z channel. For small circuits this
is far cheaper than a full masked forward; tests check it equals :func:`run_conditions` to float
tolerance. Edge masks are not supported here (use the full masked forward), nor is AbsTopK
(``act_topk``, ``topk_sites``): which channels it keeps depends on every channel, so a model with it
always takes the full masked forward (:func:`supports`). Norm gains, ``norm_eps``, GELU and the bigram
table are computed here as the model computes them.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch

from .masks import Mask
from .model import ModelConfig, Transformer, blocked_keys, sink_softmax
from .naming import resid_hook


def supports(cfg: ModelConfig) -> bool:
    """Whether :func:`run_circuit` computes this model exactly (it does unless AbsTopK is on)."""
    return cfg.act_topk is None and not cfg.topk_sites


def _mix(kept: torch.Tensor, ref: torch.Tensor, index: torch.Tensor, width: int) -> torch.Tensor:
    """A full activation (last dim ``width``) from its kept channels (last dim = number kept, at the
    positions ``index``) and the reference elsewhere."""
    out = ref.expand(*kept.shape[:-1], width).clone()
    return out.index_copy_(-1, index, kept)


def can_capture(mask: Mask, hooks: Sequence[str]) -> bool:
    """Whether :func:`run_circuit` can return the activations at ``hooks`` under ``mask``: node hooks
    only (residual stream, q/k/v/z, MLP neurons: the mask space's hooks), and query, key and value
    channels kept only in heads whose output is kept too (the subgraph computes no other head)."""
    for hook in hooks:
        if hook not in mask.nodes:
            return False
        if hook.endswith((".attn.hook_q", ".attn.hook_k", ".attn.hook_v")):
            z = mask.nodes[hook.rsplit(".", 1)[0] + ".hook_z"].any(-1)  # [H]: heads the subgraph computes
            if bool((mask.nodes[hook].any(-1) & ~z).any()):
                return False
    return True


@torch.no_grad()
def run_circuit(model: Transformer, tokens: torch.Tensor, mask: Mask, reference,
                answer_pos: torch.Tensor | None = None, memo: dict | None = None,
                capture: Sequence[str] = (), captured: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
    """Logits of one node-ablated condition, ``[B, T, V]`` (or ``[B, V]`` at ``answer_pos``).

    Attention runs for the heads with a kept z channel only, all of them at once; their query, key
    and value channels are computed where kept (one product per layer and kind) and carry the
    reference elsewhere. ``memo``: a dict kept by the caller across calls with the same ``mask`` (the
    length groups of one batch): the kept channels' indices, the weight blocks and biases the circuit
    reads, and the reference's constant parts while the caller passes the same reference object, are
    then gathered once instead of on every call. ``capture`` (hooks :func:`can_capture` accepts): their
    activations, ``[B, T, *channels]`` as the full masked forward has them (kept channels computed, the
    reference elsewhere), are written into ``captured``; every position is then computed.
    """
    if memo is None:
        memo = {}
    if capture and captured is None:
        raise ValueError("capture needs a dict to write into")
    want = set(capture)

    def cached(key, compute):
        if key not in memo:
            memo[key] = compute()
        return memo[key]

    if not cached("node mask", lambda: all(bool(e.all()) for e in mask.edges.values())):
        raise ValueError("run_circuit handles node masks only; edge masks need run_conditions")
    cfg = model.cfg
    if not supports(cfg):
        raise ValueError("run_circuit does not compute AbsTopK; models with it need run_conditions")
    B, T = tokens.shape
    L, H, dh, D = cfg.n_layers, cfg.n_heads, cfg.d_head, cfg.d_model
    device = tokens.device
    ref = lambda hook: reference.value(hook).to(device)  # noqa: E731
    refs = memo.setdefault("references", {})  # keeps each reference alive, so its id stays its own
    rid = id(reference)
    refs[rid] = reference
    keep = cached("keep", lambda: {h: m.to(device) for h, m in mask.nodes.items()})

    def index(hook: str) -> torch.Tensor:
        """Positions of the kept channels of ``hook`` (flattened over heads for q/k/v/z)."""
        return cached(("index", hook), lambda: keep[hook].flatten().nonzero().flatten())

    def norm_scale(kept_x: torch.Tensor, hook: str) -> torch.Tensor:
        """1/rms of the full residual vector whose kept channels are ``kept_x``."""
        ref_sq = cached(("ref_sq", rid, hook), lambda: (ref(hook)[..., ~keep[hook]] ** 2).sum(-1, keepdim=True))
        return torch.rsqrt(((kept_x ** 2).sum(-1, keepdim=True) + ref_sq) / D + cfg.norm_eps)

    def gained(norm, W: torch.Tensor) -> torch.Tensor:
        """``W`` (rows: the norm's output channels) with the norm's gain folded in, when it has one."""
        return W if norm.w is None else norm.w[:, None] * W

    def split_matmul(kept_x: torch.Tensor, hook_in: str, scale: torch.Tensor, W: torch.Tensor, name: str) -> torch.Tensor:
        """(full x * scale) @ W, from the kept part of x and the reference for the rest; ``W``: the weight's
        columns that are needed, all of its rows."""
        k = keep[hook_in]
        kept_w = cached(("kept", name), lambda: W[k])
        const = cached(("const", rid, name), lambda: ref(hook_in)[..., ~k] @ W[~k])
        return (kept_x @ kept_w + const) * scale

    # the last block after attention only at the answer, when the reference is the same at every position
    at = answer_pos if answer_pos is not None and L > 0 and reference.same_at_every_position(cfg) and not want else None

    def heads_view(hook: str, heads: torch.Tensor, computed: torch.Tensor | None, kept_only: bool = False) -> torch.Tensor:
        """[B, T, H, dh]: the reference, with ``computed`` [B, T, n * dh] for ``heads`` (only at the hook's
        kept channels when ``kept_only``); the reference alone when no head is computed."""
        out = ref(hook).expand(B, T, H, dh).clone()
        if computed is not None and len(heads):
            mine = computed.view(B, T, len(heads), dh)
            if kept_only:
                mine = torch.where(keep[hook][heads], mine, out[:, :, heads])
            out[:, :, heads] = mine
        return out
    rows = torch.arange(B, device=device)
    pre_hook = resid_hook(0, L)
    embed = cached(("kept", "embed"), lambda: (model.embed.W_E.index_select(1, index(pre_hook)),
                                                model.pos_embed.W_pos.index_select(1, index(pre_hook))))
    resid = embed[0][tokens] + embed[1][:T]  # kept channels of the residual stream before block 0
    for layer, block in enumerate(model.blocks):
        pre_hook, mid_hook, post_hook = resid_hook(layer, L), f"blocks.{layer}.hook_resid_mid", resid_hook(layer + 1, L)
        a = f"blocks.{layer}.attn"
        attn = block.attn
        tail = at is not None and layer == L - 1
        scale1 = norm_scale(resid, pre_hook)
        z_hook = f"{a}.hook_z"
        heads = cached(("heads", a), lambda: keep[z_hook].any(-1).nonzero().flatten())  # heads with a kept z channel
        n = len(heads)
        mid_keep = keep[mid_hook]
        W_O = attn.W_O  # [H, dh, D]
        attn_out = cached(("const", rid, f"{a}.W_O"),  # the ablated z channels' share, and the bias
                          lambda: (ref(z_hook)[..., ~keep[z_hook]] @ W_O[~keep[z_hook]][:, mid_keep]) + attn.b_O[mid_keep])
        resid_at = resid[rows, at].unsqueeze(1) if tail else None  # the last block's queries and output: at the answers
        if n:
            parts = []
            for kind, W, b in (("q", attn.W_Q, attn.b_Q), ("k", attn.W_K, attn.b_K), ("v", attn.W_V, attn.b_V)):
                hook = f"{a}.hook_{kind}"
                x, x_scale = resid, scale1
                if tail and kind == "q":  # as the model does
                    x, x_scale = resid_at, scale1[rows, at].unsqueeze(1)
                # the reference of these heads, [*lead, n * dh], with the kept channels computed over it
                full = ref(hook).index_select(-2, heads).flatten(-2)
                full = full.expand(B, x.shape[1], n * dh).clone()
                cols = cached(("cols", hook), lambda: keep[hook][heads].flatten().nonzero().flatten())
                if len(cols):
                    W_cols = cached(("W", hook), lambda: gained(block.ln1, W[heads].permute(1, 0, 2).reshape(D, n * dh)[:, cols]))
                    bias = cached(("b", hook), lambda: b[heads].flatten()[cols])
                    full.index_copy_(-1, cols, split_matmul(x, pre_hook, x_scale, W_cols, f"{a}.W_{kind}") + bias)
                parts.append(full.view(B, x.shape[1], n, dh).transpose(1, 2))  # [B, n, T (queries at the answer: 1), dh]
                if hook in want:
                    captured[hook] = heads_view(hook, heads, full)
            q, k, v = parts
            scores = (q @ k.transpose(-1, -2)) / math.sqrt(dh)
            scores = scores.masked_fill(blocked_keys(attn.causal, T, at if tail else None), float("-inf"))
            if attn.sink is not None:
                pattern = sink_softmax(scores, cached(("sink", a), lambda: attn.sink[heads].view(1, n, 1, 1)))
            else:
                pattern = torch.softmax(scores, -1)
            z = (pattern @ v).transpose(1, 2).reshape(B, q.shape[2], n * dh)
            if z_hook in want:
                captured[z_hook] = heads_view(z_hook, heads, z, kept_only=True)
            z_cols = cached(("cols", z_hook), lambda: keep[z_hook][heads].flatten().nonzero().flatten())
            W_z = cached(("kept", f"{a}.W_O"), lambda: W_O[heads].reshape(n * dh, D)[z_cols][:, mid_keep])
            attn_out = attn_out + z.index_select(-1, z_cols) @ W_z
        else:  # no head computed: every q/k/v/z channel of the layer carries the reference
            for kind in "qkvz":
                if f"{a}.hook_{kind}" in want:
                    captured[f"{a}.hook_{kind}"] = heads_view(f"{a}.hook_{kind}", heads, None)
        # attn_out for kept resid_mid channels: kept z rows plus the reference z for the rest
        if tail:
            resid = resid_at
        resid_pre_full = _mix(resid, ref(pre_hook), index(pre_hook), D)
        if pre_hook in want:
            captured[pre_hook] = resid_pre_full
        mid = resid_pre_full.index_select(-1, index(mid_hook)) + attn_out
        scale2 = norm_scale(mid, mid_hook)
        mlp_hook = f"blocks.{layer}.mlp.hook_post"
        n_keep = keep[mlp_hook]
        W_in = cached(("W", f"blocks.{layer}.mlp.W_in"), lambda: gained(block.ln2, block.mlp.W_in[:, n_keep]))
        b_in = cached(("b", f"blocks.{layer}.mlp.W_in"), lambda: block.mlp.b_in[n_keep])
        post_kept = block.mlp.act(split_matmul(mid, mid_hook, scale2, W_in, f"blocks.{layer}.mlp.W_in") + b_in)
        out_keep = keep[post_hook]
        W_out = block.mlp.W_out
        mlp_out = (post_kept @ cached(("kept", f"blocks.{layer}.mlp.W_out"), lambda: W_out[n_keep][:, out_keep])
                   + cached(("const", rid, f"blocks.{layer}.mlp.W_out"),
                            lambda: ref(mlp_hook)[..., ~n_keep] @ W_out[~n_keep][:, out_keep])
                   + cached(("b", f"blocks.{layer}.mlp.W_out"), lambda: block.mlp.b_out[out_keep]))
        mid_full = _mix(mid, ref(mid_hook), index(mid_hook), D)
        if mid_hook in want:
            captured[mid_hook] = mid_full
        if mlp_hook in want:
            captured[mlp_hook] = _mix(post_kept, ref(mlp_hook), index(mlp_hook), cfg.d_mlp)
        resid = mid_full.index_select(-1, index(post_hook)) + mlp_out
    final_hook = resid_hook(L, L)
    if final_hook in want:
        captured[final_hook] = _mix(resid, ref(final_hook), index(final_hook), D)
    scale = norm_scale(resid, final_hook)
    W_U = cached(("W", "unembed.W_U"), lambda: gained(model.ln_final, model.unembed.W_U))
    logits = split_matmul(resid, final_hook, scale, W_U, "unembed.W_U") + model.unembed.b_U
    if at is not None:
        tokens = tokens[rows, at].unsqueeze(1)
    if model.unembed.bigram is not None:
        logits = logits + model.unembed.bigram[tokens]
    if at is not None:
        return logits[:, 0]
    if answer_pos is not None:
        logits = logits[rows, answer_pos]
    return logits
