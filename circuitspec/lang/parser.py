"""Text -> :class:`~.ast.Spec` plus diagnostics; never an exception for any input text.

Stages, each a function of the previous one's plain output:

1. **split** the file into statements. The language is line-oriented: a statement starts on a line
   whose first character is not blank, and every following indented line continues it. Blank and
   comment lines between statements become the next statement's leading comments.
2. **parse** each statement on its own with the grammar (grammar/circuit.lark), so a syntax error in
   one statement is reported and the others are still parsed: several independent errors per run.
3. **build** the AST with a lark Transformer, checking what the grammar cannot say locally (escapes,
   numbers, indices, known claim kinds, metrics and ablations).
4. **check** the file as a whole: header statements, names defined once and before use, every claim
   with an ablation, includes (resolved relative to the including file, cycles reported at the
   include line).

Every stage is linear in the input, and :mod:`.limits` bounds the input (file size, lines, statements,
tokens, include depth, errors), so any text is answered in about a second: past a limit, one diagnostic
says which, and the rest is not parsed.
"""

from __future__ import annotations

import difflib
import math
import os
import re
import unicodedata
from dataclasses import dataclass, field, replace
from functools import cache, lru_cache
from importlib.resources import files

from lark import Lark, Token, Transformer, v_args
from lark.exceptions import UnexpectedCharacters, UnexpectedInput, UnexpectedToken

from . import ast as A
from . import limits
from .diagnostics import Diagnostic, error, normalize_newlines, render_all
from .limits import count_tokens
from .reading import Unreadable, read_source

__all__ = ["ParseResult", "parse_file", "parse_library_file", "parse_spec", "parse_spec_or_library", "looks_like_library", "grammar_text",
           "statement_keywords"]


@dataclass(frozen=True)
class ParseResult:
    """``spec`` is set only when there are no errors; ``partial`` is the best effort either way."""

    spec: A.Spec | None
    diagnostics: list[Diagnostic]
    sources: dict[str, str] = field(default_factory=dict)
    partial: A.Spec | None = None

    @property
    def ok(self) -> bool:
        return self.spec is not None

    def render(self) -> str:
        return render_all(self.diagnostics, self.sources)


def parse_spec(text: str, filename: str = "<string>") -> ParseResult:
    """Parse spec ``text``; includes are resolved relative to ``filename``'s folder."""
    session = _Session()
    try:
        return session.run_main(text, filename)
    except Exception as exc:  # the last line of defence: a bug must still not reach the user as a traceback
        return session.internal_error(filename, exc)


def _read_source(path: str | os.PathLike) -> tuple[str, str | None, ParseResult | None]:
    """(name, text, None), or (name, None, a result holding the E404/E007 diagnostic) for an unreadable file."""
    name = os.fspath(path)
    text = read_source(name)
    if isinstance(text, Unreadable):
        diag = Diagnostic(name, 1, 1, 1, 1, "error", text.code, text.message,
                          text.hint or "check the path and that the file is UTF-8 text")
        return name, None, ParseResult(None, [diag], {})
    return name, text, None


def parse_file(path: str | os.PathLike) -> ParseResult:
    """Read and parse a spec file (UTF-8); an unreadable file is a diagnostic, not an exception."""
    name, text, unreadable = _read_source(path)
    return unreadable or parse_spec(text, name)


def parse_library_file(path: str | os.PathLike) -> ParseResult:
    """Parse a file meant to be included (node, group, edge and include statements only, no header)."""
    name, text, unreadable = _read_source(path)
    if unreadable:
        return unreadable
    session = _Session()
    try:
        key = os.path.realpath(name)
        result = session.parse_text(text, name, key, library=True)
        spec = A.Spec(tuple(result.statements), tuple(session.libraries), tuple(result.end_comments), file=name)
        diags = sorted(set(session.diags), key=lambda d: (d.file != name, d.line, d.col, d.code, d.message))
        return ParseResult(None if any(d.is_error for d in diags) else spec, diags, session.sources, spec)
    except Exception as exc:  # as in parse_spec: never a traceback
        return session.internal_error(name, exc)


def looks_like_library(result: ParseResult) -> bool:
    """A file whose only problem is the missing header and that holds only library statements: a file
    written to be included, which `check` and `fmt` handle as such rather than as a broken spec."""
    partial = result.partial
    return (partial is not None and bool(partial.statements)
            and {d.code for d in result.diagnostics if d.is_error} == {"E105"}
            and all(isinstance(st, A.LIBRARY_TYPES) for st in partial.statements))


def parse_spec_or_library(path: str | os.PathLike) -> tuple[ParseResult, bool]:
    """Parse a file as a spec, or as a library when that is what it is; the flag says which."""
    result = parse_file(path)
    if looks_like_library(result):
        return parse_library_file(path), True
    return result, False


# ---- the grammar ---------------------------------------------------------------------------------


def grammar_text() -> str:
    return files("circuitspec.grammar").joinpath("circuit.lark").read_text(encoding="utf-8")


@cache
def _lark() -> Lark:
    # The contextual lexer makes keywords soft: `position` is a keyword after `at` and a name elsewhere.
    return Lark(grammar_text(), parser="lalr", lexer="contextual", propagate_positions=True, maybe_placeholders=True)


@cache
def statement_keywords() -> tuple[str, ...]:
    """Words that start a statement (read from the grammar, so the two cannot drift apart)."""
    body = re.search(r"^\?statement:(.*?)\n\n", grammar_text(), re.S | re.M).group(1)
    rules = re.findall(r"\w+_stmt", body)
    words = []
    for rule in rules:
        match = re.search(rf"^{rule}:\s*\"(\w+)\"", grammar_text(), re.M)
        if match and match.group(1) not in words:
            words.append(match.group(1))
    return tuple(words)


# ---- stage 1: split into statements --------------------------------------------------------------

_CONTINUES = re.compile(r"[ \t\f]+(?=[^\s#])")  # the same test as the grammar's CONTINUATION token


def _is_trivia(line: str) -> bool:
    stripped = line.strip(" \t\f")
    return not stripped or stripped.startswith("#")


@dataclass
class _Chunk:
    """One statement's lines ``first..last`` (1-based) and the comments that belong to it."""

    first: int
    last: int
    leading: list[str]
    inner: list[tuple[int, str]] = field(default_factory=list)


def _split(lines: list[str]) -> tuple[list[_Chunk], list[str], list[int]]:
    """Statements, the comments after the last one, and lines indented with nothing to continue."""
    chunks: list[_Chunk] = []
    pending: list[tuple[int, str]] = []  # trivia lines since the last code line
    stray: list[int] = []
    for number, line in enumerate(lines, 1):
        if _is_trivia(line):
            pending.append((number, line.strip(" \t\f")))
        elif _CONTINUES.match(line) and chunks:
            chunks[-1].inner.extend((n, text) for n, text in pending if text)
            chunks[-1].last = number
            pending = []
        else:
            if _CONTINUES.match(line):
                stray.append(number)
            chunks.append(_Chunk(number, number, _trivia([text for _, text in pending], first=not chunks)))
            pending = []
    return chunks, _trivia([text for _, text in pending], first=not chunks, last=True), stray


