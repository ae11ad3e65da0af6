"""An exported circuit (``circuitspec export``'s JSON) back as a ``.circ`` skeleton that resolves to the same
masks: the header, one ``node``/``group`` per exported name (channels as index ranges, one reference per
hook and head), a group per hook for kept channels no name covered, and the claims as written.

For ``circuit edges`` the kept weights become ``edge`` statements between adjacent channels, one per source
channel set that reaches the same target channels: an edge between a weight's own two ends states exactly
that weight (the path search stops at its target), so the stated weights are the exported ones.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ..engine.naming import NodeName, index_ranges, parse_node_name


class NotACircuit(ValueError):
    """The JSON is not an exported circuit (the command prints it in one line, exit 2)."""


def _quoted(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _refs(nodes: list[NodeName]) -> list[str]:
    """References covering ``nodes``: one per hook (and head), channels as ranges, in first-seen order."""
    by_group: dict[tuple[str, int | None], list[int]] = {}
    for node in nodes:
        by_group.setdefault((node.hook, node.head), []).append(node.index)
    return [f"{hook}[" + (f"head={head}, " if head is not None else "") + index_ranges(indices) + "]"
            for (hook, head), indices in by_group.items()]


def _members(nodes: list[NodeName]) -> str:
    refs = _refs(nodes)
    return refs[0] if len(refs) == 1 else "{" + ", ".join(refs) + "}"


def _unnamed_group(hook: str, head: int | None, taken: set[str]) -> str:
    parts = hook.split(".")
    base = (f"b{parts[1]}_" if parts[0] == "blocks" else "") + parts[-1].removeprefix("hook_")
    base = "unnamed_" + base + (f"_h{head}" if head is not None else "")
    name, n = base, 2
    while name in taken:
        name, n = f"{base}_{n}", n + 1
    taken.add(name)
    return name


def model_text(data: dict[str, Any], out_path: Path) -> str:
    """The model as the spec named it; a checkpoint folder is re-pointed relative to the skeleton."""
    from ..engine.zoo import shipped_names

    model, path = data["model"], data.get("model_path")
    if model in shipped_names() or not path or not Path(path).is_dir():
        return model
    return os.path.relpath(path, out_path.resolve().parent)


def _edge_lines(edges: list[dict[str, Any]]) -> list[str]:
    """``edge`` statements stating exactly ``edges`` (adjacent ends; see the module docstring)."""
    targets: dict[tuple[str, str], dict[str, list[NodeName]]] = {}  # (weight, source) -> target hook/head -> channels
    for e in edges:
        target = parse_node_name(e["target"])
        key = f"{target.hook}|{target.head}"
        targets.setdefault((e["weight"], e["source"]), {}).setdefault(key, []).append(target)
    grouped: dict[tuple, list[NodeName]] = {}  # source hook/head, same targets -> those sources
    for (weight, source), by_hook in targets.items():
        start = parse_node_name(source)
        for key, nodes in by_hook.items():
            signature = tuple(sorted(str(n) for n in nodes))
            grouped.setdefault((weight, start.hook, str(start.head), key, signature), []).append(start)
    lines = []
    for (*_, signature), sources in sorted(grouped.items(), key=lambda item: item[0]):
        lines.append(f"edge {_members(sources)} -> {_members([parse_node_name(t) for t in signature])}")
    return lines


def skeleton_text(data: dict[str, Any], out_path: Path) -> str:
    """The formatted ``.circ`` text for an exported circuit (NotACircuit if it is not one)."""
    from ..lang import format_spec, parse_spec

    try:
        nodes = [(parse_node_name(n["name"]), list(n.get("in", []))) for n in data["nodes"]]
        definitions = data.get("definitions", [])
        lines = [f"# Imported from a circuit exported by `circuitspec export` ({len(nodes)} nodes, {len(data.get('edges', []))} edges)",
                 f"spec {data['spec']}" + (f" {_quoted(data['description'])}" if data.get("description") else ""),
                 f"model {_quoted(model_text(data, out_path))}", f"task {data['task']}"]
        if data.get("ablation"):
            lines.append(f"ablate {data['ablation']}")
        if data.get("circuit", "nodes") == "edges":
            lines.append("circuit edges")
        lines.append("")
        taken = {d["name"] for d in definitions}
        for d in definitions:
            members = [node for node, names in nodes if d["name"] in names]
            if not members:
                continue  # a name whose channels are all outside the circuit cannot be: keep the skeleton valid
            kind = "node" if d.get("kind") == "node" and len(members) == 1 else "group"
            description = f" {_quoted(d['description'])}" if d.get("description") else ""
            lines.append(f"{kind} {d['name']} = {_members(members)}{description}")
        unnamed: dict[tuple[str, int | None], list[NodeName]] = {}
        for node, names in nodes:
            if not names:
                unnamed.setdefault((node.hook, node.head), []).append(node)
        for (hook, head), members in unnamed.items():
            lines.append(f"group {_unnamed_group(hook, head, taken)} = {_members(members)}")
        if data.get("circuit") == "edges":
            lines += ["", *_edge_lines(data.get("edges", []))]
        lines += ["", *(c["text"] for c in sorted(data.get("claims", []), key=lambda c: c["line"]))]
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise NotACircuit(f"not a circuit exported by `circuitspec export` ({type(e).__name__}: {e})") from None
    text = "\n".join(lines) + "\n"
    parsed = parse_spec(text, str(out_path))
    if not parsed.ok:
        raise NotACircuit("the exported circuit does not make a valid spec: " + "; ".join(d.message for d in parsed.diagnostics))
    return format_spec(parsed.spec)
