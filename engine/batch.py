"""Turn task examples into padded token tensors with the answer position of each row, through the
model's tokenizer (:mod:`.task_tokens` says how text maps to tokens)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from .errors import UsageError
from .task_tokens import tokenize_example
from .tasks.base import TaskExample
from .tokenizer import BYTES, Tokenizer


@dataclass(frozen=True)
class TaskBatch:
    tokens: torch.Tensor  # [batch, pos] right-padded with 0 (causal attention never sees the padding)
    answer_pos: torch.Tensor  # [batch] index where the next-token answer is read
    correct: torch.Tensor  # [batch] token ids
    wrong: torch.Tensor

    def to(self, device: str | torch.device) -> "TaskBatch":
        return TaskBatch(*(t.to(device) for t in (self.tokens, self.answer_pos, self.correct, self.wrong)))


def encode_examples(examples: Sequence[TaskExample], n_ctx: int, tokenizer: Tokenizer = BYTES, task: str = "") -> TaskBatch:
    """``tokenizer``: the model's (``model.tokenizer``; see :func:`encode_for`); ``task`` names the task in
    an error about its answers."""
    tokenized = [tokenize_example(ex, tokenizer, task) for ex in examples]
    rows = [t.tokens for t in tokenized]
    too_long = [len(r) for r in rows if len(r) > n_ctx]
    if too_long:
        raise UsageError(f"{len(too_long)} task prefixes are longer than the model's context ({max(too_long)} > n_ctx={n_ctx})",
                         hint="use a model with a longer context, or a task with shorter inputs")
    width = max(len(r) for r in rows)
    tokens = torch.zeros(len(rows), width, dtype=torch.long)
    for i, row in enumerate(rows):
        tokens[i, : len(row)] = torch.tensor(row)
    return TaskBatch(
        tokens=tokens,
        answer_pos=torch.tensor([len(r) - 1 for r in rows]),
        correct=torch.tensor([t.correct for t in tokenized]),
        wrong=torch.tensor([t.wrong for t in tokenized]),
    )


def encode_for(model, examples: Sequence[TaskExample], task: str = "") -> TaskBatch:
    """``examples`` as ``model`` reads them: its tokenizer, its context (on the CPU)."""
    return encode_examples(examples, model.cfg.n_ctx, model.tokenizer, task)


def answer_logits(logits: torch.Tensor, answer_pos: torch.Tensor) -> torch.Tensor:
    """[batch, pos, vocab] -> [batch, vocab] at each row's answer position."""
    return logits[torch.arange(logits.shape[0], device=logits.device), answer_pos]


def length_buckets(lengths: torch.Tensor, max_tokens: int = 2048, overhead: int = 256) -> list[tuple[torch.Tensor, int]]:
    """Rows of a right-padded batch grouped by length: ``[(row indices, width)]``, every row in exactly one
    group, ``width`` the longest length in its group.

    Causal attention never looks past a row's own length, so a pass read at each row's last position
    gives the same result when the groups run apart, each cut to its width, and skips the padding (about
    half of every task batch). Groups are contiguous runs of the rows sorted by length (stable), split
    so that none holds more than ``max_tokens`` positions (rows x width; at least one row): on a CPU
    a forward pass over a few thousand positions runs faster per position than one over tens of
    thousands, whose activations no longer fit in the caches. The runs minimise the positions computed
    plus ``overhead`` per pass (its fixed cost, in positions), by dynamic programming over the distinct
    lengths.
    """
    lengths = lengths.cpu()
    order = torch.sort(lengths, stable=True).indices
    values, counts = torch.unique_consecutive(lengths[order], return_counts=True)
    widths, counts = values.tolist(), counts.tolist()
    starts = [0]
    for c in counts:
        starts.append(starts[-1] + c)

    def pieces(rows: int, width: int) -> int:
        per_piece = max(1, max_tokens // max(1, width))
        return -(-rows // per_piece)

    m = len(widths)
    best = [0.0] + [float("inf")] * m  # best[j]: cheapest grouping of the first j distinct lengths
    cut = [0] * (m + 1)
    for j in range(1, m + 1):
        for i in range(j):
            rows = starts[j] - starts[i]
            cost = best[i] + rows * widths[j - 1] + pieces(rows, widths[j - 1]) * overhead
            if cost < best[j]:
                best[j], cut[j] = cost, i
    runs = []
    j = m
    while j > 0:
        runs.append((cut[j], j))
        j = cut[j]
    groups = []
    for i, j in reversed(runs):
        rows = order[starts[i] : starts[j]]
        n = pieces(len(rows), widths[j - 1])
        size = -(-len(rows) // n)
        for piece in rows.split(size):
            groups.append((piece, int(lengths[piece].max())))
    return groups
