"""Edges as ablations: an edge A -> B ablated means that B reads A as if A carried its reference value along
this edge, while everything else B reads, and everything else A feeds, stays as it is in the run.

Where the two ends meet the residual stream decides how that is done:

- **Adjacent ends**, joined by one weight matrix (a residual channel and the q/k/v channel, neuron or logit
  reading it through a norm; a z channel, neuron or embedding row and the residual channel it writes):
  the edge is those weight entries, ablated by the edge mask (:mod:`.ablation`: each ablated entry reads
  the reference input of its matrix).
- **Ends further apart** (a neuron of block 0 and a value channel of block 1; a z channel and a logit;
  two points of one residual channel): the edge is the paths from A through the residual channels to B.
  Ablating a weight on such a path would cut A from every reader of the channel, or every other writer
  of the channel from B, so the paths are cut instead (path patching): B's input loses A's share of
  the residual stream and gets A's reference share, ``(a - a_ref) @ W_write``, through the norm in front
  of B as it is in the run (the norm is frozen: the cut changes what B reads, not how its input is
  normalized). A :class:`PathCut` is one such bundle of paths; a :class:`~.masks.Mask` carries the cuts of
  its condition, and the masked forward applies them.

Pairs joined only through a head's attention (q/k -> pattern -> z, v -> z) have no weights and are not
part of an edge (see :attr:`EdgeCut.through_attention`). A path passing a residual channel that A or B
itself names is left to that node's own edge, so no share is taken out twice. Paths assume the residual
stream is linear from A's write to B's read: models with AbsTopK are not supported (``ValueError``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Callable, Sequence

import torch
import torch.nn.functional as F

from .masks import POSITIONS, TOKENS, Mask
from .model import ModelConfig, Transformer
from .naming import NodeName, canonical, is_per_head, resid_hook

if TYPE_CHECKING:  # ablation.py imports this module
    from .ablation import Reference

_BLOCK = re.compile(r"blocks\.(\d+)\.")


def stream_hooks(n_layers: int) -> list[str]:
    """The residual stream's hook points in order: resid_pre and resid_mid of every block, then the final one."""
    hooks = []
    for layer in range(n_layers):
        hooks += [resid_hook(layer, n_layers), f"blocks.{layer}.hook_resid_mid"]
    return hooks + [resid_hook(n_layers, n_layers)]


@dataclass(frozen=True)
class Site:
    """Where one end of an edge meets the residual stream: the activation ``hook``, the matrix between it and
    the stream (``param``; None for a residual channel, which is the stream), the position ``stream`` of the
    residual hook it writes into or reads from, and for a reader the norm module in front of the matrix."""

    hook: str
    param: str | None
    stream: int
    norm: str | None = None


def sender_site(name: NodeName, n_layers: int) -> Site | None:
    """How ``name`` writes into the residual stream; None when it does not (q/k/v, patterns, logits)."""
    hooks = stream_hooks(n_layers)
    if name.hook == "hook_tokens":
        return Site(TOKENS, "embed.W_E", 0)
    if name.hook == "hook_positions":
        return Site(POSITIONS, "pos_embed.W_pos", 0)
    if name.hook in hooks:
        return Site(name.hook, None, hooks.index(name.hook))
    layer = _layer(name.hook)
    if name.hook.endswith("mlp.hook_post"):
        return Site(name.hook, f"blocks.{layer}.mlp.W_out", 2 * layer + 2)
    if name.hook.endswith("attn.hook_z"):
        return Site(name.hook, f"blocks.{layer}.attn.W_O", 2 * layer + 1)
    return None


def receiver_site(name: NodeName, n_layers: int) -> Site | None:
    """How ``name`` reads the residual stream; None when it does not (z, patterns, inputs)."""
    hooks = stream_hooks(n_layers)
    if name.hook == "hook_logits":
        return Site("hook_logits", "unembed.W_U", 2 * n_layers, "ln_final")
    if name.hook in hooks:
        return Site(name.hook, None, hooks.index(name.hook))
    layer = _layer(name.hook)
    if name.hook.endswith("mlp.hook_post"):
        return Site(name.hook, f"blocks.{layer}.mlp.W_in", 2 * layer + 1, f"blocks.{layer}.ln2")
    for kind in "qkv":
        if name.hook.endswith(f"attn.hook_{kind}"):
            return Site(name.hook, f"blocks.{layer}.attn.W_{kind.upper()}", 2 * layer, f"blocks.{layer}.ln1")
    return None


def _layer(hook: str) -> int:
    match = _BLOCK.match(hook)
    return int(match.group(1)) if match else -1


