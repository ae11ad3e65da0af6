"""Shipped models: checkpoints committed under ``circuitspec/checkpoints/<name>/``.

A model reference is either a shipped name or a path to a checkpoint directory.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path

import torch

from .checkpoint import load_checkpoint, read_config, read_manifest
from .errors import ModelError


class UnknownModelError(ModelError):
    """A model reference that is neither a shipped name nor a directory (a spec or usage mistake)."""
from .model import Transformer

DEFAULT_MODEL = "py-sparse-small"


def shipped_dir() -> Path:
    return Path(str(files("circuitspec") / "checkpoints"))


def shipped_names() -> list[str]:
    root = shipped_dir()
    return sorted(p.name for p in root.iterdir() if (p / "config.json").is_file()) if root.is_dir() else []


def resolve_model_path(ref: str | None) -> Path:
    """A shipped name or a checkpoint directory -> that directory; ModelError with did-you-mean otherwise."""
    ref = ref or DEFAULT_MODEL
    if ref in shipped_names():
        return shipped_dir() / ref
    path = Path(ref)
    if path.is_dir():
        return path
    close = difflib.get_close_matches(ref, shipped_names(), n=1)
    hint = f"did you mean {close[0]!r}?" if close else f"shipped models: {', '.join(shipped_names()) or 'none'}; or pass a checkpoint directory"
    raise UnknownModelError(f"unknown model {ref!r}: not a shipped model name and not a directory", hint=hint)


def is_circuit_sparsity_dir(path: Path) -> bool:
    """A checkpoint directory of OpenAI's circuit_sparsity release, not yet converted (no config.json)."""
    return (path / "beeg_config.json").is_file() and not (path / "config.json").exists()


def load_model(ref: str | None = None, device: str | torch.device = "cpu") -> Transformer:
    """A shipped model or checkpoint directory, with its tokenizer (``model.tokenizer``); a circuit_sparsity
    directory is converted in memory, with the same strict checks as `circuitspec convert` (which also writes
    the result, and its weights hash), and must hold its tokenizer's files."""
    path = resolve_model_path(ref)
    if is_circuit_sparsity_dir(path):
        from .convert_circuit_sparsity import load_circuit_sparsity, tokenizer_spec  # only for such directories

        model = load_circuit_sparsity(path)[0]
        model.tokenizer = tokenizer_spec(path).load(path, model.cfg.d_vocab)  # its BPE files must be there
        return model.to(device)
    return load_checkpoint(path, device)


@dataclass(frozen=True)
class ModelInfo:
    name: str
    path: Path
    description: str
    parameters: int
    nonzero: int
    shape: str
    size_bytes: int


def model_info(name: str) -> ModelInfo:
    path = resolve_model_path(name)
    cfg, config = read_config(path)
    manifest = read_manifest(path)
    layout = config.get("layout", {})
    params = sum(int(torch.Size(v["shape"]).numel()) for v in layout.values())
    density = manifest.get("density", {})
    nonzero = sum(round(d * torch.Size(layout[n]["shape"]).numel()) for n, d in density.items() if n in layout)
    dense_rest = sum(int(torch.Size(v["shape"]).numel()) for n, v in layout.items() if n not in density)
    shape = f"{cfg.n_layers}L d{cfg.d_model} {cfg.n_heads}h mlp{cfg.d_mlp} ctx{cfg.n_ctx}"
    size = sum(f.stat().st_size for f in path.iterdir() if f.is_file())
    return ModelInfo(name, path, manifest.get("description", ""), params, nonzero + dense_rest, shape, size)
