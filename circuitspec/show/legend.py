"""The legend's content and where each entry goes, wrapped to the picture's width.

Geometry lives here (not in the SVG writer) because the header's height, and so the whole layout,
depends on how many lines the legend wraps to.
"""

from __future__ import annotations

from dataclasses import dataclass

from .picture import KIND_TITLES, KINDS, Picture

LINE_H = 20
INDENT = 104  # room for the row heading
CHAR_W = 5.9  # a conservative width per character of 12px legend text (Arial-like fonts need ~5.4)


@dataclass(frozen=True)
class LegendItem:
    """One entry: a swatch and its text. ``swatch`` is ``heading`` (bold row title), ``text`` (none),
    ``kind:K`` (a box kind's glyph), ``line:CLASSES:WIDTH`` (a wire sample) or ``dot:I`` (split value I)."""

    swatch: str
    text: str
    x: float
    y: float
    mono: bool = False


SWATCH_W = {"heading": 0, "text": 0, "kind": 18, "line": 36, "dot": 14}


def delta_text(picture: Picture) -> str:
    """What a strip cell's colour means (token values are left to the coloured dots: in a sans-serif
    font ' and " look alike)."""
    split = picture.split
    if split is None or len(split.labels) < 2:
        return "coloured by the channel's mean activation"
    return ("coloured by the value the channel is more active at (Δ = mean at the last value − mean at the first); "
            "the three largest |Δ| below it")


def _rows(picture: Picture) -> list[tuple[str, list[tuple[str, str, bool]]]]:
    kinds = [(f"kind:{k}", KIND_TITLES[k], False) for k in KINDS if any(u.kind == k for u in picture.units)]
    boxes = kinds + [("text", "· stacked box = a collapsed group, the badge counts its channels", False)]
    connections = [("line:w w-weight pos:3", "weights > 0", False), ("line:w w-weight neg:3", "weights < 0", False),
                   ("line:w w-weight mixed:3", "mixed signs", False),
                   ("text", "(width ∝ √ sum of |w|)", False),
                   ("line:w w-declared:2", "declared edge, virtual weight through the residual stream", False),
                   ("line:w w-structural:1.3", "residual stream / within a head", False)]
    rows = [("boxes", boxes), ("connections", connections)]
    split = picture.split
    if split is not None:
        intro = f"at the answer position, full model, {split.n} inputs (seed {split.seed})"
        acts = [("text", intro + (f", by {split.feature}:" if split.feature else ":"), False)]
        if split.feature:
            acts += [(f"dot:{i}", f"{label} (n={count})", True) for i, (label, count) in enumerate(zip(split.labels, split.counts))]
        acts += [("text", "· dot = mean, bar = ±1 std, axis shared by a column", False),
                 ("text", f"· strip = one cell per channel, {delta_text(picture)}", False)]
        rows.append(("activations", acts))
    return rows


def lay_out_legend(picture: Picture, x0: float, y0: float, width: float) -> tuple[tuple[LegendItem, ...], float]:
    """Legend items placed from (x0, y0) (first baseline) within ``width``; and the height used."""
    items: list[LegendItem] = []
    y = y0
    for heading, entries in _rows(picture):
        items.append(LegendItem("heading", heading, x0, y))
        x = x0 + INDENT
        for swatch, text, mono in entries:
            w = SWATCH_W[swatch.split(":")[0]] + CHAR_W * len(text) * (1.1 if mono else 1.0)
            if x > x0 + INDENT and x + w > x0 + width:
                x, y = x0 + INDENT, y + LINE_H
            items.append(LegendItem(swatch, text, x, y, mono))
            x += w + 16
        y += LINE_H + 2
    return tuple(items), y - y0
