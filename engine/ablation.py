"""Ablated forward passes: many circuit conditions in one batched pass through the model's own hooks.

A *condition* is a :class:`~.masks.Mask`. Running K conditions repeats the batch K times along the batch
dimension and attaches one hook per hook point that, for every condition at once,

- replaces non-circuit channels (node mask False) by the reference value, and
- at the output of each weight matrix whose edge mask is not all True, swaps the ablated edges'
  contribution for the same edges applied to the reference input:
  ``y = x @ W - (x - r) @ (W * ~E)``, i.e. kept edges see the real input, ablated edges the reference;
- for each path cut of a condition (:mod:`.paths`: an edge between nodes that are not adjacent), takes the
  sender's share of the residual stream out of what the receiver reads and puts its reference share in.

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

from .batch import answer_logits, length_buckets
from .masks import POSITIONS as _POSITIONS, TOKENS as _TOKENS, Mask, MaskSpace
from .model import Transformer
from .paths import path_hooks

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
# The AbsTopK site (ModelConfig.topk_sites) that may follow a weight matrix's output. Where it is on, the
# output lands first in ``<hook>_pre_topk`` (model.py), and edge corrections go there, so that ablated
# edges change what the selection sees, as a weight change would.
_TOPK_AFTER = {"W_Q": "q", "W_K": "k", "W_V": "v", "W_O": "attn_out", "W_out": "mlp_out"}


def matmul_sites(model: Transformer) -> dict[str, tuple[str, str, str]]:
    """Weight name -> (input hook, output hook, einsum) for every weight matrix of ``model``."""
    sites = {"embed.W_E": (_TOKENS, "hook_embed", "kbtv,kvd->kbtd"),
             "pos_embed.W_pos": (_POSITIONS, "hook_pos_embed", "kbtp,kpd->kbtd"),
             "unembed.W_U": ("ln_final.hook_normalized", "hook_logits", "kbtd,kdv->kbtv")}
    for layer in range(model.cfg.n_layers):
        for w, (src, dst, eq) in _MATMUL.items():
            block = f"blocks.{layer}."
            module = "attn." if w in ("W_Q", "W_K", "W_V", "W_O") else "mlp."
            if model.cfg.topk(_TOPK_AFTER.get(w, "")) is not None:  # the correction acts before the selection
                dst += "_pre_topk"
            sites[block + module + w] = (block + src, block + dst, eq)
    return sites


@dataclass(frozen=True)
class Ablation:
    """How removed parts are replaced: ``zero``, ``mean`` or ``resample``; optionally per position; a
    resample either from random task inputs or from each input's counterfactual partner (``corrupted``).

    ``source`` says where a mean comes from: ``"task"`` (a reference batch of task inputs, computed by
    :meth:`Reference.compute`) or ``"corpus"`` (the pretraining corpus: means stored with the checkpoint,
    :mod:`.corpus_means`; only a global ``mean`` has them). ``str()`` is the method alone, as before;
    what the distribution is, is said next to it (a task name, or the pretraining corpus).
    """

    kind: AblationKind = "mean"
    per_position: bool = False
    source: AblationSource = "task"
    # `resample from corrupted(FEATURE)`: each input's reference is its own counterfactual partner, an input
    # of the task that differs in this feature (circuitspec.engine.tasks.counterfactual), not a random one
    corrupted: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in ("zero", "mean", "resample"):
            raise ValueError(f"unknown ablation {self.kind!r} (zero, mean, resample)")
        if self.source not in ("task", "corpus"):
            raise ValueError(f"unknown ablation source {self.source!r} (task, corpus)")
        if self.source == "corpus" and (self.kind != "mean" or self.per_position):
            raise ValueError("only a global mean comes from the pretraining corpus (`mean over corpus`)")
        if self.corrupted is not None and (self.kind != "resample" or self.per_position or self.source != "task"):
            raise ValueError("corrupted partners are resampled from the task (`resample from corrupted(FEATURE)`)")

    def __str__(self) -> str:
        if self.corrupted is not None:  # the partners say more than the method: name them
            return f"resample from corrupted({self.corrupted})"
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
        self._position_free: bool | None = None  # see same_at_every_position

    def value(self, hook: str) -> torch.Tensor:
        return self.values[hook]

    def same_at_every_position(self, cfg) -> bool:
        """Whether no value has a position (or row) axis: zero, or a mean over all positions. Then the
        last block may be computed at the answer positions alone (see :func:`_answer_only`)."""
        if self._position_free is None:
            shapes = MaskSpace.for_config(cfg).node_shapes  # a value with a position axis has more dims
            self._position_free = all(v.dim() <= len(shapes.get(h, (0,))) for h, v in self.values.items())
        return self._position_free

    def select(self, rows: torch.Tensor, width: int) -> "Reference":
        """The reference for rows ``rows`` of the target batch, cut to its first ``width`` positions (what a
        pass over ``tokens[rows, :width]`` reads): resampled activations are per row and position, per-position
        means per position, the rest the same everywhere."""
        if self.ablation.kind == "resample":
            return Reference({h: v[rows, :width] for h, v in self.values.items()}, self.ablation)
        if self.ablation.kind == "mean" and self.ablation.per_position and self.ablation.source == "task":
            return Reference({h: v[:width] for h, v in self.values.items()}, self.ablation)
        return self

    @classmethod
    @torch.no_grad()
    def compute(cls, model: Transformer, ablation: Ablation, tokens: torch.Tensor, lengths: torch.Tensor,
                ref_tokens: torch.Tensor | None = None, ref_lengths: torch.Tensor | None = None,
                by_length: bool = False) -> "Reference":
        """References for target ``tokens`` [B, T] (true lengths ``lengths``) from a reference batch.

        ``mean``: average over the reference batch's real (non-padding) positions, globally or per
        position (positions no reference example reaches use the global mean). ``resample``: row b of the
        target reads row b of the reference batch, right-aligned so both answer positions coincide;
        target positions before the reference starts use the global mean. ``zero`` needs no batch.
        ``by_length``: a mean runs the reference batch in groups of similar length cut to their width
        (:func:`~.batch.length_buckets`), which skips the padding and never holds every activation of
        the whole batch at once; the same means up to float rounding.
        """
        B, T = tokens.shape
        hooks = reference_hooks(model)
        if ablation.kind == "zero":
            _, shapes = model.run_with_cache(tokens[:1, :1], hooks)
            values = {h: torch.zeros_like(a[0, 0]) for h, a in shapes.items()}
            values[_TOKENS] = torch.zeros(model.cfg.d_vocab, device=tokens.device)
            values[_POSITIONS] = torch.zeros(model.cfg.n_ctx, device=tokens.device)
            return cls(values, ablation)
        if ref_tokens is None or ref_lengths is None:
            raise ValueError(f"{ablation} ablation needs a reference batch")
        if by_length and ablation.kind == "mean":
            return cls(_bucketed_means(model, ablation, hooks, ref_tokens, ref_lengths, T), ablation)
        _, cache = model.run_with_cache(ref_tokens, hooks)
        _add_one_hot_inputs(model, cache, ref_tokens)
        real = _lengths_mask(ref_lengths, ref_tokens.shape[1])
        values = {}
        for hook, act in cache.items():
            values[hook] = _reduce(act, real, ablation, lengths, ref_lengths, T)
        return cls(values, ablation)


def _add_one_hot_inputs(model: Transformer, cache: dict[str, torch.Tensor], tokens: torch.Tensor) -> None:
    cache[_TOKENS] = F.one_hot(tokens, model.cfg.d_vocab).float()
    cache[_POSITIONS] = F.one_hot(torch.arange(tokens.shape[1], device=tokens.device), model.cfg.n_ctx).float().expand(tokens.shape[0], -1, -1)


def _bucketed_means(model: Transformer, ablation: Ablation, hooks: list[str], ref_tokens: torch.Tensor,
                    ref_lengths: torch.Tensor, T: int) -> dict[str, torch.Tensor]:
    """Mean references (as :func:`_reduce`) from per-position sums accumulated over length buckets."""
    return MeanSums.of(model, hooks, ref_tokens, ref_lengths).means(ablation, T)


def _pad_positions(v: torch.Tensor, width: int) -> torch.Tensor:
    """``v`` [positions, *channels] with zero rows appended up to ``width`` positions."""
    return F.pad(v, (0, 0) * (v.dim() - 1) + (0, width - v.shape[0]))


@dataclass(frozen=True)
class MeanSums:
    """Per-position sums of every hook's activation over the real positions of some reference inputs, and
    how many inputs reached each position. Sums of disjoint sets of inputs add up (:meth:`plus`), so the
    means over the first N inputs of a stream extend to the first M > N by running only the M - N new
    ones; :meth:`means` gives :func:`_bucketed_means`' values for any target width."""

    sums: dict[str, torch.Tensor]  # hook -> [width, *channels]
    count: torch.Tensor  # [width]

    @classmethod
    def of(cls, model: Transformer, hooks: list[str], ref_tokens: torch.Tensor, ref_lengths: torch.Tensor) -> "MeanSums":
        """The sums over ``ref_tokens`` (true lengths ``ref_lengths``), run in length buckets."""
        width = ref_tokens.shape[1]
        sums: dict[str, torch.Tensor] = {}
        count = torch.zeros(width, device=ref_tokens.device)
        for rows, cut in length_buckets(ref_lengths):
            rows = rows.to(ref_tokens.device)
            tokens = ref_tokens[rows, :cut]
            _, cache = model.run_with_cache(tokens, hooks)
            _add_one_hot_inputs(model, cache, tokens)
            real = _lengths_mask(ref_lengths[rows], cut).float()
            count[:cut] += real.sum(0)
            for hook, act in cache.items():
                weighted = torch.einsum("bt,bt...->t...", real, act)  # one product: half the time of mask-and-sum
                if hook not in sums:
                    sums[hook] = torch.zeros(width, *act.shape[2:], device=act.device)
                sums[hook][:cut] += weighted
        return cls(sums, count)

    def plus(self, other: "MeanSums") -> "MeanSums":
        """The sums over both sets of inputs (padded to the wider; adding to zeros is exact, so an empty
        ``self`` gives ``other``'s values bit for bit)."""
        width = max(self.count.shape[0], other.count.shape[0])
        sums = {h: (_pad_positions(self.sums[h], width) if h in self.sums else 0) + _pad_positions(v, width)
                for h, v in other.sums.items()}
        return MeanSums(sums, _pad_positions(self.count, width) + _pad_positions(other.count, width))

    def means(self, ablation: Ablation, T: int) -> dict[str, torch.Tensor]:
        """Global means, or per-position ones (the global mean where no input reaches), cut to width ``T``."""
        count = self.count
        values = {}
        for hook, per_pos_sum in self.sums.items():
            extra = [1] * (per_pos_sum.dim() - 1)
            global_mean = per_pos_sum.sum(0) / count.sum().clamp(min=1)
            if not ablation.per_position:
                values[hook] = global_mean
                continue
            per_pos = per_pos_sum / count.clamp(min=1).view(-1, *extra)
            per_pos = torch.where((count > 0).view(-1, *extra), per_pos, global_mean)
            out = global_mean.expand(max(T, per_pos.shape[0]), *global_mean.shape).clone()
            out[: per_pos.shape[0]] = per_pos
            values[hook] = out[:T]
        return values


