"""Draw a :class:`~.layout.Layout` as one SVG document: header and legend, columns, wires, boxes.

Everything the picture needs is in the file: styles in an inline ``<style>``, details in ``<title>``
elements (the viewer's tooltip), no fonts or images fetched. Every piece of text, spec descriptions
included, goes through :func:`esc`, so user text can never break out of its element.
"""

from __future__ import annotations

import html
import re

from .layout import BOX_W, COLUMN_HEAD, GROUP_HEAD, ROW_H, Box, GroupHead, Layout, Wire
from .legend import LegendItem
from .picture import KIND_TITLES, Picture, Unit
from .text import fit

SVG_NS = "http://www.w3.org/2000/svg"  # the namespace name (never fetched); only standalone files declare it
SANS = "'Helvetica Neue', Helvetica, Arial, 'Liberation Sans', 'DejaVu Sans', sans-serif"
MONO = "Menlo, Consolas, 'Liberation Mono', 'DejaVu Sans Mono', monospace"

KIND_COLOR = {"tokens": "#475569", "positions": "#94a3b8", "resid": "#78716c", "q": "#0284c7", "k": "#0d9488",
              "v": "#4f46e5", "z": "#7c3aed", "mlp": "#15803d", "logits": "#c2410c"}
SPLIT_COLORS = ("#e66100", "#5d3a9b", "#1b9e77", "#e7298a", "#66a61e", "#a6761d", "#666666", "#0072b2")
UNSPLIT_COLORS = ("#0f766e", "#b91c1c")  # strip colours for positive / negative means
POSITIVE, NEGATIVE, MIXED = "#2563eb", "#dc2626", "#8b8b8b"

_XML_ILLEGAL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")

STYLE = f"""
.circuit {{ font-family: {SANS}; }}
.circuit text {{ fill: #1f2937; }}
.circuit .mono {{ font-family: {MONO}; }}
.circuit .title {{ font-size: 22px; font-weight: 700; }}
.circuit .subtitle {{ font-size: 14px; font-style: italic; fill: #4b5563; }}
.circuit .fact {{ font-size: 13px; fill: #374151; }}
.circuit .legend {{ font-size: 12px; fill: #374151; }}
.circuit .legend-head {{ font-size: 12px; font-weight: 700; fill: #111827; }}
.circuit .note {{ font-size: 12px; fill: #6b7280; }}
.circuit .band {{ fill: #f1f0ec; }}
.circuit .band-title {{ font-size: 13px; font-weight: 700; fill: #a8a29e; letter-spacing: 0.08em; }}
.circuit .col-title {{ font-size: 13px; font-weight: 700; }}
.circuit .col-hooks {{ font-size: 10.5px; fill: #6b7280; }}
.circuit .box {{ fill: #ffffff; stroke-width: 1.4; }}
.circuit .deck {{ fill: #ffffff; stroke-width: 1; }}
.circuit .name {{ font-size: 12.5px; font-weight: 700; }}
.circuit .hook {{ font-size: 10px; fill: #374151; }}
.circuit .desc {{ font-size: 11px; fill: #57534e; }}
.circuit .small {{ font-size: 9.5px; fill: #4b5563; }}
.circuit .count {{ font-size: 10px; font-weight: 700; fill: #ffffff; }}
.circuit .lod {{ display: none; font-weight: 700; }}
.circuit .ghead-bg {{ fill: #e7e5e4; }}
.circuit .ghead text {{ font-size: 10px; font-weight: 700; fill: #44403c; }}
.circuit .axis {{ stroke: #d1d5db; stroke-width: 1; }}
.circuit .w {{ fill: none; stroke-linecap: round; }}
.circuit .w-weight {{ stroke-opacity: 0.5; }}
.circuit .w-declared {{ stroke: #1f2937; stroke-opacity: 0.65; stroke-dasharray: 6 4; }}
.circuit .w-structural {{ stroke: #a8a29e; stroke-opacity: 0.9; stroke-dasharray: 2 3; }}
.circuit .pos {{ stroke: {POSITIVE}; }}
.circuit .neg {{ stroke: {NEGATIVE}; }}
.circuit .mixed {{ stroke: {MIXED}; }}
"""


def esc(text: object) -> str:
    """Text safe inside an XML element or a quoted attribute (characters XML forbids become U+FFFD)."""
    return html.escape(_XML_ILLEGAL.sub("\ufffd", str(text)), quote=True)


def num(x: float) -> str:
    return f"{x:.1f}"


def signed(x: float) -> str:
    return f"{x:+.2f}".replace("-", "−")


# ---- boxes -----------------------------------------------------------------------------------------


