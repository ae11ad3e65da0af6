"""One spec's whole run for `verify`: its claims verified and, with ``--falsify``, searched for breaks.

The command's own process and its worker processes (:mod:`.parallel`) both run a spec through
:func:`verify_and_falsify`, so a spec gives the same outcome wherever it ran.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable

if TYPE_CHECKING:  # imported by .parallel before torch is
    from ..lang.resolve import ResolvedSpec
    from .falsify import FalsifyResult
    from .judge import ClaimResult
    from .runner import RunCache, RunSettings


@dataclass
class SpecOutcome:
    """What one spec gave: its results, or the error that stopped its verification (message, exit code);
    with ``--falsify``, what the search found, or the error that stopped it."""

    results: list["ClaimResult"] = field(default_factory=list)
    error: str | None = None
    exit_code: int = 0
    falsified: list["FalsifyResult"] = field(default_factory=list)
    falsify_error: str | None = None
    falsify_exit_code: int = 0


@dataclass(frozen=True)
class FalsifyJob:
    """``--falsify``'s settings: inputs tried per claim, and the counterexample database (None: none)."""

    max_examples: int
    database: str | None


def verify_and_falsify(resolved: "ResolvedSpec", settings: "RunSettings", advance: Callable[[], None],
                       cache: "RunCache", falsify: FalsifyJob | None = None,
                       falsifying: Callable[[], None] = lambda: None) -> SpecOutcome:
    """Verify the spec (``advance`` after each claim group) and, when ``falsify`` says so, search it
    (``falsifying`` first, ``advance`` once after); a CircuitspecError in either is kept in the outcome."""
    from ..engine.errors import CircuitspecError
    from .verifier import verify_spec

    outcome = SpecOutcome()
    try:
        outcome.results = verify_spec(resolved, settings, advance, cache)
    except CircuitspecError as e:
        outcome.error, outcome.exit_code = str(e), e.exit_code
    if falsify is None:
        return outcome
    from ..testing import LoadedSpec  # with hypothesis: imported only when falsifying (about 0.2 s)
    from .example_store import ExampleStore
    from .falsify import falsify_spec

    falsifying()
    store = ExampleStore(Path(falsify.database)) if falsify.database is not None else None
    try:
        outcome.falsified = falsify_spec(LoadedSpec(resolved, settings), falsify.max_examples, settings.seed, store)
    except CircuitspecError as e:
        outcome.falsify_error, outcome.falsify_exit_code = str(e), e.exit_code
    advance()
    return outcome
