"""The pieces of the entailment encoding, each against exact arithmetic: numbers rounded to the grid,
relaxed linear forms, products and ReLUs must admit every true value (else a proof could be wrong),
and the float-guided search must agree with Z3 deciding the same ReLU network by itself."""

import time
from fractions import Fraction

import numpy as np
import z3
from hypothesis import given, settings
from hypothesis import strategies as st

from circuitspec.prove.grid import GRID_BITS, down, near, real, up
from circuitspec.prove.guide import FloatProgram, guided_search
from circuitspec.prove.relax import Bounded, Relaxation
from circuitspec.prove.search import branch_and_bound, phase

finite = st.floats(-50, 50, allow_nan=False, allow_infinity=False)
weights = st.floats(-3, 3, allow_nan=False, allow_infinity=False) | st.just(0.0)


def holds(solver: z3.Solver, values: dict) -> bool:
    """Every assertion of ``solver`` is true at ``values`` (unknown -> Fraction)."""
    pairs = [(k, real(v)) for k, v in values.items()]
    return all(z3.is_true(z3.simplify(z3.substitute(a, *pairs))) for a in solver.assertions())


def value_of(term: z3.ArithRef, values: dict) -> Fraction:
    return z3.simplify(z3.substitute(term, *[(k, real(v)) for k, v in values.items()])).as_fraction()


@given(finite)
def test_grid_rounding_goes_the_safe_way(x):
    step = Fraction(1, 1 << GRID_BITS)
    assert down(x) <= Fraction(x) <= up(x)
    assert Fraction(x) - down(x) <= 2 * step and up(x) - Fraction(x) <= 2 * step
    assert abs(near(x) - Fraction(x)) <= step / 2 and (near(x) / step).denominator == 1


@st.composite
def boxed_inputs(draw, n):
    """n inputs: (bounds, a true value inside them, whether it is a constant)."""
    out = []
    for _ in range(n):
        a, b = sorted((draw(finite), draw(finite)))
        t = draw(st.floats(a, b))
        out.append((a, b, t, draw(st.booleans())))
    return out


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_rounded_linear_forms_stay_within_their_error_of_the_true_value(data):
    """Two layers of forms: the second reads the first's term, whose error it must carry too."""
    n = data.draw(st.integers(1, 5))
    inputs = data.draw(boxed_inputs(n))
    w1 = np.array(data.draw(st.lists(weights, min_size=n, max_size=n)))
    w2 = np.array(data.draw(st.lists(weights, min_size=2, max_size=2)))
    b1, b2 = data.draw(finite), data.draw(finite)
    relax = Relaxation(z3.Solver())
    xs = [z3.Real(f"x{i}") for i in range(n)]
    bounded = [Bounded(None, t, t) if const else Bounded(xs[i], a, b) for i, (a, b, t, const) in enumerate(inputs)]
    first = relax.linear(w1, bounded, b1)
    values = {xs[i]: Fraction(t) for i, (_, _, t, const) in enumerate(inputs) if not const}
    true1 = sum(Fraction(float(w)) * Fraction(t) for w, (_, _, t, _) in zip(w1, inputs)) + Fraction(b1)
    assert first.lo - 1e-9 <= float(true1) <= first.hi + 1e-9
    if not first.constant:
        assert abs(value_of(first.term, values) - true1) <= Fraction(first.err) + Fraction(1, 10**9)
    other = z3.Real("other")
    second = relax.linear(w2, [first, Bounded(other, -1.0, 1.0)], b2)
    values[other] = Fraction(1, 3)
    true2 = Fraction(float(w2[0])) * true1 + Fraction(float(w2[1])) / 3 + Fraction(b2)
    if not second.constant:
        assert abs(value_of(second.term, values) - true2) <= Fraction(second.err) + Fraction(1, 10**9)


@settings(max_examples=80, deadline=None)
@given(st.data())
def test_products_with_a_factor_in_a_range_admit_every_true_product(data):
    lo, hi = sorted((data.draw(st.floats(0, 3)), data.draw(st.floats(0, 3))))
    (x_lo, x_hi, t, const), = data.draw(boxed_inputs(1))
    err = data.draw(st.sampled_from([0.0, 0.01, 0.5]))
    term_value = Fraction(t) + Fraction(data.draw(st.floats(-1, 1))) * Fraction(err)
    c = Fraction(data.draw(st.floats(lo, hi)))
    relax = Relaxation(z3.Solver())
    x = z3.Real("x")
    product = relax.between(lo, hi, Bounded(None, t, t) if const else Bounded(x, x_lo, x_hi, err), "p")
    assert product.lo - 1e-9 <= float(c * Fraction(t)) <= product.hi + 1e-9
    assert holds(relax.solver, {x: term_value, product.term: c * Fraction(t)})


