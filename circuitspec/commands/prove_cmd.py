"""Z3 on each spec: are its per-input claims consistent, and do its node claims entail its behaviour claims?

Consistency: for every combination of task features the task produces, the role and behaviour claims
that apply must be jointly satisfiable; a contradiction is reported as the smallest set of claim lines
(Z3's unsat core) with the feature values where it bites.

Entailment: each behaviour claim is encoded through the circuit's blocks and unembedding with its actual
weights (see circuitspec.prove.entailment); Z3 proves it from the role claims plus measured bounds on
the residual entering the encoding, norm scales and attention, or shows a counter-model. "unknown" (the
time ran out, or Z3 gave up) is inconclusive and fails like verify's inconclusive verdicts; "not
encodable" (an ablation or a size the encoding does not cover) is reported and does not fail.

Over a domain (circuitspec.prove.domain_proof): a behaviour claim whose task declares a finite domain with
the claim's feature values is proved for every input of that domain, by branch and bound with sound
interval bounds on the circuit-alone forward pass (real softmax, sink, RMSNorm and ReLUs), or refuted with
an input of the domain; `--certificate DIR` writes the proof tree, which `circuitspec check-proof`
re-verifies independently. A claim proved over its domains is not also encoded for entailment unless
`--entailment`.

Before any encoding, each behaviour claim is checked on a few hundred real task inputs (the circuit alone,
as verify runs it): one that breaks it is reported as "refuted" with that input, since a relaxed
encoding could only say "unknown" or show an unrealisable counter-model there.

Exit 0: consistent, and every encodable behaviour claim proved. 1: an inconsistency, a refuted claim, a
counter-model, an unknown, or premises that cannot hold in the circuit ("vacuous": they would entail anything). 2: spec errors.
"""

from __future__ import annotations

import argparse
import difflib
import json
from collections import Counter
from dataclasses import asdict
from pathlib import Path

from rich.markup import escape

from ..schemas import finite
from .argtypes import MAX_SAMPLES, MAX_TIMEOUT_S, finite_float, positive_int
from .outputs import output_file, save_output
from .reporting import Reporter, writes_to_stdout

NAME, HELP = "prove", "prove behaviour claims over finite input domains, and check claims with Z3"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("paths", nargs="+", metavar="PATH", help=".circ files or directories")
    p.add_argument("--samples", type=positive_int(MAX_SAMPLES), default=500, help="task inputs sampled to find the feature combinations (default 500)")
    p.add_argument("--timeout", type=finite_float(0.0, MAX_TIMEOUT_S), default=20.0, metavar="SECONDS", help="time limit per entailment attempt, search and Z3 together; running out is reported as unknown and fails (default 20)")
    p.add_argument("--json", metavar="FILE", type=output_file, help="write the reports as JSON ('-' for stdout)")
    p.add_argument("--domain-timeout", type=finite_float(0.0, MAX_TIMEOUT_S), default=300.0, metavar="SECONDS",
                   help="time limit per domain proof; running out is reported as unknown with the share proved, and fails (default 300)")
    p.add_argument("--certificate", metavar="DIR", type=Path,
                   help="write each domain proof's certificate (JSON) into DIR, for `circuitspec check-proof`")
    p.add_argument("--domain", metavar="NAME", action="append",
                   help="prove over this domain of the task only (repeatable; `circuitspec tasks -v` lists them)")
    p.add_argument("--no-domain", action="store_true", help="do not prove behaviour claims over their task's domains")
    p.add_argument("--entailment", action="store_true",
                   help="also encode a behaviour claim for entailment when it was proved over its domains")