def _trivia(texts: list[str], first: bool = False, last: bool = False) -> list[str]:
    """Collapse runs of blank lines to one; drop blanks at the start (and end) of the file."""
    out: list[str] = []
    for text in texts:
        if text or (out and out[-1]) or (not out and not first):
            out.append(text)
    if first:
        while out and not out[0]:
            out.pop(0)
    if last:
        while out and not out[-1]:
            out.pop()
    return out


# Code up to the first `#` outside a string: runs of plain characters, or whole string literals (a
# backslash escapes the next character; an unterminated string runs to the end of the line).
_CODE = re.compile(r"""(?:[^"'#]++|"[^"\\]*+(?:\\.[^"\\]*+)*+(?:"|\\?\Z)|'[^'\\]*+(?:\\.[^'\\]*+)*+(?:'|\\?\Z))*+""")


def split_comment(line: str) -> tuple[str, str | None]:
    """``(code, comment)`` of one line; a ``#`` inside a string literal is not a comment."""
    end = _CODE.match(line).end()
    if end < len(line) and line[end] == "#":
        return line[:end], line[end:].rstrip(" \t\f")
    return line, None


# ---- stage 2: parse one statement, or explain why not --------------------------------------------

_DESCRIBE = {
    "NAME": "a name",
    "DOTTED": "a reference like `blocks.0.mlp.hook_post[3]`",
    "NUMBER": "a number",
    "STRING": "a string",
    "CMP": "a comparison (`>`, `>=`, `<`, `<=`, `==`, `!=`)",
    "_NL": "the end of the line",
    "$END": "the end of the line",
}

_FORMS = {
    "spec": 'spec NAME "description"',
    "model": 'model "py-sparse-small" (a shipped model name or a checkpoint path, in quotes)',
    "task": "task NAME, e.g. `task closing_quote`",
    "ablate": "ablate zero | mean over task | mean over corpus | resample from task | resample from corrupted(FEATURE), "
              "the task forms optionally followed by `per position`",
    "metric": "metric logit_diff | accuracy | bce | kl",
    "confidence": "confidence 0.95",
    "samples": "samples 1000",
    "circuit": "circuit nodes | circuit edges (the circuit is its nodes and every weight between them, or only its stated edges)",
    "node": 'node NAME = HOOK[INDEX] "description", e.g. `node opener = blocks.0.mlp.hook_post[113]`',
    "group": "group NAME = HOOK[3, 17, 40:48] or group NAME = {a, b, HOOK[INDEX]}",
    "edge": "edge a -> b -> c, with names or HOOK[INDEX] references",
    "include": 'include "common.circ", include nodes matching "GLOB" or include edges matching "GLOB" -> "GLOB"',
    "claim": (
        "claim [LABEL:] BODY [CLAUSES], where BODY is `sufficient faithfulness >= T`, "
        "`necessary faithfulness <= T`, `minimal each node drop >= T`, `edge A -> B drop >= T`, `NODE > T`, `logit['a'] > logit['b']`, `agrees with model` or "
        "`ablating PART keeps faithfulness >= T` "
        "and the clauses are when, at position, on every input / on at least q of inputs, in full model, ablate, metric, confidence, samples, robustness"
    ),
}


def _describe_terminal(name: str) -> str:
    if name in _DESCRIBE:
        return _DESCRIBE[name]
    try:
        pattern = _lark().get_terminal(name).pattern
    except KeyError:
        return name.lower()
    return f"`{pattern.value}`" if pattern.type == "str" else name.lower()


def _describe_token(token: Token) -> str:
    if token.type in ("$END", "_NL"):
        return "the end of the line"
    kind = {"NAME": "name", "DOTTED": "hook name", "NUMBER": "number", "STRING": "string"}.get(token.type)
    if kind:
        return f"{kind} `{token.value}`"
    if token.value.isidentifier():
        return f"keyword `{token.value}`"
    return f"`{token.value}`"


def _join(words: list[str], conjunction: str = "or") -> str:
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + f" {conjunction} " + words[-1]


def _keywords_of(names) -> list[str]:
    out = []
    for name in names:
        try:
            pattern = _lark().get_terminal(name).pattern
        except KeyError:
            continue
        if pattern.type == "str" and pattern.value.isidentifier():
            out.append(pattern.value)
    return out


def _expected_names(exc: UnexpectedToken) -> set[str]:
    """Terminals the parser would have accepted (precise, via the interactive parser)."""
    try:
        return set(exc.interactive_parser.accepts()) or set(exc.expected)
    except Exception:
        return set(exc.expected)


def _expected(exc: UnexpectedToken) -> list[str]:
    """What the parser would have accepted, in human words."""
    names = _expected_names(exc)
    order = {"_NL": 3, "$END": 3, "NAME": 1, "DOTTED": 1, "NUMBER": 1, "STRING": 1, "CMP": 1}
    words = []
    for name in sorted(names, key=lambda n: (order.get(n, 0), n)):
        word = _describe_terminal(name)
        if word not in words:
            words.append(word)
    return words


_KEPT_STATEMENT_CHARS = 2000  # longer statements are rare, and would make the kept ones big


def _parse_statement(file: str, first: int, text: str) -> tuple[A.AnyStatement | None, tuple[Diagnostic, ...]]:
    """A statement's AST and diagnostics. They depend on nothing but its text and where it is, and are
    immutable, so they are kept: the statements a file shares with its last version (an editor's check
    on every save, a library included by many specs, `fmt` reading a library twice) are parsed once."""
    if len(text) > _KEPT_STATEMENT_CHARS:
        statement, diags = _ChunkParser(file, first, text).parse()
        return statement, tuple(diags)
    return _parse_kept(file, first, text)


@lru_cache(maxsize=1024)
def _parse_kept(file: str, first: int, text: str) -> tuple[A.AnyStatement | None, tuple[Diagnostic, ...]]:
    statement, diags = _ChunkParser(file, first, text).parse()
    return statement, tuple(diags)


