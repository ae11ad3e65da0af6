"""Find a small circuit for a task, write it as a .circ spec, and verify what it claims.

The search (circuitspec.engine.discover) learns a node mask with non-circuit nodes ablated, then picks
the smallest set that meets the target with the real ablated forward. The spec it writes names each
node by its hook, describes what was measured, and proposes the claims the measurements support; the
spec is then verified like any other, and a claim that does not pass on fresh inputs is dropped from the
file (and reported), except the sufficiency claim, whose failure fails the run. Unless --no-compare,
the same search under zero ablation is reported next to it: the two usually choose different circuits.
With --reference corpus, removed nodes carry their mean over the pretraining corpus (the means stored
with the checkpoint, `circuitspec means`) instead of over the task, and the spec says so
(`ablate mean over corpus`).

Exit 0: target reached and every written claim verified; 1: target not reached, or the sufficiency
claim failed verification; 2: bad arguments; 3: unreadable model.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

from typing import TYPE_CHECKING

from rich.markup import escape
from rich.progress import BarColumn, TextColumn, TimeElapsedColumn

from ..engine.errors import UsageError
from ..schemas import finite, header
from . import defaults
from .argtypes import MAX_SAMPLES, MAX_STEPS, bounded, finite_float, positive_int, seed
from .common import add_device_argument, resolve_device
from .outputs import output_file, save_output
from .reporting import Reporter, writes_to_stdout

if TYPE_CHECKING:
    from ..engine.discover import SearchSettings

MIN_SAMPLES = 8  # the search splits its inputs three ways
ROBUST_KEEP = 0.5  # --robust: outside nodes left in place during training with probability up to this
ROBUST_CHECKS = 3  # --robust: random partial ablations every chosen circuit must also pass
NAME, HELP = "discover", "find a small circuit for a task and write it as a verified .circ spec"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default=None, help=f"shipped model name or checkpoint directory (default {defaults.DEFAULT_MODEL})")
    p.add_argument("--task", required=True, help="task name (see `circuitspec tasks`)")
    target = p.add_mutually_exclusive_group()
    target.add_argument("--target-loss", type=finite_float(0.0), metavar="X",
                        help="largest task loss (binary cross-entropy over the two answers) the circuit alone may have "
                             "(default: the full model's loss plus a small margin)")
    target.add_argument("--target-faithfulness", type=finite_float(), metavar="F", help="smallest faithfulness the circuit must keep")
    p.add_argument("--ablation", choices=("mean", "zero"), default="mean", help="what removed nodes carry (default mean)")
    p.add_argument("--reference", choices=("task", "corpus"), default="task",
                   help="where the mean comes from: the task's inputs (default), or the pretraining corpus (the means "
                        "stored with the checkpoint; the spec then says `ablate mean over corpus`)")
    p.add_argument("--training", choices=("path", "lagrange"), default="path",
                   help="how nodes are ranked: a rising penalty whose order of switch-offs is the ranking (path, "
                        "default) or one penalty settled by the target (lagrange); see docs/discovery.md")
    p.add_argument("--robust", action="store_true",
                   help="train the mask with random parts of the outside left in place, then grow the chosen circuit "
                        "until it also meets the target under three fixed random partial ablations and under the two "
                        "kinds verify chooses against it (the outside nodes whose presence hurts most kept, those whose "
                        "presence helps most ablated); larger circuits, a few times slower")
    p.add_argument("--margin-z", type=finite_float(0.0), default=2.0, metavar="Z",
                   help="a circuit is chosen when its mean loss (or faithfulness) meets the target by Z standard errors on "
                        "the selection inputs (default 2); 0 meets it on the mean, as the paper's bisection: smaller "
                        "circuits that miss the target on held-out inputs more often")
    p.add_argument("-o", "--output", type=output_file, required=True, metavar="SPEC", help="the .circ file to write")
    p.add_argument("--name", help="spec name (default TASK_discovered)")
    p.add_argument("--seed", type=seed, help=f"seed of the search (default: [tool.circuitspec] seed, else {defaults.SEED})")
    p.add_argument("--samples", type=bounded(MIN_SAMPLES, MAX_SAMPLES), default=256,
                   help=f"inputs per phase of the search (default 256, at least {MIN_SAMPLES})")
    p.add_argument("--steps", type=positive_int(MAX_STEPS), default=defaults.DISCOVER_STEPS,
                   help=f"optimisation steps of the mask, 16 inputs each (default {defaults.DISCOVER_STEPS})")
    p.add_argument("--restarts", type=positive_int(MAX_RESTARTS), default=1, metavar="N",
                   help="run the search with N seeds (SEED, SEED+1, ...) and keep the smallest circuit that reaches the "
                        "target on its held-out inputs (default 1): sizes move by tens of percent between seeds")
    p.add_argument("--no-compare", action="store_true", help="skip the zero- (or mean-) ablation comparison")
    p.add_argument("--no-verify", action="store_true", help="write the proposed claims without verifying them")
    p.add_argument("--json", type=output_file, metavar="FILE", help="write the figures as JSON ('-' for stdout)")
    add_device_argument(p)


def _reference(ablation: str, args) -> str:
    """Where this search's mean comes from (zero ablation has none: its reference is the task's zeros)."""
    return args.reference if ablation == "mean" else "task"


def _search(model, task, args, ablation: str, say: Reporter, seed: int | None = None):
    """One search; ``seed`` defaults to ``args.seed``."""
    from ..engine.discover import discover

    with say.progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                         TimeElapsedColumn()) as bar:
        handle = bar.add_task(f"discover ({_label(ablation, args)} ablation)", total=1)

        def progress(phase: str, done: int, total: int) -> None:
            bar.update(handle, description=f"{_label(ablation, args)} ablation: {phase}", completed=done, total=max(total, 1))

        return discover(model, task, ablation=ablation, target_loss=args.target_loss,
                        target_faithfulness=args.target_faithfulness, samples=args.samples, steps=args.steps,
                        seed=args.seed if seed is None else seed, device=args.device, progress=progress,
                        reference=_reference(ablation, args),
                        settings=search_settings(args))


def search_settings(args: argparse.Namespace) -> SearchSettings:
    """The search's knobs from the command line (the rest keep their measured defaults)."""
    from ..engine.discover import SearchSettings

    return SearchSettings(training=args.training, partial_keep=ROBUST_KEEP if args.robust else 0.0,
                          partial_checks=ROBUST_CHECKS if args.robust else 0, confidence_z=args.margin_z)


