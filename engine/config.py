"""Training configuration: one TOML file with [model], [sparsity], [train], [data] and [corpus] tables."""

from __future__ import annotations

import math
import tomllib
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from .corpus import CorpusConfig
from .errors import UsageError
from .model import ModelConfig
from .sparsity import SparsitySchedule


@dataclass(frozen=True)
class OptimConfig:
    steps: int = 2000
    batch_size: int = 32
    seq_len: int = 128
    lr: float = 3e-3
    min_lr_fraction: float = 0.1  # cosine decay ends at lr * this
    warmup_steps: int = 100
    weight_decay: float = 0.01
    beta1: float = 0.9
    beta2: float = 0.95
    grad_clip_rms: float | None = 1.0  # clip so the RMS of all gradients is at most this
    eval_every: int = 250
    eval_examples: int = 200  # per task, during training
    checkpoint_every: int = 500
    seed: int = 0


@dataclass(frozen=True)
class DataConfig:
    task_mix: float = 0.5  # fraction of each batch's rows made of generated task snippets
    tasks: tuple[str, ...] = ()  # empty: every registered task


@dataclass(frozen=True)
class TrainConfig:
    name: str = "model"
    description: str = ""
    model: ModelConfig = field(default_factory=ModelConfig)
    sparsity: SparsitySchedule = field(default_factory=SparsitySchedule)
    train: OptimConfig = field(default_factory=OptimConfig)
    data: DataConfig = field(default_factory=DataConfig)
    corpus: CorpusConfig = field(default_factory=CorpusConfig)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


# Field annotations (strings, under ``from __future__ import annotations``) -> what a table may give them.
_TYPE_CHECKS = {
    "int": ("an integer", _is_int),
    "float": ("a number", lambda v: _is_int(v) or (isinstance(v, float) and math.isfinite(v))),
    "bool": ("true or false", lambda v: isinstance(v, bool)),
    "str": ("a string", lambda v: isinstance(v, str)),
    "None": ("null", lambda v: v is None),
    "tuple[str, ...]": ("a list of strings", lambda v: isinstance(v, (list, tuple)) and all(isinstance(x, str) for x in v)),
}


def check_field_types(cls: type, table: dict[str, Any]) -> None:
    """ValueError naming the first value in ``table`` whose type its dataclass field does not allow (keys
    that are not fields are left to the caller). Needed because dataclasses check nothing, and Python's
    bool is an int: ``n_heads = true`` would otherwise build a one-head model."""
    for f in fields(cls):
        if f.name not in table:
            continue
        checks = [_TYPE_CHECKS[a.strip()] for a in str(f.type).split("|")]
        value = table[f.name]
        if not any(ok(value) for _, ok in checks):
            raise ValueError(f"{f.name} must be {' or '.join(what for what, _ in checks)}, got {describe_value(value)}")


def describe_value(value: Any) -> str:
    """A short rendering of a bad value: containers (possibly deep) and huge numbers are only named."""
    if isinstance(value, (bool, float)) or value is None or (isinstance(value, int) and value.bit_length() <= 64):
        return repr(value)
    if isinstance(value, str):
        return repr(value if len(value) <= 40 else value[:37] + "...")
    return f"a {type(value).__name__}"


_SECTIONS = {"model": ModelConfig, "sparsity": SparsitySchedule, "train": OptimConfig, "data": DataConfig, "corpus": CorpusConfig}


def _build(cls: type, table: Any, where: str) -> Any:
    if not isinstance(table, dict):
        raise UsageError(f"{where}: expected a table")
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(table) - known)
    if unknown:
        raise UsageError(f"{where}: unknown keys {unknown}", hint=f"valid keys: {', '.join(sorted(known))}")
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in table.items()}
    try:
        check_field_types(cls, values)
        return cls(**values)
    except (TypeError, ValueError) as e:
        raise UsageError(f"{where}: {e}") from None


def config_from_dict(data: dict[str, Any], source: str = "<config>") -> TrainConfig:
    top = {k: v for k, v in data.items() if k not in _SECTIONS}
    unknown = sorted(set(top) - {"name", "description"})
    if unknown:
        raise UsageError(f"{source}: unknown keys {unknown}", hint=f"tables: {', '.join(_SECTIONS)}; top-level keys: name, description")
    sections = {name: _build(cls, data.get(name, {}), f"{source} [{name}]") for name, cls in _SECTIONS.items()}
    return TrainConfig(**top, **sections)


def load_config(path: Path | str) -> TrainConfig:
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UsageError(f"{path}: no such config file", hint="see configs/ for examples") from None
    except IsADirectoryError:
        raise UsageError(f"{path}: is a folder, not a config file", hint="name a .toml file (see configs/)") from None
    except OSError as e:
        raise UsageError(f"{path}: cannot be read ({e.strerror or e})") from None
    except UnicodeDecodeError as e:
        raise UsageError(f"{path}: not UTF-8 text (byte {e.start})") from None
    except tomllib.TOMLDecodeError as e:
        raise UsageError(f"{path}: invalid TOML: {e}") from None
    except RecursionError:
        raise UsageError(f"{path}: nested too deeply to be a training config") from None
    return config_from_dict(data, str(path))