class _ChunkParser:
    """Parses one statement's text (lines ``first``.. of ``file``); positions are shifted back to the file."""

    def __init__(self, file: str, first: int, text: str) -> None:
        self.file = file
        self.text = text
        self.lines = text.split("\n")
        self.first = first
        self.last = first + len(self.lines) - 1
        self.offset = first - 1

    def line(self, number: int) -> str:
        """Line ``number`` of the file (one of this statement's)."""
        return self.lines[number - self.first]

    def parse(self) -> tuple[A.AnyStatement | None, list[Diagnostic]]:
        try:
            tree = _lark().parse(self.text)
        except UnexpectedInput as exc:
            return None, [self.syntax_error(exc)]
        builder = _Builder(self.file, self.offset)
        statements = builder.transform(tree)
        statement = statements[0] if statements else None
        return statement, builder.diags

    # -- positions

    def span(self, line: int, col: int, end_line: int, end_col: int) -> A.Span:
        return A.Span(self.file, line + self.offset, col, end_line + self.offset, end_col)

    def end_of_statement(self) -> A.Span:
        """Just after the statement's last character (comments aside): an empty span there."""
        code, _ = split_comment(self.line(self.last))
        col = len(code.rstrip(" \t\f")) + 1
        return A.Span(self.file, self.last, col, self.last, col)

    def first_line(self) -> A.Span:
        """The code on the statement's first line (where a message about the whole statement points)."""
        code, _ = split_comment(self.line(self.first))
        text = code.rstrip(" \t\f")
        start = len(text) - len(text.lstrip(" \t\f")) + 1
        return A.Span(self.file, self.first, start, self.first, max(len(text) + 1, start))

    def first_word(self) -> str:
        match = re.match(r"[ \t\f]*([A-Za-z_]\w*)", self.text)
        return match.group(1) if match else ""

    # -- messages

    def syntax_error(self, exc: UnexpectedInput) -> Diagnostic:
        if isinstance(exc, UnexpectedCharacters):
            return self.bad_character(exc)
        if isinstance(exc, UnexpectedToken) and exc.token.type not in ("$END",):
            return self.bad_token(exc)
        expected = _expected(exc) if isinstance(exc, UnexpectedToken) else []
        expected = [w for w in expected if w != "the end of the line"]
        message = f"incomplete statement: expected {_join(expected)}" if expected else "incomplete statement"
        return error(self.end_of_statement(), "E001", message, self.form_hint())

    def bad_token(self, exc: UnexpectedToken) -> Diagnostic:
        token = exc.token
        span = self.span(token.line, token.column, token.end_line or token.line, token.end_column or token.column + 1)
        is_first = token.start_pos == len(self.text) - len(self.text.lstrip(" \t\f"))
        if is_first:
            return self.bad_statement_start(token, span)
        expected = _expected(exc)
        message = f"expected {_join(expected)}, found {_describe_token(token)}" if expected else f"unexpected {_describe_token(token)}"
        hint = None
        line_text = self.line(token.line + self.offset)
        if token.line > 1 and token.column == len(line_text) - len(line_text.lstrip(" \t\f")) + 1:
            hint = "this indented line continues the statement above; remove the indentation to start a new statement"
        elif token.value.isidentifier():
            close = difflib.get_close_matches(token.value, _keywords_of(_expected_names(exc)), n=1, cutoff=0.6)
            if close:
                hint = f"did you mean `{close[0]}`?"
            elif token.type != "NAME" and "a name" in expected:
                hint = f"`{token.value}` is a keyword here; choose another name"
        return error(span, "E001", message, hint or self.form_hint())

    def bad_statement_start(self, token: Token, span: A.Span) -> Diagnostic:
        keywords = statement_keywords()
        if token.value.isidentifier():
            close = difflib.get_close_matches(token.value, keywords, n=1, cutoff=0.6)
            if token.value in ("when", "and", "at", "per"):
                hint = f"`{token.value}` belongs to a claim; indent this line to continue the claim above"
            elif close:
                hint = f"did you mean `{close[0]}`?"
            else:
                hint = "a statement starts with " + _join([f"`{k}`" for k in keywords])
            return error(span, "E001", f"unknown statement `{token.value}`", hint)
        return error(span, "E001", f"a statement cannot start with {_describe_token(token)}",
                     "a statement starts with a keyword such as `node`, `edge` or `claim`")

    def bad_character(self, exc: UnexpectedCharacters) -> Diagnostic:
        line, col = exc.line, exc.column
        char = self.text[exc.pos_in_stream] if 0 <= exc.pos_in_stream < len(self.text) else ""
        line_text = self.line(line + self.offset)
        if char and char in "\"'":
            span = self.span(line, col, line, len(line_text) + 1)
            if "\\" + char in line_text[col:]:
                hint = f"`\\{char}` is an escaped quote, not the end of the string; write `\\\\` for a backslash"
            else:
                hint = f"close the string with `{char}` on the same line; strings cannot span lines"
            return error(span, "E003", "unterminated string", hint)
        if _ascii_digit(char) is not None:
            return self.foreign_digits(line, col, exc.pos_in_stream)
        shown = char if char.isprintable() and char.strip() else repr(char)
        span = self.span(line, col, line, col + 1)
        if char and char in "\u201c\u201d\u2018\u2019":
            hint = "use a plain ASCII quote (`\"` or `'`)"
        elif not char.strip():
            hint = "only spaces, tabs and form feeds count as blank; remove this character"
        elif char in "()":
            hint = "group members go in braces: `{a, b}`; indices go in brackets: `hook[3]`"
        else:
            hint = "remove it; text that is not a name or a number goes in quotes"
        return error(span, "E002", f"unexpected character `{shown}`", hint)

    def foreign_digits(self, line: int, col: int, pos: int) -> Diagnostic:
        """`hook_post[٣]`: Python reads any Unicode digit as a number, the language only ASCII ones."""
        def part_of_number(i: int) -> bool:
            return self.text[i] == "." or _ascii_digit(self.text[i]) is not None

        start, stop = pos, pos
        while start > 0 and part_of_number(start - 1):
            start -= 1
        while stop < len(self.text) and part_of_number(stop):
            stop += 1
        while self.text[start] == ".":
            start += 1
        while self.text[stop - 1] == ".":
            stop -= 1
        run = self.text[start:stop]
        first = col - (pos - start)
        span = self.span(line, first, line, first + len(run))
        return error(span, "E006", f"`{run}` is not a number: numbers are written with the ASCII digits 0-9",
                     f"did you mean `{''.join(_ascii_digit(c) or c for c in run)}`?")

    def form_hint(self) -> str | None:
        form = _FORMS.get(self.first_word())
        return f"write it as: {form}" if form else None


def _ascii_digit(char: str) -> str | None:
    """The ASCII digit a character stands for (`٣` -> `3`, `3` -> `3`), or None for a non-digit."""
    if len(char) != 1:
        return None
    if "0" <= char <= "9":
        return char
    value = unicodedata.digit(char, None)
    return None if value is None else str(value)


# ---- stage 3: build the AST ----------------------------------------------------------------------


@dataclass(frozen=True)
class _Head:
    selector: A.Index | A.Range | A.All
    span: A.Span


@dataclass(frozen=True)
class _Clause:
    name: str
    value: object
    span: A.Span


def _suggest(word: str, known, what: str) -> str:
    close = difflib.get_close_matches(word, known, n=1, cutoff=0.5)
    listing = _join([f"`{k}`" for k in known])
    return f"did you mean `{close[0]}`? ({what}: {listing})" if close else f"{what}: {listing}"


