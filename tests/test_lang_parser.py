"""The .circ parser: one test per construct, spans, includes, diagnostics, and the golden invalid specs."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from circuitspec.lang import CODES, ast as A, parse_file, parse_spec, render, source_lines
from circuitspec.commands.check_cmd import check_file
from circuitspec.lang.diagnostics import render_all
from circuitspec.lang.parser import _lark

HEADER = 'spec closing_quote "a string is closed with the quote that opened it"\nmodel "py-sparse-small"\ntask closing_quote\n'
INVALID = Path(__file__).parent / "invalid_specs"

EXAMPLE = HEADER + """ablate mean over task

node opener = blocks.0.mlp.hook_post[113] "fires on an opening quote"
node kind   = blocks.0.attn.hook_v[head=2, 7]   "sign = quote type"
node reader = blocks.1.attn.hook_z[head=1, 3]
edge opener -> kind -> reader -> hook_logits['"']

claim suff: sufficient faithfulness >= 0.9
claim necessary faithfulness <= 0.2
claim minimal each node drop >= 0.02
claim kind > 0 when opening_quote == '"'
claim logit['"'] > logit["'"] when opening_quote == '"'
"""


def parse_ok(text: str, filename: str = "spec.circ") -> A.Spec:
    result = parse_spec(text, filename)
    assert result.ok, result.render()
    return result.spec


def codes(text: str, filename: str = "spec.circ") -> list[str]:
    return [d.code for d in parse_spec(text, filename).diagnostics]


def body(text: str) -> A.Spec:
    """A valid header (with a default ablation) followed by ``text``."""
    return parse_ok(HEADER + "ablate zero\n" + text)


def one(text: str):
    return body(text).statements[-1]


# ---- header -------------------------------------------------------------------------------------


def test_header_statements():
    spec = parse_ok(HEADER + "ablate mean over task per position\nmetric accuracy\nconfidence 0.99\nsamples 500\n")
    assert (spec.name, spec.model, spec.task) == ("closing_quote", "py-sparse-small", "closing_quote")
    assert spec.description == "a string is closed with the quote that opened it"
    assert spec.ablation == A.Ablation("mean", A.Distribution(None), per_position=True)
    assert (spec.metric, spec.confidence, spec.samples) == ("accuracy", 0.99, 500)


def test_defaults_when_the_header_is_silent():
    spec = parse_ok(HEADER + "ablate zero\n")
    assert (spec.metric, spec.confidence, spec.samples) == (A.DEFAULT_METRIC, A.DEFAULT_CONFIDENCE, None)


@pytest.mark.parametrize("text, expected", [
    ("zero", A.Ablation("zero")),
    ("mean over task", A.Ablation("mean", A.Distribution())),
    ("mean over task per position", A.Ablation("mean", A.Distribution(), True)),
    ("resample from task", A.Ablation("resample", A.Distribution())),
    ("resample from task bracket_type per position", A.Ablation("resample", A.Distribution("bracket_type"), True)),
    ("mean over corpus", A.Ablation("mean", A.Distribution(corpus=True))),
    ("mean over task corpus", A.Ablation("mean", A.Distribution("corpus"))),  # `corpus` is a keyword only after over/from
    ("resample from corpus", A.Ablation("resample", A.Distribution(corpus=True))),  # parses; resolve rejects it (E511)
    ("resample from corrupted(opening_quote)", A.Ablation("resample", A.Distribution(corrupted="opening_quote"))),
    ("resample from task corrupted", A.Ablation("resample", A.Distribution("corrupted"))),  # a keyword only after from
])
def test_ablations(text, expected):
    ablation = parse_ok(HEADER + f"ablate {text}\n").ablation
    assert ablation == expected
    assert str(ablation) == text


def test_model_may_be_a_path():
    assert parse_ok('spec s\nmodel "runs/my model/ckpt"\ntask t\n').model == "runs/my model/ckpt"


# ---- references ---------------------------------------------------------------------------------


def test_node_with_single_index():
    node = one('node opener = blocks.0.mlp.hook_post[113] "fires"')
    assert node == A.NodeDef("opener", A.Ref("blocks.0.mlp.hook_post", None, (A.Index(113),)), "fires")
    assert str(node.ref) == "blocks.0.mlp.hook_post[113]"


def test_node_with_head():
    ref = one("node kind = blocks.1.attn.hook_v[head=2, 7]").ref
    assert (ref.hook, ref.head, ref.channels) == ("blocks.1.attn.hook_v", A.Index(2), (A.Index(7),))
    assert ref.is_single


def test_per_head_node_without_channel():
    ref = one("node scores = blocks.1.attn.hook_attn_scores[head=0]").ref
    assert ref == A.Ref("blocks.1.attn.hook_attn_scores", A.Index(0), ())
    assert ref.is_single and str(ref) == "blocks.1.attn.hook_attn_scores[head=0]"


def test_logit_node_by_token_literal_and_number():
    assert one("node q = hook_logits['\"']").ref.channels == (A.TokenLiteral('"'),)
    assert one("node q = hook_logits[34]").ref.channels == (A.Index(34),)


def test_group_with_indices_and_ranges():
    group = one('group quote_neurons = blocks.0.mlp.hook_post[3, 17, 40:48] "the quote detectors"')
    ref = group.members[0]
    assert ref.channels == (A.Index(3), A.Index(17), A.Range(40, 48))
    assert group.description == "the quote detectors" and not ref.is_single


def test_group_per_head_range_and_star():
    assert one("group v = blocks.1.attn.hook_v[head=2, 0:8]").members[0].head == A.Index(2)
    ref = one("group all_heads = blocks.1.attn.hook_z[head=*, 0]").members[0]
    assert ref.head == A.All() and str(ref) == "blocks.1.attn.hook_z[head=*, 0]"
    assert one("group heads = blocks.1.attn.hook_z[head=0:4, *]").members[0].head == A.Range(0, 4)


def test_head_written_after_the_channel_is_the_same_reference():
    a = one("group g = blocks.1.attn.hook_v[7, head=2]").members[0]
    assert a == A.Ref("blocks.1.attn.hook_v", A.Index(2), (A.Index(7),))


def test_group_of_names_and_refs():
    spec = body("node a = x.y[1]\nnode b = x.y[2]\ngroup g = {a, b, blocks.0.mlp.hook_post[5],}")
    assert spec.statements[-1].members == (A.NameRef("a"), A.NameRef("b"), A.Ref("blocks.0.mlp.hook_post", None, (A.Index(5),)))
    assert set(spec.definitions) == {"a", "b", "g"}


def test_multi_line_group_continues_on_indented_lines():
    spec = body("node a = x.y[1]\nnode b = x.y[2]\ngroup g = {a,\n\n    # the second one\n    b} \"two\"\nnode c = x.y[3]")
    group = spec.statements[-2]
    assert group.members == (A.NameRef("a"), A.NameRef("b")) and group.description == "two"
    assert (group.span.line, group.span.end_line) == (7, 10)
    assert group.trivia.leading == ("# the second one",)


# ---- edges and patterns -------------------------------------------------------------------------


def test_edge_path_with_names_and_inline_refs():
    spec = body("node a = x.y[1]\nnode b = x.y[2]\nedge a -> b -> hook_logits['\"']")
    edge = spec.statements[-1]
    pairs = [(str(u), str(v)) for u, v in edge.pairs()]
    assert pairs == [("a", "b"), ("b", "hook_logits['\"']")]
    assert spec.edges == (edge,)


def test_logits_is_a_built_in_name():
    assert one("node a = x.y[1]\nedge a -> logits").members[-1] == A.NameRef("logits")
    assert codes(HEADER + "ablate zero\ngroup logits = x.y[1]\n") == ["E101"]
    [diag] = parse_spec(HEADER + "ablate zero\nnode a = x.y[1]\nedge a -> logit\n").diagnostics
    assert diag.code == "E102" and "`logits`" in diag.hint


def test_include_patterns():
    spec = body('include nodes matching "blocks.1.attn.hook_z[head=1, *]"\ninclude edges matching "blocks.0.*" -> "blocks.1.*"')
    nodes, edges = spec.statements[-2:]
    assert nodes == A.IncludeNodes("blocks.1.attn.hook_z[head=1, *]")
    assert edges == A.IncludeEdges("blocks.0.*", "blocks.1.*")
    assert nodes.regex().fullmatch("blocks.1.attn.hook_z[head=1, 7]")
    assert not nodes.regex().fullmatch("blocks.1.attn.hook_z[head=2, 7]")
    assert spec.patterns == (nodes, edges)


# ---- claims -------------------------------------------------------------------------------------


def test_circuit_claims():
    spec = parse_ok(EXAMPLE)
    suff, nec, minimal, role, behaviour = spec.claims
    assert suff.label == "suff" and suff.body == A.FaithfulnessBody("sufficient", ">=", 0.9)
    assert nec.kind == "necessary" and nec.body.threshold == 0.2
    assert minimal.body == A.MinimalBody("node", ">=", 0.02) and minimal.kind == "minimal"
    assert role.kind == "role" and role.body == A.RoleBody(A.NameRef("kind"), ">", 0)
    assert role.conditions == (A.Condition("opening_quote", "==", '"'),)
    assert behaviour.body == A.BehaviourBody(A.Logit(A.TokenLiteral('"')), ">", A.Logit(A.TokenLiteral("'")))
    assert [c.name for c in spec.claims] == ["suff", "line 12", "line 13", "line 14", "line 15"]


def test_claim_clauses_in_any_order_and_overrides():
    spec = body("node kind = x.y[1]\nclaim k: kind <= -0.5 samples 200 at position opening_quote "
                "when opening_quote == \"'\" and body_length >= 3 ablate resample from task metric kl confidence 0.99")
    claim = spec.claims[0]
    assert claim.position == "opening_quote" and claim.samples == 200
    assert claim.conditions == (A.Condition("opening_quote", "==", "'"), A.Condition("body_length", ">=", 3))
    assert claim.ablation == A.Ablation("resample", A.Distribution())
    assert (claim.metric, claim.confidence) == ("kl", 0.99)
    assert claim.body.threshold == -0.5


def test_settings_say_what_is_inherited():
    spec = parse_ok(HEADER + "ablate mean over task\nconfidence 0.9\nclaim a: sufficient faithfulness >= 0.9 metric accuracy\n")
    settings = spec.settings(spec.claims[0])
    assert settings.ablation == A.Ablation("mean", A.Distribution())
    assert (settings.metric, settings.confidence, settings.samples) == ("accuracy", 0.9, None)
    assert settings.inherited == ("ablation", "confidence", "samples")


def test_minimal_each_edge_and_inline_ref_subject_and_boolean_condition():
    spec = body("claim minimal each edge drop > 0.01\nclaim blocks.0.mlp.hook_post[3] == 0 when in_for == true\n"
                "claim logit[10] > 1.5e1 when keyword != 'if'")
    minimal, role, behaviour = spec.claims
    assert minimal.body.unit == "edge"
    assert role.body.subject == A.Ref("blocks.0.mlp.hook_post", None, (A.Index(3),))
    assert role.conditions[0].value is True
    assert behaviour.body.right == 15.0 and behaviour.body.left.token == A.Index(10)


def test_agreement_claims():
    spec = body("node agrees = x.y[1]\nclaim agrees: agrees with model\nclaim agrees with model on at least 0.9 of inputs "
                "when opening_quote == '\"'\nclaim agrees > 0")
    every, share, role = spec.claims
    assert every.label == "agrees" and every.kind == "agreement" and every.body == A.AgreementBody()
    assert every.coverage is None and share.coverage == 0.9 and share.conditions[0].value == '"'
    assert role.kind == "role" and role.body.subject == A.NameRef("agrees")  # still a name where a name is meant
    assert codes(HEADER + "ablate zero\nclaim agree with model\n") == ["E201"]
    assert codes(HEADER + "ablate zero\nclaim agrees with model in full model\n") == ["E206"]


def test_unneeded_claims():
    spec = body("group decoys = x.y[1:3]\nclaim d: ablating decoys keeps faithfulness >= 0.9\n"
                "claim ablating x.y[4] keeps faithfulness > 0.5 samples 50\nnode ablating = x.y[5]\nclaim ablating > 0")
    named, inline, role = spec.claims
    assert named.kind == "unneeded" and named.body == A.UnneededBody(A.NameRef("decoys"), ">=", 0.9)
    assert inline.body.part == A.Ref("x.y", None, (A.Index(4),)) and inline.samples == 50
    assert role.kind == "role" and role.body.subject == A.NameRef("ablating")
    assert codes(HEADER + "ablate zero\nclaim ablating x.y[1] keeps faithfulness <= 0.9\n") == ["E205"]
    assert codes(HEADER + "ablate zero\nclaim removing x.y[1] keeps faithfulness >= 0.9\n") == ["E201"]


def test_robustness_clause():
    spec = body("claim sufficient faithfulness >= 0.5 robustness random\nclaim s: sufficient faithfulness >= 0.5\n"
                "node robustness = x.y[1]\nclaim robustness > 0")
    weak, default, role = spec.claims
    assert weak.robustness == "random" and default.robustness is None and role.body.subject == A.NameRef("robustness")
    assert codes(HEADER + "ablate zero\nclaim sufficient faithfulness >= 0.5 robustness randomly\n") == ["E209"]
    assert codes(HEADER + "ablate zero\nclaim necessary faithfulness <= 0.5 robustness none\n") == ["E206"]


def test_keywords_are_soft():
    """Keywords are only special where the grammar can use them, so task vocabulary stays usable."""
    spec = body("node position = x.y[1]\nnode head = x.y[2]\nclaim position > 0 at position at when each == 1")
    assert spec.claims[0].body.subject == A.NameRef("position") and spec.claims[0].position == "at"


# ---- strings, comments, spans -------------------------------------------------------------------


@pytest.mark.parametrize("literal, value", [
    (r'"a\"b"', 'a"b'), (r"'\''", "'"), (r'"\n\t\\"', "\n\t\\"), (r'"\x41\u00e9"', "Aé"), ("'#'", "#"), ('"é"', "é"),
])
def test_string_escapes(literal, value):
    assert one(f"node n = hook_logits[0] {literal}").description == value


def test_comments_are_attached_to_the_next_statement():
    spec = parse_ok("# title\n\n\n# about the spec\n" + HEADER + "ablate zero  # the default\n\n# trailing\n")
    assert spec.statements[0].trivia.leading == ("# title", "", "# about the spec")
    assert spec.statements[3].trivia.trailing == "# the default"
    assert spec.end_comments == ("", "# trailing")


def test_hash_inside_a_string_is_not_a_comment():
    node = one("node n = hook_logits['#'] \"# not a comment\"  # a comment")
    assert node.description == "# not a comment" and node.trivia.trailing == "# a comment"


def test_spans():
    spec = parse_ok(EXAMPLE, "ex.circ")
    opener = spec.statements[4]
    assert (opener.span.file, opener.span.line, opener.span.col) == ("ex.circ", 6, 1)
    assert (opener.name_span.col, opener.name_span.end_col) == (6, 12)
    assert (opener.ref.span.col, opener.ref.span.end_col) == (15, 42)
    assert opener.ref.channels[0].span.col == 38
    claim = spec.claims[3]
    assert (claim.span.line, claim.conditions[0].span.col) == (14, 21)


def test_spans_are_not_part_of_equality():
    a = parse_ok(EXAMPLE)
    b = parse_ok("\n\n" + EXAMPLE.replace("opener = ", "opener   =   ").replace("edge ", "edge  "))
    assert a == b and a.statements[4].span != b.statements[4].span


def test_crlf_and_bom_are_accepted():
    assert parse_ok("\ufeff" + EXAMPLE.replace("\n", "\r\n")) == parse_ok(EXAMPLE)


def test_the_file_rule_of_the_grammar_accepts_what_the_statement_parser_accepts():
    """The parser parses statement by statement; the grammar's `start` rule describes whole files."""
    _lark().parse(EXAMPLE)
    _lark().parse(HEADER + "group g = {a,\n    # c\n\n    b}\nclaim a: x > 0  # c\n")


