"""Limits: any input is answered quickly, past a limit with one diagnostic that says which; files that are
not regular (devices, pipes) are refused before a byte is read; only ASCII digits are numbers."""

from __future__ import annotations

import difflib
import os
from pathlib import Path

import pytest

from circuitspec.lang import limits, parse_file, parse_spec
from circuitspec.lang import parser as P
from circuitspec.lang.resolve import resolve

from lang_bounds import finishes_within

HEADER = 'spec s\nmodel "py-sparse-small"\ntask closing_quote\nablate zero\n'


def codes(result) -> list[str]:
    return [d.code for d in result.diagnostics]


def clean(result) -> None:
    """Diagnostics, never an internal error, and a rendering that does not raise."""
    assert "E999" not in codes(result), result.render()
    result.render()


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(text)
    return path


# ---- size ---------------------------------------------------------------------------------------


def test_a_text_over_the_size_limit_is_one_diagnostic_at_its_start():
    with finishes_within(10):
        result = parse_spec(HEADER + "# " + "x" * limits.MAX_FILE_BYTES, "big.circ")
    [diag] = result.diagnostics
    assert (diag.code, diag.line, diag.col) == ("E007", 1, 1) and "1 MiB" in diag.message
    assert len(result.sources["big.circ"]) <= 200  # the source is not kept whole for rendering
    clean(result)


def test_a_file_over_the_size_limit_is_not_read_whole(tmp_path):
    path = write(tmp_path, "big.circ", "#" * (limits.MAX_FILE_BYTES + 1))
    assert codes(parse_file(path)) == ["E007"]
    spec = write(tmp_path, "spec.circ", HEADER + 'include "big.circ"\n')
    [diag] = parse_file(spec).diagnostics
    assert (diag.code, diag.line) == ("E007", 5) and "big.circ" in diag.message


def test_too_many_lines():
    result = parse_spec(HEADER + "\n" * limits.MAX_LINES, "s.circ")
    assert codes(result) == ["E007"] and "lines" in result.diagnostics[0].message


def test_too_many_statements_stops_at_the_first_one_past_the_limit():
    body = "".join(f"node n{i} = blocks.0.mlp.hook_post[{i % 512}]\n" for i in range(limits.MAX_STATEMENTS + 500))
    with finishes_within(20):
        result = parse_spec(HEADER + body, "s.circ")
    [diag] = result.diagnostics
    assert diag.code == "E007" and diag.line == limits.MAX_STATEMENTS + 1 and "statements" in diag.message
    assert len(result.partial.statements) == limits.MAX_STATEMENTS
    clean(result)


def test_too_many_tokens_in_one_statement():
    body = "edge " + " -> ".join(["a"] * limits.MAX_TOKENS) + "\n"
    with finishes_within(20):
        result = parse_spec(HEADER + body, "s.circ")
    assert codes(result) == ["E007"] and "tokens" in result.diagnostics[0].message


def test_counting_tokens_stops_at_the_limit():
    """A bound on work: a million brackets are not counted one by one past the limit they break."""
    assert limits.count_tokens("(" * 1_000_000, 100) == 101
    assert limits.count_tokens('node a = x.y[1] "a # b" # comment', 100) == 8


def test_errors_past_the_limit_stop_the_parser():
    with finishes_within(20):
        result = parse_spec(HEADER + "$\n" * 8000, "s.circ")  # `$` is no token of the language: E002 on every line
    assert codes(result) == ["E002"] * limits.MAX_ERRORS + ["E008"]
    assert result.diagnostics[-1].line == 4 + limits.MAX_ERRORS + 1
    assert result.render().count("error[") == limits.MAX_SHOWN


@pytest.mark.parametrize("text", [
    "node a = x.y[" + "(" * 100_000 + "]",
    "node a = x.y" + "[" * 100_000,
    "group g = " + "{" * 100_000,
    "claim " + "(" * 50_000 + ")" * 50_000,
    "group g = {\n" + "    {\n" * 20_000,
    "".join("(" * i + "\n" for i in range(1, 1200)),
    "".join("    " * (i % 2) + "[" * i + "\n" for i in range(1, 1200)),
    "edge " + " -> ".join(f"n{i}" for i in range(3000)),
])
def test_deep_nesting_is_a_quick_clean_diagnostic(text):
    """The language has no nesting deeper than a reference in braces: deep brackets fail at the first one
    too many (before the fixes, 3,000 lines of nested parentheses took 26 s to render)."""
    with finishes_within(10):
        result = parse_spec(HEADER + text + "\n", "s.circ")
        clean(result)
    assert result.diagnostics and len(result.diagnostics) <= 5000


def test_did_you_mean_searches_are_bounded(monkeypatch):
    """Each search compares a name with every defined name: unbounded, that is quadratic."""
    calls = []
    close = difflib.get_close_matches
    monkeypatch.setattr(P.difflib, "get_close_matches", lambda *a, **k: calls.append(1) or close(*a, **k))
    body = "".join(f"node n{i} = x.y[{i}]\n" for i in range(300)) + "".join(f"edge m{i} -> k{i}\n" for i in range(600))
    result = parse_spec(HEADER + body, "s.circ")
    assert codes(result) == ["E102"] * 1200
    assert len(calls) <= limits.MAX_SUGGESTIONS
    assert all(d.hint for d in result.diagnostics)


