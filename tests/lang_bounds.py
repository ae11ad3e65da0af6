"""A hang detector for the language tests: a generous alarm, so that a regression fails instead of
stalling the suite. Not a timing assertion (the machines the suite runs on are shared and slow)."""

from __future__ import annotations

import signal
from contextlib import contextmanager

CASE_SECONDS = 10  # far above the second any one input takes


@contextmanager
def finishes_within(seconds: int = CASE_SECONDS):
    def expired(signum, frame):
        raise AssertionError(f"still running after {seconds} s")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
