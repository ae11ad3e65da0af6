"""Where everything goes: columns left to right, boxes stacked in each column, wires between ports.

Deterministic and computed here rather than in the browser, so the same spec gives the same file and
the SVG needs no script to look right. The rules are simple on purpose:

- a column per stage of the forward pass (empty ones dropped), boxes in channel order, each column
  centred vertically;
- a box's wires attach at ports spread along its side in the order of the boxes at their other
  ends, which keeps wires from crossing right at the box;
- a wire that would pass through boxes of the columns it skips (the residual stream around a block's
  attention, a declared edge from the inputs to block 1) runs in a lane above or below those columns
  instead, one lane per wire.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from .crossings import count_crossings
from .groups import Group, collapse, find_groups, group_key
from .legend import LegendItem, lay_out_legend
from .picture import Column, Link, Picture, Unit
from .text import fit, wrap

BOX_W = 232
COL_GAP = 96
MARGIN = 28
MIN_WIDTH = 1240
COLUMN_HEAD = 40  # column title + hook line above the boxes
LANE_ROOM = 56  # free space above and below the boxes for routed wires
BOX_GAP = 12
BAND_PAD = 28  # a block's band reaches this far beyond its outer columns
GROUP_GAP = 24  # between heads in an attention column
ROW_H = 11  # one split value in an activation plot
DESC_SIZE = 11
GROUP_HEAD = 18  # a foldable group's clickable name line above its first box
SWEEPS = 2  # barycentre sweeps (each left to right, then right to left) when ordering boxes
ORDER_MAX_LINKS = 400  # above this many wires, counting crossings takes seconds per try: channel order instead


@dataclass(frozen=True)
class Box:
    unit: Unit
    x: float
    y: float
    w: float
    h: float
    description: tuple[str, ...]  # the description, wrapped; empty where an earlier box shows it
    scale: tuple[float, float]  # activation range (low, high) shared by the column's plots
    strip_scale: float  # largest |delta| among the column's collapsed boxes

    @property
    def cy(self) -> float:
        return self.y + self.h / 2


@dataclass(frozen=True)
class Wire:
    link: Link
    path: str  # SVG path data
    width: float
    routed: bool  # runs in a lane around the columns it skips


@dataclass(frozen=True)
class PlacedColumn:
    column: Column
    x: float
    y: float


@dataclass(frozen=True)
class Band:
    """The background of one block's columns."""

    title: str
    x: float
    y: float
    w: float
    h: float


@dataclass(frozen=True)
class HeaderLine:
    style: str  # "title" | "subtitle" | "fact" | "note"
    text: str
    y: float


@dataclass(frozen=True)
class GroupHead:
    """The clickable name line of a foldable group, just above its first box (or its collapsed box)."""

    group: Group
    x: float
    y: float  # top of the line
    collapsed: bool
    nodes: int
    boxes: int


@dataclass(frozen=True)
class Layout:
    picture: Picture  # what is drawn: the ordered picture with the collapsed groups folded
    width: float
    height: float
    header: tuple[HeaderLine, ...]
    legend: tuple[LegendItem, ...]
    columns: tuple[PlacedColumn, ...]
    bands: tuple[Band, ...]
    boxes: tuple[Box, ...]
    wires: tuple[Wire, ...]
    groups: tuple[Group, ...] = ()  # every foldable group, collapsed or not
    group_heads: tuple[GroupHead, ...] = ()
    collapsed: frozenset[str] = frozenset()
    expanded: Picture | None = None  # the ordered picture with nothing folded
    heights: tuple[tuple[str, float], ...] = ()  # box id -> height, for every unit and every group's box
    descriptions: tuple[tuple[str, tuple[str, ...]], ...] = ()  # box id -> its wrapped description
    body_top: float = 0.0  # top of the boxes' area before lanes (the column heads end here)
    scales: tuple[tuple[int, tuple[tuple[float, float], float]], ...] = ()  # column -> (activation axis, strip scale)
    header_h: float = 0.0  # where the bands start
    folded: Picture | None = None  # the ordered picture with every group folded

    def box_for(self, unit: Unit) -> Box:
        """A box for any unit of the expanded or folded picture, drawn or not, at (0, 0): what the HTML
        page draws hidden for the other state of each group (its script places it)."""
        heights, descriptions, scales = dict(self.heights), dict(self.descriptions), dict(self.scales)
        scale, strip = scales.get(unit.column, ((0.0, 1.0), 1.0))
        return Box(unit, 0.0, 0.0, BOX_W, heights[unit.id], descriptions[unit.id], scale, strip)


