"""Verify every claim of the given specs against their models; the exit code is the CI contract.

Exit 0: every claim passes. 1: a claim fails or is inconclusive. 2: a spec or the usage is wrong.
3: a model is unreadable or an internal self-check failed (no verdict can be trusted).
"""

from __future__ import annotations

import argparse
import hashlib
import os
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
from .settings import MAX_JOBS

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
    p.add_argument("--jobs", type=_jobs, metavar="N",
                   help="processes that verify specs side by side on a CPU, each (model, task) in one of them "
                        "(default: [tool.circuitspec] jobs, else auto: one per CPU thread torch may use, at most one "
                        "per model and task; 1 on a GPU)")
    add_device_argument(p)


def _jobs(text: str) -> int | str:
    """``auto`` or a whole number from 1 to :data:`MAX_JOBS`."""
    if text.strip().lower() == "auto":
        return "auto"
    try:
        return positive_int(MAX_JOBS)(text)
    except argparse.ArgumentTypeError as e:
        raise argparse.ArgumentTypeError(f"{e} (or auto)") from None


def run(args: argparse.Namespace) -> int:
    from ..verify.parallel import Workers

    if args.jobs is None:  # neither the flag nor [tool.circuitspec] jobs
        args.jobs = "auto"
    workers = Workers(_early_workers(args))  # they import torch while this process does and resolves the specs
    try:
        return _run(args, workers)
    finally:
        workers.close()


def _early_workers(args: argparse.Namespace) -> int:
    """Worker processes worth starting before the specs are read: one fewer than the processes ``--jobs``
    gives for the spec files (:func:`~circuitspec.verify.parallel.process_count`, with the CPUs this
    process may use for torch's threads), none for a single file or on a GPU. Those the resolved specs do
    not need are stopped unused."""
    from ..verify.parallel import process_count
    from .paths import circ_files

    try:
        files = len(circ_files(args.paths))
    except CircuitspecError:
        return 0  # reported when the specs are resolved
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return process_count(args.jobs, args.threads or cpus, files, "cuda" if args.device == "cuda" else "cpu") - 1


def _run(args: argparse.Namespace, workers) -> int:
    from ..verify.report import falsify_annotations, github_annotations, json_report, junit_report, manifest, print_table, summary
    from ..verify.runner import RunSettings
    from ..verify.spec_outcome import FalsifyJob
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
    started = time.perf_counter()
    with report.progress() as progress:
        falsify = (FalsifyJob(args.max_examples or MAX_EXAMPLES, None if store is None else str(store.root))
                   if args.falsify else None)
        outcomes = _verify_specs(resolved_specs, settings, args, progress, report, workers, falsify)
    falsified = []
    for index, resolved in enumerate(resolved_specs):
        outcome = outcomes[index]
        for error, code in ((outcome.error, outcome.exit_code), (outcome.falsify_error, outcome.falsify_exit_code)):
            if error is not None:
                report.err.print("[bold red]error:[/] " + escape(f"{resolved.file}: {error}"))
                exit_code = max(exit_code, code)
        falsified += outcome.falsified
        if outcome.error is None:
            results.extend(outcome.results)
            specs_manifest.append(_spec_manifest(resolved))
    if args.falsify:
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


def _verify_specs(resolved_specs, settings, args, progress, report, workers, falsify) -> dict:
    """Each spec's :class:`~circuitspec.verify.spec_outcome.SpecOutcome`, by index (verified, and searched
    when ``falsify`` says so): here, one after another, or with ``--jobs`` processes, this one and
    ``workers`` (:mod:`circuitspec.verify.parallel`)."""
    import torch

    from ..verify.parallel import plan_clusters, process_count
    from ..verify.spec_outcome import SpecOutcome, verify_and_falsify
    from ..verify.verifier import claim_groups, shared_cache

    caches: dict = {}  # one RunCache per model object, shared by its specs
    total = sum(len(claim_groups(r)) for r in resolved_specs) + (len(resolved_specs) if falsify else 0)
    bar = progress.add_task("verifying", total=total)
    clusters = plan_clusters(resolved_specs, settings)
    threads = torch.get_num_threads()
    jobs = min(process_count(args.jobs, threads, len(clusters), settings.device), 1 + len(workers))

    def verify_here(index: int) -> SpecOutcome:
        resolved = resolved_specs[index]
        name = Path(resolved.file).name

        def describe(what: str) -> None:
            if jobs == 1:
                progress.update(bar, description=f"{what} {name}")

        describe("verifying")
        return verify_and_falsify(resolved, settings, lambda: progress.advance(bar), shared_cache(caches, resolved),
                                  falsify, lambda: describe("falsifying"))

    if jobs <= 1:
        workers.close()
        return {index: verify_here(index) for index in range(len(resolved_specs))}
    what = "verifying and falsifying" if falsify else "verifying"
    progress.update(bar, description=f"{what} {len(resolved_specs)} specs in {jobs} processes")
    job = {"files": [r.file for r in resolved_specs], "settings": settings, "tasks_modules": list(args.tasks_module),
           "falsify": falsify}
    return workers.verify(resolved_specs, clusters, jobs, threads, verify_here, lambda: progress.advance(bar), job,
                          lambda text: report.err.print(escape(text)))


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
