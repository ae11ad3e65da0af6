"""The README's code runs as written.

Every ```python block of README.md runs unchanged: a block with a ``def test_`` function under pytest
(in a fresh interpreter, as a user would run it), any other block as a script; a block that defines
``TASKS`` (the tasks module the README shows) must also produce valid examples of each task. A ```bash
block runs only when marked to: none is today, since each sets up a virtualenv, runs the whole suite,
trains or benchmarks (minutes each). Each bash block must therefore say why it is skipped.

Markers are HTML comments (invisible on GitHub) on the line before a block's opening fence:

- ``<!-- readme-test: skip (REASON) -->``: not run; the reason is required.
- ``<!-- readme-test: continues -->``: a python block that goes on from the one before it (uses its
  imports and names), so the two run as one file.
- ``<!-- readme-test: run -->``: a bash block cheap enough to run (from the repository root).

The ``.circ`` spec the README shows in short (the first ```circ block that starts with ``spec``) is
verified through the command line and must pass every claim, as the README says it does. Other blocks
(diagnostics, TOML, the layout) are text, not run here.

The README's Hypothesis tests run under Hypothesis' default settings, deadline and health checks
included: the point is that a user's copy passes without ``deadline=None``. Two things differ from a
user's run, neither in the code: the files run in a temporary folder holding a copy of ``specs/`` (so
Hypothesis' example database, ``.hypothesis/``, starts empty and stays out of the repository), and
``--hypothesis-seed=0`` fixes which inputs are drawn. The seed is there because the examples are real
searches for counterexamples: a claim checked on every input by ``verify`` can still be broken by an
input Hypothesis finds (``reader_single`` of ``specs/closing_quote.circ`` was, once in three searches
of 1,500 inputs), and this test should fail when the code or the README is wrong, not when a random draw
finds one.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
MARKER = re.compile(r"^<!--\s*readme-test:\s*(?P<what>skip|continues|run)\b\s*(?P<rest>.*?)\s*-->$")
TIMEOUT_S = 300  # one program; together they take about 15 s on the project's 2-core machine


@dataclass
class Block:
    language: str
    source: str
    line: int  # of the opening fence, 1-based
    marker: str | None = None  # skip, continues or run
    reason: str = ""


@dataclass
class Program:
    """One file to run: a python block and the blocks that continue it."""

    blocks: list[Block] = field(default_factory=list)

    @property
    def source(self) -> str:
        return "\n\n".join(b.source for b in self.blocks)

    @property
    def name(self) -> str:
        return "README.md:" + "+".join(str(b.line) for b in self.blocks)

    @property
    def is_test(self) -> bool:
        return re.search(r"^(async )?def test_", self.source, re.M) is not None


def read_blocks(text: str) -> list[Block]:
    """The fenced blocks of ``text``, each with the readme-test marker on the line before it, if any."""
    blocks: list[Block] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        fence = re.match(r"^```(\S*)\s*$", lines[i])
        if not fence:
            i += 1
            continue
        start = i
        i += 1
        body = []
        while i < len(lines) and lines[i].strip() != "```":
            body.append(lines[i])
            i += 1
        if i == len(lines):
            raise AssertionError(f"README.md:{start + 1}: a code block is never closed")
        block = Block(fence.group(1), "\n".join(body) + "\n", start + 1)
        previous = next((lines[j].strip() for j in range(start - 1, -1, -1) if lines[j].strip()), "")
        if previous.startswith("<!--") and "readme-test" in previous:
            marker = MARKER.match(previous)
            if marker is None:
                raise AssertionError(f"README.md:{start}: unreadable marker {previous!r} "
                                     "(readme-test: skip (REASON) | continues | run)")
            block.marker, block.reason = marker.group("what"), marker.group("rest").strip("() ")
        blocks.append(block)
        i += 1
    return blocks


def python_programs(blocks: list[Block]) -> list[Program]:
    programs: list[Program] = []
    for block in blocks:
        if block.language != "python" or block.marker == "skip":
            continue
        if block.marker == "continues":
            if not programs:
                raise AssertionError(f"README.md:{block.line}: continues, but no python block comes before it")
            programs[-1].blocks.append(block)
        else:
            programs.append(Program([block]))
    return programs


BLOCKS = read_blocks(README.read_text(encoding="utf-8"))
PROGRAMS = python_programs(BLOCKS)


def test_the_readme_markers_are_complete():
    """Every marker is where it means something, a skip says why, and no bash block runs unmarked
    (a command that trains or needs a GPU must never run here by accident)."""
    assert PROGRAMS and any(p.is_test for p in PROGRAMS)
    for block in BLOCKS:
        where = f"README.md:{block.line}"
        if block.marker == "skip":
            assert block.reason, f"{where}: say why the block is skipped: <!-- readme-test: skip (REASON) -->"
        if block.marker == "continues":
            assert block.language == "python", f"{where}: only a python block continues another"
        if block.marker == "run":
            assert block.language == "bash", f"{where}: only a bash block is marked run (python blocks run anyway)"
        if block.language == "bash":
            assert block.marker in ("skip", "run"), (
                f"{where}: mark this bash block <!-- readme-test: run --> (cheap, runs in the test) or "
                "<!-- readme-test: skip (REASON) -->")


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    """A folder like the repository root for the README's relative paths (specs/...), nothing else."""
    shutil.copytree(ROOT / "specs", tmp_path / "specs")
    return tmp_path