def reference_hooks(model: Transformer) -> list[str]:
    """Every hook a reference holds a value for: the node hooks and the inputs of the maskable matrices."""
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


# One condition per pass (k = 1) ablating at most this share of a hook's channels overwrites them in place
# (the activations there are fresh tensors the model does not read again) instead of building a new
# tensor with torch.where: the same values, without a pass over the kept channels.
IN_PLACE_MAX_FRACTION = 0.5


def _node_hook(mask: torch.Tensor, ref: torch.Tensor, k: int):
    """Replace non-circuit channels: ``mask`` [k, *channels] (True = keep) over activations [k*B, T, *channels]."""
    view = (k, 1, 1, *mask.shape[1:])
    if k == 1:
        off = (~mask[0]).nonzero(as_tuple=True)  # the ablated channels, one index tensor per channel dim
        if off[0].numel() <= IN_PLACE_MAX_FRACTION * mask[0].numel():
            index = (..., *off)
            fill = ref[index]  # [*lead, n]: what ablated channels carry, broadcast over batch and positions

            def overwrite(x: torch.Tensor, name: str) -> torch.Tensor:
                x[index] = fill
                return x

            return overwrite

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


# On a CPU, a node mask keeping at most this share of the nodes (and every edge) is computed on its own
# subgraph (subgraph.py), the rest through the full masked forward. Measured with
# benchmarks/path_chooser.py (uniform random node sets, 100 inputs grouped by length, both paths in one
# run; docs/verification.md, "Performance"): the subgraph path costs 0.28 / 0.56 / 0.70 / 0.98 / 1.20x
# the full masked forward at 1 / 10 / 50 / 75 / 90% of the nodes on py-sparse-small, and 0.15 / 0.36 /
# 0.64 / 0.91 / 1.19x on py-sparse-medium: it breaks even near 75-80% (it was near 65% before the last
# block ran at the answer alone; at the old threshold of 50%, masks of 60% cost 1.3-1.5x the faster path).
SUBGRAPH_MAX_FRACTION = 0.75
# Elsewhere (a GPU) the subgraph path is taken only when every condition qualifies, under this share
# (unchanged from before: on a GPU one batched forward usually beats the subgraph's small products).
SUBGRAPH_MAX_FRACTION_OTHER_DEVICES = 0.25