# ---- includes -----------------------------------------------------------------------------------


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_include_shares_definitions(tmp_path):
    write(tmp_path, "lib/common.circ", "node opener = blocks.0.mlp.hook_post[113]\ninclude \"deeper.circ\"\n")
    write(tmp_path, "lib/deeper.circ", "node kind = blocks.0.attn.hook_v[head=2, 7]\n")
    main = write(tmp_path, "spec.circ", HEADER + 'ablate zero\ninclude "lib/common.circ"\nedge opener -> kind\nclaim kind > 0\n')
    result = parse_file(main)
    assert result.ok, result.render()
    assert set(result.spec.definitions) == {"opener", "kind"}
    assert [lib.path for lib in result.spec.libraries] == [str(tmp_path / "lib/deeper.circ"), str(tmp_path / "lib/common.circ")]
    assert result.spec.statements[-3] == A.IncludeFile("lib/common.circ")


def test_diamond_includes_are_read_once(tmp_path):
    write(tmp_path, "base.circ", "node a = x.y[1]\n")
    write(tmp_path, "left.circ", 'include "base.circ"\nnode l = x.y[2]\n')
    write(tmp_path, "right.circ", 'include "base.circ"\nnode r = x.y[3]\n')
    main = write(tmp_path, "spec.circ", HEADER + 'include "left.circ"\ninclude "right.circ"\nedge a -> l -> r\n')
    result = parse_file(main)
    assert result.ok, result.render()
    assert len(result.spec.libraries) == 3


