"""A small GPT-style decoder built for circuit analysis (nanoGPT in spirit, TransformerLens in names).

Choices that serve interpretability rather than loss:
- RMSNorm without a learned gain: the gain would only rescale the next weight matrix, and without it
  zero keeps a privileged meaning in the residual stream (the paper folds the gains the same way).
- ReLU MLPs: exactly piecewise linear, so a solver can reason about them.
- An attention sink per head (a learned logit for "attend to nothing"), so a head can stay silent.
- Untied, separately sparsified embedding and unembedding.
- Every weight matrix is an explicit parameter named like TransformerLens (``W_Q`` [head, d_model, d_head]
  …), so graph edges, masks and checkpoints all speak of the same tensors.

Options for models trained elsewhere (all off by default, so circuitspec's own models are unchanged; see
docs/models.md and :mod:`.convert_circuit_sparsity`): a learned RMSNorm gain (``norm_weight``, kept as a
parameter ``w`` because AbsTopK after the norm makes folding it into the next matrix inexact) and its
``norm_eps``, GELU neurons (``act_fn``: exact, or the tanh approximation GPT-2 uses), AbsTopK at named sites with k = floor(``topk_fraction`` x width)
(``topk_sites``; q, k and v each over all heads jointly), and a dense bigram logit table read by the
current token (``bigram``). Biases and the attention sink are part of the model in any case.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from functools import partial
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from .hooks import HookedModule, HookPoint
from .tokenizer import BYTES, VOCAB_SIZE, Tokenizer

# AbsTopK sites of ``ModelConfig.topk_sites``, where in a block each one acts (the hook that records the
# result): attn_in / mlp_in the norm outputs (``ln1``/``ln2.hook_normalized``), q / k / v the projections
# (``attn.hook_q`` …, over all heads at once), attn_out / mlp_out the sublayer outputs (``hook_attn_out``,
# ``hook_mlp_out``), mlp_post the neurons after the activation function (``mlp.hook_post``).
TOPK_SITES = ("attn_in", "q", "k", "v", "attn_out", "mlp_in", "mlp_post", "mlp_out")
ACT_FNS = ("relu", "gelu", "gelu_tanh")  # gelu_tanh: F.gelu(approximate="tanh"), GPT-2's "gelu_new"


@dataclass(frozen=True)
class ModelConfig:
    n_layers: int = 2
    d_model: int = 128
    n_heads: int = 4
    d_head: int = 32
    d_mlp: int = 512
    n_ctx: int = 128
    d_vocab: int = VOCAB_SIZE
    act_topk: int | None = None  # AbsTopK on every residual read (None: off)
    attn_sink: bool = True
    # Options for imported models (module docstring); the defaults are circuitspec's own architecture.
    norm_weight: bool = False  # a learned gain ``w`` on every RMSNorm
    norm_eps: float = 1e-5
    act_fn: str = "relu"  # one of ACT_FNS; gelu is the exact (erf) form, gelu_tanh the tanh approximation
    topk_fraction: float | None = None  # AbsTopK keeps floor(topk_fraction * width) at each of topk_sites
    topk_sites: tuple[str, ...] = ()
    bigram: bool = False  # logits += bigram[current token], a dense [d_vocab, d_vocab] table

    def __post_init__(self) -> None:
        for name in ("n_layers", "d_model", "n_heads", "d_head", "d_mlp", "n_ctx", "d_vocab"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ValueError(f"model config: {name} must be a positive integer, got {getattr(self, name)!r}")
        if self.act_topk is not None and not 1 <= self.act_topk <= self.d_model:
            raise ValueError(f"model config: act_topk must be in [1, d_model={self.d_model}] or null")
        if not (isinstance(self.norm_eps, (int, float)) and 0 < self.norm_eps < 1):
            raise ValueError(f"model config: norm_eps must be a number in (0, 1), got {self.norm_eps!r}")
        if self.act_fn not in ACT_FNS:
            raise ValueError(f"model config: act_fn must be one of {', '.join(ACT_FNS)}, got {self.act_fn!r}")
        object.__setattr__(self, "topk_sites", tuple(self.topk_sites))  # a JSON list becomes a tuple
        unknown = [s for s in self.topk_sites if s not in TOPK_SITES]
        if unknown or len(set(self.topk_sites)) != len(self.topk_sites):
            raise ValueError(f"model config: topk_sites must be distinct names among {', '.join(TOPK_SITES)}, "
                             f"got {list(self.topk_sites)}")
        if (self.topk_fraction is None) != (not self.topk_sites):
            raise ValueError("model config: topk_fraction and topk_sites go together (both set, or null and empty)")
        if self.topk_fraction is not None and not 0 < self.topk_fraction <= 1:
            raise ValueError(f"model config: topk_fraction must be in (0, 1], got {self.topk_fraction!r}")
        if self.act_topk is not None and self.topk_fraction is not None:
            raise ValueError("model config: act_topk and topk_fraction exclude each other (both sparsify the norm outputs)")

    def topk(self, site: str) -> int | None:
        """How many entries AbsTopK keeps at ``site`` (one of TOPK_SITES), or None where it is off."""
        if site in ("attn_in", "mlp_in") and self.act_topk is not None:
            return self.act_topk
        if site not in self.topk_sites:
            return None
        width = {"q": self.n_heads * self.d_head, "k": self.n_heads * self.d_head, "v": self.n_heads * self.d_head,
                 "mlp_post": self.d_mlp}.get(site, self.d_model)
        return math.floor(self.topk_fraction * width)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "ModelConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"model config: unknown keys {unknown} (known: {sorted(known)})")
        return cls(**data)


def linear(x: torch.Tensor, W: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``x @ W + b`` over the last dim as one fused product (``addmm``: the bias added inside the matrix
    product, not in a pass of its own over the output)."""
    return torch.addmm(b, x.reshape(-1, x.shape[-1]), W).view(*x.shape[:-1], W.shape[-1])


