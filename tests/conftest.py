"""Test-suite configuration: the golden invalid specs are data for tests, not claims to collect."""

collect_ignore_glob = ["invalid_specs/*"]
pytest_plugins = ["pytester"]



def registered_for_module(to_register):
    """An autouse, module-scoped fixture that registers a task for the module's tests and removes it
    after (the modules that plant a circuit in a hand-set model each define their own task).
    Use as ``task = registered_for_module(TASK)``."""
    import pytest

    from circuitspec.engine.tasks import register_task, unregister_task

    @pytest.fixture(scope="module", autouse=True)
    def task():
        register_task(to_register, replace=True)
        yield
        unregister_task(to_register.name)

    return task


def verify_one_head_spec(folder, model: str, title: str, capsys):
    """`check` and a small `verify` of a one-head spec on ``model`` (a converted model's folder name,
    resolved from ``folder``): the pipeline, the masks and the self-checks on a model of another tool. Returns
    what verify printed; asserts it ran (exit 0 or 1, never a failed self-check) and printed its summary."""
    import re

    from circuitspec.cli import main

    spec = folder / f"{model}.circ"
    spec.write_text(f'spec converted "{title}"\nmodel "{model}"\ntask bracket_type\n'
                    "ablate mean over task\n\ngroup head = blocks.1.attn.hook_z[head=1, *]\n\n"
                    "claim necessary faithfulness <= 5\n")
    assert main(["check", str(spec)]) == 0
    rc = main(["verify", str(spec), "--samples", "20", "--baselines", "2", "--partial-ablations", "1"])
    captured = capsys.readouterr()
    assert rc in (0, 1) and "self-check" not in captured.err, captured.err  # 3 would be a failed self-check
    assert re.search(r"\b[01] pass, [01] fail, [01] inconclusive", captured.out), captured.out  # results: stdout
    return captured
