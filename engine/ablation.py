"""Ablated forward passes: many circuit conditions in one batched pass through the model's own hooks.

A *condition* is a :class:`~.masks.Mask`. Running K conditions repeats the batch K times along the batch
dimension and attaches one hook per hook point that, for every condition at once,

- replaces non-circuit channels (node mask False) by the reference value, and
- at the output of each weight matrix whose edge mask is not all True, swaps the ablated edges'
  contribution for the same edges applied to the reference input:
  ``y = x @ W - (x - r) @ (W * ~E)``, i.e. kept edges see the real input, ablated edges the reference.

The reference (:class:`Reference`) is the activation a removed part carries instead: zero, the mean over
a reference batch (over all positions, or per position), or the activation of a resampled reference
input aligned at the answer position. Because the masked pass is the model's own forward with hooks,
an all-True mask reproduces the plain forward exactly.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Sequence

import torch
import torch.nn.functional as F

from .masks import Mask, MaskSpace
from .model import Transformer

AblationKind = Literal["zero", "mean", "resample"]
AblationSource = Literal["task", "corpus"]

# For each weight matrix: the hook holding its actual input, the hook its output lands in, and how a
# per-condition weight stack [K, *W.shape] applies to an input [K, B, T, ...].
_MATMUL = {
    "W_Q": ("ln1.hook_normalized", "attn.hook_q", "kbtd,khde->kbthe"),
    "W_K": ("ln1.hook_normalized", "attn.hook_k", "kbtd,khde->kbthe"),
    "W_V": ("ln1.hook_normalized", "attn.hook_v", "kbtd,khde->kbthe"),
    "W_O": ("attn.hook_z", "hook_attn_out", "kbthe,khed->kbtd"),
    "W_in": ("ln2.hook_normalized", "mlp.hook_pre", "kbtd,kdm->kbtm"),
    "W_out": ("mlp.hook_post", "hook_mlp_out", "kbtm,kmd->kbtd"),
}
_TOKENS, _POSITIONS = "<tokens>", "<positions>"  # one-hot inputs of the embeddings


def matmul_sites(model: Transformer) -> dict[str, tuple[str, str, str]]:
    """Weight name -> (input hook, output hook, einsum) for every weight matrix of ``model``."""
    sites = {"embed.W_E": (_TOKENS, "hook_embed", "kbtv,kvd->kbtd"),
             "pos_embed.W_pos": (_POSITIONS, "hook_pos_embed", "kbtp,kpd->kbtd"),
             "unembed.W_U": ("ln_final.hook_normalized", "hook_logits", "kbtd,kdv->kbtv")}
    for layer in range(model.cfg.n_layers):
        for w, (src, dst, eq) in _MATMUL.items():
            block = f"blocks.{layer}."
            module = "attn." if w in ("W_Q", "W_K", "W_V", "W_O") else "mlp."
            sites[block + module + w] = (block + src, block + dst, eq)
    return sites


@dataclass(frozen=True)
class Ablation:
    """How removed parts are replaced: ``zero``, ``mean`` or ``resample``; optionally per position.

    ``source`` says where a mean comes from: ``"task"`` (a reference batch of task inputs, computed by
    :meth:`Reference.compute`) or ``"corpus"`` (the pretraining corpus: means stored with the checkpoint,
    :mod:`.corpus_means`; only a global ``mean`` has them). ``str()`` is the method alone, as before;
    what the distribution is, is said next to it (a task name, or the pretraining corpus).
    """

    kind: AblationKind = "mean"
    per_position: bool = False
    source: AblationSource = "task"

    def __post_init__(self) -> None:
        if self.kind not in ("zero", "mean", "resample"):
            raise ValueError(f"unknown ablation {self.kind!r} (zero, mean, resample)")
        if self.source not in ("task", "corpus"):
            raise ValueError(f"unknown ablation source {self.source!r} (task, corpus)")
        if self.source == "corpus" and (self.kind != "mean" or self.per_position):
            raise ValueError("only a global mean comes from the pretraining corpus (`mean over corpus`)")

    def __str__(self) -> str:
        return self.kind + (" per position" if self.per_position and self.kind == "mean" else "")


def _lengths_mask(lengths: torch.Tensor, width: int) -> torch.Tensor:
    return torch.arange(width, device=lengths.device)[None, :] < lengths[:, None]


class Reference:
    """Reference activations for every hook point a masked pass may need, for one target batch.

    ``value(hook)`` broadcasts against that hook's activation for the target batch, ``[B, T, *channels]``.
    """

    def __init__(self, values: dict[str, torch.Tensor], ablation: Ablation) -> None:
        self.values = values
        self.ablation = ablation

    def value(self, hook: str) -> torch.Tensor:
        return self.values[hook]

    @classmethod
    @torch.no_grad()
    def compute(cls, model: Transformer, ablation: Ablation, tokens: torch.Tensor, lengths: torch.Tensor,
                ref_tokens: torch.Tensor | None = None, ref_lengths: torch.Tensor | None = None) -> "Reference":
        """References for target ``tokens`` [B, T] (true lengths ``lengths``) from a reference batch.

        ``mean``: average over the reference batch's real (non-padding) positions, globally or per
        position (positions no reference example reaches use the global mean). ``resample``: row b of the
        target reads row b of the reference batch, right-aligned so both answer positions coincide;
        target positions before the reference starts use the global mean. ``zero`` needs no batch.
        """
        B, T = tokens.shape
        hooks = _needed_hooks(model)
        if ablation.kind == "zero":
            _, shapes = model.run_with_cache(tokens[:1, :1], hooks)
            values = {h: torch.zeros_like(a[0, 0]) for h, a in shapes.items()}
            values[_TOKENS] = torch.zeros(model.cfg.d_vocab, device=tokens.device)
            values[_POSITIONS] = torch.zeros(model.cfg.n_ctx, device=tokens.device)
            return cls(values, ablation)
        if ref_tokens is None or ref_lengths is None:
            raise ValueError(f"{ablation} ablation needs a reference batch")
        _, cache = model.run_with_cache(ref_tokens, hooks)
        cache[_TOKENS] = F.one_hot(ref_tokens, model.cfg.d_vocab).float()
        cache[_POSITIONS] = F.one_hot(torch.arange(ref_tokens.shape[1], device=ref_tokens.device), model.cfg.n_ctx).float().expand(ref_tokens.shape[0], -1, -1)
        real = _lengths_mask(ref_lengths, ref_tokens.shape[1])
        values = {}
        for hook, act in cache.items():
            values[hook] = _reduce(act, real, ablation, lengths, ref_lengths, T)
        return cls(values, ablation)


def _needed_hooks(model: Transformer) -> list[str]:
    space = MaskSpace.for_config(model.cfg)
    inputs = [src for src, _, _ in matmul_sites(model).values() if not src.startswith("<")]
    return sorted(set(space.node_shapes) | set(inputs))


def _reduce(act: torch.Tensor, real: torch.Tensor, ablation: Ablation, lengths: torch.Tensor,
            ref_lengths: torch.Tensor, T: int) -> torch.Tensor:
    """Reference value of one hook from reference activations ``act`` [Bref, Tref, *channels]."""
    extra = [1] * (act.dim() - 2)
    w = real.float().view(*real.shape, *extra)
    global_mean = (act * w).sum((0, 1)) / w.sum((0, 1)).clamp(min=1)
    if ablation.kind == "mean" and not ablation.per_position:
        return global_mean
    if ablation.kind == "mean":
        per_pos = (act * w).sum(0) / w.sum(0).clamp(min=1)
        per_pos = torch.where(real.any(0).view(-1, *extra), per_pos, global_mean)
        out = global_mean.expand(max(T, per_pos.shape[0]), *global_mean.shape).clone()
        out[: per_pos.shape[0]] = per_pos
        return out[:T]
    B = lengths.shape[0]
    if act.shape[0] < B:
        raise ValueError(f"resample ablation needs at least {B} reference examples, got {act.shape[0]}")
    src = torch.arange(T, device=act.device)[None, :] - lengths[:, None] + ref_lengths[:B, None]
    valid = (src >= 0) & (src < ref_lengths[:B, None])
    gathered = act[torch.arange(B, device=act.device)[:, None], src.clamp(0, act.shape[1] - 1)]
    return torch.where(valid.view(B, T, *extra), gathered, global_mean)


def _node_hook(mask: torch.Tensor, ref: torch.Tensor, k: int):
    """Replace non-circuit channels: ``mask`` [k, *channels] (True = keep) over activations [k*B, T, *channels]."""
    view = (k, 1, 1, *mask.shape[1:])

    def hook(x: torch.Tensor, name: str) -> torch.Tensor:
        xs = x.view(k, -1, *x.shape[1:])
        return torch.where(mask.view(view), xs, ref).view_as(x)

    return hook


def _edge_hooks(weight_ablated: torch.Tensor, ref: torch.Tensor, equation: str, k: int, saved: dict, key: str):
    """Input hook saves the matmul input; output hook swaps ablated edges onto the reference input."""

    def save(x: torch.Tensor, name: str) -> None:
        saved[key] = x.view(k, -1, *x.shape[1:])

    def correct(y: torch.Tensor, name: str) -> torch.Tensor:
        delta = torch.einsum(equation, saved.pop(key) - ref, weight_ablated)
        return (y.view(k, -1, *y.shape[1:]) - delta).view_as(y)

    return save, correct


SUBGRAPH_MAX_FRACTION = 0.25  # below this share of kept nodes, computing only the circuit is cheaper


def _small_node_mask(mask: Mask) -> bool:
    if not all(bool(e.all()) for e in mask.edges.values()):
        return False
    kept = sum(int(t.sum()) for t in mask.nodes.values())
    return kept <= SUBGRAPH_MAX_FRACTION * sum(t.numel() for t in mask.nodes.values())


def run_conditions(model: Transformer, tokens: torch.Tensor, masks: Sequence[Mask], reference: Reference,
                   answer_pos: torch.Tensor | None = None, max_tokens: int | None = None) -> torch.Tensor:
    """Logits of every condition: ``[K, B, T, V]``, or ``[K, B, V]`` read at ``answer_pos`` [B]."""
    return run_conditions_with_cache(model, tokens, masks, reference, answer_pos, (), max_tokens)[0]


@torch.no_grad()
def run_conditions_with_cache(model: Transformer, tokens: torch.Tensor, masks: Sequence[Mask], reference: Reference,
                              answer_pos: torch.Tensor | None = None, capture: Sequence[str] = (),
                              max_tokens: int | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Logits as :func:`run_conditions`, plus the (ablated) activations at the ``capture`` hooks,
    each ``[K, B, T, *channels]``.

    Conditions run ``max_tokens // (B*T)`` at a time (at least one) in a single batched forward each.
    The default suits the device: on a CPU one condition per pass is fastest (measured: stacking
    conditions only adds memory traffic), on a GPU large stacks keep it busy.
    """
    if not capture and all(_small_node_mask(m) for m in masks):
        from .subgraph import run_circuit  # computes only the circuit's channels (see subgraph.py)
        return torch.stack([run_circuit(model, tokens, m, reference, answer_pos) for m in masks]), {}
    if max_tokens is None:
        max_tokens = 1 << 18 if tokens.device.type == "cuda" else 1
    B, T = tokens.shape
    device = tokens.device
    per_chunk = max(1, max_tokens // max(1, B * T))
    sites = matmul_sites(model)
    weights = model.weight_matrices()
    outputs = []
    captured: dict[str, list[torch.Tensor]] = {h: [] for h in capture}
    for start in range(0, len(masks), per_chunk):
        chunk = masks[start : start + per_chunk]
        k = len(chunk)
        corrections: dict[str, list] = {}  # per hook, run in this order: edge corrections on the raw
        node_masks: dict[str, list] = {}  # output, then the node mask, then saving the (masked) value
        saves: dict[str, list] = {}  # as input for the next matmul's corrections
        for hook in chunk[0].space.node_shapes:
            stacked = torch.stack([m.nodes[hook] for m in chunk]).to(device)
            if not bool(stacked.all()):
                node_masks[hook] = [_node_hook(stacked, reference.value(hook), k)]
        saved: dict[str, torch.Tensor] = {}
        one_hot_inputs = {}
        for param, (src, dst, equation) in sites.items():
            keep = torch.stack([m.edges[param] for m in chunk]).to(device)
            if bool(keep.all()):
                continue
            ablated = weights[param].detach() * ~keep
            save, correct = _edge_hooks(ablated, reference.value(src), equation, k, saved, param)
            if src.startswith("<"):
                one_hot_inputs[param] = (src, save)
            else:
                saves.setdefault(src, []).append(save)
            corrections.setdefault(dst, []).append(correct)
        fns = {h: corrections.get(h, []) + node_masks.get(h, []) + saves.get(h, [])
               for h in {*corrections, *node_masks, *saves}}
        for hook in capture:
            fns.setdefault(hook, []).append(lambda x, name, k=k: captured[name].append(x.view(k, -1, *x.shape[1:]).clone()))
        repeated = tokens.repeat(k, 1)
        for param, (src, save) in one_hot_inputs.items():
            if src == _TOKENS:
                save(F.one_hot(repeated, model.cfg.d_vocab).float(), src)
            else:
                save(F.one_hot(torch.arange(T, device=device), model.cfg.n_ctx).float().expand(k * B, T, -1), src)
        with model.hooks(fns):
            logits = model(repeated).view(k, B, T, -1)
        if answer_pos is not None:
            logits = logits[:, torch.arange(B, device=device), answer_pos]
        outputs.append(logits)
    return torch.cat(outputs), {h: torch.cat(parts) for h, parts in captured.items()}
