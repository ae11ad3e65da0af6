"""Nothing lost (issue 14): output locations checked before the work, atomic outputs, results kept when a
write fails at the end, a counterexample database that never drops a record silently, concurrent runs.

(Training checkpoints that resume exactly, with a kill at every point of a save: tests/test_train.py.)
"""

import errno
import json
import multiprocessing
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from circuitspec.cli import main
from circuitspec.commands.outputs import check_output_file, save_output
from circuitspec.engine import atomic
from circuitspec.engine.errors import UsageError
from circuitspec.engine.tasks import TaskExample
from circuitspec.verify.example_store import ExampleStore, ExampleStoreError, read_examples

ROOT = Path(__file__).resolve().parent.parent
IS_ROOT = os.geteuid() == 0


def usage_error(argv, capsys) -> str:
    """Run the CLI in-process; it must exit 2 with exactly one error line and no traceback. Returns that line."""
    try:
        code = main(argv)
    except SystemExit as e:  # argparse: the check ran while the command line was read
        code = e.code
    captured = capsys.readouterr()
    assert code == 2, captured.err
    assert "Traceback" not in captured.err + captured.out
    errors = [line for line in captured.err.splitlines() if "error:" in line]
    assert len(errors) == 1, captured.err
    return errors[0]


def _chattr(flag: str, path: Path) -> bool:
    try:
        return subprocess.run(["chattr", flag, str(path)], capture_output=True).returncode == 0
    except OSError:
        return False


@pytest.fixture
def unwritable():
    """Make a file or folder unwritable: chmod for a normal user; as root (whom chmod does not stop) the
    immutable attribute, which stops root too. Skips only where neither can be simulated."""
    made = []

    def make(path: Path) -> Path:
        if not IS_ROOT:
            path.chmod(0o555 if path.is_dir() else 0o444)
        elif not _chattr("+i", path):
            pytest.skip("running as root and chattr +i is not available: a read-only location cannot be simulated")
        made.append(path)
        return path

    yield make
    for path in made:
        if IS_ROOT:
            _chattr("-i", path)
        else:
            path.chmod(0o755 if path.is_dir() else 0o644)


# --- output locations are checked when the command line is read ------------------------------------------------

FILE_OPTIONS = [  # every command-line option naming a file to write, with a command line around it
    ["verify", "specs/quote_head.circ", "--json"],
    ["verify", "specs/quote_head.circ", "--junit"],
    ["falsify", "specs/quote_head.circ", "--json"],
    ["prove", "specs/quote_head.circ", "--json"],
    ["eval", "--json"],
    ["discover", "--task", "for_in", "-o"],
    ["discover", "--task", "for_in", "-o", "x.circ", "--json"],
]


def bad_file_locations(tmp_path, unwritable):
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    folder = tmp_path / "ro"
    folder.mkdir()
    existing = tmp_path / "existing.circ"
    existing.write_text("old")
    return {
        "missing folder": (tmp_path / "missing" / "out.circ", "does not exist"),
        "a file where a folder belongs": (a_file / "out.circ", "is a file, not a folder"),
        "a folder where a file belongs": (tmp_path, "is a folder"),
        "read-only folder": (unwritable(folder) / "out.circ", "cannot write in folder"),
        "unwritable existing file": (unwritable(existing), "cannot be written"),
        "under /proc": (Path("/proc/out.circ"), "under /proc"),
        "under /sys": (Path("/sys/out.circ"), "under /sys"),
    }


@pytest.mark.parametrize("argv", FILE_OPTIONS, ids=lambda a: f"{a[0]} {a[-1]}")
def test_every_output_file_is_checked_before_the_work(argv, tmp_path, unwritable, capsys, monkeypatch):
    (tmp_path / "cwd").mkdir()
    monkeypatch.chdir(tmp_path / "cwd")  # nothing is read before the check fails: the spec paths need not exist
    for what, (path, message) in bad_file_locations(tmp_path, unwritable).items():
        line = usage_error([*argv, str(path)], capsys)
        assert message in line and str(path) in line and argv[-1] in line, (what, line)


