"""Expanding command-line PATH arguments into .circ files."""

from __future__ import annotations

from pathlib import Path

from ..engine.errors import UsageError


def circ_files(paths: list[str]) -> list[Path]:
    """Files as given, and every ``*.circ`` below each directory (sorted); usage error if none or missing."""
    files: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            files.extend(sorted(p for p in path.rglob("*.circ") if p.is_file()))
        elif path.is_file():
            files.append(path)
        elif path.exists():  # a device, a FIFO, a socket: reading it could block or never end
            raise UsageError(f"{raw}: not a regular file or a directory", hint="specs are .circ files, or folders of them")
        else:
            raise UsageError(f"{raw}: no such file or directory")
    if not files:
        raise UsageError(f"no .circ files in {' '.join(paths)}")
    return list(dict.fromkeys(files))