def run(args: argparse.Namespace) -> int:
    from ..prove.consistency import check_consistency
    from ..prove.entailment import prove_behaviour
    from ..prove.over_domain import prove_claim_over_domains
    from ..verify.runner import RunSettings
    from .specs import resolve_specs

    report = Reporter(args, stdout_taken=writes_to_stdout(args.json))
    resolved_specs, exit_code = resolve_specs(args.paths)
    unknown = _unknown_domains(args.domain or [], resolved_specs)
    if unknown:
        report.err.print("[red]error[/]: " + escape(unknown), soft_wrap=True)
        return 2
    reports, counts = [], Counter()
    for resolved in resolved_specs:
        path = Path(resolved.file)
        with report.status(f"{path.name}: consistency over the task's feature combinations"):
            consistency = check_consistency(resolved, args.samples)
        entailments, domain_results = [], []
        for c in resolved.claims:
            proved_over_domain = False
            if c.kind == "behaviour" and not args.no_domain:
                where = f"{path.name}:{c.claim.span.line}: proving over the task's domains"
                with report.status(where) as status:
                    def follow(name: str, done: int, size: int, status=status, where=where) -> None:
                        status.update(f"{where}: {name}, {done / max(size, 1):.0%} of {size:,} inputs proved")

                    results = prove_claim_over_domains(resolved, c, RunSettings(), args.domain_timeout, args.certificate,
                                                       only=args.domain, progress=follow)
                for r in results:
                    _print_domain(report, path, r)
                domain_results.extend(results)
                attempted = [r for r in results if r.status != "not encodable"]
                proved_over_domain = bool(attempted) and all(r.status == "proved" for r in attempted)
            if c.kind == "behaviour" and not (proved_over_domain and not args.entailment):
                with report.status(f"{path.name}:{c.claim.span.line}: proving from the circuit's weights"):
                    entailments.append(prove_behaviour(resolved, c, timeout_ms=int(args.timeout * 1000)))
                _print_entailment(report, path, entailments[-1])
        reports.append({"consistency": asdict(consistency), "entailment": [asdict(e) for e in entailments],
                        "domain": [asdict(r) for r in domain_results]})
        counts.update(e.status for e in entailments)
        counts.update(f"{r.status} over a domain" for r in domain_results if r.status != "not encodable")
        if any(r.status in ("refuted", "unknown") for r in domain_results):
            exit_code = max(exit_code, 1)
        if any(e.status in ("refuted", "counter-model", "vacuous", "unknown") for e in entailments):
            exit_code = max(exit_code, 1)
        counts["consistent" if consistency.consistent else "inconsistent"] += 1
        if consistency.consistent:
            report.result(f"[green]consistent[/] {escape(str(path))}: {consistency.checked_claims} per-input claims over "
                          f"{consistency.feature_combinations} feature combinations", soft_wrap=True)
            continue
        exit_code = max(exit_code, 1)
        for problem in consistency.inconsistencies:
            where = ", ".join(f"{k} == {v!r}" for k, v in problem.witness.items())
            more = f" (and {problem.witnesses - 1} more feature combinations)" if problem.witnesses > 1 else ""
            report.result("[red]inconsistent[/] " + escape(f"{path}: when {where}{more}, these claims cannot all hold:"),
                          soft_wrap=True)
            for ref in problem.claims:
                report.result(escape(f"  {Path(ref.file).name}:{ref.line}: {ref.text}"), soft_wrap=True)
    specs = f"{len(resolved_specs)} spec{'s' if len(resolved_specs) != 1 else ''}"
    report.summary(f"{specs}: " + (", ".join(f"{n} {status}" for status, n in counts.items()) or "nothing to prove"),
                   soft_wrap=True)
    if args.json:
        # finite: a share measured on no inputs is null, not NaN (which is not JSON)
        if not save_output(args.json, json.dumps(finite(reports), indent=2, sort_keys=True) + "\n", "the JSON report"):
            exit_code = max(exit_code, 2)
    return exit_code


def _unknown_domains(names: list[str], resolved_specs) -> str:
    """'' when every ``--domain`` name is a domain of some spec's task; else the message saying which is not."""
    known = sorted({d.name for resolved in resolved_specs for d in resolved.task.domains})
    missing = [name for name in names if name not in known]
    if not missing or not resolved_specs:
        return ""
    close = difflib.get_close_matches(missing[0], known, n=1, cutoff=0.6)
    guess = f"; did you mean {close[0]!r}?" if close else ""
    return (f"--domain {missing[0]!r} is no domain of these specs' tasks ({', '.join(known) or 'they declare none'})"
            f"{guess}; `circuitspec tasks -v` lists them")