def test_include_cycle_is_reported_at_the_include_line(tmp_path):
    write(tmp_path, "a.circ", 'node a = x.y[1]\ninclude "b.circ"\n')
    write(tmp_path, "b.circ", 'include "a.circ"\n')
    result = parse_file(write(tmp_path, "spec.circ", HEADER + 'include "a.circ"\n'))
    [diag] = result.diagnostics
    assert (diag.code, Path(diag.file).name, diag.line) == ("E402", "b.circ", 1)
    assert "a.circ -> " in diag.message


def test_a_spec_including_itself(tmp_path):
    path = write(tmp_path, "spec.circ", HEADER + 'include "spec.circ"\n')
    assert [d.code for d in parse_file(path).diagnostics] == ["E402"]


def test_missing_and_unreadable_files(tmp_path):
    assert [d.code for d in parse_file(tmp_path / "nope.circ").diagnostics] == ["E404"]
    assert [d.code for d in parse_file(tmp_path).diagnostics] == ["E404"]
    bad = tmp_path / "bad.circ"
    bad.write_bytes(b"spec s\n\xff\n")
    [diag] = parse_file(bad).diagnostics
    assert diag.code == "E404" and "line 2" in diag.message
    result = parse_file(write(tmp_path, "spec.circ", HEADER + 'include "lib"\n'))
    assert [d.code for d in result.diagnostics] == ["E401"]


