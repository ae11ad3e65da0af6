"""The syntax tree of a .circ file: frozen dataclasses, each carrying the source span it came from.

Spans (and the other ``*_span`` fields) are excluded from ``==`` so that two trees compare equal when
they say the same thing, wherever it was written: ``parse(format(x)) == parse(x)`` is a plain ``==``.
Comments are kept as :class:`Trivia` on the statement they precede, and do take part in ``==``.

Model references (:class:`Ref`) are left unevaluated but structured: the hook name as written and the
index selectors, so the resolver (which knows the model) expands ranges and checks bounds.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Iterator, Union

from .globs import glob_regex  # resolve and show import it from here too

CLAIM_KINDS = ("sufficient", "necessary", "minimal")
#: Claims judged input by input, on the share of inputs where they hold (the others are judged on
#: aggregate faithfulness).
PER_INPUT_KINDS = ("role", "behaviour", "agreement")
METRICS = ("logit_diff", "accuracy", "bce", "kl")
ABLATIONS = ("zero", "mean", "resample")
#: The word that introduces an ablation's distribution: ``mean over task``, ``resample from task``
#: (``mean over corpus``: the pretraining distribution).
SOURCE_WORD = {"mean": "over", "resample": "from"}
#: Comparisons that make sense for each claim kind (role and behaviour claims allow all of CMP_OPS).
CLAIM_OPS = {"sufficient": (">=", ">"), "necessary": ("<=", "<"), "minimal": (">=", ">"), "unneeded": (">=", ">"),
             "edge": (">=", ">")}
CMP_OPS = (">=", "<=", "==", "!=", ">", "<")
#: What a sufficiency claim must survive besides everything outside ablated at once: partial ablations
#: chosen against the circuit and random ones (the default), random ones only, or nothing more.
ROBUSTNESS = ("adversarial", "random", "none")
DEFAULT_ROBUSTNESS = "adversarial"
#: What a circuit is made of (`circuit nodes|edges`): its nodes and every weight between them (the default),
#: or its nodes and only the weights of its stated edges (an edge-level circuit).
CIRCUIT_KINDS = ("nodes", "edges")
DEFAULT_CIRCUIT = "nodes"
DEFAULT_METRIC = "logit_diff"
DEFAULT_CONFIDENCE = 0.95
#: Where role claims read their node when no ``at position`` clause says otherwise.
DEFAULT_POSITION = "answer"
#: Names every spec has without defining them.
BUILTIN_NAMES = {"logits": "the model's output: every logit (`edge reader -> logits`)"}


@dataclass(frozen=True)
class Span:
    """``file:line:col`` to ``end_line:end_col``; 1-based, the end is exclusive."""

    file: str
    line: int
    col: int
    end_line: int
    end_col: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.col}"


NOWHERE = Span("<generated>", 1, 1, 1, 1)


def _aux_span():
    """A secondary span (of a name or a clause) that may be absent."""
    return field(default=None, compare=False, repr=False, kw_only=True)


@dataclass(frozen=True)
class Node:
    """Anything in the tree: it knows where it was written."""

    span: Span = field(default=NOWHERE, compare=False, repr=False, kw_only=True)


@dataclass(frozen=True)
class Trivia:
    """Comments around a statement: full lines before it (``""`` marks one blank line) and one trailing."""

    leading: tuple[str, ...] = ()
    trailing: str | None = None


NO_TRIVIA = Trivia()


@dataclass(frozen=True)
class Statement(Node):
    trivia: Trivia = field(default=NO_TRIVIA, kw_only=True)


# ---- model references ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Index(Node):
    """One channel (or head) by number."""

    value: int

    def __str__(self) -> str:
        return str(self.value)


@dataclass(frozen=True)
class Range(Node):
    """Channels ``start, start+1, ..., stop-1`` (half-open, like a Python slice)."""

    start: int
    stop: int

    def __str__(self) -> str:
        return f"{self.start}:{self.stop}"


@dataclass(frozen=True)
class All(Node):
    """Every channel (or head) of the hook: ``*``."""

    def __str__(self) -> str:
        return "*"


@dataclass(frozen=True)
class TokenLiteral(Node):
    """A vocabulary entry written as text, e.g. ``'"'`` in ``hook_logits['"']``."""

    text: str

    def __str__(self) -> str:
        return quote(self.text)


Selector = Union[Index, Range, All, TokenLiteral]


@dataclass(frozen=True)
class Ref(Node):
    """A model-internal reference: ``hook[head=H, sel, sel, ...]`` (``head`` only for per-head hooks)."""

    hook: str
    head: Index | Range | All | None = None
    channels: tuple[Selector, ...] = ()

    def __str__(self) -> str:
        parts = ([f"head={self.head}"] if self.head is not None else []) + [str(c) for c in self.channels]
        return f"{self.hook}[{', '.join(parts)}]"

    @property
    def is_single(self) -> bool:
        """Whether this names exactly one channel (what ``node`` requires)."""
        head_ok = self.head is None or isinstance(self.head, Index)
        one = len(self.channels) == 1 and isinstance(self.channels[0], (Index, TokenLiteral))
        return head_ok and (one or (not self.channels and self.head is not None))


@dataclass(frozen=True)
class NameRef(Node):
    """A use of a name defined by ``node`` or ``group``."""

    name: str

    def __str__(self) -> str:
        return self.name


Member = Union[NameRef, Ref]


# ---- header --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Distribution(Node):
    """Inputs an ablation averages or resamples over: the spec's task, another task by name, (``corpus``)
    the model's pretraining corpus, whose means are stored with the checkpoint, or (``corrupted``) each
    input's counterfactual partner: an input of the spec's task that differs in that feature."""

    task: str | None = None
    corpus: bool = False
    corrupted: str | None = None
    feature_span: Span | None = _aux_span()

    def __post_init__(self) -> None:
        if sum((self.corpus, self.task is not None, self.corrupted is not None)) > 1:
            raise ValueError("a distribution is a task, the corpus or corrupted partners, not two of them")

    def __str__(self) -> str:
        if self.corpus:
            return "corpus"
        if self.corrupted is not None:
            return f"corrupted({self.corrupted})"
        return "task" if self.task is None else f"task {self.task}"


@dataclass(frozen=True)
class Ablation(Node):
    """What a removed part carries instead: ``zero``, ``mean over D`` or ``resample from D``."""

    method: str
    distribution: Distribution | None = None
    per_position: bool = False
    method_span: Span | None = _aux_span()

    def __str__(self) -> str:
        text = self.method
        if self.distribution is not None:
            text += f" {SOURCE_WORD.get(self.method, 'over')} {self.distribution}"
        return text + (" per position" if self.per_position else "")


@dataclass(frozen=True)
class SpecHeader(Statement):
    name: str
    description: str | None = None
    name_span: Span | None = _aux_span()


@dataclass(frozen=True)
class ModelStmt(Statement):
    """A shipped model name or a path to a checkpoint."""

    model: str


@dataclass(frozen=True)
class TaskStmt(Statement):
    task: str
    task_span: Span | None = _aux_span()


@dataclass(frozen=True)
class AblateStmt(Statement):
    ablation: Ablation


@dataclass(frozen=True)
class MetricStmt(Statement):
    metric: str
    metric_span: Span | None = _aux_span()


@dataclass(frozen=True)
class ConfidenceStmt(Statement):
    value: float


@dataclass(frozen=True)
class SamplesStmt(Statement):
    value: int


@dataclass(frozen=True)
class CircuitStmt(Statement):
    """``circuit nodes`` or ``circuit edges``: whether the weights between kept nodes that no edge states
    belong to the circuit (nodes) or are ablated with the rest (edges)."""

    kind: str
    kind_span: Span | None = _aux_span()


# ---- circuit -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class NodeDef(Statement):
    """``node NAME = REF "description"``: one channel."""

    name: str
    ref: Ref
    description: str | None = None
    name_span: Span | None = _aux_span()


@dataclass(frozen=True)
class GroupDef(Statement):
    """``group NAME = REF`` or ``group NAME = {member, ...}``: any number of channels."""

    name: str
    members: tuple[Member, ...]
    description: str | None = None
    name_span: Span | None = _aux_span()


@dataclass(frozen=True)
class EdgePath(Statement):
    """``edge a -> b -> c``: the edges a->b and b->c."""

    members: tuple[Member, ...]

    def pairs(self) -> Iterator[tuple[Member, Member]]:
        return zip(self.members, self.members[1:])


@dataclass(frozen=True)
class IncludeFile(Statement):
    """``include "common.circ"``: definitions from another file, relative to this one."""

    path: str


@dataclass(frozen=True)
class IncludeNodes(Statement):
    """``include nodes matching "GLOB"``: every model node whose name matches."""

    pattern: str

    def regex(self) -> re.Pattern[str]:
        return glob_regex(self.pattern)


@dataclass(frozen=True)
class IncludeEdges(Statement):
    """``include edges matching "GLOB" -> "GLOB"``: every model edge whose ends match."""

    source: str
    target: str


# ---- claims --------------------------------------------------------------------------------------

Number = Union[int, float]
Value = Union[str, int, float, bool]


@dataclass(frozen=True)
class FaithfulnessBody(Node):
    """``sufficient faithfulness >= t`` or ``necessary faithfulness <= t``."""

    kind: str
    op: str
    threshold: Number
    kind_span: Span | None = _aux_span()


@dataclass(frozen=True)
class MinimalBody(Node):
    """``minimal each node drop >= t``: removing any one node (edge) costs at least t faithfulness."""

    unit: str
    op: str
    threshold: Number
    kind_span: Span | None = _aux_span()


@dataclass(frozen=True)
class RoleBody(Node):
    """``kind > 0``: a node's (or each group member's) activation against a threshold."""

    subject: Member
    op: str
    threshold: Number


@dataclass(frozen=True)
class Logit(Node):
    """``logit['"']`` or ``logit[34]``: the output logit of one token at the answer position."""

    token: Index | TokenLiteral

    def __str__(self) -> str:
        return f"logit[{self.token}]"


@dataclass(frozen=True)
class BehaviourBody(Node):
    """``logit['"'] > logit["'"]`` or ``logit['"'] > 2.5``."""

    left: Logit
    op: str
    right: Logit | Number


@dataclass(frozen=True)
class AgreementBody(Node):
    """``agrees with model``: the circuit alone prefers the answer the full model prefers (of the task's
    two answers), input by input."""

    def __str__(self) -> str:
        return "agrees with model"


@dataclass(frozen=True)
class UnneededBody(Node):
    """``ablating decoys keeps faithfulness >= 0.9``: the model with only this part ablated (everything else
    kept) keeps at least this faithfulness; the part is not needed."""

    part: Member
    op: str
    threshold: float


@dataclass(frozen=True)
class EdgeBody(Node):
    """``edge a -> b drop >= 0.1``: ablating only the edge from a to b (the rest of the circuit intact) costs at
    least this much faithfulness; the edge carries the effect."""

    source: Member
    target: Member
    op: str
    threshold: Number
    kind_span: Span | None = _aux_span()


ClaimBody = Union[FaithfulnessBody, MinimalBody, RoleBody, BehaviourBody, AgreementBody, UnneededBody, EdgeBody]


@dataclass(frozen=True)
class Condition(Node):
    """``feature OP value``: restricts a claim to task inputs whose feature satisfies it."""

    feature: str
    op: str
    value: Value
    feature_span: Span | None = _aux_span()


@dataclass(frozen=True)
class Claim(Statement):
    """``claim [label:] BODY [when ...] [at position P] [ablate ...] [metric M] [confidence C] [samples N]``.

    Unset settings are inherited from the header; :meth:`Spec.settings` says which.
    """

    label: str | None
    body: ClaimBody
    conditions: tuple[Condition, ...] = ()
    position: str | None = None
    ablation: Ablation | None = None
    metric: str | None = None
    confidence: float | None = None
    samples: int | None = None
    coverage: float | None = None  # `on at least q of inputs` (per-input claims); None: on every input
    every_input: bool = False  # `on every input` written out (the default, kept so fmt does not drop it)
    in_model: bool = False  # `in full model`: a per-input claim read in the unablated model
    robustness: str | None = None  # `robustness adversarial|random|none` (sufficient claims); None: the default
    label_span: Span | None = _aux_span()
    position_span: Span | None = _aux_span()
    metric_span: Span | None = _aux_span()
    confidence_span: Span | None = _aux_span()
    samples_span: Span | None = _aux_span()
    coverage_span: Span | None = _aux_span()
    in_model_span: Span | None = _aux_span()
    robustness_span: Span | None = _aux_span()

    @property
    def kind(self) -> str:
        """``sufficient``, ``necessary``, ``minimal``, ``unneeded``, ``edge``, ``role``, ``behaviour`` or ``agreement``."""
        body = self.body
        if isinstance(body, FaithfulnessBody):
            return body.kind
        if isinstance(body, MinimalBody):
            return "minimal"
        if isinstance(body, AgreementBody):
            return "agreement"
        if isinstance(body, UnneededBody):
            return "unneeded"
        if isinstance(body, EdgeBody):
            return "edge"
        return "role" if isinstance(body, RoleBody) else "behaviour"

    @property
    def name(self) -> str:
        """How reports refer to the claim: its label, else its line."""
        return self.label or f"line {self.span.line}"


AnyStatement = Union[
    SpecHeader, ModelStmt, TaskStmt, AblateStmt, MetricStmt, ConfidenceStmt, SamplesStmt, CircuitStmt,
    NodeDef, GroupDef, EdgePath, IncludeFile, IncludeNodes, IncludeEdges, Claim,
]
HEADER_TYPES = (SpecHeader, ModelStmt, TaskStmt, AblateStmt, MetricStmt, ConfidenceStmt, SamplesStmt, CircuitStmt)
#: What an included file may contain: shared parts of circuits, nothing that makes a spec.
LIBRARY_TYPES = (NodeDef, GroupDef, EdgePath, IncludeFile, IncludeNodes, IncludeEdges)


# ---- files ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Library:
    """An included file: its path as the includer wrote it (joined to the includer's folder)."""

    path: str
    statements: tuple[AnyStatement, ...]


@dataclass(frozen=True)
class ClaimSettings:
    """The ablation, metric, confidence and sample count a claim runs with, and which it inherited."""

    ablation: Ablation | None
    metric: str
    confidence: float
    samples: int | None
    inherited: tuple[str, ...]


@dataclass(frozen=True)
class Spec:
    """A parsed spec file: its own statements in order, plus every file it includes (each once)."""

    statements: tuple[AnyStatement, ...]
    libraries: tuple[Library, ...] = ()
    end_comments: tuple[str, ...] = ()
    file: str = field(default="<string>", compare=False)

    def _first(self, kind):
        return next((s for s in self.statements if isinstance(s, kind)), None)

    @property
    def name(self) -> str | None:
        header = self._first(SpecHeader)
        return header.name if header else None

    @property
    def description(self) -> str | None:
        header = self._first(SpecHeader)
        return header.description if header else None

    @property
    def model(self) -> str | None:
        stmt = self._first(ModelStmt)
        return stmt.model if stmt else None

    @property
    def task(self) -> str | None:
        stmt = self._first(TaskStmt)
        return stmt.task if stmt else None

    @property
    def ablation(self) -> Ablation | None:
        stmt = self._first(AblateStmt)
        return stmt.ablation if stmt else None

    @property
    def metric(self) -> str:
        stmt = self._first(MetricStmt)
        return stmt.metric if stmt else DEFAULT_METRIC

    @property
    def confidence(self) -> float:
        stmt = self._first(ConfidenceStmt)
        return stmt.value if stmt else DEFAULT_CONFIDENCE

    @property
    def samples(self) -> int | None:
        stmt = self._first(SamplesStmt)
        return stmt.value if stmt else None

    @property
    def circuit(self) -> str:
        """``nodes`` (the default) or ``edges``: see :class:`CircuitStmt`."""
        stmt = self._first(CircuitStmt)
        return stmt.kind if stmt else DEFAULT_CIRCUIT

    def all_statements(self) -> Iterator[AnyStatement]:
        """Statements of the included files (in inclusion order), then this file's."""
        for library in self.libraries:
            yield from library.statements
        yield from self.statements

    @property
    def definitions(self) -> dict[str, NodeDef | GroupDef]:
        """Every ``node`` and ``group`` by name, included files' too."""
        return {s.name: s for s in self.all_statements() if isinstance(s, (NodeDef, GroupDef))}

    @property
    def edges(self) -> tuple[EdgePath, ...]:
        return tuple(s for s in self.all_statements() if isinstance(s, EdgePath))

    @property
    def patterns(self) -> tuple[IncludeNodes | IncludeEdges, ...]:
        return tuple(s for s in self.all_statements() if isinstance(s, (IncludeNodes, IncludeEdges)))

    @property
    def claims(self) -> tuple[Claim, ...]:
        return tuple(s for s in self.statements if isinstance(s, Claim))

    def settings(self, claim: Claim) -> ClaimSettings:
        """The claim's own settings, falling back to the header's, then to the built-in defaults."""
        inherited = []

        def pick(name, own, default):
            if own is not None:
                return own
            inherited.append(name)
            return default

        return ClaimSettings(
            ablation=pick("ablation", claim.ablation, self.ablation),
            metric=pick("metric", claim.metric, self.metric),
            confidence=pick("confidence", claim.confidence, self.confidence),
            samples=pick("samples", claim.samples, self.samples),
            inherited=tuple(inherited),
        )


# ---- lexical helpers shared by the parser and the formatter --------------------------------------

_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "0": "\0", "\\": "\\", '"': '"', "'": "'"}
_QUOTED = {v: k for k, v in _ESCAPES.items() if k not in "\"'"}


