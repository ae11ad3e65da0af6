"""A byte-level BPE read from GPT-2 "data gym" files (``vocab.bpe`` + ``encoder.json``), run by tiktoken.

That is how the circuit_sparsity release ships its ``tinypython_2k`` tokenizer. ``vocab.bpe`` lists
the merges in priority order after a version line; ``encoder.json`` maps every token to its id. Both
write a token's bytes as text through GPT-2's byte-to-character table (a printable byte stands for
itself, every other byte for a character from U+0100 up). A token's id is its rank: the 256 single
bytes first (printable ones in byte order, then the rest), then one id per merge, so the two files
must agree, which is checked.

The files are read here rather than with ``tiktoken.load.data_gym_to_mergeable_bpe_ranks``, which
caches every file it reads under a key made from its path (a checkpoint replaced at the same path
would silently keep its old tokenizer) and reports a mismatch with a bare assert. The merge loop
itself is tiktoken's. What the files do not hold, the pre-tokenization pattern that splits text
before merging, and the special tokens, the caller supplies (:mod:`.tokenizer_spec`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Mapping

from .errors import ModelError
from .tokenizer import Tokenizer

VOCAB_FILE, ENCODER_FILE = "vocab.bpe", "encoder.json"
FILES = (VOCAB_FILE, ENCODER_FILE)
MAX_FILE_BYTES = 64 << 20  # GPT-2's 50k-token files take 1.5 MB
# encoder.json entries that are special tokens, not merges (as tiktoken's reader treats them)
SPECIAL_ENTRIES = ("<|endoftext|>", "<|startoftext|>")
CORRUPT = f"{VOCAB_FILE} and {ENCODER_FILE} must be the pair the model was trained with; copy both again"


def byte_order() -> list[int]:
    """The 256 bytes in rank order: printable ones (not space) first, then the others."""
    printable = [b for b in range(256) if chr(b).isprintable() and chr(b) != " "]
    return printable + [b for b in range(256) if b not in printable]


def _char_to_byte() -> dict[str, int]:
    """GPT-2's table, inverted: the character each byte is written as -> the byte."""
    table, extra = {}, 0
    for b in byte_order():
        if chr(b).isprintable() and chr(b) != " ":
            table[chr(b)] = b
        else:
            table[chr(256 + extra)] = b
            extra += 1
    return table


def data_gym_ranks(vocab_bpe: str, encoder_json: str, source: Path | str = ".") -> tuple[dict[bytes, int], dict[str, int]]:
    """The merge ranks (token bytes -> id) of a data gym pair, and the special tokens ``encoder.json``
    names; ModelError naming the file and line when the files are malformed or disagree."""
    source = Path(source)
    chars = _char_to_byte()

    def to_bytes(text: str, where: str) -> bytes:
        try:
            return bytes(chars[c] for c in text)
        except KeyError as e:
            raise ModelError(f"{where}: {e.args[0]!r} is not a character of GPT-2's byte table", hint=CORRUPT) from None

    ranks = {bytes([b]): i for i, b in enumerate(byte_order())}
    lines = vocab_bpe.split("\n")
    for number, line in enumerate(lines[1:], start=2):  # line 1 is the version header
        if not line.strip():
            if any(rest.strip() for rest in lines[number:]):
                raise ModelError(f"{source / VOCAB_FILE}:{number}: an empty line among the merges", hint=CORRUPT)
            break
        parts = line.split()
        if len(parts) != 2:
            raise ModelError(f"{source / VOCAB_FILE}:{number}: a merge is two tokens separated by a space, got {line[:80]!r}",
                             hint=CORRUPT)
        where = f"{source / VOCAB_FILE}:{number}"
        merged = to_bytes(parts[0], where) + to_bytes(parts[1], where)
        if merged in ranks:
            raise ModelError(f"{where}: the merge {line[:80]!r} makes a token that already exists", hint=CORRUPT)
        ranks[merged] = len(ranks)
    try:
        entries = json.loads(encoder_json)
    except (ValueError, RecursionError) as e:
        raise ModelError(f"{source / ENCODER_FILE}: not valid JSON ({str(e).splitlines()[0]})", hint=CORRUPT) from None
    if not isinstance(entries, dict) or not all(type(v) is int for v in entries.values()):
        raise ModelError(f"{source / ENCODER_FILE}: expected an object of token -> integer id", hint=CORRUPT)
    specials = {k: v for k, v in entries.items() if k in SPECIAL_ENTRIES}
    encoder = {to_bytes(k, str(source / ENCODER_FILE)): v for k, v in entries.items() if k not in SPECIAL_ENTRIES}
    if encoder != ranks:
        differ = sorted((t for t in set(encoder) | set(ranks) if encoder.get(t) != ranks.get(t)), key=lambda t: ranks.get(t, 1 << 62))
        token = differ[0]
        raise ModelError(f"{source / ENCODER_FILE}: does not match {VOCAB_FILE} ({len(encoder)} tokens against "
                         f"{len(ranks)}; token {token!r} has id {encoder.get(token)} there and {ranks.get(token)} by the merges)",
                         hint=CORRUPT)
    return ranks, specials


