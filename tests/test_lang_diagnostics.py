"""Diagnostics: a hint for every code, and rendering that stays linear and short however many there are."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from circuitspec.commands.check_cmd import check_file
from circuitspec.lang import CODES, Diagnostic, parse_spec, render_all
from circuitspec.lang import diagnostics as D
from circuitspec.lang.limits import MAX_SHOWN

LANG = Path(__file__).parent.parent / "circuitspec" / "lang"
INVALID = Path(__file__).parent / "invalid_specs"
HEADER = 'spec s\nmodel "py-sparse-small"\ntask closing_quote\nablate zero\n'


def test_every_code_has_a_hint():
    assert set(D.HINTS) == set(CODES)
    for code, hint in D.HINTS.items():
        assert hint.strip() and not hint.endswith("."), code


def test_every_code_the_language_layer_writes_is_in_the_catalogue():
    written = {code for path in LANG.glob("*.py") for code in re.findall(r'"(E\d{3})"', path.read_text())}
    assert written <= set(CODES), sorted(written - set(CODES))
    assert len(written) > 40


def test_a_diagnostic_without_a_hint_gets_its_codes():
    bare = Diagnostic("f.circ", 1, 1, 1, 2, "error", "E301", "invalid index")
    assert bare.hint == D.HINTS["E301"]
    assert Diagnostic("f.circ", 1, 1, 1, 2, "error", "E301", "x", "own hint").hint == "own hint"
    assert Diagnostic("f.circ", 1, 1, 1, 2, "warning", "W999", "not a language code").hint is None


@pytest.mark.parametrize("body, code", [
    ("node a = blocks.0.mlp.hook_post[2.5]\n", "E301"),  # the codes the campaign found without a hint
    ("group g = blocks.0.mlp.hook_post[3, 3]\n", "E301"),
    ('include nodes matching ""\n', "E303"),
    ("claim logit[0] > 1e999\n", "E006"),
    ("samples 0\n", "E208"),
    ("zzz\n", "E001"),
    ("node a = x.y[1] 2\n", "E001"),
])
def test_the_codes_found_without_hints_now_have_them(body, code):
    diagnostics = parse_spec(HEADER + body, "s.circ").diagnostics
    assert code in [d.code for d in diagnostics]
    assert all(d.hint for d in diagnostics), diagnostics


def test_every_golden_diagnostic_has_a_hint(monkeypatch):
    """The golden specs produce every code but the limits' (parse and resolve, as `check` runs them)."""
    monkeypatch.chdir(INVALID)
    for path in sorted(INVALID.glob("*.circ")):
        for diag in check_file(Path(path.name))[1]:
            assert diag.hint, diag


# ---- rendering ----------------------------------------------------------------------------------


def many_errors(n: int) -> tuple[list[Diagnostic], dict[str, str]]:
    text = "".join(f"line {i}\n" for i in range(n))
    diags = [Diagnostic("f.circ", i + 1, 1, i + 1, 5, "error", "E001", f"bad {i}") for i in range(n)]
    return diags, {"f.circ": text}


def test_render_all_prints_the_first_ones_and_counts_the_rest():
    diags, sources = many_errors(120)
    text = render_all(diags, sources)
    assert text.count("error[E001]") == MAX_SHOWN
    assert f"\N{HORIZONTAL ELLIPSIS} and {120 - MAX_SHOWN} more" in text
    assert text.endswith("\n120 errors\n")
    assert render_all(diags, sources, limit=None).count("error[E001]") == 120
    assert "more" not in render_all(diags[:MAX_SHOWN], sources)


def test_render_all_splits_each_source_once(monkeypatch):
    """Rendering was quadratic: the source was split again for every diagnostic (8,000 lines: 14 s)."""
    calls = []
    split = D.source_lines
    monkeypatch.setattr(D, "source_lines", lambda text: calls.append(1) or split(text))
    diags, sources = many_errors(8000)
    text = render_all(diags, sources, limit=None)
    assert len(calls) == 1 and text.count("error[E001]") == 8000


def test_a_long_line_is_shown_around_the_span():
    line = "edge " + " -> ".join(f"n{i}" for i in range(50_000))
    col = line.index("n40000") + 1
    diag = Diagnostic("f.circ", 1, col, 1, col + 6, "error", "E102", "unknown name `n40000`")
    text = D.render(diag, line)
    shown, caret = text.split("\n")[1:3]
    assert len(shown) < D.WIDTH + 20 and "n40000" in shown
    assert shown.startswith(" 1 | \N{HORIZONTAL ELLIPSIS}") and shown.endswith("\N{HORIZONTAL ELLIPSIS}")
    start = caret.index("^")
    assert shown[start : start + 6] == "n40000" and caret[start:] == "^~~~~~"


def test_short_lines_are_shown_whole():
    diag = Diagnostic("f.circ", 1, 6, 1, 9, "error", "E102", "unknown name `abc`")
    assert D.render(diag, "edge abc -> d").split("\n")[1:3] == [" 1 | edge abc -> d", "   |      ^~~"]
