"""Write a resolved circuit as plain JSON, for another tool or another checkout: the header (spec, model
and its weights' SHA-256, task, ablation as written, circuit kind), every kept node with the spec names it
belongs to, every weight the circuit keeps between kept nodes, and the claims with their lines.
`circuitspec import` turns the file back into a .circ skeleton.

`--format eap` writes the edge list as EAP-IG's Graph JSON instead (docs/language.md, "Exporting a
circuit", says how channels map onto its per-head nodes). Exit 0 written, 2 for a spec or usage error,
3 for an unreadable model.
"""

from __future__ import annotations

import argparse
import json

from ..engine.errors import UsageError
from .outputs import output_file, save_output
from .reporting import Reporter, writes_to_stdout

NAME = "export"
HELP = "write a resolved circuit as JSON (nodes, edges, claims) or as an EAP-IG graph"
FORMATS = ("circuitspec", "eap")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("spec", metavar="SPEC.circ", help="the spec whose circuit to export")
    p.add_argument("-o", "--output", type=output_file, required=True, metavar="FILE", help="where to write ('-' for stdout)")
    p.add_argument("--format", choices=FORMATS, default="circuitspec",
                   help="circuitspec: this tool's JSON (export.schema.json, default); eap: EAP-IG's Graph JSON")


def run(args: argparse.Namespace) -> int:
    from ..travel.circuit_json import circuit_json
    from .specs import resolve_specs

    say = Reporter(args, stdout_taken=writes_to_stdout(args.output))
    specs, code = resolve_specs([args.spec])
    if code:
        return code  # the diagnostics are printed
    if len(specs) != 1:
        raise UsageError("export takes one spec, and an included library is not one",
                         hint="name a file that starts with `spec`, `model` and `task`")
    data = circuit_json(specs[0])
    if args.format == "eap":
        from ..travel.eap import to_eap

        data = to_eap(data, specs[0].context.cfg)
    text = json.dumps(data, indent=2, sort_keys=args.format == "eap") + "\n"
    if not save_output(args.output, text, "the exported circuit"):
        return 2
    if str(args.output) != "-":
        say.result(f"wrote {args.output}: {data_size(data)}", highlight=False)
    return 0


def data_size(data: dict) -> str:
    """What was written, in one line."""
    if "nodes" in data and isinstance(data["nodes"], list):
        return f"{len(data['nodes'])} nodes, {len(data['edges'])} edges, {len(data['claims'])} claims"
    return f"{len(data['nodes'])} nodes, {sum(e['in_graph'] for e in data['edges'].values())} of {len(data['edges'])} edges in the graph"
