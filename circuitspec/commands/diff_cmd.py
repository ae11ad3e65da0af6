"""Compare two specs: which nodes and edges each circuit has that the other lacks, which claims were added,
removed or changed, and (with --verify) whose verdict changed. For a circuit and its variant, or two
versions of one spec in review.

Nodes are compared by name; edges are the non-zero weights between kept nodes (the paper's count), so
both specs must be about the same model to compare them (otherwise only the sizes are shown). Claims
are matched by label, and unlabelled ones by their text. Exit 0 when both specs resolve (whatever the
differences), 1 with --verify when a verdict got worse, 2 for a spec error, 3 for an unreadable model.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from rich.markup import escape

from ..engine.errors import UsageError
from ..schemas import header
from .argtypes import seed
from .outputs import output_file, save_output
from .reporting import Reporter, writes_to_stdout

if TYPE_CHECKING:  # the heavy modules are imported when the command runs: `--help` stays fast
    from ..lang.resolve import ResolvedSpec

NAME = "diff"
HELP = "compare two specs: nodes, edges and claims (and verdicts, with --verify)"
SHOWN = 12  # groups of nodes (a hook, or a head of it) listed per side before "and N more"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("old", metavar="A.circ", help="the first spec (the baseline)")
    p.add_argument("new", metavar="B.circ", help="the second spec")
    p.add_argument("--verify", action="store_true", help="verify both and list claims whose verdict changed")
    p.add_argument("--seed", type=seed, default=0, help="seed for --verify (default 0)")
    p.add_argument("--json", type=output_file, metavar="FILE", help="write the comparison as JSON ('-' for stdout)")


@dataclass
class SpecDiff:
    old: str
    new: str
    same_model: bool
    nodes: dict[str, int]  # old, new, shared, only_old, only_new
    edges: dict[str, int]  # old, new (and shared, only_old, only_new on the same model)
    only_old_nodes: list[str] = field(default_factory=list)
    only_new_nodes: list[str] = field(default_factory=list)
    claims_added: list[str] = field(default_factory=list)
    claims_removed: list[str] = field(default_factory=list)
    claims_changed: list[dict[str, str]] = field(default_factory=list)  # name, old text, new text
    verdicts: list[dict[str, str]] = field(default_factory=list)  # name, old verdict, new verdict (--verify)


def _claims(resolved: "ResolvedSpec") -> dict[str, str]:
    """Claim key (label, else its text) -> its one-line text."""
    from ..lang.fmt import format_statement

    out = {}
    for claim in resolved.claims:
        text = format_statement(claim.claim)
        out[claim.claim.label or text] = text
    return out


def compare(a: "ResolvedSpec", b: "ResolvedSpec") -> SpecDiff:
    """Nodes, edges and claims of ``b`` against ``a``."""
    from ..engine.discover import circuit_edge_count

    same_model = a.mask.space == b.mask.space and a.spec.model == b.spec.model
    old_nodes, new_nodes = {str(n) for n in a.nodes}, {str(n) for n in b.nodes}
    old_edges, new_edges = circuit_edge_count(a.mask, a.context.model), circuit_edge_count(b.mask, b.context.model)
    edges = {"old": old_edges, "new": new_edges}
    if same_model:
        shared = circuit_edge_count(a.mask & b.mask, a.context.model)
        edges.update(shared=shared, only_old=old_edges - shared, only_new=new_edges - shared)
    order = {str(n): i for i, n in enumerate([*a.nodes, *b.nodes])}
    result = SpecDiff(a.file, b.file, same_model,
                      {"old": len(old_nodes), "new": len(new_nodes), "shared": len(old_nodes & new_nodes),
                       "only_old": len(old_nodes - new_nodes), "only_new": len(new_nodes - old_nodes)}, edges,
                      sorted(old_nodes - new_nodes, key=order.get), sorted(new_nodes - old_nodes, key=order.get))
    old_claims, new_claims = _claims(a), _claims(b)
    result.claims_removed = [old_claims[k] for k in old_claims if k not in new_claims]
    result.claims_added = [new_claims[k] for k in new_claims if k not in old_claims]
    result.claims_changed = [{"name": k, "old": old_claims[k], "new": new_claims[k]}
                             for k in old_claims if k in new_claims and old_claims[k] != new_claims[k]]
    return result


def _verdicts(resolved: "ResolvedSpec", settings) -> dict[str, str]:
    from ..verify.verifier import verify_spec

    return {r.name if not r.name.startswith("line ") else r.text: r.verdict for r in verify_spec(resolved, settings)}


def compact(names: list[str]) -> list[str]:
    """Node names gathered per hook (and head), runs of channels as ranges: ``blocks.0.mlp.hook_post[3:7, 9]``."""
    from ..engine.naming import index_ranges, parse_node_name

    groups: dict[tuple[str, int | None], list[int]] = {}
    for text in names:
        node = parse_node_name(text)
        groups.setdefault((node.hook, node.head), []).append(node.index)
    out = []
    for (hook, head), indices in groups.items():
        whole = [i for i in indices if i is not None]
        head_part = f"head={head}" if head is not None else ""
        inside = ", ".join(p for p in (head_part, index_ranges(whole) if whole else "") if p)
        out.append(f"{hook}[{inside}]")
    return out


def _listed(names: list[str]) -> str:
    groups = compact(names)
    shown = "; ".join(groups[:SHOWN])
    return shown + (f"; and {len(groups) - SHOWN} more groups" if len(groups) > SHOWN else "")


def run(args: argparse.Namespace) -> int:
    from ..verify.judge import SEVERITY
    from ..verify.runner import RunSettings
    from .specs import resolve_specs

    say = Reporter(args, stdout_taken=writes_to_stdout(args.json))
    (old, old_code), (new, new_code) = resolve_specs([args.old]), resolve_specs([args.new])  # each on its own: A may be B
    if old_code or new_code:
        return max(old_code, new_code)  # the diagnostics are printed
    if len(old) != 1 or len(new) != 1:
        raise UsageError("diff compares two specs, and an included library is not one",
                         hint="name two files that start with `spec`, `model` and `task`")
    a, b = old[0], new[0]
    result = compare(a, b)
    worse = False
    if args.verify:
        settings = RunSettings(seed=args.seed)
        with say.status("verifying both specs"):
            before, after = _verdicts(a, settings), _verdicts(b, settings)
        for name in sorted(before.keys() & after.keys()):
            if before[name] != after[name]:
                result.verdicts.append({"name": name, "old": before[name], "new": after[name]})
                worse |= SEVERITY[after[name]] < SEVERITY[before[name]]
    _print(say, result)
    report = {**header("diff"), **asdict(result)}
    if args.json and not save_output(args.json, json.dumps(report, indent=2) + "\n", "the JSON comparison"):
        return 2
    return 1 if worse else 0


def _print(say: Reporter, d: SpecDiff) -> None:
    a, b = Path(d.old).name, Path(d.new).name
    n, e = d.nodes, d.edges
    say.result(escape(f"{a} -> {b}"), highlight=False)
    say.summary(f"nodes: {n['old']} -> {n['new']} ({n['shared']} shared, {n['only_old']} only in {escape(a)}, "
                  f"{n['only_new']} only in {escape(b)})", highlight=False)
    if d.same_model:
        say.result(f"edges: {e['old']} -> {e['new']} ({e['shared']} shared, {e['only_old']} only in {escape(a)}, "
                      f"{e['only_new']} only in {escape(b)})", highlight=False)
    else:
        say.result(f"edges: {e['old']} -> {e['new']} (different models: edges are not compared one by one)", highlight=False)
    if d.only_old_nodes:
        say.result(escape(f"- {len(d.only_old_nodes)} nodes: {_listed(d.only_old_nodes)}"), style="red", highlight=False, soft_wrap=True)
    if d.only_new_nodes:
        say.result(escape(f"+ {len(d.only_new_nodes)} nodes: {_listed(d.only_new_nodes)}"), style="green", highlight=False, soft_wrap=True)
    for text in d.claims_removed:
        say.result(escape(f"- {text}"), style="red", highlight=False, soft_wrap=True)
    for text in d.claims_added:
        say.result(escape(f"+ {text}"), style="green", highlight=False, soft_wrap=True)
    for change in d.claims_changed:
        say.result(escape(f"~ {change['old']}\n  -> {change['new']}"), style="yellow", highlight=False, soft_wrap=True)
    for change in d.verdicts:
        say.result(escape(f"verdict of {change['name']}: {change['old']} -> {change['new']}"), highlight=False, soft_wrap=True)
    if not (d.only_old_nodes or d.only_new_nodes or d.claims_removed or d.claims_added or d.claims_changed or d.verdicts):
        say.result("same circuit and claims", highlight=False)
