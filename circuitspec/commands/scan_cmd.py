"""Knock out one part of the model at a time and rank what a task needs: every attention head (its q, k,
v and z channels) and every MLP layer, or with --layer each channel of one hook. Each row is the
faithfulness of the model with only that part ablated (1: nothing lost, 0: as bad as ablating
everything), with its bootstrap interval, and how many random same-size circuits, knocked out the same
way, leave as little or less: the comparison a `necessary` claim is judged by. Where discovery keeps too
much of a model to read, this is where a hand-written spec starts; each unit's name and selector can be
pasted into a spec as a group.

Exit 0 on success; 2: bad arguments; 3: unreadable model.
"""

from __future__ import annotations

import argparse
import json

from rich.markup import escape
from rich.table import Table

from ..engine.errors import UsageError
from ..schemas import finite, header
from . import defaults
from .argtypes import MAX_SAMPLES, bounded, positive_int, seed
from .common import add_device_argument, resolve_device
from .outputs import output_file, save_output
from .reporting import Reporter, writes_to_stdout

NAME, HELP = "scan", "knock out each head, MLP layer or channel in turn: what a task needs"

#: Random same-size knockouts per unit size (default), and the most a scan runs.
RANDOM_DEFAULT, MAX_RANDOM = 10, 1000
#: Rows shown by default when the scan has more units than this (each channel of a layer).
TOP_DEFAULT = 20


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default=None, help=f"shipped model name or checkpoint directory (default {defaults.DEFAULT_MODEL})")
    p.add_argument("--task", required=True, help="task name (see `circuitspec tasks`)")
    what = p.add_mutually_exclusive_group()
    what.add_argument("--units", choices=("all", "heads", "mlps", "parts"), default="all",
                      help="knock out every head and every MLP layer (all, the default), only one kind, or each "
                           "head's q, k, v and z channels apart (parts) and every MLP layer")
    what.add_argument("--layer", metavar="HOOK",
                      help="knock out each channel of one hook instead: blocks.1.mlp.hook_post (each neuron), "
                           "blocks.0.hook_resid_mid, or blocks.0.attn.hook_z[head=6] (one head's channels)")
    p.add_argument("--chunk", type=positive_int(defaults.SCAN_MAX_UNITS), default=1, metavar="K",
                   help="with --layer: K consecutive channels per unit (default 1)")
    p.add_argument("--ablation", choices=("mean", "zero"), default="mean", help="what a knocked-out part carries (default mean)")
    p.add_argument("--reference", choices=("task", "corpus"), default="task",
                   help="where the mean comes from: the task's inputs (default, as `ablate mean over task`) or the "
                        "pretraining corpus (the means stored with the checkpoint, `ablate mean over corpus`)")
    p.add_argument("--samples", type=bounded(2, MAX_SAMPLES), default=200, help="task inputs (default 200)")
    p.add_argument("--random", type=bounded(0, MAX_RANDOM), default=RANDOM_DEFAULT, metavar="N",
                   help=f"random same-size circuits knocked out per unit size, as baselines (default {RANDOM_DEFAULT}; 0: none)")
    p.add_argument("--seed", type=seed, help=f"seed of the inputs and baselines (default: [tool.circuitspec] seed, else {defaults.SEED})")
    p.add_argument("--top", type=positive_int(defaults.SCAN_MAX_UNITS), metavar="N",
                   help=f"show the N units whose knockout hurts most (default: all, or {TOP_DEFAULT} with --layer)")
    p.add_argument("--json", type=output_file, metavar="FILE", help="write every unit's figures as JSON ('-' for stdout)")
    add_device_argument(p)


def ablation_line(args: argparse.Namespace) -> str:
    """The spec's `ablate` line for the chosen ablation (what `verify` would judge a claim with)."""
    if args.ablation == "zero":
        return "zero"
    return "mean over corpus" if args.reference == "corpus" else "mean over task"