def _print_domain(report: Reporter, path: Path, r) -> None:
    """The verdict of one domain proof: the domain, its size, the search, and a counterexample if any."""
    if report.quiet or (r.status == "not encodable" and not report.verbose):
        return
    console = report.out
    if r.domain is None:
        console.print("[yellow]not proved over a domain[/] " + escape(f"{path.name}:{r.line}: {r.claim}: {r.note}"), soft_wrap=True)
        return
    d = r.domain
    console.print(f"[{STATUS_STYLE[r.status]}]{r.status}[/] " + escape(f"{path.name}:{r.line}: {r.claim}") +
                  escape(f" over {d['name']}: {d['pattern']} ({d['size']:,} inputs)") +
                  f" [dim]({r.seconds:.1f} s, {r.boxes_bounded:,} boxes bounded)[/]", soft_wrap=True)
    if r.status == "proved" and r.least_bound is not None:
        console.print(escape(f"  every input: the circuit alone puts the margin above 0 (tightest box bound {r.least_bound:.3g})"),
                      soft_wrap=True)
    if r.note:
        console.print(escape(f"  {r.note}"), soft_wrap=True)
    if r.counterexample:
        engine = r.counterexample.get("engine_margin")
        engine_text = f"; the ablation engine (float32) gives {engine:.4g}" if engine is not None else ""
        console.print(escape(f"  counterexample: {r.counterexample['input']!r}: margin in "
                             f"[{r.counterexample['margin_bounds'][0]:.4g}, {r.counterexample['margin_bounds'][1]:.4g}]{engine_text}"),
                      soft_wrap=True)
    if r.certificate:
        console.print(escape(f"  certificate: {r.certificate}"), soft_wrap=True)


STATUS_STYLE = {"proved": "green", "refuted": "red", "counter-model": "red", "vacuous": "red", "unknown": "yellow", "not encodable": "yellow"}


def _print_entailment(report: Reporter, path: Path, e) -> None:
    """The verdict line of one behaviour claim (left out under -q), then what it rests on."""
    if report.quiet:
        return
    console = report.out
    console.print(f"[{STATUS_STYLE[e.status]}]{e.status}[/] " + escape(f"{path.name}:{e.line}: {e.claim}") +
                  f" [dim]({e.seconds:.1f} s; in Z3 {e.z3_seconds:.2f} s over {e.z3_checks} checks)[/]", soft_wrap=True)
    if e.note:
        console.print(escape(f"  {e.note}"), soft_wrap=True)
    for premise in e.premises:
        console.print(escape(f"  premise: {premise}"), soft_wrap=True)
    for a in e.assumptions:
        console.print(escape(f"  assumption: {a.text} ({a.measured}; holds on {a.fresh_fraction:.0%} of a fresh sample)"),
                      soft_wrap=True)
    if e.counterexample:
        values = ", ".join(f"{k} = {v:.4g}" for k, v in e.counterexample.items() if isinstance(v, float))
        console.print(escape(f"  counterexample (a real task input): {e.counterexample['input']!r}: {values}"), soft_wrap=True)
    if e.counter_model:
        scales = {k: v for k, v in e.counter_model.items() if k.startswith("scale(")}
        nonzero = sorted(((k, v) for k, v in e.counter_model.items() if v != 0 and k not in scales), key=lambda kv: -abs(kv[1]))
        named = lambda k: f"{k} ({e.spec_names[k]})" if k in e.spec_names else k  # noqa: E731
        text = ", ".join(f"{named(k)} = {v:.4g}" for k, v in nonzero[:8]) or "every unknown 0"
        more = f" (+{len(nonzero) - 8} more non-zero)" if len(nonzero) > 8 else ""
        console.print(escape(f"  counter-model: {text}{more}; the other unknowns 0"), soft_wrap=True)
        if scales:
            console.print(escape("  with the norm scales " + ", ".join(f"{k[6:-1]} = {v:.4g}" for k, v in scales.items())),
                          soft_wrap=True)
