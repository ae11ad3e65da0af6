"""How much input the language layer accepts, so that `check` answers in about a second on any input.

Real specs are far inside these limits: the shipped ones are under 11 KiB, 50 statements and 1,400
tokens with one level of includes, and the largest circuit `discover` has found (2,700 nodes, written
as index lists) would be roughly 6,000 tokens. Past a limit the parser stops with one diagnostic that
says which limit and where, instead of spending minutes on a generated or corrupted file.
docs/language.md lists the limits.
"""

from __future__ import annotations

import re

#: Largest file read (spec or included), in bytes; also the largest text given to ``parse_spec``.
MAX_FILE_BYTES = 1 << 20
#: Lines of one file, comments and blank lines included.
MAX_LINES = 50_000
#: Statements of a spec and everything it includes, together.
MAX_STATEMENTS = 1_000
#: Tokens (names, numbers, strings, punctuation; comments not counted) of a spec and its includes.
MAX_TOKENS = 20_000
#: Files in one include chain (the spec itself is the first).
MAX_INCLUDE_DEPTH = 32
#: Syntax errors after which the rest of the input is not parsed (nobody reads past the first screens).
MAX_ERRORS = 100
#: Near-miss suggestions ("did you mean ...?") searched per parse; each compares against every name.
MAX_SUGGESTIONS = 200
#: Work that resolving one spec's edges and patterns against the model may take, in name tests
#: (one name matched against a pattern); following one weight of the model's graph costs FOLLOW_COST.
MAX_RESOLVE_WORK = 1_000_000
FOLLOW_COST = 4
#: Diagnostics printed in full by ``render_all``; the rest are counted in one line.
MAX_SHOWN = 50

# What the grammar's lexer would read as one token, near enough to count them without lexing.
_TOKEN = re.compile(r"""#[^\n]*|"[^"\\\n]*(?:\\.[^"\\\n]*)*"?|'[^'\\\n]*(?:\\.[^'\\\n]*)*'?|[A-Za-z0-9_.]+|->|[<>=!]=|\S""")


def count_tokens(code: str, most: int) -> int:
    """Tokens in ``code``, comments left out (a string is one token, even unterminated); counting
    stops past ``most``, so a line of a million brackets costs no more than the limit it breaks."""
    count = 0
    for match in _TOKEN.finditer(code):
        if match.group()[0] != "#":
            count += 1
            if count > most:
                break
    return count


def size_text(n: int) -> str:
    """``1 MiB`` rather than ``1048576``: sizes are quoted to people."""
    if n < 1024:
        return f"{n} bytes"
    value, unit = n / 1024, "KiB"
    for bigger in ("MiB", "GiB"):
        if value < 1024:
            break
        value, unit = value / 1024, bigger
    return f"{value:.3g} {unit}"


class OverBudget(Exception):
    """Raised by :meth:`WorkBudget.spend` when the work allowed is used up."""


class WorkBudget:
    """Work left for one resolution; once spent, every further :meth:`spend` raises OverBudget."""

    def __init__(self, work: int = MAX_RESOLVE_WORK) -> None:
        self.left = work

    @property
    def spent(self) -> bool:
        return self.left < 0

    def spend(self, work: int) -> None:
        self.left -= work
        if self.left < 0:
            raise OverBudget
