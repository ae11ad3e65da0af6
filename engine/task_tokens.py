"""A task example on a model's tokenizer: its prefix's tokens, its two answers' ids, its positions.

Tasks are written on text: the answers are strings, and named positions are character offsets into
the prefix. A model reads tokens, so each is mapped through the model's tokenizer: the answer is read
at the last token of the prefix, and a named position is the token that holds its character.

A question is only well posed if each answer is one token that the model could emit right after the
prefix: exactly one token on its own, and not merged into the prefix's last token when the two are
written together (under a BPE, ``x(`` followed by ``)`` could tokenize as ``x`` ``()``). Otherwise the
logit compared is not the answer's, so this is an error (exit 2) naming the task, the answer and the
tokenizer, never a silent approximation. With bytes every ASCII answer passes.
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import UsageError
from .tasks.base import TaskExample
from .tokenizer import NotOneTokenError, Tokenizer

SHOWN_PREFIX = 40  # characters of a prefix's end quoted in an error


class AnswerTokenError(UsageError):
    """A task answer the model's tokenizer cannot give as one next token (exit 2)."""


@dataclass(frozen=True)
class TokenizedExample:
    tokens: list[int]  # the prefix; the answer is read at the last one
    correct: int
    wrong: int


def tokenize_example(example: TaskExample, tokenizer: Tokenizer, task: str = "") -> TokenizedExample:
    tokens = tokenizer.encode(example.prefix)
    return TokenizedExample(tokens, answer_id(example, example.correct, tokens, tokenizer, task),
                            answer_id(example, example.wrong, tokens, tokenizer, task))


def answer_id(example: TaskExample, answer: str, prefix_tokens: list[int], tokenizer: Tokenizer, task: str = "") -> int:
    """The id of ``answer`` as the token that follows ``prefix_tokens``; AnswerTokenError when it is not one."""
    where = f"task {task!r}" if task else "a task"
    hint = ("this task cannot be posed to this model: each answer must be a single token of its vocabulary, kept apart "
            "from the text before it")
    try:
        token = tokenizer.token_id(answer)
    except NotOneTokenError as e:
        raise AnswerTokenError(f"{where}: the answer {answer!r} is not one token of {tokenizer.describe()} "
                               f"({len(e.pieces)} tokens: {' '.join(e.pieces) or 'none'})", hint=hint) from None
    together = tokenizer.encode(example.prefix + answer)
    if together != prefix_tokens + [token]:
        tail = example.prefix[-SHOWN_PREFIX:]
        shown = " ".join(tokenizer.token_repr(t) for t in together[max(0, len(prefix_tokens) - 2):])
        raise AnswerTokenError(f"{where}: after the prefix {'...' if tail != example.prefix else ''}{tail!r} the answer "
                               f"{answer!r} merges with the text before it under {tokenizer.describe()} (together they "
                               f"end in {shown})", hint=hint)
    return token


def token_position(example: TaskExample, name: str, tokenizer: Tokenizer) -> int:
    """The index of the token of the prefix that holds the named character position."""
    return tokenizer.token_index(example.prefix, example.positions[name])
