"""How often each built-in task's inputs have a counterfactual partner, per feature, and what a search costs.

For `ablate resample from corrupted(FEATURE)` (docs/verification.md, "Paired ablation"): N seeded inputs per
task (the same ones every run), a partner searched for each with seed 0. Prints a markdown table: the share
of inputs with a partner, the mean number of prefix characters a partner changes, the share of partners that
change another feature too, and the search's wall time per input (the one column that depends on the
machine).

    python benchmarks/partner_rates.py [--inputs N] [--tasks NAME ...]
"""

from __future__ import annotations

import argparse
import time

from circuitspec.engine.tasks import all_tasks
from circuitspec.engine.tasks.counterfactual import partner_rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--inputs", type=int, default=200, help="inputs per task (default 200)")
    parser.add_argument("--tasks", nargs="*", help="only these tasks (default: every registered task)")
    args = parser.parse_args()
    print("| task | feature | inputs with a partner | positions that differ (mean) | partners changing another feature "
          "| ms per input |")
    print("|---|---|---|---|---|---|")
    for task in all_tasks():
        if args.tasks and task.name not in args.tasks:
            continue
        examples = task.sample(args.inputs, "partner-rates")
        for feature in task.features:
            started = time.perf_counter()
            rate = partner_rate(task, feature, examples, 0)
            ms = (time.perf_counter() - started) / max(1, args.inputs) * 1000
            other = f"{rate.changed_features / rate.found:.0%}" if rate.found else "-"
            positions = f"{rate.mean_positions:.1f}" if rate.found else "-"
            print(f"| {task.name} | {feature} | {rate.share:.0%} | {positions} | {other} | {ms:.0f} |", flush=True)


if __name__ == "__main__":
    main()