_NOUN = {"q": ("query", "queries"), "k": ("key", "keys"), "v": ("value", "values"), "z": ("output", "outputs"),
         "resid": ("residual channel", "residual channels"), "mlp": ("MLP neuron", "MLP neurons")}


def title_parts(unit: Unit) -> tuple[str, str]:
    """The bold first line of a box, as (text, token): the spec's names, else what the box is; a token
    is drawn in the monospace font, where ' and " cannot be confused."""
    if unit.names:
        return " · ".join(unit.names), ""
    first = unit.members[0]
    if unit.kind in ("tokens", "logits"):
        return ("logit ", unit.token) if unit.kind == "logits" else \
            ("other tokens", "") if unit.collapsed else ("token ", unit.token)
    if unit.kind == "positions":
        return ("positions", "") if unit.collapsed else (f"position {first.index}", "")
    one, many = _NOUN[unit.kind]
    head = f"head {first.head} " if first.head is not None else ""
    return (f"{head}{many}", "") if unit.collapsed else (f"{head}{one} {first.index}", "")


_SHORT = {"q": "q", "k": "k", "v": "v", "z": "z", "resid": "#", "mlp": "#"}


def compact_label(unit: Unit) -> tuple[str, str]:
    """What a zoomed-out page shows in a box instead of its detail lines (hidden unless a viewer turns
    it on), as (text, tail): the title, plus what tells apart the boxes one spec name spans, since a
    group's channels are often drawn one box each: the channel (``h3 k8``, ``#350``), or a collapsed
    box's count, whose badge is hidden then. The tail is what a shortened label keeps."""
    title = unit_title(unit)
    if unit.collapsed:
        tail = f"×{len(unit.members):,}"
    elif unit.names and unit.kind in _SHORT:
        first = unit.members[0]
        tail = (f"h{first.head} " if first.head is not None else "") + f"{_SHORT[unit.kind]}{first.index}"
    else:
        return title, ""
    return f"{title} · {tail}" if not unit.collapsed else f"{title} {tail}", tail


def column_label(title: str) -> str:
    """A column's title as a zoomed-out page shows it: the block is named by its band already, so
    ``block 0 · attention q k v`` becomes ``q k v``."""
    return re.sub(r"^block \d+ · (attention )?", "", title)


def unit_title(unit: Unit) -> str:
    return "".join(title_parts(unit))


def tooltip(unit: Unit, picture: Picture) -> str:
    lines = [unit_title(unit), unit.label]
    layer = unit.members[0].layer
    lines.append(KIND_TITLES[unit.kind] + (f", block {layer}" if layer is not None else "")
                 + (f" × {len(unit.members)}" if unit.collapsed else ""))
    if unit.names and len(unit.names) > 1:
        lines.append("spec names: " + ", ".join(unit.names))
    if unit.description:
        lines.append(f"“{unit.description}”")
    lines.append(f"in the circuit by: {unit.origin}")
    split, stats = picture.split, unit.stats
    if stats is not None and split is not None:
        what = "logit" if unit.kind == "logits" else stats.measure
        if stats.per_value:
            lines.append(f"{what} at the answer position, full model, {split.n} inputs (seed {split.seed}):")
        for label, count, v in zip(split.labels, split.counts, stats.per_value):
            cond = f"{split.feature} == {label}" if split.feature else label
            lines.append(f"  {cond} (n={count}): mean {v.mean:+.3f}, std {v.std:.3f}, range [{v.lo:.3f}, {v.hi:.3f}]")
        if stats.members:
            lines.append(f"strongest members by {_delta_name(picture)}:")
            for member, d in sorted(stats.members, key=lambda md: (-abs(md[1]), md[0]))[:6]:
                lines.append(f"  {member}: {d:+.3f}")
    return "\n".join(lines)


def _delta_name(picture: Picture) -> str:
    split = picture.split
    if split is None or len(split.labels) < 2:
        return "mean activation"
    return f"Δ = mean at {split.labels[-1]} − mean at {split.labels[0]}"


