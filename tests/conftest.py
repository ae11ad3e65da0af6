"""Test-suite configuration: the golden invalid specs are data for tests, not claims to collect."""

collect_ignore_glob = ["invalid_specs/*"]
pytest_plugins = ["pytester"]
