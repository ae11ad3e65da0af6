"""Groups of boxes a reader can fold into one box, and the picture with some of them folded.

A *group* is the boxes of one column that the spec names alike: the same outermost ``group`` (or
``node``) name and the same head, when that is two boxes or more (``block0_head0``'s query and key
channels drawn one box each, ``reader`` and the rest of ``copied_type``). Collapsing it replaces its
boxes by one box (the group's name, its node count, its description and a strip of its channels) and
merges their connections into connections to and from that box, summed.

The order of the boxes (``layout.order_units``) keeps each group's boxes together, so a collapsed group
takes its first box's place and the rest of its column moves up.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from .picture import Link, Picture, Unit, UnitStats


@dataclass(frozen=True)
class Group:
    id: str  # element id, e.g. "g3"
    name: str  # the spec name the boxes share
    column: int
    head: int | None
    units: tuple[str, ...]  # unit ids, in picture order


def group_name(unit: Unit) -> str | None:
    """The name a box is grouped by: the outermost of its spec names (``copied_type`` for ``reader``)."""
    return unit.names[-1] if unit.names else None


def group_key(unit: Unit) -> tuple | None:
    name = group_name(unit)
    return None if name is None else (unit.column, unit.members[0].head, name)


def find_groups(picture: Picture) -> tuple[Group, ...]:
    """The picture's foldable groups (two boxes or more), in the order of their first box."""
    found: dict[tuple, list[Unit]] = {}
    for u in picture.units:
        key = group_key(u)
        if key is not None:
            found.setdefault(key, []).append(u)
    out = []
    for key, units in found.items():
        if len(units) >= 2:
            out.append(Group(f"g{len(out)}", key[2], key[0], key[1], tuple(u.id for u in units)))
    return tuple(out)


def _member_contrast(unit: Unit) -> tuple:
    """(member, delta) for each channel of a box, as a collapsed box's strip draws them."""
    if unit.stats is None:
        return ()
    if unit.collapsed:
        return unit.stats.members
    values = unit.stats.per_value
    delta = values[-1].mean - values[0].mean if len(values) >= 2 else values[0].mean
    return ((unit.members[0], delta),)


def _label(units: list[Unit]) -> str:
    """The hooks of a group with their channel ranges, e.g. ``blocks.0.attn.hook_q[head=0, 3, 6:8] +
    blocks.0.attn.hook_k[head=0, 2]``."""
    from .units import compact

    by_hook: dict[tuple, list[int]] = {}
    for u in units:
        for m in u.members:
            by_hook.setdefault((m.hook, m.head), []).append(m.index)
    parts = []
    for (hook, head), indices in by_hook.items():
        prefix = f"head={head}, " if head is not None else ""
        parts.append(f"{hook}[{prefix}{compact(sorted(set(indices)), max(indices) + 2)}]")
    return " + ".join(parts)


def group_unit(group: Group, picture: Picture) -> Unit:
    """The one box a collapsed group is drawn as."""
    units = [picture.unit(i) for i in group.units]
    members = tuple(m for u in units for m in u.members)
    own = next((u.description for u in units if u.names == (group.name,) and u.description), None)
    description = own or next((u.description for u in units if u.description), None)
    contrasts = [_member_contrast(u) for u in units]
    stats = None
    if all(contrasts) and all(u.stats is not None for u in units):
        stats = UnitStats(per_value=(), members=tuple(mc for c in contrasts for mc in c), measure="collapsed group")
    return Unit(id=group.id, kind=units[0].kind, column=group.column, members=members, label=_label(units),
                names=(group.name,), description=description,
                origin=f"the group {group.name}: {len(units)} boxes folded into one (click to unfold)", stats=stats)


def merge_links(links: list[Link] | tuple[Link, ...], rep: dict[str, str]) -> tuple[Link, ...]:
    """Links with their ends replaced by ``rep`` (unit id -> drawn box id), those that then join the
    same two boxes with the same kind merged into one: strengths, signed sums and counts added."""
    merged: dict[tuple[str, str, str], list[Link]] = {}
    for link in links:
        key = (rep.get(link.source, link.source), rep.get(link.target, link.target), link.kind)
        merged.setdefault(key, []).append(link)
    out = []
    for (src, dst, kind), parts in merged.items():
        if len(parts) == 1 and (src, dst) == (parts[0].source, parts[0].target):
            out.append(parts[0])
            continue
        strength, signed, count = 0.0, 0.0, 0
        for p in parts:
            strength += p.strength
            signed += p.signed
            count += p.count
        if len(parts) == 1:
            note = parts[0].note
        else:
            strongest = sorted(parts, key=lambda p: -p.strength)[:3]
            note = (f"{len(parts)} connections of a collapsed group, merged (sum of |w| {strength:.3g}); the strongest:\n"
                    + "\n".join(p.note.split("\n", 1)[0] for p in strongest))
        out.append(Link(src, dst, kind, strength, signed, count, note))
    return tuple(out)


def collapse(picture: Picture, collapsed: frozenset[str] | set[str], groups: tuple[Group, ...] | None = None) -> Picture:
    """The picture with the groups whose ids are in ``collapsed`` folded into one box each."""
    groups = find_groups(picture) if groups is None else groups
    chosen = [g for g in groups if g.id in collapsed]
    if not chosen:
        return picture
    rep = {uid: g.id for g in chosen for uid in g.units}
    first = {g.units[0]: group_unit(g, picture) for g in chosen}
    units = [first.get(u.id, u) for u in picture.units if u.id in first or u.id not in rep]
    return replace(picture, units=tuple(units), links=merge_links(picture.links, rep))
