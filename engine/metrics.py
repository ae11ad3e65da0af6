"""Per-example metrics of a binary next-token task, from the logits at the answer position.

All return one value per example, so the verifier can show spreads and bootstrap intervals rather
than only means.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def logit_diff(logits: torch.Tensor, correct: torch.Tensor, wrong: torch.Tensor) -> torch.Tensor:
    """logit(correct) - logit(wrong); > 0 means the model prefers the right answer."""
    return logits.gather(-1, correct[:, None])[:, 0] - logits.gather(-1, wrong[:, None])[:, 0]


def accuracy(logits: torch.Tensor, correct: torch.Tensor, wrong: torch.Tensor) -> torch.Tensor:
    """1.0 where the correct answer beats the wrong one, else 0.0."""
    return (logit_diff(logits, correct, wrong) > 0).float()


def binary_cross_entropy(logits: torch.Tensor, correct: torch.Tensor, wrong: torch.Tensor) -> torch.Tensor:
    """-log p(correct) under a softmax restricted to the two answers."""
    return F.softplus(-logit_diff(logits, correct, wrong))


METRICS = {"logit_diff": logit_diff, "accuracy": accuracy, "bce": binary_cross_entropy}
