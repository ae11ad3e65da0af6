"""Turn task examples into padded token tensors with the answer position of each row."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from .errors import UsageError
from .tasks.base import TaskExample
from .tokenizer import encode, token_id


@dataclass(frozen=True)
class TaskBatch:
    tokens: torch.Tensor  # [batch, pos] right-padded with 0 (causal attention never sees the padding)
    answer_pos: torch.Tensor  # [batch] index where the next-token answer is read
    correct: torch.Tensor  # [batch] token ids
    wrong: torch.Tensor

    def to(self, device: str | torch.device) -> "TaskBatch":
        return TaskBatch(*(t.to(device) for t in (self.tokens, self.answer_pos, self.correct, self.wrong)))


def encode_examples(examples: Sequence[TaskExample], n_ctx: int) -> TaskBatch:
    rows = [encode(ex.prefix) for ex in examples]
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
        correct=torch.tensor([token_id(ex.correct) for ex in examples]),
        wrong=torch.tensor([token_id(ex.wrong) for ex in examples]),
    )


def answer_logits(logits: torch.Tensor, answer_pos: torch.Tensor) -> torch.Tensor:
    """[batch, pos, vocab] -> [batch, vocab] at each row's answer position."""
    return logits[torch.arange(logits.shape[0], device=logits.device), answer_pos]