def run(command: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=TIMEOUT_S)


@pytest.mark.parametrize("program", PROGRAMS, ids=[p.name for p in PROGRAMS])
def test_the_readme_python_runs_as_written(program: Program, workdir: Path):
    first = program.blocks[0].source.splitlines()[0]
    named = re.fullmatch(r"#\s*(\w+\.py)\s*", first)
    if program.is_test:
        path = workdir / f"test_readme_{program.blocks[0].line}.py"
        path.write_text(program.source, encoding="utf-8")
        result = run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--hypothesis-seed=0",
                      path.name], workdir)
        tests = len(re.findall(r"^(?:async )?def test_", program.source, re.M))
        assert result.returncode == 0 and f"{tests} passed" in result.stdout, (
            f"{program.name} failed as written:\n{result.stdout[-6000:]}\n{result.stderr[-3000:]}")
        return
    path = workdir / (named.group(1) if named else f"readme_{program.blocks[0].line}.py")
    path.write_text(program.source, encoding="utf-8")
    driver = ("import runpy, sys\n"
              f"names = runpy.run_path({path.name!r}, run_name='__main__')\n"
              "for task in names.get('TASKS', ()):\n"
              "    assert task.sample(50, 0), task.name  # every example is checked against the task's declarations\n")
    result = run([sys.executable, "-c", driver], workdir)
    assert result.returncode == 0, (
        f"{program.name} failed as written:\n{result.stdout[-3000:]}\n{result.stderr[-6000:]}")


BASH_TO_RUN = [b for b in BLOCKS if b.language == "bash" and b.marker == "run"]


@pytest.mark.skipif(not BASH_TO_RUN, reason="no README bash block is marked <!-- readme-test: run -->")
@pytest.mark.parametrize("block", BASH_TO_RUN, ids=[f"README.md:{b.line}" for b in BASH_TO_RUN])
def test_the_readme_commands_marked_run_succeed(block: Block):
    result = run(["bash", "-euo", "pipefail", "-c", block.source], ROOT)
    assert result.returncode == 0, f"README.md:{block.line} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"


SPEC_BLOCKS = [b for b in BLOCKS if b.language == "circ" and b.source.startswith("spec ")]


def test_the_readme_spec_verifies(tmp_path: Path):
    """The spec the README shows passes ``circuitspec verify`` with every claim, and has as many as it says."""
    assert SPEC_BLOCKS, "the README shows no ```circ block starting with `spec`"
    block = SPEC_BLOCKS[0]
    path = tmp_path / "readme_spec.circ"
    path.write_text(block.source, encoding="utf-8")
    result = run([sys.executable, "-m", "circuitspec", "verify", str(path)], ROOT)
    claims = len(re.findall(r"^claim ", block.source, re.M))
    assert result.returncode == 0 and f"{claims} pass, 0 fail, 0 inconclusive" in result.stdout, (
        f"README.md:{block.line}: the spec does not verify as the README says:\n{result.stdout[-4000:]}\n{result.stderr[-2000:]}")
    words = {2: "two", 3: "three", 4: "four", 5: "five", 6: "six", 7: "seven", 8: "eight"}
    assert f"passes its {words.get(claims, claims)} claims" in README.read_text(encoding="utf-8"), (
        "the README's count of the spec's claims is out of date")
