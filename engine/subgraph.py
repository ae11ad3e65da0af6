"""Run a node-ablated circuit by computing only its own channels.

Under node ablation every channel outside the circuit carries its reference value, which does not
depend on the circuit. So each matrix product splits into the kept rows (computed) and a constant
(the reference part, computed once per call), and only the kept output columns are needed:

    x @ W[:, kept_out] = x[kept_in] @ W[kept_in, kept_out] + ref[~kept_in] @ W[~kept_in, kept_out]

Norms need the sum of squares of the whole residual vector: kept channels' squares plus the reference
channels' squares. Attention is computed only for heads with a kept z channel. For small circuits this
is far cheaper than a full masked forward; tests check it equals :func:`run_conditions` to float
tolerance. Edge masks are not supported here (use the full masked forward).
"""

from __future__ import annotations

import math

import torch

from .masks import Mask
from .model import Transformer
from .naming import resid_hook


def _mix(kept: torch.Tensor, ref: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """A full activation from its kept channels (last dim = number kept) and the reference elsewhere."""
    out = ref.expand(*kept.shape[:-1], *keep.shape).clone()
    out[..., keep] = kept
    return out


@torch.no_grad()
def run_circuit(model: Transformer, tokens: torch.Tensor, mask: Mask, reference,
                answer_pos: torch.Tensor | None = None) -> torch.Tensor:
    """Logits of one node-ablated condition, ``[B, T, V]`` (or ``[B, V]`` at ``answer_pos``)."""
    if not all(bool(e.all()) for e in mask.edges.values()):
        raise ValueError("run_circuit handles node masks only; edge masks need run_conditions")
    cfg = model.cfg
    B, T = tokens.shape
    L, H, dh, D = cfg.n_layers, cfg.n_heads, cfg.d_head, cfg.d_model
    ref = lambda hook: reference.value(hook).to(tokens.device)  # noqa: E731
    keep = {h: m.to(tokens.device) for h, m in mask.nodes.items()}

    def norm_scale(kept_x: torch.Tensor, hook: str) -> torch.Tensor:
        """1/rms of the full residual vector whose kept channels are ``kept_x``."""
        k = keep[hook]
        r = ref(hook)
        ref_sq = (r[..., ~k] ** 2).sum(-1, keepdim=True)
        return torch.rsqrt(((kept_x ** 2).sum(-1, keepdim=True) + ref_sq) / D + 1e-5)

    def split_matmul(kept_x: torch.Tensor, hook_in: str, scale: torch.Tensor, W: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
        """(full x * scale) @ W[:, cols], from the kept part of x and the reference for the rest."""
        k = keep[hook_in]
        r = ref(hook_in)
        const = r[..., ~k] @ W[~k][:, cols]
        return (kept_x @ W[k][:, cols] + const) * scale

    pre_hook = resid_hook(0, L)
    embedded = model.embed.W_E[tokens] + model.pos_embed.W_pos[:T]
    resid = embedded[..., keep[pre_hook]]  # kept channels of the residual stream before block 0
    for layer, block in enumerate(model.blocks):
        pre_hook, mid_hook, post_hook = resid_hook(layer, L), f"blocks.{layer}.hook_resid_mid", resid_hook(layer + 1, L)
        a = f"blocks.{layer}.attn"
        attn = block.attn
        scale1 = norm_scale(resid, pre_hook)
        z_keep = keep[f"{a}.hook_z"]
        z_kept = []
        for h in range(H):
            if not bool(z_keep[h].any()):
                continue
            parts = {}
            for kind, W, b in (("q", attn.W_Q, attn.b_Q), ("k", attn.W_K, attn.b_K), ("v", attn.W_V, attn.b_V)):
                ch = keep[f"{a}.hook_{kind}"][h]
                full_ref = ref(f"{a}.hook_{kind}")[..., h, :]
                values = split_matmul(resid, pre_hook, scale1, W[h], ch) + b[h, ch] if bool(ch.any()) else None
                parts[kind] = full_ref.expand(B, T, dh).clone() if values is None else _mix(values, full_ref, ch)
            scores = (parts["q"] @ parts["k"].transpose(-1, -2)) / math.sqrt(dh)
            scores = scores.masked_fill(~attn.causal[:T, :T], float("-inf"))
            if attn.sink is not None:
                sink = attn.sink[h]
                top = torch.maximum(scores.amax(-1, keepdim=True), sink)
                weights = (scores - top).exp()
                pattern = weights / (weights.sum(-1, keepdim=True) + (sink - top).exp())
            else:
                pattern = torch.softmax(scores, -1)
            z_kept.append((h, (pattern @ parts["v"])[..., z_keep[h]]))
        # attn_out for kept resid_mid channels: kept z rows plus the reference z for the rest
        mid_keep = keep[mid_hook]
        z_ref = ref(f"{a}.hook_z")
        W_O = attn.W_O  # [H, dh, D]
        attn_out = (z_ref[..., ~z_keep] @ W_O[~z_keep][:, mid_keep]) + attn.b_O[mid_keep]
        for h, values in z_kept:
            attn_out = attn_out + values @ W_O[h][z_keep[h]][:, mid_keep]
        resid_pre_full = _mix(resid, ref(pre_hook), keep[pre_hook])
        mid = resid_pre_full[..., mid_keep] + attn_out
        scale2 = norm_scale(mid, mid_hook)
        n_keep = keep[f"blocks.{layer}.mlp.hook_post"]
        post_kept = torch.relu(split_matmul(mid, mid_hook, scale2, block.mlp.W_in, n_keep) + block.mlp.b_in[n_keep])
        out_keep = keep[post_hook]
        post_ref = ref(f"blocks.{layer}.mlp.hook_post")
        mlp_out = (post_kept @ block.mlp.W_out[n_keep][:, out_keep] + post_ref[..., ~n_keep] @ block.mlp.W_out[~n_keep][:, out_keep]
                   + block.mlp.b_out[out_keep])
        mid_full = _mix(mid, ref(mid_hook), mid_keep)
        resid = mid_full[..., out_keep] + mlp_out
    final_hook = resid_hook(L, L)
    scale = norm_scale(resid, final_hook)
    logits = split_matmul(resid, final_hook, scale, model.unembed.W_U, torch.ones(cfg.d_vocab, dtype=torch.bool,
                                                                                 device=tokens.device)) + model.unembed.b_U
    if answer_pos is not None:
        logits = logits[torch.arange(B, device=tokens.device), answer_pos]
    return logits