def sink_softmax(scores: torch.Tensor, sink: torch.Tensor) -> torch.Tensor:
    """Attention weights over the keys when each head also has a "nothing" logit ``sink`` ([1, H, 1, 1]):
    one softmax over the scores with the sink's column appended, the keys' part returned (a view). One
    fused softmax is about 40% cheaper on a CPU than the same weights computed in separate passes (max,
    exp, sum, divide)."""
    B, H, Tq, Tk = scores.shape
    return torch.softmax(torch.cat([scores, sink.expand(B, H, Tq, 1)], -1), -1)[..., :Tk]


def blocked_keys(causal: torch.Tensor, T: int, at: torch.Tensor | None) -> torch.Tensor:
    """Where attention scores are -inf: keys after their query (``[T, T]``, from the ``causal`` buffer),
    or, with queries at the positions ``at`` [B] alone, keys after each row's own (``[B, 1, 1, T]``)."""
    if at is None:
        return ~causal[:T, :T]
    return (torch.arange(T, device=at.device) > at[:, None]).view(-1, 1, 1, T)


def rms_normalize(x: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps)


def abs_topk(x: torch.Tensor, k: int) -> torch.Tensor:
    """Keep the k largest-magnitude entries of the last dimension, zero the rest."""
    idx = x.abs().topk(k, dim=-1).indices
    return torch.zeros_like(x).scatter(-1, idx, x.gather(-1, idx))


class Norm(nn.Module):
    """RMSNorm, gain-free unless ``cfg.norm_weight`` (then ``w``, after the scale), optionally followed by
    AbsTopK, with hooks on its scale and output."""

    def __init__(self, cfg: ModelConfig, act_topk: int | None) -> None:
        super().__init__()
        self.act_topk = act_topk
        self.eps = cfg.norm_eps
        self.w = nn.Parameter(torch.ones(cfg.d_model)) if cfg.norm_weight else None
        self.hook_scale = HookPoint()  # 1 / rms, one number per position
        self.hook_normalized = HookPoint()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = self.hook_scale(torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps))
        y = x * scale
        if self.w is not None:
            y = y * self.w
        if self.act_topk is not None:
            y = abs_topk(y, self.act_topk)
        return self.hook_normalized(y)


def _pre_topk_hook(k: int | None) -> HookPoint | None:
    """Where a matrix's output lands when AbsTopK follows it (so edge ablation corrects it before the
    selection); absent where the site has no AbsTopK, so circuitspec's own models keep their hook list."""
    return HookPoint() if k is not None else None


