"""What computing the last block's queries and all after its attention at the answer positions alone saves,
measured in one run.

Masked passes that read only the answer logits (verify's conditions, discovery's selection) run the last
block's queries, attention and what follows at the answer positions alone
(``Transformer.forward(tokens, at)``). This times the complements of random same-size circuits (the
conditions of a ``necessary`` claim's baselines) both ways, alternating, on one model and task, and prints
the ratio of the best times.

    python benchmarks/answer_only_pass.py [--model py-sparse-medium] [--task call_arity] [--rounds 4]
"""

from __future__ import annotations

import argparse
import time

import torch

from circuitspec.engine import ablation
from circuitspec.engine.batch import encode_for
from circuitspec.engine.masks import Mask, MaskSpace
from circuitspec.engine.tasks import get_task
from circuitspec.engine.zoo import load_model
from circuitspec.verify.baselines import random_circuits


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="py-sparse-medium")
    parser.add_argument("--task", default="call_arity")
    parser.add_argument("--inputs", type=int, default=100)
    parser.add_argument("--conditions", type=int, default=10)
    parser.add_argument("--size", type=int, default=128, help="nodes of each random circuit whose complement runs")
    parser.add_argument("--rounds", type=int, default=4)
    args = parser.parse_args()
    model, task = load_model(args.model), get_task(args.task)
    space = MaskSpace.for_config(model.cfg)
    batch = encode_for(model, task.sample(args.inputs, "answer-only"), task.name)
    ref = encode_for(model, task.sample(200, "answer-only:reference"), task.name)
    reference = ablation.Reference.compute(model, ablation.Ablation("mean"), batch.tokens, batch.answer_pos + 1,
                                           ref.tokens, ref.answer_pos + 1, by_length=True)
    complements = [Mask(space, {h: ~t for h, t in c.nodes.items()}, c.edges)
                   for c in random_circuits(model, space, args.size, args.conditions, 0)]
    answer_only = ablation._answer_only
    times: dict[str, list[float]] = {"every position": [], "answer only": []}
    outputs = {}
    try:
        for _ in range(args.rounds):
            for name, rule in (("every position", lambda *a: False), ("answer only", answer_only)):
                ablation._answer_only = rule
                start = time.perf_counter()
                outputs[name] = ablation.run_conditions(model, batch.tokens, complements, reference, batch.answer_pos,
                                                        by_length=True)
                times[name].append(time.perf_counter() - start)
    finally:
        ablation._answer_only = answer_only
    print(f"{args.model}, {args.task}: {args.conditions} complements of random {args.size}-node circuits, "
          f"{args.inputs} inputs, {torch.get_num_threads()} threads, best of {args.rounds}")
    for name, values in times.items():
        print(f"  {name:15s} {min(values):6.2f} s   (all: {', '.join(f'{v:.2f}' for v in values)})")
    diff = float((outputs["answer only"] - outputs["every position"]).abs().max())
    print(f"  answer only / every position: {min(times['answer only']) / min(times['every position']):.2f}x"
          f"   (largest logit difference {diff:.1e})")


if __name__ == "__main__":
    main()
