"""Cost of K ablation conditions: circuitspec's run_conditions vs a TransformerLens run_with_hooks loop vs plain forwards.

Workloads (defaults): the default shipped model, 200 `closing_quote` examples, mean ablation, logits read
at the answer position, each workload a minimality check's shape: single-node knockouts of a random
circuit (30 of its nodes at most) plus 100 random circuits of the same size. Two circuit sizes: 30 nodes,
and 50% of the nodes (the most a CPU computes on the circuit's own subgraph). Arms, interleaved in
rounds (each round runs every arm once, starting from a different arm):

- plain: K unablated forward passes of circuitspec's model (the floor a one-pass-per-condition design
  can reach; answer-only, its last block after attention at the answer positions alone, as circuitspec's
  own conditions run), and K of the TransformerLens port (its own floor, the sink emulation included);
- circuitspec: ``run_conditions`` over the K masks (on a CPU it computes only the circuit's own channels
  for each node mask keeping at most SUBGRAPH_MAX_FRACTION (50%) of the nodes, and runs the full masked
  forward for the rest);
- TransformerLens (``--peer transformer-lens``, needs the extra ``.[bench]``): the same model ported
  into a ``HookedTransformer`` (benchmarks/peer_transformer_lens.py), one ``run_with_hooks`` forward per
  condition with one ``torch.where`` hook per hook point that has ablated channels;
- hook loop: the very same hook functions attached to circuitspec's own model (``model.hooks``), one
  forward per condition. It stands for that loop without TransformerLens: what it costs is the loop
  design, not a library's overhead, and it runs without the extra.

Before timing, the port's logits must match circuitspec's at every real position (max |difference| at
most 1e-4, else it aborts), and every arm's ablated logits must match circuitspec's (the same 1e-4) on
three knockouts and three random circuits of each workload. Prints, per arm, the median and worst
round, and the cost ratios (medians, and their range over rounds). Then the stretch comparison:
circuits of 1% and 10% of the nodes computed on their own subgraph vs through the full masked forward,
with the largest difference in logits.

    python benchmarks/ablation_throughput.py [--model NAME] [--examples N] [--nodes N] [--fraction F]
        [--knockouts N] [--baselines N] [--rounds N] [--threads N] [--peer transformer-lens|none] [--device cpu|cuda]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the peer module beside this file

import peer_transformer_lens as peer_tl  # noqa: E402  (imports without TransformerLens; says why it can't run)

from circuitspec.engine.ablation import Ablation, Reference, run_conditions, run_conditions_with_cache  # noqa: E402
from circuitspec.engine.batch import encode_examples  # noqa: E402
from circuitspec.engine.masks import Mask, MaskSpace  # noqa: E402
from circuitspec.engine.tasks import get_task  # noqa: E402
from circuitspec.engine.zoo import load_model  # noqa: E402

TOLERANCE = 1e-4  # largest |logit difference| accepted between arms (float32 rounding is about 1e-5 here)


def random_circuit(space: MaskSpace, size: int, gen: torch.Generator) -> Mask:
    names = list(Mask.full(space).node_names())
    chosen = torch.randperm(len(names), generator=gen)[:size].tolist()
    return Mask.from_nodes(space, [names[i] for i in chosen])


def minimality_workload(space: MaskSpace, size: int, knockouts: int, baselines: int, gen: torch.Generator) -> list[Mask]:
    """Knockouts of up to ``knockouts`` nodes of a random ``size``-node circuit, then ``baselines`` random
    circuits of the same size."""
    circuit = random_circuit(space, size, gen)
    nodes = list(circuit.node_names())
    picked = torch.randperm(len(nodes), generator=gen)[:knockouts].tolist()
    return [circuit.without_node(nodes[i]) for i in sorted(picked)] + [random_circuit(space, size, gen) for _ in range(baselines)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None)
    parser.add_argument("--examples", type=int, default=200)
    parser.add_argument("--nodes", type=int, default=30, help="size of the small circuits")
    parser.add_argument("--fraction", type=float, default=0.5, help="share of the nodes the large circuits keep")
    parser.add_argument("--knockouts", type=int, default=30)
    parser.add_argument("--baselines", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1: steadier on a shared machine)")
    parser.add_argument("--peer", choices=["transformer-lens", "none"], default="transformer-lens")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--json", metavar="FILE", help="write the ratios here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.set_grad_enabled(False)  # what a TransformerLens user does before a loop of forwards, too
    model = load_model(args.model, args.device)
    batch = encode_examples(get_task("closing_quote").sample(args.examples, "bench"), model.cfg.n_ctx).to(args.device)
    tokens, answer_pos = batch.tokens, batch.answer_pos
    rows = torch.arange(tokens.shape[0], device=args.device)
    lengths = answer_pos + 1
    space = MaskSpace.for_config(model.cfg)
    total = sum(t.numel() for t in Mask.full(space).nodes.values())
    gen = torch.Generator().manual_seed(0)
    large = round(args.fraction * total)
    knockouts = min(args.knockouts, args.nodes, large)  # the same K in both workloads
    workloads = {
        f"{args.nodes}-node circuits": minimality_workload(space, args.nodes, knockouts, args.baselines, gen),
        f"{large}-node circuits ({args.fraction:.0%})": minimality_workload(space, large, knockouts, args.baselines, gen),
    }
    K = len(next(iter(workloads.values())))
    reference = Reference.compute(model, Ablation("mean"), tokens, lengths, tokens, lengths)
    print(f"model {args.model or 'default'} ({total} nodes), {args.examples} `closing_quote` examples x {tokens.shape[1]} "
          f"positions (mean length {lengths.float().mean():.1f}), mean ablation, device={args.device}, "
          f"torch threads={torch.get_num_threads()}, {args.rounds} rounds")

    peer = None
    if args.peer == "transformer-lens":
        reason = peer_tl.unavailable_reason()
        if reason:
            print(f"--peer transformer-lens skipped: {reason}")
        else:
            peer = peer_tl.to_hooked_transformer(model)
            real = torch.arange(tokens.shape[1], device=args.device)[None, :] < lengths[:, None]
            parity = float((model(tokens) - peer(tokens)).abs()[real].max())
            only_ours, only_theirs = peer_tl.hook_name_differences(model, peer)
            print(f"TransformerLens port: max |logit difference| {parity:.1e} over every real position "
                  f"(abort above {TOLERANCE:.0e}); hook names only in circuitspec: {', '.join(only_ours) or 'none'}; "
                  f"only in TransformerLens: {len(only_theirs)} ({', '.join(sorted({h.split('.')[-1] for h in only_theirs}))})")
            if not parity <= TOLERANCE:
                sys.exit(f"the TransformerLens port does not reproduce the model's logits ({parity:.1e} > {TOLERANCE:.0e})")

    def sync() -> None:
        if args.device == "cuda":
            torch.cuda.synchronize()

    def plain(forward: Callable) -> Callable:
        def arm(masks: list[Mask]) -> torch.Tensor:
            return torch.stack([forward(tokens)[rows, answer_pos] for _ in masks])
        return arm

    def plain_answer_only(masks: list[Mask]) -> torch.Tensor:  # the floor of circuitspec's own passes
        return torch.stack([model(tokens, answer_pos) for _ in masks])

    def circuitspec(masks: list[Mask]) -> torch.Tensor:
        return run_conditions(model, tokens, masks, reference, answer_pos=answer_pos)

    def hook_loop(masks: list[Mask]) -> torch.Tensor:
        out = []
        for mask in masks:
            with model.hooks(dict(peer_tl.mean_ablation_hooks(mask, reference))):
                out.append(model(tokens)[rows, answer_pos])
        return torch.stack(out)

    def tl_loop(masks: list[Mask]) -> torch.Tensor:
        return torch.stack([peer.run_with_hooks(tokens, fwd_hooks=peer_tl.mean_ablation_hooks(mask, reference))
                            [rows, answer_pos] for mask in masks])

    # (label, function, workload or None for the plain arms, which do not depend on the masks)
    arms: list[tuple[str, Callable, str | None]] = [("plain forwards, circuitspec model", plain_answer_only, None)]
    if peer is not None:
        arms.append(("plain forwards, TransformerLens port", plain(peer), None))
    for name in workloads:
        arms.append(("circuitspec run_conditions", circuitspec, name))
        if peer is not None:
            arms.append(("TransformerLens run_with_hooks loop", tl_loop, name))
        arms.append(("hook loop, circuitspec model", hook_loop, name))

    # Warm-up on two conditions per arm, and the check that every arm computes the same conditions (on a
    # few knockouts and baselines of each workload: every arm runs the same hooks for every condition).
    for name, masks in workloads.items():
        sample = masks[:3] + masks[-3:]
        expected = circuitspec(sample)
        for label, fn, workload in arms:
            if workload == name and fn is not circuitspec:
                worst = float((fn(sample) - expected).abs().max())
                print(f"{name}: {label} vs circuitspec, max |ablated logit difference| {worst:.1e}")
                if not worst <= TOLERANCE:
                    sys.exit(f"{label} does not compute circuitspec's conditions ({worst:.1e} > {TOLERANCE:.0e})")
    for label, fn, workload in arms:
        fn(workloads[workload][:2] if workload else [None, None])

    times: dict[int, list[float]] = {i: [] for i in range(len(arms))}
    for r in range(args.rounds):
        for i in [(r + j) % len(arms) for j in range(len(arms))]:  # each round starts from another arm
            label, fn, workload = arms[i]
            start = time.perf_counter()
            fn(workloads[workload] if workload else [None] * K)
            sync()
            times[i].append(time.perf_counter() - start)
        print(f"round {r + 1}/{args.rounds}: {sum(t[-1] for t in times.values()):.0f} s", file=sys.stderr, flush=True)

    def row(i: int) -> None:
        t = times[i]
        print(f"  {arms[i][0]:<38} {K / statistics.median(t):8.1f} conditions/s  median {statistics.median(t):7.2f} s  "
              f"worst round {max(t):7.2f} s")

    ratios: dict[str, float] = {}

    def ratio(num: int, den: int, what: str) -> None:
        per_round = [a / b for a, b in zip(times[num], times[den])]
        ratios[f"{arms[num][2]}: {what}"] = statistics.median(times[num]) / statistics.median(times[den])
        print(f"  {what}: {statistics.median(times[num]) / statistics.median(times[den]):.2f}x "
              f"(per round {min(per_round):.2f}-{max(per_round):.2f})")

    print(f"K = {K} conditions per workload ({knockouts} knockouts + {args.baselines} random circuits of the same size)")
    plain_arms = [i for i, a in enumerate(arms) if a[2] is None]
    for i in plain_arms:
        row(i)
    for name in workloads:
        print(f"{name}:")
        mine = {arms[i][0]: i for i in range(len(arms)) if arms[i][2] == name}
        for i in mine.values():
            row(i)
        cs = mine["circuitspec run_conditions"]
        ratio(cs, plain_arms[0], "circuitspec / plain forwards cost")
        if peer is not None:
            ratio(mine["TransformerLens run_with_hooks loop"], cs, "TransformerLens loop / circuitspec cost")
            ratio(mine["TransformerLens run_with_hooks loop"], plain_arms[1], "TransformerLens loop / its plain forwards")
        ratio(mine["hook loop, circuitspec model"], cs, "hook loop / circuitspec cost")
    ratios.update(subgraph_section(model, batch, reference, space, gen, args))
    if args.json:
        Path(args.json).write_text(json.dumps({"device": args.device, "model": args.model, "conditions": K,
                                               "peer": peer is not None, "ratios": ratios}, indent=1))


def subgraph_section(model, batch, reference, space, gen, args) -> dict[str, float]:
    """Stretch: a sufficiency check computed on the circuit's own subgraph vs the full masked forward;
    returns full / subgraph cost per circuit size."""
    ratios = {}
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
        ratios[f"circuit of {fraction:.0%} of the nodes: full masked / subgraph cost"] = f_t / s_t
    return ratios


if __name__ == "__main__":
    main()
