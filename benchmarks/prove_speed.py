"""Time per entailment check of `circuitspec prove`, and what the float-guided search buys.

For every behaviour claim in the given specs (default: the shipped library), first the whole check as
`prove` runs it (measuring, encoding, searching, confirming), with its time inside Z3; the target is
at most 5 s of Z3 per check on 2 CPU cores. Then, on the same relaxed encoding of the last block and
of every block, three ways to decide the ReLU phases, each with the same time limit:

- guided: the float LP (HiGHS) searches, Z3 confirms the leaf it ends on (what `prove` does);
- exact B&B: the same branch and bound with every linear program solved by Z3 in rationals;
- Z3 alone: each open ReLU handed to Z3 as a disjunction of its two phases, Z3 case-splitting itself.

Prints seconds and answers per arm and the ratios exact/guided and Z3-alone/guided (a timed-out arm
counts its time limit, so its ratio is a lower bound, marked ">=").

    python benchmarks/prove_speed.py [SPEC...] [--timeout SECONDS]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import z3

from circuitspec.commands.check_cmd import check_file
from circuitspec.prove.entailment import MAX_NEURONS, Encoding, prove_behaviour
from circuitspec.prove.guide import guided_search
from circuitspec.prove.measure import measure
from circuitspec.prove.search import SearchResult, branch_and_bound, phase
from circuitspec.verify.runner import RunSettings

ROOT = Path(__file__).resolve().parent.parent


def z3_alone(solver: z3.Solver, relus, deadline: float) -> SearchResult:
    solver.push()
    try:
        solver.add([z3.Or(phase(r, True), phase(r, False)) for r in relus])
        solver.set("timeout", max(1, int(1000 * (deadline - time.monotonic()))))
        return SearchResult(solver.check())
    finally:
        solver.pop()


ARMS = {"guided": guided_search, "exact B&B": branch_and_bound, "Z3 alone": z3_alone}


def run_arm(encoding: Encoding, arm, timeout: float) -> tuple[float, str]:
    encoding.solver.push()
    try:
        encoding.solver.add(encoding.negated_behaviour)
        started = time.monotonic()
        found = arm(encoding.solver, encoding.relus, started + timeout)
        return time.monotonic() - started, str(found.answer)
    finally:
        encoding.solver.pop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("specs", nargs="*", type=Path)
    parser.add_argument("--timeout", type=float, default=10.0)
    args = parser.parse_args()
    paths = args.specs or sorted((ROOT / "specs").glob("*.circ"))
    claims = []
    for path in paths:
        resolved, diagnostics, _ = check_file(path)
        if resolved is None or diagnostics:
            continue
        claims += [(path, resolved, c) for c in resolved.claims if c.kind == "behaviour"]

    print("whole checks, as `circuitspec prove` runs them (target: at most 5 s in Z3 per check)")
    for path, resolved, claim in claims:
        r = prove_behaviour(resolved, claim, RunSettings(), int(args.timeout * 1000))
        print(f"  {path.name}:{r.line:<4} {r.status:<14} {r.seconds:6.2f} s in all, {r.z3_seconds:5.2f} s in Z3 "
              f"({r.z3_checks} checks, {r.case_splits} open ReLUs)   Z3 / 5 s = {r.z3_seconds / 5:.2f}")

    print(f"\nthe search alone, three ways, on the relaxed encoding (limit {args.timeout:g} s each)")
    print(f"  {'check':<40}" + "".join(f"{name:>22}" for name in ARMS) + "   exact/guided  alone/guided")
    for path, resolved, claim in claims:
        L = resolved.context.cfg.n_layers
        seen = measure(resolved, claim, RunSettings(), range(L))
        for from_layer in sorted({L - 1, 0}, reverse=True):
            neurons = sum(int(resolved.mask.nodes[f"blocks.{layer}.mlp.hook_post"].sum()) for layer in range(from_layer, L))
            if neurons > MAX_NEURONS:
                continue
            encoding = Encoding(resolved, claim, seen, from_layer)
            times = {name: run_arm(encoding, arm, args.timeout) for name, arm in ARMS.items()}
            label = f"{path.name}:{claim.claim.span.line} from block {from_layer}"
            cells = "".join(f"{t:>8.2f} s {answer:>11}" for t, answer in times.values())
            guided = max(times["guided"][0], 1e-3)

            def ratio(name: str) -> str:
                t, answer = times[name]
                return (">=" if answer == "unknown" else "  ") + f"{t / guided:8.1f}x"
            print(f"  {label:<40}{cells}   {ratio('exact B&B'):>12}  {ratio('Z3 alone'):>12}")


if __name__ == "__main__":
    main()
