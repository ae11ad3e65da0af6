"""Output conventions of the command line: results on stdout, progress and logs on stderr, COLUMNS,
-q / -v, GitHub Actions annotations, [tool.circuitspec] defaults, a fast --help, did-you-mean on paths.

Verdicts come from the hand-set oracle model of test_verify_oracle (seconds, not minutes).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from circuitspec.cli import main
from circuitspec.schemas import validate
from test_verify_oracle import CIRCUIT, HEADER, TASK, hand_set_model

SPEC_NAME = "a_spec_with_a_rather_long_name_for_eighty_columns"  # its file:line must survive 80 columns
CLAIMS = CIRCUIT + """edge carrier -> pos -> out -> logits
claim sufficient faithfulness >= 0.95
claim says_a: logit['a'] > logit['b'] when last == "a"
claim backwards: logit['b'] > logit['a'] when last == "a"
"""
FAST = ["--samples", "40", "--baselines", "30", "--partial-ablations", "2"]


@pytest.fixture(scope="module")
def oracle(tmp_path_factory):
    from circuitspec.engine.checkpoint import save_checkpoint
    from circuitspec.engine.tasks import register_task, unregister_task

    root = tmp_path_factory.mktemp("conventions")
    save_checkpoint(hand_set_model(), root / "model", {"description": "hand-set oracle"})
    spec = root / f"{SPEC_NAME}.circ"
    spec.write_text(HEADER.format(name="conventions", ablation="mean over task") + CLAIMS)
    register_task(TASK, replace=True)
    yield spec
    unregister_task(TASK.name)


@pytest.fixture(autouse=True)
def no_columns(monkeypatch):
    """Piped output is 140 columns wide unless COLUMNS says otherwise: the tests say when it does."""
    monkeypatch.delenv("COLUMNS", raising=False)


def line_of(spec: Path, text: str) -> int:
    return next(i for i, line in enumerate(spec.read_text().splitlines(), 1) if text in line)


def test_verify_prints_its_results_on_stdout_and_nothing_else_there(oracle, capsys):
    assert main(["verify", str(oracle), *FAST]) == 1
    out, err = capsys.readouterr()
    assert "claims" in out and f"{oracle.name}:{line_of(oracle, 'backwards')}" in out
    assert re.search(r"^2 pass, 1 fail, 0 inconclusive in [\d.]+ s", out, re.M)
    assert "claims" not in err and "pass," not in err  # the report is not on stderr


def test_piped_output_honours_columns_and_keeps_every_location_whole(oracle, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")
    assert main(["verify", str(oracle), *FAST]) == 1
    out = capsys.readouterr().out
    assert max(len(line) for line in out.splitlines()) <= 80
    for claim, verdict in (("sufficient", "pass"), ("says_a", "pass"), ("backwards", "fail")):
        where = f"{oracle.name}:{line_of(oracle, claim)}"
        assert re.search(rf"^{verdict} {re.escape(where)} ", out, re.M), (where, out)  # whole: not folded, not cut
    monkeypatch.setenv("COLUMNS", "200")
    assert main(["verify", str(oracle), *FAST]) == 1
    wide = capsys.readouterr().out
    assert 80 < max(len(line) for line in wide.splitlines()) <= 200


def test_quiet_prints_only_the_summary_line_and_verbose_a_note_per_claim(oracle, capsys):
    assert main(["verify", str(oracle), *FAST, "-q"]) == 1
    out, err = capsys.readouterr()
    assert len(out.splitlines()) == 1 and out.startswith("2 pass, 1 fail, 0 inconclusive")
    assert err == ""
    assert main(["verify", str(oracle), *FAST, "--verbose"]) == 1
    out = capsys.readouterr().out
    for claim in ("says_a", "backwards"):  # the passing one too, with the claim as written and what it inherited
        assert re.search(rf"^(pass|fail) {oracle.name}:\d+ {claim} \(behaviour\): ", out, re.M), out
    assert "inherited from the spec: " in out
    with pytest.raises(SystemExit) as exit_:
        main(["verify", str(oracle), "-q", "-v"])
    assert exit_.value.code == 2


def test_json_on_stdout_moves_the_report_to_stderr(oracle, capsys):
    assert main(["verify", str(oracle), *FAST, "--json", "-"]) == 1
    out, err = capsys.readouterr()
    validate("verify", json.loads(out))
    assert [c["verdict"] for c in json.loads(out)["claims"]] == ["pass", "pass", "fail"]
    assert "claims" in err and "2 pass, 1 fail" in err


def test_github_annotations_name_each_failing_claim(oracle, capsys):
    assert main(["verify", str(oracle), *FAST, "--output-format", "github"]) == 1
    out, err = capsys.readouterr()
    lines = out.splitlines()
    assert len(lines) == 1, out  # one claim failed; passing claims get none
    line = line_of(oracle, "backwards")
    assert lines[0].startswith(f"::error file={oracle},line={line},title=fail%3A backwards (behaviour)::")
    assert lines[0].endswith("::claim backwards: logit[\"b\"] > logit[\"a\"] when last == \"a\" (fail; statistic 0 [0, 0.005], "
                             "threshold >= 0.995, n 598); fails on 598 of 598 inputs; counterexample: 'yzzyza'")
    assert "claims" in err and "2 pass, 1 fail" in err  # the human report stays in the log


def test_github_annotation_escapes_what_would_end_the_command():
    from circuitspec.verify.report import github_annotation

    text = github_annotation("dir,x/a:b.circ", 3, "t", "50% of\ninputs\r")
    assert text == "::error file=dir%2Cx/a%3Ab.circ,line=3,title=t::50%25 of%0Ainputs%0D\n"


def test_falsify_results_on_stdout_and_annotations(oracle, capsys, monkeypatch):
    base = ["falsify", str(oracle), "--seed", "0", "--max-examples", "30", "--samples", "30", "--no-database"]
    assert main(base) == 1
    out, err = capsys.readouterr()
    assert "falsification" in out and re.search(r"^\d+ survived, 1 falsified, 0 inconclusive; profile", out, re.M)
    assert "falsification" not in err
    monkeypatch.setenv("COLUMNS", "80")
    assert main(base) == 1
    out = capsys.readouterr().out
    assert max(len(line) for line in out.splitlines()) <= 80
    for claim, verdict in (("says_a", "survived"), ("backwards", "falsified")):
        assert re.search(rf"^{verdict} {re.escape(oracle.name)}:{line_of(oracle, claim)} {claim}: ", out, re.M), out
    assert main([*base, "--output-format", "github", "-q"]) == 1
    out = capsys.readouterr().out
    assert out.splitlines()[0].startswith(f"::error file={oracle},line={line_of(oracle, 'backwards')},title=falsified%3A backwards")
    assert len(out.splitlines()) == 1


def test_check_results_on_stdout_and_quiet(capsys):
    assert main(["check", "specs/quote_head.circ"]) == 0
    out, err = capsys.readouterr()
    assert out.startswith("ok specs/quote_head.circ: ") and out.splitlines()[-1] == "1 file checked: 1 clean, 0 with errors"
    assert err == ""
    assert main(["check", "specs/quote_head.circ", "-q"]) == 0
    assert capsys.readouterr().out == "1 file checked: 1 clean, 0 with errors\n"
    assert main(["check", "specs/quote_head.circ", "-v"]) == 0
    assert "  quote_head.circ:11 necessary: claim necessary faithfulness <= 0.3 (inherits " in capsys.readouterr().out


def test_prove_summary_line(capsys):
    assert main(["prove", "specs/quote_head.circ", "-q"]) == 0
    assert capsys.readouterr().out == "1 spec: 1 consistent\n"


def test_eval_table_on_stdout_progress_never_there(capsys):
    assert main(["eval", "py-dense-small", "-n", "20", "--tasks", "for_in"]) == 0
    out = capsys.readouterr().out
    assert "for_in" in out and "evaluating" not in out
    assert re.fullmatch(r"py-dense-small: 1 tasks, mean accuracy [\d.]+%, lowest [\d.]+% \(for_in\)\n", out.splitlines(True)[-1])
    assert main(["eval", "py-dense-small", "-n", "20", "--tasks", "for_in", "-q"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 1



def test_listings_print_one_summary_line_under_quiet(capsys):
    from circuitspec.engine.tasks import all_tasks

    assert main(["tasks", "-q"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"{len(all_tasks())} tasks: closing_quote, ") and len(out.splitlines()) == 1
    assert main(["models", "-q"]) == 0
    out = capsys.readouterr().out
    assert "py-sparse-small (default)" in out and len(out.splitlines()) == 1
    assert main(["models"]) == 0
    assert "shipped models" in capsys.readouterr().out  # the table is a result: stdout


def test_piped_progress_is_a_line_per_finished_unit(capsys):
    """A live bar shows nothing in a log: when stderr is not a terminal each finished unit gets a line."""
    assert main(["eval", "py-sparse-small", "-n", "10", "--tasks", "for_in", "closing_quote"]) == 0
    err = capsys.readouterr().err.splitlines()
    assert err == ["evaluating for_in: 1/2", "evaluating closing_quote: 2/2"]
    assert main(["eval", "py-sparse-small", "-n", "10", "--tasks", "for_in", "-q"]) == 0
    assert capsys.readouterr().err == ""  # -q: nothing but errors


def test_line_progress_prints_tenths_of_a_counter_and_each_advance():
    import io

    from rich.console import Console

    from circuitspec.commands.reporting import LineProgress

    buffer = io.StringIO()
    progress = LineProgress(Console(file=buffer, width=200))
    bar = progress.add_task("search", total=150)
    for step in range(151):
        progress.update(bar, completed=step)
    lines = buffer.getvalue().splitlines()
    assert len(lines) == 10 and lines[-1] == "search: 150/150"
    other = progress.add_task("groups", total=3)
    progress.advance(other)
    assert buffer.getvalue().splitlines()[-1] == "groups: 1/3"

# ---- [tool.circuitspec] defaults -------------------------------------------------------------------


def project(tmp_path: Path, table: str) -> Path:
    (tmp_path / "pyproject.toml").write_text(f"[project]\nname = 'x'\n\n[tool.circuitspec]\n{table}\n")
    return tmp_path / "pyproject.toml"


def test_project_defaults_apply_and_flags_override(oracle, tmp_path, monkeypatch, capsys):
    project(tmp_path, "seed = 7\nsamples = 24\ndevice = 'cpu'\nthreads = 1")
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "r.json"
    assert main(["verify", str(oracle), "--baselines", "30", "--partial-ablations", "0", "--json", str(out)]) == 1
    settings = json.loads(out.read_text())["manifest"]["settings"]
    assert (settings["seed"], settings["samples"]) == (7, 24)
    assert main(["verify", str(oracle), "--baselines", "30", "--partial-ablations", "0", "--seed", "3", "--samples", "30",
                 "--json", str(out)]) == 1
    settings = json.loads(out.read_text())["manifest"]["settings"]
    assert (settings["seed"], settings["samples"]) == (3, 30)
    capsys.readouterr()


def test_project_threads_default(tmp_path, monkeypatch):
    import torch

    project(tmp_path, "threads = 1")
    monkeypatch.chdir(tmp_path)
    before = torch.get_num_threads()
    try:
        assert main(["tasks", "--json"]) == 0
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_the_table_above_the_spec_applies_when_the_working_directory_has_none(tmp_path, monkeypatch):
    from circuitspec.commands.settings import settings_file

    inner = tmp_path / "research"
    (inner / "specs").mkdir(parents=True)
    pyproject = project(inner, "seed = 5")
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    args = type("Args", (), {"paths": [str(inner / "specs" / "x.circ")]})()
    assert settings_file(args, outside) == pyproject  # /tmp holds no pyproject.toml above `outside`
    assert settings_file(args, inner / "specs") == pyproject


@pytest.mark.parametrize("table, message", [
    ("sed = 1", "unknown key in [tool.circuitspec]: sed"),
    ("seed = '1'", "[tool.circuitspec] seed must be a whole number, got '1'"),
    ("seed = true", "[tool.circuitspec] seed must be a whole number, got True"),
    ("samples = 0", "[tool.circuitspec] samples must be from 1 to 100,000, got 0"),
    ("device = 'gpu'", "[tool.circuitspec] device must be one of 'auto', 'cpu', 'cuda', got 'gpu'"),
    ("threads = 1.5", "[tool.circuitspec] threads must be a whole number, got 1.5"),
    ("jobs = 0", "[tool.circuitspec] jobs must be from 1 to 256 or 'auto', got 0"),
])
def test_a_bad_project_table_is_a_one_line_usage_error(tmp_path, table, message):
    pyproject = project(tmp_path, table)
    proc = subprocess.run([sys.executable, "-m", "circuitspec", "check", str(Path("specs/quote_head.circ").resolve())],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert errors == [f"error: {pyproject}: {message}"], proc.stderr
    assert "Traceback" not in proc.stderr
    if table.startswith("sed"):
        assert "did you mean 'seed'?" in proc.stderr


# ---- --help and paths ------------------------------------------------------------------------------

HEAVY = ("torch", "numpy", "scipy", "z3", "hypothesis", "networkx", "lark")


def test_help_imports_nothing_heavy():
    """--help of the tool and of every command answers without torch (about 0.35 s against 4 s with it)."""
    from circuitspec.cli import COMMANDS

    probe = ("import sys\nfrom circuitspec.cli import main\n"
             f"for argv in [['--help']] + [[name, '--help'] for name in {[c.NAME for c in COMMANDS]!r}]:\n"
             "    try:\n        main(argv)\n    except SystemExit as e:\n        assert e.code == 0, argv\n"
             f"print(sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY!r}))\n")
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[-1] == "[]"


def test_command_line_defaults_match_the_modules_that_use_them():
    from circuitspec.commands import defaults
    from circuitspec.engine.corpus_means import DEFAULT_WINDOWS
    from circuitspec.engine.discover import DEFAULT_STEPS
    from circuitspec.engine.evaluate import EVAL_SEED
    from circuitspec.engine.train_state import STATE_DIR
    from circuitspec.engine.zoo import DEFAULT_MODEL
    from circuitspec.show import ShowOptions
    from circuitspec.verify.runner import RunSettings

    run, show = RunSettings(), ShowOptions()
    assert (defaults.SAMPLES, defaults.BASELINES, defaults.PARTIAL_ABLATIONS, defaults.SEED) == (
        run.samples, run.baselines, run.partial_ablations, run.seed)
    assert (defaults.SHOW_SAMPLES, defaults.SHOW_SEED, defaults.SHOW_MAX_EDGES, defaults.SHOW_EXPAND) == (
        show.samples, show.seed, show.max_edges, show.expand)
    assert (defaults.DEFAULT_MODEL, defaults.EVAL_SEED, defaults.STATE_DIR, defaults.DEFAULT_WINDOWS) == (
        DEFAULT_MODEL, EVAL_SEED, STATE_DIR, DEFAULT_WINDOWS)
    assert defaults.DISCOVER_STEPS == DEFAULT_STEPS
    from circuitspec.verify.scan import MAX_UNITS
    assert defaults.SCAN_MAX_UNITS == MAX_UNITS


@pytest.mark.parametrize("typed, meant", [
    ("specs/closing_qoute.circ", "specs/closing_quote.circ"),
    ("spec/quote_head.circ", "specs/quote_head.circ"),
    ("specs/lib/quote_haed.circ", "specs/lib/quote_head.circ"),
    ("specs/zzz.circ", None),  # nothing close: no guess
    ("spec/closing_qoute.circ", None),  # the folder corrected, the name still wrong: no path that does not exist
])
def test_a_mistyped_path_gets_the_closest_name(typed, meant, capsys):
    assert main(["check", typed]) == 2
    err = capsys.readouterr().err
    assert f"error: {typed}: no such file or directory" in err
    if meant:
        assert f"hint: did you mean {meant!r}?" in err
    else:
        assert "did you mean" not in err


def test_the_readme_table_of_defaults_is_valid(tmp_path):
    """The [tool.circuitspec] example the README shows for command-line defaults reads as it says."""
    from circuitspec.commands.settings import project_defaults

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
    block = next(b for b in re.findall(r"```toml\n(.*?)```", readme, re.S) if "[tool.circuitspec]" in b and "seed" in b)
    (tmp_path / "pyproject.toml").write_text(block)
    assert project_defaults(tmp_path / "pyproject.toml") == {"seed": 0, "samples": 200, "device": "cpu", "threads": 1, "jobs": "auto"}
