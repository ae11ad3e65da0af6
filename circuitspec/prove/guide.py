"""A floating-point copy of the encoding's linear program, to find where Z3 should look.

Z3 decides every linear program exactly, in rationals, and on the two-block encodings of the shipped
specs single LPs took 0.5-9 s: a branch and bound that needs dozens of them did not fit in 5 s. HiGHS
(through scipy) solves the same LP in floating point in milliseconds. So the search over ReLU phases
runs here, and Z3 is asked only the final question: the leaf this search ends on (a counter-model with
every phase fixed), or each refuted leaf of its tree (all unsat: a proof). Floating point only guides;
every answer reported is Z3's.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from fractions import Fraction

import numpy as np
import scipy.sparse as sparse
import z3
from scipy.optimize import linprog
from z3 import z3core

from .grid import real
from .search import Relu, SearchResult, branch_and_bound, phase, violated

TOLERANCE = 1e-6  # a ReLU counts as holding in a float solution within this
MAX_NODES = 2000  # LPs the float search may solve


class NotLinear(Exception):
    """The constraints have a term the float copy does not handle (an ``If``, a product of unknowns)."""


PIN_SCALE = 1 << 31  # a float solution's values enter Z3 as multiples of 2^-31
PIN_MARGIN = 1e-6  # room the pinned solution leaves in each inequality, far above the pinning error


@dataclass
class Plan:
    """The float search's outcome: ``phases`` of a leaf it believes satisfiable, or ``refuted``, the
    phase sets of the leaves it found infeasible, which together cover every phase assignment."""

    phases: dict[int, bool] | None = None
    refuted: list[dict[int, bool]] = field(default_factory=list)
    complete: bool = False  # the search finished (else it ran out of nodes or time)
    nodes: int = 0


def _raw(name: str):
    """z3core's ctypes function without its per-call error check: reading terms cannot fail, and the
    checks were a third of the time. Falls back to the checked wrapper if z3core changes."""
    wrapper = getattr(z3core, name)
    defaults = getattr(wrapper, "__defaults__", None) or ()
    return getattr(defaults[0], "f", wrapper) if defaults else wrapper


_kind, _decl, _decl_kind = _raw("Z3_get_ast_kind"), _raw("Z3_get_app_decl"), _raw("Z3_get_decl_kind")
_num_args, _arg, _ast_id = _raw("Z3_get_app_num_args"), _raw("Z3_get_app_arg"), _raw("Z3_get_ast_id")
_double = _raw("Z3_get_numeral_double")


class _Linearizer:
    """Z3 linear terms -> ({variable index: coefficient}, constant), memoized on the shared DAG. It
    walks the terms through Z3's C interface: through the Python wrappers the walk took 6.5 s on the
    coarse closing_quote encoding."""

    def __init__(self) -> None:
        self.index: dict[str, int] = {}
        self.variables: dict[int, z3.ArithRef] = {}  # column -> the Z3 unknown
        self._memo: dict[int, tuple[dict[int, float], float]] = {}
        self._ctx = z3.main_ctx()
        self._ref = self._ctx.ref()

    def term(self, e: z3.ArithRef) -> tuple[dict[int, float], float]:
        return self._walk(e.as_ast())

    def _walk(self, a) -> tuple[dict[int, float], float]:
        ctx = self._ref
        key = _ast_id(ctx, a)
        if key in self._memo:
            return self._memo[key]
        kind = _kind(ctx, a)
        if kind == z3.Z3_NUMERAL_AST:
            out = ({}, _double(ctx, a))
        elif kind != z3.Z3_APP_AST:
            raise NotLinear(f"a term of kind {kind}")
        else:
            op, n = _decl_kind(ctx, _decl(ctx, a)), _num_args(ctx, a)
            args = [_arg(ctx, a, i) for i in range(n)]
            if op == z3.Z3_OP_UNINTERPRETED and n == 0:
                variable = z3.ArithRef(a, self._ctx)
                column = self.index.setdefault(variable.decl().name(), len(self.index))
                self.variables[column] = variable
                out = ({column: 1.0}, 0.0)
            elif op == z3.Z3_OP_ADD:
                out = self._combine([(1.0, self._walk(c)) for c in args])
            elif op == z3.Z3_OP_SUB:
                out = self._combine([(1.0, self._walk(args[0]))] + [(-1.0, self._walk(c)) for c in args[1:]])
            elif op == z3.Z3_OP_UMINUS:
                out = self._combine([(-1.0, self._walk(args[0]))])
            elif op == z3.Z3_OP_MUL:
                factor, variable_part = 1.0, None
                for c in args:
                    coeffs, const = self._walk(c)
                    if coeffs:
                        if variable_part is not None:
                            raise NotLinear("a product of unknowns")
                        variable_part = (coeffs, const)
                    else:
                        factor *= const
                out = ({}, factor) if variable_part is None else self._combine([(factor, variable_part)])
            else:
                raise NotLinear(f"an operator of kind {op}")
        self._memo[key] = out
        return out

    @staticmethod
    def _combine(parts) -> tuple[dict[int, float], float]:
        coeffs: dict[int, float] = {}
        const = 0.0
        for factor, (c, k) in parts:
            for i, v in c.items():
                coeffs[i] = coeffs.get(i, 0.0) + factor * v
            const += factor * k
        return coeffs, const

    def difference(self, left: z3.ArithRef, right: z3.ArithRef) -> tuple[dict[int, float], float]:
        return self._combine([(1.0, self.term(left)), (-1.0, self.term(right))])


class FloatProgram:
    """The solver's current assertions as ``A_ub x <= b_ub``, ``A_eq x = b_eq`` (strict inequalities
    become non-strict: it only guides), with the ReLUs' inputs and outputs as rows and columns."""

    def __init__(self, assertions, relus: list[Relu]) -> None:
        self.lin = _Linearizer()
        self.ub: list[tuple[dict[int, float], float]] = []  # coeffs · x <= bound
        self.eq: list[tuple[dict[int, float], float]] = []
        self.roomy: list[bool] = []  # per ub row: whether a pinned solution should leave room in it
        triangles = {t.get_id() for r in relus for t in r.triangle}
        for a in assertions:
            before = len(self.ub)
            self._add(a, negated=False)
            self.roomy.extend([a.get_id() not in triangles] * (len(self.ub) - before))
        self.pre = [self.lin.term(r.pre) for r in relus]
        self.post = [next(iter(self.lin.term(r.post)[0])) for r in relus]
        self.slack = [float(r.slack) for r in relus]
        self.n = len(self.lin.index)
        self.A_ub, self.b_ub = self._matrix(self.ub)
        self.room = np.array([(1 + sum(abs(v) for v in coeffs.values())) * roomy for (coeffs, _), roomy in zip(self.ub, self.roomy)])
        self.A_eq, self.b_eq = self._matrix(self.eq)
        self.objective = np.zeros(self.n)
        self.objective[self.post] = 1.0  # pushes each ReLU's output down onto max(pre, 0)

    def _add(self, a: z3.BoolRef, negated: bool) -> None:
        if z3.is_and(a) and not negated or z3.is_or(a) and negated:
            for c in a.children():
                self._add(c, negated)
            return
        if z3.is_not(a):
            self._add(a.arg(0), not negated)
            return
        if z3.is_true(a) and not negated:
            return
        if z3.is_eq(a) and not negated:
            coeffs, const = self.lin.difference(a.arg(0), a.arg(1))
            self.eq.append((coeffs, -const))
            return
        for test, flipped in ((z3.is_le, z3.is_gt), (z3.is_lt, z3.is_ge)):
            if (test(a) and not negated) or (flipped(a) and negated):  # left <= right
                coeffs, const = self.lin.difference(a.arg(0), a.arg(1))
                self.ub.append((coeffs, -const))
                return
        for test, flipped in ((z3.is_ge, z3.is_lt), (z3.is_gt, z3.is_le)):
            if (test(a) and not negated) or (flipped(a) and negated):  # left >= right
                coeffs, const = self.lin.difference(a.arg(1), a.arg(0))
                self.ub.append((coeffs, -const))
                return
        raise NotLinear(str(a)[:80])

    def _matrix(self, rows):
        data, cols, indptr = [], [], [0]
        for coeffs, _ in rows:
            cols.extend(coeffs.keys())
            data.extend(coeffs.values())
            indptr.append(len(cols))
        shape = (len(rows), len(self.lin.index))
        return sparse.csr_matrix((data, cols, indptr), shape=shape), np.array([b for _, b in rows], dtype=float)

    def _phase_rows(self, phases: dict[int, bool], margin: float):
        """on: post - pre <= slack; off: post <= 0 (the triangle already bounds the other side). With
        a margin, the input also keeps to its phase's side with room: pre >= margin - slack when on,
        pre <= slack - margin when off, so that pinning cannot flip it."""
        rows = []
        for i, on in phases.items():
            coeffs, const = self.pre[i]
            room = margin * (1 + sum(abs(v) for v in coeffs.values()))
            if on:
                row = {k: -v for k, v in coeffs.items()}
                row[self.post[i]] = row.get(self.post[i], 0.0) + 1.0
                rows.append((row, const + self.slack[i]))
                if margin:
                    rows.append(({k: -v for k, v in coeffs.items()}, const + self.slack[i] - room))
            else:
                rows.append(({self.post[i]: 1.0}, 0.0))
                if margin:
                    rows.append((dict(coeffs), self.slack[i] - const - room))
        return rows

    def solve(self, phases: dict[int, bool], margin: float = 0.0) -> np.ndarray | None:
        """A solution with these phases, or None when the LP is infeasible (or HiGHS fails). With a
        ``margin``, every inequality of the encoding but the ReLUs' triangles holds with room
        margin·(1 + |row|₁) to spare (the triangles' sides become equalities under a phase)."""
        A, b = self.A_ub, self.b_ub - margin * self.room
        if phases:
            extra, extra_b = self._matrix(self._phase_rows(phases, margin))
            extra.resize((extra.shape[0], self.n))
            A, b = sparse.vstack([A, extra], format="csr"), np.concatenate([b, extra_b])
        A.resize((A.shape[0], self.n))
        A_eq = self.A_eq.copy()
        A_eq.resize((A_eq.shape[0], self.n))
        found = linprog(self.objective, A_ub=A if A.shape[0] else None, b_ub=b if A.shape[0] else None,
                        A_eq=A_eq if A_eq.shape[0] else None, b_eq=self.b_eq if A_eq.shape[0] else None,
                        bounds=(None, None), method="highs")
        return found.x if found.status == 0 else None

    def violated(self, x: np.ndarray) -> list[tuple[float, int, bool]]:
        out = []
        for i, ((coeffs, const), post) in enumerate(zip(self.pre, self.post)):
            pre = const + sum(v * x[k] for k, v in coeffs.items())
            gap = x[post] - max(pre + self.slack[i], 0.0)
            if gap > TOLERANCE:
                out.append((gap, i, pre > 0))
        return out

    def phases_of(self, x: np.ndarray) -> dict[int, bool]:
        """Every ReLU's phase in a solution where they all hold."""
        return {i: bool(x[post] > TOLERANCE) for i, post in enumerate(self.post)}

    def pins(self, x: np.ndarray) -> dict[z3.ArithRef, Fraction]:
        """Every unknown but the ReLU outputs (which the phases then determine) at x, on a fine grid."""
        outputs = set(self.post)
        return {var: Fraction(round(float(x[i]) * PIN_SCALE), PIN_SCALE)
                for i, var in self.lin.variables.items() if i not in outputs}

    def search(self, deadline: float) -> Plan:
        """A dive (fix every violated ReLU to its lean at once), then depth-first branch and bound."""
        plan = Plan()
        phases: dict[int, bool] = {}
        while time.monotonic() < deadline and plan.nodes < MAX_NODES:
            x = self.solve(phases)
            plan.nodes += 1
            if x is None:
                break
            violated = self.violated(x)
            if not violated:
                plan.phases = self.phases_of(x)
                return plan
            phases.update({i: leans_on for _, i, leans_on in violated})
        stack: list[dict[int, bool]] = [{}]
        while stack:
            if time.monotonic() >= deadline or plan.nodes >= MAX_NODES:
                return plan
            phases = stack.pop()
            x = self.solve(phases)
            plan.nodes += 1
            if x is None:
                plan.refuted.append(phases)
                continue
            violated = self.violated(x)
            if not violated:
                plan.phases = self.phases_of(x)
                return plan
            _, i, leans_on = max(violated)
            stack.append({**phases, i: not leans_on})
            stack.append({**phases, i: leans_on})
        plan.complete = True
        return plan


