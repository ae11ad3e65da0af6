"""A tiny GPT-2-style BPE and tiny random circuit_sparsity models that read it, made in the test.

The release's tinypython_2k files cannot be fetched here, so these stand in for them: the same data gym
format (``vocab.bpe`` + ``encoder.json``), the same name, split pattern and end-of-text id (2047, so the
models have 2,048 logits, as the released ones do), and a handful of merges.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from circuitspec.engine.convert_circuit_sparsity import config_from_reference, reference_shapes

VOCAB = 2048
ENDOFTEXT = 2047
# Merges over Python-ish text, in priority order. `]]` makes a nested list's closing brackets one token,
# so that in bracket_nesting the answer `]` would merge with the prefix's last `]`.
MERGES = [("i", "n"), ("r", "e"), ("e", "n"), ("a", "d"), ("re", "ad"), ("l", "en"), ("t", "e"), ("x", "t"),
          ("te", "xt"), ("p", "a"), ("r", "t"), ("pa", "rt"), ("part", "s"), ("o", "r"), ("d", "e"), ("de", "f"),
          ("Ġ", "="), ("]", "]"), (",", "Ġ")]


def gpt2_byte_chars() -> dict[int, str]:
    """GPT-2's bytes_to_unicode: the character each byte is written as in data gym files."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    chars = printable[:]
    extra = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            chars.append(256 + extra)
            extra += 1
    return dict(zip(printable, map(chr, chars)))


def write_bpe(directory: Path, merges=MERGES, endoftext: bool = True) -> dict[bytes, int]:
    """``vocab.bpe`` and ``encoder.json`` of the byte alphabet plus ``merges`` (data gym strings); returns
    token bytes -> id."""
    table = gpt2_byte_chars()
    back = {c: b for b, c in table.items()}
    ids = {bytes([b]): i for i, b in enumerate(table)}  # GPT-2's order: the printable bytes first
    for a, b in merges:
        ids[bytes(back[c] for c in a + b)] = len(ids)
    encoder = {"".join(table[x] for x in token): i for token, i in ids.items()}
    if endoftext:
        encoder["<|endoftext|>"] = ENDOFTEXT
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "vocab.bpe").write_text("#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges), encoding="utf-8")
    (directory / "encoder.json").write_text(json.dumps(encoder), encoding="utf-8")
    return ids


def reference_config(vocab: int = VOCAB, **changes) -> dict:
    config = {"block_size": 64, "vocab_size": vocab, "n_layer": 2, "n_head": 4, "d_head": 16, "d_model": 64, "d_mlp": 256,
              "bias": True, "ln_bias": True, "rms_norm": True, "activation_type": "gelu", "tied_unembed": False,
              "tokenizer_name": "tinypython_2k", "afrac": None, "sink": False, "enable_bigram_table": False}
    config.update(changes)
    return config


def write_reference_model(directory: Path, seed: int = 0, with_bpe: bool = True, **changes) -> Path:
    """A random circuit_sparsity checkpoint (80% of every matrix zero) with the tiny BPE beside it."""
    config = reference_config(**changes)
    cfg, settings = config_from_reference(config)
    gen = torch.Generator().manual_seed(seed)
    state = {}
    for key, shape in reference_shapes(cfg, settings["bias"]).items():
        value = torch.randn(shape, generator=gen) * (0.5 if len(shape) > 1 else 0.1)
        if key.endswith("ln_1.weight") or key.endswith("ln_2.weight") or key == "transformer.ln_f.weight":
            value = 1 + 0.2 * torch.rand(shape, generator=gen)
        elif len(shape) > 1 and key != "bigram_table":
            value = value * (torch.rand(shape, generator=gen) < 0.2)
        state[key] = value.contiguous()
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "beeg_config.json").write_text(json.dumps(config))
    save_file(state, str(directory / "final_model.safetensors"))
    if with_bpe:
        write_bpe(directory)
    return directory


def resize_vocab(directory: Path, vocab: int = VOCAB, seed: int = 0) -> Path:
    """A copied reference checkpoint given ``vocab`` tokens (new rows random), so that the tiny BPE fits it."""
    config = json.loads((directory / "beeg_config.json").read_text())
    state = load_file(str(directory / "final_model.safetensors"))
    gen = torch.Generator().manual_seed(seed)
    old = config["vocab_size"]
    for key in ("transformer.wte.weight", "lm_head.weight", "final_logits_bias", "bigram_table"):
        if key not in state:
            continue
        value = state[key]
        shape = (vocab, vocab) if key == "bigram_table" else (vocab, *value.shape[1:])
        grown = torch.randn(shape, generator=gen) * value.std()
        grown[tuple(slice(0, n) for n in value.shape)] = value
        state[key] = grown.contiguous()
    config["vocab_size"] = vocab
    (directory / "beeg_config.json").write_text(json.dumps(config))
    save_file(state, str(directory / "final_model.safetensors"))
    return directory


def reference_encode(text: str, ids: dict[bytes, int], pattern: str) -> list[int]:
    """GPT-2's merge loop, written out: split by ``pattern``, then in each piece merge the adjacent pair
    whose merged token has the lowest id until none is a token (an independent check of tiktoken's ids)."""
    import regex

    out = []
    for piece in regex.findall(pattern, text):
        parts = [bytes([b]) for b in piece.encode("utf-8")]
        while len(parts) > 1:
            ranked = [(ids.get(parts[i] + parts[i + 1], 1 << 30), i) for i in range(len(parts) - 1)]
            rank, i = min(ranked)
            if rank == 1 << 30:
                break
            parts[i : i + 2] = [parts[i] + parts[i + 1]]
        out += [ids[p] for p in parts]
    return out