def read_bpe_files(directory: Path) -> tuple[bytes, bytes]:
    """The raw bytes of ``vocab.bpe`` and ``encoder.json`` in ``directory``; ModelError naming every
    missing one."""
    missing = [name for name in FILES if not (directory / name).is_file()]
    if missing:
        raise ModelError(f"{directory}: the model's tokenizer files {' and '.join(missing)} are missing",
                         hint=f"copy {VOCAB_FILE} and {ENCODER_FILE} of the tokenizer the model was trained with into {directory}")
    data = []
    for name in FILES:
        path = directory / name
        if path.stat().st_size > MAX_FILE_BYTES:
            raise ModelError(f"{path}: larger than a tokenizer file can be ({MAX_FILE_BYTES >> 20} MiB)", hint=CORRUPT)
        try:
            data.append(path.read_bytes())
        except OSError as e:
            raise ModelError(f"{path}: cannot be read ({e.strerror})") from None
    return data[0], data[1]


class BpeTokenizer(Tokenizer):
    """A data gym BPE with a pre-tokenization ``pattern`` and ``special_tokens`` (name -> id) on top.

    Keeps the two files' bytes, so a checkpoint saved from a model carries them along."""

    def __init__(self, name: str, pattern: str, vocab_bpe: bytes, encoder_json: bytes,
                 special_tokens: Mapping[str, int] | None = None, source: Path | str | None = None) -> None:
        import tiktoken  # only models with a BPE need it

        where = Path(source) if source is not None else Path(".")
        try:
            vocab_text, encoder_text = vocab_bpe.decode("utf-8"), encoder_json.decode("utf-8")
        except UnicodeDecodeError as e:
            raise ModelError(f"{where}: a tokenizer file is not UTF-8 text ({e.reason} at byte {e.start})", hint=CORRUPT) from None
        ranks, found = data_gym_ranks(vocab_text, encoder_text, where)
        specials = dict(found)
        for token, value in (special_tokens or {}).items():
            if specials.get(token, value) != value:
                raise ModelError(f"{where / ENCODER_FILE}: the special token {token} has id {specials[token]}, "
                                 f"but the tokenizer {name} gives it {value}", hint=CORRUPT)
            specials[token] = value
        clash = sorted(v for v in specials.values() if v < len(ranks))
        if clash:
            raise ModelError(f"{where}: special token id {clash[0]} is also the id of a merged token", hint=CORRUPT)
        try:
            self.encoding = tiktoken.Encoding(name, pat_str=pattern, mergeable_ranks=ranks, special_tokens=specials)
        except ValueError as e:  # the pattern does not compile
            raise ModelError(f"the pre-tokenization pattern of the tokenizer {name} is not a valid regex ({e})") from None
        self.name, self.pattern, self.special_tokens = name, pattern, specials
        self.vocab_bpe, self.encoder_json = vocab_bpe, encoder_json
        self.source = Path(source) if source is not None else None
        self.vocab_size = self.encoding.max_token_value + 1

    @classmethod
    def from_directory(cls, directory: Path | str, name: str, pattern: str,
                       special_tokens: Mapping[str, int] | None = None) -> "BpeTokenizer":
        directory = Path(directory)
        vocab_bpe, encoder_json = read_bpe_files(directory)
        return cls(name, pattern, vocab_bpe, encoder_json, special_tokens, directory)

    def describe(self) -> str:
        return f"the {self.name} tokenizer" + (f" of {self.source}" if self.source is not None else "")

    def encode(self, text: str) -> list[int]:
        return self.encoding.encode_ordinary(text)  # special-token text in a task is plain text

    def decode(self, tokens: list[int]) -> str:
        return self.encoding.decode(tokens)

    def token_bytes(self, token: int) -> bytes | None:
        try:
            return self.encoding.decode_single_token_bytes(token)
        except KeyError:
            return None

    def token_id(self, text: str) -> int:
        if text in self.special_tokens:
            return self.special_tokens[text]
        return super().token_id(text)

    def token_starts(self, text: str) -> list[int]:
        return self.encoding.decode_with_offsets(self.encode(text))[1]