# ---- includes -----------------------------------------------------------------------------------


def chain(folder: Path, depth: int) -> Path:
    """spec.circ -> f0.circ -> ... -> f{depth-1}.circ, each defining one node."""
    for i in range(depth):
        nxt = f'include "f{i + 1}.circ"\n' if i + 1 < depth else ""
        write(folder, f"f{i}.circ", nxt + f"node n{i} = x.y[{i}]\n")
    return write(folder, "spec.circ", HEADER + 'include "f0.circ"\n' + f"edge n0 -> n{depth - 1}\n")


def test_an_include_chain_at_the_depth_limit_is_fine(tmp_path):
    result = parse_file(chain(tmp_path, limits.MAX_INCLUDE_DEPTH - 1))
    assert result.ok, result.render()


def test_an_include_chain_thousands_deep_is_one_diagnostic(tmp_path, monkeypatch):
    """It used to exhaust Python's recursion limit (E999)."""
    monkeypatch.chdir(tmp_path)
    chain(tmp_path, 3000)
    with finishes_within(20):
        result = parse_file("spec.circ")
    [diag] = result.diagnostics  # and no `unknown name` for what the unread files define
    assert diag.code == "E405" and diag.file == f"f{limits.MAX_INCLUDE_DEPTH - 2}.circ"
    assert diag.message.endswith("deep: spec.circ -> f0.circ -> f1.circ -> ... (27 more) -> f29.circ -> f30.circ -> f31.circ")


@pytest.mark.parametrize("length", [1, 2, 10, limits.MAX_INCLUDE_DEPTH - 1])
def test_include_cycles_are_reported_where_they_close(tmp_path, length):
    for i in range(length):
        write(tmp_path, f"c{i}.circ", f'include "c{(i + 1) % length}.circ"\nnode n{i} = x.y[{i}]\n')
    result = parse_file(write(tmp_path, "spec.circ", HEADER + 'include "c0.circ"\n'))
    [diag] = result.diagnostics
    assert diag.code == "E402" and Path(diag.file).name == f"c{length - 1}.circ"


def test_a_long_cycle_meets_the_depth_limit_first(tmp_path):
    for i in range(200):
        write(tmp_path, f"c{i}.circ", f'include "c{(i + 1) % 200}.circ"\n')
    assert codes(parse_file(write(tmp_path, "spec.circ", HEADER + 'include "c0.circ"\n'))) == ["E405"]


@pytest.mark.parametrize("target", ["/dev/zero", "/dev/urandom", "fifo", "folder"])
def test_only_regular_files_are_read(tmp_path, target):
    """/dev/zero was read until memory ran out, and a FIFO blocked forever."""
    if target == "fifo":
        if not hasattr(os, "mkfifo"):
            pytest.skip("no FIFOs here")
        os.mkfifo(tmp_path / "fifo.circ")
        target = "fifo.circ"
    elif target == "folder":
        (tmp_path / "folder.circ").mkdir()
        target = "folder.circ"
    elif not os.path.exists(target):
        pytest.skip(f"no {target} here")
    with finishes_within(10):
        included = parse_file(write(tmp_path, "spec.circ", HEADER + f'include "{target}"\n'))
        top = parse_file(target if target.startswith("/") else tmp_path / target)
    [diag] = included.diagnostics
    assert (diag.code, diag.line) == ("E404", 5) and "not a .circ file" in diag.message and diag.hint
    assert codes(top) == ["E404"]


# ---- digits -------------------------------------------------------------------------------------


@pytest.mark.parametrize("written, ascii_form", [("٣", "3"), ("1٣", "13"), ("١.٥", "1.5"), ("３", "3"), ("۱۲", "12")])
def test_only_ascii_digits_are_numbers(written, ascii_form):
    """`hook_post[٣]` used to be read as index 3."""
    for text in (f"node a = blocks.0.mlp.hook_post[{written}]\n", f"claim logit[0] > {written}\n"):
        result = parse_spec(HEADER + text, "s.circ")
        assert not result.ok
        [diag] = result.diagnostics
        assert diag.code == "E006" and diag.hint == f"did you mean `{ascii_form}`?"
        assert result.sources["s.circ"].split("\n")[diag.line - 1][diag.col - 1 : diag.end_col - 1] == written


# ---- resolution ---------------------------------------------------------------------------------


def test_resolving_is_bounded_too():
    """Each edge between wide references searches much of the model's graph."""
    parsed = parse_spec(HEADER + "edge hook_tokens[*] -> hook_logits[*]\n" * 60, "s.circ")
    assert parsed.ok, parsed.render()
    with finishes_within(30):
        resolved, diagnostics = resolve(parsed.spec, "s.circ")
    assert resolved is None and [d.code for d in diagnostics] == ["E007"]
    assert diagnostics[0].line > 5  # the first edges were resolved


def test_a_real_spec_with_edges_is_far_inside_the_resolution_limit():
    spec = Path(__file__).parent.parent / "specs" / "closing_quote.circ"
    parsed = parse_file(spec)
    assert parsed.ok, parsed.render()
    resolved, diagnostics = resolve(parsed.spec, str(spec))
    assert resolved is not None and not diagnostics