def _header(picture: Picture, width: float) -> tuple[tuple[HeaderLine, ...], tuple[LegendItem, ...], float]:
    room = width - 2 * MARGIN
    lines = [HeaderLine("title", fit(picture.title, room, 22, bold=True), 38)]
    y = 38.0
    if picture.description:
        y += 22
        lines.append(HeaderLine("subtitle", fit(picture.description, room, 14), y))
    for fact in picture.facts:
        y += 18
        lines.append(HeaderLine("fact", fit(fact, room, 13), y))
    legend, legend_h = lay_out_legend(picture, MARGIN, y + 30, room)
    y += 30 + legend_h
    lines.append(HeaderLine("note", fit(picture.edge_note, room, 12), y + 2))
    return tuple(lines), legend, y + 18


def description_lines(units: list[Unit] | tuple[Unit, ...]) -> dict[str, tuple[str, ...]]:
    """Each box's description, wrapped; a description is drawn once, in the first box (in the order of
    the picture: columns left to right, top down) of the units it belongs to. A group drawn channel by
    channel would otherwise repeat it in every box, making each box taller and the picture longer; the
    other boxes carry it in their tooltip and show the group's name."""
    shown: set[str] = set()
    lines = {}
    for u in units:
        if u.description and u.description not in shown:
            shown.add(u.description)
            lines[u.id] = wrap(u.description, BOX_W - 20, DESC_SIZE)
        else:
            lines[u.id] = ()
    return lines


def box_height(unit: Unit, description: tuple[str, ...]) -> float:
    h = 38.0 + 14 * len(description)
    if unit.stats is None:
        return h
    if unit.collapsed:
        return h + 36  # the member strip and the strongest members
    return h + ROW_H * len(unit.stats.per_value) + 10


def _column_scales(units: list[Unit]) -> tuple[tuple[float, float], float]:
    lo, hi, strip = 0.0, 0.0, 0.0
    for u in units:
        if u.stats is None:
            continue
        if u.collapsed:
            strip = max([strip, *(abs(d) for _, d in u.stats.members)])
        else:
            for v in u.stats.per_value:
                lo, hi = min(lo, v.mean - v.std), max(hi, v.mean + v.std)
    if hi - lo < 1e-9:
        hi = lo + 1.0
    return (lo, hi), strip or 1.0


def _gap(prev: Unit, cur: Unit) -> float:
    a, b = prev.members[0], cur.members[0]
    return BOX_GAP if (a.head, a.layer, a.hook.startswith("hook_")) == (b.head, b.layer, b.hook.startswith("hook_")) else GROUP_GAP


def _heights(picture: Picture) -> tuple[dict[str, tuple[str, ...]], dict[str, float]]:
    descriptions = description_lines(picture.units)
    return descriptions, {u.id: box_height(u, descriptions[u.id]) for u in picture.units}