@v_args(meta=True)
class _Builder(Transformer):
    """Parse tree of one statement -> AST node; problems go to ``self.diags``, never raised."""

    def __init__(self, file: str, offset: int) -> None:
        super().__init__()
        self.file = file
        self.offset = offset
        self.diags: list[Diagnostic] = []

    # -- helpers

    def span(self, meta) -> A.Span:
        if getattr(meta, "empty", True):
            return A.Span(self.file, self.offset + 1, 1, self.offset + 1, 1)
        return A.Span(self.file, meta.line + self.offset, meta.column, meta.end_line + self.offset, meta.end_column)

    def tspan(self, token: Token) -> A.Span:
        return A.Span(self.file, token.line + self.offset, token.column, token.end_line + self.offset, token.end_column)

    def err(self, span: A.Span, code: str, message: str, hint: str | None = None) -> None:
        self.diags.append(error(span, code, message, hint))

    def string(self, token: Token | None) -> str | None:
        if token is None:
            return None
        value, bad = A.unquote(token.value)
        for offset, escape in bad:
            start = token.column + offset
            span = A.Span(self.file, token.line + self.offset, start, token.line + self.offset, start + len(escape))
            self.err(span, "E004", f"unknown escape `{escape}`",
                     "known escapes: \\n \\t \\r \\0 \\\\ \\\" \\' \\xHH \\uHHHH; write `\\\\` for a backslash")
        return value

    def number(self, token: Token) -> int | float | None:
        """The token's value, or ``None`` (reported once here) when it is too large to use."""
        text = token.value
        is_int = re.fullmatch(r"-?[0-9]+", text) is not None
        value = int(text) if is_int and len(text) < 100 else float(text)
        if is_int and len(text) >= 100 or not math.isfinite(value):
            shown = text if len(text) <= 20 else text[:17] + "..."
            self.err(self.tspan(token), "E006", f"number `{shown}` is too large",
                     "integers have at most 99 digits and decimals stay below 1e308; nothing in a spec needs more")
            return None
        return value

    def threshold(self, token: Token) -> int | float:
        value = self.number(token)
        return 0 if value is None else value

    def whole(self, token: Token, what: str, minimum: int = 0) -> int:
        value = self.number(token)
        if value is None:
            return minimum
        example = "e.g. `hook_post[3]`, or a range `3:5`" if what == "index" else f"e.g. `{what} 500`"
        if not isinstance(value, int):
            self.err(self.tspan(token), "E301" if what == "index" else "E006",
                     f"{what} must be a whole number, not `{token.value}`", example)
            return minimum
        if value < minimum:
            code = "E301" if what == "index" else "E208"
            first = "indices start at 0" if what == "index" else "a claim needs at least one sample"
            self.err(self.tspan(token), code, f"{what} must be at least {minimum}, not `{token.value}`", f"{first}; {example}")
        return value

    # -- statements

    def start(self, meta, children):
        return [c for c in children if c is not None]

    def spec_stmt(self, meta, children):
        name, desc = children
        return A.SpecHeader(name.value, self.string(desc), span=self.span(meta), name_span=self.tspan(name))

    def model_stmt(self, meta, children):
        return A.ModelStmt(self.string(children[0]), span=self.span(meta))

    def task_stmt(self, meta, children):
        return A.TaskStmt(children[0].value, span=self.span(meta), task_span=self.tspan(children[0]))

    def ablate_stmt(self, meta, children):
        return A.AblateStmt(children[0], span=self.span(meta))

    def metric_stmt(self, meta, children):
        return A.MetricStmt(self.metric(children[0]), span=self.span(meta), metric_span=self.tspan(children[0]))

    def confidence_stmt(self, meta, children):
        return A.ConfidenceStmt(self.confidence(children[0]), span=self.span(meta))

    def samples_stmt(self, meta, children):
        return A.SamplesStmt(self.whole(children[0], "samples", 1), span=self.span(meta))

    def circuit_stmt(self, meta, children):
        token = children[0]
        if token.value not in A.CIRCUIT_KINDS:
            self.err(self.tspan(token), "E210", f"unknown circuit kind `{token.value}`",
                     _suggest(token.value, A.CIRCUIT_KINDS, "circuit kinds"))
        return A.CircuitStmt(token.value, span=self.span(meta), kind_span=self.tspan(token))

    def metric(self, token: Token) -> str:
        if token.value not in A.METRICS:
            self.err(self.tspan(token), "E202", f"unknown metric `{token.value}`", _suggest(token.value, A.METRICS, "metrics"))
        return token.value

    def confidence(self, token: Token) -> float:
        value = self.number(token)
        if value is None:
            return A.DEFAULT_CONFIDENCE
        if not 0 < value < 1:
            self.err(self.tspan(token), "E208", f"confidence must be between 0 and 1, not `{token.value}`",
                     "e.g. `confidence 0.95`")
        return float(value)

    # -- ablations

    def ablation(self, meta, children):
        method, source, per_position = children
        span = self.span(meta)
        word, distribution = source if source else (None, None)
        if method.value not in A.ABLATIONS:
            self.err(self.tspan(method), "E203", f"unknown ablation `{method.value}`",
                     _suggest(method.value, A.ABLATIONS, "ablations"))
        elif method.value == "zero" and (distribution is not None or per_position):
            self.err(span, "E204", "`zero` takes no distribution and no `per position`", "write `ablate zero`")
        elif method.value != "zero":
            right = A.SOURCE_WORD[method.value]
            named = distribution is not None and (distribution.corpus or distribution.corrupted is not None)
            example = f"{method.value} {right} {distribution if named else 'task'}" + (" per position" if per_position else "")
            if distribution is None:
                also = " or `mean over corpus`" if method.value == "mean" and not per_position else ""
                self.err(span, "E204", f"`{method.value}` needs a distribution", f"write `{example}`{also}")
            elif method.value == "mean" and distribution.corrupted is not None:
                self.err(span, "E204", "corrupted partners are resampled, not averaged",
                         f"write `resample from {distribution}`: each input's ablated nodes take their activations on "
                         f"its own partner")
            elif word != right:
                self.err(span, "E204", f"write `{method.value} {right} ...`, not `{method.value} {word} ...`",
                         f"e.g. `{example}`")
        return A.Ablation(method.value, distribution, bool(per_position), span=span, method_span=self.tspan(method))

    def source(self, meta, children):
        # `over task [NAME]` (NAME may be None), `over corpus` or `from corrupted ( FEATURE )`
        word, what, *rest = children
        if what.value == "corpus":
            return word.value, A.Distribution(corpus=True, span=self.span(meta))
        if what.value == "corrupted":
            feature = next(t for t in rest if isinstance(t, Token) and t.type == "NAME")
            return word.value, A.Distribution(corrupted=feature.value, span=self.span(meta), feature_span=self.tspan(feature))
        return word.value, A.Distribution(rest[0].value if rest and rest[0] else None, span=self.span(meta))

    def per_position(self, meta, children):
        return True

    # -- references

    def node_stmt(self, meta, children):
        name, ref, desc = children
        index_errors = any(d.code == "E301" and d.line >= ref.span.line for d in self.diags)
        if not ref.is_single and not index_errors:
            self.err(ref.span, "E302", f"`node {name.value}` must name one channel, but `{ref}` selects several",
                     f"use `group {name.value} = {ref}` for several channels")
        return A.NodeDef(name.value, ref, self.string(desc), span=self.span(meta), name_span=self.tspan(name))

    def group_stmt(self, meta, children):
        name, value, desc = children
        members = value if isinstance(value, tuple) else (value,)
        return A.GroupDef(name.value, members, self.string(desc), span=self.span(meta), name_span=self.tspan(name))

    def members(self, meta, children):
        return tuple(c for c in children if c is not None)

    def name_use(self, meta, children):
        return A.NameRef(children[0].value, span=self.span(meta))

    def ref(self, meta, children):
        hook, *items = children
        heads = [i for i in items if isinstance(i, _Head)]
        channels = tuple(i for i in items if i is not None and not isinstance(i, _Head))
        for extra in heads[1:]:
            self.err(extra.span, "E301", "only one `head=` per reference", "use a range for several heads: `head=0:4`")
        alls = [c for c in channels if isinstance(c, A.All)]
        if alls and len(channels) > 1:
            self.err(alls[0].span, "E301", "`*` already selects every channel; drop the other indices",
                     f"write `{hook.value}[*]`" if not heads else f"write `{hook.value}[head=..., *]`")
        seen: set[A.Selector] = set()
        for c in channels:
            if c in seen and not isinstance(c, A.All):
                self.err(c.span, "E301", f"`{c}` is listed twice", "list each index once")
            seen.add(c)
        head = heads[0].selector if heads else None
        return A.Ref(hook.value, head, channels, span=self.span(meta))

    def head(self, meta, children):
        selector = children[0]
        if isinstance(selector, A.TokenLiteral):
            self.err(selector.span, "E301", "a head is a number, a range or `*`", "e.g. `head=0`, `head=0:4` or `head=*`")
            selector = A.All(span=selector.span)
        return _Head(selector, self.span(meta))

    def index_number(self, meta, children):
        return A.Index(self.whole(children[0], "index"), span=self.span(meta))

    def index_range(self, meta, children):
        start, stop = (self.whole(t, "index") for t in children)
        if stop <= start:
            self.err(self.span(meta), "E301", f"empty range `{start}:{stop}`",
                     f"ranges are half-open: `a:b` means a, a+1, ..., b-1 (e.g. `{start}:{start + 1}`)")
        return A.Range(start, stop, span=self.span(meta))

    def index_all(self, meta, children):
        return A.All(span=self.span(meta))

    def index_token(self, meta, children):
        return A.TokenLiteral(self.string(children[0]), span=self.span(meta))

    def edge_stmt(self, meta, children):
        return A.EdgePath(tuple(children), span=self.span(meta))

    def include_file(self, meta, children):
        return A.IncludeFile(self.string(children[0]), span=self.span(meta))

    def include_nodes(self, meta, children):
        return A.IncludeNodes(self.pattern(children[0]), span=self.span(meta))

    def include_edges(self, meta, children):
        return A.IncludeEdges(self.pattern(children[0]), self.pattern(children[1]), span=self.span(meta))

    def pattern(self, token: Token) -> str:
        value = self.string(token)
        if not value:
            self.err(self.tspan(token), "E303", "empty pattern", 'e.g. "blocks.1.attn.hook_z[head=0, *]"')
        return value

    # -- claims

    def claim_stmt(self, meta, children):
        label, body, *clauses = children
        settings: dict[str, _Clause] = {}
        for clause in clauses:
            if clause.name in settings:
                self.err(clause.span, "E107", f"`{clause.name}` appears twice in this claim",
                         f"the first is at column {settings[clause.name].span.col}; keep one")
            else:
                settings[clause.name] = clause

        def value(name, default=None):
            return settings[name].value if name in settings else default

        def span(name):
            return settings[name].span if name in settings else None

        claim = A.Claim(
            label.value if label else None, body, conditions=value("when", ()), position=value("at"),
            ablation=value("ablate"), metric=value("metric"), confidence=value("confidence"), samples=value("samples"),
            coverage=None if value("on") == "every" else value("on"), every_input=value("on") == "every",
            in_model="in" in settings, robustness=value("robustness"),
            span=self.span(meta), label_span=self.tspan(label) if label else None, position_span=span("at"),
            metric_span=span("metric"), confidence_span=span("confidence"), samples_span=span("samples"),
            coverage_span=span("on"), in_model_span=span("in"), robustness_span=span("robustness"),
        )
        kind = claim.kind
        if "robustness" in settings and kind != "sufficient":
            self.err(span("robustness"), "E206", f"`robustness` only applies to sufficient claims, not to {kind} claims",
                     "it says which partial ablations of the outside a sufficient circuit must also survive")
        for name, words in (("on", "`on every input` / `on at least q of inputs`"), ("in", "`in full model`")):
            if name in settings and kind not in A.PER_INPUT_KINDS:
                self.err(span(name), "E206", f"{words} only applies to per-input claims (role, behaviour, agreement), "
                         f"not to {kind} claims",
                         "claims about the whole circuit are judged on aggregate faithfulness, not per input")
        if "in" in settings and kind == "agreement":
            self.err(span("in"), "E206", "`in full model` does not apply to an agreement claim",
                     "an agreement claim compares the circuit-alone run with the full model; it has no full-model reading")
        if claim.position is not None and kind != "role":
            self.err(span("at"), "E206", f"`at position` only applies to claims about a node, not to {kind} claims",
                     "behaviour claims read the answer position; circuit claims use the whole input")
        if kind in A.CLAIM_OPS and body.op not in A.CLAIM_OPS[kind]:
            self.err(body.span, "E205", f"{'an' if kind[0] in 'aeiou' else 'a'} {kind} claim needs `{A.CLAIM_OPS[kind][0]}` or `{A.CLAIM_OPS[kind][1]}`, not `{body.op}`",
                     {"sufficient": "the circuit alone must keep at least this much faithfulness",
                      "necessary": "removing the circuit must leave at most this much faithfulness; to claim that "
                                   "removing a part leaves the behaviour intact, write `ablating PART keeps faithfulness >= T`",
                      "minimal": "removing any one part must cost at least this much faithfulness",
                      "unneeded": "removing the part must leave at least this much faithfulness; to claim that "
                                  "it matters, use `necessary` on a circuit of it",
                      "edge": "removing the edge must cost at least this much faithfulness"}[kind])
        return claim

    def faithfulness_body(self, meta, children):
        kind, op, number = children
        if kind.value not in ("sufficient", "necessary"):
            if kind.value == "minimal":
                hint = "minimal claims are written `minimal each node drop >= 0.02`"
            else:
                hint = _suggest(kind.value, A.CLAIM_KINDS, "claim kinds")
            self.err(self.tspan(kind), "E201", f"unknown claim kind `{kind.value}`", hint)
        return A.FaithfulnessBody(kind.value, op.value, self.threshold(number), span=self.span(meta), kind_span=self.tspan(kind))

    def minimal_body(self, meta, children):
        kind, unit, op, number = children
        if kind.value != "minimal":
            if kind.value in ("sufficient", "necessary"):
                hint = f"{kind.value} claims are written `{kind.value} faithfulness {A.CLAIM_OPS[kind.value][0]} t`"
            else:
                hint = _suggest(kind.value, ("minimal",), "claim kinds with `each`")
            self.err(self.tspan(kind), "E201", f"unknown claim kind `{kind.value}`", hint)
        return A.MinimalBody(unit, op.value, self.threshold(number), span=self.span(meta), kind_span=self.tspan(kind))

    def unit(self, meta, children):
        return children[0].value

    def role_body(self, meta, children):
        subject, op, number = children
        return A.RoleBody(subject, op.value, self.threshold(number), span=self.span(meta))

    def behaviour_body(self, meta, children):
        left, op, right = children
        if isinstance(right, Token):
            right = self.threshold(right)
        return A.BehaviourBody(left, op.value, right, span=self.span(meta))

    def unneeded_body(self, meta, children):
        word, part, op, number = children
        if word.value != "ablating":  # read as a name, so that nodes and claims may still be called `ablating`
            self.err(self.tspan(word), "E201", f"unknown claim kind `{word.value} ... keeps faithfulness`",
                     "a part that is not needed is claimed as `ablating PART keeps faithfulness >= T`")
        return A.UnneededBody(part, op.value, self.threshold(number), span=self.span(meta))

    def edge_body(self, meta, children):
        word, source, target, op, number = children
        if word.value != "edge":  # read as a name, so that nodes and claims may still be called `edge`
            self.err(self.tspan(word), "E201", f"unknown claim kind `{word.value} A -> B`",
                     "an edge claim is written `edge A -> B drop >= T`")
        return A.EdgeBody(source, target, op.value, self.threshold(number), span=self.span(meta), kind_span=self.tspan(word))

    def agreement_body(self, meta, children):
        word = children[0]
        if word.value != "agrees":  # `agrees` is read as a name, so that claims and nodes may still be called so
            self.err(self.tspan(word), "E201", f"unknown claim kind `{word.value} with model`",
                     "an agreement claim is written `agrees with model`")
        return A.AgreementBody(span=self.span(meta))

    def logit(self, meta, children):
        token = children[0]
        if token.type == "STRING":
            entry = A.TokenLiteral(self.string(token), span=self.tspan(token))
        else:
            entry = A.Index(self.whole(token, "index"), span=self.tspan(token))
        return A.Logit(entry, span=self.span(meta))

    def when_clause(self, meta, children):
        return _Clause("when", tuple(children), self.span(meta))

    def at_clause(self, meta, children):
        return _Clause("at", children[0].value, self.span(meta))

    def ablate_clause(self, meta, children):
        return _Clause("ablate", children[0], self.span(meta))

    def metric_clause(self, meta, children):
        return _Clause("metric", self.metric(children[0]), self.span(meta))

    def confidence_clause(self, meta, children):
        return _Clause("confidence", self.confidence(children[0]), self.span(meta))

    def every_input_clause(self, meta, children):
        return _Clause("on", "every", self.span(meta))

    def coverage_clause(self, meta, children):
        q = self.threshold(children[0])
        if not 0 < q < 1:
            self.err(self.tspan(children[0]), "E208", f"the share of inputs must be between 0 and 1 (exclusive), got {children[0].value}",
                     "`on at least 0.99 of inputs`; for all of them write `on every input`")
        return _Clause("on", q, self.span(meta))

    def in_model_clause(self, meta, children):
        return _Clause("in", True, self.span(meta))

    def robustness_clause(self, meta, children):
        token = children[0]
        if token.value not in A.ROBUSTNESS:
            self.err(self.tspan(token), "E209", f"unknown robustness `{token.value}`",
                     _suggest(token.value, A.ROBUSTNESS, "robustness levels"))
        return _Clause("robustness", token.value, self.span(meta))

    def samples_clause(self, meta, children):
        return _Clause("samples", self.whole(children[0], "samples", 1), self.span(meta))

    def condition(self, meta, children):
        feature, op, value = children
        if isinstance(value, Token):
            value = self.string(value) if value.type == "STRING" else self.threshold(value)
        return A.Condition(feature.value, op.value, value, span=self.span(meta), feature_span=self.tspan(feature))

    def true(self, meta, children):
        return True

    def false(self, meta, children):
        return False


