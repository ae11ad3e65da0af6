"""The peer of benchmarks/ablation_throughput.py: a circuitspec model ported into TransformerLens 2.x.

Needs the benchmark-only extra: ``pip install -c constraints.txt -e '.[bench]'``. The benchmark compares
circuitspec's ``run_conditions`` with what a TransformerLens user writes for the same conditions (one
``run_with_hooks`` forward per condition), so the port must compute the same function: this module
builds it and says where the two libraries differ.

What maps onto what (engine/model.py -> ``HookedTransformerConfig``):

- RMSNorm without a gain -> ``normalization_type="RMSPre"`` (with a gain, ``norm_weight``: ``"RMS"``),
  the same ``eps``. TransformerLens divides by the RMS where circuitspec multiplies by its reciprocal: the
  same up to float rounding.
- ReLU (or exact GELU) MLPs -> ``act_fn="relu"`` (``"gelu"``, which is ``F.gelu``, the erf form).
- Every parameter keeps its name: circuitspec names its weights like TransformerLens (``blocks.0.attn.W_Q``
  [head, d_model, d_head], ``b_Q`` … ``b_U``, a separate ``pos_embed.W_pos``), so the port copies them
  one for one and checks that the two name sets agree. Byte vocabulary (256), no tokenizer.
- The attention sink has no counterpart. circuitspec's head h attends over its keys plus one "nothing"
  key of logit ``sink[h]`` and value 0. :func:`to_hooked_transformer` emulates it with two permanent
  hooks: ``hook_attn_scores`` appends a column holding ``sink[h]`` to the (already causally masked)
  scores, so TransformerLens's own softmax runs over the keys plus the sink; ``hook_pattern`` drops that
  column before the pattern meets ``v``. This is the definition itself, not an approximation: the sink's
  value is 0, so its column contributes nothing to ``z``, and the remaining entries are
  ``exp(s_j) / (sum_i exp(s_i) + exp(sink[h]))``, circuitspec's pattern (rows sum to less than 1). The
  two differ only in the order of floating-point sums (max |logit difference| about 1e-6).

Hook names are the same for every activation circuitspec has, with the same shapes (``[batch, pos,
head, d_head]`` for q/k/v/z, ``[batch, head, query_pos, key_pos]`` for scores and pattern), so a
circuitspec mask's node hooks are TransformerLens hook names as they stand. The differences
(:func:`hook_name_differences` lists them; the benchmark prints them):

- only circuitspec has ``hook_logits``;
- only TransformerLens has, per block, ``hook_attn_in``, ``hook_q_input``, ``hook_k_input``,
  ``hook_v_input``, ``hook_mlp_in`` and ``attn.hook_result`` (points that exist but stay idle unless
  their ``use_*`` options are on, which the port leaves off);
- ``ln*.hook_scale`` holds 1/RMS in circuitspec and the RMS in TransformerLens;
- ``attn.hook_attn_scores`` has one more key column in the port (the sink's) for hooks added after the
  sink's, while ``attn.hook_pattern`` has circuitspec's shape and values (the sink hook runs first);
- circuitspec's imported-model options add ``*_pre_topk`` points, which the port refuses (no AbsTopK).
"""

from __future__ import annotations

from functools import partial

import torch

from circuitspec.engine.ablation import Reference
from circuitspec.engine.masks import Mask
from circuitspec.engine.model import Transformer

try:
    from transformer_lens import HookedTransformer, HookedTransformerConfig
    IMPORT_ERROR = None
except ImportError as error:  # the benchmark says why, and how to install the extra
    HookedTransformer = HookedTransformerConfig = None
    IMPORT_ERROR = error

INSTALL_HINT = "pip install -c constraints.txt -e '.[bench]'"


def unavailable_reason() -> str | None:
    """None when TransformerLens imports; otherwise one line saying why not and how to install it."""
    if IMPORT_ERROR is None:
        return None
    return f"transformer-lens is not importable ({IMPORT_ERROR}); install the extra: {INSTALL_HINT}"