#: The most seeds one `discover --restarts` runs (each costs one search).
MAX_RESTARTS = 32


def _best_of_restarts(model, task, args, say: Reporter):
    """The search with ``args.restarts`` seeds from ``args.seed``; the smallest circuit (nodes, then edges)
    among those that reach the target on their held-out inputs, else the first search. Returns it and one
    row per search for the report."""
    found, rows = [], []
    for restart_seed in range(args.seed, args.seed + args.restarts):
        one = _search(model, task, args, args.ablation, say, restart_seed)
        found.append(one)
        rows.append({"seed": one.seed, "node_count": one.node_count, "edge_count": one.edge_count,
                     "loss": one.loss, "reached": one.reached})
        if args.restarts > 1:
            say.result(f"  seed {one.seed}: {one.node_count} nodes, {one.edge_count} edges, held-out loss {one.loss:.3f}"
                       f"{'' if one.reached else ' (target not reached)'}", highlight=False)
    reached = [f for f in found if f.reached and f.node_count > 0]
    best = min(reached, key=lambda f: (f.node_count, f.edge_count)) if reached else found[0]
    return best, rows


def beats_the_model(found) -> str:
    """Why a circuit that meets a loss target its own model misses explains nothing (empty when it does not):
    it can only do better than the model by ablating parts whose errors the model makes."""
    if found.target_kind != "loss" or not found.reached or found.full_loss <= found.target:
        return ""
    return (f"the model's own loss {found.full_loss:.3f} is above the target {found.target:.3f}: the circuit does better "
            f"than the model (faithfulness {found.faithfulness:.2f}) by ablating parts that make the model's errors, so it "
            "does not explain how the model does the task; give a target the model reaches (the default is the "
            "model's loss plus a small margin)")


