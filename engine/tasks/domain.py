"""A task's input domain made explicit and finite, for proofs that cover every input.

A generator draws inputs; a proof needs the whole set. A :class:`Domain` is a pattern of literal text and
character slots (each slot: any character of an alphabet, repeated between ``least`` and ``most`` times),
so it is a finite union of *boxes* (one set of characters per position), which is the form the prover
bounds. A domain also says which feature values all of its inputs share (``features``): a claim's
``when`` conditions must hold on them for the domain to be the claim's.

A domain is usually wider than what the generator writes (any printable characters in a string body
where the generator writes words): proving a claim over it proves it over the generator's inputs of
that shape too. The tests check that generated inputs of the shape are members.
"""

from __future__ import annotations

import itertools
import math
import re
from dataclasses import dataclass, field
from typing import Mapping, Union

from .base import FeatureValue

#: Printable ASCII without the quotes, the backslash and whitespace other than the space: what may sit
#: inside a one-line string literal without ending or escaping it.
STRING_BODY_CHARS = "".join(chr(c) for c in range(32, 127) if chr(c) not in "\"'\\")
LOWERCASE = "abcdefghijklmnopqrstuvwxyz"


@dataclass(frozen=True)
class Chars:
    """``least`` to ``most`` positions, each any one character of ``alphabet``."""

    alphabet: str
    least: int
    most: int
    label: str  # how the pattern shows the alphabet, e.g. "[a-z]"

    def __post_init__(self) -> None:
        if not self.alphabet or len(set(self.alphabet)) != len(self.alphabet):
            raise ValueError(f"slot {self.label}: the alphabet must be distinct characters, at least one")
        if not 0 <= self.least <= self.most:
            raise ValueError(f"slot {self.label}: need 0 <= least <= most, got {self.least}, {self.most}")


Part = Union[str, Chars]


@dataclass(frozen=True)
class Domain:
    """A finite set of inputs: the concatenations of ``parts`` (literal text or :class:`Chars` slots)."""

    name: str
    description: str
    parts: tuple[Part, ...]
    features: Mapping[str, FeatureValue] = field(default_factory=dict)

    def __post_init__(self) -> None:
        boxes = self.boxes()
        for a, b in itertools.combinations(boxes, 2):  # a size is only a size if no input is counted twice
            if len(a) == len(b) and all(set(x) & set(y) for x, y in zip(a, b)):
                raise ValueError(f"domain {self.name}: two of its boxes share inputs; make the slots unambiguous")

    def boxes(self) -> list[tuple[str, ...]]:
        """Every box: a tuple of one alphabet (a string of characters) per position."""
        slots = [p for p in self.parts if isinstance(p, Chars)]
        out = []
        for counts in itertools.product(*(range(s.least, s.most + 1) for s in slots)):
            box: list[str] = []
            chosen = iter(counts)
            for part in self.parts:
                if isinstance(part, Chars):
                    box.extend([part.alphabet] * next(chosen))
                else:
                    box.extend(part)
            if box:
                out.append(tuple(box))
        return out

    def size(self) -> int:
        return sum(math.prod(len(s) for s in box) for box in self.boxes())

    def pattern(self) -> str:
        """A regular expression for the set (literal text escaped), as shown to users."""
        text = ""
        for part in self.parts:
            if isinstance(part, Chars):
                count = ("" if part.least == 1 else f"{{{part.least}}}") if part.least == part.most else f"{{{part.least},{part.most}}}"
                text += part.label + count
            else:
                text += re.escape(part).replace("\\ ", " ")
        return text

    def contains(self, text: str) -> bool:
        regex = ""
        for part in self.parts:
            if isinstance(part, Chars):
                regex += f"[{re.escape(part.alphabet)}]{{{part.least},{part.most}}}"
            else:
                regex += re.escape(part)
        return re.fullmatch(regex, text, flags=re.DOTALL) is not None

    def to_json(self) -> dict:
        return {"name": self.name, "description": self.description, "pattern": self.pattern(),
                "size": self.size(), "features": dict(self.features),
                "parts": [p if isinstance(p, str) else {"alphabet": p.alphabet, "least": p.least, "most": p.most}
                          for p in self.parts]}
