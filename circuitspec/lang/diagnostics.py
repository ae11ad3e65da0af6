"""Diagnostics: what went wrong, where, and how to fix it — as data, as text and as JSON.

Every problem the language layer finds is a :class:`Diagnostic` with a 1-based span; nothing is
raised at the user. :func:`render` prints the compiler-style form (``file:line:col: error[CODE]``,
the source line, a caret/tilde underline, a hint); :meth:`Diagnostic.to_json` is the machine form.
Codes are stable (golden tests and docs list them); :data:`CODES` is the catalogue.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Iterable, Literal, Mapping

Severity = Literal["error", "warning"]

#: Every code this layer emits, with a short title (docs/language.md has the same table).
CODES: dict[str, str] = {
    "E001": "syntax error",
    "E002": "unexpected character",
    "E003": "unterminated string",
    "E004": "invalid escape in a string",
    "E005": "unexpected indentation",
    "E006": "invalid number",
    "E101": "duplicate name",
    "E102": "unknown name",
    "E103": "name used before its definition",
    "E104": "duplicate header statement",
    "E105": "missing header statement",
    "E106": "header statement after the circuit",
    "E107": "duplicate claim clause",
    "E108": "duplicate claim label",
    "E201": "unknown claim kind",
    "E202": "unknown metric",
    "E203": "unknown ablation",
    "E204": "malformed ablation",
    "E205": "comparison does not fit the claim",
    "E206": "clause does not fit the claim",
    "E207": "claim without an ablation",
    "E208": "value out of range",
    "E301": "invalid index",
    "E302": "node names more than one channel",
    "E303": "empty pattern",
    "E401": "included file not found",
    "E402": "include cycle",
    "E403": "statement not allowed in an included file",
    "E404": "unreadable file",
    "E501": "model not found or unreadable",
    "E502": "unknown task",
    "E503": "unknown hook point",
    "E504": "index out of range",
    "E505": "head selector missing or not allowed",
    "E506": "edge that the model's weights do not have",
    "E507": "unknown task feature",
    "E508": "unknown task position",
    "E509": "invalid token literal",
    "E510": "not a circuit node",
    "E511": "not supported by the engine",
    "E512": "model checkpoint corrupt or mismatched",
    "E513": "stored pretraining means missing or stale",
    "E999": "internal error",
}


@dataclass(frozen=True)
class Diagnostic:
    """One problem at ``file:line:col`` up to ``end_line:end_col`` (1-based, end exclusive)."""

    file: str
    line: int
    col: int
    end_line: int
    end_col: int
    severity: Severity
    code: str
    message: str
    hint: str | None = None

    @property
    def is_error(self) -> bool:
        return self.severity == "error"

    def to_json(self) -> dict:
        return asdict(self)

    def header(self) -> str:
        return f"{self.file}:{self.line}:{self.col}: {self.severity}[{self.code}]: {self.message}"


def error(span, code: str, message: str, hint: str | None = None) -> Diagnostic:
    """A diagnostic at ``span`` (anything with file/line/col/end_line/end_col attributes)."""
    return Diagnostic(span.file, span.line, span.col, span.end_line, span.end_col, "error", code, message, hint)


def source_lines(text: str) -> list[str]:
    """The lines positions refer to: ``\\n`` separates lines (the parser normalises CR and CRLF)."""
    return normalize_newlines(text).split("\n")


def normalize_newlines(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n")


def render(diag: Diagnostic, source: str | None = None) -> str:
    """The human form: header, the source line with an underline of the span, and the hint."""
    out = [diag.header()]
    lines = source_lines(source) if source is not None else []
    if 1 <= diag.line <= len(lines):
        raw = lines[diag.line - 1]
        text = raw.expandtabs(4)
        start = len(raw[: diag.col - 1].expandtabs(4))
        if diag.end_line == diag.line:
            stop = len(raw[: max(diag.end_col - 1, diag.col - 1)].expandtabs(4))
        else:
            stop = len(text.rstrip())
        width = max(stop - start, 1)
        gutter = str(diag.line)
        pad = " " * len(gutter)
        out.append(f" {gutter} | {_printable(text)}")
        out.append(f" {pad} | {' ' * start}^{'~' * (width - 1)}")
    if diag.hint:
        out.append(f"  hint: {diag.hint}")
    return "\n".join(out)


def render_all(diagnostics: Iterable[Diagnostic], sources: Mapping[str, str]) -> str:
    """All diagnostics, blank-line separated, followed by a one-line count."""
    diagnostics = list(diagnostics)
    blocks = [render(d, sources.get(d.file)) for d in diagnostics]
    errors = sum(d.is_error for d in diagnostics)
    warnings = len(diagnostics) - errors
    summary = f"{errors} error{'s' * (errors != 1)}"
    if warnings:
        summary += f", {warnings} warning{'s' * (warnings != 1)}"
    return "\n\n".join(blocks + [summary]) + "\n"


def _printable(text: str) -> str:
    """Control characters would garble the terminal; show them as one visible character each."""
    return "".join(c if c.isprintable() or c == " " else "\N{REPLACEMENT CHARACTER}" for c in text)