def hooked_config(model: Transformer) -> "HookedTransformerConfig":
    """The ``HookedTransformerConfig`` of a circuitspec model; ``ValueError`` for options TransformerLens
    has no counterpart for (AbsTopK sites, the bigram table)."""
    cfg = model.cfg
    if cfg.act_topk is not None or cfg.topk_sites or cfg.bigram:
        raise ValueError("AbsTopK and the bigram table have no TransformerLens counterpart; "
                         "only models without them can be ported")
    return HookedTransformerConfig(
        n_layers=cfg.n_layers, d_model=cfg.d_model, n_heads=cfg.n_heads, d_head=cfg.d_head, d_mlp=cfg.d_mlp,
        n_ctx=cfg.n_ctx, d_vocab=cfg.d_vocab, act_fn=cfg.act_fn, eps=cfg.norm_eps,
        normalization_type="RMS" if cfg.norm_weight else "RMSPre", positional_embedding_type="standard",
        default_prepend_bos=False, init_weights=False,  # every parameter is copied over below
        device=str(model.device), dtype=model.embed.W_E.dtype, original_architecture="circuitspec")


def _append_sink(scores: torch.Tensor, hook, sink: torch.Tensor) -> torch.Tensor:
    """[batch, head, q, k] -> [batch, head, q, k + 1]: the sink as one more key, of logit sink[head]."""
    B, H, T, _ = scores.shape
    return torch.cat([scores, sink.view(1, H, 1, 1).expand(B, H, T, 1)], dim=-1)


def _drop_sink(pattern: torch.Tensor, hook) -> torch.Tensor:
    """The sink's column carries value 0: drop it, leaving circuitspec's pattern."""
    return pattern[..., :-1]


@torch.no_grad()
def to_hooked_transformer(model: Transformer) -> "HookedTransformer":
    """A ``HookedTransformer`` computing ``model``'s logits (see the module docstring for how)."""
    if IMPORT_ERROR is not None:
        raise ImportError(unavailable_reason())
    peer = HookedTransformer(hooked_config(model))
    ours = {n: p for n, p in model.named_parameters() if not n.endswith("attn.sink")}
    theirs = dict(peer.named_parameters())
    if ours.keys() != theirs.keys():
        raise ValueError(f"parameter names differ: only circuitspec {sorted(ours.keys() - theirs.keys())}, "
                         f"only TransformerLens {sorted(theirs.keys() - ours.keys())}")
    for name, p in theirs.items():
        if p.shape != ours[name].shape:
            raise ValueError(f"{name}: circuitspec {tuple(ours[name].shape)}, TransformerLens {tuple(p.shape)}")
        p.copy_(ours[name])
    if model.cfg.attn_sink:
        for layer, block in enumerate(model.blocks):
            attn = peer.blocks[layer].attn
            attn.hook_attn_scores.add_perma_hook(partial(_append_sink, sink=block.attn.sink.detach().clone()))
            attn.hook_pattern.add_perma_hook(_drop_sink)
    return peer.eval()


@torch.no_grad()
def logit_difference(model: Transformer, peer: "HookedTransformer", tokens: torch.Tensor) -> float:
    """Largest |difference| between the two models' logits at every position of ``tokens``."""
    return float((model(tokens) - peer(tokens)).abs().max())


def hook_name_differences(model: Transformer, peer: "HookedTransformer") -> tuple[list[str], list[str]]:
    """(hook names only circuitspec has, hook names only TransformerLens has)."""
    ours, theirs = set(model.hook_names()), set(peer.hook_dict)
    return sorted(ours - theirs), sorted(theirs - ours)


def _fill_mean(act: torch.Tensor, hook, keep: torch.Tensor, mean: torch.Tensor) -> torch.Tensor:
    """Mean ablation of one hook point: channels outside the circuit (``keep`` False, shaped like the
    channel dimensions) carry the reference mean, broadcast over batch and positions. ``torch.where``
    makes one new tensor and clones nothing; the other common idiom, ``act[..., ~keep] = mean[~keep]``
    in place, measured 1.1-1.5x slower per forward here (boolean indexing finds the indices each call)."""
    return torch.where(keep, act, mean)


def mean_ablation_hooks(mask: Mask, reference: Reference) -> list[tuple[str, partial]]:
    """``fwd_hooks`` for ``run_with_hooks`` that mean-ablate every node outside ``mask``: one hook per hook
    point with ablated channels, what a TransformerLens user writes for one condition. The hook names
    are the same in circuitspec, whose ``model.hooks(dict(...))`` accepts the same functions."""
    hooks = []
    for name, keep in mask.nodes.items():
        if not keep.all():
            mean = reference.value(name)
            hooks.append((name, partial(_fill_mean, keep=keep.to(mean.device), mean=mean)))
    return hooks
