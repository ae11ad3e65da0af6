"""Small building blocks of Python text that task generators compose.

Every function draws its randomness only from a :class:`Sampler`, so a seeded ``RandomSampler`` and
a Hypothesis-backed sampler drive the same code. Pools list their simplest option first, because
Hypothesis shrinks ``choice`` towards ``options[0]``. All text is ASCII and free of quotes,
backslashes and newlines unless a function says otherwise.
"""

from __future__ import annotations

from typing import Callable, Sequence

from .base import Sampler

NAMES = (
    "x", "i", "n", "name", "items", "data", "key", "value", "result", "count", "total", "line",
    "text", "node", "path", "size", "word", "args", "obj", "y", "row", "buf", "out", "seen", "parts",
    "config", "cache", "target", "queue", "chars",
)
SHORT_NAMES = tuple(name for name in NAMES if len(name) <= 4)
FUNCTIONS = (
    "f", "g", "len", "str", "int", "get", "parse", "load", "check", "sorted", "process", "run",
    "read", "update",
)
DEF_NAMES = ("f", "g", "h", "get", "add", "run", "load", "check", "parse", "read", "process")
PARAMS = ("a", "b", "c", "x", "y", "n", "k", "s", "t", "v")
ATTRIBUTES = ("name", "value", "size", "data", "path", "count", "parent", "text", "items")
CLASS_NAMES = ("Node", "Parser", "Item", "Config", "Reader", "Point", "Handler", "Cache")
BASE_CLASSES = ("object", "Exception", "dict", "Base")
MODULES = ("os", "sys", "re", "json", "math", "time", "random", "collections")
EXCEPTIONS = ("Exception", "ValueError", "KeyError", "OSError", "TypeError")
WORDS = (
    "a", "hello", "world", "abc", "ok", "done", "error", "name", "foo", "bar", "%s", "{}", "value:",
    "no", "yes", "x-y", "/tmp", "data.txt", "test", "utf-8", "key=", "id", "__main__", "*",
)
KEY_WORDS = ("a", "b", "c", "x", "id", "name", "key", "type", "size", "mode", "path", "user")
COMPARISON_OPS = ("==", "<", ">", "!=", "<=", ">=")
BINARY_OPS = ("+", "-", "*", "%", "//")
QUOTES = ('"', "'")
INDENT = "    "


def _overlap(a: str, b: str) -> bool:
    return a.startswith(b) or b.startswith(a)


def identifier(s: Sampler, exclude: Sequence[str] = ()) -> str:
    """A short lowercase variable name, never one of ``exclude``."""
    return s.choice([name for name in NAMES if name not in exclude])


def distinct(s: Sampler, pool: Sequence[str], n: int, exclude: Sequence[str] = ()) -> list[str]:
    """``n`` options of ``pool`` none of which is a prefix of another (or of ``exclude``).

    The prefix rule matters wherever a prefix ends inside a name: ``a`` could be the start of ``ab``.
    Candidates are filtered rather than rejected, so every draw succeeds (no retry loops).
    """
    chosen: list[str] = []
    for _ in range(n):
        taken = [*chosen, *exclude]
        chosen.append(s.choice([option for option in pool if not any(_overlap(option, t) for t in taken)]))
    return chosen


def distinct_identifiers(s: Sampler, n: int, exclude: Sequence[str] = (), short: bool = False) -> list[str]:
    return distinct(s, SHORT_NAMES if short else NAMES, n, exclude)


def short_identifier(s: Sampler) -> str:
    """A name of at most four characters, where several names must fit on a short prefix."""
    return s.choice(SHORT_NAMES)


def function_name(s: Sampler) -> str:
    """A function to call (builtins included)."""
    return s.choice(FUNCTIONS)


def def_name(s: Sampler) -> str:
    """A function to define (no builtins, which would be shadowed)."""
    return s.choice(DEF_NAMES)


def attribute_name(s: Sampler) -> str:
    return s.choice(ATTRIBUTES)


def class_name(s: Sampler) -> str:
    return s.choice(CLASS_NAMES)


def module_name(s: Sampler) -> str:
    return s.choice(MODULES)


def exception_name(s: Sampler) -> str:
    return s.choice(EXCEPTIONS)