def _label(ablation: str, args) -> str:
    return "corpus-mean" if _reference(ablation, args) == "corpus" else ablation


def run(args: argparse.Namespace) -> int:
    from ..discover import draft_spec, measure_nodes
    from ..discover.writer import without_claims
    from ..engine.discover import jaccard
    from ..engine.tasks import get_task
    from ..engine.zoo import load_model
    from ..lang.parser import parse_spec
    from ..lang.resolve import resolve
    from ..verify.runner import RunSettings, SelfCheckError
    from ..verify.verifier import verify_spec

    if args.output.suffix != ".circ":
        raise UsageError(f"{args.output}: the output must be a .circ file")
    if args.reference == "corpus" and args.ablation != "mean":
        raise UsageError("--reference corpus needs mean ablation", hint="drop --ablation zero, or --reference corpus")
    args.device = resolve_device(args.device)
    args.seed = defaults.SEED if args.seed is None else args.seed
    say = Reporter(args, stdout_taken=writes_to_stdout(args.json))  # what is printed; `report` below is the JSON
    task = get_task(args.task)
    model_ref = args.model or defaults.DEFAULT_MODEL
    model = load_model(model_ref, args.device)
    found, restarts = _best_of_restarts(model, task, args, say)
    say.summary(f"[bold]{task.name}[/] on {model_ref}, {_label(args.ablation, args)} ablation: {found.node_count} nodes, "
                  f"{found.edge_count} edges; held-out loss {found.loss:.3f} (target {found.target_kind} "
                  f"{'<=' if found.target_kind == 'loss' else '>='} {found.target:.3f}; full model {found.full_loss:.3f}, "
                  f"all ablated {found.ablated_loss:.3f}); faithfulness {found.faithfulness:.3f}"
                  + (f", {found.adversarial_faithfulness:.3f} under the worst partial ablation chosen against it"
                     if math.isfinite(found.adversarial_faithfulness) else "") + f"; {found.seconds:.1f} s",
                  soft_wrap=True, markup=True, highlight=False)
    report = {"model": model_ref, "reference": args.reference, "discovery": found.summary()}
    if args.restarts > 1:
        report["restarts"] = restarts
    if not args.no_compare:
        other = "zero" if args.ablation == "mean" else "mean"
        alt = _search(model, task, args, other, say)
        overlap = jaccard(found.mask, alt.mask)
        say.result(f"{other} ablation would choose {alt.node_count} nodes, {alt.edge_count} edges (held-out loss "
                      f"{alt.loss:.3f}); overlap with the {_label(args.ablation, args)}-ablation circuit: Jaccard {overlap:.2f}",
                      soft_wrap=True, highlight=False)
        report["comparison"] = {"ablation": other, "node_count": alt.node_count, "edge_count": alt.edge_count,
                                "loss": alt.loss, "reached": alt.reached, "jaccard": overlap}
    if found.note:
        say.err.print(f"[yellow]note:[/] {found.note}", soft_wrap=True, highlight=False)
    warning = beats_the_model(found)
    if warning:
        say.err.print(f"[yellow]warning:[/] {escape(warning)}", soft_wrap=True, highlight=False)
        report["warnings"] = [warning]
    exit_code = 0
    if not found.reached or found.node_count == 0:
        say.summary("[red]target not reached[/]: no spec written", highlight=False)
        return 1 if _write_json(args.json, report) else 2
    stats = measure_nodes(model, task, found.mask, found.ablation, max(args.samples, 512), f"{args.seed}:describe",
                          _reference(found.ablation, args))
    draft = draft_spec(found, task, model_ref, args.output, stats, args.name)
    text, verdicts = draft.text, {}
    if not args.no_verify:
        parsed = parse_spec(text, str(args.output))
        resolved, diagnostics = resolve(parsed.spec, str(args.output))
        if resolved is None or diagnostics:  # a bug of ours, reported as a failed internal check (exit 3)
            raise SelfCheckError(f"discover wrote a spec that does not resolve: {'; '.join(d.message for d in diagnostics)}",
                                 hint="please report this with the command line")
        with say.status("verifying the written claims"):
            results = verify_spec(resolved, RunSettings(seed=args.seed, device=args.device))
        text, results = _weaker_robustness_if_needed(text, results, args, say)
        failed = [r for r in results if r.verdict != "pass"]
        for r in results:
            verdicts[r.text] = r.verdict
            style = "green" if r.verdict == "pass" else "red"
            statistic = "" if r.statistic is None else f" (statistic {r.statistic:.3g})"
            note = f": {r.note}" if r.note and r.verdict != "pass" else ""
            say.result(f"  [{style}]{r.verdict}[/] {escape(r.text)}{statistic}{escape(note)}", soft_wrap=True, highlight=False)
        dropped = [r.text for r in failed if r.kind != "sufficient"]
        if dropped:
            text = without_claims(text, dropped, args.output)
            say.result(f"dropped {len(dropped)} claim(s) that did not verify on fresh inputs", highlight=False)
        if any(r.kind == "sufficient" for r in failed):
            say.summary("[red]the sufficiency claim did not verify[/]: kept in the spec, which fails `verify`", highlight=False)
            exit_code = 1
    written = save_output(args.output, text, "the discovered spec")
    if written:
        say.summary(f"wrote {escape(str(args.output))}", highlight=False)
    report["spec"] = str(args.output)
    report["claims"] = verdicts
    written &= _write_json(args.json, report)
    return exit_code if written else 2


