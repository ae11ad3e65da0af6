"""A project's own tasks, found through [tool.circuitspec] in the nearest pyproject.toml above a spec."""

import sys
import textwrap

import pytest

from circuitspec.cli import main
from circuitspec.engine.tasks import registry
from circuitspec.engine.tasks import project

TASKS_MODULE = '''
from circuitspec.engine.tasks import Task, TaskExample


def generate(s):
    prefix = "".join(s.choice("xyz") for _ in range(s.integer(1, 5))) + s.choice("ab")
    last = prefix[-1]
    return TaskExample(prefix, last, "b" if last == "a" else "a", "\\n", {{"last": last}}, {{"answer": len(prefix) - 1}})


TASKS = [Task("{name}", "repeat the final a/b", generate, {{"last": "the final character"}}, {{"answer": "where it is read"}})]
'''


@pytest.fixture
def isolated(monkeypatch):
    """Each test sees its own import and project caches, and leaves the registry as it found it."""
    monkeypatch.setattr(project, "_seen_projects", set())
    monkeypatch.setattr(project, "_imported", set())
    monkeypatch.setattr(sys, "path", list(sys.path))
    before = dict(registry._tasks)
    yield
    registry._tasks.clear()
    registry._tasks.update(before)


def make_project(root, module, task_name, table='tasks = ["{module}"]'):
    (root / "pyproject.toml").write_text("[project]\nname = \"mine\"\n\n[tool.circuitspec]\n" + table.format(module=module) + "\n")
    (root / f"{module}.py").write_text(TASKS_MODULE.format(name=task_name))
    specs = root / "specs"
    specs.mkdir()
    spec = specs / "mine.circ"
    spec.write_text(f'spec mine "x"\nmodel "py-sparse-small"\ntask {task_name}\nablate mean over task\n'
                    "node out = blocks.1.hook_resid_post[3]\nclaim sufficient faithfulness >= 0.1\n")
    return spec


def test_check_finds_the_task_through_the_nearest_pyproject(tmp_path, isolated, capsys):
    spec = make_project(tmp_path, "proj_tasks_a", "repeat_last_a")
    assert main(["check", str(spec)]) == 0, capsys.readouterr().err
    assert "repeat_last_a" in registry._tasks


def test_a_missing_tasks_module_is_one_clear_error(tmp_path, isolated, capsys):
    spec = make_project(tmp_path, "proj_tasks_b", "repeat_last_b", table='tasks = ["no_such_module_xyz"]')
    assert main(["check", str(spec)]) == 2
    err = capsys.readouterr().err
    assert "no module named 'no_such_module_xyz'" in err and "Traceback" not in err


def test_a_tasks_table_of_the_wrong_shape_is_one_clear_error(tmp_path, isolated, capsys):
    spec = make_project(tmp_path, "proj_tasks_c", "repeat_last_c", table='tasks = "proj_tasks_c"')
    assert main(["check", str(spec)]) == 2
    assert "must be a list of module names" in capsys.readouterr().err


def test_without_a_table_nothing_is_imported(tmp_path, isolated):
    (tmp_path / "pyproject.toml").write_text("[project]\nname = \"x\"\n")
    assert project.load_project_tasks(tmp_path) == []


def test_tasks_module_option_imports_from_the_working_directory(tmp_path, isolated, monkeypatch, capsys):
    (tmp_path / "opt_tasks.py").write_text(TASKS_MODULE.format(name="repeat_last_opt"))
    monkeypatch.chdir(tmp_path)
    assert main(["tasks", "--tasks-module", "opt_tasks", "--json"]) == 0
    assert "repeat_last_opt" in capsys.readouterr().out


def test_threads_sets_torchs_thread_count(monkeypatch):
    import torch
    before = torch.get_num_threads()
    try:
        assert main(["tasks", "--threads", "1", "--json"]) == 0
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
    with pytest.raises(SystemExit) as exit_:
        main(["tasks", "--threads", "0"])
    assert exit_.value.code == 2
