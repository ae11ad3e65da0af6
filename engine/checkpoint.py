"""Checkpoints: ``config.json`` + ``model.safetensors`` + ``manifest.json`` in one directory.

Sparse matrices are stored compactly as flat int32 indices plus float32 values (bit-exact); dense ones as
plain tensors. Loading never unpickles anything and validates, in order: files present, JSON valid,
weights hash == manifest, tensor layout matches the config. Each failure is a ModelError that says
which file is wrong and what to do. A loaded model remembers its folder and weights hash
(``model.checkpoint_dir``, ``model.weights_sha256``).

A fourth, optional file, ``corpus_means.safetensors``, holds the model's pretraining means (what
``ablate mean over corpus`` uses); :mod:`.corpus_means` writes, reads and validates it.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from .errors import ModelError
from .model import ModelConfig, Transformer

FORMAT = "circuitspec-checkpoint"
FORMAT_VERSION = 1
CONFIG_FILE, WEIGHTS_FILE, MANIFEST_FILE = "config.json", "model.safetensors", "manifest.json"
SPARSE_BELOW = 0.5  # store a matrix sparsely when at most this fraction of it is non-zero


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def pack_state(model: Transformer) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Tensors to write plus their layout (which are sparse, and the shape of each parameter)."""
    tensors: dict[str, torch.Tensor] = {}
    layout: dict[str, Any] = {}
    matrices = model.weight_matrices()
    for name, p in model.named_parameters():
        t = p.detach().to("cpu", torch.float32).contiguous()
        nonzero = torch.count_nonzero(t).item()
        if name in matrices and nonzero <= SPARSE_BELOW * t.numel():
            flat = t.view(-1)
            idx = torch.nonzero(flat).view(-1)
            tensors[f"{name}.indices"] = idx.to(torch.int32)
            tensors[f"{name}.values"] = flat[idx].clone()
            layout[name] = {"shape": list(t.shape), "storage": "sparse"}
        else:
            tensors[name] = t
            layout[name] = {"shape": list(t.shape), "storage": "dense"}
    return tensors, layout


def save_checkpoint(model: Transformer, out_dir: Path | str, manifest: dict[str, Any]) -> Path:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tensors, layout = pack_state(model)
    save_file(tensors, str(out / WEIGHTS_FILE), metadata={"format": FORMAT})
    config = {"format": FORMAT, "format_version": FORMAT_VERSION, "model": model.cfg.to_dict(), "layout": layout}
    (out / CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n")
    full_manifest = {**manifest, "weights_sha256": sha256_file(out / WEIGHTS_FILE)}
    (out / MANIFEST_FILE).write_text(json.dumps(full_manifest, indent=2, sort_keys=True) + "\n")
    return out


def _read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ModelError(f"{path}: missing", hint=f"a checkpoint directory holds {CONFIG_FILE}, {WEIGHTS_FILE} and {MANIFEST_FILE}")
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ModelError(f"{path}: not valid JSON ({e})", hint="the file is corrupt; re-copy or retrain the checkpoint") from None
    if not isinstance(data, dict):
        raise ModelError(f"{path}: expected a JSON object")
    return data


def read_config(ckpt_dir: Path | str) -> tuple[ModelConfig, dict[str, Any]]:
    """The model config and raw config file of a checkpoint (no weights read)."""
    path = Path(ckpt_dir)
    if not path.is_dir():
        raise ModelError(f"{path}: no such checkpoint directory", hint="run `circuitspec models` to list shipped models")
    config = _read_json(path / CONFIG_FILE)
    if config.get("format") != FORMAT:
        raise ModelError(f"{path / CONFIG_FILE}: not a circuitspec checkpoint (format={config.get('format')!r})")
    if config.get("format_version") != FORMAT_VERSION:
        raise ModelError(f"{path / CONFIG_FILE}: format version {config.get('format_version')!r} is not supported (this circuitspec reads {FORMAT_VERSION})")
    try:
        return ModelConfig.from_dict(config.get("model", {})), config
    except (TypeError, ValueError) as e:
        raise ModelError(f"{path / CONFIG_FILE}: invalid model config: {e}") from None


def read_manifest(ckpt_dir: Path | str) -> dict[str, Any]:
    return _read_json(Path(ckpt_dir) / MANIFEST_FILE)


def load_checkpoint(ckpt_dir: Path | str, device: str | torch.device = "cpu") -> Transformer:
    path = Path(ckpt_dir)
    cfg, config = read_config(path)
    manifest = read_manifest(path)
    weights = path / WEIGHTS_FILE
    if not weights.is_file():
        raise ModelError(f"{weights}: missing")
    expected = manifest.get("weights_sha256")
    if expected != sha256_file(weights):
        raise ModelError(f"{weights}: content hash does not match {MANIFEST_FILE}",
                         hint="the weights file is corrupt or was replaced; re-copy or retrain the checkpoint")
    try:
        tensors = load_file(str(weights))
    except (SafetensorError, OSError, ValueError) as e:
        raise ModelError(f"{weights}: cannot be read as safetensors ({e})") from None
    model = Transformer(cfg)
    state = unpack_state(tensors, config.get("layout", {}), model, weights)
    model.load_state_dict(state)
    model.eval()
    model.checkpoint_dir, model.weights_sha256 = path.resolve(), expected
    return model.to(device)


def unpack_state(tensors: dict[str, torch.Tensor], layout: dict[str, Any], model: Transformer, source: Path) -> dict[str, torch.Tensor]:
    expected = {name: tuple(p.shape) for name, p in model.named_parameters()}
    if set(layout) != set(expected):
        missing, extra = sorted(set(expected) - set(layout)), sorted(set(layout) - set(expected))
        raise ModelError(f"{source}: parameters do not match the model config (missing {missing[:5]}, unexpected {extra[:5]})")
    state = {}
    for name, shape in expected.items():
        entry = layout[name]
        if tuple(entry.get("shape", ())) != shape:
            raise ModelError(f"{source}: {name} has shape {tuple(entry.get('shape', ()))} in the layout but the config implies {shape}")
        try:
            if entry.get("storage") == "sparse":
                idx, values = tensors[f"{name}.indices"].long(), tensors[f"{name}.values"]
                if idx.shape != values.shape or (idx.numel() and (idx.min() < 0 or idx.max() >= torch.Size(shape).numel())):
                    raise ModelError(f"{source}: {name}: sparse indices are inconsistent")
                dense = torch.zeros(torch.Size(shape).numel(), dtype=torch.float32)
                dense[idx] = values.float()
                state[name] = dense.view(shape)
            else:
                state[name] = tensors[name].float()
        except KeyError as e:
            raise ModelError(f"{source}: tensor {e} is missing") from None
        if tuple(state[name].shape) != shape:
            raise ModelError(f"{source}: {name} has shape {tuple(state[name].shape)}, expected {shape}")
    return state
