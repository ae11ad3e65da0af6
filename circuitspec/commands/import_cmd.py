"""Turn a circuit exported by `circuitspec export` back into a .circ skeleton: the header, one node or group
per exported name (channels as index ranges), `edge` statements for an edge-level circuit, and the claims.
`check` on the skeleton resolves to the same nodes and edges as the exported spec.

A model whose weights' SHA-256 differs from the one exported is a warning (the circuit was found on other
weights; the skeleton is still written). Exit 0 written, 2 for a file that is not an exported circuit.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..engine.errors import UsageError
from .outputs import output_file, save_output
from .reporting import Reporter, writes_to_stdout

NAME = "import"
HELP = "write a .circ skeleton from a circuit exported by `circuitspec export`"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("circuit", metavar="CIRCUIT.json", type=Path, help="a file written by `circuitspec export`")
    p.add_argument("-o", "--output", type=output_file, required=True, metavar="FILE.circ", help="where to write ('-' for stdout)")


def _hash_warning(data: dict, out: Path) -> str | None:
    """Why the named model is not the exported one, or None when its weights hash matches (or cannot be read)."""
    from ..engine.errors import CircuitspecError
    from ..engine.zoo import resolve_model_path
    from ..travel.circuit_json import weights_sha256
    from ..travel.skeleton import model_text

    ref = model_text(data, out)  # as the skeleton names it: a folder relative to the skeleton, or a shipped name
    folder = out.resolve().parent / ref
    try:
        found = weights_sha256(resolve_model_path(str(folder) if folder.is_dir() else ref))
    except CircuitspecError as e:
        return f"model {ref!r} cannot be read here ({e.message}); the skeleton names it anyway"
    expected = data.get("model_sha256")
    if expected and found != expected:
        return (f"model {ref!r} has weights SHA-256 {str(found)[:12]}..., the circuit was exported from "
                f"{expected[:12]}...: it may not mean the same channels here")
    return None


def run(args: argparse.Namespace) -> int:
    from ..travel.skeleton import NotACircuit, skeleton_text

    say = Reporter(args, stdout_taken=writes_to_stdout(args.output))
    try:
        data = json.loads(args.circuit.read_text(encoding="utf-8"))
    except OSError as e:
        raise UsageError(f"{args.circuit}: cannot be read ({e.strerror or e})") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise UsageError(f"{args.circuit}: not JSON ({e})") from None
    if not isinstance(data, dict):
        raise UsageError(f"{args.circuit}: not a circuit exported by `circuitspec export` (not a JSON object)")
    try:
        text = skeleton_text(data, Path(str(args.output)) if str(args.output) != "-" else Path("skeleton.circ"))
    except NotACircuit as e:
        raise UsageError(f"{args.circuit}: {e}") from None
    warning = _hash_warning(data, Path(str(args.output)) if str(args.output) != "-" else Path("skeleton.circ"))
    if warning:
        from rich.console import Console
        from rich.markup import escape

        Console(stderr=True, highlight=False).print("[bold yellow]warning:[/] " + escape(warning), soft_wrap=True)
    if not save_output(args.output, text, "the skeleton"):
        return 2
    if str(args.output) != "-":
        say.result(f"wrote {args.output}: {len(data['nodes'])} nodes, {len(data.get('claims', []))} claims", highlight=False)
    return 0
