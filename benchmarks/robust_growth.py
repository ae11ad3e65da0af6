"""How much circuit does robustness cost? Grow a spec's circuit against verify's attacks and print the
trajectory, one run.

Starting from the circuit of SPEC (optionally united with the circuits of more specs, ``--with``), each
round measures, on one set of selection inputs of the spec's task, the faithfulness of the circuit alone
and under verify's partial ablations: 8 random ones (``runner.partial_ablations``) and the ones chosen
against the circuit (``verify.adversary.adversarial_parts``: the most hurting outside nodes kept, the most
helping ones ablated, six sizes each). While the worst of them is below ``--target``, ``--step`` times the
circuit's size joins it (at least one node): when the circuit alone does more than ``--cap`` times the
model (F above it) the outside nodes whose presence hurts most with the outside ablated, so that it stays
close to the model; when the worst attack ablates the most helping nodes, the outside nodes whose
presence helps most with everything present; otherwise the nodes ablated in the worst condition whose
presence helps most there (first order, one backward pass each, as the adversary ranks them).
``--write FILE.circ`` writes the last circuit as a spec (one group per hook and head, the source's model,
task and ablation, a sufficiency claim 0.1 below the last worst faithfulness): a starting point for a
hand-read robust spec, not one.

This is the experiment behind docs/discovery.md, "Growing until robust" (the trajectories from
`closing_quote_small.circ` with block 1 head 1, and from `bracket_nesting_sparse3.circ`); `discover
--robust` grows the same way with its own judge and target. Prints one line per round and, with
``--json``, writes them.

    python benchmarks/robust_growth.py SPEC [--with SPEC ...] [--target F] [--step S] [--cap C]
        [--samples N] [--rounds N] [--seed S] [--threads N] [--json FILE] [--write FILE.circ]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402

from circuitspec.commands.check_cmd import check_file  # noqa: E402
from circuitspec.discover.writer import group_statement, nodes_by_group, sufficiency_statement  # noqa: E402
from circuitspec.engine.ablation import run_conditions_with_cache  # noqa: E402
from circuitspec.engine.batch import encode_for  # noqa: E402
from circuitspec.engine.masks import Mask  # noqa: E402
from circuitspec.stats import faithfulness  # noqa: E402
from circuitspec.verify.adversary import _presence_effects, _ranked_outside, adversarial_parts  # noqa: E402
from circuitspec.verify.examples import sample_examples  # noqa: E402
from circuitspec.verify.runner import RunSettings, make_reference, partial_ablations, per_example_metric  # noqa: E402


def resolve(path: str):
    resolved, diagnostics, _ = check_file(Path(path))
    if resolved is None:
        sys.exit(f"{path}: does not resolve ({'; '.join(d.message for d in diagnostics)})")
    return resolved


def spec_text(resolved, circuit: Mask, last: dict, args) -> str:
    """The grown circuit as a .circ: one group per hook (and head), the claim its last round allows."""
    claim = next((c for c in resolved.claims if c.kind == "sufficient"), None)
    ablation = claim.claim.ablation if claim is not None and claim.claim.ablation is not None else None
    lines = [f"# Grown by benchmarks/robust_growth.py from {args.spec}" + (f" with {', '.join(args.more)}" if args.more else "")
             + f" ({args.samples} selection inputs, seed {args.seed!r}):",
             f"# {last['nodes']} nodes; F {last['alone']:.3f} alone, {last['worst']:.3f} under the worst of verify's partial ablations.",
             f"spec {resolved.spec.name}_grown", f'model "{resolved.spec.model}"', f"task {resolved.task.name}",
             f"ablate {ablation if ablation is not None else resolved.spec.ablation}", ""]
    lines += [group_statement(hook, head, nodes) for (hook, head), nodes in nodes_by_group(circuit).items()]
    lines += ["", sufficiency_statement(last["worst"] - 0.1)]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("spec", help="the .circ whose circuit is grown (its model, task and ablation are used)")
    p.add_argument("--with", dest="more", nargs="*", default=[], help="specs of the same model whose circuits join it first")
    p.add_argument("--target", type=float, default=0.5, help="stop when the worst faithfulness reaches this (default 0.5)")
    p.add_argument("--step", type=float, default=0.05, help="share of the circuit's size added per round (default 0.05)")
    p.add_argument("--cap", type=float, default=1.25, help="above this all-at-once faithfulness add hurting nodes (default 1.25)")
    p.add_argument("--samples", type=int, default=400, help="selection inputs (default 400)")
    p.add_argument("--rounds", type=int, default=40, help="at most this many rounds (default 40)")
    p.add_argument("--seed", default="grow", help="seed of the selection inputs (default 'grow')")
    p.add_argument("--threads", type=int, help="torch CPU threads")
    p.add_argument("--json", help="write the trajectory here")
    p.add_argument("--write", metavar="FILE.circ", help="write the last circuit as a spec here")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    resolved = resolve(args.spec)
    model, space = resolved.context.model, resolved.mask.space
    full = Mask.full(space)
    empty = Mask(space, Mask.empty(space).nodes, full.edges)
    nodes = {h: k.clone() for h, k in resolved.mask.nodes.items()}
    for other in args.more:
        for hook, keep in resolve(other).mask.nodes.items():
            nodes[hook] |= keep
    circuit = Mask(space, nodes, full.edges)
    claim = next((c for c in resolved.claims if c.kind == "sufficient"), resolved.claims[0])
    examples = sample_examples(resolved.task, args.samples, args.seed)
    batch = encode_for(model, examples, resolved.task.name)
    reference = make_reference(resolved, claim.ablation, claim.ablation_task, batch, RunSettings(seed=0), None, examples)

    def faithfulness_of(masks: list[Mask]) -> list[float]:
        logits, _ = run_conditions_with_cache(model, batch.tokens, [full, empty, *masks], reference, batch.answer_pos,
                                              by_length=True)
        metric = [per_example_metric("logit_diff", x, logits[0], batch) for x in logits]
        return [faithfulness(m, metric[0], metric[1]) for m in metric[2:]]

    def effects(at: Mask, outside_kept: bool, sign: float, exclude: Mask):
        with torch.enable_grad():
            return _ranked_outside(exclude, _presence_effects(model, at, batch, reference, outside_kept), sign)

    rows, started = [], time.perf_counter()
    for round_ in range(args.rounds + 1):
        with torch.enable_grad():
            chosen = adversarial_parts(model, circuit, batch, reference)
        random_parts = {f"random partial ablation {i + 1} ({p:.0%} of the outside kept)": m
                        for i, (p, m) in enumerate(partial_ablations(circuit, 8, 0))}
        names = ["the circuit alone", *chosen, *random_parts]
        values = dict(zip(names, faithfulness_of([circuit, *chosen.values(), *random_parts.values()])))
        worst = min(values, key=values.get)
        row = {"round": round_, "nodes": circuit.node_count(), "alone": values["the circuit alone"],
               "worst": values[worst], "worst_condition": worst, "seconds": time.perf_counter() - started}
        rows.append(row)
        print(f"round {round_:2d}: {row['nodes']:5d} nodes, alone F {row['alone']:.3f}, worst F {row['worst']:.3f} "
              f"({worst[:80]}), {row['seconds']:.0f} s", flush=True)
        if values[worst] >= args.target or round_ == args.rounds:
            break
        size = max(1, int(args.step * circuit.node_count()))
        if values["the circuit alone"] > args.cap:
            add = effects(circuit, False, -1.0, circuit)
        elif worst.startswith("ablating only"):
            add = effects(circuit, True, +1.0, circuit)
        else:
            condition = chosen.get(worst, random_parts.get(worst, circuit))
            add = effects(condition, False, +1.0, condition)
        grown = {h: k.clone() for h, k in circuit.nodes.items()}
        for hook, index in add[:size]:
            grown[hook].view(-1)[index] = True
        circuit = Mask(space, grown, full.edges)
    if args.write:
        Path(args.write).write_text(spec_text(resolved, circuit, rows[-1], args))
    if args.json:
        Path(args.json).write_text(json.dumps({"spec": args.spec, "with": args.more, "target": args.target,
                                               "step": args.step, "cap": args.cap, "samples": args.samples,
                                               "rounds": rows}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
