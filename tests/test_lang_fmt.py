"""The formatter: canonical text, idempotent, and ``parse(format_spec(s)) == s`` for any tree.

Random trees (not only random texts) drive the round trip, so every field of every statement is
printed and read back; a second property re-lays the canonical text out (spacing, line breaks) and
checks the parser does not care.
"""

from __future__ import annotations

import re
import tempfile
from dataclasses import replace
from pathlib import Path

from hypothesis import assume, given, settings
from hypothesis import strategies as st

from circuitspec.lang import ast as A, format_spec, format_statement, parse_spec
from circuitspec.lang.fmt import WIDTH
from circuitspec.lang.parser import _lark, parse_spec_or_library, split_comment

MESSY = """# The closing-quote circuit.
spec   closing_quote   'a string is closed with the quote that opened it'
model "py-sparse-small"              # shipped model name or path
task  closing_quote
ablate mean over task per position

node opener = blocks.0.mlp.hook_post[ 113 ]       "fires on an opening quote"
node kind   = blocks.0.attn.hook_v[7, head=2]   'sign = quote type'


group readers = {kind,
      opener,   # both
      blocks.1.attn.hook_z[head=1, 0:8,]}
edge opener->kind ->readers
claim   suff :  sufficient faithfulness >= 0.90 confidence .99 metric accuracy
claim kind>0 when opening_quote=="\\"" at position opening_quote
claim logit['"'] > logit["'"]
    when opening_quote == '"'
# end
"""

CANONICAL = """# The closing-quote circuit.
spec closing_quote "a string is closed with the quote that opened it"
model "py-sparse-small"  # shipped model name or path
task closing_quote
ablate mean over task per position

node opener = blocks.0.mlp.hook_post[113] "fires on an opening quote"
node kind = blocks.0.attn.hook_v[head=2, 7] "sign = quote type"

# both
group readers = {kind, opener, blocks.1.attn.hook_z[head=1, 0:8]}
edge opener -> kind -> readers
claim suff: sufficient faithfulness >= 0.9 metric accuracy confidence 0.99
claim kind > 0 when opening_quote == '"' at position opening_quote
claim logit['"'] > logit["'"] when opening_quote == '"'
# end
"""


def parse_ok(text: str) -> A.Spec:
    result = parse_spec(text, "fmt.circ")
    assert result.ok, result.render() + "\n" + text
    return result.spec


def test_canonical_form():
    assert format_spec(parse_ok(MESSY)) == CANONICAL
    assert parse_ok(CANONICAL) == parse_ok(MESSY)
    assert format_spec(parse_ok(CANONICAL)) == CANONICAL


def test_long_statements_wrap_onto_indented_lines():
    names = [f"neuron_{i}" for i in range(30)]
    header = 'spec s\nmodel "m"\ntask t\nablate zero\n'
    text = header + "".join(f"node {n} = blocks.0.mlp.hook_post[{i}]\n" for i, n in enumerate(names))
    text += "group all = {" + ", ".join(names) + "}  # everything\n"
    text += "group ids = blocks.0.mlp.hook_post[" + ", ".join(str(i * 7) for i in range(60)) + "]\n"
    text += ("claim everything: sufficient faithfulness >= 0.9 when opening_quote == '\"' and body_length > 3 "
             "ablate resample from task per position metric kl confidence 0.99 samples 10000\n")
    out = format_spec(parse_ok(text))
    assert all(len(line) <= WIDTH for line in out.splitlines() if "#" not in line)
    assert "\n    " in out and out.count("# everything") == 1
    assert parse_ok(out) == parse_ok(text) and format_spec(parse_ok(out)) == out


def test_format_statement_is_one_line():
    spec = parse_ok(CANONICAL)
    assert format_statement(spec.statements[6]) == "group readers = {kind, opener, blocks.1.attn.hook_z[head=1, 0:8]}"


def test_an_empty_spec_formats_to_nothing():
    assert format_spec(A.Spec(())) == ""


# ---- random trees --------------------------------------------------------------------------------

KEYWORDS = {t.pattern.value for t in _lark().terminals if t.pattern.type == "str" and t.pattern.value.isidentifier()}
names = st.from_regex(r"[a-z_][a-z0-9_]{0,7}", fullmatch=True).filter(lambda n: n not in KEYWORDS)
hooks = st.from_regex(r"[a-z_][a-z0-9_]{0,6}(\.[a-z0-9_]{1,5}){0,3}", fullmatch=True).filter(lambda n: n not in KEYWORDS)
texts = st.text(st.characters(codec="utf-8") | st.sampled_from("\"'\\#\n\t\r\0"), max_size=8)
comment = st.text(st.characters(codec="utf-8", exclude_characters="\n\r"), max_size=12).map(lambda t: ("#" + t).rstrip(" \t\f"))
numbers = st.integers(-10**6, 10**6) | st.floats(allow_nan=False, allow_infinity=False)
indices = st.integers(0, 10**4)
confidences = st.floats(0, 1, exclude_min=True, exclude_max=True)