def lay_out(picture: Picture, *, header: bool = True, collapsed: frozenset[str] | set[str] = frozenset(),
            order: str = "barycentre") -> Layout:
    """Place ``picture``. ``header``: draw the title, facts and legend above the columns (the HTML page
    draws them itself, outside the zoomed picture). ``collapsed``: ids of the groups
    (:func:`.groups.find_groups` on the ordered picture, also ``Layout.groups``) drawn as one box.
    ``order``: ``"channel"`` keeps each column in channel order (heads, then groups, together),
    ``"barycentre"`` reorders heads, groups and boxes for fewer crossing wires (:func:`order_units`),
    ``"keep"`` takes the picture's order as it is (``Layout.expanded`` of an earlier layout)."""
    n_cols = len(picture.columns)
    content_w = n_cols * BOX_W + (n_cols - 1) * COL_GAP
    pad = MARGIN + BAND_PAD  # room for the block bands around the outer columns
    width = max(MIN_WIDTH, content_w + 2 * pad)
    if header:
        head, legend, header_h = _header(picture, width)
    else:
        head, legend, header_h = (), (), MARGIN - 8.0
    left = pad + max(0.0, (width - 2 * pad - content_w) / 2)
    columns_top = header_h + 8
    placed = [PlacedColumn(c, left + i * (BOX_W + COL_GAP), columns_top) for i, c in enumerate(picture.columns)]
    ordered = (order_units(picture, placed, columns_top) if order == "barycentre"
               else picture if order == "keep" else channel_order(picture))
    groups = find_groups(ordered)
    folded = collapse(ordered, {g.id for g in groups}, groups)
    descriptions, heights = _heights(ordered)
    folded_descriptions, folded_heights = _heights(folded)
    for g in groups:
        descriptions[g.id], heights[g.id] = folded_descriptions[g.id], folded_heights[g.id]
    collapsed = frozenset(collapsed) & {g.id for g in groups}
    drawn = collapse(ordered, collapsed, groups)
    starts = {(g.id if g.id in collapsed else g.units[0]): g for g in groups}
    # a column's activation axis is shared by all its boxes, folded or not, so folding redraws no plot
    every: dict[int, list[Unit]] = {}
    group_ids = {g.id for g in groups}
    for u in ordered.units + tuple(u for u in folded.units if u.id in group_ids):
        every.setdefault(u.column, []).append(u)
    scales = {c: _column_scales(us) for c, us in every.items()}
    boxes, heads, wires, body_top, body_h, room = _arrange(drawn, placed, columns_top, heights, descriptions, starts, scales)
    height = body_top + room[0] + body_h + room[1] + MARGIN
    bands = _bands(placed, header_h, height - header_h - 10)
    heads = tuple(GroupHead(g, x, y, g.id in collapsed, sum(len(ordered.unit(u).members) for u in g.units), len(g.units))
                  for g, x, y in heads)
    return Layout(drawn, width, height, head, legend, tuple(placed), bands, tuple(boxes), wires, groups, heads, collapsed,
                  ordered, tuple(heights.items()), tuple(descriptions.items()), columns_top + COLUMN_HEAD + 6,
                  tuple(sorted(scales.items())), header_h, folded)


def _arrange(drawn: Picture, placed: list[PlacedColumn], columns_top: float, heights: dict[str, float],
             descriptions: dict[str, tuple[str, ...]], starts: dict[str, Group] | None = None, scales: dict | None = None):
    """Boxes, group heads and wires; lanes are placed relative to the boxes, so a second pass with
    exactly the room they need is final."""
    room = (LANE_ROOM, LANE_ROOM)
    for _ in range(2):
        body_top = columns_top + COLUMN_HEAD + 6 + room[0]
        boxes, heads, body_h = _place_boxes(drawn, placed, body_top, heights, descriptions, starts or {}, scales)
        router = _Router(boxes, body_top, body_top + body_h)
        wires = _wires(drawn, boxes, router)
        needed = (max(0.0, body_top - router.highest) + 8, max(0.0, router.lowest - body_top - body_h) + 8)
        if needed == room:
            break
        room = needed
    return boxes, heads, wires, body_top - room[0], body_h, room


def _segment(u: Unit) -> tuple:
    m = u.members[0]
    return (m.head, m.layer, m.hook.startswith("hook_"))


