"""Verify every claim of the given specs against their models; the exit code is the CI contract.

Exit 0: every claim passes. 1: a claim fails or is inconclusive. 2: a spec or the usage is wrong.
3: a model is unreadable or an internal self-check failed (no verdict can be trusted).
"""

from __future__ import annotations

import argparse
import hashlib
import time
from pathlib import Path

from rich.markup import escape
from rich.progress import Progress

from ..engine.checkpoint import read_manifest
from ..engine.errors import CircuitspecError, UsageError
from ..testing import LoadedSpec
from ..verify.falsify import ExampleStore, falsify_spec
from ..verify.report import manifest, print_table, summary, write_json, write_junit
from ..verify.runner import RunSettings
from ..verify.verifier import claim_groups, verify_spec
from .common import add_device_argument, resolve_device
from .specs import report_console, resolve_specs

NAME, HELP = "verify", "verify every claim of .circ specs (exit 0 pass, 1 fail, 2 spec error, 3 model error)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("paths", nargs="+", metavar="PATH", help=".circ files or directories")
    p.add_argument("--json", metavar="FILE", type=Path, help="write results as JSON ('-' for stdout)")
    p.add_argument("--junit", metavar="FILE", type=Path, help="write JUnit XML for CI")
    p.add_argument("--seed", type=int, default=0, help="seed for inputs, baselines and bootstrap (default 0)")
    p.add_argument("--samples", type=int, help=f"inputs per claim group when the spec does not say (default {RunSettings.samples})")
    p.add_argument("--baselines", type=int, default=RunSettings.baselines, help="random same-size circuits per check")
    p.add_argument("--partial-ablations", type=int, default=RunSettings.partial_ablations, metavar="N",
                   help="random partial ablations of the outside a sufficient claim must also survive "
                        f"(default {RunSettings.partial_ablations}; 0 turns the check off)")
    p.add_argument("--falsify", action="store_true",
                   help="also search for inputs that break per-input claims (as `circuitspec falsify`, with its example store)")
    p.add_argument("--max-examples", type=int, default=200, metavar="N", help="with --falsify: inputs to try per claim")
    add_device_argument(p)


def run(args: argparse.Namespace) -> int:
    if args.samples is not None and args.samples < 1:
        raise UsageError(f"--samples must be at least 1, got {args.samples}")
    if args.partial_ablations < 0:
        raise UsageError(f"--partial-ablations must be 0 (off) or more, got {args.partial_ablations}")
    settings = RunSettings(seed=args.seed, samples=args.samples or RunSettings.samples, baselines=args.baselines,
                           device=resolve_device(args.device), partial_ablations=args.partial_ablations)
    console = report_console()
    resolved_specs, exit_code = resolve_specs(args.paths)
    for resolved in resolved_specs:
        resolved.context.model.to(settings.device)
    results, specs_manifest = [], []
    started = time.perf_counter()
    with Progress(console=console, transient=True) as progress:
        total = sum(len(claim_groups(r)) for r in resolved_specs)
        bar = progress.add_task("verifying", total=total)
        for resolved in resolved_specs:
            progress.update(bar, description=f"verifying {Path(resolved.file).name}")
            try:
                results.extend(verify_spec(resolved, settings, lambda: progress.advance(bar)))
            except CircuitspecError as e:
                progress.console.print("[bold red]error:[/] " + escape(f"{resolved.file}: {e}"))
                exit_code = max(exit_code, e.exit_code)
                continue
            specs_manifest.append(_spec_manifest(resolved))
    falsified = []
    if args.falsify:
        store = ExampleStore(Path(".circuitspec") / "examples")
        for resolved in resolved_specs:
            with console.status(f"falsifying {Path(resolved.file).name}"):
                found = falsify_spec(LoadedSpec(resolved, settings), args.max_examples, settings.seed, store)
            falsified += found
        _merge_falsification(results, falsified, console)
    if results:
        print_table(results, console)
    console.print(f"{summary(results)} in {time.perf_counter() - started:.1f} s (seed {settings.seed}, "
                  f"{settings.baselines} random baselines, {settings.partial_ablations} partial ablations)"
                  if results else "no claims verified")
    if any(r.verdict != "pass" for r in results) or any(f.verdict != "survived" for f in falsified):
        exit_code = max(exit_code, 1)
    run_manifest = manifest(specs_manifest, {"seed": settings.seed, "samples": settings.samples,
                                             "baselines": settings.baselines, "bootstrap_resamples": settings.resamples,
                                             "reference_samples": settings.reference_samples,
                                             "partial_ablations": settings.partial_ablations})
    if args.falsify:
        run_manifest["falsification"] = [f.to_json() for f in falsified]
    if args.json:
        write_json(args.json, results, run_manifest)
    if args.junit:
        write_junit(args.junit, results)
    return exit_code


def _merge_falsification(results, falsified, console) -> None:
    """A per-input claim with a counterexample from the search fails, carrying that counterexample."""
    by_place = {(f.file, f.line, f.name): f for f in falsified}
    for r in results:
        found = by_place.get((r.file, r.line, r.name))
        if found is not None and found.verdict == "falsified":
            r.verdict = "fail"
            r.counterexample = found.counterexample
            r.note = (r.note + "; " if r.note else "") + "falsified by search"
    for f in falsified:
        if f.kind == "agreement" and f.verdict == "falsified":
            console.print("[red]falsified[/] " + escape(f"{Path(f.file).name}: the circuit alone answers unlike the model on "
                                                        f"{f.counterexample['input']!r}"), highlight=False)


def _spec_manifest(resolved) -> dict:
    return {"file": resolved.file, "spec": resolved.spec.name,
            "spec_sha256": hashlib.sha256(Path(resolved.file).read_bytes()).hexdigest(),
            "model": resolved.spec.model, "model_sha256": read_manifest(resolved.context.path).get("weights_sha256"),
            "task": resolved.task.name, "circuit_nodes": len(resolved.nodes), "circuit_edges": resolved.mask.edge_count()}