def is_direct(sender: Site, receiver: Site) -> bool:
    """One weight matrix joins the two: a writer and the residual hook it writes, or a residual hook and a reader of it."""
    if sender.param is not None and receiver.param is None:
        return receiver.stream == sender.stream
    return sender.param is None and receiver.param is not None and sender.stream == receiver.stream


def path_positions(sender: Site, receiver: Site) -> range:
    """Positions along the stream a path from ``sender`` to ``receiver`` passes, where ablating the channel
    would already replace what the sender put there: from where the write lands (after the sender's own
    hook, for a residual channel) to where it is read (before the receiver's own hook, for a residual channel,
    since the cut is applied before that hook's node mask)."""
    start = sender.stream + (1 if sender.param is None else 0)
    end = receiver.stream - (1 if receiver.param is None else 0)
    return range(start, end + 1)


def has_path(sender: Site, receiver: Site) -> bool:
    """The residual stream leads from the sender's write to the receiver's read, not through one matrix."""
    if is_direct(sender, receiver):
        return False
    if sender.param is None and receiver.param is None:
        return receiver.stream > sender.stream
    start = sender.stream + (1 if sender.param is None else 0)
    return start <= receiver.stream


def channel_shape(hook: str, cfg: ModelConfig) -> tuple[int, ...]:
    """The channel dimensions of an end's activation (as node masks and weights index them)."""
    if hook in (TOKENS, "hook_logits"):
        return (cfg.d_vocab,)
    if hook == POSITIONS:
        return (cfg.n_ctx,)
    if is_per_head(hook):
        return (cfg.n_heads, cfg.d_head)
    if hook.endswith("mlp.hook_post"):
        return (cfg.d_mlp,)
    return (cfg.d_model,)


def _index(name: NodeName) -> tuple[int, ...]:
    return (name.head, name.index) if is_per_head(name.hook) else (name.index,)


@dataclass(frozen=True, eq=False)
class PathCut:
    """Paths through the residual stream from ``senders`` (bool over the sender site's channels) to
    ``receivers`` (bool over the receiver site's), through the residual ``channels`` (bool [d_model]) only."""

    sender: Site
    senders: torch.Tensor
    receiver: Site
    receivers: torch.Tensor
    channels: torch.Tensor

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, PathCut) and (self.sender, self.receiver) == (other.sender, other.receiver)
                and all(torch.equal(a, b) for a, b in zip((self.senders, self.receivers, self.channels),
                                                         (other.senders, other.receivers, other.channels))))

    __hash__ = None  # type: ignore[assignment]

    def open_channels(self, mask: Mask | None) -> torch.Tensor:
        """``channels`` that the node mask keeps at every residual hook the paths pass: where a hook ablates a
        channel, the run already replaced what the sender put there."""
        channels = self.channels.clone()
        if mask is not None:
            hooks = stream_hooks(mask.space.n_layers)
            for position in path_positions(self.sender, self.receiver):
                channels &= mask.nodes[hooks[position]].cpu()
        return channels

    def write(self, model: Transformer, mask: Mask | None) -> torch.Tensor:
        """What each sender channel adds to the residual on these paths: ``[*sender channels, d_model]``, the
        writing matrix's kept entries (an identity for a residual channel) on the open channels."""
        open_ = self.open_channels(mask)
        if self.sender.param is None:
            return torch.diag((self.senders & open_).float())
        weight = _weight(model, self.sender.param, mask)
        return weight * self.senders.unsqueeze(-1) * open_

    def read(self, model: Transformer, mask: Mask | None) -> torch.Tensor:
        """How the receivers read the residual on these paths: the reading matrix's kept entries from the
        open channels into the receivers (weight's shape), or for a residual channel an identity ``[d, d]``."""
        open_ = self.open_channels(mask)
        if self.receiver.param is None:
            return torch.diag((self.receivers & open_).float())
        weight = _weight(model, self.receiver.param, mask)
        if weight.dim() == 3:  # W_Q/K/V [head, d_model, d_head]
            return weight * open_.view(1, -1, 1) * self.receivers.unsqueeze(1)
        return weight * open_.view(-1, 1) * self.receivers.view(1, -1)  # W_in, W_U [d_model, out]

    def count(self, model: Transformer, mask: Mask | None = None) -> int:
        """Paths (sender channel, residual channel, receiver channel) with a non-zero weight at each step."""
        writes = (self.write(model, mask) != 0).reshape(-1, model.cfg.d_model).sum(0)
        read = self.read(model, mask) != 0
        reads = read.sum((0, 2)) if read.dim() == 3 else read.sum(1)
        return int((writes * reads).sum())