# ---- stage 4: whole-file checks and includes -----------------------------------------------------

_HEADER_WORDS = {A.SpecHeader: "spec", A.ModelStmt: "model", A.TaskStmt: "task", A.AblateStmt: "ablate",
                 A.MetricStmt: "metric", A.ConfidenceStmt: "confidence", A.SamplesStmt: "samples",
                 A.CircuitStmt: "circuit"}
_REQUIRED = (A.SpecHeader, A.ModelStmt, A.TaskStmt)
_DEFINED_IN_BROKEN = re.compile(r"^[ \t\f]*(?:node|group)[ \t\f]+([A-Za-z_][A-Za-z0-9_]*)", re.M)


def _first_line(text: str, width: int = 200) -> str:
    """What is kept of a text too large to parse: enough to show the line a diagnostic points at."""
    end = text.find("\n", 0, width)
    return text[: end if end >= 0 else width]


def _uses(statement) -> list[A.NameRef]:
    """Names a statement refers to (edges, group members, the nodes a claim is about)."""
    if isinstance(statement, A.GroupDef | A.EdgePath):
        return [m for m in statement.members if isinstance(m, A.NameRef)]
    if isinstance(statement, A.Claim):
        body = statement.body
        members = {A.RoleBody: lambda: [body.subject], A.EdgeBody: lambda: [body.source, body.target]}.get(type(body))
        return [m for m in members() if isinstance(m, A.NameRef)] if members else []
    return []


