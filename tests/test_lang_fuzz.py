"""Fuzzing the parser: mutated specs give a spec or diagnostics with valid positions and a hint, never an
exception, and quickly; what parses is formatted into text that parses to the same tree.

Two kinds: Hypothesis mutations of seed specs, and a seeded campaign over the families that once broke
(deep nesting, include cycles and chains, truncation at every line, byte flips, invalid UTF-8, BOM and
CR/CRLF line ends, huge numbers), a few seconds in all.
"""

from __future__ import annotations

import random
import re
import shutil
from pathlib import Path
from typing import Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from circuitspec.lang import CODES, ParseResult, format_spec, parse_spec, render_all, source_lines
from circuitspec.lang.parser import parse_spec_or_library

from lang_bounds import CASE_SECONDS, finishes_within

SPECS = Path(__file__).parent.parent / "specs"

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


def check_result(result: ParseResult, reparse: Callable[[str], ParseResult]) -> None:
    """Success, or clean diagnostics (a known code other than E999, a valid span, a hint); and a spec
    that parses is formatted into text that ``reparse`` reads back as the same tree."""
    errors = [d for d in result.diagnostics if d.is_error]
    assert (result.spec is None) == bool(errors)
    for diag in result.diagnostics:
        assert diag.code in CODES and diag.code != "E999", diag
        assert diag.message and diag.hint, diag
        if diag.file not in result.sources:  # the file itself could not be read: nothing to point into
            assert (diag.line, diag.col, diag.code) in {(1, 1, "E404"), (1, 1, "E007")}, diag
            continue
        lines = source_lines(result.sources[diag.file])
        assert 1 <= diag.line <= diag.end_line <= len(lines), diag
        assert 1 <= diag.col <= len(lines[diag.line - 1]) + 1, diag
        assert 1 <= diag.end_col <= len(lines[diag.end_line - 1]) + 1, diag
        assert (diag.end_line, diag.end_col) >= (diag.line, diag.col), diag
    render_all(result.diagnostics, result.sources)
    if result.spec is not None:  # a mutation that is still valid must also survive the formatter
        text = format_spec(result.spec)
        again = reparse(text)
        assert again.spec == result.spec, again.render()
        assert format_spec(again.spec) == text


def check_outcome(text: str, filename: str) -> None:
    check_result(parse_spec(text, filename), lambda formatted: parse_spec(formatted, filename))


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


# ---- the seeded campaign ------------------------------------------------------------------------


@pytest.fixture()
def workdir(tmp_path) -> Path:
    """A copy of specs/ (so includes of lib/ resolve), where each case writes its file."""
    shutil.copytree(SPECS, tmp_path / "specs")
    return tmp_path / "specs"


def spec_files() -> list[Path]:
    return sorted(SPECS.rglob("*.circ"))


def check_file(path: Path) -> None:
    """``check`` and ``fmt`` read files this way: as a spec, or as a library when that is what it is."""
    result, is_library = parse_spec_or_library(path)

    def reparse(text: str) -> ParseResult:
        path.write_text(text, encoding="utf-8")
        again, again_library = parse_spec_or_library(path)
        assert again_library == is_library
        return again

    check_result(result, reparse)


def test_truncations_at_every_line_format_to_the_same_tree(workdir):
    """fmt output always re-parses to the tree it came from: every prefix of every shipped spec
    (libraries too: a truncated library formats to a library, not to a spec missing its header)."""
    cases = 0
    for original in spec_files():
        lines = original.read_text().split("\n")
        target = workdir / original.relative_to(SPECS)
        for end in range(len(lines) + 1):
            target.write_text("\n".join(lines[:end]))
            with finishes_within(CASE_SECONDS):
                check_file(target)
            cases += 1
        shutil.copy(original, target)
    assert cases > 700


