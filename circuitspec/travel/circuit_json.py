"""A resolved spec as plain JSON: what another tool, or another checkout, needs to rebuild the same masks.

Nodes are every channel the circuit keeps, with the spec names (``node``/``group``) each belongs to.
Edges are the non-zero weights the circuit keeps between two kept nodes; for ``circuit edges`` also
those from the input rows and into the logits, which such a circuit states (a node-level circuit keeps
all of those, so they are left out). Everything is sorted: the same spec gives the same bytes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..schemas import header

if TYPE_CHECKING:
    from ..lang.resolve import ResolvedSpec

def _definitions(resolved: "ResolvedSpec") -> list[dict[str, Any]]:
    from ..lang import ast

    out = []
    for stmt in resolved.spec.all_statements():
        if isinstance(stmt, (ast.NodeDef, ast.GroupDef)):
            out.append({"name": stmt.name, "kind": "node" if isinstance(stmt, ast.NodeDef) else "group",
                        "description": stmt.description})
    return out


def _edges(resolved: "ResolvedSpec") -> list[dict[str, Any]]:
    from ..engine.masks import IO_WEIGHTS

    mask = resolved.mask
    between = mask.induced()  # entries whose ends are both kept (inputs and outputs count as kept)
    out = []
    for u, v, data in resolved.context.graph.edges(data=True):
        if data["kind"] != "weight":
            continue
        param, entry = data["param"], tuple(data["entry"])
        if param in IO_WEIGHTS and not resolved.edge_level:
            continue
        if bool(between.edges[param][entry]) and bool(mask.edges[param][entry]):
            out.append({"source": u, "target": v, "weight": param, "entry": list(entry), "value": float(data["weight"])})
    out.sort(key=lambda e: (e["weight"], e["entry"]))
    return out


def weights_sha256(path) -> str | None:
    """The checkpoint's recorded weights hash (what verify's manifest records); None when it records none."""
    from ..engine.checkpoint import read_manifest
    from ..engine.zoo import is_circuit_sparsity_dir
    from pathlib import Path

    return None if is_circuit_sparsity_dir(Path(path)) else read_manifest(path).get("weights_sha256")


def circuit_json(resolved: "ResolvedSpec") -> dict[str, Any]:
    """The ``circuitspec export`` object for ``resolved`` (schema: export.schema.json)."""
    from ..lang.fmt import format_statement

    member_of: dict[str, list[str]] = {}
    for name, nodes in resolved.definitions.items():
        for node in nodes:
            member_of.setdefault(str(node), []).append(name)
    nodes = [{"name": str(n), "hook": n.hook, "head": n.head, "index": n.index, "in": sorted(member_of.get(str(n), []))}
             for n in resolved.mask.node_names()]  # the space's hook order, then index order
    spec = resolved.spec
    return {
        **header("export"),
        "spec": spec.name,
        "description": spec.description,
        "model": spec.model,
        "model_path": str(resolved.context.path.resolve()),
        "model_sha256": weights_sha256(resolved.context.path),
        "task": spec.task,
        "ablation": str(spec.ablation) if spec.ablation is not None else None,
        "circuit": spec.circuit,
        "definitions": _definitions(resolved),
        "nodes": nodes,
        "edges": _edges(resolved),
        "claims": [{"line": c.claim.span.line, "text": format_statement(c.claim)} for c in resolved.claims],
    }
