"""Reading another tool's checkpoint files safely: a JSON config and a state dict (safetensors, or a
``.pt`` loaded with ``torch.load(weights_only=True)``, which refuses any pickled object that is not plain
tensors and containers, so loading never runs code). Shared by the converters
(:mod:`.convert_circuit_sparsity`, :mod:`.convert_transformer_lens`); every failure is a one-line
:class:`~.errors.ModelError` with a hint."""

from __future__ import annotations

import json
import pickle
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from .errors import ModelError

MAX_CONFIG_BYTES = 1 << 20


def read_json_config(file: Path, missing_hint: str) -> dict[str, Any]:
    """The JSON object in ``file``; ``missing_hint`` says what the directory should hold."""
    if not file.is_file():
        raise ModelError(f"{file}: {'not a regular file' if file.exists() else 'missing'}", hint=missing_hint)
    if file.stat().st_size > MAX_CONFIG_BYTES:
        raise ModelError(f"{file}: larger than a model config can be ({MAX_CONFIG_BYTES} bytes)")
    try:
        data = json.loads(file.read_bytes().decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        raise ModelError(f"{file}: not valid JSON ({str(e).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise ModelError(f"{file}: expected a JSON object")
    return data


def read_state_dict(path: Path, names: tuple[str, ...], missing_hint: str) -> tuple[dict[str, torch.Tensor], Path]:
    """The state dict in the first of ``names`` present in ``path``, and that file."""
    for name in names:
        file = path / name
        if file.is_file():
            break
    else:
        raise ModelError(f"{path}: no {' or '.join(names)}", hint=missing_hint)
    try:
        if file.suffix == ".safetensors":
            return load_file(str(file)), file
        state = torch.load(file, map_location="cpu", weights_only=True)
    except (SafetensorError, OSError, RuntimeError, ValueError, EOFError, pickle.UnpicklingError) as e:
        raise ModelError(f"{file}: cannot be read ({str(e).splitlines()[0][:200] if str(e) else type(e).__name__})",
                         hint="the file is corrupt, or holds more than a state dict of tensors") from None
    if not isinstance(state, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()):
        raise ModelError(f"{file}: not a state dict (a mapping of names to tensors)")
    return dict(state), file
