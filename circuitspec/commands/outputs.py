"""Output locations: checked when the command line is read, written atomically at the end, never lost.

A report that took minutes to compute must not die on a folder that was never writable, so every output
path is checked before the work starts (:func:`check_output_file`, :func:`check_output_dir`; as argparse
types :func:`output_file`, :func:`output_dir`): a missing folder, a file where a folder belongs, a folder
where a file belongs, a read-only or immutable file or folder, a path under /proc or /sys are one-line
usage errors (exit 2). The folder check is real: a temporary file is created there and removed again.
If writing still fails at the end (the disk filled up, a file-size limit, the folder changed meanwhile),
:func:`save_output` says so in one line and keeps the result, in a temporary file it names or else on
stdout; the command then exits 2.
"""

from __future__ import annotations

import argparse
import errno
import os
import stat
import sys
import tempfile
from pathlib import Path

from rich.console import Console
from rich.markup import escape

from ..engine.atomic import is_stream, write_text
from ..engine.errors import UsageError

KERNEL_ROOTS = ("/proc", "/sys")  # kernel interfaces: nothing written there is a file


def _under_kernel_root(path: Path) -> str | None:
    for candidate in (os.path.abspath(path), os.path.realpath(path)):
        for root in KERNEL_ROOTS:
            if candidate == root or candidate.startswith(root + "/"):
                return root
    return None


def _nearest_existing(path: Path) -> Path:
    folder = Path(os.path.abspath(path))
    while not os.path.lexists(folder):
        folder = folder.parent
    return folder


def _probe(folder: Path, path: Path) -> None:
    """Create and remove a file in ``folder``: the only check that sees read-only mounts, immutable
    folders, quotas and the like as the real write will."""
    try:
        fd, probe = tempfile.mkstemp(prefix=".circuitspec-probe-", dir=folder)
    except OSError as e:
        raise UsageError(f"{path}: cannot write in folder {folder} ({e.strerror or e})",
                         hint="choose a writable location") from None
    os.close(fd)
    os.unlink(probe)


def _check_kernel(path: Path) -> None:
    root = _under_kernel_root(path)
    if root is not None:
        raise UsageError(f"{path}: is under {root}, a kernel interface, not a place for files")


def _check_parent_folder(path: Path) -> Path:
    """The folder a new ``path`` would be created in, which must exist and be a folder."""
    parent = path.parent
    if parent.is_dir():
        return parent
    existing = _nearest_existing(parent)
    if not existing.is_dir():
        raise UsageError(f"{path}: {existing} is a file, not a folder")
    raise UsageError(f"{path}: folder {parent} does not exist", hint=f"create it first (mkdir -p {parent})")


def check_output_file(path: Path) -> Path:
    """``path`` can be written as a file now ('-', stdout, always can); UsageError saying why not otherwise."""
    if str(path) == "-":
        return path
    if is_stream(path):  # /dev/null, /dev/stdout, a pipe: written directly
        if not os.path.exists(path) or not os.access(path, os.W_OK):
            raise UsageError(f"{path}: cannot be written (no such device, or not writable)")
        return path
    _check_kernel(path)
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        mode = None
    except OSError as e:  # e.g. a parent that is a file: ENOTDIR
        mode = None
        if e.errno not in (errno.ENOENT, errno.ENOTDIR):
            raise UsageError(f"{path}: cannot be used ({e.strerror or e})") from None
    if mode is None:
        target = Path(os.path.realpath(path)) if os.path.islink(path) else path
        _probe(_check_parent_folder(target), path)
        return path
    if stat.S_ISDIR(mode):
        raise UsageError(f"{path}: is a folder; name a file to write")
    if not os.access(path, os.W_OK):
        raise UsageError(f"{path}: the file cannot be written (read-only or immutable)",
                         hint="make it writable, or choose another file")
    _probe(Path(os.path.realpath(path)).parent, path)  # the new file is made beside the old, then renamed over it
    return path


def check_output_dir(path: Path) -> Path:
    """``path`` is a folder that can be written in, or can be created (its nearest existing ancestor
    is a writable folder); UsageError saying why not otherwise."""
    _check_kernel(path)
    if os.path.lexists(path) and not path.is_dir():
        raise UsageError(f"{path}: is a file; a folder is needed here")
    existing = path if path.is_dir() else _nearest_existing(path)
    if not existing.is_dir():
        raise UsageError(f"{path}: {existing} is a file, not a folder")
    _probe(existing, path)
    return path


def _argparse_type(check, name: str):
    def parse(text: str) -> Path:
        try:
            return check(Path(text))
        except UsageError as e:
            raise argparse.ArgumentTypeError(e.message) from None
    parse.__name__ = name
    return parse


#: argparse ``type=`` for an output file / an output folder: the check runs when the command line is read.
output_file = _argparse_type(check_output_file, "output file")
output_dir = _argparse_type(check_output_dir, "output folder")


def _keep(text: str, suffix: str) -> Path | None:
    """``text`` in a new file of the temporary folder, or None (nothing half-written left behind)."""
    try:
        fd, kept = tempfile.mkstemp(prefix="circuitspec-", suffix=suffix)
    except OSError:
        return None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        return Path(kept)
    except OSError:
        os.unlink(kept)
        return None


def save_output(path: Path, text: str, what: str = "the output") -> bool:
    """Write ``text`` to ``path`` atomically ('-': stdout). On failure say so in one line and keep ``text``
    in a temporary file (or on stdout); False then, and the caller exits 2."""
    if str(path) == "-":
        sys.stdout.write(text)
        sys.stdout.flush()
        return True
    try:
        write_text(path, text)
        return True
    except OSError as e:
        reason = e.strerror or str(e)
    kept = _keep(text, path.suffix)
    where = f"kept in {kept}" if kept else "printed on stdout below"
    message = f"cannot write {path} ({reason}); {what} is {where}"
    Console(stderr=True, highlight=False).print("[bold red]error:[/] " + escape(message), soft_wrap=True)
    if kept is None:
        sys.stdout.write(text)
        sys.stdout.flush()
    return False
