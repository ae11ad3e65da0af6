"""Verify every claim of the given specs against their models; the exit code is the CI contract.

Exit 0: every claim passes. 1: a claim fails or is inconclusive. 2: a spec or the usage is wrong.
3: a model is unreadable or an internal self-check failed (no verdict can be trusted).
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import time
from pathlib import Path

from rich.markup import escape

from ..engine.errors import CircuitspecError, UsageError
from ..verify.example_store import DEFAULT_ROOT, ExampleStore
from . import defaults
from .argtypes import MAX_BASELINES, MAX_SAMPLES, non_negative_int, positive_int, seed
from .common import add_device_argument, resolve_device
from .outputs import check_output_dir, output_dir, output_file, save_output
from .reporting import Reporter, add_output_format_argument, writes_to_stdout

MAX_EXAMPLES = 200  # --falsify: inputs tried per claim
NAME, HELP = "verify", "verify every claim of .circ specs (exit 0 pass, 1 fail, 2 spec error, 3 model error)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("paths", nargs="+", metavar="PATH", help=".circ files or directories")
    p.add_argument("--json", metavar="FILE", type=output_file, help="write results as JSON ('-' for stdout)")
    p.add_argument("--junit", metavar="FILE", type=output_file, help="write JUnit XML for CI ('-' for stdout)")
    add_output_format_argument(p)
    p.add_argument("--seed", type=seed,
                   help=f"seed for inputs, baselines and bootstrap (default: [tool.circuitspec] seed, else {defaults.SEED})")
    p.add_argument("--samples", type=positive_int(MAX_SAMPLES),
                   help=f"inputs per claim group when the spec does not say (default: [tool.circuitspec] samples, "
                        f"else {defaults.SAMPLES})")
    p.add_argument("--baselines", type=non_negative_int(MAX_BASELINES), default=defaults.BASELINES,
                   help="random same-size circuits per check (default %(default)s); a necessary claim's run 10 at "
                        "a time and stop early once the circuit clearly beats them (docs/verification.md, \"Staged baselines\")")
    p.add_argument("--partial-ablations", type=non_negative_int(MAX_BASELINES), default=defaults.PARTIAL_ABLATIONS, metavar="N",
                   help="random partial ablations of the outside a sufficient claim must also survive "
                        f"(default {defaults.PARTIAL_ABLATIONS}; 0 turns the check off)")
    p.add_argument("--falsify", action="store_true",
                   help="also search for inputs that break per-input claims (as `circuitspec falsify`, with its example store)")
    p.add_argument("--max-examples", type=positive_int(MAX_SAMPLES), metavar="N",
                   help=f"with --falsify: inputs to try per claim (default {MAX_EXAMPLES})")
    database = p.add_mutually_exclusive_group()
    database.add_argument("--database", type=output_dir, metavar="DIR",
                          help=f"with --falsify: where counterexamples are kept and replayed (default: {DEFAULT_ROOT} in "
                               "the current folder)")
    database.add_argument("--no-database", action="store_true",
                          help="with --falsify: neither replay nor store counterexamples")
    add_device_argument(p)


def run(args: argparse.Namespace) -> int:
    from ..verify.report import falsify_annotations, github_annotations, json_report, junit_report, manifest, print_table, summary
    from ..verify.runner import RunSettings
    from ..verify.verifier import claim_groups, shared_cache, verify_spec
    from .specs import resolve_specs

    for given, flag in ((args.max_examples is not None, "--max-examples"), (args.database is not None, "--database"),
                        (args.no_database, "--no-database")):
        if given and not args.falsify:
            raise UsageError(f"{flag} applies only with --falsify", hint=f"add --falsify, or drop {flag}")
    settings = RunSettings(seed=defaults.SEED if args.seed is None else args.seed, samples=args.samples or RunSettings.samples,
                           baselines=args.baselines, device=resolve_device(args.device),
                           partial_ablations=args.partial_ablations)
    report = Reporter(args, stdout_taken=writes_to_stdout(args.json, args.junit) or args.output_format == "github")
    resolved_specs, exit_code = resolve_specs(args.paths)
    store = None
    if args.falsify and not args.no_database:  # the example database is checked before any work, like the other outputs
        store = ExampleStore(args.database or check_output_dir(DEFAULT_ROOT))
        store.check([r.file for r in resolved_specs])
    for resolved in resolved_specs:
        resolved.context.model.to(settings.device)
    results, specs_manifest = [], []
    caches: dict = {}  # one RunCache per model object, shared by its specs
    started = time.perf_counter()
    with report.progress() as progress:
        total = sum(len(claim_groups(r)) for r in resolved_specs)
        bar = progress.add_task("verifying", total=total)
        for resolved in resolved_specs:
            progress.update(bar, description=f"verifying {Path(resolved.file).name}")
            try:
                results.extend(verify_spec(resolved, settings, lambda: progress.advance(bar), shared_cache(caches, resolved)))
            except CircuitspecError as e:
                progress.console.print("[bold red]error:[/] " + escape(f"{resolved.file}: {e}"))
                exit_code = max(exit_code, e.exit_code)
                continue
            specs_manifest.append(_spec_manifest(resolved))
    falsified = []
    if args.falsify:
        from ..testing import LoadedSpec  # with hypothesis: imported only when falsifying (about 0.2 s)
        from ..verify.falsify import falsify_spec
        for resolved in resolved_specs:
            with report.status(f"falsifying {Path(resolved.file).name}"):
                found = falsify_spec(LoadedSpec(resolved, settings), args.max_examples or MAX_EXAMPLES, settings.seed, store)
            falsified += found
        _merge_falsification(results, falsified)
    if results and not report.quiet:
        print_table(results, report.out, verbose=report.verbose)
    report.summary(f"{summary(results)} in {time.perf_counter() - started:.1f} s (seed {settings.seed}, "
                   f"{settings.baselines} random baselines, {settings.partial_ablations} partial ablations)"
                   if results else "no claims verified")
    if args.output_format == "github":
        unmet = [f for f in falsified if f.verdict == "inconclusive"]  # a falsified one already fails its claim
        sys.stdout.write("".join(github_annotations(results) + falsify_annotations(unmet)))
        sys.stdout.flush()
    if any(r.verdict != "pass" for r in results) or any(f.verdict != "survived" for f in falsified):
        exit_code = max(exit_code, 1)
    run_manifest = manifest(specs_manifest, {"seed": settings.seed, "samples": settings.samples,
                                             "baselines": settings.baselines, "bootstrap_resamples": settings.resamples,
                                             "reference_samples": settings.reference_samples,
                                             "partial_ablations": settings.partial_ablations})
    if args.falsify:
        run_manifest["falsification"] = [f.to_json() for f in falsified]
    saved = True  # a report that cannot be written is kept elsewhere (save_output says where) and exits 2
    if args.json:
        saved &= save_output(args.json, json_report(results, run_manifest), "the JSON report")
    if args.junit:
        saved &= save_output(args.junit, junit_report(results), "the JUnit report")
    return exit_code if saved else max(exit_code, 2)


def _merge_falsification(results, falsified) -> None:
    """A per-input claim with a counterexample from the search fails, carrying that counterexample."""
    by_place = {(f.file, f.line, f.name): f for f in falsified}
    for r in results:
        found = by_place.get((r.file, r.line, r.name))
        if found is not None and found.verdict == "falsified":
            r.verdict = "fail"
            r.counterexample = found.counterexample
            r.note = (r.note + "; " if r.note else "") + "falsified by search"


def _spec_manifest(resolved) -> dict:
    return {"file": resolved.file, "spec": resolved.spec.name,
            "spec_sha256": hashlib.sha256(Path(resolved.file).read_bytes()).hexdigest(),
            "model": resolved.spec.model, "model_sha256": _weights_sha256(resolved.context.path),
            "task": resolved.task.name, "circuit_nodes": len(resolved.nodes), "circuit_edges": resolved.mask.edge_count(),
            **({"circuit": "edges"} if resolved.edge_level else {})}


def _weights_sha256(path) -> str | None:
    """The checkpoint's recorded weights hash; none for a circuit_sparsity directory read as it is."""
    from ..engine.checkpoint import read_manifest
    from ..engine.zoo import is_circuit_sparsity_dir

    return None if is_circuit_sparsity_dir(Path(path)) else read_manifest(path).get("weights_sha256")