def _glyph(kind: str, x: float, y: float) -> str:
    """A small shape per kind, so kinds differ by shape as well as colour."""
    c = KIND_COLOR[kind]
    if kind == "resid":
        return f'<rect x="{num(x - 5)}" y="{num(y - 5)}" width="10" height="10" fill="{c}"/>'
    if kind == "mlp":
        return f'<circle cx="{num(x)}" cy="{num(y)}" r="6" fill="{c}"/>'
    if kind in ("tokens", "positions"):
        return f'<path d="M{num(x - 5)},{num(y - 6)} L{num(x + 6)},{num(y)} L{num(x - 5)},{num(y + 6)} Z" fill="{c}"/>'
    if kind == "logits":
        pts = " ".join(f"{num(x + 6.5 * dx)},{num(y + 6.5 * dy)}" for dx, dy in
                       ((1, 0), (0.5, 0.87), (-0.5, 0.87), (-1, 0), (-0.5, -0.87), (0.5, -0.87)))
        return f'<polygon points="{pts}" fill="{c}"/>'
    return (f'<path d="M{num(x)},{num(y - 7.5)} L{num(x + 7.5)},{num(y)} L{num(x)},{num(y + 7.5)} L{num(x - 7.5)},{num(y)} Z" '
            f'fill="{c}"/><text x="{num(x)}" y="{num(y + 3.5)}" text-anchor="middle" class="count">{kind}</text>')


_RADIUS = {"resid": 2, "tokens": 2, "positions": 2, "logits": 2, "mlp": 14}


def _value_rows(box: Box, picture: Picture, y: float) -> list[str]:
    """One row per split value: the mean as a dot, ±1 std as a bar, on the column's shared axis."""
    stats, split = box.unit.stats, picture.split
    lo, hi = box.scale
    x0, x1 = 12.0, box.w - 60.0

    def at(v: float) -> float:
        return x0 + (min(max(v, lo), hi) - lo) / (hi - lo) * (x1 - x0)

    out = [f'<line class="axis" x1="{num(at(0))}" y1="{num(y - 2)}" x2="{num(at(0))}" y2="{num(y + ROW_H * len(stats.per_value) + 1)}"/>']
    for i, v in enumerate(stats.per_value):
        c = SPLIT_COLORS[i % len(SPLIT_COLORS)] if split and split.feature else SPLIT_COLORS[0]
        cy = y + ROW_H * i + ROW_H / 2
        out.append(f'<line x1="{num(at(v.mean - v.std))}" y1="{num(cy)}" x2="{num(at(v.mean + v.std))}" y2="{num(cy)}" '
                   f'stroke="{c}" stroke-width="2" stroke-opacity="0.55"/>')
        out.append(f'<circle cx="{num(at(v.mean))}" cy="{num(cy)}" r="3.3" fill="{c}"/>')
        out.append(f'<text x="{num(box.w - 10)}" y="{num(cy + 3.5)}" text-anchor="end" class="small mono" '
                   f'style="fill:{c}">{esc(signed(v.mean))}</text>')
    return out