def _weight(model: Transformer, param: str, mask: Mask | None) -> torch.Tensor:
    weight = model.weight_matrices()[param].detach().cpu()
    return weight * mask.edges[param].cpu() if mask is not None else weight


@dataclass(frozen=True, eq=False)
class EdgeCut:
    """An edge A -> B as what ablating it removes: ``direct`` weight entries (weight name -> bool, the weight's
    shape; only non-zero weights) and ``paths`` through the residual stream. ``through_attention``: some
    pairs of ends are joined only through a head's attention, which has no weights and is not part of it."""

    direct: dict[str, torch.Tensor]
    paths: tuple[PathCut, ...]
    through_attention: bool = False

    def weights(self) -> int:
        return int(sum(t.sum() for t in self.direct.values()))

    def path_count(self, model: Transformer, mask: Mask | None = None) -> int:
        return sum(cut.count(model, mask) for cut in self.paths)

    def empty(self, model: Transformer) -> bool:
        return self.weights() == 0 and self.path_count(model) == 0

    def within(self, model: Transformer, mask: Mask) -> "EdgeCut":
        """The part of the edge that ``mask`` carries: direct weights it keeps, paths through channels it keeps
        with weights it keeps (an ablated weight or channel already reads the reference)."""
        direct = {p: t & mask.edges[p].cpu() for p, t in self.direct.items()}
        direct = {p: t for p, t in direct.items() if bool(t.any())}
        paths = []
        for cut in self.paths:
            kept = replace(cut, channels=cut.open_channels(mask))
            if kept.count(model, mask):
                paths.append(kept)
        return EdgeCut(direct, tuple(paths), self.through_attention)


def edge_cut(model: Transformer, sources: Sequence[NodeName], targets: Sequence[NodeName]) -> EdgeCut:
    """The edge from the channels ``sources`` to the channels ``targets`` (graph node names), as what ablating
    it removes: the non-zero weights joining adjacent pairs, and the paths through the residual stream joining
    the others (see the module docstring). Empty when nothing joins them."""
    cfg = model.cfg
    L = cfg.n_layers
    sources = [canonical(n, L) for n in sources]
    targets = [canonical(n, L) for n in targets]
    on_stream = _stream_nodes(sources + targets, cfg)
    senders = _channels_by_site(sources, sender_site, cfg)
    receivers = _channels_by_site(targets, receiver_site, cfg)
    weights = model.weight_matrices()
    direct: dict[str, torch.Tensor] = {}
    paths: list[PathCut] = []
    for sender, sent in senders.items():
        for receiver, received in receivers.items():
            if is_direct(sender, receiver):
                param = sender.param or receiver.param
                entries = _direct_entries(sender, sent, receiver, received)
                entries &= weights[param].detach().cpu() != 0
                if bool(entries.any()):
                    direct[param] = direct.get(param, torch.zeros_like(entries)) | entries
            elif has_path(sender, receiver):
                covered = torch.zeros(cfg.d_model, dtype=torch.bool)
                for position in path_positions(sender, receiver):
                    if position in on_stream:  # a residual channel A or B names itself: its own edge covers these
                        covered |= on_stream[position]
                cut = PathCut(sender, sent, receiver, received, ~covered)
                if cut.count(model):
                    paths.append(cut)
    return EdgeCut(direct, tuple(paths), _through_attention(sources, targets))


def _channels_by_site(names: Sequence[NodeName], site_of: Callable, cfg: ModelConfig) -> dict[Site, torch.Tensor]:
    out: dict[Site, torch.Tensor] = {}
    for name in names:
        site = site_of(name, cfg.n_layers)
        if site is None:
            continue
        if site not in out:
            out[site] = torch.zeros(channel_shape(site.hook, cfg), dtype=torch.bool)
        out[site][_index(name)] = True
    return out


def _stream_nodes(names: Sequence[NodeName], cfg: ModelConfig) -> dict[int, torch.Tensor]:
    """The residual channels among ``names``, by position along the stream."""
    hooks = stream_hooks(cfg.n_layers)
    out: dict[int, torch.Tensor] = {}
    for name in names:
        if name.hook in hooks:
            position = hooks.index(name.hook)
            out.setdefault(position, torch.zeros(cfg.d_model, dtype=torch.bool))[name.index] = True
    return out


def _direct_entries(sender: Site, sent: torch.Tensor, receiver: Site, received: torch.Tensor) -> torch.Tensor:
    """Entries of the one matrix between adjacent ends, as a bool tensor of its shape."""
    if sender.param is not None:  # a writer into the residual channels ``received``: [*sender channels, d_model]
        return sent.unsqueeze(-1) & received
    if received.dim() == 2:  # the residual channels ``sent`` into q/k/v [head, d_head]: W [head, d_model, d_head]
        return sent.view(1, -1, 1) & received.unsqueeze(1)
    return sent.view(-1, 1) & received.view(1, -1)  # into neurons or logits: W [d_model, out]