def test_output_folders_are_checked_before_the_work(tmp_path, unwritable, capsys):
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    (tmp_path / "ro").mkdir()
    read_only = unwritable(tmp_path / "ro")
    config = ROOT / "configs" / "py-sparse-small.toml"
    for option in (["train", "--config", str(config), "--out"], ["falsify", "specs/quote_head.circ", "--database"]):
        for path, message in ((a_file, "is a file; a folder is needed"), (a_file / "run", "is a file, not a folder"),
                              (read_only / "run", "cannot write in folder"), (Path("/proc/run"), "under /proc")):
            line = usage_error([*option, str(path)], capsys)
            assert message in line and option[-1] in line, line


def test_a_config_that_is_a_folder_is_a_usage_error(tmp_path, capsys):
    line = usage_error(["train", "--config", str(tmp_path), "--out", str(tmp_path / "run")], capsys)
    assert "is a folder, not a config file" in line


@pytest.mark.parametrize("argv, message", [
    (["prove", "x.circ", "--timeout", "nan"], "--timeout: must be a finite number"),
    (["prove", "x.circ", "--timeout", "inf"], "--timeout: must be a finite number"),
    (["prove", "x.circ", "--timeout", "-1"], "--timeout: must be at least 0"),
    (["prove", "x.circ", "--samples", "0"], "--samples: must be at least 1"),
    (["prove", "x.circ", "--samples", "1000000000000"], "--samples: must be at most 100,000"),
    (["verify", "x.circ", "--baselines", "-1"], "--baselines: must be at least 0"),
    (["verify", "x.circ", "--samples", "1000000000000"], "--samples: must be at most 100,000"),
    (["verify", "x.circ", "--partial-ablations", "-2"], "--partial-ablations: must be at least 0"),
    (["verify", "x.circ", "--falsify", "--max-examples", "0"], "--max-examples: must be at least 1"),
    (["verify", "x.circ", "--seed", "-1"], "--seed: must be at least 0"),
    (["falsify", "x.circ", "--max-examples", "0"], "--max-examples: must be at least 1"),
    (["falsify", "x.circ", "--database", "db", "--no-database"], "not allowed with argument --database"),
    (["tasks", "--examples", "-1"], "--examples: must be at least 0"),
    (["eval", "-n", "٣"], "expected a whole number"),
    (["show", "x.circ", "--max-edges", "-1"], "--max-edges: must be at least 0"),
    (["discover", "--task", "for_in", "-o", "x.circ", "--samples", "4"], "--samples: must be at least 8"),
    (["discover", "--task", "for_in", "-o", "x.circ", "--target-loss", "nan"], "--target-loss: must be a finite number"),
    (["train", "--config", "c.toml", "--out", "run", "--steps", "0"], "--steps: must be at least 1"),
    (["means", "m", "--windows", "1"], "--windows: must be at least 2"),
])
def test_numbers_out_of_range_and_contradictions_exit_2_when_read(argv, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert message in usage_error(argv, capsys)


def test_max_examples_without_falsify_is_a_contradiction(capsys):
    assert "--max-examples applies only with --falsify" in usage_error(
        ["verify", "specs/quote_head.circ", "--max-examples", "5"], capsys)


def test_fmt_checks_every_file_before_rewriting_any(tmp_path, unwritable, capsys):
    messy = 'spec   m  "x"\nmodel "py-sparse-small"\ntask closing_quote\nablate zero\nnode a=blocks.0.mlp.hook_post[ 3 ]\n'
    first, locked_file = tmp_path / "a.circ", tmp_path / "b.circ"
    first.write_text(messy)
    locked_file.write_text(messy)
    unwritable(locked_file)
    line = usage_error(["fmt", str(first), str(locked_file)], capsys)
    assert str(locked_file) in line and "cannot be written" in line
    assert first.read_text() == messy and locked_file.read_text() == messy


# --- writes are atomic ---------------------------------------------------------------------------------------------

def test_a_sigkill_in_the_middle_of_a_write_leaves_the_old_file(tmp_path):
    """A real SIGKILL half-way through writing: the old content stays, only a hidden temporary file is left."""
    out = tmp_path / "out.json"
    out.write_text('{"old": true}\n')
    script = textwrap.dedent(f"""
        import os, signal
        from circuitspec.engine import atomic
        def write_half_then_die(fd, data):
            os.write(fd, data[: len(data) // 2])
            os.kill(os.getpid(), signal.SIGKILL)
        atomic._write_all = write_half_then_die
        atomic.write_text({str(out)!r}, '{{"new": true, "padding": "' + 'x' * 100000 + '"}}')
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=120)
    assert proc.returncode == -9
    assert out.read_text() == '{"old": true}\n'
    assert [p.name.startswith(".out.json.") for p in tmp_path.iterdir() if p != out] == [True]


def test_a_failed_write_removes_its_temporary_file_and_keeps_the_old(tmp_path, monkeypatch):
    out = tmp_path / "report.json"
    out.write_text("old")

    def full_disk(fd, data):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(atomic, "_write_all", full_disk)
    with pytest.raises(OSError):
        atomic.write_text(out, "new")
    assert out.read_text() == "old" and list(tmp_path.iterdir()) == [out]


def test_atomic_writes_keep_permissions_follow_links_and_stream_to_devices(tmp_path):
    target = tmp_path / "spec.circ"
    target.write_text("old")
    target.chmod(0o640)
    link = tmp_path / "link.circ"
    link.symlink_to(target)
    atomic.write_text(link, "new")
    assert link.is_symlink() and target.read_text() == "new" and target.stat().st_mode & 0o777 == 0o640
    atomic.write_text("/dev/null", "discarded")  # not replaced: written as a stream
    assert Path("/dev/null").exists() and not Path("/dev/null").is_file()
    assert check_output_file(Path("/dev/null")) == Path("/dev/null")
    redirected = tmp_path / "redirected.txt"  # `--json /dev/stdout > file`: the shell's file, not replaced
    with open(redirected, "w") as stdout:
        inode = os.fstat(stdout.fileno()).st_ino
        subprocess.run([sys.executable, "-c", "from circuitspec.engine import atomic; atomic.write_text('/dev/stdout', 'hello')"],
                       stdout=stdout, check=True, timeout=120)
    assert redirected.read_text() == "hello" and redirected.stat().st_ino == inode
    redirected.unlink()
    with pytest.raises(IsADirectoryError):
        atomic.write_text(tmp_path, "x")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link.circ", "spec.circ"]


# --- a write that fails at the end keeps the result ---------------------------------------------------------------

@pytest.fixture
def oracle(tmp_path):
    """The hand-set model of test_verify_oracle with a cheap spec about it (a role claim and sufficiency)."""
    from circuitspec.engine.checkpoint import save_checkpoint
    from circuitspec.engine.tasks import register_task, unregister_task
    from test_verify_oracle import CIRCUIT, HEADER, TASK, hand_set_model

    save_checkpoint(hand_set_model(), tmp_path / "model", {})
    spec = tmp_path / "oracle.circ"
    spec.write_text(HEADER.format(name="oracle", ablation="mean over task") + CIRCUIT
                    + 'claim sufficient faithfulness >= 0.9\nclaim fires_for_a: pos > 0.5 when last == "a"\n')
    register_task(TASK, replace=True)
    yield spec
    unregister_task(TASK.name)


def test_verify_keeps_its_reports_when_writing_them_fails_at_the_end(oracle, tmp_path, capsys, monkeypatch):
    out, junit = tmp_path / "out.json", tmp_path / "out.xml"
    out.write_text("previous report")
    real = atomic._write_all

    def too_large(fd, data):
        if len(data) > 100:  # a file-size limit smaller than either report
            raise OSError(errno.EFBIG, "File too large")
        real(fd, data)

    monkeypatch.setattr(atomic, "_write_all", too_large)
    code = main(["verify", str(oracle), "--samples", "30", "--baselines", "5", "--partial-ablations", "0",
                 "--json", str(out), "--junit", str(junit)])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert out.read_text() == "previous report" and not junit.exists()
    kept = {}
    for line in err.splitlines():
        if line.startswith("error: cannot write"):
            assert "(File too large)" in line
            kept[line.split()[3]] = Path(line.split(" is kept in ")[1])
    assert set(kept) == {str(out), str(junit)}
    try:
        assert {c["name"] for c in json.loads(kept[str(out)].read_text())["claims"]} >= {"fires_for_a"}
        assert kept[str(junit)].read_text().startswith("<?xml")
    finally:
        for path in kept.values():
            path.unlink()


def test_a_real_file_size_limit_ends_cleanly_with_the_result_on_stdout(tmp_path):
    """RLIMIT_FSIZE of 100 bytes: neither the report nor its temporary copy fits, so it is printed."""
    out = tmp_path / "eval.json"
    out.write_text("previous")
    script = textwrap.dedent(f"""
        import resource, signal, sys
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (100, 100))
        from circuitspec.cli import main
        sys.exit(main(["eval", "--json", {str(out)!r}, "-n", "3", "--tasks", "for_in", "closing_quote", "--device", "cpu"]))
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr and f"cannot write {out} (File too large)" in proc.stderr
    assert "printed on stdout below" in proc.stderr
    assert out.read_text() == "previous"
    assert json.loads(proc.stdout[proc.stdout.index("{"):])["for_in"]["n"] == 3


def test_save_output_prints_the_result_when_no_file_can_be_written(tmp_path, monkeypatch, capsys):
    import circuitspec.commands.outputs as outputs

    def refuse(*args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(outputs, "write_text", refuse)
    monkeypatch.setattr(outputs.tempfile, "mkstemp", refuse)
    assert not save_output(tmp_path / "r.json", '{"result": 1}\n', "the JSON report")
    captured = capsys.readouterr()
    assert captured.out == '{"result": 1}\n' and "Read-only file system" in captured.err


def test_train_keeps_its_state_when_the_final_checkpoint_cannot_be_written(tmp_path, monkeypatch):
    import circuitspec.engine.checkpoint as checkpoint
    from circuitspec.engine.train import train
    from test_train import cheap_runs, tiny_config

    cheap_runs(monkeypatch)
    real = checkpoint.write_bytes

    def full_disk(path, data):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(checkpoint, "write_bytes", full_disk)
    with pytest.raises(UsageError, match=r"cannot write the checkpoint to .* \(No space left on device\); the trained "
                                         r"state of step 4 is kept in .*train_state") as e:
        train(tiny_config(4, checkpoint_every=2), tmp_path)
    assert "--resume" in e.value.hint
    monkeypatch.setattr(checkpoint, "write_bytes", real)
    messages = []
    _, manifest = train(tiny_config(4, checkpoint_every=2), tmp_path, resume=True, on_message=messages.append)
    assert messages[0].startswith("resumed from step 4") and (tmp_path / "model.safetensors").is_file()


# --- the counterexample database ----------------------------------------------------------------------------------

GOOD = {"prefix": "x = 'a", "correct": "'", "wrong": '"', "suffix": "\n", "features": {"opening_quote": "'"},
        "positions": {"answer": 5}}

BROKEN = {
    "empty": (b"", "is empty"),
    "truncated": (json.dumps([GOOD]).encode()[:30], "is not valid JSON"),
    "random bytes": (bytes(range(7, 200, 3)), "is not"),
    "not UTF-8": ('["x = \'é"]'.encode("latin-1"), "is not UTF-8 text"),
    "an object instead of a list": (json.dumps(GOOD).encode(), "holds an object, not a list"),
    "a record that is a string": (b'["x = 1"]', "record 1 is a string, not an object"),
    "a missing field": (json.dumps([{k: v for k, v in GOOD.items() if k != "suffix"}]).encode(), "missing field(s) suffix"),
    "an extra field": (json.dumps([{**GOOD, "note": "hi"}]).encode(), "unexpected field(s) note"),
    "a number where a prefix belongs": (json.dumps([GOOD, {**GOOD, "prefix": 12}]).encode(),
                                        "record 2: prefix is a whole number, not a string"),
    "a fractional feature": (json.dumps([{**GOOD, "features": {"depth": 1.5}}]).encode(), "features['depth'] is a fractional number"),
    "a boolean position": (json.dumps([{**GOOD, "positions": {"answer": True}}]).encode(), "positions['answer'] is a boolean"),
    "deeply nested": (b"[" * 100000 + b"]" * 100000, "nested too deeply"),
}


@pytest.mark.parametrize("kind", sorted(BROKEN))
def test_every_damaged_database_file_is_a_clear_error_and_is_never_overwritten(kind, tmp_path):
    content, message = BROKEN[kind]
    store = ExampleStore(tmp_path / "db")
    path = store.path("spec.circ", "claim")
    path.parent.mkdir(parents=True)
    path.write_bytes(content)
    with pytest.raises(ExampleStoreError, match="claim.json: ") as e:
        store.check(["spec.circ"])
    assert message in e.value.message and "\n" not in e.value.message
    with pytest.raises(ExampleStoreError):
        store.add("spec.circ", "claim", TaskExample(**GOOD))
    assert path.read_bytes() == content


def test_falsify_stops_on_a_damaged_database_before_searching(oracle, tmp_path, capsys):
    db = tmp_path / "db"
    (db / "oracle").mkdir(parents=True)
    damaged = db / "oracle" / "fires_for_a.json"
    damaged.write_text(json.dumps([{**GOOD, "prefix": 12}]))
    line = usage_error(["falsify", str(oracle), "--database", str(db), "--max-examples", "5", "--samples", "10"], capsys)
    assert str(damaged) in line and "prefix is a whole number" in line
    assert json.loads(damaged.read_text()) == [{**GOOD, "prefix": 12}]


def test_verify_falsify_stops_on_a_damaged_default_database(oracle, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    damaged = tmp_path / ".circuitspec" / "examples" / "oracle" / "fires_for_a.json"
    damaged.parent.mkdir(parents=True)
    damaged.write_text("[")
    line = usage_error(["verify", str(oracle), "--falsify", "--max-examples", "5", "--samples", "10"], capsys)
    assert "fires_for_a.json: is not valid JSON" in line and damaged.read_text() == "["


def test_a_kill_while_the_database_is_rewritten_loses_nothing(tmp_path, monkeypatch):
    store = ExampleStore(tmp_path)
    first, second = TaskExample(**GOOD), TaskExample(**{**GOOD, "prefix": "y = 'b"})
    store.add("spec.circ", "claim", first)

    class Killed(BaseException):
        pass

    def killed(fd, data):
        raise Killed

    monkeypatch.setattr(atomic, "_write_all", killed)
    with pytest.raises(Killed):
        store.add("spec.circ", "claim", second)
    monkeypatch.undo()
    assert store.load("spec.circ", "claim") == [first]
    store.add("spec.circ", "claim", second)
    assert store.load("spec.circ", "claim") == [first, second]


# --- concurrent runs ----------------------------------------------------------------------------------------------

def _add_examples(root: str, tag: str, count: int) -> None:
    import circuitspec.verify.example_store as example_store

    real = example_store.write_text

    def slow_write(path, text):  # widen the read-merge-write window, so a missing lock would lose records
        time.sleep(0.002)
        real(path, text)

    example_store.write_text = slow_write
    store = ExampleStore(Path(root))
    for i in range(count):
        store.add("spec.circ", "claim", TaskExample(**{**GOOD, "prefix": f"{tag}{i} = 'a"}))


def test_two_runs_sharing_a_database_both_keep_what_they_found(tmp_path):
    context = multiprocessing.get_context("fork")
    workers = [context.Process(target=_add_examples, args=(str(tmp_path), tag, 40)) for tag in ("a", "b")]
    for w in workers:
        w.start()
    for w in workers:
        w.join(120)
        assert w.exitcode == 0
    prefixes = {e.prefix for e in read_examples(ExampleStore(tmp_path).path("spec.circ", "claim"))}
    assert prefixes == {f"{tag}{i} = 'a" for tag in "ab" for i in range(40)}


def _write_reports(path: str, tag: str, count: int) -> None:
    text = json.dumps({"writer": tag, "claims": ["x" * 200] * 2000}) + "\n"  # ~400 KB: many write() calls
    for _ in range(count):
        assert save_output(Path(path), text, "the JSON report")


def test_two_runs_writing_one_report_each_leave_a_complete_file(tmp_path):
    """Last writer wins, and a reader never sees a torn or empty file in between."""
    out = tmp_path / "out.json"
    context = multiprocessing.get_context("fork")
    workers = [context.Process(target=_write_reports, args=(str(out), tag, 30)) for tag in ("a", "b")]
    for w in workers:
        w.start()
    seen = set()
    while any(w.is_alive() for w in workers):
        if out.exists():
            seen.add(json.loads(out.read_text())["writer"])  # raises on a torn file
    for w in workers:
        w.join(120)
        assert w.exitcode == 0
    assert json.loads(out.read_text())["writer"] in {"a", "b"} and seen <= {"a", "b"}
    assert list(tmp_path.iterdir()) == [out]  # no temporary file left behind


def test_a_spec_path_that_is_a_device_is_named_as_such(capsys):
    from circuitspec.cli import main

    assert main(["check", "/dev/zero"]) == 2
    assert "not a regular file" in capsys.readouterr().err
