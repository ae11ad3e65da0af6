"""Estimated text widths, for cutting and wrapping labels without a browser to measure them.

The estimates are per character and on the wide side for the fonts the SVG asks for, so text may end
a little early but does not spill out of its box.
"""

from __future__ import annotations

import textwrap


def char_width(size: float, mono: bool = False, bold: bool = False) -> float:
    return size * (0.61 if mono else 0.6 if bold else 0.5)


def fit(text: str, width: float, size: float, mono: bool = False, bold: bool = False) -> str:
    """``text`` cut with an ellipsis so that it fits ``width`` pixels."""
    limit = max(1, int(width / char_width(size, mono, bold)))
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def wrap(text: str, width: float, size: float, max_lines: int = 2) -> tuple[str, ...]:
    """``text`` broken at spaces into at most ``max_lines`` lines of ``width`` pixels, the last one cut."""
    limit = max(1, int(width / char_width(size)))
    lines = textwrap.wrap(text, limit, break_long_words=True, break_on_hyphens=False) or [""]
    if len(lines) > max_lines:
        rest = " ".join(lines[max_lines - 1:])
        lines = lines[: max_lines - 1] + [fit(rest, width, size)]
    return tuple(lines)
