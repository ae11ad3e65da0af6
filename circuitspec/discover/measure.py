"""What a discovered circuit's nodes do: their activations at the answer position, per task feature value.

Measured in the circuit-alone run (everything outside the circuit ablated), because that is the run in
which `verify` evaluates role claims, so a claim proposed from these numbers speaks about the same thing.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..engine.ablation import run_conditions, run_conditions_with_cache
from ..engine.batch import answer_logits, encode_for
from ..engine.discover import empty_mask, reference_for
from ..engine.masks import Mask
from ..engine.metrics import logit_diff
from ..engine.model import Transformer
from ..engine.naming import NodeName
from ..engine.tasks import Task

MAX_FEATURE_VALUES = 4  # a feature with more distinct values is not used to split activations


@dataclass
class NodeStats:
    """Activations [n] of every circuit node at the answer position, and the feature they are split by."""

    feature: str | None
    values: list  # the feature's distinct values, in first-seen order
    labels: list  # the feature value of each input
    activations: dict[str, torch.Tensor]  # str(node) -> [n]
    complement_faithfulness: float  # F with only the circuit ablated (what a `necessary` claim measures)

    def by_value(self, node: NodeName) -> dict:
        act = self.activations[str(node)]
        return {v: act[[i for i, label in enumerate(self.labels) if label == v]] for v in self.values}


def split_feature(task: Task, examples) -> str | None:
    """The first of the task's features that takes 2..MAX_FEATURE_VALUES values on these inputs."""
    for name in task.features:
        distinct = {ex.features.get(name) for ex in examples}
        if 2 <= len(distinct) <= MAX_FEATURE_VALUES:
            return name
    return None


@torch.no_grad()
def measure_nodes(model: Transformer, task: Task, mask: Mask, ablation: str, samples: int, seed: str,
                  reference: str = "task") -> NodeStats:
    """``reference``: where the mean comes from, ``"task"`` or ``"corpus"`` (as in :func:`~..engine.discover.discover`)."""
    examples = task.sample(samples, f"{seed}:measure")
    batch = encode_for(model, examples, task.name).to(model.device)
    reference_value = reference_for(model, task, ablation, samples, f"{seed}:measure-reference", reference)
    nodes = list(mask.node_names())
    hooks = sorted({n.hook for n in nodes})
    _, cache = run_conditions_with_cache(model, batch.tokens, [mask], reference_value, batch.answer_pos, hooks)
    rows = torch.arange(len(examples))
    activations = {}
    for node in nodes:
        at_answer = cache[node.hook][0][rows, batch.answer_pos]
        activations[str(node)] = (at_answer[:, node.head, node.index] if node.head is not None else at_answer[:, node.index]).float().cpu()
    feature = split_feature(task, examples)
    labels = [ex.features.get(feature) for ex in examples] if feature else [None] * len(examples)
    values = list(dict.fromkeys(labels))
    complement = Mask(mask.space, (~mask).nodes, mask.edges)
    diffs = [logit_diff(logits, batch.correct, batch.wrong).mean() for logits in
             (answer_logits(model(batch.tokens), batch.answer_pos),
              *run_conditions(model, batch.tokens, [complement, empty_mask(mask.space)], reference_value, batch.answer_pos))]
    full, without, empty = (float(d) for d in diffs)
    faith = (without - empty) / (full - empty) if full != empty else float("nan")
    return NodeStats(feature, values, labels, activations, faith)
