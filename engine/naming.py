"""One naming scheme for model internals: a TransformerLens hook name plus an index.

Examples: ``blocks.0.mlp.hook_post[113]``, ``blocks.1.attn.hook_v[head=2, 7]``,
``blocks.1.attn.hook_pattern[head=0]``, ``blocks.0.hook_resid_mid[41]``, ``hook_logits[34]``.
Graph nodes, DSL references, reports and JSON all use these strings.

Two input pseudo-hooks name the embedding rows: ``hook_tokens[c]`` (byte c) and ``hook_positions[p]``.
``blocks.L.hook_resid_post`` and ``blocks.L+1.hook_resid_pre`` are the same activation; the graph
uses ``resid_pre`` except after the last block (see :func:`canonical`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_NAME = re.compile(r"^(?P<hook>[A-Za-z_][\w.]*)\[(?P<index>[^\]]*)\]$")
_HEADED = ("hook_q", "hook_k", "hook_v", "hook_z", "hook_attn_scores", "hook_pattern")


@dataclass(frozen=True, order=True)
class NodeName:
    """A hook point and an index into its channel dimensions (``head`` only for per-head hooks)."""

    hook: str
    index: int | None = None
    head: int | None = None

    def __str__(self) -> str:
        parts = []
        if self.head is not None:
            parts.append(f"head={self.head}")
        if self.index is not None:
            parts.append(str(self.index))
        return f"{self.hook}[{', '.join(parts)}]"

    @property
    def layer(self) -> int | None:
        match = re.match(r"blocks\.(\d+)\.", self.hook)
        return int(match.group(1)) if match else None


def is_per_head(hook: str) -> bool:
    return hook.rsplit(".", 1)[-1] in _HEADED


def parse_node_name(text: str) -> NodeName:
    """Parse ``hook[head=h, i]`` / ``hook[i]`` / ``hook[head=h]``; ``ValueError`` on anything else."""
    match = _NAME.match(text.strip())
    if not match:
        raise ValueError(f"not a node name: {text!r} (expected e.g. 'blocks.0.mlp.hook_post[3]')")
    head = index = None
    for part in filter(None, (p.strip() for p in match.group("index").split(","))):
        if part.startswith("head="):
            head = int(part[5:])
        elif index is None:
            index = int(part)
        else:
            raise ValueError(f"too many indices in {text!r}")
    return NodeName(match.group("hook"), index, head)


def resid_hook(boundary: int, n_layers: int) -> str:
    """Hook name of the residual stream before block ``boundary`` (``n_layers`` = after the last)."""
    if boundary < n_layers:
        return f"blocks.{boundary}.hook_resid_pre"
    return f"blocks.{n_layers - 1}.hook_resid_post"


def canonical(name: NodeName, n_layers: int) -> NodeName:
    """Map aliases of the same activation onto the graph's name for it."""
    match = re.fullmatch(r"blocks\.(\d+)\.hook_resid_post", name.hook)
    if match and int(match.group(1)) < n_layers - 1:
        return NodeName(resid_hook(int(match.group(1)) + 1, n_layers), name.index, name.head)
    return name


def index_ranges(indices: list[int]) -> str:
    """Sorted channel indices with runs written as ranges: 0:4, 7, 9:11."""
    out, start = [], None
    ordered = sorted(indices)
    for i, value in enumerate(ordered):
        if start is None:
            start = value
        if i + 1 == len(ordered) or ordered[i + 1] != value + 1:
            out.append(str(start) if value == start else f"{start}:{value + 1}")
            start = None
    return ", ".join(out)
