"""Sound bounds on the circuit-alone forward pass over *token boxes*: every input whose token at each
position lies in a given set.

A box is a list of token sets, one per position, and stands for their product (``x = "`` followed by any
three of 92 printable characters is one box of 92³ inputs). The bounds hold for the real-number forward
pass of the trained weights with every non-circuit node at its ablation constant, through RMSNorm, the
softmax with its attention sink and the ReLU neurons.

What makes them tight enough to prove anything: **each position is bounded once per token of its own
set**. Everything a position computes from its own token (its embedding, norms, q/k/v, neurons) is then
exact for that token, and only what reaches it from *other* positions through attention is an interval.
A batch of boxes is flattened into rows, one per (box, position, token of the position's set)
(:class:`Rows`).

- Embedding: exact per choice.
- Weight matrices: centre and radius form, ``c @ W ± r @ |W|`` (the tightest box of a box's image).
- RMSNorm: per channel ``x / sqrt((x² + R)/d + eps)`` increases with ``x`` and, for a fixed sign of
  ``x``, moves towards zero as the other channels' sum of squares ``R`` grows: each bound is the function
  at one corner of (x, R).
- Attention, for the query position's own token fixed: a key position's score is bounded over every
  token of its set (the hull of its boxes), the query's own key exactly for its token; each weight lies
  between its score's least exponential over the largest denominator and the reverse (sink included);
  an output channel is bounded by a linear program over those weight intervals and their sum (the sink
  takes the rest), solved exactly by a greedy pass (:func:`weighted_sum_min`). Channels ablated in both
  q and k contribute a constant to every score.
- ReLU: monotone. Only kept neurons are computed; ablated ones add a constant.
- The margin ``logit[a] - logit[b]`` at the last position: a linear form of the final norm's output.

Rounding: arithmetic is float64 and every result is widened by ``SLACK`` (1e-9) times the magnitude of
what was summed to make it, far above what float64 can accumulate over these sums (a few thousand terms at
unit roundoff 1.1e-16). The bounds are for exact arithmetic on the stored float32 weights and the
ablation constants; the float32 kernels that run the model in practice differ from that by rounding.
:mod:`.certificate_check` recomputes bounds independently to check a proof.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

SLACK = 1e-9
TINY = 1e-300
REL = 1e-12  # relative error allowed for exp, sqrt and division (float64 libm is within a few ulps)


@dataclass
class Box:
    """Lower and upper bounds of the same shape, float64."""

    lo: torch.Tensor
    hi: torch.Tensor

    def widened(self, scale: torch.Tensor) -> "Box":
        pad = SLACK * scale + TINY
        return Box(self.lo - pad, self.hi + pad)


@dataclass
class CircuitWeights:
    """What the bounds read from a node-ablated model, as float64 on the CPU.

    ``keep[hook]`` is the node mask (True = circuit) and ``ref[hook]`` the constant an ablated channel
    carries (zero, or a global mean)."""

    W_E: torch.Tensor
    W_pos: torch.Tensor
    blocks: list[dict[str, torch.Tensor | None]]
    W_U: torch.Tensor
    b_U: torch.Tensor
    keep: dict[str, torch.Tensor]
    ref: dict[str, torch.Tensor]
    eps: float
    n_heads: int
    d_head: int

    @classmethod
    def from_model(cls, model, mask, reference) -> "CircuitWeights":
        cfg = model.cfg

        def f64(t: torch.Tensor) -> torch.Tensor:
            return t.detach().to("cpu", torch.float64)

        blocks = []
        for block in model.blocks:
            a, m = block.attn, block.mlp
            blocks.append({"W_Q": f64(a.W_Q), "W_K": f64(a.W_K), "W_V": f64(a.W_V), "W_O": f64(a.W_O),
                           "b_Q": f64(a.b_Q), "b_K": f64(a.b_K), "b_V": f64(a.b_V), "b_O": f64(a.b_O),
                           "sink": f64(a.sink) if a.sink is not None else None,
                           "W_in": f64(m.W_in), "b_in": f64(m.b_in), "W_out": f64(m.W_out), "b_out": f64(m.b_out)})
        keep = {h: t.detach().cpu().bool() for h, t in mask.nodes.items()}
        ref = {h: f64(reference.value(h)) for h in keep}
        return cls(f64(model.embed.W_E), f64(model.pos_embed.W_pos), blocks, f64(model.unembed.W_U),
                   f64(model.unembed.b_U), keep, ref, float(cfg.norm_eps), cfg.n_heads, cfg.d_head)

    def margin_direction(self, a: int, b: int) -> tuple[torch.Tensor, float]:
        """The unembedding direction and bias of ``logit[a] - logit[b]``."""
        return self.W_U[:, a] - self.W_U[:, b], float(self.b_U[a] - self.b_U[b])


def _magnitude(box: Box) -> torch.Tensor:
    return torch.maximum(box.lo.abs(), box.hi.abs())


def _ablate(box: Box, keep: torch.Tensor, ref: torch.Tensor) -> Box:
    """Node ablation: non-circuit channels carry their constant."""
    return Box(torch.where(keep, box.lo, ref), torch.where(keep, box.hi, ref))


@dataclass
class Centred:
    """A box in centre-radius form, with the sum of |x| that bounds a product's rounding: made once for
    an input that several weight matrices read (q, k and v of every head read one normalised stream)."""

    c: torch.Tensor
    r: torch.Tensor
    l1: torch.Tensor  # [..., 1]: Σ (|c| + r)

    @classmethod
    def of(cls, box: Box) -> "Centred":
        c = (box.lo + box.hi) / 2
        r = (box.hi - box.lo) / 2 * (1 + 4e-16) + 4e-16 * c.abs()  # still covers [lo, hi] after c rounds
        return cls(c, r, (c.abs() + r).sum(-1, keepdim=True))


def _linear(x: Box | Centred, W: torch.Tensor, b: torch.Tensor | None = None) -> Box:
    """``x @ W + b`` over a box (last dimension ``x``'s), widened for rounding.

    The rounding pad uses ``Σ|x| · max|W|`` (a cheap bound on every ``Σ |x_i W_ij|``) rather than a third
    product."""
    x = x if isinstance(x, Centred) else Centred.of(x)
    mid = x.c @ W
    rad = x.r @ W.abs()
    scale = x.l1 * (W.abs().max() if W.numel() else 0.0)
    if b is not None:
        mid = mid + b
        scale = scale + b.abs()
    return Box(mid - rad, mid + rad).widened(scale)


def _add(a: Box, b: Box) -> Box:
    return Box(a.lo + b.lo, a.hi + b.hi).widened(_magnitude(a) + _magnitude(b))


def _rms_norm(box: Box, eps: float) -> Box:
    """Per channel ``x / sqrt(mean(x²) + eps)`` over the box (module docstring)."""
    d = box.lo.shape[-1]
    lo, hi = box.lo, box.hi
    sq_hi = torch.maximum(lo * lo, hi * hi)
    sq_lo = torch.where((lo > 0) | (hi < 0), torch.minimum(lo * lo, hi * hi), torch.zeros_like(lo))
    total = sq_hi.sum(-1, keepdim=True)
    R_lo = (sq_lo.sum(-1, keepdim=True) - sq_lo - SLACK * total).clamp(min=0)
    R_hi = total - sq_lo + SLACK * total + TINY

    def f(x: torch.Tensor, R: torch.Tensor) -> torch.Tensor:
        return x / torch.sqrt((x * x + R) / d + eps)

    y_lo = f(lo, torch.where(lo < 0, R_lo, R_hi))
    y_hi = f(hi, torch.where(hi > 0, R_lo, R_hi))
    pad = REL * torch.maximum(y_lo.abs(), y_hi.abs()) + TINY
    return Box(y_lo - pad, y_hi + pad)


def weighted_sum_min(a: torch.Tensor, w_lo: torch.Tensor, w_hi: torch.Tensor, total_lo: torch.Tensor,
                     total_hi: torch.Tensor) -> torch.Tensor:
    """min of Σ_j w_j a_j over w_lo <= w <= w_hi with total_lo <= Σ_j w_j <= total_hi (last dim = j).

    Every weight starts at its least value; mass is then added to the smallest ``a`` first. The
    objective is convex and piecewise linear in the mass added (slopes: the sorted ``a``), so the optimum
    adds the capacity of the negative ``a``, clamped into the range the total allows.
    """
    base = (w_lo * a).sum(-1)
    cap = (w_hi - w_lo).clamp(min=0)
    order = a.argsort(-1)
    a_sorted, cap_sorted = a.gather(-1, order), cap.gather(-1, order)
    start = w_lo.sum(-1)
    need = (total_lo - start).clamp(min=0)
    room = (total_hi - start).clamp(min=0)
    negative = (cap_sorted * (a_sorted < 0)).sum(-1)
    mass = torch.minimum(torch.maximum(negative, need), room)
    before = cap_sorted.cumsum(-1) - cap_sorted
    alloc = torch.minimum((mass.unsqueeze(-1) - before).clamp(min=0), cap_sorted)
    value = base + (alloc * a_sorted).sum(-1)
    scale = (w_hi.abs() * a.abs()).sum(-1) + (mass + start.abs()) * a.abs().amax(-1)
    return value - SLACK * scale - TINY


@dataclass
class Rows:
    """The boxes of one batch, flattened: one row per (box, position, token of that position's set).

    Every box of a batch has the same length ``T``. ``box[r]``, ``pos[r]`` and ``token[r]`` say what row r
    is; a quantity at a position is a tensor with one row per choice of that position's own token."""

    token: torch.Tensor  # [R]
    box: torch.Tensor  # [R]
    pos: torch.Tensor  # [R]
    n_boxes: int
    length: int

    @classmethod
    def of(cls, boxes: list[list[list[int]]]) -> "Rows":
        T = len(boxes[0])
        if any(len(b) != T for b in boxes):
            raise ValueError("every box of a batch must have the same length")
        token, box, pos = [], [], []
        for n, sets in enumerate(boxes):
            for p, tokens in enumerate(sets):
                token.extend(tokens)
                box.extend([n] * len(tokens))
                pos.extend([p] * len(tokens))
        t = lambda xs: torch.tensor(xs, dtype=torch.long)  # noqa: E731
        return cls(t(token), t(box), t(pos), len(boxes), T)

    @property
    def group(self) -> torch.Tensor:
        """Row -> (box, position) index, ``box * T + pos``."""
        return self.box * self.length + self.pos

    def hull(self, box: Box) -> Box:
        """Per (box, position), over every token of the position's set: ``[N, T, ...]``."""
        N, T = self.n_boxes, self.length
        shape = (N * T, *box.lo.shape[1:])
        index = self.group.view(-1, *[1] * (box.lo.dim() - 1)).expand_as(box.lo)
        lo = torch.full(shape, math.inf, dtype=box.lo.dtype).scatter_reduce(0, index, box.lo, "amin")
        hi = torch.full(shape, -math.inf, dtype=box.hi.dtype).scatter_reduce(0, index, box.hi, "amax")
        return Box(lo.view(N, T, *shape[1:]), hi.view(N, T, *shape[1:]))


def _interval_products(a: Box, b: Box) -> Box:
    corners = torch.stack([a.lo * b.lo, a.lo * b.hi, a.hi * b.lo, a.hi * b.hi])
    return Box(corners.amin(0), corners.amax(0)).widened(corners.abs().amax(0))


def _attention(x: Box, p: dict, layer: int, cw: CircuitWeights, rows: Rows) -> Box:
    """One attention block over the normalised input ``x`` [R, D] (one row per position and own token):
    its output after W_O.

    Only what the circuit keeps is computed: per head with a kept output (z) channel, the q and k
    channels kept in either (a channel ablated in both adds a constant to every score) and the kept
    value channels; ablated z channels add a constant through W_O. For query row r, the keys at other
    positions are the hull over their sets; its own position's key is its own row's."""
    H, dh = cw.n_heads, cw.d_head
    R, D = x.lo.shape
    T = rows.length
    pre = f"blocks.{layer}.attn"
    keep = {kind: cw.keep[f"{pre}.hook_{kind}"] for kind in "qkvz"}
    ref = {kind: cw.ref[f"{pre}.hook_{kind}"] for kind in "qkvz"}
    W_O = p["W_O"]
    constant = ref["z"][~keep["z"]] @ W_O[~keep["z"]] + p["b_O"]  # [D]
    out_lo = torch.zeros(R, D, dtype=torch.float64) + constant
    out_hi = out_lo.clone()
    # Σ |terms|, for the rounding pad (the constant's own terms too: it may cancel to near 0)
    summed = torch.zeros(R, D, dtype=torch.float64) + ref["z"][~keep["z"]].abs() @ W_O[~keep["z"]].abs() + p["b_O"].abs()
    keys = torch.arange(T)
    mask = keys[None, :] <= rows.pos[:, None]  # [R, Tk]: causal
    own = keys[None, :] == rows.pos[:, None]
    inv = 1 / math.sqrt(dh)
    centred = Centred.of(x)

    def channels(kind: str, h: int, idx: torch.Tensor) -> Box:
        """Channels ``idx`` of head h's q, k or v: computed where kept, the constant elsewhere."""
        box = _linear(centred, p[f"W_{kind.upper()}"][h][:, idx], p[f"b_{kind.upper()}"][h][idx])
        return _ablate(box, keep[kind][h][idx], ref[kind][h][idx])

    for h in range(H):
        outputs = keep["z"][h].nonzero().flatten()
        if len(outputs) == 0:
            continue  # the head's output is its constant
        varying = (keep["q"][h] | keep["k"][h]).nonzero().flatten()
        fixed = ~(keep["q"][h] | keep["k"][h])
        score_constant = float((ref["q"][h][fixed] * ref["k"][h][fixed]).sum())
        constant_terms = float((ref["q"][h][fixed] * ref["k"][h][fixed]).abs().sum())
        qh, kh = channels("q", h, varying), channels("k", h, varying)  # [R, nv]
        k_any = rows.hull(kh)  # [N, T, nv]
        other = _interval_products(Box(qh.lo[:, None], qh.hi[:, None]),
                                   Box(k_any.lo[rows.box], k_any.hi[rows.box]))  # [R, Tk, nv]
        self_score = _interval_products(qh, kh)  # the query's own key: its own row
        s_lo = torch.where(own, self_score.lo.sum(-1)[:, None], other.lo.sum(-1))
        s_hi = torch.where(own, self_score.hi.sum(-1)[:, None], other.hi.sum(-1))
        s_lo = (s_lo + score_constant) * inv
        s_hi = (s_hi + score_constant) * inv
        pad = SLACK * (torch.maximum(s_lo.abs(), s_hi.abs()) + constant_terms + 1.0) + TINY
        s_lo = (s_lo - pad).masked_fill(~mask, -math.inf)
        s_hi = (s_hi + pad).masked_fill(~mask, -math.inf)
        sink = p["sink"][h] if p["sink"] is not None else None
        top = s_hi.amax(-1, keepdim=True)
        if sink is not None:
            top = torch.maximum(top, sink)
        e_lo = torch.exp(s_lo - top) * (1 - REL)
        e_hi = torch.exp(s_hi - top) * (1 + REL)
        es = torch.exp(sink - top) if sink is not None else torch.zeros_like(top)
        es_lo, es_hi = es * (1 - REL), es * (1 + REL)
        S_lo, S_hi = e_lo.sum(-1, keepdim=True), e_hi.sum(-1, keepdim=True)
        others_hi = S_hi - e_hi + REL * S_hi  # Σ over the other keys, widened for the subtraction
        others_lo = (S_lo - e_lo - REL * S_lo).clamp(min=0)
        w_lo = (e_lo / (e_lo + others_hi + es_hi) * (1 - REL)).masked_fill(~mask, 0.0)
        w_hi = (e_hi / (e_hi + others_lo + es_lo) * (1 + REL)).clamp(max=1).masked_fill(~mask, 0.0)
        sink_lo = es_lo / (es_lo + S_hi) * (1 - REL)
        sink_hi = (es_hi / (es_hi + S_lo) * (1 + REL)).clamp(max=1)
        total_lo, total_hi = (1 - sink_hi)[:, 0], (1 - sink_lo)[:, 0]  # [R]
        values = channels("v", h, outputs)  # [R, n_out]
        v_any = rows.hull(values)  # [N, T, n_out]
        for i, c in enumerate(outputs.tolist()):
            a_lo = torch.where(own, values.lo[:, i, None], v_any.lo[rows.box, :, i]).masked_fill(~mask, 0.0)
            a_hi = torch.where(own, values.hi[:, i, None], v_any.hi[rows.box, :, i]).masked_fill(~mask, 0.0)
            z_lo = weighted_sum_min(a_lo, w_lo, w_hi, total_lo, total_hi)  # [R]
            z_hi = -weighted_sum_min(-a_hi, w_lo, w_hi, total_lo, total_hi)
            row = W_O[h, c]  # [D]
            lo = torch.where(row >= 0, z_lo[:, None] * row, z_hi[:, None] * row)
            hi = torch.where(row >= 0, z_hi[:, None] * row, z_lo[:, None] * row)
            out_lo, out_hi = out_lo + lo, out_hi + hi
            summed = summed + torch.maximum(lo.abs(), hi.abs())
    return Box(out_lo, out_hi).widened(summed)


def _mlp(x: Box, p: dict, layer: int, cw: CircuitWeights) -> Box:
    """Kept neurons computed; ablated ones contribute their constant through W_out."""
    hook = f"blocks.{layer}.mlp.hook_post"
    keep, ref = cw.keep[hook], cw.ref[hook]
    pre = _linear(x, p["W_in"][:, keep], p["b_in"][keep])
    post = Box(pre.lo.clamp(min=0), pre.hi.clamp(min=0))
    constant = ref[~keep] @ p["W_out"][~keep] + p["b_out"]
    out = _linear(post, p["W_out"][keep], constant)
    return out.widened(ref[~keep].abs() @ p["W_out"][~keep].abs())  # the constant's own rounding


def margin_bounds(cw: CircuitWeights, boxes: list[list[list[int]]], direction: torch.Tensor,
                  offset: float) -> list[Box]:
    """For each box (a list of token sets, all boxes of one length), bounds of ``direction ·
    ln_final(resid) + offset`` at its last position, one per token of the last position's set (in the
    order given)."""
    rows = Rows.of(boxes)
    L = len(cw.blocks)
    embedding, position = cw.W_E[rows.token], cw.W_pos[rows.pos]
    resid = Box(embedding + position, embedding + position).widened(embedding.abs() + position.abs())
    for layer, p in enumerate(cw.blocks):
        hook = f"blocks.{layer}.hook_resid_pre"
        resid = _ablate(resid, cw.keep[hook], cw.ref[hook])
        resid = _add(resid, _attention(_rms_norm(resid, cw.eps), p, layer, cw, rows))
        hook = f"blocks.{layer}.hook_resid_mid"
        resid = _ablate(resid, cw.keep[hook], cw.ref[hook])
        resid = _add(resid, _mlp(_rms_norm(resid, cw.eps), p, layer, cw))
    hook = f"blocks.{L - 1}.hook_resid_post"
    last = rows.pos == rows.length - 1
    resid = _ablate(Box(resid.lo[last], resid.hi[last]), cw.keep[hook], cw.ref[hook])
    out = _linear(_rms_norm(resid, cw.eps), direction[:, None], torch.tensor([offset], dtype=torch.float64))
    lo, hi = out.lo[:, 0], out.hi[:, 0]
    sizes = [len(sets[-1]) for sets in boxes]
    return [Box(a, b) for a, b in zip(lo.split(sizes), hi.split(sizes))]