def nesting(rng: random.Random) -> str:
    opens, closes = "([{", ")]}"
    depth = rng.choice([10, 100, 1000, 20_000])
    if rng.random() < 0.5:
        soup = "".join(rng.choice(opens) for _ in range(depth)) + "".join(rng.choice(closes) for _ in range(depth))
    else:  # one bracket more on each line, some lines indented (continuations)
        soup = "".join(" " * rng.choice([0, 4]) + rng.choice(opens) * (i % 300) + "\n" for i in range(depth // 10 + 1))
    where = rng.choice(["node a = blocks.0.mlp.hook_post[{}]", "group g = {{{}}}", "claim {} > 0", "edge a -> {}", "{}"])
    return SEEDS[1] + where.format(soup) + "\n"


def byte_flips(rng: random.Random, data: bytes) -> bytes:
    data = bytearray(data)
    for _ in range(rng.randint(1, 8)):
        data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
    return bytes(data)


def invalid_utf8(rng: random.Random, data: bytes) -> bytes:
    bad = rng.choice([b"\xff", b"\xc3", b"\xed\xa0\x80", b"\xf8\x88\x80\x80\x80", b"\x80", b"\xe2\x82"])
    at = rng.randrange(len(data) + 1)
    return data[:at] + bad + data[at:]


def huge_numbers(rng: random.Random, text: str) -> str:
    def huge(match: re.Match) -> str:
        if rng.random() < 0.9:  # a few per file: most cases should still be specs, for the round trip
            return match.group(0)
        return rng.choice(["9" * rng.choice([20, 99, 100, 4000]), "1e999", "-1e-999", "1e308", "1.8e308", "0." + "0" * 500 + "1",
                           "-" + "9" * 300, "1" + "0" * 60 + ".5", "123456789012345678901234567890", "5e-324"])
    return re.sub(r"(?<![\w.])-?\d+(\.\d+)?(?![\w.])", huge, text)


@pytest.mark.parametrize("family", ["nesting", "byte_flips", "invalid_utf8", "bom_crlf", "huge_numbers"])
def test_campaign(family, workdir):
    """Each case ends in a spec or clean diagnostics; the whole family in well under the alarm."""
    rng = random.Random(f"circuitspec-{family}")
    originals = spec_files()
    for case in range(40):
        original = rng.choice(originals)
        target = workdir / original.relative_to(SPECS)
        data = original.read_bytes()
        with finishes_within(CASE_SECONDS):
            if family == "nesting":
                target.write_text(nesting(rng))
            elif family == "byte_flips":
                target.write_bytes(byte_flips(rng, data))
            elif family == "invalid_utf8":
                target.write_bytes(invalid_utf8(rng, data))
            elif family == "bom_crlf":
                ending = rng.choice(["\r\n", "\r", "\n"])
                same, _ = parse_spec_or_library(target)
                target.write_bytes(b"\xef\xbb\xbf" * rng.randint(0, 1) + data.decode().replace("\n", ending).encode())
                moved, _ = parse_spec_or_library(target)
                assert moved.spec == same.spec and moved.ok == same.ok, moved.render()  # only the line ends changed
            else:
                target.write_text(huge_numbers(rng, data.decode()))
            check_file(target)
            if family == "invalid_utf8":
                [diag] = parse_spec_or_library(target)[0].diagnostics
                assert diag.code in ("E404", "E401") and "UTF-8" in diag.message + diag.hint
        shutil.copy(original, target)


def test_campaign_include_graphs(tmp_path):
    """Random include graphs: chains up to far past the depth limit, cycles, diamonds, self-includes,
    missing files; never an internal error (a chain thousands deep used to exhaust the recursion limit)."""
    rng = random.Random("circuitspec-includes")
    for case in range(12):
        folder = tmp_path / f"case{case}"
        folder.mkdir()
        count = rng.choice([3, 20, 60])
        chain_length = rng.choice([0, 5, 40, 400])
        for i in range(count):
            targets = [f"f{rng.randrange(count + 2)}.circ" for _ in range(rng.randint(0, 3))]  # +2: some are missing
            body = "".join(f'include "{t}"\n' for t in targets)
            (folder / f"f{i}.circ").write_text(body + f"node n{i} = blocks.0.mlp.hook_post[{i}]\n")
        for i in range(chain_length):
            (folder / f"c{i}.circ").write_text(f'include "c{i + 1}.circ"\nnode c{i} = x.y[{i}]\n')
        (folder / f"c{chain_length}.circ").write_text('include "f0.circ"\n')
        spec = folder / "spec.circ"
        spec.write_text(SEEDS[1] + 'include "f0.circ"\ninclude "c0.circ"\nedge n0 -> a\n')
        with finishes_within(CASE_SECONDS):
            check_file(spec)