def quote(text: str) -> str:
    """The canonical literal for ``text``: double quotes unless it holds ``"`` and no ``'``."""
    q = "'" if '"' in text and "'" not in text else '"'
    out = []
    for c in text:
        if c == q:
            out.append("\\" + c)
        elif c in _QUOTED:
            out.append("\\" + _QUOTED[c])
        elif not c.isprintable() and c != " ":
            code = ord(c)
            out.append(f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}")
        else:
            out.append(c)
    return q + "".join(out) + q


_ESCAPE_RE = re.compile(r"\\(x[0-9a-fA-F]{2}|u[0-9a-fA-F]{4}|U[0-9a-fA-F]{8}|.)", re.DOTALL)


def unquote(literal: str) -> tuple[str, list[tuple[int, str]]]:
    """Decode a string literal; also return ``(offset, escape)`` for each escape it does not know."""
    bad: list[tuple[int, str]] = []

    def decode(match: re.Match[str]) -> str:
        esc = match.group(1)
        if esc in _ESCAPES:
            return _ESCAPES[esc]
        if esc[0] in "xuU" and len(esc) > 1:
            code = int(esc[1:], 16)
            if code <= 0x10FFFF:
                return chr(code)
        bad.append((match.start() + 1, match.group(0)))
        return match.group(0)

    return _ESCAPE_RE.sub(decode, literal[1:-1]), bad