@settings(max_examples=80, deadline=None)
@given(st.data())
def test_relus_admit_the_true_output_and_its_phase(data):
    lo, hi = data.draw(st.floats(-20, -0.01)), data.draw(st.floats(0.01, 20))
    t = data.draw(st.floats(lo, hi))
    err = data.draw(st.sampled_from([0.0, 0.01, 0.5]))
    term_value = Fraction(t) + Fraction(data.draw(st.floats(-1, 1))) * Fraction(err)
    relax = Relaxation(z3.Solver())
    pre = z3.Real("pre")
    post = relax.relu(Bounded(pre, lo, hi, err))
    true_post = max(Fraction(t), Fraction(0))
    assert len(relax.relus) == 1 and post.lo <= float(true_post) <= post.hi
    relax.solver.add(phase(relax.relus[0], t > 0))
    assert holds(relax.solver, {pre: term_value, post.term: true_post})
    sure = Relaxation(z3.Solver())
    assert sure.relu(Bounded(pre, 0.5, 2.0)).term is pre and sure.relu(Bounded(pre, -2.0, -0.5)).constant
    assert not sure.relus


def random_network(rng: np.random.Generator, hidden: int):
    """out = Σ v_j·relu(W_j·x + b_j) with x in [-1, 1]^2; asks whether out >= threshold can happen."""
    W, b, v = rng.normal(size=(hidden, 2)), rng.normal(size=hidden) * 0.5, rng.normal(size=hidden)
    threshold = float(rng.normal())
    q = lambda a: real(near(float(a)))  # noqa: E731
    xs = [z3.Real(f"x{i}") for i in range(2)]
    pres = [z3.Sum([q(W[j, i]) * xs[i] for i in range(2)]) + q(b[j]) for j in range(hidden)]
    box = [c for x in xs for c in (x >= -1, x <= 1)]
    goal = z3.Sum([q(v[j]) * z3.If(pres[j] > 0, pres[j], 0) for j in range(hidden)]) >= q(threshold)
    truth = z3.Solver()
    truth.add(box + [goal])
    relax = Relaxation(z3.Solver())
    relax.solver.add(box)
    posts = []
    for j in range(hidden):
        reach = float(np.abs(W[j]).sum()) + 0.01
        posts.append(relax.as_term(relax.relu(Bounded(pres[j], float(b[j]) - reach, float(b[j]) + reach))))
    relax.solver.add(z3.Sum([q(v[j]) * posts[j] for j in range(hidden)]) >= q(threshold))
    return truth.check(), relax


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(1, 6))
def test_the_searches_agree_with_z3_deciding_the_relus_itself(seed, hidden):
    expected, relax = random_network(np.random.default_rng(seed), hidden)
    deadline = time.monotonic() + 30
    for search in (branch_and_bound, guided_search):
        found = search(relax.solver, relax.relus, deadline)
        assert found.answer == expected, search.__name__
        if found.answer == z3.sat:  # a model where every ReLU is exact, so the goal really holds
            assert all(found.model.eval(r.post == z3.If(r.pre > 0, r.pre, 0), model_completion=True) for r in relax.relus)
        assert relax.solver.num_scopes() == 0


@settings(max_examples=40, deadline=None)
@given(st.lists(weights, min_size=3, max_size=3), finite, st.lists(finite, min_size=3, max_size=3))
def test_the_float_copy_reads_the_same_linear_terms(ws, bias, point):
    xs = [z3.Real(f"y{i}") for i in range(3)]
    term = z3.Sum([real(near(w)) * x for w, x in zip(ws, xs)]) - real(near(bias)) * 2 + (-xs[0])
    solver = z3.Solver()
    solver.add(term <= 1, z3.Not(xs[1] > 3), xs[2] == xs[0])
    program = FloatProgram(solver.assertions(), [])
    coeffs, bound = program.ub[0]  # coeffs · x <= bound
    at = {program.lin.index[x.decl().name()]: p for x, p in zip(xs, point)}
    exact = value_of(term, {x: Fraction(p) for x, p in zip(xs, point)})
    assert abs(sum(c * at[i] for i, c in coeffs.items()) - bound - (float(exact) - 1)) <= 1e-6 * (1 + abs(float(exact)))
    assert len(program.ub) == 2 and len(program.eq) == 1  # Not(y1 > 3) is y1 <= 3
