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
