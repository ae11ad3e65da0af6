"""Expanding command-line PATH arguments into .circ files."""

from __future__ import annotations

import difflib
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
            raise UsageError(f"{raw}: no such file or directory", hint=_did_you_mean(path))
    if not files:
        raise UsageError(f"no .circ files in {' '.join(paths)}")
    return list(dict.fromkeys(files))


def _did_you_mean(path: Path) -> str | None:
    """The closest existing name in the nearest folder of ``path`` that exists (a typo in a folder's
    name is corrected there), said as the path to type; None when nothing close exists."""
    missing, folder = [path.name], path.parent
    while not folder.is_dir() and folder != folder.parent:
        missing.insert(0, folder.name)
        folder = folder.parent
    if not folder.is_dir():
        return None
    try:
        names = sorted(p.name for p in folder.iterdir() if p.is_dir() or p.suffix == ".circ")
    except OSError:
        return None
    close = difflib.get_close_matches(missing[0], names, n=1, cutoff=0.6)
    guess = folder / close[0] / Path(*missing[1:]) if close else None
    return f"did you mean {str(guess)!r}?" if guess is not None and guess.exists() else None
