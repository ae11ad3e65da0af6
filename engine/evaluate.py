"""Per-task accuracy, logit difference and cross-entropy of a model on held-out task examples."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Callable, Sequence

import torch

from .batch import encode_for
from .metrics import accuracy, binary_cross_entropy, logit_diff
from .model import Transformer
from .tasks import Task

EVAL_SEED = "eval"  # training draws task snippets from other seeds


@dataclass(frozen=True)
class TaskScore:
    task: str
    n: int
    accuracy: float
    logit_diff: float
    bce: float

    def to_dict(self) -> dict:
        return asdict(self)


@torch.no_grad()
def score_task(model: Transformer, task: Task, n: int = 500, seed: int | str = EVAL_SEED, batch_size: int = 250) -> TaskScore:
    examples = task.sample(n, seed)
    acc, diff, bce = [], [], []
    for start in range(0, n, batch_size):
        batch = encode_for(model, examples[start : start + batch_size], task.name).to(model.device)
        logits = model(batch.tokens, batch.answer_pos)
        acc.append(accuracy(logits, batch.correct, batch.wrong))
        diff.append(logit_diff(logits, batch.correct, batch.wrong))
        bce.append(binary_cross_entropy(logits, batch.correct, batch.wrong))
    mean = lambda xs: float(torch.cat(xs).mean())  # noqa: E731
    return TaskScore(task.name, n, mean(acc), mean(diff), mean(bce))


def score_tasks(model: Transformer, tasks: Sequence[Task], n: int = 500, seed: int | str = EVAL_SEED,
                on_task: Callable[[TaskScore], None] | None = None) -> dict[str, TaskScore]:
    was_training = model.training
    model.eval()
    scores = {}
    for task in tasks:
        scores[task.name] = score_task(model, task, n, seed)
        if on_task:
            on_task(scores[task.name])
    model.train(was_training)
    return scores
