"""Composable Hypothesis strategies for the Python snippets the tasks are made of.

    from circuitspec.strategies import assignments, calls, in_assignment, in_call, string_literals, task_inputs

    assignments(calls(string_literals()))                        # 'x = f("hello")'
    task_inputs("closing_quote", context=in_assignment(in_call()))  # prefix 'x = f("hello', answer '"'

Every strategy here runs the task suite's own snippet builders (``engine/tasks/snippets.py``) with
Hypothesis as their Sampler, so the vocabulary is what the models were trained on, and shrinking goes
to each pool's first option: ``x``, ``0``, ``"a"``, ``f(x)``. Text strategies draw ``str``; the
``in_*`` strategies draw a :class:`Context`, text with a hole where an expression goes, and nest:
``in_assignment(in_call())`` draws ``x = f(`` ... ``)\\n``. Statement contexts (``in_assignment``,
``in_return``, ``in_condition``) go outermost; expression contexts (``in_call``, ``in_list``) nest
anywhere inside them. This module imports no torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence, TypeVar

from hypothesis import strategies as st
from hypothesis.strategies import SearchStrategy

from .engine.tasks import Task, TaskExample, get_task
from .engine.tasks.base import ContextNotSupportedError
from .engine.tasks.snippets import (
    COMPARISON_OPS,
    INDENT,
    QUOTES,
    atom,
    call,
    comparison,
    def_name,
    expression,
    function_name,
    identifier,
    parameters,
    simple_statement,
    small_int,
    string_body,
    string_literal,
)

T = TypeVar("T")

__all__ = [
    "Context",
    "ContextNotSupportedError",
    "HypothesisSampler",
    "assignments",
    "atoms",
    "calls",
    "comparisons",
    "expressions",
    "from_sampler",
    "identifiers",
    "in_assignment",
    "in_call",
    "in_condition",
    "in_list",
    "in_return",
    "lists",
    "numbers",
    "statements",
    "string_literals",
    "task_inputs",
]


class HypothesisSampler:
    """A task Sampler whose choices are Hypothesis draws (the first option is where shrinking goes)."""

    def __init__(self, draw) -> None:
        self.draw = draw

    def integer(self, low: int, high: int) -> int:
        return self.draw(st.integers(low, high))

    def choice(self, options: Sequence[T]) -> T:
        return self.draw(st.sampled_from(options))

    def boolean(self) -> bool:
        return self.draw(st.booleans())


def from_sampler(build: Callable[..., T], *args, **kwargs) -> SearchStrategy[T]:
    """Any Sampler-style builder, ``build(sampler, *args, **kwargs)``, yours included, as a strategy."""

    @st.composite
    def drawn(draw) -> T:
        return build(HypothesisSampler(draw), *args, **kwargs)

    return drawn()


# text ---------------------------------------------------------------------------------------------


def identifiers() -> SearchStrategy[str]:
    """A variable name: ``x``, ``items``, ``result``, ..."""
    return from_sampler(identifier)


def numbers() -> SearchStrategy[str]:
    """A small integer literal, mostly one digit."""
    return from_sampler(small_int)


def atoms() -> SearchStrategy[str]:
    """A name or a small integer."""
    return from_sampler(atom)


def string_literals(quote: str | None = None, max_words: int = 3) -> SearchStrategy[str]:
    """A closed one-line literal of a few words, opened by ``quote`` when given."""
    if quote is None:
        return from_sampler(string_literal, max_words)
    if quote not in QUOTES:
        raise ValueError(f"quote must be one of {', '.join(map(repr, QUOTES))}, not {quote!r}")
    return from_sampler(lambda s: f"{quote}{string_body(s, max_words)}{quote}")


def expressions() -> SearchStrategy[str]:
    """A one-line expression without strings: atom, call, attribute, subscript or binary operation."""
    return from_sampler(expression)


def comparisons() -> SearchStrategy[str]:
    """A condition as written after ``if`` or ``while``."""
    return from_sampler(comparison)


def statements() -> SearchStrategy[str]:
    """One simple statement line, without its newline."""
    return from_sampler(simple_statement)


def calls(*arguments: SearchStrategy[str], args: SearchStrategy[Sequence[str]] | None = None) -> SearchStrategy[str]:
    """``f(...)`` with one argument per strategy in ``arguments``, or the list ``args`` draws;
    with neither, one atom (the suite's own calls)."""
    if arguments and args is not None:
        raise TypeError("calls() takes argument strategies or args=, not both")
    if not arguments and args is None:
        return from_sampler(call)

    @st.composite
    def drawn(draw) -> str:
        texts = [draw(a) for a in arguments] if args is None else draw(args)
        texts = [texts] if isinstance(texts, str) else list(texts)
        return f"{draw(from_sampler(function_name))}({', '.join(texts)})"

    return drawn()


def lists(elements: SearchStrategy[str] | None = None, min_size: int = 1, max_size: int = 3) -> SearchStrategy[str]:
    """A list display ``[a, b]`` of drawn elements (atoms by default)."""
    items = st.lists(atoms() if elements is None else elements, min_size=min_size, max_size=max_size)
    return items.map(lambda texts: f"[{', '.join(texts)}]")


def assignments(value: SearchStrategy[str] | None = None) -> SearchStrategy[str]:
    """``name = value`` (an expression by default), without its newline."""

    @st.composite
    def drawn(draw) -> str:
        return f"{draw(identifiers())} = {draw(expressions() if value is None else value)}"

    return drawn()


# contexts -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Context:
    """Text around a hole: ``before + expression + after`` is Python once an expression fills the hole."""

    before: str
    after: str

    def wrap(self, text: str) -> str:
        return f"{self.before}{text}{self.after}"

    def around(self, inner: Context) -> Context:
        """``inner`` placed in this context's hole."""
        return Context(self.before + inner.before, inner.after + self.after)


def _call_hole(s) -> Context:
    """``f(`` or, with an argument before the hole, ``f(a, ``: the same layouts closing_quote trains on."""
    name = function_name(s)
    first = f"{s.choice((atom, string_literal))(s)}, " if s.boolean() else ""
    return Context(f"{name}({first}", ")")


def _list_hole(s) -> Context:
    first = f"{atom(s)}, " if s.boolean() else ""
    return Context(f"[{first}", "]")


def _assignment_hole(s) -> Context:
    return Context(f"{identifier(s)} = ", "\n")


def _return_hole(s) -> Context:
    return Context(f"def {def_name(s)}({parameters(s, 1)}):\n{INDENT}return ", "\n")


def _condition_hole(s) -> Context:
    keyword = s.choice(("if", "while"))
    return Context(f"{keyword} {identifier(s)} {s.choice(COMPARISON_OPS)} ", f":\n{INDENT}pass\n")


def _nest(name: str, hole: Callable, inner: Context | SearchStrategy[Context] | None) -> SearchStrategy[Context]:
    """The drawn hole, with ``inner`` (an expression context) placed in it."""

    @st.composite
    def drawn(draw) -> Context:
        outer = hole(HypothesisSampler(draw))
        if inner is None:
            return outer
        placed = draw(_contexts(inner))
        if "\n" in placed.before + placed.after:
            raise ValueError(f"{name}: the inner context {placed.before!r}...{placed.after!r} spans lines; "
                             "statement contexts (in_assignment, in_return, in_condition) go outermost")
        return outer.around(placed)

    return drawn()


def _contexts(context: Context | SearchStrategy[Context]) -> SearchStrategy[Context]:
    return st.just(context) if isinstance(context, Context) else context


def in_call(inner: Context | SearchStrategy[Context] | None = None) -> SearchStrategy[Context]:
    """An argument of a call: ``f(`` ... ``)``, sometimes after another argument."""
    return _nest("in_call", _call_hole, inner)


def in_list(inner: Context | SearchStrategy[Context] | None = None) -> SearchStrategy[Context]:
    """An element of a list display: ``[`` ... ``]``, sometimes after another element."""
    return _nest("in_list", _list_hole, inner)


def in_assignment(inner: Context | SearchStrategy[Context] | None = None) -> SearchStrategy[Context]:
    """The value of an assignment statement: ``x = `` ... ``\\n``."""
    return _nest("in_assignment", _assignment_hole, inner)


def in_return(inner: Context | SearchStrategy[Context] | None = None) -> SearchStrategy[Context]:
    """The value returned by a one-line function: ``def f(a):\\n    return `` ... ``\\n``."""
    return _nest("in_return", _return_hole, inner)


def in_condition(inner: Context | SearchStrategy[Context] | None = None) -> SearchStrategy[Context]:
    """The right side of a comparison in a header: ``if x == `` ... ``:\\n    pass\\n``."""
    return _nest("in_condition", _condition_hole, inner)


# task inputs --------------------------------------------------------------------------------------


def task_inputs(
    task: str | Task, context: Context | SearchStrategy[Context] | None = None
) -> SearchStrategy[TaskExample]:
    """A strategy over one task's inputs (a task name or a Task); with ``context``, each input's open
    expression is written in a drawn context, positions shifted to match. Only tasks with
    ``generate_in`` take a context; others raise :class:`ContextNotSupportedError` here, not when drawn."""
    task = get_task(task) if isinstance(task, str) else task
    if context is None:
        return _inputs(task)
    if task.generate_in is None:
        raise ContextNotSupportedError(task.name)
    return _inputs_in(task, _contexts(context))


@st.composite
def _inputs(draw, task: Task) -> TaskExample:
    return task.example(HypothesisSampler(draw))


@st.composite
def _inputs_in(draw, task: Task, contexts: SearchStrategy[Context]) -> TaskExample:
    context = draw(contexts)
    return task.example_in(HypothesisSampler(draw), context.before, context.after)
