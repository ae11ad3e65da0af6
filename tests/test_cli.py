"""End-to-end through the command line: tasks, models, eval, train, and the exit-code contract."""

import json
import os
import subprocess
from pathlib import Path
import sys

import pytest

from circuitspec.cli import main
from circuitspec.engine.tasks import task_names
from circuitspec.engine.zoo import DEFAULT_MODEL, shipped_names
from circuitspec.schemas import validate


def run_cli(*args):
    proc = subprocess.run([sys.executable, "-m", "circuitspec", *args], capture_output=True, text=True, timeout=600)
    return proc.returncode, proc.stdout, proc.stderr


def test_tasks_lists_every_task_as_json():
    code, out, err = run_cli("tasks", "--json", "--examples", "1")
    assert code == 0, err
    data = json.loads(out)
    validate("tasks", data)
    assert list(data) == task_names()
    assert len(data) >= 8
    for required in ("closing_quote", "bracket_nesting", "var_type"):
        assert data[required]["features"] and "answer" in data[required]["positions"]
        assert len(data[required]["examples"]) == 1


def test_tasks_table(capsys):
    assert main(["tasks"]) == 0
    assert "closing_quote" in capsys.readouterr().out


def test_models_lists_the_shipped_models(capsys):
    assert main(["models", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    validate("models", data)
    names = [m["name"] for m in data]
    assert DEFAULT_MODEL in names and "py-dense-small" in names
    sparse = next(m for m in data if m["name"] == DEFAULT_MODEL)
    assert sparse["nonzero"] < 0.2 * sparse["parameters"] and sparse["size_bytes"] < 5_000_000


def test_eval_default_model_writes_json(tmp_path):
    out = tmp_path / "eval.json"
    code, stdout, err = run_cli("eval", "--json", str(out), "-n", "200", "--tasks", "closing_quote", "for_in")
    assert code == 0, err
    data = json.loads(out.read_text())
    validate("eval", data)
    assert set(data) == {"closing_quote", "for_in"}
    for score in data.values():
        assert {"accuracy", "logit_diff", "bce", "n"} <= set(score) and score["n"] == 200
        assert score["accuracy"] >= 0.85
    assert "closing_quote" in stdout


def test_eval_json_to_stdout(capsys):
    assert main(["eval", "py-dense-small", "--json", "-", "-n", "50", "--tasks", "for_in"]) == 0
    out = capsys.readouterr().out
    assert json.loads(out)["for_in"]["n"] == 50


@pytest.mark.parametrize("args, code, message", [
    (["eval", "py-sparse-smal"], 3, "did you mean 'py-sparse-small'"),
    (["eval", "/no/such/dir"], 3, "unknown model"),
    (["eval", "--tasks", "closing_quotes", "-n", "5"], 2, "did you mean 'closing_quote'"),
    (["eval", "-n", "0"], 2, "-n/--examples: must be at least 1"),
    (["train", "--config", "nope.toml", "--out", "x"], 2, "no such config file"),
    (["frobnicate"], 2, "invalid choice"),
])
def test_errors_are_messages_with_exit_codes_not_tracebacks(args, code, message):
    rc, out, err = run_cli(*args)
    assert rc == code, err
    assert message in err
    assert "Traceback" not in err + out


def test_corrupt_checkpoint_is_exit_3(tmp_path):
    import shutil
    from circuitspec.engine.zoo import resolve_model_path
    copy = tmp_path / "model"
    shutil.copytree(resolve_model_path(None), copy)
    (copy / "model.safetensors").write_bytes(b"\0" * 100)
    rc, _, err = run_cli("eval", str(copy), "-n", "5")
    assert rc == 3 and "hash does not match" in err and "Traceback" not in err


def test_train_command_end_to_end(tmp_path):
    config = tmp_path / "tiny.toml"
    config.write_text(
        'name = "tiny"\n[model]\nn_layers = 1\nd_model = 16\nn_heads = 2\nd_head = 8\nd_mlp = 32\nn_ctx = 80\n'
        "[sparsity]\ntarget_density = 0.5\n[train]\nsteps = 4\nbatch_size = 4\nseq_len = 32\neval_every = 2\n"
        'eval_examples = 5\n[data]\ntasks = ["for_in"]\n[corpus]\nmax_files = 2\n')
    out = tmp_path / "run"
    rc, _, err = run_cli("train", "--config", str(config), "--out", str(out))
    assert rc == 0, err
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["steps"] == 4 and "train --config" in manifest["command"] and manifest["corpus"]["sha256"]
    rc, _, err = run_cli("train", "--config", str(config), "--out", str(out))
    assert rc == 2 and "--resume" in err
    rc, _, err = run_cli("train", "--config", str(config), "--out", str(out), "--resume", "--steps", "6")
    assert rc == 0, err
    assert f"resumed from step 4 ({out / 'train_state' / 'step-00000004'})" in err
    assert json.loads((out / "manifest.json").read_text())["steps"] == 6
    rc, _, err = run_cli("eval", str(out), "-n", "5", "--tasks", "for_in")
    assert rc == 0, err


def test_python_dash_m_and_console_script_agree():
    rc, out, _ = run_cli("--version")
    assert rc == 0 and out.startswith("circuitspec ")


_LEAVE = ("import sys; sys.modules.pop('coverage', None); from circuitspec.cli import leave; "
          "sys.stdout.write('o' * {size}); sys.stderr.write('e' * {size}); leave({code})")


@pytest.mark.parametrize("code", [0, 1, 3])
def test_leave_flushes_both_streams_and_keeps_the_exit_code(code):
    """The fast exit (no interpreter teardown) must not lose buffered output or change the exit code."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}  # buffered, as a user's shell has it
    proc = subprocess.run([sys.executable, "-c", _LEAVE.format(code=code, size=100)], capture_output=True, text=True,
                          timeout=120, env=env)
    assert proc.returncode == code
    assert proc.stdout == "o" * 100 and proc.stderr == "e" * 100


def test_leave_survives_a_reader_that_left(monkeypatch):
    """`circuitspec ... | head -c 1`: a flush that meets a closed pipe neither raises nor changes the code."""
    import circuitspec.cli as cli

    class Gone:
        def flush(self):
            raise BrokenPipeError(32, "Broken pipe")

    left = []
    monkeypatch.delitem(sys.modules, "coverage", raising=False)
    monkeypatch.setattr(sys, "stdout", Gone())
    monkeypatch.setattr(cli.os, "_exit", left.append)
    cli.leave(3)
    assert left == [3]


def test_shipped_models_present():
    assert {DEFAULT_MODEL, "py-dense-small", "py-sparse-medium", "py-dense-medium"} <= set(shipped_names())


def test_the_medium_sparse_model_learns_variable_type_tracking():
    """The 4-layer model is shipped because it learns every task, var_type included (the 2-layer ones do not)."""
    rc, out, err = run_cli("eval", "py-sparse-medium", "--json", "-", "-n", "100", "--tasks", "var_type")
    assert rc == 0, err
    row = json.loads(out)["var_type"]
    assert row["accuracy"] >= 0.9, row


def test_check_specs_directory_is_clean():
    rc, out, err = run_cli("check", "specs")
    assert rc == 0, err
    assert "ok specs/closing_quote.circ" in out and "library" in out  # results on stdout


def test_check_reports_every_error_with_position_and_json(tmp_path):
    spec = tmp_path / "bad.circ"
    spec.write_text('spec bad "x"\nmodel "py-sparse-small"\ntask closing_quote\nablate zero\n'
                    "node a = blocks.0.mlp.hook_post[600]\nnode b = blocks.0.mlp.hook_pots[1]\n")
    rc, _, err = run_cli("check", str(spec))
    assert rc == 2 and f"{spec}:5:" in err and f"{spec}:6:" in err and "did you mean" in err and "^" in err
    rc, out, _ = run_cli("check", "--json", str(spec))
    data = json.loads(out)
    validate("check", data)
    assert rc == 2 and [d["code"] for d in data] == ["E504", "E503"]
    assert set(data[0]) == {"file", "line", "col", "end", "severity", "code", "message", "hint"}


def test_check_missing_path_is_a_usage_error():
    rc, _, err = run_cli("check", "no/such.circ")
    assert rc == 2 and "no such file" in err and "Traceback" not in err


def test_fmt_check_then_format(tmp_path):
    spec = tmp_path / "messy.circ"
    spec.write_text('spec   m  "x"\nmodel "py-sparse-small"\ntask closing_quote\nablate zero\n'
                    "node a=blocks.0.mlp.hook_post[ 3 ]\nclaim sufficient faithfulness >= 0.90\n")
    rc, out, _ = run_cli("fmt", "--check", str(spec))
    assert rc == 1 and f"would reformat {spec}" in out and "1 would be reformatted" in out  # results on stdout
    rc, out, _ = run_cli("fmt", "--check", "-q", str(spec))
    assert rc == 1 and out.strip() == "1 would be reformatted, 0 unchanged"  # -q: the summary line only
    rc, _, _ = run_cli("fmt", str(spec))
    assert rc == 0
    assert "node a = blocks.0.mlp.hook_post[3]" in spec.read_text() and ">= 0.9\n" in spec.read_text()
    assert run_cli("fmt", "--check", str(spec))[0] == 0


def test_fmt_leaves_broken_files_alone(tmp_path):
    spec = tmp_path / "broken.circ"
    spec.write_text("spec broken\nnode = \n")
    rc, _, err = run_cli("fmt", str(spec))
    assert rc == 2 and "error[" in err and spec.read_text() == "spec broken\nnode = \n"


def test_verify_a_shipped_spec_end_to_end(tmp_path):
    out, junit = tmp_path / "v.json", tmp_path / "v.xml"
    rc, stdout, err = run_cli("verify", "specs/quote_head.circ", "--samples", "40", "--baselines", "10",
                              "--json", str(out), "--junit", str(junit))
    data = json.loads(out.read_text())
    validate("verify", data)
    verdicts = [c["verdict"] for c in data["claims"]]
    assert rc == (0 if set(verdicts) == {"pass"} else 1), err
    assert verdicts[0] == "pass"  # mean-ablating block 1 head 1 destroys the behaviour
    assert "quote_head.circ:11" in stdout
    assert junit.read_text().startswith("<?xml")


def test_verify_usage_errors():
    rc, _, err = run_cli("verify", "specs", "--samples", "0")
    assert rc == 2 and "--samples" in err and "Traceback" not in err


def test_cuda_without_a_gpu_is_a_usage_error():
    import torch
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU: the request is valid here")
    rc, _, err = run_cli("verify", "specs/quote_head.circ", "--device", "cuda")
    assert rc == 2 and "no CUDA device" in err and "Traceback" not in err


def test_the_shipped_spec_library_verifies():
    """The repository's evidence: every spec in specs/ passes `verify` with the default settings."""
    rc, out, err = run_cli("verify", "specs/")
    assert rc == 0, err
    assert " 0 fail, 0 inconclusive" in out


def test_check_counts_the_circuits_own_edges_not_every_weight(tmp_path, capsys):
    """One neuron has no edge to itself; two connected channels have the weights between them."""
    from circuitspec.engine.discover import circuit_edge_count
    from circuitspec.commands.check_cmd import check_file

    one = tmp_path / "one.circ"
    one.write_text('spec one "x"\nmodel "py-sparse-small"\ntask closing_quote\nablate mean over task\n'
                   "node n = blocks.0.mlp.hook_post[3]\n")
    assert main(["check", str(one)]) == 0
    assert "1 nodes, 0 edges" in capsys.readouterr().out
    resolved, _, _ = check_file(Path("specs/closing_quote_small.circ"))
    count = circuit_edge_count(resolved.mask, resolved.context.model)
    assert 0 < count < resolved.mask.edge_count()
