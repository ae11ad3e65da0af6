"""Every `circ` example in docs/language.md parses (or fails with the code it says it fails with).

Rules (also stated at the top of the page): a block whose first statement is `spec` stands alone;
any other block is appended to the first block, the running example; ```circ-error CODE blocks
must produce exactly that diagnostic code; ```circ file=NAME blocks are written to NAME first.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from circuitspec.lang import CODES, parse_spec

DOC = Path(__file__).parent.parent / "docs" / "language.md"
BLOCK = re.compile(r"^```(circ(?:-error)?)([^\n]*)\n(.*?)^```", re.M | re.S)


def blocks() -> list[tuple[str, str, str, int]]:
    text = DOC.read_text()
    return [(m.group(1), m.group(2).strip(), m.group(3), text[: m.start()].count("\n") + 1) for m in BLOCK.finditer(text)]


def standalone(code: str) -> bool:
    statements = [line.strip() for line in code.splitlines() if line.strip() and not line.strip().startswith("#")]
    return bool(statements) and statements[0].split()[0] == "spec"


RUNNING = blocks()[0][2]
EXAMPLES = [b for b in blocks() if not b[1].startswith("file=")]


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("docs")
    for kind, info, code, _ in blocks():
        if info.startswith("file="):
            (folder / info.removeprefix("file=")).write_text(code)
    return folder


def test_the_running_example_is_a_complete_spec():
    assert standalone(RUNNING)
    assert len(EXAMPLES) >= 25


@pytest.mark.parametrize("kind, info, code, line", EXAMPLES, ids=[f"line{b[3]}" for b in EXAMPLES])
def test_example(kind, info, code, line, folder):
    text = code if standalone(code) or code == RUNNING else RUNNING + code
    result = parse_spec(text, str(folder / "example.circ"))
    if kind == "circ":
        assert result.ok, f"docs/language.md:{line}\n" + result.render()
    else:
        assert info in CODES, f"docs/language.md:{line}: `circ-error` needs a known code, got {info!r}"
        assert {d.code for d in result.diagnostics} == {info}, f"docs/language.md:{line}\n" + result.render()


def test_included_files_in_the_docs_parse_as_libraries(folder):
    for kind, info, code, line in blocks():
        if info.startswith("file="):
            result = parse_spec(f'include "{info.removeprefix("file=")}"\n', str(folder / "lib.circ"))
            assert {d.code for d in result.diagnostics} == {"E105"}, result.render()  # only the missing header


def test_every_diagnostic_code_is_documented():
    text = DOC.read_text()
    for code, title in CODES.items():
        assert re.search(rf"^\| {code} \| {re.escape(title)}", text, re.M), code


def test_the_diagnostic_shown_in_the_docs_is_real(folder):
    text = DOC.read_text()
    shown = re.search(r"```\n(spec\.circ:.*?)```", text, re.S).group(1)
    result = parse_spec(RUNNING + "edge opener -> kindd\n", "spec.circ")
    assert result.render().startswith(shown)
