"""Which tokenizer a checkpoint's model reads, as its manifest records it, and where the files live.

A checkpoint's ``manifest.json`` may hold a ``tokenizer`` entry; none means byte-level (every
circuitspec model, and every checkpoint written before tokenizers were recorded). A BPE entry names
the tokenizer and holds what its files do not: the pre-tokenization pattern and the special tokens;
the files themselves (``vocab.bpe``, ``encoder.json``) sit beside the weights. So a checkpoint says
what its token ids mean, and a model whose files are missing cannot be loaded (a ModelError naming
them) rather than read as bytes.

A circuit_sparsity or TransformerLens config names its tokenizer (``tokenizer_name``); :data:`KNOWN_BPE`
holds the pattern and special tokens of those names circuitspec knows.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from .atomic import write_bytes
from .bpe import ENCODER_FILE, FILES, VOCAB_FILE, BpeTokenizer
from .errors import ModelError
from .tokenizer import BYTES, Tokenizer

BYTES_KIND, BPE_KIND = "bytes", "bpe"
MANIFEST_KEY = "tokenizer"


@dataclass(frozen=True)
class TokenizerSpec:
    """A tokenizer as a manifest records it: ``kind`` bytes or bpe, and for a BPE its name, the
    pattern that splits text before merging, and the special tokens (name -> id)."""

    kind: str = BYTES_KIND
    name: str = BYTES.name
    pattern: str = ""
    special_tokens: Mapping[str, int] = field(default_factory=dict)

    def to_manifest(self) -> dict[str, Any]:
        if self.kind == BYTES_KIND:
            return {"kind": BYTES_KIND}
        return {"kind": BPE_KIND, "name": self.name, "pattern": self.pattern, "special_tokens": dict(self.special_tokens),
                "files": list(FILES)}

    @classmethod
    def from_manifest(cls, entry: Any, file: Path | str) -> "TokenizerSpec":
        """The manifest's ``tokenizer`` entry (None: bytes); ModelError naming ``file`` when it is malformed."""
        if entry is None:
            return cls()
        bad = ModelError(f"{file}: `{MANIFEST_KEY}` must be {{\"kind\": \"bytes\"}} or a BPE entry with a name, a pattern "
                         f"and special tokens, got {str(entry)[:120]}", hint="the manifest was edited; re-copy or re-convert the checkpoint")
        if not isinstance(entry, dict) or entry.get("kind") not in (BYTES_KIND, BPE_KIND):
            raise bad
        if entry["kind"] == BYTES_KIND:
            if set(entry) != {"kind"}:
                raise bad
            return cls()
        name, pattern, specials = entry.get("name"), entry.get("pattern"), entry.get("special_tokens", {})
        if (set(entry) - {"kind", "name", "pattern", "special_tokens", "files"} or not isinstance(name, str) or not name
                or not isinstance(pattern, str) or not pattern or not isinstance(specials, dict)
                or not all(isinstance(k, str) and type(v) is int and v >= 0 for k, v in specials.items())
                or entry.get("files", list(FILES)) != list(FILES)):
            raise bad
        return cls(BPE_KIND, name, pattern, dict(specials))

    def load(self, directory: Path | str, d_vocab: int) -> Tokenizer:
        """The tokenizer, its files read from ``directory``; ModelError when they are missing, malformed,
        or hold more tokens than the model has logits."""
        if self.kind == BYTES_KIND:
            return BYTES
        tokenizer = BpeTokenizer.from_directory(directory, self.name, self.pattern, self.special_tokens)
        if tokenizer.vocab_size > d_vocab:
            raise ModelError(f"{Path(directory)}: the {self.name} tokenizer has {tokenizer.vocab_size} tokens, the model "
                             f"only {d_vocab}", hint="the tokenizer files belong to another model; copy the right ones")
        return tokenizer


def spec_of(tokenizer: Tokenizer) -> TokenizerSpec:
    if isinstance(tokenizer, BpeTokenizer):
        return TokenizerSpec(BPE_KIND, tokenizer.name, tokenizer.pattern, dict(tokenizer.special_tokens))
    if tokenizer == BYTES:
        return TokenizerSpec()
    raise TypeError(f"a checkpoint cannot record the tokenizer {tokenizer!r}")


def write_tokenizer_files(tokenizer: Tokenizer, directory: Path) -> None:
    """A BPE's files into ``directory`` (each written atomically); nothing for bytes."""
    if isinstance(tokenizer, BpeTokenizer):
        write_bytes(directory / VOCAB_FILE, tokenizer.vocab_bpe)
        write_bytes(directory / ENCODER_FILE, tokenizer.encoder_json)


# The tokenizers circuit_sparsity configs name. tinypython_2k: the release's 2,048-token Python BPE;
# its split pattern and end-of-text id are those of the release's tiktoken plugin
# (circuit_sparsity/tiktoken_ext/tinypython.py); the merges come with the files.
TINYPYTHON_2K_PATTERN = r"""[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+"""
# gpt2: GPT-2's 50,257-token BPE (TransformerLens GPT-2 models name it); tiktoken's r50k pattern (tiktoken_ext/
# openai_public.py, equivalent to the original release's and faster), end-of-text 50256.
GPT2_PATTERN = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}++| ?\p{N}++| ?[^\s\p{L}\p{N}]++|\s++$|\s+(?!\S)|\s"""
KNOWN_BPE: dict[str, TokenizerSpec] = {
    "tinypython_2k": TokenizerSpec(BPE_KIND, "tinypython_2k", TINYPYTHON_2K_PATTERN, {"<|endoftext|>": 2047}),
    "gpt2": TokenizerSpec(BPE_KIND, "gpt2", GPT2_PATTERN, {"<|endoftext|>": 50256}),
}
REFERENCE_DEFAULT = "tinypython_2k"  # the reference config's default tokenizer_name


def spec_for_reference(tokenizer_name: Any, file: Path | str) -> TokenizerSpec:
    """The tokenizer a circuit_sparsity config names (absent: the reference's default); ModelError for a
    name circuitspec does not know (it cannot tell what the model's token ids mean)."""
    name = REFERENCE_DEFAULT if tokenizer_name is None else tokenizer_name
    if not isinstance(name, str) or name not in KNOWN_BPE:
        raise ModelError(f"{file}: tokenizer_name {name!r} is not a tokenizer circuitspec knows",
                         hint=f"known: {', '.join(KNOWN_BPE)}; without its split pattern the model's token ids cannot be read")
    return KNOWN_BPE[name]


def missing_files(directory: Path) -> list[str]:
    return [name for name in FILES if not (directory / name).is_file()]