def _sort_column(units: list[Unit], score: dict[str, float], first: bool = False) -> list[Unit]:
    """A column's boxes sorted by score with each head (segment) and each group kept together: heads by
    their boxes' mean score, groups within a head likewise, boxes within a group by their own
    (``first``: a head or group by its lowest score instead). Ties keep the current order."""
    index = {u.id: i for i, u in enumerate(units)}
    segs: dict[tuple, list[float]] = {}
    grps: dict[tuple, list[float]] = {}
    for u in units:
        segs.setdefault(_segment(u), []).append(score[u.id])
        grps.setdefault(group_key(u) or ("box", u.id), []).append(score[u.id])
    agg = min if first else (lambda xs: sum(xs) / len(xs))
    seg_score = {k: agg(v) for k, v in segs.items()}
    grp_score = {k: agg(v) for k, v in grps.items()}
    seg_first = {}
    grp_first = {}
    for u in units:
        seg_first.setdefault(_segment(u), index[u.id])
        grp_first.setdefault(group_key(u) or ("box", u.id), index[u.id])

    def key(u: Unit):
        s, g = _segment(u), group_key(u) or ("box", u.id)
        return (seg_score[s], seg_first[s], grp_score[g], grp_first[g], score[u.id], index[u.id])

    return sorted(units, key=key)


def _with_order(picture: Picture, by_column: dict[int, list[Unit]]) -> Picture:
    return replace(picture, units=tuple(u for c in sorted(by_column) for u in by_column[c]))


def _by_column(picture: Picture) -> dict[int, list[Unit]]:
    out: dict[int, list[Unit]] = {}
    for u in picture.units:
        out.setdefault(u.column, []).append(u)
    return out


def channel_order(picture: Picture) -> Picture:
    """The build's order (heads, then q k v, then channel), with each group's boxes moved together."""
    cols = _by_column(picture)
    for c, units in cols.items():
        cols[c] = _sort_column(units, {u.id: float(i) for i, u in enumerate(units)}, first=True)
    return _with_order(picture, cols)


def order_units(picture: Picture, placed: list[PlacedColumn], columns_top: float) -> Picture:
    """Boxes ordered within their columns for fewer crossing wires: starting from the channel order, each
    sweep visits the columns left to right and then right to left and sorts each by the barycentre (mean
    height) of its boxes' neighbours on the side already visited (:func:`_sort_column` keeps heads and
    groups together). Of the channel order and the order after each sweep, the one whose drawn wires
    cross least (:func:`.crossings.count_crossings`) wins, so ordering never adds crossings. A picture
    of more than ``ORDER_MAX_LINKS`` wires (``--expand 32`` on a head: every query and key channel feeds
    every output channel) keeps the channel order, since each count would take seconds."""
    current = channel_order(picture)
    neighbours: dict[str, list[tuple[str, int]]] = {}
    column = {u.id: u.column for u in picture.units}
    for link in picture.links:
        neighbours.setdefault(link.source, []).append((link.target, column[link.target]))
        neighbours.setdefault(link.target, []).append((link.source, column[link.source]))

    def placement(p: Picture) -> dict[str, float]:
        descriptions, heights = _heights(p)
        boxes, _, body_h = _place_boxes(p, placed, 0.0, heights, descriptions, {})
        return {b.unit.id: b.cy for b in boxes}

    def crossings(p: Picture) -> int:
        descriptions, heights = _heights(p)
        return count_crossings(_arrange(p, placed, columns_top, heights, descriptions)[2])

    if not picture.links or len(picture.links) > ORDER_MAX_LINKS:
        return current
    best, best_count = current, crossings(current)
    n_cols = len(placed)
    for _ in range(SWEEPS):
        for direction in (1, -1):
            cols = range(n_cols) if direction == 1 else range(n_cols - 1, -1, -1)
            for c in cols:
                cy = placement(current)
                by_col = _by_column(current)
                units = by_col.get(c)
                if not units or len(units) < 2:
                    continue
                score = {}
                for u in units:
                    near = neighbours.get(u.id, [])
                    side = [cy[v] for v, vc in near if (vc - c) * direction < 0]
                    pool = side or [cy[v] for v, _ in near]
                    score[u.id] = sum(pool) / len(pool) if pool else cy[u.id]
                by_col[c] = _sort_column(units, score)
                current = _with_order(current, by_col)
            count = crossings(current)
            if count < best_count:
                best, best_count = current, count
    return best


