"""Glob patterns match like fnmatch (with `[` literal), and in linear time: stars cannot make them hang."""

from __future__ import annotations

import fnmatch

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from circuitspec.lang import parse_spec
from circuitspec.lang.globs import glob_regex
from circuitspec.lang.resolve import load_context, resolve

from lang_bounds import finishes_within

HEADER = 'spec t "test"\nmodel "py-sparse-small"\ntask closing_quote\nablate zero\n'


def reference(pattern: str, name: str) -> bool:
    """fnmatch, with `[` made literal as the language has it (node names are full of brackets)."""
    return fnmatch.fnmatchcase(name, pattern.replace("[", "[[]"))


@settings(max_examples=400, deadline=None)
@given(st.text("ab*?.[]", max_size=8), st.text("ab.[]", max_size=10))
def test_glob_agrees_with_fnmatch(pattern, name):
    assert bool(glob_regex(pattern).fullmatch(name)) == reference(pattern, name)
    assert bool(glob_regex(pattern).match(name)) == reference(pattern, name)  # match tests the whole name too


@pytest.mark.parametrize("pattern, name, expected", [
    ("blocks.1.attn.hook_z[head=1, *]", "blocks.1.attn.hook_z[head=1, 7]", True),
    ("blocks.1.attn.hook_z[head=1, *]", "blocks.1.attn.hook_z[head=2, 7]", False),
    ("*", "", True),
    ("", "", True),
    ("", "x", False),
    ("a*a*a", "aa", False),
    ("a*a*a", "aaa", True),
    ("*?", "", False),
    ("?*?", "ab", True),
    ("*\n*", "x\ny", True),  # any character, newline included
])
def test_glob_examples(pattern, name, expected):
    assert bool(glob_regex(pattern).fullmatch(name)) is expected


@pytest.fixture(scope="module")
def node_names() -> list[str]:
    return [text for text, _ in load_context("py-sparse-small").circuit_nodes()]


@pytest.mark.parametrize("stars", [6, 12, 50])
def test_many_stars_on_every_node_of_a_real_model(node_names, stars):
    """`"******!"` took 42 s on this model with the backtracking translation, and 12 stars never ended."""
    assert len(node_names) > 1000
    with finishes_within(10):
        assert not any(glob_regex("*" * stars + "!").fullmatch(name) for name in node_names)
        matched = [name for name in node_names if glob_regex("*" * stars + "]").fullmatch(name)]
        hard = [name for name in node_names if glob_regex("*?" * (stars // 3)).fullmatch(name)]  # `?` between stars
    assert len(matched) == len(node_names)
    assert hard == [name for name in node_names if len(name) >= stars // 3]


def test_include_nodes_matching_many_stars_resolves(node_names):
    with finishes_within(10):
        parsed = parse_spec(HEADER + 'include nodes matching "' + "*" * 50 + '!"\ninclude nodes matching "b*.*.*.*[*]"\n', "t.circ")
        assert parsed.ok, parsed.render()
        resolved, diagnostics = resolve(parsed.spec, "t.circ")
    assert [d.code for d in diagnostics] == ["E303"]  # nothing ends in `!`
    assert resolved is None