# ---- diagnostics --------------------------------------------------------------------------------


def test_several_independent_errors_are_reported():
    text = HEADER + "ablate zero\nnod a = x.y[1]\nnode b = x.y[1\nedge b -> c\nclaim suficient faithfulness >= 0.9\nmetric kll\n"
    assert codes(text) == ["E001", "E001", "E102", "E201", "E106", "E202"]


def test_no_cascade_from_statements_with_syntax_errors():
    # `a` is defined by a broken statement: using it is not a second error
    assert codes(HEADER + "ablate zero\nnode a = x.y[1 2]\nedge a -> a\n") == ["E001"]
    # a broken `task` line is not also reported as a missing `task`
    assert codes('spec s\nmodel "m"\ntask 3\nablate zero\n') == ["E001"]


def test_syntax_errors_speak_human():
    terminals = {t.name for t in _lark().terminals} | {"$END"}
    for text in ["node a = ", "node a x.y[1]", "claim a > ", "edge a -> ", "group g = {a b}", "include nodes \"x\"",
                 "ablate mean over", "spec", "claim logit[", "node a = x[head=]"]:
        for diag in parse_spec(HEADER + text).diagnostics:
            assert not set(re.findall(r"[$\w]+", diag.message)) & terminals, diag
            assert diag.hint, diag


