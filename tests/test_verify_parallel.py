"""verify --jobs: specs verified side by side in worker processes give the verdicts a serial run gives."""

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from circuitspec.commands.check_cmd import check_file
from circuitspec.verify.parallel import SpecOutcome, Workers, plan_clusters, process_count
from circuitspec.verify.runner import RunSettings

# Two specs of different models (so two clusters), small settings: a few seconds each.
SPECS = ["specs/quote_head.circ", "specs/bracket_nesting_sparse3.circ"]
SMALL = ["--samples", "40", "--baselines", "10", "--partial-ablations", "2"]


def run_cli(*args):
    proc = subprocess.run([sys.executable, "-m", "circuitspec", *args], capture_output=True, text=True, timeout=600)
    return proc.returncode, proc.stdout, proc.stderr


def test_two_processes_give_the_serial_verdicts_and_figures(tmp_path):
    reports = {}
    for jobs in ("1", "2"):
        out = tmp_path / f"jobs{jobs}.json"
        rc, stdout, err = run_cli("verify", *SPECS, *SMALL, "--jobs", jobs, "--json", str(out))
        assert rc in (0, 1) and "Traceback" not in err, err
        reports[jobs] = (rc, json.loads(out.read_text()))
        if jobs == "2":
            assert "in 2 processes" in err  # it did run in two
    (rc1, serial), (rc2, parallel) = reports["1"], reports["2"]
    assert rc1 == rc2
    assert serial["claims"] == parallel["claims"]  # same order, verdicts, statistics, intervals
    assert [s["file"] for s in serial["manifest"]["specs"]] == [s["file"] for s in parallel["manifest"]["specs"]]


def test_jobs_must_be_auto_or_a_positive_number():
    rc, _, err = run_cli("verify", "specs/quote_head.circ", "--jobs", "0")
    assert rc == 2 and "--jobs" in err and "Traceback" not in err


def test_clusters_keep_each_model_and_task_together_largest_first():
    resolved = [check_file(Path(p))[0] for p in ["specs/quote_head.circ", "specs/closing_quote.circ",
                                                 "specs/bracket_nesting_sparse3.circ", "specs/call_arity.circ"]]
    clusters = plan_clusters(resolved, RunSettings())
    assert sorted(i for c in clusters for i in c.specs) == [0, 1, 2, 3]
    assert {0, 1} in [set(c.specs) for c in clusters]  # py-sparse-small, closing_quote: one cluster
    assert [c.cost for c in clusters] == sorted((c.cost for c in clusters), reverse=True)
    order = [c.specs for c in clusters]
    assert order.index((3,)) < order.index((2,))  # the 4-layer model's necessity claim before a 35-node circuit


@pytest.mark.parametrize("requested, threads, clusters, device, expected", [
    ("auto", 2, 13, "cpu", 2), ("auto", 16, 3, "cpu", 3), ("auto", 64, 40, "cpu", 8), ("auto", 1, 5, "cpu", 1),
    ("auto", 16, 9, "cuda", 1), (4, 2, 13, "cpu", 4), (4, 2, 3, "cpu", 3), (1, 16, 9, "cpu", 1), (4, 16, 9, "cuda", 1)])
def test_process_count(requested, threads, clusters, device, expected):
    assert process_count(requested, threads, clusters, device) == expected


def test_a_worker_that_crashes_leaves_its_specs_to_the_command(tmp_path):
    """A worker that cannot resolve its spec (here: a file that is not there) stops with a traceback; the
    command's own process verifies what it had taken, and says so."""
    resolved = [check_file(Path(p))[0] for p in SPECS]
    clusters = plan_clusters(resolved, RunSettings())
    done_here, notes = [], []
    workers = Workers(1)
    worker = workers.workers[0]

    def verify_here(index):
        deadline = time.monotonic() + 120
        while not worker.taken and time.monotonic() < deadline:  # let the worker take the other cluster
            time.sleep(0.05)
        done_here.append(index)
        return SpecOutcome(results=[])

    job = {"files": [str(tmp_path / "missing.circ")] * len(SPECS), "settings": RunSettings(), "tasks_modules": []}
    outcomes = workers.verify(resolved, clusters, 2, 2, verify_here, lambda: None, job, notes.append)
    assert sorted(outcomes) == [0, 1] and sorted(done_here) == [0, 1]
    assert len(notes) == 1 and "a verify worker stopped" in notes[0]


