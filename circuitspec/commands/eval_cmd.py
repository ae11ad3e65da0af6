"""Measure a model on every task: accuracy, mean logit difference and binary cross-entropy.

Examples come from the held-out evaluation seed, which training never draws from.
"""

from __future__ import annotations

import argparse
import json

from rich.table import Table

from ..engine.tasks import all_tasks, get_task
from .argtypes import MAX_SAMPLES, positive_int
from .common import add_device_argument, resolve_device
from .defaults import DEFAULT_MODEL, EVAL_SEED
from .outputs import output_file, save_output
from .reporting import Reporter, writes_to_stdout

NAME, HELP = "eval", "per-task accuracy and logit difference of a model"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", nargs="?", default=None, help=f"shipped model name or checkpoint directory (default: {DEFAULT_MODEL})")
    p.add_argument("--json", metavar="FILE", type=output_file, help="also write results as JSON ('-' for stdout)")
    p.add_argument("--tasks", nargs="+", metavar="TASK", help="only these tasks")
    p.add_argument("-n", "--examples", type=positive_int(MAX_SAMPLES), default=1000, metavar="N", help="examples per task (default 1000)")
    p.add_argument("--seed", default=EVAL_SEED, help=f"example seed (default {EVAL_SEED!r}, held out from training)")
    add_device_argument(p)


def run(args: argparse.Namespace) -> int:
    from ..engine.evaluate import score_task
    from ..engine.zoo import load_model, resolve_model_path

    device = resolve_device(args.device)
    path = resolve_model_path(args.model)
    tasks = [get_task(t) for t in args.tasks] if args.tasks else all_tasks()
    model = load_model(str(path), device)
    report = Reporter(args, stdout_taken=writes_to_stdout(args.json))
    scores = {}
    with report.progress() as progress:
        bar = progress.add_task("evaluating", total=len(tasks))
        for task in tasks:
            progress.update(bar, description=f"evaluating {task.name}")
            scores[task.name] = score_task(model, task, n=args.examples, seed=args.seed)
            progress.advance(bar)
    table = Table(title=f"{args.model or DEFAULT_MODEL}: {args.examples} held-out examples per task")
    for col, justify in (("task", "left"), ("accuracy", "right"), ("logit diff", "right"), ("bce", "right")):
        table.add_column(col, justify=justify)
    for s in scores.values():
        style = "green" if s.accuracy >= 0.9 else "yellow" if s.accuracy >= 0.7 else "red"
        table.add_row(s.task, f"[{style}]{s.accuracy:.1%}[/]", f"{s.logit_diff:+.2f}", f"{s.bce:.3f}")
    report.result(table)
    worst = min(scores.values(), key=lambda s: s.accuracy)
    report.summary(f"{args.model or DEFAULT_MODEL}: {len(scores)} tasks, mean accuracy "
                   f"{sum(s.accuracy for s in scores.values()) / len(scores):.1%}, lowest {worst.accuracy:.1%} ({worst.task})")
    if args.json is not None:
        data = {name: s.to_dict() for name, s in scores.items()}
        if not save_output(args.json, json.dumps(data, indent=2) + "\n", "the JSON report"):
            return 2
    return 0
