"""Does the ablation engine's path chooser pick the faster path? Both paths timed at each circuit size, one run.

A node mask can run on the circuit's own subgraph (``engine.subgraph.run_circuit``: only the kept
channels are computed) or through the model's full forward with hooks. ``run_conditions_with_cache``
chooses per device: on a CPU the subgraph path for each mask keeping at most ``SUBGRAPH_MAX_FRACTION`` of
the nodes, elsewhere only when every mask keeps at most ``SUBGRAPH_MAX_FRACTION_OTHER_DEVICES``. This
script times the same K random circuits (uniform random node sets, every weight kept, mean ablation) at
each keep fraction three ways, through the very call ``verify`` makes (``by_length=True`` on a CPU):

- subgraph: with the threshold set to 1 (every mask on the subgraph path);
- full: with the threshold set to 0 (every mask through the full masked forward);
- chosen: with the shipped thresholds;

in rounds that alternate the order, and prints per fraction the median seconds, which path the chooser
took, chosen / faster, and pick / faster: the chooser's pick costed at the two arms' own times (a mixed
pick by its share), which judges the decision without the spread between two timings of one path
(target: at most 1.10 at every fraction). The logits of the two paths must agree to 1e-4 (else it aborts).

    python benchmarks/path_chooser.py [--model NAME] [--device cpu|cuda] [--examples N] [--conditions K]
        [--fractions 0.01 0.05 ...] [--rounds N] [--threads N] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

from circuitspec.engine import ablation
from circuitspec.engine.ablation import Ablation, Reference, run_conditions_with_cache
from circuitspec.engine.batch import encode_examples
from circuitspec.engine.masks import Mask, MaskSpace
from circuitspec.engine.tasks import get_task
from circuitspec.engine.zoo import load_model

TOLERANCE = 1e-4
TARGET = 1.10


def random_circuits(space: MaskSpace, fraction: float, count: int, gen: torch.Generator) -> list[Mask]:
    """``count`` node masks each keeping a uniform random ``fraction`` of the nodes, every weight kept."""
    full = Mask.full(space)
    circuits = []
    for _ in range(count):
        nodes = {h: torch.rand(t.shape, generator=gen) < fraction for h, t in full.nodes.items()}
        circuits.append(Mask(space, nodes, full.edges))
    return circuits


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--examples", type=int, default=100, help="inputs per condition (verify's default)")
    parser.add_argument("--conditions", type=int, default=6, help="random circuits per keep fraction")
    parser.add_argument("--fractions", type=float, nargs="+", default=[0.01, 0.05, 0.1, 0.25, 0.4, 0.5, 0.6, 0.75, 0.9])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--json", metavar="FILE", help="write the measurements here")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    model = load_model(args.model, args.device)
    batch = encode_examples(get_task("closing_quote").sample(args.examples, "bench"), model.cfg.n_ctx).to(args.device)
    tokens, answer_pos = batch.tokens, batch.answer_pos
    lengths = answer_pos + 1
    reference = Reference.compute(model, Ablation("mean"), tokens, lengths, tokens, lengths)
    space = MaskSpace.for_config(model.cfg)
    gen = torch.Generator().manual_seed(0)
    by_length = args.device == "cpu"
    cpu = args.device == "cpu"
    name = "SUBGRAPH_MAX_FRACTION" if cpu else "SUBGRAPH_MAX_FRACTION_OTHER_DEVICES"
    shipped = getattr(ablation, name)
    print(f"model {args.model or 'default'}, {args.examples} closing_quote inputs, {args.conditions} random circuits "
          f"per fraction, device={args.device}, torch threads={torch.get_num_threads()}, {name} = {shipped}")

    def timed(masks: list[Mask], threshold: float) -> tuple[float, torch.Tensor]:
        setattr(ablation, name, threshold)
        try:
            start = time.perf_counter()
            logits, _ = run_conditions_with_cache(model, tokens, masks, reference, answer_pos, by_length=by_length)
            if args.device == "cuda":
                torch.cuda.synchronize()
            return time.perf_counter() - start, logits
        finally:
            setattr(ablation, name, shipped)

    rows, worst, worst_pick = [], 0.0, 0.0
    for fraction in args.fractions:
        masks = random_circuits(space, fraction, args.conditions, gen)
        arms = {"subgraph": 1.0, "full": 0.0, "chosen": shipped}
        _, sub = timed(masks[:1], 1.0)  # warm-up, and the two paths must agree
        _, full = timed(masks[:1], 0.0)
        diff = float((sub - full).abs().max())
        if not diff <= TOLERANCE:
            sys.exit(f"fraction {fraction}: the subgraph and full paths differ by {diff:.1e}")
        times: dict[str, list[float]] = {arm: [] for arm in arms}
        order = list(arms)
        for r in range(args.rounds):
            for arm in order[r % 3:] + order[: r % 3]:
                times[arm].append(timed(masks, arms[arm])[0])
        med = {arm: statistics.median(t) for arm, t in times.items()}
        small = sum(ablation._small_node_mask(m, {}, shipped) for m in masks)
        took = "subgraph" if small == len(masks) else "full" if small == 0 or not cpu else f"{small} subgraph"
        faster = min(med["subgraph"], med["full"])
        ratio = med["chosen"] / faster
        worst = max(worst, ratio)
        # the chooser's decision at the two arms' own times (a mixed pick weighted by its share): unlike
        # chosen / faster, free of the spread between two timings of the same path
        share = small / len(masks) if (cpu or small == len(masks)) else 0.0
        pick = (share * med["subgraph"] + (1 - share) * med["full"]) / faster
        worst_pick = max(worst_pick, pick)
        rows.append({"fraction": fraction, "subgraph_s": med["subgraph"], "full_s": med["full"],
                     "chosen_s": med["chosen"], "chooser_took": took, "chosen_over_faster": ratio,
                     "pick_over_faster": pick,
                     "subgraph_over_full": med["subgraph"] / med["full"], "max_abs_logit_difference": diff})
        print(f"  keep {fraction:5.0%}: subgraph {med['subgraph']:6.2f} s  full {med['full']:6.2f} s  "
              f"subgraph/full {med['subgraph'] / med['full']:5.2f}  chooser took {took:<8}  chosen/faster {ratio:5.2f}"
              f"  pick/faster {pick:5.2f}", flush=True)
    print(f"worst over the fractions (target <= {TARGET:.2f}): pick / faster {worst_pick:.2f} (the chooser's "
          f"decision at the arms' own times), chosen / faster {worst:.2f} (timed again: adds run-to-run spread)")
    if args.json:
        Path(args.json).write_text(json.dumps({"device": args.device, "model": args.model, "threshold_name": name,
                                               "threshold": shipped, "rows": rows, "worst_chosen_over_faster": worst,
                                               "worst_pick_over_faster": worst_pick}, indent=1))


if __name__ == "__main__":
    main()