def _through_attention(sources: Sequence[NodeName], targets: Sequence[NodeName]) -> bool:
    """Whether some source and target are joined by a head's attention (q/k -> pattern -> z, v -> z)."""
    into = {(_layer(t.hook), t.head) for t in targets if t.hook.endswith(("attn.hook_z", "attn.hook_pattern"))}
    return any((_layer(s.hook), s.head) in into for s in sources
               if s.hook.endswith(("attn.hook_q", "attn.hook_k", "attn.hook_v", "attn.hook_pattern")))


def cut_edge(mask: Mask, cut: EdgeCut) -> Mask:
    """``mask`` with the edge ablated: its direct weights removed from the edge mask, its paths cut."""
    edges = dict(mask.edges)
    for param, entries in cut.direct.items():
        edges[param] = edges[param] & ~entries.to(edges[param].device)
    return Mask(mask.space, mask.nodes, edges, cuts=mask.cuts + cut.paths)


# ---- the masked forward's side: hooks that apply a condition's path cuts ----------------------------------


def check_linear(cfg: ModelConfig) -> None:
    """Path cuts subtract a sender's share of the residual stream, which needs the stream to be linear there."""
    if cfg.act_topk is not None or cfg.topk_sites:
        raise ValueError("path cuts through the residual stream are not supported for models with AbsTopK")


def path_hooks(model: Transformer, tokens: torch.Tensor, mask: Mask, reference: "Reference", k: int, condition: int,
               output_hook: Callable[[str], str]) -> tuple[dict[str, list], dict[str, list]]:
    """Hook functions applying ``mask.cuts`` to condition ``condition`` of a pass over ``k`` conditions stacked
    along the batch: (corrections, saves). Corrections run at a receiver's matrix output (or its residual hook)
    before the node mask there; saves run after the node masks, at each sender's hook (its value minus its
    reference, through the writing matrix) and at the receiver's norm scale. ``output_hook``: weight name ->
    the hook its output lands in. One-hot senders (token and position rows) are computed here from ``tokens``."""
    check_linear(model.cfg)
    corrections: dict[str, list] = {}
    saves: dict[str, list] = {}
    state: dict[tuple[int, str], torch.Tensor] = {}
    device = tokens.device

    def part(x: torch.Tensor) -> torch.Tensor:
        return x.view(k, -1, *x.shape[1:])[condition]

    for i, cut in enumerate(mask.cuts):
        write = cut.write(model, mask).to(device)
        read = cut.read(model, mask).to(device)
        sender_ref = reference.value(cut.sender.hook)

        def shift(value: torch.Tensor, write=write, ref=sender_ref, i=i) -> None:
            dims = write.dim() - 1
            state[(i, "delta")] = torch.tensordot(value - ref, write, dims=dims)  # [B, T, d_model]

        if cut.sender.hook == TOKENS:
            shift(F.one_hot(tokens, model.cfg.d_vocab).float())
        elif cut.sender.hook == POSITIONS:
            T = tokens.shape[1]
            shift(F.one_hot(torch.arange(T, device=device), model.cfg.n_ctx).float().expand(tokens.shape[0], T, -1))
        else:
            saves.setdefault(cut.sender.hook, []).append(lambda x, name, shift=shift: shift(part(x)))
        if cut.receiver.param is None:
            def correct(x: torch.Tensor, name: str, read=read, i=i) -> torch.Tensor:
                out = x.clone()
                part(out).sub_(state.pop((i, "delta")) @ read)
                return out

            corrections.setdefault(cut.receiver.hook, []).append(correct)
            continue
        norm = model.get_submodule(cut.receiver.norm)
        gain = norm.w.detach().to(device) if norm.w is not None else 1.0

        def scale(x: torch.Tensor, name: str, i=i) -> None:
            state[(i, "scale")] = part(x)

        def correct(x: torch.Tensor, name: str, read=read, gain=gain, i=i) -> torch.Tensor:
            shifted = state.pop((i, "delta")) * state.pop((i, "scale")) * gain
            axis = 1 if read.dim() == 3 else 0  # the matrix's d_model axis
            out = x.clone()
            part(out).sub_(torch.tensordot(shifted, read, dims=([2], [axis])))
            return out

        saves.setdefault(f"{cut.receiver.norm}.hook_scale", []).append(scale)
        corrections.setdefault(output_hook(cut.receiver.param), []).append(correct)
    return corrections, saves
