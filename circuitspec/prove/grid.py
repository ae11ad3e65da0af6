"""Numbers on their way into Z3: dyadic rationals on a coarse grid, rounded in the safe direction.

Z3 reads a Python float through its decimal text (0.1 -> 1/10), so every weight and bound arrived as
a rational with a 17-digit denominator, and the exact simplex spent its time multiplying those: on
the two-block encoding of dict_or_set.circ about 260 pivots took 30 s. With every number on a grid of
2^-16 the same check took 8.7 s, 2^-12 5.9 s, 2^-8 4.2 s (measured before the other speed-ups; the
float-guided search now keeps Z3 away from most of those LPs). Rounding stays sound: a bound moves in
the direction that admits more (a lower bound down, an upper bound up), and a rounded weight's error
is carried as a number that widens every inequality using the term (see ``relax.Relaxation.linear``).
"""

from __future__ import annotations

import functools
import math
from fractions import Fraction

import z3

GRID_BITS = 8
_SCALE = 1 << GRID_BITS
#: Slack for the float64 arithmetic that computes bounds and coefficients before they are rounded.
FLOAT_SLACK = 1e-9


def down(x: float) -> Fraction:
    """The largest grid point at or below ``x`` (less a float-rounding slack)."""
    return Fraction(math.floor((x - FLOAT_SLACK * (1 + abs(x))) * _SCALE), _SCALE)


def up(x: float) -> Fraction:
    """The smallest grid point at or above ``x`` (plus a float-rounding slack)."""
    return Fraction(math.ceil((x + FLOAT_SLACK * (1 + abs(x))) * _SCALE), _SCALE)


def near(x: float) -> Fraction:
    """The nearest grid point."""
    return Fraction(round(x * _SCALE), _SCALE)


@functools.lru_cache(maxsize=1 << 16)
def real(q: Fraction | int) -> z3.RatNumRef:
    """A Z3 numeral; cached, as the same grid points recur thousands of times in one encoding."""
    return z3.RealVal(f"{q.numerator}/{q.denominator}" if isinstance(q, Fraction) else str(q))


def number(value: z3.ExprRef) -> Fraction | None:
    """A Z3 model value as an exact fraction (None for an algebraic number)."""
    if z3.is_rational_value(value):
        return value.as_fraction()
    return None
