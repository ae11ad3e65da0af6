"""Weight sparsity: after every optimizer step each weight matrix keeps only its top-k magnitudes.

k is annealed from dense to the target density over the first part of training (Gao et al. 2025 anneal
the L0 budget over the first half), linearly by default; ``anneal_shape = "geometric"`` shrinks the
density by the same factor every step instead. With density 1 the projection is the identity, so the same
training code produces the dense comparison model.

``io_density`` gives the embedding, position embedding and unembedding (``IO_WEIGHTS``) their own target.
At 2% the unembedding of our 2-layer model keeps 655 weights for 256 output bytes, and a top-k over the
whole matrix leaves most printable bytes with none; with the I/O at 10% the same 2% model trains to a
better loss than the 3% one (docs/discovery.md, "Training recipe"). Those weights are no circuit edges
(circuits count weights between kept nodes; token rows and logits are not nodes), so a denser I/O costs
no circuit size. In that 2% run no pruned weight came back between steps 2,000 and 2,560 (Adam moves a
zero by about the learning rate per step, far below the magnitudes kept), so the anneal decides the
topology.

``embed_density`` sets the input side (``W_E`` and ``W_pos``) apart from the unembedding:
the embedding's weights are no edges either, but each non-zero channel of a token's row is a residual
channel the first block may read, and a circuit that reads a token keeps those it needs. At d_model 256
and the I/O at 10% the wide benchmark model's `"` row has 76 non-zero channels (py-sparse3-small's 11)
and its closing-quote circuits keep 14-23 of them; thinning the embeddings to 1.5% made that model weaker
without making its circuits smaller (docs/discovery.md, "A sparser embedding for the wide model").
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .masks import IO_WEIGHTS

EMBEDDINGS = frozenset({"embed.W_E", "pos_embed.W_pos"})  # the input side of IO_WEIGHTS


@dataclass(frozen=True)
class SparsitySchedule:
    target_density: float = 1.0  # fraction of entries kept in every weight matrix at the end
    anneal_fraction: float = 0.5  # share of training over which density goes from 1 to target
    anneal_shape: str = "linear"  # "linear" (the same count removed every step) or "geometric" (the same share)
    io_density: float | None = None  # target of W_E, W_pos and W_U; None: target_density like every matrix
    embed_density: float | None = None  # target of W_E and W_pos alone; None: io_density (or target_density)

    def __post_init__(self) -> None:
        if not 0.0 < self.target_density <= 1.0:
            raise ValueError(f"target_density must be in (0, 1], got {self.target_density}")
        if not 0.0 <= self.anneal_fraction <= 1.0:
            raise ValueError(f"anneal_fraction must be in [0, 1], got {self.anneal_fraction}")
        if self.anneal_shape not in ("linear", "geometric"):
            raise ValueError(f"anneal_shape must be 'linear' or 'geometric', got {self.anneal_shape!r}")
        if self.io_density is not None and not 0.0 < self.io_density <= 1.0:
            raise ValueError(f"io_density must be in (0, 1], got {self.io_density}")
        if self.embed_density is not None and not 0.0 < self.embed_density <= 1.0:
            raise ValueError(f"embed_density must be in (0, 1], got {self.embed_density}")

    def density(self, step: int, total_steps: int) -> float:
        """Density allowed after optimizer step ``step`` (1-based) of ``total_steps``."""
        return self._annealed(self.target_density, step, total_steps)

    def io_density_at(self, step: int, total_steps: int) -> float:
        """The same for the embeddings and the unembedding (``io_density``, else the common target)."""
        target = self.target_density if self.io_density is None else self.io_density
        return self._annealed(target, step, total_steps)

    def embed_density_at(self, step: int, total_steps: int) -> float:
        """The same for the token and position embeddings (``embed_density``, else the I/O target)."""
        if self.embed_density is None:
            return self.io_density_at(step, total_steps)
        return self._annealed(self.embed_density, step, total_steps)

    def densities(self, names, step: int, total_steps: int) -> dict[str, float]:
        """Density of each named matrix after step ``step``."""
        inner, io = self.density(step, total_steps), self.io_density_at(step, total_steps)
        embed = self.embed_density_at(step, total_steps)
        return {name: embed if name in EMBEDDINGS else io if name in IO_WEIGHTS else inner for name in names}

    def _annealed(self, target: float, step: int, total_steps: int) -> float:
        anneal_steps = self.anneal_fraction * total_steps
        if anneal_steps <= 0 or step >= anneal_steps:
            return target
        if self.anneal_shape == "geometric":
            return target ** (step / anneal_steps)
        return 1.0 - (1.0 - target) * (step / anneal_steps)

    def keep_count(self, numel: int, step: int, total_steps: int) -> int:
        return keep_count(numel, self.density(step, total_steps))


def keep_count(numel: int, density: float) -> int:
    """Entries a matrix of ``numel`` keeps at ``density`` (at least one)."""
    return max(1, min(numel, round(density * numel)))


@torch.no_grad()
def project_topk_(weight: torch.Tensor, k: int) -> torch.Tensor:
    """Zero all but the ``k`` largest-magnitude entries of ``weight`` in place; returns the kept mask.

    Exactly k entries survive (ties broken by ``topk``), so the L0 budget is never exceeded.
    """
    flat = weight.view(-1)
    if k >= flat.numel():
        return torch.ones_like(weight, dtype=torch.bool)
    keep = torch.zeros(flat.numel(), dtype=torch.bool, device=weight.device)
    keep[flat.abs().topk(k, sorted=False).indices] = True
    flat.mul_(keep)
    return keep.view_as(weight)


@torch.no_grad()
def project_model_(weights: dict[str, torch.Tensor], density: float | dict[str, float]) -> dict[str, int]:
    """Project every matrix to ``density`` (one for all, or one per name); returns the kept count per matrix."""
    counts = {}
    for name, w in weights.items():
        k = keep_count(w.numel(), density[name] if isinstance(density, dict) else density)
        project_topk_(w, k)
        counts[name] = k
    return counts


def density_report(weights: dict[str, torch.Tensor]) -> dict[str, float]:
    """Fraction of non-zero entries per matrix (what a checkpoint actually holds)."""
    return {name: float((w != 0).float().mean()) for name, w in weights.items()}
