"""Wall time of `circuitspec verify specs/`, where it goes, and how many forward passes it makes.

Runs verify in-process on whatever `circuitspec` Python imports (this tree when installed editable; another
build with ``PYTHONPATH=...``: the script's own folder, not the working folder, heads ``sys.path``), from
the imports on, and prints:

- wall and CPU time: imports, resolving the specs (model load, graph, checks), verification, and the
  phases inside it (references, random baseline circuits, ablated conditions, self-checks, judging with
  its bootstrap), per spec, and the slowest claim groups;
- forward passes: the model's own forwards (each runs one or more conditions on a batch or on one group
  of rows of similar length), subgraph-path runs, conditions and their rows;
- the ratio to plain forwards of the same inputs: one plain forward of every claim group's inputs, as
  one padded batch and grouped by length, timed after the run (what verification would cost if each
  group needed a single unablated pass);
- the load average (``os.getloadavg``) before and after, and torch's thread count (set it with
  ``OMP_NUM_THREADS``: on a busy machine torch's default threads spin-wait for each other).

``--before PYTHONPATH`` first runs itself in a subprocess on that build, then on the current one, one
after the other, prints both and compares every claim's verdict, statistic and interval (to ``--tol``).
``--compare-jobs N`` times the CLI with ``--jobs 1`` and ``--jobs auto`` (one process per CPU thread),
alternated for N rounds, and prints the ratio of the medians. ``--subprocess`` times the CLI instead
(``python -m circuitspec verify ...`` from a temporary folder, a fresh process). ``--profile N`` prints cProfile's top N by cumulative and by own time.

    python benchmarks/verify_speed.py [PATHS...] [--seed 0] [--profile 25] [--json FILE]
    pip install --no-deps --no-build-isolation --target /tmp/old /path/to/older/checkout
    python benchmarks/verify_speed.py specs --before /tmp/old        # before/after in one run
    python benchmarks/verify_speed.py specs --compare-jobs 3          # processes against one, in one run
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path


def _load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} {five:.2f} {fifteen:.2f}"


def run_in_process(paths: list[str], seed: int, profile: int) -> dict:
    started, cpu_started = time.perf_counter(), time.process_time()
    load_before = _load()
    import torch

    from circuitspec.commands.specs import resolve_specs
    from circuitspec.engine import subgraph
    from circuitspec.engine.batch import encode_examples
    try:
        from circuitspec.engine.batch import length_buckets
    except ImportError:  # a build from before verify grouped rows by length
        length_buckets = None
    from circuitspec.engine.model import Transformer
    from circuitspec.verify import runner, verifier
    from circuitspec.verify.runner import RunSettings

    imported = time.perf_counter()
    phases: dict[str, float] = defaultdict(float)
    counts: dict[str, int] = defaultdict(int)

    def timed(module, name: str, phase: str, before=None):
        original = getattr(module, name)

        def wrapper(*args, **kwargs):
            if before:
                before(*args, **kwargs)
            t = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                phases[phase] += time.perf_counter() - t

        setattr(module, name, wrapper)

    forward = Transformer.forward

    def counted_forward(self, tokens, *args, **kwargs):
        counts["model forwards"] += 1
        counts["model forward rows"] += tokens.shape[0]
        return forward(self, tokens, *args, **kwargs)

    Transformer.forward = counted_forward
    run_circuit = subgraph.run_circuit

    def counted_run_circuit(model, tokens, *args, **kwargs):
        counts["subgraph runs"] += 1
        counts["subgraph rows"] += tokens.shape[0]
        return run_circuit(model, tokens, *args, **kwargs)

    subgraph.run_circuit = counted_run_circuit

    def note_conditions(model, tokens, masks, *args, **kwargs):
        counts["conditions"] += len(masks)
        counts["condition rows"] += len(masks) * tokens.shape[0]

    timed(runner, "run_conditions_with_cache", "conditions", note_conditions)
    timed(runner, "make_reference", "references")
    timed(runner, "random_circuits", "baseline circuits")
    timed(runner, "self_check", "self-checks")
    timed(verifier, "judge", "judging (bootstrap)")
    groups: list[dict] = []
    run_group = verifier.run_group

    def timed_group(resolved, claims, *args, **kwargs):
        t = time.perf_counter()
        try:
            return run_group(resolved, claims, *args, **kwargs)
        finally:
            seconds = time.perf_counter() - t
            phases["claim groups (all of run_group)"] += seconds
            groups.append({"spec": Path(resolved.file).name, "kinds": [c.kind for c in claims],
                           "n": runner.group_samples(resolved, claims, settings), "seconds": seconds})

    verifier.run_group = timed_group
    settings = RunSettings(seed=seed)
    resolved_specs, code = resolve_specs(paths)
    if code:
        raise SystemExit(f"the specs do not resolve (exit {code})")
    resolved_at = time.perf_counter()
    profiler = None
    if profile:
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()
    results, per_spec = [], {}
    caches: dict = {}
    for resolved in resolved_specs:
        t = time.perf_counter()
        if hasattr(verifier, "shared_cache"):  # as the CLI does: one cache per model object
            results += verifier.verify_spec(resolved, settings, cache=verifier.shared_cache(caches, resolved))
        else:  # a build from before specs of one model shared a cache
            results += verifier.verify_spec(resolved, settings)
        per_spec[Path(resolved.file).name] = time.perf_counter() - t
    done, cpu_done = time.perf_counter(), time.process_time()
    if profiler:
        import io
        import pstats

        profiler.disable()
        out = io.StringIO()
        stats = pstats.Stats(profiler, stream=out)
        stats.sort_stats("cumulative").print_stats(profile)
        stats.sort_stats("tottime").print_stats(profile)
        print(out.getvalue(), file=sys.stderr)
    Transformer.forward = forward
    # One plain forward of every claim group's inputs (the batch as verify draws it), best of 3 each:
    # the whole padded batch as a user would run it, and grouped by length as verify now runs conditions.
    plain = plain_grouped = 0.0
    with torch.no_grad():
        for resolved in resolved_specs:
            model = resolved.context.model
            for group in verifier.claim_groups(resolved):
                n = runner.group_samples(resolved, group, settings)
                examples = runner.sample_examples(resolved.task, n, settings.seed, group[0].claim.conditions)
                if not examples:
                    continue
                batch = encode_examples(examples, model.cfg.n_ctx)
                for grouped in (False, True) if length_buckets else (False,):
                    best = float("inf")
                    for _ in range(3):
                        t = time.perf_counter()
                        if grouped:
                            for rows, width in length_buckets(batch.answer_pos + 1):
                                model(batch.tokens[rows, :width])
                        else:
                            model(batch.tokens)
                        best = min(best, time.perf_counter() - t)
                    if grouped:
                        plain_grouped += best
                    else:
                        plain += best
    verification = done - resolved_at
    return {
        "wall_s": done - started, "cpu_s": cpu_done - cpu_started, "import_s": imported - started,
        "resolve_s": resolved_at - imported,
        "verify_s": verification, "per_spec_s": per_spec, "phases_s": dict(phases), "counts": dict(counts),
        "group_batches": len(groups), "plain_forward_s": plain, "plain_forward_grouped_s": plain_grouped,
        "verify_over_plain": verification / plain if plain else None, "groups": groups,
        "threads": torch.get_num_threads(), "load_before": load_before, "load_after": _load(),
        "results": [r.to_json() for r in results],
    }


def run_cli(paths: list[str], seed: int, jobs: str | None = None) -> dict:
    load_before = _load()
    t = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.json"
        # from a folder that is not a checkout (`-m` puts the working folder first on the path)
        proc = subprocess.run([sys.executable, "-m", "circuitspec", "verify", *(str(Path(p).resolve()) for p in paths),
                               "--seed", str(seed), "--json", str(report), *(["--jobs", jobs] if jobs else [])],
                              capture_output=True, text=True, cwd=tmp)
        wall = time.perf_counter() - t
        results = json.loads(report.read_text())["claims"] if report.exists() else []
    return {"wall_s": wall, "exit_code": proc.returncode, "load_before": load_before, "load_after": _load(),
            "results": results}


def show(label: str, r: dict) -> None:
    cpu = f", {r['cpu_s']:.1f} s CPU" if "cpu_s" in r else ""
    print(f"== {label}: {r['wall_s']:.1f} s wall{cpu} (load average before {r['load_before']}, after {r['load_after']})")
    if "verify_s" not in r:
        print(f"   CLI exit {r['exit_code']}, {len(r['results'])} claims")
        return
    print(f"   imports {r['import_s']:.1f} s, resolve {r['resolve_s']:.1f} s, verify {r['verify_s']:.1f} s "
          f"({r['threads']} torch threads)")
    for name, s in sorted(r["phases_s"].items(), key=lambda kv: -kv[1]):
        print(f"   {name:34s} {s:7.1f} s")
    print("   per spec: " + ", ".join(f"{k} {v:.1f}" for k, v in r["per_spec_s"].items()))
    c = r["counts"]
    print(f"   model forwards {c.get('model forwards', 0)} ({c.get('model forward rows', 0)} rows), subgraph runs "
          f"{c.get('subgraph runs', 0)}, conditions {c.get('conditions', 0)} ({c.get('condition rows', 0)} rows)")
    grouped = r.get("plain_forward_grouped_s")
    print(f"   one plain forward of each of the {r['group_batches']} claim groups' inputs: {r['plain_forward_s']:.2f} s"
          + (f" ({grouped:.2f} s grouped by length)" if grouped else "")
          + f"; verify / plain = {r['verify_over_plain']:.1f}x")
    for g in sorted(r.get("groups", []), key=lambda g: -g["seconds"])[:40]:
        print(f"     {g['seconds']:6.2f} s  {g['spec']} {'+'.join(g['kinds'])} n={g['n']}")


def compare(before: list[dict], after: list[dict], tol: float) -> list[str]:
    """Differences in verdict or statistic, claim by claim (matched by file name, line and name)."""
    key = lambda r: (Path(r["file"]).name, r["line"], r["name"])  # noqa: E731
    old = {key(r): r for r in before}
    problems = []
    if len(before) != len(after):
        problems.append(f"{len(before)} claims before, {len(after)} after")
    for r in after:
        o = old.get(key(r))
        if o is None:
            problems.append(f"{key(r)}: new claim")
            continue
        if o["verdict"] != r["verdict"]:
            problems.append(f"{key(r)}: verdict {o['verdict']} -> {r['verdict']}")
        a, b = o["statistic"], r["statistic"]
        if (a is None) != (b is None) or (a is not None and abs(a - b) > tol):
            problems.append(f"{key(r)}: statistic {a} -> {b}")
        if o["ci"] and r["ci"] and any(abs(x - y) > tol for x, y in zip(o["ci"], r["ci"]) if x is not None and y is not None):
            problems.append(f"{key(r)}: ci {o['ci']} -> {r['ci']}")
    return problems


def compare_jobs(paths: list[str], seed: int, rounds: int) -> None:
    """The CLI with ``--jobs 1`` and ``--jobs auto`` alternated (each round starts with the other one), the
    wall times, the ratio of the medians, and whether the two give the same claims."""
    walls: dict[str, list[float]] = {"1": [], "auto": []}
    claims: dict[str, list] = {}
    for i in range(rounds):
        for jobs in (("1", "auto") if i % 2 == 0 else ("auto", "1")):
            r = run_cli(paths, seed, jobs)
            walls[jobs].append(r["wall_s"])
            claims.setdefault(jobs, r["results"])
            print(f"   round {i + 1}: --jobs {jobs:4s} {r['wall_s']:6.1f} s wall, exit {r['exit_code']}, "
                  f"load average before {r['load_before']}", flush=True)
    median = {k: statistics.median(v) for k, v in walls.items()}
    print(f"== --jobs 1: median {median['1']:.1f} s; --jobs auto: median {median['auto']:.1f} s; "
          f"jobs 1 / auto = {median['1'] / median['auto']:.2f}x (per round "
          + ", ".join(f"{a / b:.2f}" for a, b in zip(walls["1"], walls["auto"])) + ")")
    same = claims["1"] == claims["auto"]
    print(f"== {len(claims['auto'])} claims: " + ("the same report either way" if same else "THE REPORTS DIFFER"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="*", default=["specs"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--profile", type=int, default=0, metavar="N", help="print the top N cProfile entries (cumulative)")
    parser.add_argument("--subprocess", action="store_true", help="time the CLI in a subprocess instead")
    parser.add_argument("--before", metavar="PYTHONPATH", help="first run on this build, then on the current one, and compare")
    parser.add_argument("--tol", type=float, default=1e-6, help="largest statistic difference allowed by --before")
    parser.add_argument("--json", metavar="FILE", help="write the measurements (and every claim result) here")
    parser.add_argument("--compare-jobs", type=int, metavar="ROUNDS", default=0,
                        help="time the CLI with --jobs 1 and --jobs auto, alternated for ROUNDS rounds")
    args = parser.parse_args()
    if args.compare_jobs:
        compare_jobs(args.paths, args.seed, args.compare_jobs)
        return
    if args.before:
        runs = {}
        for label, pythonpath in (("before", args.before), ("after", None)):
            env = dict(os.environ)
            env.pop("PYTHONPATH", None)
            if pythonpath:
                env["PYTHONPATH"] = pythonpath
            with tempfile.TemporaryDirectory() as tmp:
                out = Path(tmp) / "run.json"
                cmd = [sys.executable, __file__, *args.paths, "--seed", str(args.seed), "--json", str(out)]
                subprocess.run(cmd + (["--subprocess"] if args.subprocess else []), env=env, check=True,
                               stdout=subprocess.DEVNULL)
                runs[label] = json.loads(out.read_text())
        for label, r in runs.items():
            show(label, r)
        print(f"== after / before wall: {runs['after']['wall_s'] / runs['before']['wall_s']:.2f}")
        problems = compare(runs["before"]["results"], runs["after"]["results"], args.tol)
        print(f"== {len(runs['after']['results'])} claims compared: "
              + ("verdicts and statistics equal" if not problems else f"{len(problems)} differences"))
        for p in problems:
            print("   " + p)
        if args.json:
            Path(args.json).write_text(json.dumps(runs, indent=1))
        return
    r = run_cli(args.paths, args.seed) if args.subprocess else run_in_process(args.paths, args.seed, args.profile)
    show("current" if not os.environ.get("PYTHONPATH") else f"PYTHONPATH={os.environ['PYTHONPATH']}", r)
    if args.json:
        Path(args.json).write_text(json.dumps(r, indent=1))


if __name__ == "__main__":
    main()