def _all_true(t: torch.Tensor, memo: dict[int, bool]) -> bool:
    """``bool(t.all())``, computed once per tensor object in one call (masks share their tensors)."""
    key = id(t)
    if key not in memo:
        memo[key] = bool(t.all())
    return memo[key]


def _small_node_mask(mask: Mask, memo: dict[int, bool] | None = None, fraction: float | None = None) -> bool:
    memo = {} if memo is None else memo
    fraction = SUBGRAPH_MAX_FRACTION if fraction is None else fraction
    if mask.cuts or not all(_all_true(e, memo) for e in mask.edges.values()):
        return False
    kept = sum(int(t.sum()) for t in mask.nodes.values())
    return kept <= fraction * sum(t.numel() for t in mask.nodes.values())


def _answer_only(model: Transformer, masks: Sequence[Mask], reference: Reference, memo: dict[int, bool]) -> bool:
    """Whether a masked pass may compute the last block's queries and everything after its attention at
    the answer positions alone (:meth:`~.model.Transformer.forward` with ``at``): when every reference
    value is the same at every position (zero, or a mean over all positions), no condition cuts paths,
    and no condition ablates an edge of the last block's ``W_Q`` or ``W_O``, the two matrices whose input
    (every position) and output (the answer alone) are then cut differently."""
    if not reference.same_at_every_position(model.cfg):
        return False
    last = f"blocks.{model.cfg.n_layers - 1}.attn."
    cut_apart = (last + "W_Q", last + "W_O")
    return all(not m.cuts and all(w not in m.edges or _all_true(m.edges[w], memo) for w in cut_apart) for m in masks)