def _place_boxes(picture: Picture, placed: list[PlacedColumn], body_top: float, heights: dict[str, float],
                 descriptions: dict[str, tuple[str, ...]], starts: dict[str, Group], scales: dict | None = None):
    """Boxes of each column stacked and centred on the tallest column (a group's name line above its
    first box); the group heads as (group, x, y); and the tallest column's height."""
    by_column: dict[int, list[Unit]] = {i: [] for i in range(len(placed))}
    for u in picture.units:
        by_column[u.column].append(u)

    def column_height(units: list[Unit]) -> float:
        if not units:
            return 0.0
        return (sum(heights[u.id] for u in units) + sum(_gap(a, b) for a, b in zip(units, units[1:]))
                + GROUP_HEAD * sum(u.id in starts for u in units))

    body_h = max((column_height(us) for us in by_column.values()), default=0.0)
    boxes, heads = [], []
    for i, column in enumerate(placed):
        units = by_column[i]
        scale, strip = scales[i] if scales and i in scales else _column_scales(units)
        y = body_top + (body_h - column_height(units)) / 2
        for j, u in enumerate(units):
            if j:
                y += _gap(units[j - 1], u)
            if u.id in starts:
                heads.append((starts[u.id], column.x, y))
                y += GROUP_HEAD
            boxes.append(Box(u, column.x, y, BOX_W, heights[u.id], descriptions[u.id], scale, strip))
            y += heights[u.id]
    return boxes, heads, body_h


def _bands(columns: list[PlacedColumn], y: float, h: float) -> tuple[Band, ...]:
    bands, by_layer = [], {}
    for c in columns:
        if c.column.layer is not None:
            by_layer.setdefault(c.column.layer, []).append(c.x)
    for layer, xs in sorted(by_layer.items()):
        x0, x1 = min(xs) - BAND_PAD, max(xs) + BOX_W + BAND_PAD
        bands.append(Band(f"block {layer}", x0, y, x1 - x0, h))
    return tuple(bands)


def _ports(n: int, box: Box) -> list[float]:
    inset = min(14.0, box.h * 0.25)
    top, bottom = box.y + inset, box.y + box.h - inset
    if n == 1:
        return [box.cy]
    return [top + (bottom - top) * k / (n - 1) for k in range(n)]


def stroke_width(link: Link, strongest: dict[str, float]) -> float:
    """Wider for stronger links, by the square root so weak ones stay visible; scaled per link kind."""
    if link.kind == "structural":
        return 1.3
    top = strongest.get(link.kind) or 1.0
    if link.kind == "declared":
        return 1.3 + 2.7 * math.sqrt(link.strength / top)
    return 0.8 + 7.2 * math.sqrt(link.strength / top)


def _curve(x1: float, y1: float, x2: float, y2: float) -> str:
    bend = max(30.0, (x2 - x1) * 0.45)
    return f"C{x1 + bend:.1f},{y1:.1f} {x2 - bend:.1f},{y2:.1f} {x2:.1f},{y2:.1f}"