def test_render_shows_position_source_line_caret_and_hint():
    result = parse_spec(HEADER + "ablate zero\nnode kind = x.y[1]\nedge kind -> knd\n", "s.circ")
    text = render(result.diagnostics[0], result.sources["s.circ"])
    assert text == (
        "s.circ:6:14: error[E102]: unknown name `knd`\n"
        " 6 | edge kind -> knd\n"
        "   |              ^~~\n"
        "  hint: did you mean `kind`?"
    )
    assert result.render().endswith("1 error\n")


def test_to_json():
    diag = parse_spec(HEADER + "metric kll\n", "s.circ").diagnostics[0]
    data = json.loads(json.dumps(diag.to_json()))
    assert data == {"file": "s.circ", "line": 4, "col": 8, "end_line": 4, "end_col": 11, "severity": "error",
                    "code": "E202", "message": "unknown metric `kll`", "hint": data["hint"]}
    assert "logit_diff" in data["hint"]


@pytest.mark.parametrize("text", ["\0", "\x0b", "é", "\ud800", "node a = x[1]\x00", "'", '"\\', "\\", "\r\r\n", "\t\t",
                                  "claim " * 50, "[" * 200, "spec s\n    \n  # c\n  x", "{}" * 100])
def test_odd_inputs_give_diagnostics_not_exceptions(text):
    result = parse_spec(text)
    assert result.diagnostics and all(d.code != "E999" for d in result.diagnostics)
    result.render()