def guided_search(solver: z3.Solver, relus: list[Relu], deadline: float) -> SearchResult:
    """Z3's answer for the solver's constraints with every ReLU exact, found along the float search's
    plan where it can be (a leaf to confirm, or refuted leaves to refute exactly), else by the exact
    branch and bound in the time left."""
    checks, seconds = 0, 0.0
    try:
        program = FloatProgram(solver.assertions(), relus) if relus else None
    except NotLinear:
        program = None
    if program is not None:
        plan = program.search(deadline)
        if plan.phases is not None:
            # First with every unknown but the ReLU outputs pinned near a float solution that leaves
            # room in every inequality: Z3 then only evaluates. Then with the phases alone.
            roomy = program.solve(plan.phases, margin=PIN_MARGIN)
            if roomy is not None:
                answer, model, spent = _check_with(solver, relus, plan.phases, deadline, program.pins(roomy))
                checks, seconds = checks + 1, seconds + spent
                if answer == z3.sat and model is not None:
                    return SearchResult(z3.sat, model, checks, z3_seconds=seconds)
            answer, model, spent = _check_with(solver, relus, plan.phases, deadline)
            checks, seconds = checks + 1, seconds + spent
            if answer == z3.sat and model is not None:
                return SearchResult(z3.sat, model, checks, z3_seconds=seconds)
        elif plan.complete:
            for phases in plan.refuted:
                answer, _, spent = _check_with(solver, relus, phases, deadline)
                checks, seconds = checks + 1, seconds + spent
                if answer != z3.unsat:
                    break
            else:
                return SearchResult(z3.unsat, checks=checks, z3_seconds=seconds)
    found = branch_and_bound(solver, relus, deadline)
    found.checks += checks
    found.z3_seconds += seconds
    return found