class _Router:
    """Lanes above and below the boxes for wires that skip columns; remembers how far they reach."""

    LANE_STEP = 7.0

    def __init__(self, boxes: list[Box], body_top: float, body_bottom: float) -> None:
        self.by_column: dict[int, list[Box]] = {}
        for b in boxes:
            self.by_column.setdefault(b.unit.column, []).append(b)
        self.highest, self.lowest = body_top, body_bottom
        self.lanes = {"above": 0, "below": 0}

    def blocked(self, c1: int, c2: int, y1: float, y2: float) -> list[Box]:
        """Boxes of the skipped columns that a direct wire between these heights would cross."""
        lo, hi = min(y1, y2) - 10, max(y1, y2) + 10
        return [b for c in range(c1 + 1, c2) for b in self.by_column.get(c, []) if b.y < hi and b.y + b.h > lo]

    def path(self, c1: int, c2: int, x1: float, y1: float, x2: float, y2: float) -> tuple[str, bool]:
        start = f"M{x1:.1f},{y1:.1f} "
        if not self.blocked(c1, c2, y1, y2):
            return start + _curve(x1, y1, x2, y2), False
        skipped = [b for c in range(c1 + 1, c2) for b in self.by_column.get(c, [])]
        top, bottom = min(b.y for b in skipped), max(b.y + b.h for b in skipped)
        mid = (y1 + y2) / 2
        side = "above" if mid - top <= bottom - mid else "below"
        k = self.lanes[side]
        self.lanes[side] += 1
        if side == "above":
            lane = top - 14 - self.LANE_STEP * k
            self.highest = min(self.highest, lane)
        else:
            lane = bottom + 14 + self.LANE_STEP * k
            self.lowest = max(self.lowest, lane)
        g1, g2 = x1 + COL_GAP / 2, x2 - COL_GAP / 2
        return (start + f"C{x1 + COL_GAP * 0.35:.1f},{y1:.1f} {g1 - COL_GAP * 0.15:.1f},{lane:.1f} {g1:.1f},{lane:.1f} "
                f"L{g2:.1f},{lane:.1f} C{g2 + COL_GAP * 0.15:.1f},{lane:.1f} {x2 - COL_GAP * 0.35:.1f},{y2:.1f} "
                f"{x2:.1f},{y2:.1f}"), True


def _wires(picture: Picture, boxes: list[Box], router: _Router) -> tuple[Wire, ...]:
    by_id = {b.unit.id: b for b in boxes}
    outgoing: dict[str, list[Link]] = {}
    incoming: dict[str, list[Link]] = {}
    for link in picture.links:
        outgoing.setdefault(link.source, []).append(link)
        incoming.setdefault(link.target, []).append(link)
    out_port, in_port = {}, {}
    for unit_id, links in outgoing.items():
        links = sorted(links, key=lambda l: (by_id[l.target].cy, by_id[l.target].x, l.kind))
        for link, y in zip(links, _ports(len(links), by_id[unit_id])):
            out_port[id(link)] = y
    for unit_id, links in incoming.items():
        links = sorted(links, key=lambda l: (by_id[l.source].cy, by_id[l.source].x, l.kind))
        for link, y in zip(links, _ports(len(links), by_id[unit_id])):
            in_port[id(link)] = y
    strongest: dict[str, float] = {}
    for link in picture.links:
        strongest[link.kind] = max(strongest.get(link.kind, 0.0), link.strength)
    order = {"structural": 0, "weight": 1, "declared": 2}
    wires = []
    # shortest spans first: they take the lanes nearest the boxes, longer detours go around them
    for link in sorted(picture.links, key=lambda l: (by_id[l.target].unit.column - by_id[l.source].unit.column,
                                                     order[l.kind], l.source, l.target)):
        src, dst = by_id[link.source], by_id[link.target]
        path, routed = router.path(src.unit.column, dst.unit.column, src.x + src.w, out_port[id(link)], dst.x, in_port[id(link)])
        wires.append(Wire(link, path, stroke_width(link, strongest), routed))
    return tuple(sorted(wires, key=lambda w: (order[w.link.kind], w.link.strength, w.link.source, w.link.target)))
