"""Re-verify a domain proof's certificate (:func:`.domain_proof.certificate`) independently of the prover.

What is checked, with code that shares nothing with :mod:`.intervals` or :mod:`.domain_proof` (numpy,
one box and one position at a time):

1. The weights are the ones the proof was made on (SHA-256 of the checkpoint's weights file).
2. The roots are exactly the domain's boxes, rebuilt from the domain's parts in the certificate.
3. The tree partitions each root: a node's last-position tokens are those it proves plus those its two
   children carry, and its split position's set is the disjoint union of its children's sets there (all
   other positions equal). The inputs covered by proved tokens add up to the domain's size.
4. Every proved token's lower bound, recomputed from the weights, the circuit's kept channels and its
   ablation constants, is above zero (the bound stored in the certificate is not trusted).

The bounds are the same mathematics as the prover's (see :mod:`.intervals`: each position bounded once per
token of its own set; RMSNorm by the corners of (x, R); the attention weights' interval and the greedy
linear program over them), in float64 with outward padding.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

PAD = 1e-9
REL = 1e-12


@dataclass
class CheckResult:
    ok: bool
    problems: list[str] = field(default_factory=list)
    nodes: int = 0
    proved_inputs: int = 0
    least_bound: float = math.inf


def _pad(lo, hi, scale):
    p = PAD * scale + 1e-300
    return lo - p, hi + p


def _matmul(lo, hi, W, b=None):
    c, r = (lo + hi) / 2, (hi - lo) / 2 * (1 + 4e-16) + 4e-16 * np.abs(lo + hi) / 2
    mid, rad = c @ W, r @ np.abs(W)
    scale = (np.abs(c) + r).sum(-1, keepdims=True) * (np.abs(W).max() if W.size else 0.0)
    if b is not None:
        mid, scale = mid + b, scale + np.abs(b)
    return _pad(mid - rad, mid + rad, scale)


def _norm(lo, hi, eps):
    d = lo.shape[-1]
    big = np.maximum(lo * lo, hi * hi)
    small = np.where((lo > 0) | (hi < 0), np.minimum(lo * lo, hi * hi), 0.0)
    total = big.sum(-1, keepdims=True)
    r_small = np.maximum(small.sum(-1, keepdims=True) - small - PAD * total, 0.0)
    r_big = total - small + PAD * total + 1e-300
    out_lo = lo / np.sqrt((lo * lo + np.where(lo < 0, r_small, r_big)) / d + eps)
    out_hi = hi / np.sqrt((hi * hi + np.where(hi > 0, r_small, r_big)) / d + eps)
    m = REL * np.maximum(np.abs(out_lo), np.abs(out_hi)) + 1e-300
    return out_lo - m, out_hi + m


def _least_weighted_sum(a, w_lo, w_hi, t_lo, t_hi):
    """Per row: min Σ_j w_j a_j with w in [w_lo, w_hi] and Σ_j w_j in [t_lo, t_hi] (arrays [rows, keys] and
    [rows]). Mass beyond the lower bounds goes to the smallest a first; how much: all the room the negative
    a offer, but at least what the total needs and at most what it allows."""
    order = np.argsort(a, axis=-1, kind="stable")
    a_s = np.take_along_axis(a, order, -1)
    cap = np.take_along_axis(np.maximum(w_hi - w_lo, 0.0), order, -1)
    start = w_lo.sum(-1)
    mass = np.minimum(np.maximum((cap * (a_s < 0)).sum(-1), np.maximum(t_lo - start, 0.0)), np.maximum(t_hi - start, 0.0))
    filled_before = np.cumsum(cap, -1) - cap
    step = np.clip(mass[:, None] - filled_before, 0.0, cap)
    value = (w_lo * a).sum(-1) + (step * a_s).sum(-1)
    scale = (np.abs(w_hi) * np.abs(a)).sum(-1) + (mass + np.abs(start)) * np.abs(a).max(-1)
    return value - PAD * scale - 1e-300


def _products(al, ah, bl, bh):
    c = np.stack([al * bl, al * bh, ah * bl, ah * bh])
    lo, hi = c.min(0), c.max(0)
    return _pad(lo, hi, np.abs(c).max(0))


class _Circuit:
    def __init__(self, weights: dict[str, np.ndarray], cert: dict) -> None:
        self.w = weights
        self.L = 1 + max(int(k.split(".")[1]) for k in weights if k.startswith("blocks."))
        self.H, _, self.dh = weights["blocks.0.attn.W_Q"].shape
        self.eps = float(cert["eps"])
        self.keep, self.ref = {}, {}
        for hook, value in cert["constants"].items():
            ref = np.asarray(value, dtype=np.float64)
            keep = np.zeros(ref.shape, dtype=bool)
            for index in cert["kept"][hook]:
                keep[tuple(index)] = True
            self.keep[hook], self.ref[hook] = keep, ref

    def _ablate(self, lo, hi, hook):
        return np.where(self.keep[hook], lo, self.ref[hook]), np.where(self.keep[hook], hi, self.ref[hook])

    def bound(self, sets: list[list[int]], direction: np.ndarray, offset: float) -> np.ndarray:
        """Least margin per token of the last set."""
        w = self.w
        T = len(sets)
        state = []
        for p, tokens in enumerate(sets):
            e, pos = w["embed.W_E"][tokens], w["pos_embed.W_pos"][p][None, :]
            state.append(_pad(e + pos, e + pos, np.abs(e) + np.abs(pos)))
        for layer in range(self.L):
            b = f"blocks.{layer}."
            state = [self._ablate(lo, hi, b + "hook_resid_pre") for lo, hi in state]
            normed = [_norm(lo, hi, self.eps) for lo, hi in state]
            attn = self._attention(normed, layer)
            state = [self._ablate(*_pad(lo + alo, hi + ahi, np.maximum(np.abs(lo), np.abs(hi)) + np.maximum(np.abs(alo), np.abs(ahi))),
                                  b + "hook_resid_mid")
                     for (lo, hi), (alo, ahi) in zip(state, attn)]
            keep, ref = self.keep[b + "mlp.hook_post"], self.ref[b + "mlp.hook_post"]
            W_in, W_out = w[b + "mlp.W_in"], w[b + "mlp.W_out"]
            new = []
            for lo, hi in state:
                nlo, nhi = _norm(lo, hi, self.eps)
                plo, phi = _matmul(nlo, nhi, W_in[:, keep], w[b + "mlp.b_in"][keep])
                olo, ohi = _matmul(np.maximum(plo, 0), np.maximum(phi, 0), W_out[keep], ref[~keep] @ W_out[~keep] + w[b + "mlp.b_out"])
                olo, ohi = _pad(olo, ohi, np.abs(ref[~keep]) @ np.abs(W_out[~keep]))  # the constant's own rounding
                new.append(_pad(lo + olo, hi + ohi, np.maximum(np.abs(lo), np.abs(hi)) + np.maximum(np.abs(olo), np.abs(ohi))))
            state = new
        lo, hi = self._ablate(*state[T - 1], f"blocks.{self.L - 1}.hook_resid_post")
        nlo, nhi = _norm(lo, hi, self.eps)
        mlo, _ = _matmul(nlo, nhi, direction[:, None], np.array([offset]))
        return mlo[:, 0]

    def _attention(self, normed, layer):
        w, H, dh = self.w, self.H, self.dh
        a = f"blocks.{layer}.attn."
        T = len(normed)
        W_O = w[a + "W_O"]
        keep = {k: self.keep[a + f"hook_{k}"] for k in "qkvz"}
        ref = {k: self.ref[a + f"hook_{k}"] for k in "qkvz"}
        base = ref["z"][~keep["z"]] @ W_O[~keep["z"]] + w[a + "b_O"]
        base_terms = np.abs(ref["z"][~keep["z"]]) @ np.abs(W_O[~keep["z"]]) + np.abs(w[a + "b_O"])
        outs = [[np.zeros((len(lo), base.size)) + base, np.zeros((len(lo), base.size)) + base,
                 np.zeros((len(lo), base.size)) + base_terms] for lo, _ in normed]

        def channel(kind, h, idx, lo, hi):
            clo, chi = _matmul(lo, hi, w[a + f"W_{kind.upper()}"][h][:, idx], w[a + f"b_{kind.upper()}"][h][idx])
            return np.where(keep[kind][h][idx], clo, ref[kind][h][idx]), np.where(keep[kind][h][idx], chi, ref[kind][h][idx])

        for h in range(H):
            zs = np.flatnonzero(keep["z"][h])
            if zs.size == 0:
                continue
            used = keep["q"][h] | keep["k"][h]
            idx = np.flatnonzero(used)
            const = float((ref["q"][h][~used] * ref["k"][h][~used]).sum())
            const_terms = float(np.abs(ref["q"][h][~used] * ref["k"][h][~used]).sum())
            q = [channel("q", h, idx, lo, hi) for lo, hi in normed]
            k = [channel("k", h, idx, lo, hi) for lo, hi in normed]
            v = [channel("v", h, zs, lo, hi) for lo, hi in normed]
            k_any = [(klo.min(0), khi.max(0)) for klo, khi in k]
            v_any = [(vlo.min(0), vhi.max(0)) for vlo, vhi in v]
            sink = w[a + "sink"][h] if (a + "sink") in w else None
            for i in range(T):
                qlo, qhi = q[i]
                n = len(qlo)
                s_lo, s_hi = np.full((n, i + 1), 0.0), np.full((n, i + 1), 0.0)
                for j in range(i + 1):
                    klo, khi = (k[i][0], k[i][1]) if j == i else (k_any[j][0][None], k_any[j][1][None])
                    plo, phi = _products(qlo, qhi, klo, khi)
                    s_lo[:, j], s_hi[:, j] = plo.sum(-1), phi.sum(-1)
                s_lo, s_hi = (s_lo + const) / math.sqrt(dh), (s_hi + const) / math.sqrt(dh)
                m = PAD * (np.maximum(np.abs(s_lo), np.abs(s_hi)) + const_terms + 1.0) + 1e-300
                s_lo, s_hi = s_lo - m, s_hi + m
                top = s_hi.max(-1, keepdims=True)
                if sink is not None:
                    top = np.maximum(top, sink)
                e_lo, e_hi = np.exp(s_lo - top) * (1 - REL), np.exp(s_hi - top) * (1 + REL)
                es = np.exp(sink - top) if sink is not None else np.zeros_like(top)
                es_lo, es_hi = es * (1 - REL), es * (1 + REL)
                S_lo, S_hi = e_lo.sum(-1, keepdims=True), e_hi.sum(-1, keepdims=True)
                w_lo = e_lo / (e_lo + (S_hi - e_hi + REL * S_hi) + es_hi) * (1 - REL)
                w_hi = np.minimum(e_hi / (e_hi + np.maximum(S_lo - e_lo - REL * S_lo, 0) + es_lo) * (1 + REL), 1.0)
                t_lo = 1 - np.minimum(es_hi / (es_hi + S_lo) * (1 + REL), 1.0)
                t_hi = 1 - es_lo / (es_lo + S_hi) * (1 - REL)
                for ci, c in enumerate(zs):
                    row = W_O[h, c]
                    a_lo = np.array([v_any[j][0][ci] for j in range(i)] + [0.0])[None, :].repeat(n, 0)
                    a_hi = np.array([v_any[j][1][ci] for j in range(i)] + [0.0])[None, :].repeat(n, 0)
                    a_lo[:, i], a_hi[:, i] = v[i][0][:, ci], v[i][1][:, ci]  # the query's own value
                    z_lo = _least_weighted_sum(a_lo, w_lo, w_hi, t_lo[:, 0], t_hi[:, 0])
                    z_hi = -_least_weighted_sum(-a_hi, w_lo, w_hi, t_lo[:, 0], t_hi[:, 0])
                    lo_c = np.where(row >= 0, z_lo[:, None] * row, z_hi[:, None] * row)
                    hi_c = np.where(row >= 0, z_hi[:, None] * row, z_lo[:, None] * row)
                    outs[i][0] += lo_c
                    outs[i][1] += hi_c
                    outs[i][2] += np.maximum(np.abs(lo_c), np.abs(hi_c))
        return [_pad(lo, hi, s) for lo, hi, s in outs]


def _domain_boxes(domain: dict) -> list[list[list[int]]]:
    """The domain's boxes as byte tokens, rebuilt from its parts (literal text or alphabet slots)."""
    slots = [p for p in domain["parts"] if isinstance(p, dict)]
    counts = [[]]
    for slot in slots:
        counts = [c + [n] for c in counts for n in range(slot["least"], slot["most"] + 1)]
    boxes = []
    for chosen in counts:
        box, it = [], iter(chosen)
        for part in domain["parts"]:
            if isinstance(part, dict):
                box.extend([sorted(set(part["alphabet"].encode()))] * next(it))
            else:
                box.extend([[byte] for byte in part.encode()])
        if box:
            boxes.append(box)
    return boxes