def mixed_answer_logits(model: Transformer, tokens: torch.Tensor, answer_pos: torch.Tensor,
                        reference: Reference) -> torch.Tensor:
    """Answer logits ``[B, V]`` of a pass whose hooks mix activations with ``reference`` (discovery's gates,
    the falsifier's presence gradient): the last block at the answer alone where the reference is the same
    at every position, so that the mixed shapes broadcast; the whole pass otherwise."""
    if reference.same_at_every_position(model.cfg):
        return model(tokens, answer_pos)
    return answer_logits(model(tokens), answer_pos)


def run_conditions(model: Transformer, tokens: torch.Tensor, masks: Sequence[Mask], reference: Reference,
                   answer_pos: torch.Tensor | None = None, max_tokens: int | None = None,
                   by_length: bool = False) -> torch.Tensor:
    """Logits of every condition: ``[K, B, T, V]``, or ``[K, B, V]`` read at ``answer_pos`` [B]."""
    return run_conditions_with_cache(model, tokens, masks, reference, answer_pos, (), max_tokens, by_length)[0]


def _by_length(tokens: torch.Tensor, answer_pos: torch.Tensor | None, by_length: bool) -> bool:
    # Only on a CPU: a GPU is kept busy by one large pass, and is not slowed by the padding the same way.
    return by_length and answer_pos is not None and tokens.device.type == "cpu"


