"""Time of each domain proof of `circuitspec prove`, with its size, and what the per-token bounds buy.

For every behaviour claim in the given specs (default: specs/closing_quote_small.circ) and each domain
of its task that matches it, the proof as `prove` runs it: inputs, boxes bounded, seconds, inputs proved
per second, the tightest box bound. The target is a domain of at least 10^6 inputs in at most 60 s on
2 CPU cores. Then the ratio that says why the search is not an enumeration: inputs per box bounded.

    python benchmarks/prove_domain_speed.py [SPEC...] [--timeout SECONDS] [--threads N]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from circuitspec.commands.check_cmd import check_file
from circuitspec.prove.over_domain import prove_claim_over_domains
from circuitspec.verify.runner import RunSettings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("specs", nargs="*", default=["specs/closing_quote_small.circ"])
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds per domain proof (default 300)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"{'claim':<40} {'domain':<15} {'inputs':>12} {'boxes':>7} {'seconds':>8} {'inputs/s':>11} "
          f"{'inputs/box':>10} {'least bound':>11} status")
    for spec in args.specs:
        resolved, _, _ = check_file(Path(spec))
        for claim in resolved.claims:
            if claim.kind != "behaviour":
                continue
            started = time.perf_counter()
            results = prove_claim_over_domains(resolved, claim, RunSettings(), args.timeout)
            for r in results:
                name = f"{Path(spec).name}:{r.line}"
                if r.domain is None:
                    print(f"{name:<40} {'-':<15} {r.note}")
                    continue
                rate = r.proved_inputs / r.seconds if r.seconds else float("inf")
                per_box = r.proved_inputs / max(r.boxes_bounded, 1)
                bound = f"{r.least_bound:.3g}" if r.least_bound is not None else "-"
                print(f"{name:<40} {r.domain['name']:<15} {r.domain['size']:>12,} {r.boxes_bounded:>7,} "
                      f"{r.seconds:>8.1f} {rate:>11,.0f} {per_box:>10,.0f} {bound:>11} {r.status}")
            print(f"  (the claim's proofs with the reference and setup: {time.perf_counter() - started:.1f} s)")


if __name__ == "__main__":
    main()