@dataclass
class _FileResult:
    statements: list
    end_comments: list[str]
    exports: dict[str, A.NodeDef | A.GroupDef]
    broken: set[str]  # names that statements with syntax errors may have defined
    incomplete: bool = False  # a file it includes (at any depth) was not read: it may define more


class _Session:
    """One parse of a spec and everything it includes: sources, diagnostics, included files."""

    def __init__(self) -> None:
        self.sources: dict[str, str] = {}
        self.diags: list[Diagnostic] = []
        self.stack: list[tuple[str, str]] = []  # (real path, display name) of files being parsed
        self.done: dict[str, _FileResult] = {}
        self.libraries: list[A.Library] = []
        # what the limits count, over the spec and all its includes
        self.statements = 0
        self.tokens = 0
        self.errors = 0
        self.suggestions = 0
        self.stopped = False  # a limit was reached: the rest is unread, so names it defines are unknown

    def run_main(self, text: str, filename: str) -> ParseResult:
        key = os.path.realpath(filename) if os.path.isfile(filename) else f"<{filename}>"
        result = self.parse_text(text, filename, key, library=False)
        spec = A.Spec(tuple(result.statements), tuple(self.libraries), tuple(result.end_comments), file=filename)
        rank = {name: i for i, name in enumerate(self.sources)}
        diags = sorted(set(self.diags), key=lambda d: (rank.get(d.file, len(rank)), d.line, d.col, d.code, d.message))
        ok = not any(d.is_error for d in diags)
        return ParseResult(spec if ok else None, diags, self.sources, spec)

    def internal_error(self, filename: str, exc: Exception) -> ParseResult:
        diag = Diagnostic(filename, 1, 1, 1, 1, "error", "E999", f"internal error in the parser: {type(exc).__name__}: {exc}",
                          "this is a bug in circuitspec; please report it with the spec file")
        return ParseResult(None, [*self.diags, diag], self.sources)

    def parse_text(self, text: str, file: str, key: str, library: bool) -> _FileResult:
        too_large = self.too_large(text, file)
        if too_large:
            self.sources[file] = _first_line(text)
            self.stop(too_large)
            return _FileResult([], [], {}, set(), incomplete=True)
        text = normalize_newlines(text).removeprefix("\ufeff")
        self.sources[file] = text
        lines = text.split("\n")
        chunks, end_comments, stray = _split(lines)
        for number in stray:
            indent = len(lines[number - 1]) - len(lines[number - 1].lstrip(" \t\f"))
            self.diags.append(Diagnostic(file, number, 1, number, indent + 1, "error", "E005", "unexpected indentation",
                                         "an indented line continues the statement above it, and there is none; remove the indentation"))
        statements, broken, broken_words = [], set(), set()
        for chunk in chunks:
            if self.stopped:
                break
            parser = _ChunkParser(file, chunk.first, "\n".join(lines[chunk.first - 1 : chunk.last]))
            limit = self.over_limit(parser)
            if limit:
                self.stop(limit)
                break
            statement, diags = _parse_statement(file, chunk.first, parser.text)
            self.diags.extend(diags)
            self.errors += sum(d.is_error for d in diags)
            if statement is None:
                broken.update(_DEFINED_IN_BROKEN.findall(parser.text))
                broken_words.add(parser.first_word())
                continue
            statements.append(self.attach_trivia(statement, chunk, lines))
        self.stack.append((key, file))
        try:
            exports, broken, incomplete = self.check(statements, file, library, broken, broken_words)
        finally:
            self.stack.pop()
        return _FileResult(statements, end_comments, exports, broken, incomplete)

    # -- limits

    @staticmethod
    def too_large(text: str, file: str) -> Diagnostic | None:
        """E007 for a text past the size or line limit, checked before any work that grows with it."""
        size = len(text) if len(text) > limits.MAX_FILE_BYTES else len(text.encode("utf-8", "surrogatepass"))
        if size > limits.MAX_FILE_BYTES:
            what = f"larger than {limits.size_text(limits.MAX_FILE_BYTES)}"
        elif normalize_newlines(text).count("\n") + 1 > limits.MAX_LINES:  # CR alone ends a line too
            what = f"longer than {limits.MAX_LINES:,} lines"
        else:
            return None
        return Diagnostic(file, 1, 1, 1, 1, "error", "E007", f"`{file}` is {what}, the most a .circ file may be",
                          "check that this is the file you meant; a spec this size is not hand-written")

    def over_limit(self, parser: _ChunkParser) -> Diagnostic | None:
        """E008 once enough errors are shown, E007 when this statement would pass the statement or
        token limit; either way the parser stops before it (the counts include every included file)."""
        span = parser.first_line()
        if self.errors >= limits.MAX_ERRORS:
            return error(span, "E008", f"{self.errors} errors so far: `{span.file}` is not checked from line {span.line} on",
                         "fix the errors above and run again")
        self.statements += 1
        self.tokens += count_tokens(parser.text, limits.MAX_TOKENS - self.tokens)
        if self.statements > limits.MAX_STATEMENTS:
            what = f"{limits.MAX_STATEMENTS:,} statements"
        elif self.tokens > limits.MAX_TOKENS:
            what = f"{limits.MAX_TOKENS:,} tokens"
        else:
            return None
        return error(span, "E007", f"the spec is too large: here it passes {what} (its included files count too); "
                                   "the rest is not checked", "split it into smaller specs; real specs are far inside this limit")

    def stop(self, diagnostic: Diagnostic) -> None:
        self.diags.append(diagnostic)
        self.stopped = True

    def may_suggest(self) -> bool:
        """Whether another did-you-mean search fits the budget (each one compares against every name)."""
        self.suggestions += 1
        return self.suggestions <= limits.MAX_SUGGESTIONS

    @staticmethod
    def attach_trivia(statement, chunk: _Chunk, lines: list[str]):
        inner = list(chunk.inner)
        trailing = None
        for number in range(chunk.first, chunk.last + 1):
            if _is_trivia(lines[number - 1]):
                continue  # already in chunk.inner
            _, comment = split_comment(lines[number - 1])
            if comment is None:
                continue
            if number == chunk.last:
                trailing = comment
            else:
                inner.append((number, comment))
        leading = tuple(chunk.leading) + tuple(text for _, text in sorted(inner))
        return replace(statement, trivia=A.Trivia(leading, trailing))

    # -- whole-file checks

    def check(self, statements: list, file: str, library: bool, broken: set[str],
              broken_words: set[str]) -> tuple[dict, set[str], bool]:
        """Names, headers and labels of one file; returns its definitions (included ones too), the
        names that broken statements (here or in included files) may have defined, and whether an
        include (at any depth) could not be read."""
        defined: dict[str, A.NodeDef | A.GroupDef] = {}
        later = {s.name: s for s in reversed(statements) if isinstance(s, (A.NodeDef, A.GroupDef))}
        headers: dict[type, A.Statement] = {}
        labels: dict[str, A.Claim] = {}
        circuit_started = None
        incomplete = False
        broken = set(broken)
        for statement in statements:
            if library and not isinstance(statement, A.LIBRARY_TYPES):
                word = _HEADER_WORDS.get(type(statement), "claim")
                self.diags.append(error(statement.span, "E403", f"`{word}` is not allowed in an included file",
                                        "included files share nodes, groups and edges; keep the header and claims in the spec"))
                continue
            if isinstance(statement, A.IncludeFile):
                included = self.include(statement, file, defined)
                if included is None:
                    incomplete = True  # names it would define are unknown: do not call them unknown
                else:
                    broken |= included
                continue
            if type(statement) in _HEADER_WORDS:
                self.check_header(statement, headers, circuit_started)
            elif circuit_started is None:
                circuit_started = statement
            for use in _uses(statement):
                self.check_use(use, defined, later, broken, incomplete)
            if isinstance(statement, (A.NodeDef, A.GroupDef)):
                self.define(statement, defined)
            if isinstance(statement, A.Claim) and statement.label:
                if statement.label in labels:
                    first = labels[statement.label].span
                    self.diags.append(error(statement.label_span, "E108", f"a claim labelled `{statement.label}` already exists",
                                            f"the first is at line {first.line}; labels name claims in reports, so keep them unique"))
                else:
                    labels[statement.label] = statement
        if not library:
            self.check_spec(statements, headers, file, broken_words)
        return defined, broken, incomplete

    def check_header(self, statement, headers: dict, circuit_started) -> None:
        word = _HEADER_WORDS[type(statement)]
        kind = type(statement)
        if kind in headers:
            first = headers[kind].span
            self.diags.append(error(statement.span, "E104", f"a second `{word}` statement",
                                    f"the first is at line {first.line}; a spec has one `{word}`"))
        else:
            headers[kind] = statement
        if circuit_started is not None:
            self.diags.append(error(statement.span, "E106", f"`{word}` comes after the circuit (line {circuit_started.span.line})",
                                    "header statements (spec, model, task and the defaults) go at the top, so every claim visibly inherits them"))

    def check_use(self, use: A.NameRef, defined: dict, later: dict, broken: set[str], incomplete: bool) -> None:
        if use.name in defined or use.name in broken or use.name in A.BUILTIN_NAMES:
            return
        if use.name in later and later[use.name].span.line >= use.span.line:
            if later[use.name].span.line == use.span.line:
                self.diags.append(error(use.span, "E103", f"`{use.name}` is used in its own definition",
                                        "a group lists other nodes and groups, not itself"))
                return
            where = later[use.name].span.line
            self.diags.append(error(use.span, "E103", f"`{use.name}` is used before its definition",
                                    f"it is defined at line {where}; move that definition above line {use.span.line}"))
            return
        if incomplete or self.stopped:
            return
        close = None
        if self.may_suggest():
            known = sorted(set(defined) | set(A.BUILTIN_NAMES) | {n for n, d in later.items() if d.span.line != use.span.line})
            close = difflib.get_close_matches(use.name, known, n=1, cutoff=0.6)
        hint = f"did you mean `{close[0]}`?" if close else (
            f"define it first with `node {use.name} = HOOK[INDEX]` or `group {use.name} = {{...}}`")
        self.diags.append(error(use.span, "E102", f"unknown name `{use.name}`", hint))

    def define(self, statement, defined: dict) -> None:
        if statement.name in A.BUILTIN_NAMES:
            self.diags.append(error(statement.name_span or statement.span, "E101", f"`{statement.name}` is a built-in name",
                                    f"`{statement.name}` is {A.BUILTIN_NAMES[statement.name]}; choose another name"))
            return
        first = defined.get(statement.name)
        if first is None:
            defined[statement.name] = statement
            return
        where = f"line {first.span.line}" if first.span.file == statement.span.file else str(first.span)
        self.diags.append(error(statement.name_span or statement.span, "E101", f"`{statement.name}` is already defined",
                                f"the first definition is at {where}; choose another name"))

    def check_spec(self, statements: list, headers: dict, file: str, broken_words: set[str]) -> None:
        # a header statement with a syntax error (or a misspelt keyword) is reported already
        missing = [_HEADER_WORDS[k] for k in _REQUIRED if k not in headers
                   and not difflib.get_close_matches(_HEADER_WORDS[k], broken_words, n=1, cutoff=0.6)]
        if missing and not self.stopped:
            examples = {"spec": 'spec NAME "description"', "model": 'model "py-sparse-small"', "task": "task closing_quote"}
            names = _join([f"`{m}`" for m in missing], "and")
            self.diags.append(Diagnostic(file, 1, 1, 1, 1, "error", "E105", f"missing {names} statement{'s' * (len(missing) > 1)}",
                                         "start the spec with " + _join([f"`{examples[m]}`" for m in missing], "and")))
        has_default = A.AblateStmt in headers or "ablate" in broken_words
        for statement in statements:
            if isinstance(statement, A.Claim) and statement.ablation is None and not has_default:
                self.diags.append(error(statement.span, "E207", "this claim states no ablation and the header sets no default",
                                        "add `ablate mean over task` (or zero, resample from task) to the header, "
                                        "or `ablate ...` to this claim: the ablation changes verdicts"))

    # -- includes

    def include(self, statement: A.IncludeFile, file: str, defined: dict) -> set[str] | None:
        """Parse (once) and merge an included file's definitions; ``None`` when it, or a file it
        includes, could not be read (so what it defines is not known)."""
        path = statement.path
        base = os.path.dirname(file) if not file.startswith("<") else ""
        shown = os.path.normpath(os.path.join(base, path)) if path else path
        try:
            key = os.path.realpath(shown) if path else ""
        except (OSError, ValueError):
            key = shown
        keys = [k for k, _ in self.stack]
        if key in keys:
            cycle = [name for _, name in self.stack[keys.index(key):]]
            chain = _chain([*cycle, shown])
            self.diags.append(error(statement.span, "E402", f"include cycle: {chain}",
                                    "remove one of these includes; shared definitions belong in a file that includes nothing above it"))
            return None
        if key not in self.done:
            if self.stopped:
                return None  # a limit was reached: nothing more is read
            if len(self.stack) >= limits.MAX_INCLUDE_DEPTH:
                chain = _chain([name for _, name in self.stack] + [shown])
                self.diags.append(error(statement.span, "E405",
                                        f"includes nested more than {limits.MAX_INCLUDE_DEPTH} files deep: {chain}",
                                        "include the shared files from the spec directly instead of through a chain"))
                return None
            if not path or "\0" in path or not os.path.exists(shown):
                hint = self.missing_hint(shown, path) if self.may_suggest() else "paths are relative to the including file"
                self.diags.append(error(statement.span, "E401", f"cannot find included file `{path}`", hint))
                return None
            text = read_source(shown)
            if isinstance(text, Unreadable):
                self.diags.append(error(statement.span, text.code, text.message, text.hint or "include a .circ file (UTF-8 text)"))
                return None
            result = self.parse_text(text, shown, key, library=True)
            self.done[key] = result
            self.libraries.append(A.Library(shown, tuple(result.statements)))
        for definition in self.done[key].exports.values():
            first = defined.get(definition.name)
            if first is None:
                defined[definition.name] = definition
            elif first is not definition:
                self.diags.append(error(statement.span, "E101", f"`{definition.name}` from `{path}` is already defined",
                                        f"the first definition is at {first.span}; rename one of them"))
        return None if self.done[key].incomplete else self.done[key].broken

    @staticmethod
    def missing_hint(shown: str, written: str) -> str:
        """Where we looked, and a near-miss .circ file in that folder written as the include would."""
        folder = os.path.dirname(shown) or "."
        try:
            siblings = sorted(n for n in os.listdir(folder) if n.endswith(".circ"))
        except (OSError, ValueError):
            siblings = []
        stems = {n[: -len(".circ")]: n for n in siblings}
        wanted = os.path.basename(shown).removesuffix(".circ")
        close = difflib.get_close_matches(wanted, list(stems), n=1, cutoff=0.6)
        hint = f"looked for `{shown}`; paths are relative to the including file"
        if close:
            hint += f"; did you mean `{os.path.join(os.path.dirname(written), stems[close[0]])}`?"
        return hint


def _chain(names: list[str], ends: int = 3) -> str:
    """``a -> b -> c``, with the middle of a long chain left out (a chain can be thousands of files)."""
    if len(names) > 2 * ends + 1:
        names = [*names[:ends], f"... ({len(names) - 2 * ends} more)", *names[-ends:]]
    return " -> ".join(names)
