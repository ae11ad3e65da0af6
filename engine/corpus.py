"""Training text: the running interpreter's standard-library sources, reproducibly.

Files are listed in sorted order, split into train/validation by a hash of their relative path (so the
split does not move when files are added), and the whole corpus is identified by a SHA-256 over
(path, content) pairs, recorded in every checkpoint manifest.
"""

from __future__ import annotations

import fnmatch
import hashlib
import sys
import sysconfig
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

DEFAULT_EXCLUDE = (
    "site-packages/*", "dist-packages/*", "test/*", "*/test/*", "tests/*", "*/tests/*",
    "idlelib/*", "lib2to3/*", "turtledemo/*", "__phello__/*",
)


@dataclass(frozen=True)
class CorpusConfig:
    root: str | None = None  # None: the standard library of the running interpreter
    exclude: tuple[str, ...] = DEFAULT_EXCLUDE
    validation_fraction: float = 0.05
    max_files: int | None = None  # cap (after sorting) for quick experiments


@dataclass
class Corpus:
    train: np.ndarray  # uint8 bytes, files joined by blank lines
    validation: np.ndarray
    files: list[str] = field(default_factory=list)
    sha256: str = ""
    root: str = ""

    def describe(self) -> dict:
        return {
            "root": self.root,
            "files": len(self.files),
            "train_bytes": int(self.train.size),
            "validation_bytes": int(self.validation.size),
            "sha256": self.sha256,
            "python": sys.version.split()[0],
        }


def stdlib_root() -> Path:
    return Path(sysconfig.get_paths()["stdlib"])


def list_files(root: Path, exclude: tuple[str, ...]) -> list[str]:
    files = []
    for path in root.rglob("*.py"):
        rel = path.relative_to(root).as_posix()
        if not any(fnmatch.fnmatch(rel, pattern) for pattern in exclude) and path.is_file():
            files.append(rel)
    return sorted(files)


def is_validation(rel_path: str, fraction: float) -> bool:
    bucket = int.from_bytes(hashlib.sha256(rel_path.encode()).digest()[:4], "big") / 2**32
    return bucket < fraction


def load_corpus(config: CorpusConfig = CorpusConfig()) -> Corpus:
    root = Path(config.root) if config.root else stdlib_root()
    if not root.is_dir():
        raise FileNotFoundError(f"corpus root {root} is not a directory")
    files = list_files(root, tuple(config.exclude))[: config.max_files]
    if not files:
        raise FileNotFoundError(f"no .py files under {root}")
    digest = hashlib.sha256()
    parts: dict[bool, list[bytes]] = {True: [], False: []}
    for rel in files:
        data = (root / rel).read_bytes()
        digest.update(rel.encode() + b"\0" + hashlib.sha256(data).digest())
        parts[is_validation(rel, config.validation_fraction)].append(data.replace(b"\r\n", b"\n") + b"\n\n")
    def join(chunks: list[bytes]) -> np.ndarray:
        return np.frombuffer(b"".join(chunks), dtype=np.uint8).copy()
    return Corpus(train=join(parts[False]), validation=join(parts[True]), files=files,
                  sha256=digest.hexdigest(), root=str(root))