def digit(s: Sampler) -> str:
    return str(s.integer(0, 9))


def small_int(s: Sampler) -> str:
    """Mostly one digit, sometimes two: the numbers short snippets actually use."""
    return str(s.integer(10, 99) if s.integer(0, 3) == 3 else s.integer(0, 9))


def atom(s: Sampler) -> str:
    """A name or a small integer."""
    return s.choice((identifier, small_int))(s)


def call(s: Sampler) -> str:
    return f"{function_name(s)}({atom(s)})"


def attribute(s: Sampler) -> str:
    return f"{identifier(s)}.{attribute_name(s)}"


def subscript(s: Sampler) -> str:
    return f"{identifier(s)}[{atom(s)}]"


def binary(s: Sampler) -> str:
    return f"{atom(s)} {s.choice(BINARY_OPS)} {atom(s)}"


def expression(s: Sampler) -> str:
    """A one-line expression without strings: atom, call, attribute, subscript or binary op."""
    builders: tuple[Callable[[Sampler], str], ...] = (atom, call, attribute, subscript, binary)
    return s.choice(builders)(s)


def comparison(s: Sampler) -> str:
    """A condition as it appears after ``if``/``while``: ``x > 0``, ``key in data``, ``not done``."""
    kind = s.integer(0, 3)
    if kind == 0:
        return f"{identifier(s)} {s.choice(COMPARISON_OPS)} {small_int(s)}"
    if kind == 1:
        return identifier(s)
    if kind == 2:
        return f"{identifier(s)} in {identifier(s)}"
    return f"not {identifier(s)}"


def string_body(s: Sampler, max_words: int = 3) -> str:
    """The inside of a string literal: a few words, no quote, backslash or newline."""
    return " ".join(s.choice(WORDS) for _ in range(s.integer(1, max_words)))


def quote(s: Sampler) -> str:
    return s.choice(QUOTES)


def string_literal(s: Sampler, max_words: int = 3) -> str:
    q = quote(s)
    return f"{q}{string_body(s, max_words)}{q}"


def short_string(s: Sampler) -> str:
    """A one-word string literal."""
    return string_literal(s, max_words=1)


def key_literals(s: Sampler, n: int) -> list[str]:
    """``n`` distinct literals of one kind, as a dict's keys or a set's elements: ``'id'`` or ``3``."""
    if s.boolean():
        q = quote(s)
        return [f"{q}{word}{q}" for word in distinct(s, KEY_WORDS, n)]
    return distinct(s, [str(k) for k in range(10)], n)


def parameters(s: Sampler, n: int) -> str:
    """A short parameter list such as ``a, b``."""
    return ", ".join(distinct(s, PARAMS, n))


def short_statement(s: Sampler) -> str:
    """A brief block body such as ``pass`` or ``n += 1``."""
    kind = s.integer(0, 2)
    if kind == 0:
        return "pass"
    if kind == 1:
        return f"{short_identifier(s)} += 1"
    return f"{short_identifier(s)} = {digit(s)}"


def simple_statement(s: Sampler) -> str:
    """One plain statement line (no newline) that is valid anywhere."""
    kind = s.integer(0, 3)
    if kind == 0:
        return f"{identifier(s)} = {expression(s)}"
    if kind == 1:
        return f"{function_name(s)}({atom(s)})"
    if kind == 2:
        return f"{identifier(s)} += {small_int(s)}"
    return f"print({expression(s)})"


def block_context(s: Sampler) -> tuple[str, str]:
    """Text preceding a line, and that line's indentation, so tasks are not always at column 0.

    The text is whole lines ending in ``\\n``; any header it contains is followed by the indented
    line, so the result compiles once that line is written.
    """
    kind = s.integer(0, 4)
    if kind == 0:
        return "", ""
    if kind == 1:
        return f"{simple_statement(s)}\n", ""
    if kind == 2:
        loop_var, iterable = distinct_identifiers(s, 2)
        return f"for {loop_var} in {iterable}:\n", INDENT
    if kind == 3:
        return f"def {def_name(s)}({parameters(s, s.integer(1, 2))}):\n", INDENT
    return f"if {comparison(s)}:\n", INDENT