def _member_strip(box: Box, picture: Picture, y: float) -> list[str]:
    """One cell per member (binned when there are more than fit), coloured by its contrast."""
    members = box.unit.stats.members
    split = picture.split
    x0, width = 12.0, box.w - 24.0
    n_cells = min(len(members), int(width / 2))
    cells = []
    for c in range(n_cells):
        part = members[c * len(members) // n_cells:(c + 1) * len(members) // n_cells]
        cells.append(max((d for _, d in part), key=abs))
    if split is not None and len(split.labels) >= 2:
        pos_color, neg_color = SPLIT_COLORS[(len(split.labels) - 1) % len(SPLIT_COLORS)], SPLIT_COLORS[0]
    else:
        pos_color, neg_color = UNSPLIT_COLORS
    cw = width / n_cells
    out = [f'<rect x="{num(x0)}" y="{num(y)}" width="{num(width)}" height="10" fill="#f3f4f6"/>']
    for c, d in enumerate(cells):
        strength = min(1.0, abs(d) / box.strip_scale)
        if strength < 0.02:
            continue
        out.append(f'<rect x="{x0 + c * cw:.2f}" y="{num(y)}" width="{cw + 0.05:.2f}" height="10" '
                   f'fill="{pos_color if d > 0 else neg_color}" fill-opacity="{0.15 + 0.85 * strength:.2f}"/>')
    top = sorted(members, key=lambda md: (-abs(md[1]), md[0]))[:3]
    label = "Δ" if split is not None and len(split.labels) >= 2 else "mean"
    text = f"{label} " + "  ".join(f"#{m.index} {signed(d)}" for m, d in top)
    out.append(f'<text x="12" y="{num(y + 25)}" class="small mono">{esc(fit(text, box.w - 24, 9.5, mono=True))}</text>')
    return out


def draw_box(box: Box, picture: Picture, group: str = "", folded: bool = False, hidden: bool = False) -> str:
    """A box; ``group``: the id of the foldable group it belongs to, or (``folded``) stands for."""
    u = box.unit
    color = KIND_COLOR[u.kind]
    rx = _RADIUS.get(u.kind, 7)
    classes = f"unit k-{u.kind}" + (" collapsed" if u.collapsed else "") + (" gbox" if folded else "")
    attrs = (f'class="{classes}" id="{esc(u.id)}" data-node="{esc(u.label)}" data-names="{esc(" ".join(u.names))}" '
             f'data-members="{len(u.members)}"' + (f' data-group="{esc(group)}"' if group else "")
             + (' display="none"' if hidden else "") + f' transform="translate({num(box.x)},{num(box.y)})"')
    parts = [f"<g {attrs}>", f"<title>{esc(tooltip(u, picture))}</title>"]
    if u.collapsed:
        for off in (6, 3):
            parts.append(f'<rect class="deck" x="{off}" y="{-off}" width="{num(box.w)}" height="{num(box.h)}" rx="{rx}" '
                         f'stroke="{color}" stroke-opacity="{0.35 + off / 30:.2f}"/>')
    parts.append(f'<rect class="box" width="{num(box.w)}" height="{num(box.h)}" rx="{rx}" stroke="{color}"/>')
    parts.append(f'<rect x="0" y="0" width="{num(box.w)}" height="22" rx="{rx}" fill="{color}" fill-opacity="0.1"/>')
    parts.append('<g class="deco">' + _glyph(u.kind, box.w - 14, 11))
    title_room = box.w - 36
    count = f"{len(u.members):,}"
    if u.collapsed:
        badge_w = 8 + 6.5 * len(count)
        title_room -= badge_w + 6
        parts.append(f'<rect x="{num(box.w - 28 - badge_w)}" y="4" width="{num(badge_w)}" height="14" rx="7" fill="{color}"/>')
        parts.append(f'<text x="{num(box.w - 28 - badge_w / 2)}" y="14.5" text-anchor="middle" class="count">{count}</text>')
    parts.append("</g>")
    text, token = title_parts(u)
    compact, tail = compact_label(u)
    lod = (f'<text x="8" y="3" class="lod" data-w="{num(box.w)}" data-h="{num(box.h)}" data-tail="{esc(tail)}">'
           f'{esc(compact)}</text>')
    token_part = f'<tspan class="mono">{esc(token)}</tspan>' if token else ""
    parts.append(f'<text x="10" y="15.5" class="name">{esc(fit(text, title_room, 12.5, bold=True))}{token_part}</text>')
    parts.append(f'<text x="10" y="34" class="hook mono">{esc(fit(u.label, box.w - 20, 10, mono=True))}</text>')
    y = 40.0
    for line in box.description:
        parts.append(f'<text x="10" y="{num(y + 9)}" class="desc">{esc(line)}</text>')
        y += 14
    if u.stats is not None:
        rows = _member_strip(box, picture, y + 2) if u.collapsed else _value_rows(box, picture, y + 4)
        parts.extend(rows)
    parts.append(lod)  # last, so it is drawn over the activation plot it may cover
    parts.append("</g>")
    return "".join(parts)


def draw_group_head(head: GroupHead, hidden: bool = False) -> str:
    """A foldable group's name line: ▾ when its boxes are drawn, ▸ when it is one box."""
    g = head.group
    sign = "▸" if head.collapsed else "▾"
    text = f"{g.name} · {head.boxes} boxes · {head.nodes:,} nodes"
    return (f'<g class="ghead{" folded" if head.collapsed else ""}" id="head-{esc(g.id)}" data-group="{esc(g.id)}"'
            + (' display="none"' if hidden else "") + f' transform="translate({num(head.x)},{num(head.y)})">'
            f'<title>{esc(g.name)}: click to fold the group into one box, or to unfold it</title>'
            f'<rect class="ghead-bg" width="{num(BOX_W)}" height="{num(GROUP_HEAD - 3)}" rx="4"/>'
            f'<text x="6" y="11.5"><tspan class="gsign">{sign}</tspan> {esc(fit(text, BOX_W - 22, 10, bold=True))}</text></g>')


# ---- wires -----------------------------------------------------------------------------------------


def _sign_class(wire: Wire) -> str:
    link = wire.link
    if link.kind != "weight":
        return ""
    if abs(link.signed) < 0.5 * link.strength:
        return " mixed"
    return " pos" if link.signed > 0 else " neg"


def draw_wire(wire: Wire, picture: Picture) -> str:
    link = wire.link
    src, dst = picture.unit(link.source), picture.unit(link.target)
    title = f"{unit_title(src)} → {unit_title(dst)}\n{link.note}"
    return (f'<path class="w w-{link.kind}{_sign_class(wire)}" d="{wire.path}" stroke-width="{wire.width:.2f}" '
            f'data-src="{esc(link.source)}" data-dst="{esc(link.target)}"><title>{esc(title)}</title></path>')


# ---- header and legend -----------------------------------------------------------------------------


def _legend_item(item: LegendItem) -> str:
    x, y = item.x, item.y
    kind, _, rest = item.swatch.partition(":")
    out = ""
    if kind == "heading":
        return f'<text x="{num(x)}" y="{num(y)}" class="legend-head">{esc(item.text)}</text>'
    if kind == "kind":
        out, x = _glyph(rest, x + 7, y - 4), x + 18
    elif kind == "line":
        classes, _, width = rest.rpartition(":")
        out, x = f'<path class="{esc(classes)}" d="M{num(x)},{num(y - 4)} L{num(x + 28)},{num(y - 4)}" stroke-width="{esc(width)}"/>', x + 36
    elif kind == "dot":
        color = SPLIT_COLORS[int(rest) % len(SPLIT_COLORS)]
        out, x = f'<circle cx="{num(x + 5)}" cy="{num(y - 4)}" r="4.5" fill="{color}"/>', x + 14
        return out + f'<text x="{num(x)}" y="{num(y)}" class="legend mono" style="fill:{color}">{esc(item.text)}</text>'
    cls = "legend mono" if item.mono else "legend"
    return out + f'<text x="{num(x)}" y="{num(y)}" class="{cls}">{esc(item.text)}</text>'


def draw_header(layout: Layout) -> list[str]:
    out = [f'<text x="28" y="{num(line.y)}" class="{line.style}">{esc(line.text)}</text>' for line in layout.header]
    return out + [_legend_item(item) for item in layout.legend]


def render_svg(layout: Layout, standalone: bool = True, interactive: bool = False) -> str:
    """The picture as SVG markup; ``standalone`` adds the XML namespace a ``.svg`` file needs (inline
    SVG in HTML gets it from the HTML parser). ``interactive`` (the HTML page) also draws, hidden, each
    group's other state: the boxes of a folded group and the one box of an unfolded one."""
    p = layout.picture
    ns = f' xmlns="{SVG_NS}"' if standalone else ""
    out = [f'<svg{ns} class="circuit" width="{num(layout.width)}" height="{num(layout.height)}" '
           f'viewBox="0 0 {num(layout.width)} {num(layout.height)}" role="img" aria-label="{esc(p.title)}">',
           f"<style>{STYLE}</style>",
           f'<rect width="{num(layout.width)}" height="{num(layout.height)}" fill="#fcfcfb"/>']
    out += draw_header(layout)
    for band in layout.bands:
        out.append(f'<rect class="band" x="{num(band.x)}" y="{num(band.y)}" width="{num(band.w)}" height="{num(band.h)}" rx="10"/>')
        out.append(f'<text x="{num(band.x + band.w - 12)}" y="{num(band.y + band.h - 12)}" text-anchor="end" '
                   f'class="band-title">{esc(band.title.upper())}</text>')
    for c in layout.columns:
        out.append(f'<text x="{num(c.x)}" y="{num(c.y + 16)}" class="col-title">{esc(c.column.title)}</text>')
        out.append(f'<text x="{num(c.x)}" y="{num(c.y + 31)}" class="col-hooks mono">{esc(fit(c.column.hooks, BOX_W, 10.5, mono=True))}</text>')
        out.append(f'<text x="{num(c.x)}" y="{num(c.y + COLUMN_HEAD - 6)}" class="lod col-lod" data-w="{num(BOX_W + 14)}" '
                   f'data-rows="2" data-up="1">{esc(column_label(c.column.title))}</text>')
    out.append('<g class="wires">')
    out += [draw_wire(w, p) for w in layout.wires]
    out.append('</g><g class="units">')
    member_of = {uid: g.id for g in layout.groups for uid in g.units}
    out += [draw_box(b, p, member_of.get(b.unit.id, b.unit.id if b.unit.id in layout.collapsed else ""),
                     folded=b.unit.id in layout.collapsed) for b in layout.boxes]
    if interactive and layout.groups:
        expanded, folded = layout.expanded, layout.folded
        for g in layout.groups:
            if g.id in layout.collapsed:
                out += [draw_box(layout.box_for(expanded.unit(uid)), expanded, g.id, hidden=True) for uid in g.units]
            else:
                out.append(draw_box(layout.box_for(folded.unit(g.id)), folded, g.id, folded=True, hidden=True))
    out.append('</g><g class="gheads">')
    out += [draw_group_head(h) for h in layout.group_heads]
    out.append("</g></svg>")
    return "\n".join(out) + "\n"
