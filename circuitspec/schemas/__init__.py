"""JSON Schemas (draft 2020-12) of every command's ``--json`` output: the contract CI parses against.

One file per command, ``<command>.schema.json``, shipped with the package. The objects that
``verify``, ``falsify``, ``diff``, ``discover`` and ``export`` write carry ``schema`` (the schema's ``$id``) and
``format_version``; the outputs that are a list (``check``, ``prove``, ``models``) or a map keyed by
task name (``eval``, ``tasks``) carry no version of their own.

>>> from circuitspec.schemas import load_schema
>>> load_schema("verify")["$id"]
'urn:circuitspec:schema:verify:1'

:func:`validate` needs the ``jsonschema`` package (the ``test`` extra installs it); reading a schema
does not.
"""

from __future__ import annotations

import json
import math
from importlib import resources
from typing import Any

#: Commands whose ``--json`` output has a schema, in the order the README lists them.
COMMANDS = ("verify", "falsify", "diff", "export", "prove", "discover", "scan", "check", "eval", "tasks", "models")

#: Of those, the commands whose schema is of the file they write with ``-o`` (no ``--json`` option).
FILE_OUTPUTS = ("export",)

#: The version of every output format here; it goes up only when a field is renamed, removed or
#: changes meaning (added fields keep it).
FORMAT_VERSION = 1


def schema_id(command: str) -> str:
    """The ``$id`` of ``command``'s schema, which versioned outputs repeat as their ``schema`` key."""
    _check(command)
    return f"urn:circuitspec:schema:{command}:{FORMAT_VERSION}"


def header(command: str) -> dict[str, Any]:
    """The keys a versioned output starts with: ``schema`` and ``format_version``."""
    return {"schema": schema_id(command), "format_version": FORMAT_VERSION}


def schema_text(command: str) -> str:
    """The schema file as shipped."""
    _check(command)
    return resources.files(__name__).joinpath(f"{command}.schema.json").read_text(encoding="utf-8")


def load_schema(command: str) -> dict[str, Any]:
    """The schema of ``command``'s ``--json`` output."""
    return json.loads(schema_text(command))


def finite(value: Any) -> Any:
    """``value`` with every float that is not finite (NaN, infinity) replaced by None, in nested dicts and
    lists: JSON has no NaN, and the schemas say null where a figure is undefined."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(v) for v in value]
    return value


def validate(command: str, data: Any) -> None:
    """Raise :class:`jsonschema.ValidationError` (the most relevant error) if ``data``, a parsed
    ``--json`` output of ``command``, does not follow its schema."""
    try:
        import jsonschema
    except ImportError as e:  # a runtime install without the test extra
        raise ImportError("circuitspec.schemas.validate needs the jsonschema package: pip install jsonschema") from e
    error = jsonschema.exceptions.best_match(jsonschema.Draft202012Validator(load_schema(command)).iter_errors(data))
    if error is not None:
        raise error


def _check(command: str) -> None:
    if command not in COMMANDS:
        raise ValueError(f"no JSON schema for {command!r}: one of {', '.join(COMMANDS)}")
