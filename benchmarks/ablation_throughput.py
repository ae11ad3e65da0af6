"""Cost of K ablation conditions: circuitspec's masked passes vs plain forwards vs a hand-written hook loop.

Workload (defaults): the default shipped model, 200 `closing_quote` examples, K = 30 single-node knockouts
of a 30-node random circuit + 100 random same-size baseline circuits (a minimality check's shape), mean
ablation, logits read at the answer position. Three arms, interleaved in rounds:

- plain: K unablated forward passes of the batch (the floor a masked-forward design can reach);
- masked: circuitspec's run_conditions over the K masks (on a CPU it computes only the circuit's own
  channels for each node mask keeping at most SUBGRAPH_MAX_FRACTION (50%) of the nodes, and runs the
  full masked forward for the rest; on a GPU it does so only when every mask keeps at most 25%);
- hook loop: what a user writes today (TransformerLens ``run_with_hooks`` style, written here against
  the same model since transformer-lens cannot load it): one forward per condition, with a hook per hook
  point that clones the activation and overwrites the ablated channels with the reference by indexing.

Prints conditions/s per arm and the ratios (targets: masked / plain <= 1.25, hook loop / masked >= 5),
then the stretch comparison: circuits of 1% and 10% of the nodes computed on their own subgraph vs
through the full masked forward (target >= 10x cheaper at 1%), with the largest difference in logits.

    python benchmarks/ablation_throughput.py [--model NAME] [--examples N] [--baselines N] [--device cpu|cuda]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from circuitspec.engine.ablation import Ablation, Reference, run_conditions, run_conditions_with_cache
from circuitspec.engine.batch import encode_examples
from circuitspec.engine.masks import Mask, MaskSpace
from circuitspec.engine.tasks import get_task
from circuitspec.engine.zoo import load_model


def random_circuit(space: MaskSpace, size: int, gen: torch.Generator) -> Mask:
    names = list(Mask.full(space).node_names())
    chosen = torch.randperm(len(names), generator=gen)[:size].tolist()
    return Mask.from_nodes(space, [names[i] for i in chosen])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None)
    parser.add_argument("--examples", type=int, default=200)
    parser.add_argument("--nodes", type=int, default=30)
    parser.add_argument("--baselines", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    model = load_model(args.model, args.device)
    batch = encode_examples(get_task("closing_quote").sample(args.examples, "bench"), model.cfg.n_ctx).to(args.device)
    lengths = batch.answer_pos + 1
    space = MaskSpace.for_config(model.cfg)
    gen = torch.Generator().manual_seed(0)
    circuit = random_circuit(space, args.nodes, gen)
    masks = [circuit.without_node(n) for n in circuit.node_names()]
    masks += [random_circuit(space, args.nodes, gen) for _ in range(args.baselines)]
    K = len(masks)
    reference = Reference.compute(model, Ablation("mean"), batch.tokens, lengths, batch.tokens, lengths)

    def plain() -> float:
        start = time.perf_counter()
        with torch.no_grad():
            for _ in range(K):
                model(batch.tokens)
        if args.device == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - start

    def masked() -> float:
        start = time.perf_counter()
        run_conditions(model, batch.tokens, masks, reference, answer_pos=batch.answer_pos)
        if args.device == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - start

    def hook_loop() -> float:
        start = time.perf_counter()
        for mask in masks:
            hooks = {}
            for hook, keep in mask.nodes.items():
                off = torch.nonzero(~keep.view(-1)).view(-1).to(args.device)
                if off.numel():
                    ref = reference.value(hook)

                    def overwrite(act, name, off=off, ref=ref):
                        act = act.clone(memory_format=torch.contiguous_format)
                        flat = act.view(*act.shape[:2], -1)
                        flat[..., off] = ref.expand_as(act).reshape(*act.shape[:2], -1)[..., off]
                        return act

                    hooks[hook] = overwrite
            with torch.no_grad(), model.hooks(hooks):
                model(batch.tokens)[torch.arange(batch.tokens.shape[0]), batch.answer_pos]
        if args.device == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - start

    masked(), plain(), hook_loop()  # warm-up
    plain_times, masked_times, loop_times = [], [], []
    for _ in range(args.rounds):
        plain_times.append(plain())
        masked_times.append(masked())
        loop_times.append(hook_loop())
    p, m, h = (statistics.median(t) for t in (plain_times, masked_times, loop_times))
    print(f"workload: {K} conditions ({args.nodes} knockouts + {args.baselines} random {args.nodes}-node circuits), "
          f"{args.examples} examples x {batch.tokens.shape[1]} positions, device={args.device}, "
          f"torch threads={torch.get_num_threads()}")
    print(f"plain forward:  {K / p:8.1f} conditions/s ({p:.2f} s for {K} passes)")
    print(f"masked batched: {K / m:8.1f} conditions/s ({m:.2f} s)")
    print(f"hook loop:      {K / h:8.1f} conditions/s ({h:.2f} s)")
    print(f"masked / plain cost ratio: {m / p:.3f} (target <= 1.25)")
    print(f"hook loop / masked cost ratio: {h / m:.2f}x (target >= 5)")
    subgraph_section(model, batch, reference, space, gen, args)


def subgraph_section(model, batch, reference, space, gen, args) -> None:
    """Stretch: a sufficiency check computed on the circuit's own subgraph vs the full masked forward."""
    from circuitspec.engine.subgraph import run_circuit
    total = sum(t.numel() for t in Mask.full(space).nodes.values())
    for fraction in (0.01, 0.10):
        circuits = [random_circuit(space, max(1, round(fraction * total)), gen) for _ in range(20)]
        run_circuit(model, batch.tokens, circuits[0], reference, batch.answer_pos)  # warm-up
        sub_times, full_times, worst = [], [], 0.0
        for _ in range(args.rounds):
            start = time.perf_counter()
            sub = [run_circuit(model, batch.tokens, c, reference, batch.answer_pos) for c in circuits]
            sub_times.append(time.perf_counter() - start)
            start = time.perf_counter()
            full = run_conditions_with_cache(model, batch.tokens, circuits, reference, batch.answer_pos,
                                             capture=["hook_logits"])[0]  # capturing forces the full masked forward
            full_times.append(time.perf_counter() - start)
            worst = max(worst, max(float((a - b).abs().max()) for a, b in zip(sub, full)))
        s_t, f_t = statistics.median(sub_times), statistics.median(full_times)
        print(f"circuit of {fraction:.0%} of {total} nodes: subgraph {len(circuits) / s_t:7.1f} conditions/s, "
              f"full masked {len(circuits) / f_t:7.1f} conditions/s, full / subgraph cost {f_t / s_t:.1f}x "
              f"(target >= 10x at 1%), max |difference| {worst:.1e}")


if __name__ == "__main__":
    main()
