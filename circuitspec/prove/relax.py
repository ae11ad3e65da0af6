"""Sound linear relaxations: the pieces the entailment encoding is built from.

Each method adds constraints to ``solver`` that every true value satisfies, given the bounds it is
handed: a rounded linear form (with its rounding error), a product with an unknown factor in a
range (its exact cone, or the convex hull of the bow tie), a ReLU (its triangle, the phase left to
the search). Nothing here reads a model; ``tests/test_prove_relaxations.py`` checks each piece
against exact arithmetic.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

import numpy as np
import z3

from .grid import down, near, real, up
from .search import Relu


@dataclass
class Bounded:
    """A value in the encoding: a Z3 term (None for a constant), bounds ``lo``/``hi`` that hold for the
    true value wherever the premises and assumptions do, and ``err``: how far the term may be from
    the true value because of the weights' rounding to the grid (|true - term| <= err). Carrying the
    error as a number, widening the inequalities that use the term, keeps it out of the LP; as one
    unknown per linear form it made up 548 of the 752 variables of a two-block encoding."""

    term: z3.ArithRef | None
    lo: float
    hi: float
    err: float = 0.0

    @property
    def constant(self) -> bool:
        return self.term is None


def constant(value: float) -> Bounded:
    return Bounded(None, value, value)


def times(lo, hi, c_lo: float, c_hi: float):
    """Bounds of ``c * x`` for c in [c_lo, c_hi] and x in [lo, hi]."""
    corners = [lo * c_lo, lo * c_hi, hi * c_lo, hi * c_hi]
    return min(corners), max(corners)


class Relaxation:
    """Builds relaxed terms into ``solver``; the ReLUs whose phase is open collect in ``relus``."""

    def __init__(self, solver: z3.Solver) -> None:
        self.solver = solver
        self.relus: list[Relu] = []  # ReLUs whose sign the bounds leave open

    def as_term(self, x: Bounded) -> z3.ArithRef:
        """An unknown that can take x's true value: x's term when it has no rounding error; else one
        within the error of it (a constant: between the grid points around it)."""
        if x.term is None:
            var = z3.FreshReal("constant")
            self.solver.add(var >= real(down(x.lo)), var <= real(up(x.hi)))
            return var
        if x.err <= 0:
            return x.term
        var = z3.FreshReal("true_value")
        self.solver.add(var >= x.term - real(up(x.err)), var <= x.term + real(up(x.err)))
        return var

    def linear(self, weights: np.ndarray, inputs: list[Bounded], bias: float = 0.0) -> Bounded:
        """Σ weights[i]·inputs[i] + bias. Constant inputs fold into the bias; the others enter with their
        weights on the grid. The result's error is Σ (|w − w'|·max|x| + |w'|·err(x)) plus the bias's
        rounding. Bounds use the true weights."""
        offset, error, spread = float(bias), 0.0, 0.0
        lo = hi = float(bias)
        parts = []
        for i in np.flatnonzero(weights):
            w, x = float(weights[i]), inputs[i]
            lo += min(w * x.lo, w * x.hi)
            hi += max(w * x.lo, w * x.hi)
            if x.constant:
                offset += w * x.lo
                spread += abs(w * x.lo)
                continue
            q = near(w)
            if q:
                parts.append(real(q) * x.term)
            error += abs(w - float(q)) * max(abs(x.lo), abs(x.hi)) + abs(float(q)) * x.err
        if not parts and not error:
            return constant(offset)
        q_offset = near(offset)
        error += abs(offset - float(q_offset)) + 1e-12 * (spread + abs(offset))
        return Bounded(z3.Sum(parts + [real(q_offset)]), lo, hi, error)

    def between(self, lo: float, hi: float, x: Bounded, prefix: str) -> Bounded:
        """A fresh unknown p with p = c·x for some c in [lo, hi] (0 <= lo <= hi), x's true value.

        Where the bounds fix the sign of x that is two linear inequalities. Where they do not, the set
        of (x, p) is a bow tie; a case split on the sign of x for each of hundreds of products is what
        made Z3 time out. Instead p lies in the bow tie's convex hull over x's bounds, the quadrilateral
        with corners (x_lo, lo·x_lo), (x_lo, hi·x_lo), (x_hi, lo·x_hi), (x_hi, hi·x_hi). That admits
        more, so a proof stays a proof; a counter-model is confirmed with exact scales later. Every
        inequality is widened by x's rounding error, so p is exact: its own error is 0."""
        product = z3.FreshReal(prefix)
        p_lo, p_hi = times(x.lo, x.hi, lo, hi)
        if x.constant:
            self.solver.add(product >= real(down(p_lo)), product <= real(up(p_hi)))
        elif x.lo >= 0:
            self.solver.add(product >= real(down(lo)) * x.term - real(up(lo * x.err)),
                            product <= real(up(hi)) * x.term + real(up(hi * x.err)))
        elif x.hi <= 0:
            self.solver.add(product >= real(up(hi)) * x.term - real(up(hi * x.err)),
                            product <= real(down(lo)) * x.term + real(up(lo * x.err)))
        elif not np.isfinite(x.hi - x.lo):  # no hull without bounds: Z3 splits on the sign itself
            t = self.as_term(x)
            self.solver.add(z3.If(t >= 0, z3.And(product >= real(down(lo)) * t, product <= real(up(hi)) * t),
                                  z3.And(product >= real(up(hi)) * t, product <= real(down(lo)) * t)))
        else:  # the chords: above, (x_lo, lo·x_lo) to (x_hi, hi·x_hi); below, (x_lo, hi·x_lo) to (x_hi, lo·x_hi)
            width = x.hi - x.lo
            self.solver.add(product <= self._line_above((hi * x.hi - lo * x.lo) / width, (lo - hi) * x.lo * x.hi / width, x),
                            product >= self._line_below((lo * x.hi - hi * x.lo) / width, (hi - lo) * x.lo * x.hi / width, x))
        return Bounded(product, p_lo, p_hi)

    @staticmethod
    def _line_above(slope: float, intercept: float, x: Bounded) -> z3.ArithRef:
        """A line in x's term, with grid coefficients, that lies above slope·t + intercept at x's true
        value t: slope·t = q·term + (slope − q)·t + q·(t − term), and |t| <= max(|lo|, |hi|)."""
        q = near(slope)
        return real(q) * x.term + real(up(intercept + abs(slope - float(q)) * max(abs(x.lo), abs(x.hi)) + abs(float(q)) * x.err))

    @staticmethod
    def _line_below(slope: float, intercept: float, x: Bounded) -> z3.ArithRef:
        q = near(slope)
        return real(q) * x.term + real(down(intercept - abs(slope - float(q)) * max(abs(x.lo), abs(x.hi)) - abs(float(q)) * x.err))

    def relu(self, pre: Bounded) -> Bounded:
        """max(pre, 0): a constant or the identity where the bounds fix the sign; otherwise an unknown
        in the triangle (post >= 0, post >= pre, post below the chord from (lo, 0) to (hi, hi)) whose
        phase the branch and bound decides. pre's rounding error widens the triangle."""
        if pre.hi <= 0:
            return constant(0.0)
        if pre.lo >= 0:
            return pre
        post = z3.FreshReal("relu")
        slack = up(pre.err) if pre.err > 0 else Fraction(0)
        triangle = [post >= 0, post >= pre.term - real(slack)]
        if np.isfinite(pre.lo) and np.isfinite(pre.hi):
            slope = pre.hi / (pre.hi - pre.lo)
            triangle.append(post <= self._line_above(slope, -slope * pre.lo, pre))
        self.solver.add(triangle)
        self.relus.append(Relu(pre.term, post, slack, triangle))
        return Bounded(post, 0.0, pre.hi)
