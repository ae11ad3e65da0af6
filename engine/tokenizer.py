"""Byte-level tokenizer: token id == UTF-8 byte value.

Quotes, brackets and spaces are single tokens, so a circuit's answer is always one logit, and
nothing needs downloading. Task text is ASCII, so a character index equals a token index.
"""

from __future__ import annotations

VOCAB_SIZE = 256


def encode(text: str) -> list[int]:
    return list(text.encode("utf-8"))


def decode(tokens: list[int]) -> str:
    return bytes(tokens).decode("utf-8", errors="replace")


def token_id(char: str) -> int:
    """The id of a single-byte character, e.g. ``token_id('"') == 34``."""
    data = char.encode("utf-8")
    if len(data) != 1:
        raise ValueError(f"{char!r} is not a single-byte token")
    return data[0]


def token_repr(token: int) -> str:
    """A readable name for a token, e.g. ``'\\n'`` or ``'"'``."""
    return repr(bytes([token]).decode("latin-1"))
