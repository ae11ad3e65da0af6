"""Diagnostics: what went wrong, where, and how to fix it — as data, as text and as JSON.

Every problem the language layer finds is a :class:`Diagnostic` with a 1-based span; nothing is
raised at the user. :func:`render` prints the compiler-style form (``file:line:col: error[CODE]``,
the source line, a caret/tilde underline, a hint); :meth:`Diagnostic.to_json` is the machine form.
Codes are stable (golden tests and docs list them); :data:`CODES` is the catalogue, and :data:`HINTS`
gives every code a hint for the diagnostics whose call site has nothing more specific to say.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Iterable, Literal, Mapping

from .limits import MAX_SHOWN

Severity = Literal["error", "warning"]

#: Characters of a source line shown under a diagnostic's header; a longer line is shown in part.
WIDTH = 200

#: Every code this layer emits, with a short title (docs/language.md has the same table).
CODES: dict[str, str] = {
    "E001": "syntax error",
    "E002": "unexpected character",
    "E003": "unterminated string",
    "E004": "invalid escape in a string",
    "E005": "unexpected indentation",
    "E006": "invalid number",
    "E007": "input too large",
    "E008": "too many errors",
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
    "E209": "unknown robustness",
    "E210": "unknown circuit kind",
    "E301": "invalid index",
    "E302": "node names more than one channel",
    "E303": "empty pattern",
    "E401": "included file not found",
    "E402": "include cycle",
    "E403": "statement not allowed in an included file",
    "E404": "unreadable file",
    "E405": "includes nested too deeply",
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
    "W514": "per-input claim about a node outside the circuit",
    "E515": "unknown counterfactual feature",
    "E516": "counterfactual feature of another task",
    "E517": "no counterfactual partners",
    "E518": "edge claim about an edge outside the circuit",
    "E519": "token literal is not one token of the model's tokenizer",
    "E999": "internal error",
}

#: What to do about each code, in general; a call site that knows more passes its own hint.
HINTS: dict[str, str] = {
    "E001": "each statement has one form (docs/language.md, 'Grammar'); fix it, or turn the line into a comment with `#`",
    "E002": "remove it; text that is not a name or a number goes in quotes",
    "E003": "close the string on the same line with the quote that opened it",
    "E004": "known escapes: \\n \\t \\r \\0 \\\\ \\\" \\' \\xHH \\uHHHH; write `\\\\` for a backslash",
    "E005": "an indented line continues the statement above it; remove the indentation",
    "E006": "numbers are written with ASCII digits (`3`, `-0.5`, `1e-3`); indices and counts are whole numbers",
    "E007": "a spec this size is not hand-written: check that this is the file you meant, or split it into smaller specs",
    "E008": "fix the errors above and run again; the rest of the input was not checked",
    "E101": "choose another name: each node and group is defined once",
    "E102": "define it first with `node NAME = HOOK[INDEX]` or `group NAME = {...}`",
    "E103": "move the definition above the first line that uses it",
    "E104": "keep one of them: a spec has each header statement once",
    "E105": 'start the spec with `spec NAME "description"`, `model "..."` and `task NAME`',
    "E106": "move header statements above the first node, group, edge and claim",
    "E107": "keep one of the two clauses",
    "E108": "give each claim its own label: reports name claims by it",
    "E201": "claims are `sufficient faithfulness >= T`, `necessary faithfulness <= T`, `minimal each node drop >= T`, "
            "`edge A -> B drop >= T`, `NODE > T` or `logit[...] > ...`",
    "E202": "metrics: `logit_diff`, `accuracy`, `bce`, `kl`",
    "E203": "ablations: `zero`, `mean over task`, `mean over corpus`, `resample from task`, `resample from corrupted(FEATURE)`",
    "E204": "write `ablate zero`, `ablate mean over task`, `ablate resample from task` (these two optionally with `per position`) "
            "or `ablate resample from corrupted(FEATURE)`",
    "E205": "sufficient, minimal, edge and `ablating ... keeps` claims compare with `>=` or `>`, necessary claims with `<=` or `<`",
    "E206": "remove the clause: docs/language.md lists the clauses each kind of claim takes",
    "E207": "add `ablate ...` to the header (the default of every claim) or to this claim",
    "E208": "confidence lies strictly between 0 and 1 (e.g. `0.95`); sample counts are at least 1",
    "E209": "write `robustness adversarial` (the default), `robustness random` or `robustness none`",
    "E210": "write `circuit nodes` (the default: every weight between kept nodes) or `circuit edges` (only the stated edges)",
    "E301": "an index is a whole number `i`, a range `a:b` with a < b, `*` or a quoted token, each listed once",
    "E302": "a node is one channel; use `group` for several",
    "E303": "patterns are written like node names, e.g. `blocks.0.mlp.hook_post[*]`: `*` is any run of characters, `?` one",
    "E401": "paths are relative to the including file",
    "E402": "remove one of the includes in the cycle; shared definitions belong in a file that includes nothing above it",
    "E403": "included files share nodes, groups and edges; keep the header and claims in the spec",
    "E404": "include a regular file of UTF-8 text (not a folder, device or pipe)",
    "E405": "include the shared files from the spec directly instead of through a long chain",
    "E501": "`circuitspec models` lists the shipped models; a path must be a checkpoint folder",
    "E502": "`circuitspec tasks` lists the tasks",
    "E503": "hook points look like `blocks.0.mlp.hook_post`, `blocks.1.attn.hook_v` or `hook_logits`",
    "E504": "indices start at 0 and stay below the size of the hook (or of the vocabulary)",
    "E505": "per-head hooks (q, k, v, z, pattern) need `head=`; the others take none",
    "E506": "no path of non-zero weights joins the two; check the layer order and the channel indices",
    "E507": "`circuitspec tasks` lists every task's features",
    "E508": "`circuitspec tasks` lists every task's positions",
    "E509": "token literals index hook_logits and hook_tokens",
    "E510": "circuit nodes are residual, q/k/v/z and MLP channels; logits, tokens and patterns appear only in edges and claims",
    "E511": "docs/language.md lists the ablations the engine supports",
    "E512": "the checkpoint does not match what it claims to be: retrain it or copy it again",
    "E513": "compute them with `circuitspec means MODEL`",
    "W514": "add the node to the circuit (a `node` or `group`), or say `in full model` to read the claim in the unablated model",
    "E515": "`circuitspec tasks` lists every task's features; `corrupted(FEATURE)` names one of the spec's task",
    "E516": "partners come from the spec's own task: name one of its features (`circuitspec tasks`)",
    "E517": "a partner keeps the input's length and named positions; choose a feature that can change without moving "
            "them, or give the task a pairing function (`Task.counterfactual`)",
    "E518": "an edge claim is about an edge of the circuit: add its ends (and, for an edge-level circuit, `edge A -> B`) to the spec",
    "E519": "a token literal is one token of the model's tokenizer (of a byte-level model: one ASCII character, or an escape "
            "like `'\\n'`); a token id works too",
    "E999": "this is a bug in circuitspec; please report it with the spec file",
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

    def __post_init__(self) -> None:
        if not self.hint and self.code in HINTS:  # every diagnostic says what to do
            object.__setattr__(self, "hint", HINTS[self.code])

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


def warning(span, code: str, message: str, hint: str | None = None) -> Diagnostic:
    """As :func:`error`, but it does not stop the spec from resolving or verifying."""
    return Diagnostic(span.file, span.line, span.col, span.end_line, span.end_col, "warning", code, message, hint)


def source_lines(text: str) -> list[str]:
    """The lines positions refer to: ``\\n`` separates lines (the parser normalises CR and CRLF)."""
    return normalize_newlines(text).split("\n")


def normalize_newlines(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n")


def render(diag: Diagnostic, source: str | None = None) -> str:
    """The human form: header, the source line with an underline of the span, and the hint."""
    return _render(diag, source_lines(source) if source is not None else [])


def _render(diag: Diagnostic, lines: list[str]) -> str:
    out = [diag.header()]
    if 1 <= diag.line <= len(lines):
        raw = lines[diag.line - 1]
        lo, hi = _window(len(raw), diag.col - 1)
        before = "\N{HORIZONTAL ELLIPSIS}" if lo > 0 else ""
        after = "\N{HORIZONTAL ELLIPSIS}" if hi < len(raw) else ""
        view = raw[lo:hi]
        text = before + view.expandtabs(4) + after
        start = len(before) + len(view[: diag.col - 1 - lo].expandtabs(4))
        if diag.end_line == diag.line:
            stop = len(before) + len(view[: max(diag.end_col - 1, diag.col - 1) - lo].expandtabs(4))
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


def _window(length: int, col: int) -> tuple[int, int]:
    """The slice of a source line to show: all of it, or WIDTH characters from a little before ``col``
    (a generated one-line file can be a megabyte long, and is shown once per diagnostic)."""
    if length <= WIDTH:
        return 0, length
    lo = min(max(col - WIDTH // 4, 0), length - WIDTH)
    return lo, lo + WIDTH


def render_all(diagnostics: Iterable[Diagnostic], sources: Mapping[str, str], limit: int | None = MAX_SHOWN) -> str:
    """The first ``limit`` diagnostics in full (blank-line separated), a line counting the rest, and a
    one-line total. Each source is split into lines once, so this is linear in the input."""
    diagnostics = list(diagnostics)
    shown = diagnostics if limit is None else diagnostics[:limit]
    lines: dict[str, list[str]] = {}
    blocks = []
    for diag in shown:
        if diag.file not in lines:
            source = sources.get(diag.file)
            lines[diag.file] = source_lines(source) if source is not None else []
        blocks.append(_render(diag, lines[diag.file]))
    if len(diagnostics) > len(shown):
        blocks.append(f"\N{HORIZONTAL ELLIPSIS} and {len(diagnostics) - len(shown)} more")
    errors = sum(d.is_error for d in diagnostics)
    warnings = len(diagnostics) - errors
    summary = f"{errors} error{'s' * (errors != 1)}"
    if warnings:
        summary += f", {warnings} warning{'s' * (warnings != 1)}"
    return "\n\n".join(blocks + [summary]) + "\n"


def _printable(text: str) -> str:
    """Control characters would garble the terminal; show them as one visible character each."""
    return "".join(c if c.isprintable() or c == " " else "\N{REPLACEMENT CHARACTER}" for c in text)
