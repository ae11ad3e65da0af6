"""The plain data that `circuitspec show` passes between its stages: what to draw, before any geometry.

A :class:`Picture` says which boxes (units) sit in which column, what each box stands for, and which
connections (links) join boxes; :mod:`.layout` then places them and :mod:`.svg` draws them. Keeping
this free of coordinates lets tests check the circuit-level facts (every node once, edges only between
circuit nodes) independently of how the picture looks.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..engine.naming import NodeName

#: Box kinds, in legend order. ``tokens``/``positions`` are embedding rows, ``logits`` output tokens.
KINDS = ("tokens", "positions", "resid", "q", "k", "v", "z", "mlp", "logits")
KIND_TITLES = {
    "tokens": "token input", "positions": "position input", "resid": "residual channel",
    "q": "attention query channel", "k": "attention key channel", "v": "attention value channel",
    "z": "attention output channel (z)", "mlp": "MLP neuron", "logits": "logit",
}


@dataclass(frozen=True)
class Column:
    """One vertical band of the picture: a stage of the forward pass."""

    title: str  # e.g. "block 0 · attention q k v"
    hooks: str  # the hook names it shows, e.g. "blocks.0.attn.hook_q/k/v"
    layer: int | None  # the block it belongs to (None: inputs, final residual, logits)


@dataclass(frozen=True)
class Split:
    """How activation summaries are split: by one task feature, or not at all (``feature`` None)."""

    feature: str | None
    values: tuple  # the feature's values in display order (empty when unsplit)
    labels: tuple[str, ...]  # their display text, e.g. ``'"'`` (one label "all inputs" when unsplit)
    counts: tuple[int, ...]  # inputs per value
    n: int  # inputs in the sample
    seed: int


@dataclass(frozen=True)
class ValueStats:
    """One node's activation at the answer position over the inputs with one split value."""

    mean: float
    std: float
    lo: float
    hi: float


@dataclass(frozen=True)
class UnitStats:
    """Activation summary of a box.

    A single channel has one :class:`ValueStats` per split value. A collapsed group has the same
    for the root-mean-square over its members (a size that averaging signed members would hide), and
    ``members`` lists each member's contrast (``delta``: mean at the last split value minus mean at
    the first; the plain mean when unsplit), which the box draws as a strip.
    """

    per_value: tuple[ValueStats, ...]
    members: tuple[tuple[NodeName, float], ...] = ()  # (member, delta), in member order
    measure: str = "activation"  # "activation" or "rms over members"


@dataclass(frozen=True)
class Unit:
    """One box: a single channel, or several channels of one hook (and head) drawn together."""

    id: str  # stable element id, e.g. "u7"
    kind: str  # one of KINDS
    column: int  # index into Picture.columns
    members: tuple[NodeName, ...]
    label: str  # the node name, or the hook with compact index ranges for a group
    names: tuple[str, ...]  # spec names (node/group) that cover every member, most specific first
    description: str | None  # the spec's description string (user text: escape when drawing)
    origin: str  # how the nodes came into the circuit, for the tooltip
    stats: UnitStats | None = None
    token: str = ""  # a token or logit box of one token: how the token reads, in the model's tokenizer

    @property
    def collapsed(self) -> bool:
        return len(self.members) > 1


@dataclass(frozen=True)
class Link:
    """A connection between two boxes.

    ``weight``: non-zero weights between their channels (``strength`` = sum of |w|, ``signed`` = sum of w).
    ``declared``: an ``edge`` statement of the spec, measured by virtual weights (products of the
    weights along its residual-stream paths). ``structural``: the residual stream's identity, or a
    head's value/query/key channels feeding its output channels (no weight of its own).
    """

    source: str  # unit ids
    target: str
    kind: str  # "weight" | "declared" | "structural"
    strength: float
    signed: float
    count: int  # weights (weight), channel pairs (declared, structural)
    note: str  # tooltip text


@dataclass(frozen=True)
class Picture:
    title: str
    description: str | None
    facts: tuple[str, ...]  # short lines under the title: model, task, ablation, sizes
    columns: tuple[Column, ...]
    units: tuple[Unit, ...]
    links: tuple[Link, ...]
    edge_note: str  # what was left out, said in the picture
    split: Split | None

    def unit(self, unit_id: str) -> Unit:
        return next(u for u in self.units if u.id == unit_id)
