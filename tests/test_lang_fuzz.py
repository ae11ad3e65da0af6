"""Fuzzing the parser: mutated specs give a spec or diagnostics with valid positions, never an exception."""

from __future__ import annotations

import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from circuitspec.lang import CODES, format_spec, parse_spec, render_all, source_lines

SEEDS = [
    """# closing quotes
spec closing_quote "a string is closed with the quote that opened it"
model "py-sparse-small"
task closing_quote
ablate mean over task per position
metric logit_diff
confidence 0.95
samples 500

node opener = blocks.0.mlp.hook_post[113] "fires on an opening quote"
node kind = blocks.0.attn.hook_v[head=2, 7] 'sign = quote type\\n'
node scores = blocks.1.attn.hook_attn_scores[head=0]
group quote_neurons = blocks.0.mlp.hook_post[3, 17, 40:48]
group reader = {kind, opener,
    blocks.1.attn.hook_z[head=*, 0:8]}  # wrapped
edge opener -> kind -> reader -> hook_logits['"']
include nodes matching "blocks.1.attn.*"
include edges matching "blocks.0.*" -> "hook_logits[*]"

claim suff: sufficient faithfulness >= 0.9 ablate resample from task metric kl
claim necessary faithfulness <= 0.2 confidence 0.99
claim minimal each node drop >= 0.02 samples 100
claim kind > 0 when opening_quote == '"' and body_length >= 2 at position opening_quote
claim logit['"'] > logit["'"] when opening_quote == '"'
claim logit[34] > -1.5e1 when in_for == true
""",
    'spec s\nmodel "m"\ntask t\nablate zero\nnode a = x.y[1]\nclaim a > 0\n',
]

TOKENS = ["spec", "model", "task", "ablate", "zero", "mean", "over", "corpus", "resample", "from", "per", "position", "node",
          "group", "edge", "include", "nodes", "edges", "matching", "claim", "sufficient", "necessary", "minimal",
          "faithfulness", "each", "drop", "when", "and", "at", "logit", "metric", "confidence", "samples", "head",
          "true", "false", "->", "=", "==", ">=", "<", "[", "]", "{", "}", ",", ":", "*", '"', "'", "#", "\\", "\n",
          "\n    ", "    ", "\t", "\r", "\r\n", "0", "-1", "1e999", "2.5", "0:0", "3:1", "head=", "x.y", "blocks.0.",
          "\0", "\x0b", "\u2028", "é", "“", "\ufeff", "\\q", "\\x4", '"a', "'\\'"]
ALPHABET = st.characters(codec="utf-8") | st.sampled_from("\"'#[]{}()=<>-:,*.\\\n\r\t \0\x0b\f")


@st.composite
def mutated(draw) -> str:
    text = draw(st.sampled_from(SEEDS))
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["insert", "delete", "replace", "token", "drop_token", "line"]))
        at = draw(st.integers(0, len(text)))
        if kind == "insert":
            text = text[:at] + draw(ALPHABET) + text[at:]
        elif kind == "delete":
            text = text[:at] + text[at + draw(st.integers(1, 6)):]
        elif kind == "replace":
            text = text[:at] + draw(ALPHABET) + text[at + 1:]
        elif kind == "token":
            text = text[:at] + draw(st.sampled_from(TOKENS)) + text[at:]
        elif kind == "drop_token":
            spans = [m.span() for m in re.finditer(r"[\w.]+|->|[^\w\s]", text)]
            if spans:
                start, end = draw(st.sampled_from(spans))
                text = text[:start] + text[end:]
        else:
            lines = text.split("\n")
            i, j = draw(st.integers(0, len(lines) - 1)), draw(st.integers(0, len(lines) - 1))
            action = draw(st.sampled_from(["swap", "duplicate", "indent", "dedent"]))
            if action == "swap":
                lines[i], lines[j] = lines[j], lines[i]
            elif action == "duplicate":
                lines.insert(j, lines[i])
            elif action == "indent":
                lines[i] = "  " + lines[i]
            else:
                lines[i] = lines[i].lstrip()
            text = "\n".join(lines)
    return text


@pytest.fixture(scope="module")
def filename(tmp_path_factory):
    """Parse in an empty folder, so a mutation that writes `include "..."` finds nothing to read."""
    return str(tmp_path_factory.mktemp("fuzz") / "fuzz.circ")


def check_outcome(text: str, filename: str) -> None:
    result = parse_spec(text, filename)
    errors = [d for d in result.diagnostics if d.is_error]
    assert (result.spec is None) == bool(errors)
    for diag in result.diagnostics:
        assert diag.code in CODES and diag.code != "E999", diag
        assert diag.message and diag.file in result.sources, diag
        lines = source_lines(result.sources[diag.file])
        assert 1 <= diag.line <= diag.end_line <= len(lines), diag
        assert 1 <= diag.col <= len(lines[diag.line - 1]) + 1, diag
        assert 1 <= diag.end_col <= len(lines[diag.end_line - 1]) + 1, diag
        assert (diag.end_line, diag.end_col) >= (diag.line, diag.col), diag
    render_all(result.diagnostics, result.sources)
    if result.spec is not None:  # a mutation that is still valid must also survive the formatter
        text = format_spec(result.spec)
        again = parse_spec(text, filename)
        assert again.spec == result.spec, again.render()
        assert format_spec(again.spec) == text


def test_seeds_are_valid(filename):
    for seed in SEEDS:
        assert parse_spec(seed, filename).ok


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(mutated())
def test_mutated_specs_never_raise(filename, text):
    check_outcome(text, filename)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(ALPHABET | st.sampled_from(TOKENS), max_size=40).map("".join))
def test_arbitrary_text_never_raises(filename, text):
    check_outcome(text, filename)