def run(args: argparse.Namespace) -> int:
    from ..engine.tasks import get_task
    from ..verify.runner import RunSettings
    from ..verify.scan import knockout_scan

    if args.reference == "corpus" and args.ablation != "mean":
        raise UsageError("--reference corpus needs mean ablation", hint="drop --ablation zero, or --reference corpus")
    if args.chunk != 1 and not args.layer:
        raise UsageError("--chunk applies to --layer", hint="add --layer HOOK, e.g. --layer blocks.0.mlp.hook_post")
    device = resolve_device(args.device)
    task = get_task(args.task)
    model_ref = args.model or defaults.DEFAULT_MODEL
    ablation = ablation_line(args)
    settings = RunSettings(seed=defaults.SEED if args.seed is None else args.seed, samples=args.samples, device=device)
    say = Reporter(args, stdout_taken=writes_to_stdout(args.json))
    with say.progress() as bar:
        handle = bar.add_task("knockouts", total=1)
        result = knockout_scan(model_ref, task.name, ablation, settings, args.random, which=args.units,
                               layer=args.layer, chunk=args.chunk,
                               progress=lambda done, total: bar.update(handle, completed=done, total=max(total, 1)))
    top = args.top or (TOP_DEFAULT if args.layer else len(result.units))
    say.result(_table(result, top))
    if top < len(result.units):
        say.result(f"({len(result.units) - top} more units; --top N shows more, --json writes all)", highlight=False)
    first = _beats_random(result) or result.units[0]
    say.result(f"as a spec group: group {first.name} = {first.selector}", soft_wrap=True, highlight=False, markup=False)
    say.summary(_summary(result, task.name, model_ref, ablation), soft_wrap=True, markup=True, highlight=False)
    if args.json is not None:
        if not save_output(args.json, json.dumps(finite(_report(result)), indent=2) + "\n", "the JSON report"):
            return 2
    return 0


def _beats_random(result):
    """The unit whose knockout hurts most among those that hurt more than the median random circuit of their
    size (what a `necessary` claim on it would need), or None."""
    return next((u for u in result.units if u.random_count and u.random_as_low < u.random_count / 2), None)


def _figure(unit) -> str:
    return (f"F = {unit.faithfulness:.2f} [{unit.ci[0]:.2f}, {unit.ci[1]:.2f}] ({escape(unit.name)}, {unit.nodes} "
            + ("node" if unit.nodes == 1 else "nodes"))


def _summary(result, task: str, model_ref: str, ablation: str) -> str:
    worst = result.units[0]
    text = (f"[bold]{task}[/] on {model_ref} ({ablation}, {result.samples} inputs): {len(result.units)} knockouts; "
            f"the one that hurts most leaves {_figure(worst)}")
    if not worst.random_count:
        return text + ")"
    text += f"; {worst.random_as_low} of {worst.random_count} random circuits of its size leave as little)"
    best = _beats_random(result)
    if best is None:
        return text + "; none hurts more than most random circuits of its size"
    if best is not worst:
        text += (f"; of those that hurt more than most random circuits of their size: {_figure(best)}, "
                 f"{best.random_as_low} of {best.random_count})")
    return text


def _table(result, top: int) -> Table:
    table = Table(title=f"{result.task} on {result.model}: faithfulness with one part ablated ({result.ablation}, "
                        f"{result.samples} inputs, seed {result.seed})")
    for col, justify in (("unit", "left"), ("nodes", "right"), ("F without it", "right"), ("95% interval", "right"),
                         ("random as low", "right")):
        table.add_column(col, justify=justify)
    for unit in result.units[:top]:
        style = "red" if unit.faithfulness < 0.3 else "yellow" if unit.faithfulness < 0.7 else ""
        figure = f"{unit.faithfulness:.3f}"
        table.add_row(escape(unit.name), str(unit.nodes), f"[{style}]{figure}[/]" if style else figure,
                      f"[{unit.ci[0]:.3f}, {unit.ci[1]:.3f}]",
                      f"{unit.random_as_low}/{unit.random_count}" if unit.random_count else "-")
    return table


def _report(result) -> dict:
    return {**header("scan"), "model": result.model, "task": result.task, "ablation": result.ablation,
            "samples": result.samples, "seed": result.seed,
            "units": [{"name": u.name, "selector": u.selector, "nodes": u.nodes, "faithfulness": u.faithfulness,
                       "ci": list(u.ci), "random_as_low": u.random_as_low, "random_count": u.random_count}
                      for u in result.units],
            "random": [{"nodes": size, "faithfulness": values} for size, values in sorted(result.random.items())]}