def normalize(lines: list[str], first: bool, last: bool = False) -> tuple[str, ...]:
    """The parser's rule for blank lines: runs collapse to one, none at the start (or end) of the file."""
    out: list[str] = []
    for line in lines:
        if line or (out and out[-1]) or (not out and not first):
            out.append(line)
    while first and out and not out[0]:
        out.pop(0)
    while last and out and not out[-1]:
        out.pop()
    return tuple(out)


@st.composite
def trivia(draw, first: bool) -> A.Trivia:
    leading = draw(st.lists(st.just("") | comment, max_size=3))
    return A.Trivia(normalize(leading, first), draw(st.none() | comment))


@st.composite
def selectors(draw):
    kind = draw(st.sampled_from(["index", "range", "token"]))
    if kind == "index":
        return A.Index(draw(indices))
    if kind == "range":
        start = draw(indices)
        return A.Range(start, start + draw(st.integers(1, 100)))
    return A.TokenLiteral(draw(texts))


@st.composite
def refs(draw, single: bool = False):
    hook = draw(hooks)
    if single:
        head = draw(st.none() | indices.map(A.Index))
        channel = draw(indices.map(A.Index) | texts.map(A.TokenLiteral))
        channels = () if head is not None and draw(st.booleans()) else (channel,)
        return A.Ref(hook, head, channels)
    head = draw(st.none() | st.just(A.All()) | selectors().filter(lambda s: not isinstance(s, A.TokenLiteral)))
    if draw(st.booleans()):
        channels = (A.All(),)
    else:
        channels = tuple(draw(st.lists(selectors(), min_size=0 if head is not None else 1, max_size=4, unique=True)))
    return A.Ref(hook, head, channels)


@st.composite
def ablations(draw):
    method = draw(st.sampled_from(A.ABLATIONS))
    if method == "zero":
        return A.Ablation("zero")
    if method == "resample" and draw(st.booleans()):  # each input's partner: `resample from corrupted(FEATURE)`
        return A.Ablation(method, A.Distribution(corrupted=draw(names)))
    distribution = draw(st.builds(A.Distribution, st.none() | names) | st.just(A.Distribution(corpus=True)))
    return A.Ablation(method, distribution, draw(st.booleans()))


@st.composite
def members(draw, defined: list[str]):
    if defined and draw(st.booleans()):
        return A.NameRef(draw(st.sampled_from(defined)))
    return draw(refs())


@st.composite
def claims(draw, defined: list[str], needs_ablation: bool, labels: set[str]):
    kind = draw(st.sampled_from(["sufficient", "necessary", "minimal", "edge", "role", "behaviour"]))
    if kind in ("sufficient", "necessary"):
        body = A.FaithfulnessBody(kind, draw(st.sampled_from(A.CLAIM_OPS[kind])), draw(numbers))
    elif kind == "minimal":
        body = A.MinimalBody(draw(st.sampled_from(["node", "edge"])), draw(st.sampled_from(A.CLAIM_OPS[kind])), draw(numbers))
    elif kind == "edge":
        body = A.EdgeBody(draw(members(defined)), draw(members(defined)), draw(st.sampled_from(A.CLAIM_OPS[kind])), draw(numbers))
    elif kind == "role":
        body = A.RoleBody(draw(members(defined)), draw(st.sampled_from(A.CMP_OPS)), draw(numbers))
    else:
        logit = st.builds(A.Logit, indices.map(A.Index) | texts.map(A.TokenLiteral))
        body = A.BehaviourBody(draw(logit), draw(st.sampled_from(A.CMP_OPS)), draw(logit | numbers))
    label = draw(st.none() | names.filter(lambda n: n not in labels))
    if label:
        labels.add(label)
    values = texts | numbers | st.booleans()
    conditions = tuple(draw(st.lists(st.builds(A.Condition, names, st.sampled_from(A.CMP_OPS), values), max_size=2)))
    return A.Claim(
        label, body, conditions,
        position=draw(st.none() | names) if kind == "role" else None,
        ablation=draw(ablations() if needs_ablation else st.none() | ablations()),
        metric=draw(st.none() | st.sampled_from(A.METRICS)),
        confidence=draw(st.none() | confidences),
        samples=draw(st.none() | st.integers(1, 10**6)),
    )