class Attention(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        H, D, dh = cfg.n_heads, cfg.d_model, cfg.d_head
        self.W_Q = nn.Parameter(torch.empty(H, D, dh))
        self.W_K = nn.Parameter(torch.empty(H, D, dh))
        self.W_V = nn.Parameter(torch.empty(H, D, dh))
        self.W_O = nn.Parameter(torch.empty(H, dh, D))
        self.b_Q = nn.Parameter(torch.zeros(H, dh))
        self.b_K = nn.Parameter(torch.zeros(H, dh))
        self.b_V = nn.Parameter(torch.zeros(H, dh))
        self.b_O = nn.Parameter(torch.zeros(D))
        self.sink = nn.Parameter(torch.zeros(H)) if cfg.attn_sink else None
        self.topk_qkv = {kind: cfg.topk(kind) for kind in "qkv"}
        self.hook_q_pre_topk = _pre_topk_hook(self.topk_qkv["q"])  # [batch, pos, head, d_head], before AbsTopK
        self.hook_k_pre_topk = _pre_topk_hook(self.topk_qkv["k"])
        self.hook_v_pre_topk = _pre_topk_hook(self.topk_qkv["v"])
        self.register_buffer("causal", torch.tril(torch.ones(cfg.n_ctx, cfg.n_ctx, dtype=torch.bool)), persistent=False)
        self.hook_q = HookPoint()  # [batch, pos, head, d_head]
        self.hook_k = HookPoint()
        self.hook_v = HookPoint()
        self.hook_attn_scores = HookPoint()  # [batch, head, query_pos, key_pos]
        self.hook_pattern = HookPoint()
        self.hook_z = HookPoint()  # [batch, pos, head, d_head]

    def forward(self, x: torch.Tensor, at: torch.Tensor | None = None) -> torch.Tensor:
        """``at`` [B]: queries and output only at these positions, ``[B, 1, D]`` (keys and values still
        come from every position; see :meth:`Transformer.forward`)."""
        B, T, D = x.shape
        H, dh = self.W_Q.shape[0], self.W_Q.shape[2]

        def project(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:  # [B, T, D] -> [B, T, H, dh]
            return linear(x, w.permute(1, 0, 2).reshape(D, H * dh), b.reshape(H * dh)).view(*x.shape[:2], H, dh)

        def sparsify(kind: str, x: torch.Tensor) -> torch.Tensor:  # AbsTopK over all heads' channels at once
            k = self.topk_qkv[kind]
            if k is None:
                return x
            return abs_topk(getattr(self, f"hook_{kind}_pre_topk")(x).flatten(-2), k).view_as(x)

        # with ``at``, queries at the answers alone ([B, 1, H, dh]); each still sees the keys up to its own position
        x_q = x if at is None else x[torch.arange(B, device=x.device), at].unsqueeze(1)
        q = self.hook_q(sparsify("q", project(x_q, self.W_Q, self.b_Q)))
        k = self.hook_k(sparsify("k", project(x, self.W_K, self.b_K)))
        v = self.hook_v(sparsify("v", project(x, self.W_V, self.b_V)))
        scores = (q.transpose(1, 2) @ k.permute(0, 2, 3, 1)) / math.sqrt(dh)  # [B, H, T or 1, T]
        scores = self.hook_attn_scores(scores.masked_fill(blocked_keys(self.causal, T, at), float("-inf")))
        if self.sink is not None:
            pattern = sink_softmax(scores, self.sink.view(1, H, 1, 1))
        else:
            pattern = torch.softmax(scores, dim=-1)
        pattern = self.hook_pattern(pattern)
        z = self.hook_z((pattern @ v.transpose(1, 2)).transpose(1, 2))  # [B, T or 1, H, dh]
        return linear(z.reshape(B, z.shape[1], H * dh), self.W_O.reshape(H * dh, D), self.b_O)


class MLP(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.W_in = nn.Parameter(torch.empty(cfg.d_model, cfg.d_mlp))
        self.b_in = nn.Parameter(torch.zeros(cfg.d_mlp))
        self.W_out = nn.Parameter(torch.empty(cfg.d_mlp, cfg.d_model))
        self.b_out = nn.Parameter(torch.zeros(cfg.d_model))
        self.act = {"relu": F.relu, "gelu": F.gelu, "gelu_tanh": partial(F.gelu, approximate="tanh")}[cfg.act_fn]
        self.topk_post = cfg.topk("mlp_post")
        self.hook_pre = HookPoint()  # [batch, pos, d_mlp]
        self.hook_post = HookPoint()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pre = self.hook_pre(linear(x, self.W_in, self.b_in))
        if self.act is F.relu and not self.hook_pre.fns:  # pre is the product's own output, seen by no hook:
            post = pre.relu_()  # rectified in place, one pass over it fewer (8-10% of a small model's forward)
        else:
            post = self.act(pre)
        if self.topk_post is not None:
            post = abs_topk(post, self.topk_post)
        post = self.hook_post(post)
        return linear(post, self.W_out, self.b_out)


class Block(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.ln1 = Norm(cfg, cfg.topk("attn_in"))
        self.attn = Attention(cfg)
        self.ln2 = Norm(cfg, cfg.topk("mlp_in"))
        self.mlp = MLP(cfg)
        self.topk_attn_out, self.topk_mlp_out = cfg.topk("attn_out"), cfg.topk("mlp_out")
        self.hook_resid_pre = HookPoint()  # [batch, pos, d_model]
        self.hook_attn_out_pre_topk = _pre_topk_hook(self.topk_attn_out)
        self.hook_attn_out = HookPoint()
        self.hook_resid_mid = HookPoint()
        self.hook_mlp_out_pre_topk = _pre_topk_hook(self.topk_mlp_out)
        self.hook_mlp_out = HookPoint()
        self.hook_resid_post = HookPoint()

    def forward(self, resid: torch.Tensor, at: torch.Tensor | None = None) -> torch.Tensor:
        """``at`` [B]: everything after attention only at these positions (``[B, 1, D]`` out)."""
        resid = self.hook_resid_pre(resid)
        attn_out = self.attn(self.ln1(resid), at)
        if at is not None:
            resid = resid[torch.arange(resid.shape[0], device=resid.device), at].unsqueeze(1)
        resid = self.hook_resid_mid(resid + self.hook_attn_out(self._sparsify(attn_out, "attn_out")))
        return self.hook_resid_post(resid + self.hook_mlp_out(self._sparsify(self.mlp(self.ln2(resid)), "mlp_out")))

    def _sparsify(self, out: torch.Tensor, site: str) -> torch.Tensor:
        k = getattr(self, f"topk_{site}")
        return out if k is None else abs_topk(getattr(self, f"hook_{site}_pre_topk")(out), k)


class Embed(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.W_E = nn.Parameter(torch.empty(cfg.d_vocab, cfg.d_model))


class PosEmbed(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.W_pos = nn.Parameter(torch.empty(cfg.n_ctx, cfg.d_model))


class Unembed(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.W_U = nn.Parameter(torch.empty(cfg.d_model, cfg.d_vocab))
        self.b_U = nn.Parameter(torch.zeros(cfg.d_vocab))
        # row = current token, column = next-token logit; dense and never masked (like the input and the
        # logits, it is outside every circuit's choice)
        self.bigram = nn.Parameter(torch.zeros(cfg.d_vocab, cfg.d_vocab)) if cfg.bigram else None


class Transformer(HookedModule):
    """tokens [batch, pos] (ids of ``tokenizer``) -> logits [batch, pos, d_vocab]."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.embed = Embed(cfg)
        self.pos_embed = PosEmbed(cfg)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layers))
        self.ln_final = Norm(cfg, None)
        self.unembed = Unembed(cfg)
        self.hook_embed = HookPoint()
        self.hook_pos_embed = HookPoint()
        self.hook_logits = HookPoint()
        # Where the weights came from, set by checkpoint.load_checkpoint (None for a model built in
        # memory): the folder, so that data stored beside the weights (corpus_means.safetensors) can be
        # found, and the weights file's SHA-256, so that such data can be checked to belong to them.
        self.checkpoint_dir: Path | None = None
        self.weights_sha256: str | None = None
        # What its token ids mean (tokenizer.py): bytes unless the checkpoint records another tokenizer;
        # every stage that turns text into ids or ids into names asks this.
        self.tokenizer: Tokenizer = BYTES
        self.reset_parameters()
        self.setup_hooks()

    @classmethod
    def zeros(cls, cfg: ModelConfig, anchor: bool = True) -> "Transformer":
        """A model to plant a circuit in by hand: every parameter zero (norm gains, if any, one), eval mode, no
        gradients (so ``model.blocks[0].mlp.W_in[3, 0] = 1.0`` just works; ``requires_grad_()`` to train it after).

        Why the anchor: every norm is a gain-free RMSNorm over all channels, so in an otherwise empty
        residual a lone hand-set channel v would be read as sqrt(d_model) * sign(v), whatever v is. With
        ``anchor`` the position embedding writes sqrt(d_model * (1 - eps)) into the last residual channel
        (``d_model - 1``) at every position: a residual holding only it has norm scale 1, and hand-set
        channels v are read as v / sqrt(1 + |v|^2 / d_model): v, to a relative error of at most
        |v|^2 / (2 d_model), |v|^2 the sum of squares of every hand-set channel at that position. Plant
        circuits in the other channels and keep the anchor's weights zero (unless a constant input is
        wanted). Attention sinks are 0 too: "attend to nothing" competes as one more key of score 0.
        """
        if anchor and cfg.d_model < 2:
            raise ValueError("an anchored model needs d_model >= 2: one channel for the anchor, one for the circuit")
        model = cls(cfg).eval().requires_grad_(False)
        for name, p in model.named_parameters():
            p.fill_(1.0 if name.endswith(".w") else 0.0)  # norm gains (norm_weight) are 1: no gain
        if anchor:
            model.pos_embed.W_pos[:, -1] = math.sqrt(cfg.d_model * (1 - cfg.norm_eps))
        return model

    def reset_parameters(self) -> None:
        """GPT-2-like init; output projections scaled down by depth."""
        for name, p in self.named_parameters():
            if name.split(".")[-1].startswith("W_"):
                std = 0.02 / math.sqrt(2 * self.cfg.n_layers) if name.endswith(("W_O", "W_out")) else 0.02
                nn.init.normal_(p, std=std)
            elif name.endswith(".w"):  # norm gains
                nn.init.ones_(p)
            else:
                nn.init.zeros_(p)

    def forward(self, tokens: torch.Tensor, at: torch.Tensor | None = None) -> torch.Tensor:
        """Logits ``[B, T, V]``; with ``at`` [B] only those at position ``at[b]`` of each row, ``[B, V]``.

        Only the last block's queries, its attention and what follows are position by position (its
        keys and values are read at every position), so with ``at`` they are computed at the answer
        positions alone: ``hook_q``, ``hook_attn_scores``, ``hook_pattern`` and ``hook_z`` of the last
        block, and every hook after them, see one position (``[B, 1, ...]``; scores and pattern
        ``[B, H, 1, T]``, keys after ``at[b]`` at -inf and weight 0). The values are the full pass's up to
        float rounding (the products have other shapes).
        """
        B, T = tokens.shape
        if T > self.cfg.n_ctx:
            raise ValueError(f"sequence length {T} exceeds the model's context n_ctx={self.cfg.n_ctx}")
        resid = self.hook_embed(self.embed.W_E[tokens]) + self.hook_pos_embed(self.pos_embed.W_pos[:T].expand(B, -1, -1))
        for i, block in enumerate(self.blocks):
            resid = block(resid, at if i == len(self.blocks) - 1 else None)
        if at is None:
            return self.hook_logits(self.unembed_resid(resid, tokens))
        if not self.blocks:  # no block to cut: read the embeddings at the answer
            resid = resid[torch.arange(B, device=resid.device), at].unsqueeze(1)
        answer_tokens = tokens[torch.arange(B, device=tokens.device), at].unsqueeze(1)
        return self.hook_logits(self.unembed_resid(resid, answer_tokens))[:, 0]

    def unembed_resid(self, resid: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """Logits from the final residual stream ``[..., d_model]`` and the current tokens ``[...]`` (which
        only the bigram table reads): one definition for the forward pass and for checks that start from
        a residual stream."""
        logits = self.ln_final(resid) @ self.unembed.W_U + self.unembed.b_U
        if self.unembed.bigram is not None:
            logits = logits + self.unembed.bigram[tokens]
        return logits

    def weight_matrices(self) -> dict[str, nn.Parameter]:
        """The parameters that weight sparsity projects (every ``W_*``; biases and sinks stay dense)."""
        return {n: p for n, p in self.named_parameters() if n.split(".")[-1].startswith("W_")}

    @property
    def device(self) -> torch.device:
        return self.embed.W_E.device
