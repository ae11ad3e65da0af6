"""How many times the drawn wires cross each other: the measure the box order in each column minimises.

Each wire's SVG path (``M``, ``C`` and ``L`` pieces, as :mod:`.layout` writes them) is flattened to a
polyline, and every pair of wires is tested segment against segment. Two wires of the same box pair
that run side by side do not count; touching at a shared end does not count either.
"""

from __future__ import annotations

import re

import numpy as np

_TOKEN = re.compile(r"([MCL])|(-?\d+(?:\.\d+)?)")
STEPS = 12  # segments per cubic piece


def polyline(path: str) -> np.ndarray:
    """The path's points, cubic pieces sampled at ``STEPS`` segments each."""
    points: list[tuple[float, float]] = []
    command, numbers = "", []
    tokens = [(c, float(n)) if n else (c, None) for c, n in _TOKEN.findall(path)]
    pieces: list[tuple[str, list[float]]] = []
    for c, n in tokens:
        if c:
            if command:
                pieces.append((command, numbers))
            command, numbers = c, []
        else:
            numbers.append(n)
    pieces.append((command, numbers))
    t = np.linspace(0, 1, STEPS + 1)[1:, None]
    for command, nums in pieces:
        if command == "M":
            points.append((nums[0], nums[1]))
        elif command == "L":
            points.append((nums[0], nums[1]))
        elif command == "C":
            p0 = np.array(points[-1])
            p1, p2, p3 = np.array(nums[0:2]), np.array(nums[2:4]), np.array(nums[4:6])
            curve = (1 - t) ** 3 * p0 + 3 * (1 - t) ** 2 * t * p1 + 3 * (1 - t) * t ** 2 * p2 + t ** 3 * p3
            points.extend(map(tuple, curve))
    return np.array(points)


def _segments_cross(a: np.ndarray, b: np.ndarray) -> int:
    """Proper intersections between the segments of polylines a and b."""
    p, r = a[:-1, None, :], (a[1:] - a[:-1])[:, None, :]
    q, s = b[None, :-1, :], (b[1:] - b[:-1])[None, :, :]
    denom = r[..., 0] * s[..., 1] - r[..., 1] * s[..., 0]
    qp = q - p
    with np.errstate(divide="ignore", invalid="ignore"):
        t = (qp[..., 0] * s[..., 1] - qp[..., 1] * s[..., 0]) / denom
        u = (qp[..., 0] * r[..., 1] - qp[..., 1] * r[..., 0]) / denom
    eps = 1e-6
    hit = (np.abs(denom) > 1e-12) & (t > eps) & (t < 1 - eps) & (u > eps) & (u < 1 - eps)
    return int(hit.sum())


def count_crossings(wires) -> int:
    """Crossings between the wires (objects with ``path`` and ``link``) of one layout."""
    lines = [(w, polyline(w.path)) for w in wires]
    boxes = [(line.min(axis=0), line.max(axis=0)) for _, line in lines]
    total = 0
    for i in range(len(lines)):
        wi, li = lines[i]
        lo_i, hi_i = boxes[i]
        for j in range(i + 1, len(lines)):
            wj, lj = lines[j]
            lo_j, hi_j = boxes[j]
            if (lo_i > hi_j).any() or (lo_j > hi_i).any():
                continue
            if (wi.link.source, wi.link.target) == (wj.link.source, wj.link.target):
                continue
            total += _segments_cross(li, lj)
    return total