@st.composite
def specs(draw) -> A.Spec:
    header = [A.SpecHeader(draw(names), draw(st.none() | texts)), A.ModelStmt(draw(texts)), A.TaskStmt(draw(names))]
    header += draw(st.lists(st.sampled_from([
        A.AblateStmt(draw(ablations())), A.MetricStmt(draw(st.sampled_from(A.METRICS))),
        A.ConfidenceStmt(draw(confidences)), A.SamplesStmt(draw(st.integers(1, 10**6))),
        A.CircuitStmt(draw(st.sampled_from(A.CIRCUIT_KINDS))),
    ]), unique_by=type, max_size=5))
    has_default = any(isinstance(s, A.AblateStmt) for s in header)
    statements = list(draw(st.permutations(header)))
    defined: list[str] = []
    labels: set[str] = set()
    for _ in range(draw(st.integers(0, 8))):
        kind = draw(st.sampled_from(["node", "group", "edge", "nodes", "edges", "claim"]))
        fresh = names.filter(lambda n: n not in defined)
        if kind == "node":
            statement = A.NodeDef(draw(fresh), draw(refs(single=True)), draw(st.none() | texts))
        elif kind == "group":
            group_members = draw(st.lists(members(defined), min_size=1, max_size=4))
            statement = A.GroupDef(draw(fresh), tuple(group_members), draw(st.none() | texts))
        elif kind == "edge":
            statement = A.EdgePath(tuple(draw(st.lists(members(defined), min_size=2, max_size=4))))
        elif kind == "nodes":
            statement = A.IncludeNodes(draw(texts.filter(bool)))
        elif kind == "edges":
            statement = A.IncludeEdges(draw(texts.filter(bool)), draw(texts.filter(bool)))
        else:
            statement = draw(claims(defined, not has_default, labels))
        if isinstance(statement, (A.NodeDef, A.GroupDef)):
            defined.append(statement.name)
        statements.append(statement)
    with_trivia = [
        type(s)(**{**{f: getattr(s, f) for f in s.__dataclass_fields__}, "trivia": draw(trivia(first=i == 0))})
        for i, s in enumerate(statements)
    ]
    end = normalize(draw(st.lists(st.just("") | comment, max_size=3)), first=not with_trivia, last=True)
    return A.Spec(tuple(with_trivia), end_comments=end)


@settings(max_examples=150, deadline=None)
@given(specs())
def test_format_then_parse_gives_the_same_tree(spec):
    text = format_spec(spec)
    assert parse_ok(text) == spec
    assert format_spec(parse_ok(text)) == text


@settings(max_examples=40, deadline=None)
@given(specs())
def test_a_library_formats_to_a_library(spec):
    """A file of nodes, groups and edges (no header) is a library to `check` and `fmt`; its formatted
    text must read back as the same library, not as a spec missing its header (E105)."""
    statements = [s for s in spec.statements if isinstance(s, A.LIBRARY_TYPES)]
    assume(statements)
    first = statements[0]
    statements[0] = replace(first, trivia=A.Trivia(normalize(list(first.trivia.leading), first=True), first.trivia.trailing))
    library = A.Spec(tuple(statements), end_comments=spec.end_comments)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "lib.circ"
        path.write_text(format_spec(library), encoding="utf-8")
        parsed, is_library = parse_spec_or_library(path)
    assert is_library and parsed.spec == library, parsed.render()


def relayout(text: str, choices) -> str:
    """Re-space the canonical text: any space between tokens may become more blanks or a line break."""
    out = []
    for line in text.split("\n"):
        code, comment = split_comment(line)
        pieces, quote, i = [], None, 0
        for i, c in enumerate(code):
            if quote:
                if c == quote and not _escaped(code, i):
                    quote = None
            elif c in "\"'":
                quote = c
            elif c == " " and i > 0 and code[i - 1] != " " and code[i + 1 :].strip():
                c = choices.draw(st.sampled_from([" ", "  ", "\t", " \f", "\n    ", "\n\t", "\n  \n   "]))
            pieces.append(c)
        out.append("".join(pieces) + (comment or ""))
    return "\n".join(out)


def _escaped(code: str, i: int) -> bool:
    backslashes = len(code[:i]) - len(code[:i].rstrip("\\"))
    return backslashes % 2 == 1


@settings(max_examples=60, deadline=None)
@given(specs(), st.data())
def test_layout_does_not_matter(spec, data):
    canonical = format_spec(spec)
    messy = relayout(canonical, data)
    assert parse_ok(messy) == spec
    assert format_spec(parse_ok(messy)) == canonical


def test_relayout_helper_really_moves_things():
    text = format_spec(parse_ok(CANONICAL))

    class Always:
        @staticmethod
        def draw(strategy):
            return "\n    "

    assert re.search(r"\n    \S", relayout(text, Always)) and parse_ok(relayout(text, Always)) == parse_ok(text)
