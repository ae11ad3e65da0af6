"""Errors users can act on. The CLI prints them (no traceback) and exits with ``exit_code``."""

from __future__ import annotations


class CircuitspecError(Exception):
    exit_code = 2

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message}\n  hint: {self.hint}"


class UsageError(CircuitspecError):
    """Bad arguments or a bad config file: exit 2."""

    exit_code = 2


class ModelError(CircuitspecError):
    """A model that is missing, corrupt or does not match its config: exit 3."""

    exit_code = 3
