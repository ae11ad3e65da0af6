"""Search for inputs that break the per-input claims of specs (role, behaviour, agreement), shrink them to
minimal snippets, and store them for replay; judge claims made on a share of inputs on random draws;
attack sufficient, necessary and "not needed" claims over ablation choices (partial ablations as the
claim's robustness states, reference inputs).

Exit 0: nothing falsified. 1: a claim was falsified, or no input met its conditions. 2: a spec or the
usage is wrong. 3: a model is unreadable.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
from pathlib import Path

from rich.markup import escape
from rich.table import Table

from ..schemas import header
from ..verify.example_store import DEFAULT_ROOT, ExampleStore
from . import defaults
from .argtypes import MAX_SAMPLES, positive_int, seed
from .outputs import check_output_dir, output_dir, output_file, save_output
from .reporting import Reporter, add_output_format_argument, writes_to_stdout

NAME, HELP = "falsify", "search for inputs that break per-input claims (Hypothesis, shrunk, replayed)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("paths", nargs="+", metavar="PATH", help=".circ files or directories")
    p.add_argument("--profile", choices=sorted(PROFILES), default="ci" if os.environ.get("CI") else "dev",
                   help="ci: seed 0 and 200 inputs per claim, the same search every run (default when $CI is set); "
                        "dev: a fresh seed each run (printed, so a find can be reproduced) and 500 inputs")
    p.add_argument("--max-examples", type=positive_int(MAX_SAMPLES), metavar="N", help="inputs to try per claim (overrides the profile)")
    p.add_argument("--seed", type=seed, help="search seed (overrides the profile, as [tool.circuitspec] seed does)")
    p.add_argument("--samples", type=positive_int(MAX_SAMPLES), metavar="N",
                   help="inputs per ablation choice when attacking aggregate claims (default: [tool.circuitspec] "
                        f"samples, else {defaults.SAMPLES})")
    database = p.add_mutually_exclusive_group()
    database.add_argument("--database", type=output_dir, metavar="DIR",
                          help=f"where counterexamples are kept and replayed (default: {DEFAULT_ROOT} in the current folder)")
    database.add_argument("--no-database", action="store_true", help="neither replay nor store counterexamples")
    p.add_argument("--json", metavar="FILE", type=output_file, help="write results as JSON ('-' for stdout)")
    add_output_format_argument(p)


PROFILES = {"ci": {"seed": 0, "max_examples": 200}, "dev": {"seed": None, "max_examples": 500}}


def run(args: argparse.Namespace) -> int:
    from ..testing import LoadedSpec
    from ..verify.falsify import falsify_spec
    from ..verify.report import COMPACT_WIDTH, falsify_annotations
    from ..verify.runner import RunSettings
    from .specs import resolve_specs

    profile = PROFILES[args.profile]
    args.samples = args.samples or RunSettings.samples
    args.max_examples = args.max_examples if args.max_examples is not None else profile["max_examples"]
    if args.seed is None:
        args.seed = profile["seed"] if profile["seed"] is not None else random.randrange(2**31)
    store = None if args.no_database else ExampleStore(args.database or check_output_dir(DEFAULT_ROOT))
    report = Reporter(args, stdout_taken=writes_to_stdout(args.json) or args.output_format == "github")
    resolved_specs, exit_code = resolve_specs(args.paths)
    if store:  # an unreadable database file stops the run here, before any search, and is left as it is
        store.check([r.file for r in resolved_specs])
    results = []
    for resolved in resolved_specs:
        with report.status(f"falsifying {Path(resolved.file).name}"):
            results += falsify_spec(LoadedSpec(resolved, RunSettings(seed=args.seed, samples=args.samples)),
                                    args.max_examples, args.seed, store)
    places = [f"{Path(r.file).name}:{r.line}" for r in results]
    compact = report.out.width < COMPACT_WIDTH  # a narrow table would fold the claims' file:line: a line each instead
    table = Table(title="falsification")
    for col in ("claim", "result", "inputs tried", "per s", "counterexample"):
        table.add_column(col, overflow="fold")
    style = {"survived": "green", "falsified": "red", "inconclusive": "yellow"}
    for r, where in zip(results, places):
        if not r.counterexample or r.verdict == "survived":  # a coverage claim's allowed failure is in the note
            example = r.note if r.kind in ("sufficient", "necessary") or r.counterexample else ""
        elif "input" in r.counterexample:
            example = repr(r.counterexample["input"])
        else:
            value = r.counterexample.get("faithfulness", r.counterexample.get("drop"))
            label = "F" if "faithfulness" in r.counterexample else "drop"
            example = f"{r.counterexample['ablation choice']}: {label} = {value:.3g}"
        name = r.kind if r.name.startswith("line ") else r.name
        rate = f"{r.tried / r.seconds:.1f}" if r.seconds > 0 else ""
        if compact:
            per_s, found = f" ({rate} per s)" if rate else "", f"; {example}" if example else ""
            report.result(f"[{style[r.verdict]}]{r.verdict}[/] " + escape(f"{where} {name}: {r.tried} inputs tried{per_s}{found}"))
        else:
            table.add_row(escape(f"{where} {name}"), f"[{style[r.verdict]}]{r.verdict}[/]", str(r.tried), rate, escape(example))
    if not compact:
        report.result(table)
    for r, where in zip(results, places):  # -v: what each search or attack found, in words
        if r.note:
            name = r.kind if r.name.startswith("line ") else r.name
            report.detail(f"[{style[r.verdict]}]{r.verdict}[/] " + escape(f"{where} {name}: {r.note}"), soft_wrap=True)
    counts = ", ".join(f"{sum(r.verdict == v for r in results)} {v}" for v in ("survived", "falsified", "inconclusive"))
    report.summary(f"{counts}; profile {args.profile}: seed {args.seed}, up to {args.max_examples} inputs per claim "
                   f"(rerun with --seed {args.seed} to repeat this search)")
    if args.output_format == "github":
        sys.stdout.write("".join(falsify_annotations(results)))
        sys.stdout.flush()
    if any(r.verdict != "survived" for r in results):
        exit_code = max(exit_code, 1)
    if args.json:
        text = json.dumps({**header("falsify"), "seed": args.seed, "max_examples": args.max_examples,
                           "results": [r.to_json() for r in results]}, indent=2, sort_keys=True) + "\n"
        if not save_output(args.json, text, "the JSON report"):
            exit_code = max(exit_code, 2)
    return exit_code