def test_a_bug_in_the_parser_is_a_diagnostic_not_a_traceback(monkeypatch):
    from circuitspec.lang import parser

    def broken(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(parser._Session, "check", broken)
    result = parse_spec(EXAMPLE, "s.circ")
    assert [d.code for d in result.diagnostics] == ["E999"] and "boom" in result.diagnostics[0].message


# ---- golden files -------------------------------------------------------------------------------

GOLDEN = sorted(INVALID.glob("*.circ"))


def test_there_are_golden_files_for_every_error_code_family(monkeypatch):
    """Goldens run the whole `circuitspec check` pipeline: parse, then resolve against the model."""
    monkeypatch.chdir(INVALID)
    assert len(GOLDEN) >= 10
    seen = set()
    for path in GOLDEN:
        seen.update(d.code for d in check_file(Path(path.name))[1])
    limits = {"E007", "E008", "E405"}  # their inputs are too big for golden files: tests/test_lang_limits.py
    limits.add("W514")  # a warning, only given on a spec that resolves: tests/test_resolve.py
    assert seen >= set(CODES) - {"E999"} - limits, sorted(set(CODES) - seen - limits)


@pytest.mark.parametrize("path", GOLDEN, ids=lambda p: p.stem)
def test_golden_invalid_spec(path, monkeypatch):
    """Set CIRCUITSPEC_UPDATE_GOLDEN=1 to rewrite the .expected files after a deliberate change."""
    monkeypatch.chdir(INVALID)
    resolved, diagnostics, sources = check_file(Path(path.name))
    assert resolved is None and any(d.is_error for d in diagnostics)
    rendered = render_all(diagnostics, sources)
    expected = path.with_suffix(".expected")
    if os.environ.get("CIRCUITSPEC_UPDATE_GOLDEN"):
        expected.write_text(rendered)
    assert rendered == expected.read_text()
    for diag in diagnostics:
        lines = source_lines(sources[diag.file])
        assert 1 <= diag.line <= len(lines) and 1 <= diag.col <= len(lines[diag.line - 1]) + 1
