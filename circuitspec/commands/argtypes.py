"""argparse ``type=`` helpers: every numeric option is checked when the command line is read (exit 2).

A value out of range used to surface minutes later as a traceback, a wrong verdict or an allocator
error (``prove --timeout nan``, ``--baselines -1``, ``--samples 1000000000000``). The upper bounds are
documented limits, not tuning: past them a run takes hours or exhausts memory before it could finish,
so a typo is caught at once. Only ASCII digits count (Python's ``int`` would read ``٣`` as 3).
"""

from __future__ import annotations

import argparse
import math
import re

MAX_SAMPLES = 100_000  # inputs per claim group, examples per task, inputs tried per claim
MAX_BASELINES = 10_000  # random same-size circuits, or random partial ablations, per claim group
MAX_STEPS = 1_000_000_000  # optimisation steps (training, mask search)
MAX_SEED = 2**63 - 1  # every seeded generator accepts this range
MAX_TIMEOUT_S = 86_400.0  # one day per entailment attempt

_INT = re.compile(r"\s*[+-]?[0-9]+\s*")
_FLOAT = re.compile(r"\s*[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?\s*|\s*[+-]?(nan|inf|infinity)\s*", re.IGNORECASE)


def _show(x: float) -> str:
    return f"{int(x):,}" if float(x).is_integer() else f"{x:g}"


def bounded(low: float | None = None, high: float | None = None, *, kind: type = int):
    """A ``type=`` that reads an ``int`` (or, with ``kind=float``, a finite ``float``) within [low, high]."""
    whole = kind is int

    def parse(text: str):
        if not (_INT if whole else _FLOAT).fullmatch(text):
            raise argparse.ArgumentTypeError(f"expected {'a whole number' if whole else 'a number'}, got {text!r}")
        value = kind(text)
        if not whole and not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
        if low is not None and value < low:
            raise argparse.ArgumentTypeError(f"must be at least {_show(low)}, got {text.strip()}")
        if high is not None and value > high:
            raise argparse.ArgumentTypeError(f"must be at most {_show(high)}, got {text.strip()}")
        return value

    parse.__name__ = "whole number" if whole else "number"
    return parse


def positive_int(high: int):
    return bounded(1, high)


def non_negative_int(high: int):
    return bounded(0, high)


def finite_float(low: float | None = None, high: float | None = None):
    return bounded(low, high, kind=float)


seed = non_negative_int(MAX_SEED)
