"""Tokenizers: how task text becomes a model's token ids, and how an id reads back.

circuitspec's own models are byte-level (:class:`ByteTokenizer`: token id == UTF-8 byte value), so
quotes, brackets and spaces are single tokens, a circuit's answer is always one logit, and nothing
needs downloading. A model trained elsewhere may use a BPE (:mod:`.bpe`); every stage asks the model
for its tokenizer (``model.tokenizer``) instead of assuming bytes, through the small interface below.

The module-level ``encode``, ``decode``, ``token_id`` and ``token_repr`` are the byte tokenizer's, as
before (tests and hand-built models use them).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from bisect import bisect_right
from dataclasses import dataclass

VOCAB_SIZE = 256


class NotOneTokenError(ValueError):
    """A text that the tokenizer does not encode as exactly one token; ``pieces`` is what it encodes as."""

    def __init__(self, text: str, pieces: list[str], tokenizer: str) -> None:
        self.text, self.pieces, self.tokenizer = text, pieces, tokenizer
        what = "no token" if not pieces else f"{len(pieces)} tokens: {' '.join(pieces)}"
        super().__init__(f"{text!r} is not one token of the {tokenizer} tokenizer ({what})")


class Tokenizer(ABC):
    """What circuitspec needs of a model's tokenizer. Task text is ASCII, so character offsets are
    byte offsets; ``token_starts`` is what maps a task's named character positions to token indices."""

    name: str  # a short name for messages and manifests, e.g. "bytes" or "tinypython_2k"
    vocab_size: int  # ids are 0 .. vocab_size - 1 (a model's d_vocab may be larger: padding)

    @abstractmethod
    def encode(self, text: str) -> list[int]:
        ...

    @abstractmethod
    def decode(self, tokens: list[int]) -> str:
        ...

    @abstractmethod
    def token_bytes(self, token: int) -> bytes | None:
        """The bytes a token stands for; None for an id that is no token (padding of the vocabulary)."""

    @abstractmethod
    def token_starts(self, text: str) -> list[int]:
        """For each token of ``encode(text)``, the character offset in ``text`` where it starts."""

    def describe(self) -> str:
        """How messages name the tokenizer, e.g. ``the tinypython_2k tokenizer (runs/m)``."""
        return f"the {self.name} tokenizer"

    def token_id(self, text: str) -> int:
        """The id of a text that is exactly one token on its own; NotOneTokenError otherwise."""
        tokens = self.encode(text)
        if len(tokens) != 1:
            raise NotOneTokenError(text, [self.token_repr(t) for t in tokens], self.name)
        return tokens[0]

    def token_repr(self, token: int) -> str:
        """A readable name for a token, e.g. ``'\\n'`` or ``'"'``."""
        data = self.token_bytes(token)
        if data is None:
            return f"<{token}>"
        try:
            return repr(data.decode("utf-8"))
        except UnicodeDecodeError:  # part of a multi-byte character
            return repr(data)

    def token_index(self, text: str, char: int) -> int:
        """The index of the token of ``encode(text)`` that holds character ``char``."""
        return bisect_right(self.token_starts(text), char) - 1


@dataclass(frozen=True)
class ByteTokenizer(Tokenizer):
    """Token id == UTF-8 byte value: circuitspec's own models."""

    name: str = "bytes"
    vocab_size: int = VOCAB_SIZE

    def encode(self, text: str) -> list[int]:
        return list(text.encode("utf-8"))

    def decode(self, tokens: list[int]) -> str:
        return bytes(tokens).decode("utf-8", errors="replace")

    def token_bytes(self, token: int) -> bytes | None:
        return bytes([token]) if 0 <= token < 256 else None

    def token_id(self, text: str) -> int:
        data = text.encode("utf-8")
        if len(data) != 1:
            raise NotOneTokenError(text, [self.token_repr(b) for b in data], self.name)
        return data[0]

    def token_repr(self, token: int) -> str:
        return repr(bytes([token]).decode("latin-1")) if 0 <= token < 256 else f"<{token}>"

    def token_starts(self, text: str) -> list[int]:
        return [i for i, char in enumerate(text) for _ in range(len(char.encode("utf-8")))]

    def token_index(self, text: str, char: int) -> int:
        return char if text.isascii() else super().token_index(text, char)


BYTES = ByteTokenizer()


def encode(text: str) -> list[int]:
    return BYTES.encode(text)


def decode(tokens: list[int]) -> str:
    return BYTES.decode(tokens)


def token_id(char: str) -> int:
    """The id of a single-byte character, e.g. ``token_id('"') == 34``."""
    return BYTES.token_id(char)


def token_repr(token: int) -> str:
    """A readable name for a byte token, e.g. ``'\\n'`` or ``'"'``."""
    return BYTES.token_repr(token)
