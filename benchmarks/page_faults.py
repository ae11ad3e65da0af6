"""Page faults and time per forward pass with glibc's default malloc thresholds and with the ones the
command line sets (``circuitspec.engine.memory.keep_freed_memory``), in alternating fresh processes.

    python benchmarks/page_faults.py [--rounds 3] [--rows 40] [--width 48] [--verify SPEC ...]

Each round runs both settings, one child process each (mallopt is per process and cannot be undone):
plain answer-only forwards of ``--rows`` random rows of ``--width`` tokens on one thread, 3 to warm up
and 20 timed, for ``py-sparse-small`` and ``py-sparse-medium``; the child prints the median time and
the minor page faults per forward. With ``--verify``, each round also times ``circuitspec verify SPEC...
-q`` in a fresh process under ``CIRCUITSPEC_MALLOC=default`` and without it. The ratios (kept ÷
default) are printed per round and as the median over rounds: compare only figures from one run, on a
machine whose speed drifts.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MODELS = ("py-sparse-small", "py-sparse-medium")


def child(rows: int, width: int) -> None:
    """Measure in this process, with whatever allocator settings it was started with; print JSON."""
    import torch

    from circuitspec.engine.memory import keep_freed_memory
    from circuitspec.engine.zoo import load_model

    applied = keep_freed_memory()  # a no-op under CIRCUITSPEC_MALLOC=default
    torch.set_num_threads(1)
    out = {"applied": applied}
    for name in MODELS:
        model = load_model(name).eval()
        gen = torch.Generator().manual_seed(0)
        tokens = torch.randint(0, model.cfg.d_vocab, (rows, width), generator=gen)
        at = torch.randint(width // 2, width, (rows,), generator=gen)
        times = []
        with torch.no_grad():
            for _ in range(3):
                model(tokens, at)
            faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
            for _ in range(20):
                start = time.perf_counter()
                model(tokens, at)
                times.append(time.perf_counter() - start)
            faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults
        out[name] = {"ms": 1e3 * statistics.median(times), "faults": faults / 20}
    print(json.dumps(out))


def child_env(default: bool) -> dict:
    """This process's environment, with glibc's defaults kept (``default``) or the command line's settings."""
    return dict(os.environ, CIRCUITSPEC_MALLOC="default" if default else "")


def run_child(default: bool, rows: int, width: int) -> dict:
    done = subprocess.run([sys.executable, __file__, "--child", "--rows", str(rows), "--width", str(width)],
                          env=child_env(default), capture_output=True, text=True, check=True, cwd=ROOT)
    return json.loads(done.stdout.strip().splitlines()[-1])


def time_verify(default: bool, specs: list[str]) -> float:
    cli = Path(sys.executable).with_name("circuitspec")
    start = time.perf_counter()
    subprocess.run([str(cli), "verify", *specs, "-q"], env=child_env(default), cwd=ROOT, check=True, capture_output=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--rows", type=int, default=40)
    parser.add_argument("--width", type=int, default=48)
    parser.add_argument("--verify", nargs="+", metavar="SPEC", help="also time `circuitspec verify SPEC... -q`")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.rows, args.width)
        return
    ratios: dict[str, list[float]] = {name: [] for name in MODELS}
    verify_ratios: list[float] = []
    for r in range(args.rounds):
        default, kept = run_child(True, args.rows, args.width), run_child(False, args.rows, args.width)
        if not kept["applied"]:
            sys.exit("the allocator settings could not be applied here (not glibc on Linux): nothing to compare")
        for name in MODELS:
            d, k = default[name], kept[name]
            ratios[name].append(k["ms"] / d["ms"])
            print(f"round {r + 1} {name}: default {d['ms']:.1f} ms, {d['faults']:.0f} faults/forward; "
                  f"kept {k['ms']:.1f} ms, {k['faults']:.0f} faults/forward; kept / default {k['ms'] / d['ms']:.2f}")
        if args.verify:
            d, k = time_verify(True, args.verify), time_verify(False, args.verify)
            verify_ratios.append(k / d)
            print(f"round {r + 1} verify {' '.join(args.verify)}: default {d:.1f} s, kept {k:.1f} s, kept / default {k / d:.2f}")
    for name, values in ratios.items():
        print(f"{name}: kept / default, median of {len(values)} rounds {statistics.median(values):.2f} "
              f"(rounds {', '.join(f'{v:.2f}' for v in values)})")
    if verify_ratios:
        print(f"verify: kept / default, median of {len(verify_ratios)} rounds {statistics.median(verify_ratios):.2f} "
              f"(rounds {', '.join(f'{v:.2f}' for v in verify_ratios)})")


if __name__ == "__main__":
    main()
