"""Training configuration: one TOML file with [model], [sparsity], [train], [data] and [corpus] tables."""

from __future__ import annotations

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
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise UsageError(f"{path}: no such config file", hint="see configs/ for examples") from None
    except tomllib.TOMLDecodeError as e:
        raise UsageError(f"{path}: invalid TOML: {e}") from None
    return config_from_dict(data, str(path))
