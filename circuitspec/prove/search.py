"""Branch and bound over ReLU phases, with Z3 as the exact linear solver at each node.

Each undecided ReLU is encoded by its triangle relaxation (``post >= 0``, ``post >= pre``, ``post``
below the chord over the bounds of ``pre``), which makes the problem a linear program. A model of
that LP in which every ReLU happens to hold exactly is a genuine model; otherwise the most violated
ReLU is split into its two phases (``post == pre`` or ``post == 0``), the phase the model leans to
first. Every branch refuted means unsat. This is the search the neural-network verifiers (Planet,
Reluplex and their successors) use; handing Z3 the ReLUs as ``If`` terms instead let it case-split
inside its own search, which on the shipped specs got through a few dozen decisions in 30 s.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from fractions import Fraction

import z3

from .grid import number, real


@dataclass
class Relu:
    """post = max(t, 0) for a true input t within ``slack`` of the term ``pre`` (its rounding error)."""

    pre: z3.ArithRef
    post: z3.ArithRef
    slack: Fraction = Fraction(0)
    triangle: list[z3.BoolRef] = field(default_factory=list)  # the constraints that relax it


@dataclass
class SearchResult:
    answer: z3.CheckSatResult
    model: z3.ModelRef | None = None
    checks: int = 0  # Z3 checks (each a linear program)
    reason: str = ""  # why it is unknown
    z3_seconds: float = 0.0  # time inside Z3's check


def branch_and_bound(solver: z3.Solver, relus: list[Relu], deadline: float) -> SearchResult:
    """sat with a model where every ReLU holds, unsat when every branch is refuted, or unknown when
    ``deadline`` (a ``time.monotonic()`` value) passes first. Leaves ``solver`` as it found it.

    A dive comes first: fix every violated ReLU to the phase the model leans to, all at once, until
    a model holds or the phases contradict; counter-models are usually found this way in a few linear
    programs. Only if the dive fails does the complete search, one ReLU per branch, start."""
    base = solver.num_scopes()
    checks, seconds = 0, 0.0

    def check() -> z3.CheckSatResult:
        nonlocal checks, seconds
        left_ms = int(1000 * (deadline - time.monotonic()))
        if left_ms <= 0:
            return z3.unknown
        solver.set("timeout", left_ms)
        checks += 1
        started = time.monotonic()
        try:
            return solver.check()
        finally:
            seconds += time.monotonic() - started

    def result(answer, model=None, reason="") -> SearchResult:
        return SearchResult(answer, model, checks, reason, seconds)

    def unknown() -> SearchResult:
        return result(z3.unknown, reason=solver.reason_unknown() if checks else "timeout")

    def step() -> SearchResult | list | None:
        """Check: a result to return, None when refuted, or the ReLUs the model breaks."""
        answer = check()
        if answer == z3.unknown:
            return unknown()
        if answer == z3.unsat:
            return None
        model = solver.model()
        broken = violated(model, relus)
        if broken is None:
            return result(z3.unknown, reason="a non-rational model value")
        return broken or result(z3.sat, model)

    try:
        solver.push()
        while True:  # the dive
            outcome = step()
            if isinstance(outcome, SearchResult):
                return outcome
            if outcome is None:
                break
            solver.add([phase(relu, leans_on) for _, relu, leans_on in outcome])
        solver.pop()
        stack: list[tuple[z3.BoolRef | None, int]] = [(None, 0)]
        while stack:
            constraint, depth = stack.pop()
            while solver.num_scopes() > base + depth:
                solver.pop()
            solver.push()
            if constraint is not None:
                solver.add(constraint)
            outcome = step()
            if isinstance(outcome, SearchResult):
                return outcome
            if outcome is None:
                continue
            _, worst, leans_on = max(outcome, key=lambda v: v[0])
            stack.append((phase(worst, not leans_on), depth + 1))
            stack.append((phase(worst, leans_on), depth + 1))
        return result(z3.unsat)
    finally:
        while solver.num_scopes() > base:
            solver.pop()


def phase(relu: Relu, on: bool) -> z3.BoolRef:
    """on: post is the true input (within the slack of the term, which the triangle bounds below);
    off: post is 0."""
    if not on:
        return relu.post == 0
    return relu.post == relu.pre if not relu.slack else relu.post <= relu.pre + real(relu.slack)


def violated(model: z3.ModelRef, relus: list[Relu]) -> list[tuple[Fraction, Relu, bool]] | None:
    """(gap, ReLU, whether its input is positive) for each ReLU the model breaks; None if a value is
    not rational."""
    out = []
    for relu in relus:
        pre = number(model.eval(relu.pre, model_completion=True))
        post = number(model.eval(relu.post, model_completion=True))
        if pre is None or post is None:
            return None
        gap = post - max(pre + relu.slack, 0)  # > 0: no true input within the slack gives this post
        if gap > 0:
            out.append((gap, relu, pre > 0))
    return out
