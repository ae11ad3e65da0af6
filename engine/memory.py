"""Keep freed tensor memory inside the process (glibc on Linux), so that the next forward pass reuses it
instead of faulting fresh pages in from the kernel.

Why: a forward pass allocates and frees activations of a few MB each, hundreds of times per command.
glibc serves a block above its mmap threshold with a fresh ``mmap`` and gives the top of its heap back
to the kernel above its trim threshold, so every pass touched its activations' pages for the first
time again: 1,400-2,600 page faults per 40-row forward of ``py-sparse-small`` and 10,000-17,000 of
``py-sparse-medium`` on this project's 2-core virtual machine, where a fault is costly. With the
thresholds raised, next to none after the first passes (``benchmarks/page_faults.py`` measures both).

The cost is memory the process keeps after freeing it (up to its peak, at most ``TRIM_THRESHOLD`` more
than glibc would keep), which a command that ends soon does not mind. So the command line and its
verify workers apply it; the library never does it on its own (a notebook or a user's test session
keeps its own allocator settings: call :func:`keep_freed_memory` there to opt in). Set
``CIRCUITSPEC_MALLOC=default`` to leave glibc's settings alone.
"""

from __future__ import annotations

import ctypes
import os
import sys

# mallopt(3) parameters (malloc.h)
M_TRIM_THRESHOLD, M_TOP_PAD, M_MMAP_THRESHOLD = -1, -2, -3
MMAP_THRESHOLD = 32 << 20  # glibc's largest allowed on 64-bit: blocks above it are still mmapped
TRIM_THRESHOLD = 1 << 30  # free memory at the top of the heap kept before any is given back
TOP_PAD = 64 << 20  # each time the heap grows, grow it this much more (address space, not touched)
OPT_OUT = "CIRCUITSPEC_MALLOC"

_applied: bool | None = None


def keep_freed_memory() -> bool:
    """Raise glibc's mmap and trim thresholds for this process (once); whether they are now raised.
    False, and nothing changed, off Linux, without glibc, or with ``CIRCUITSPEC_MALLOC=default``."""
    global _applied
    if _applied is not None:
        return _applied
    _applied = False
    if os.environ.get(OPT_OUT, "").strip().lower() == "default" or not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl and other C libraries: leave them be
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    # mmap threshold first: setting it also stops glibc adjusting both thresholds on its own
    _applied = all(mallopt(param, value) == 1 for param, value in (
        (M_MMAP_THRESHOLD, MMAP_THRESHOLD), (M_TRIM_THRESHOLD, TRIM_THRESHOLD), (M_TOP_PAD, TOP_PAD)))
    return _applied
