"""Reading a spec or an included file: regular files of UTF-8 text up to a size limit, nothing else.

Reading ``/dev/zero`` or ``/dev/urandom`` never ends (memory runs out first) and opening a FIFO waits
for a writer forever, so the file's kind is checked on a non-blocking descriptor before a byte is read,
and no more than :data:`~.limits.MAX_FILE_BYTES` (plus one, to notice more) is ever read.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass

from .limits import MAX_FILE_BYTES, size_text

_KINDS = ((stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"), (stat.S_ISFIFO, "a pipe (FIFO)"),
          (stat.S_ISSOCK, "a socket"))


@dataclass(frozen=True)
class Unreadable:
    """Why a file was not read, as the parts of a diagnostic (placed by the caller)."""

    code: str
    message: str
    hint: str | None = None


def read_source(path: str) -> str | Unreadable:
    """The text of the file at ``path``, or why it cannot be a spec."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))  # a FIFO must not block the open
    except (OSError, ValueError) as exc:  # ValueError: a NUL in the path
        return Unreadable("E404", f"cannot read `{path}`: {getattr(exc, 'strerror', None) or exc}")
    try:
        mode = os.fstat(fd).st_mode
        if stat.S_ISDIR(mode):
            return Unreadable("E404", f"`{path}` is a directory, not a .circ file")
        if not stat.S_ISREG(mode):
            kind = next((name for test, name in _KINDS if test(mode)), "a special file")
            return Unreadable("E404", f"`{path}` is {kind}, not a .circ file",
                              "specs and included files are read only from regular files")
        data = _read_at_most(fd, MAX_FILE_BYTES + 1)
    except OSError as exc:
        return Unreadable("E404", f"cannot read `{path}`: {exc.strerror or exc}")
    finally:
        os.close(fd)
    if len(data) > MAX_FILE_BYTES:
        return Unreadable("E007", f"`{path}` is larger than {size_text(MAX_FILE_BYTES)}, the most a .circ file may hold",
                          "check that this is the file you meant; a spec this size is not hand-written")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        return Unreadable("E404", f"`{path}` is not UTF-8 text (byte 0x{data[exc.start]:02x} on line {line})",
                          "save the file as UTF-8")


def _read_at_most(fd: int, size: int) -> bytes:
    chunks, left = [], size
    while left > 0:
        chunk = os.read(fd, min(left, 1 << 16))
        if not chunk:
            break
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)