@torch.no_grad()
def plain_answer_logits(model: Transformer, tokens: torch.Tensor, answer_pos: torch.Tensor,
                        by_length: bool = False, whole_pass: bool = False) -> torch.Tensor:
    """The unablated model's logits at ``answer_pos``, ``[B, V]``, computed on the same row groups as
    :func:`run_conditions_with_cache` with the same ``by_length``, so that an all-True condition
    reproduces them exactly (bit for bit on a CPU). ``whole_pass``: the last block at every position, as
    a condition runs when activations are captured; otherwise at the answer alone, as it runs without
    (the two agree to float rounding only, about 1e-6)."""

    def forward(toks: torch.Tensor, at: torch.Tensor) -> torch.Tensor:
        if whole_pass:
            return model(toks)[torch.arange(toks.shape[0], device=toks.device), at]
        return model(toks, at)

    B = tokens.shape[0]
    if not _by_length(tokens, answer_pos, by_length):
        return forward(tokens, answer_pos)
    out = None
    for rows, width in length_buckets(answer_pos + 1):
        logits = forward(tokens[rows, :width], answer_pos[rows])
        out = logits.new_empty(B, logits.shape[-1]) if out is None else out
        out[rows] = logits
    return out


@torch.no_grad()
def run_conditions_with_cache(model: Transformer, tokens: torch.Tensor, masks: Sequence[Mask], reference: Reference,
                              answer_pos: torch.Tensor | None = None, capture: Sequence[str] = (),
                              max_tokens: int | None = None, by_length: bool = False
                              ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Logits as :func:`run_conditions`, plus the (ablated) activations at the ``capture`` hooks,
    each ``[K, B, T, *channels]``.

    Each condition takes the cheaper of two paths. On a CPU, a node mask that keeps
    at most :data:`SUBGRAPH_MAX_FRACTION` of the nodes and every edge is computed on its own subgraph
    (:func:`~.subgraph.run_circuit`), decided per condition; elsewhere the subgraph path is taken only
    when every condition keeps at most :data:`SUBGRAPH_MAX_FRACTION_OTHER_DEVICES` (on a GPU one batched
    forward beats many small gathers). The other conditions
    run ``max_tokens // (B*T)`` at a time (at least one) in a single batched forward each. The default
    suits the device: on a CPU one condition per pass is fastest (measured: stacking conditions only
    adds memory traffic), on a GPU large stacks keep it busy.

    ``by_length`` (with ``answer_pos``, on a CPU): the rows run in groups of similar length, each cut to
    its width (:func:`~.batch.length_buckets`): the same logits up to float rounding, without computing
    the padding; :func:`plain_answer_logits` gives the unablated model's on the same groups. Captured
    activations past a row's answer position are then zero.
    """
    if not _by_length(tokens, answer_pos, by_length):
        return _run_conditions(model, tokens, masks, reference, answer_pos, capture, max_tokens)
    B, T = tokens.shape
    logits: torch.Tensor | None = None
    captured: dict[str, torch.Tensor] = {}
    memos: list[dict] = [{} for _ in masks]  # per condition, what the subgraph path reuses across groups
    for rows, width in length_buckets(answer_pos + 1):
        part, cache = _run_conditions(model, tokens[rows, :width], masks, reference.select(rows, width),
                                      answer_pos[rows], capture, max_tokens, memos)
        if logits is None:
            logits = part.new_empty(part.shape[0], B, part.shape[-1])
        logits[:, rows] = part
        for hook, act in cache.items():
            if hook not in captured:
                captured[hook] = act.new_zeros(act.shape[0], B, T, *act.shape[3:])
            captured[hook][:, rows, :width] = act
    after = torch.arange(T, device=tokens.device)[None, :] > answer_pos[:, None]  # [B, T]: past each answer
    for act in captured.values():
        act.masked_fill_(after.view(1, B, T, *[1] * (act.dim() - 3)), 0.0)
    return logits, captured


def _run_conditions(model: Transformer, tokens: torch.Tensor, masks: Sequence[Mask], reference: Reference,
                    answer_pos: torch.Tensor | None, capture: Sequence[str], max_tokens: int | None,
                    memos: list[dict] | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    memo: dict[int, bool] = {}
    from .subgraph import can_capture, run_circuit, supports  # computes only the circuit's channels (see subgraph.py)
    if capture and len(masks) == 1 and tokens.device.type == "cpu" and supports(model.cfg) \
            and _small_node_mask(masks[0], memo) and can_capture(masks[0], capture):
        # one small circuit whose activations are read (role claims): on its subgraph, as without capture
        captured: dict[str, torch.Tensor] = {}
        logits = run_circuit(model, tokens, masks[0], reference, answer_pos, memos[0] if memos else None,
                             capture, captured)
        return logits.unsqueeze(0), {h: captured[h].unsqueeze(0) for h in capture}
    if capture or not supports(model.cfg):
        small = [False] * len(masks)
    elif tokens.device.type == "cpu":
        small = [_small_node_mask(m, memo) for m in masks]
    else:
        small = [all(_small_node_mask(m, memo, SUBGRAPH_MAX_FRACTION_OTHER_DEVICES) for m in masks)] * len(masks)
    rest = [m for m, s in zip(masks, small) if not s]
    masked, captured = None, {}
    if rest:
        masked, captured = _masked_forward(model, tokens, rest, reference, answer_pos, capture, max_tokens, memo)
    if not any(small):
        return masked, captured
    out, j = [], 0
    for i, (m, s) in enumerate(zip(masks, small)):
        if s:
            out.append(run_circuit(model, tokens, m, reference, answer_pos, memos[i] if memos else None))
        else:
            out.append(masked[j])
            j += 1
    return torch.stack(out), captured


def _masked_forward(model: Transformer, tokens: torch.Tensor, masks: Sequence[Mask], reference: Reference,
                    answer_pos: torch.Tensor | None, capture: Sequence[str], max_tokens: int | None,
                    memo: dict[int, bool]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Every condition through the model's own forward with hooks, ``per_chunk`` conditions per pass."""
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
            if all(_all_true(m.nodes[hook], memo) for m in chunk):
                continue
            stacked = torch.stack([m.nodes[hook] for m in chunk]).to(device)
            node_masks[hook] = [_node_hook(stacked, reference.value(hook), k)]
        saved: dict[str, torch.Tensor] = {}
        one_hot_inputs = {}
        for param, (src, dst, equation) in sites.items():
            if all(_all_true(m.edges[param], memo) for m in chunk):
                continue
            keep = torch.stack([m.edges[param] for m in chunk]).to(device)
            ablated = weights[param].detach() * ~keep
            save, correct = _edge_hooks(ablated, reference.value(src), equation, k, saved, param)
            if src.startswith("<"):
                one_hot_inputs[param] = (src, save)
            else:
                saves.setdefault(src, []).append(save)
            corrections.setdefault(dst, []).append(correct)
        for ci, m in enumerate(chunk):  # edges between nodes that are not adjacent (paths.py)
            if m.cuts:
                cut_corrections, cut_saves = path_hooks(model, tokens, m, reference, k, ci,
                                                        lambda param: sites[param][1])
                for hook, fs in cut_corrections.items():
                    corrections.setdefault(hook, []).extend(fs)
                for hook, fs in cut_saves.items():
                    saves.setdefault(hook, []).extend(fs)
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
        at = answer_pos.repeat(k) if answer_pos is not None and not capture and _answer_only(model, chunk, reference, memo) else None
        with model.hooks(fns):
            logits = model(repeated, at)
        if at is not None:
            logits = logits.view(k, B, -1)
        elif answer_pos is not None:
            logits = logits.view(k, B, T, -1)[:, torch.arange(B, device=device), answer_pos]
        else:
            logits = logits.view(k, B, T, -1)
        outputs.append(logits)
    return torch.cat(outputs), {h: torch.cat(parts) for h, parts in captured.items()}