def check_certificate(cert: dict, weights: dict[str, np.ndarray], weights_sha256: str | None) -> CheckResult:
    """All four checks of the module docstring; every problem found is listed."""
    from .domain_proof import CERTIFICATE_FORMAT  # the format name only

    result = CheckResult(True)

    def problem(text: str) -> None:
        result.ok = False
        result.problems.append(text)

    if cert.get("format") != CERTIFICATE_FORMAT:
        problem(f"not a {CERTIFICATE_FORMAT} certificate (format {cert.get('format')!r})")
        return result
    if cert.get("status") != "proved":
        problem(f"the certificate records a {cert.get('status')} search, not a proof")
    if cert.get("model_sha256") != weights_sha256:
        problem(f"the weights differ from the proof's (SHA-256 {weights_sha256} vs {cert.get('model_sha256')})")
    nodes = cert["nodes"]
    roots = [nodes[i]["sets"] for i in cert["roots"]]
    if roots != _domain_boxes(cert["domain"]):
        problem("the roots are not the domain's boxes")
    covered = 0
    a, b = cert["claim_tokens"]
    direction = cert["sign"] * (weights["unembed.W_U"][:, a] - (weights["unembed.W_U"][:, b] if b >= 0 else 0.0))
    offset = cert["sign"] * (float(weights["unembed.b_U"][a]) - (float(weights["unembed.b_U"][b]) if b >= 0 else cert["threshold"]))
    circuit = _Circuit(weights, cert)
    for n, node in enumerate(nodes):
        sets, proved = node["sets"], node["proved"]
        last = set(sets[-1])
        if not set(proved) <= last or len(set(proved)) != len(proved):
            problem(f"node {n}: proves tokens outside its last set")
        rest = last - set(proved)
        if node["split"] is None:
            if rest:
                problem(f"node {n}: {len(rest)} tokens of its last set are neither proved nor split")
        else:
            p = node["split"]
            kids = [nodes[c]["sets"] for c in node["children"]]
            if len(kids) != 2 or not 0 <= p < len(sets) - 1:
                problem(f"node {n}: a split needs two children and an earlier position")
            else:
                parts = [set(kid[p]) for kid in kids]
                if parts[0] & parts[1] or parts[0] | parts[1] != set(sets[p]) or not all(parts):
                    problem(f"node {n}: its children do not partition position {p}")
                for kid in kids:
                    if any(kid[i] != sets[i] for i in range(len(sets) - 1) if i != p) or set(kid[-1]) != rest:
                        problem(f"node {n}: a child differs from it elsewhere than the split")
        if proved:
            covered += math.prod(len(s) for s in sets[:-1]) * len(proved)
            bounds = circuit.bound(sets[:-1] + [proved], direction, offset)
            result.least_bound = min(result.least_bound, float(bounds.min()))
            if (bounds <= 0).any():
                problem(f"node {n}: recomputed lower bound {float(bounds.min()):.3g} is not above 0")
    result.nodes, result.proved_inputs = len(nodes), covered
    if covered != cert["domain"]["size"]:
        problem(f"proved boxes cover {covered:,} inputs, the domain has {cert['domain']['size']:,}")
    return result


def load_weights(model_ref: str) -> tuple[dict[str, np.ndarray], str | None]:
    """A model's parameters as float64 arrays (loaded by the project's checkpoint loader, which checks the
    weights file against its manifest's hash), and that hash."""
    from ..engine.zoo import load_model

    model = load_model(model_ref)
    weights = {name: p.detach().cpu().double().numpy() for name, p in model.named_parameters()}
    return weights, model.weights_sha256


def read_certificate(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))