def _weaker_robustness_if_needed(text: str, results: list, args: argparse.Namespace, say: Reporter) -> tuple[str, list]:
    """The written sufficiency claim makes the strongest robustness that verifies: when partial ablations
    chosen against the circuit break it (the default, `robustness adversarial`), the claim is verified
    again as `robustness random` and kept so if it passes there, with the measured figure said."""
    from ..lang.parser import parse_spec
    from ..lang.resolve import resolve
    from ..verify.runner import RunSettings
    from ..verify.verifier import verify_spec

    broken = next((r for r in results if r.kind == "sufficient" and r.verdict != "pass" and r.partial
                   and r.partial.get("worst_choice")), None)
    if broken is None:
        return text, results
    line = next(s for s in text.splitlines() if s.startswith("claim sufficient faithfulness"))
    weaker = text.replace(line, f"{line} robustness random", 1)
    resolved, diagnostics = resolve(parse_spec(weaker, str(args.output)).spec, str(args.output))
    if resolved is None or diagnostics:
        return text, results
    with say.status("verifying the sufficiency claim under random partial ablations only"):
        again = verify_spec(resolved, RunSettings(seed=args.seed, device=args.device))
    if next(r for r in again if r.kind == "sufficient").verdict != "pass":
        return text, results
    say.result(f"[yellow]not robust to partial ablations chosen against it[/]: {escape(broken.partial['worst_choice'])} "
                  f"gives F = {broken.partial['worst']:.3g}; the sufficiency claim says `robustness random`",
                  soft_wrap=True, highlight=False)
    return weaker, again


def _write_json(path: Path | None, report: dict) -> bool:
    """Whether the report went where asked (save_output keeps it elsewhere otherwise). A figure that is not a
    finite number (the faithfulness of an empty circuit) is written as null: NaN is not JSON."""
    if path is None:
        return True
    text = json.dumps(finite({**header("discover"), **report}), indent=2, sort_keys=True, default=str)
    return save_output(path, text + "\n", "the JSON report")