def test_workers_not_needed_are_stopped():
    workers = Workers(2)
    processes = [w.process for w in workers.workers]
    workers.close()
    assert all(p.wait(timeout=30) == 0 for p in processes)


def test_workers_see_the_projects_own_tasks(tmp_path):
    """A task from [tool.circuitspec] tasks and one from --tasks-module are known in the workers too."""
    from tests.test_project_tasks import TASKS_MODULE, make_project

    make_project(tmp_path, "par_tasks_table", "repeat_last_table")
    (tmp_path / "par_tasks_option.py").write_text(TASKS_MODULE.format(name="repeat_last_option"))
    (tmp_path / "specs" / "other.circ").write_text(
        'spec other "x"\nmodel "py-sparse-small"\ntask repeat_last_option\nablate mean over task\n'
        "node out = blocks.1.hook_resid_post[3]\nclaim sufficient faithfulness >= 0.1\n")
    out = tmp_path / "report.json"
    proc = subprocess.run([sys.executable, "-m", "circuitspec", "verify", "specs", "--tasks-module", "par_tasks_option",
                           "--jobs", "2", "--samples", "20", "--baselines", "2", "--partial-ablations", "1",
                           "--json", str(out)], cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert proc.returncode in (0, 1) and "Traceback" not in proc.stderr, proc.stderr
    assert "in 2 processes" in proc.stderr and "worker stopped" not in proc.stderr
    assert sorted(Path(c["file"]).name for c in json.loads(out.read_text())["claims"]) == ["mine.circ", "other.circ"]


def test_a_worker_that_cannot_start_is_reported_and_its_share_done_here(monkeypatch):
    """A worker that fails while importing what it needs sends its traceback and stops; the command's own
    process verifies everything and says why the worker is missing."""
    from circuitspec.verify import parallel

    monkeypatch.setattr(parallel, "_BOOTSTRAP", "import sys; sys.path[:0] = {path!r}; "
                                                "import circuitspec.verify.worker as w; w.importlib = None; w.main()")
    resolved = [check_file(Path(p))[0] for p in SPECS]
    clusters = plan_clusters(resolved, RunSettings())
    workers = Workers(1)
    worker = workers.workers[0]
    notes, done_here = [], []

    def verify_here(index):
        worker.process.wait(timeout=120)  # let it fail first
        done_here.append(index)
        return SpecOutcome(results=[])

    outcomes = workers.verify(resolved, clusters, 2, 2, verify_here, lambda: None, {"files": [], "settings": RunSettings(),
                                                                                   "tasks_modules": []}, notes.append)
    assert sorted(outcomes) == [0, 1] and sorted(done_here) == [0, 1]
    assert len(notes) == 1 and "failed to start" in notes[0] and "AttributeError" in notes[0]


def test_jobs_from_the_project_table(tmp_path):
    """`jobs = 1` under [tool.circuitspec] keeps verify in one process; the flag wins over the table."""
    (tmp_path / "pyproject.toml").write_text("[project]\nname = 'x'\n\n[tool.circuitspec]\njobs = 1\n")
    specs = [str(Path(p).resolve()) for p in SPECS]
    for extra, processes in (([], False), (["--jobs", "2"], True)):
        proc = subprocess.run([sys.executable, "-m", "circuitspec", "verify", *specs, *SMALL, *extra], cwd=tmp_path,
                              capture_output=True, text=True, timeout=600)
        assert proc.returncode in (0, 1) and "Traceback" not in proc.stderr, proc.stderr
        assert ("in 2 processes" in proc.stderr) == processes


def test_falsify_in_two_processes_finds_what_one_finds(tmp_path):
    """`verify --falsify` searches each spec in the process that verified it: the search's verdicts,
    inputs tried and counterexamples are those of a run in one process."""
    reports = {}
    for jobs in ("1", "2"):
        out = tmp_path / f"jobs{jobs}.json"
        rc, _, err = run_cli("verify", *SPECS, *SMALL, "--falsify", "--no-database", "--max-examples", "15",
                             "--jobs", jobs, "--json", str(out))
        assert rc in (0, 1) and "Traceback" not in err, err
        assert ("verifying and falsifying 2 specs in 2 processes" in err) == (jobs == "2")
        report = json.loads(out.read_text())
        found = [{k: v for k, v in f.items() if k != "seconds"} for f in report["manifest"]["falsification"]]
        reports[jobs] = (rc, report["claims"], found)
    assert reports["1"] == reports["2"]
    assert len(reports["1"][2]) > 0
