"""Writing files so that a reader (or the next run) sees the old content or the new, never a torn file.

Every report, spec, checkpoint file and example-database file circuitspec writes goes through
:func:`write_bytes`: the bytes go to a temporary file in the target's own folder (a rename cannot cross
file systems), are flushed and fsynced, and the temporary file is renamed over the target
(``os.replace`` is atomic on POSIX); the folder is then fsynced, best-effort, so the rename itself
survives a power cut. A failure (a full disk, a file-size limit, an interrupt) removes the temporary
file and leaves the old target as it was; a kill leaves at most a stray ``.NAME.*.tmp`` beside it. Two
writers of one file each rename a complete file, so the last one wins and nothing is interleaved.

An existing target keeps its permission bits; a symbolic link is followed (the file it names is
replaced, the link stays). A stream (:func:`is_stream`: a device, a FIFO, any name under ``/dev`` such
as ``/dev/stdout``) cannot be replaced and is written directly.
"""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path

_UMASK = os.umask(0)  # read once: setting it back and forth later would race with other threads
os.umask(_UMASK)


def fsync_dir(folder: Path | str) -> None:
    """Make a rename or a new entry in ``folder`` durable (best-effort: some file systems refuse)."""
    try:
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def is_stream(path: Path | str) -> bool:
    """A device, a FIFO, or a name under /dev: ``/dev/stdout`` may resolve to a regular file the shell
    redirected to, and replacing that file would send the output to a name the shell no longer writes."""
    if os.path.abspath(path).startswith("/dev/"):
        return True
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return False
    return not stat.S_ISREG(mode) and not stat.S_ISDIR(mode)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _unlink_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def write_bytes(path: Path | str, data: bytes) -> Path:
    """Replace ``path`` by ``data`` atomically (see the module docstring); returns the file written."""
    if is_stream(path):
        with open(path, "wb") as stream:
            stream.write(data)
        return Path(path)
    target = Path(os.path.realpath(path)) if os.path.islink(path) else Path(path)
    try:
        mode = os.stat(target).st_mode
    except FileNotFoundError:
        mode = None
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        try:
            _write_all(fd, data)
            os.fchmod(fd, stat.S_IMODE(mode) if mode is not None else 0o666 & ~_UMASK)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, target)
    except BaseException:
        _unlink_quietly(tmp)
        raise
    fsync_dir(target.parent)
    return target


def write_text(path: Path | str, text: str, encoding: str = "utf-8") -> Path:
    """:func:`write_bytes` for text."""
    return write_bytes(path, text.encode(encoding))