def _check_with(solver: z3.Solver, relus: list[Relu], phases: dict[int, bool], deadline: float,
                pins: dict | None = None):
    """Z3 on the constraints plus these phases: (answer, a model where every ReLU holds or None, seconds).

    With ``pins`` (unknown -> value), those values are substituted in, so that only the ReLU outputs
    are left to solve for; asserting them as equalities instead left Z3 a full simplex over 2^-31
    fractions (18 s on one check)."""
    left_ms = int(1000 * (deadline - time.monotonic()))
    if left_ms <= 0:
        return z3.unknown, None, 0.0
    started = time.monotonic()
    phase_constraints = [phase(relus[i], on) for i, on in phases.items()]
    if pins:
        pairs = [(unknown, real(value)) for unknown, value in pins.items()]
        target = z3.Solver()
        target.add(z3.simplify(z3.substitute(z3.And(list(solver.assertions()) + phase_constraints), *pairs)))
        target.add([unknown == value for unknown, value in pairs])
    else:
        target = solver
        target.push()
        target.add(phase_constraints)
    try:
        target.set("timeout", left_ms)
        answer = target.check()
        model = target.model() if answer == z3.sat else None
        if model is not None and violated(model, relus):
            model = None
        return answer, model, time.monotonic() - started
    finally:
        if not pins:
            target.pop()
