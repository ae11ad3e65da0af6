"""The canonical text of a spec: ``format_spec(parse(x))`` is what ``circuitspec fmt`` writes.

The output depends only on the tree, never on the original layout, which is what makes formatting
idempotent and ``parse(format_spec(s)) == s``. Statement order is kept (diffs stay small); spacing,
quotes, number spelling, index order (``head=`` first) and clause order are canonical. Comments are
kept: full-line comments stay above the statement they preceded (at most one blank line in a row),
a trailing comment stays on the statement's last line, and comments inside a wrapped statement move
above it. A statement longer than :data:`WIDTH` wraps at spaces onto indented continuation lines.
"""

from __future__ import annotations

from . import ast as A

WIDTH = 100
INDENT = "    "


def format_spec(spec: A.Spec) -> str:
    lines: list[str] = []
    for statement in spec.statements:
        lines.extend(_trivia(statement.trivia.leading, at_start=not lines))
        text = _wrap(_atoms(statement))
        if statement.trivia.trailing:
            text[-1] += "  " + statement.trivia.trailing
        lines.extend(text)
    ending = _trivia(spec.end_comments, at_start=not lines)
    while ending and not ending[-1]:
        ending.pop()
    lines.extend(ending)
    return "\n".join(lines) + "\n" if lines else ""


def format_statement(statement: A.AnyStatement) -> str:
    """One statement on one line, without comments (for messages and reports)."""
    return " ".join(_atoms(statement))


def _trivia(leading, at_start: bool) -> list[str]:
    out: list[str] = []
    for text in leading:
        if text or (out and out[-1]) or (not out and not at_start):
            out.append(text)
    return out


def _wrap(atoms: list[str]) -> list[str]:
    """Greedy fill: break between atoms, continuation lines indented (an indented line continues)."""
    lines = [atoms[0]]
    for atom in atoms[1:]:
        if len(lines[-1]) + 1 + len(atom) > WIDTH and lines[-1].strip():
            lines.append(INDENT + atom)
        else:
            lines[-1] += " " + atom
    return lines


def number(value) -> str:
    return repr(value) if isinstance(value, float) else str(value)


def _value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return A.quote(value)
    return number(value)


def _ref(ref: A.Ref) -> list[str]:
    parts = ([f"head={ref.head}"] if ref.head is not None else []) + [str(c) for c in ref.channels]
    atoms = [p + "," for p in parts[:-1]] + parts[-1:]
    atoms[0] = f"{ref.hook}[{atoms[0]}"
    atoms[-1] += "]"
    return atoms


def _member(member: A.Member) -> list[str]:
    return _ref(member) if isinstance(member, A.Ref) else [member.name]


def _members(members: tuple[A.Member, ...]) -> list[str]:
    if len(members) == 1 and isinstance(members[0], A.Ref):
        return _ref(members[0])
    atoms: list[str] = []
    for i, member in enumerate(members):
        part = _member(member)
        if i < len(members) - 1:
            part[-1] += ","
        atoms.extend(part)
    atoms[0] = "{" + atoms[0]
    atoms[-1] += "}"
    return atoms


def _described(atoms: list[str], description: str | None) -> list[str]:
    return atoms + ([A.quote(description)] if description is not None else [])


def _body(body: A.ClaimBody) -> str:
    if isinstance(body, A.FaithfulnessBody):
        return f"{body.kind} faithfulness {body.op} {number(body.threshold)}"
    if isinstance(body, A.MinimalBody):
        return f"minimal each {body.unit} drop {body.op} {number(body.threshold)}"
    if isinstance(body, A.RoleBody):
        return f"{' '.join(_member(body.subject))} {body.op} {number(body.threshold)}"
    if isinstance(body, A.AgreementBody):
        return str(body)
    if isinstance(body, A.UnneededBody):
        return f"ablating {' '.join(_member(body.part))} keeps faithfulness {body.op} {number(body.threshold)}"
    if isinstance(body, A.EdgeBody):
        ends = f"{' '.join(_member(body.source))} -> {' '.join(_member(body.target))}"
        return f"edge {ends} drop {body.op} {number(body.threshold)}"
    right = str(body.right) if isinstance(body.right, A.Logit) else number(body.right)
    return f"{body.left} {body.op} {right}"


def _claim(claim: A.Claim) -> list[str]:
    atoms = ["claim"] + ([f"{claim.label}:"] if claim.label else []) + [_body(claim.body)]
    for i, c in enumerate(claim.conditions):
        atoms.append(f"{'when' if i == 0 else 'and'} {c.feature} {c.op} {_value(c.value)}")
    if claim.position is not None:
        atoms.append(f"at position {claim.position}")
    if claim.every_input:
        atoms.append("on every input")
    elif claim.coverage is not None:
        atoms.append(f"on at least {number(claim.coverage)} of inputs")
    if claim.in_model:
        atoms.append("in full model")
    if claim.ablation is not None:
        atoms.append(f"ablate {claim.ablation}")
    if claim.metric is not None:
        atoms.append(f"metric {claim.metric}")
    if claim.confidence is not None:
        atoms.append(f"confidence {number(claim.confidence)}")
    if claim.samples is not None:
        atoms.append(f"samples {claim.samples}")
    if claim.robustness is not None:
        atoms.append(f"robustness {claim.robustness}")
    return atoms


def _atoms(s: A.AnyStatement) -> list[str]:
    """The statement as unbreakable pieces; joined by single spaces they are its one-line form."""
    if isinstance(s, A.SpecHeader):
        return _described(["spec", s.name], s.description)
    if isinstance(s, A.ModelStmt):
        return ["model", A.quote(s.model)]
    if isinstance(s, A.TaskStmt):
        return ["task", s.task]
    if isinstance(s, A.AblateStmt):
        return ["ablate", str(s.ablation)]
    if isinstance(s, A.MetricStmt):
        return ["metric", s.metric]
    if isinstance(s, A.ConfidenceStmt):
        return ["confidence", number(s.value)]
    if isinstance(s, A.SamplesStmt):
        return ["samples", str(s.value)]
    if isinstance(s, A.CircuitStmt):
        return ["circuit", s.kind]
    if isinstance(s, A.NodeDef):
        return _described(["node", s.name, "="] + _ref(s.ref), s.description)
    if isinstance(s, A.GroupDef):
        return _described(["group", s.name, "="] + _members(s.members), s.description)
    if isinstance(s, A.EdgePath):
        atoms = _member(s.members[0])
        for member in s.members[1:]:
            atoms += ["->"] + _member(member)
        return ["edge"] + atoms
    if isinstance(s, A.IncludeFile):
        return ["include", A.quote(s.path)]
    if isinstance(s, A.IncludeNodes):
        return ["include", "nodes", "matching", A.quote(s.pattern)]
    if isinstance(s, A.IncludeEdges):
        return ["include", "edges", "matching", A.quote(s.source), "->", A.quote(s.target)]
    if isinstance(s, A.Claim):
        return _claim(s)
    raise TypeError(f"not a statement: {type(s).__name__}")
