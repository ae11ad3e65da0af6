"""Training checkpoints for ``--resume``: each saved as one unit, verified when read, with a fallback.

A checkpoint is a folder ``OUT/train_state/step-NNNNNNNN`` holding ``state.safetensors`` (model and
optimizer tensors, full precision), ``state.json`` (step, tokens, history, optimizer settings) and
``manifest.json``, which lists every file with its size and SHA-256. A save writes all three into a
fresh hidden folder (the manifest last), then renames that folder to its final name in one step; only
after that are older checkpoints removed (the previous complete one is always kept). A kill at any
point therefore leaves the newest published checkpoint intact, plus at most a hidden leftover that the
next save clears away and a resume ignores.

Resuming picks the newest checkpoint whose manifest is valid and whose files match it, says which step
it resumed from, and names any newer one it skipped as damaged or incomplete. Every batch is a function
of (seed, step), so the finished model equals that of an uninterrupted run, bit for bit. A checkpoint
that is intact but does not fit the model (another config) is an error, not a reason to fall back.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_tensors
from safetensors.torch import save as dump_tensors

from .atomic import fsync_dir, write_bytes
from .errors import UsageError
from .model import Transformer

STATE_DIR = "train_state"
TENSORS, META, MANIFEST = "state.safetensors", "state.json", "manifest.json"
FORMAT = "circuitspec-train-state"
KEEP = 2  # complete checkpoints kept: the newest and the one before it
_STEP = re.compile(r"step-(\d{8,})")

# The save's file-system operations (with write_bytes), named here so that a test can fail each in turn.
make_dir = os.mkdir
rename = os.rename


def discard(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


@dataclass
class TrainState:
    step: int = 0
    elapsed_s: float = 0.0
    tokens: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)


class Damaged(Exception):
    """A checkpoint folder that is incomplete or does not match its manifest."""


def remove_tree(path: Path) -> None:
    """Rename out of the way first, so a kill during the removal leaves a hidden leftover, not a half checkpoint."""
    doomed = path.with_name(f".removing-{path.name}-{os.getpid()}")
    rename(path, doomed)
    discard(doomed)


def _step_name(step: int) -> str:
    return f"step-{step:08d}"


def checkpoints(root: Path) -> list[tuple[int, Path]]:
    """Published checkpoint folders, newest first."""
    if not root.is_dir():
        return []
    return sorted(((int(m.group(1)), p) for p in root.iterdir() if p.is_dir() and (m := _STEP.fullmatch(p.name))), reverse=True)


def save_train_state(out: Path, model: Transformer, optimizer: torch.optim.Optimizer, state: TrainState) -> Path:
    """Write and publish the checkpoint of ``state.step`` (see the module docstring); returns its folder."""
    root = out / STATE_DIR
    root.mkdir(parents=True, exist_ok=True)
    for leftover in [*root.glob(".staging-*"), *root.glob(".removing-*")]:  # what killed saves left
        discard(leftover)
    tensors = {f"model.{n}": p.detach().cpu().contiguous() for n, p in model.named_parameters()}
    opt_state = optimizer.state_dict()
    for idx, entries in opt_state["state"].items():
        for key, value in entries.items():
            tensors[f"opt.{idx}.{key}"] = torch.as_tensor(value).detach().cpu().contiguous().clone()
    meta = {"step": state.step, "elapsed_s": state.elapsed_s, "tokens": state.tokens, "history": state.history,
            "param_groups": opt_state["param_groups"]}
    files = {TENSORS: dump_tensors(tensors), META: json.dumps(meta, indent=1).encode()}
    manifest = {"format": FORMAT, "step": state.step,
                "files": {name: {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()} for name, data in files.items()}}
    staging = root / f".staging-{_step_name(state.step)}-{os.getpid()}"
    make_dir(staging)
    for name, data in [*files.items(), (MANIFEST, json.dumps(manifest, indent=1).encode())]:
        write_bytes(staging / name, data)
    final = root / _step_name(state.step)
    if final.exists():  # a damaged checkpoint of this step, skipped when resuming
        remove_tree(final)
    rename(staging, final)
    fsync_dir(root)
    older = [path for step, path in checkpoints(root) if step < state.step][: KEEP - 1]
    for _, path in checkpoints(root):
        if path != final and path not in older:
            remove_tree(path)
    return final


def _read_verified(folder: Path, step: int) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    try:
        manifest = json.loads((folder / MANIFEST).read_bytes())
    except FileNotFoundError:
        raise Damaged(f"no {MANIFEST}") from None
    except (OSError, ValueError, RecursionError) as e:
        raise Damaged(f"{MANIFEST} cannot be read ({e})") from None
    files = manifest.get("files") if isinstance(manifest, dict) else None
    if (not isinstance(files, dict) or set(files) != {TENSORS, META} or manifest.get("format") != FORMAT
            or manifest.get("step") != step):
        raise Damaged(f"{MANIFEST} does not describe a checkpoint of step {step}")
    data = {}
    for name, expected in files.items():
        try:
            data[name] = (folder / name).read_bytes()
        except OSError as e:
            raise Damaged(f"{name} cannot be read ({e.strerror or e})") from None
        if not isinstance(expected, dict) or hashlib.sha256(data[name]).hexdigest() != expected.get("sha256"):
            raise Damaged(f"{name} does not match its SHA-256 in {MANIFEST}")
    try:
        meta, tensors = json.loads(data[META]), load_tensors(data[TENSORS])
    except (ValueError, SafetensorError) as e:
        raise Damaged(f"unreadable despite a matching hash ({e})") from None
    if not isinstance(meta, dict) or meta.get("step") != step:
        raise Damaged(f"{META} is not the state of step {step}")
    return meta, tensors


def _restore(folder: Path, meta: dict[str, Any], tensors: dict[str, torch.Tensor], model: Transformer,
             optimizer: torch.optim.Optimizer) -> TrainState:
    opt_state: dict[str, Any] = {"state": {}, "param_groups": meta["param_groups"]}
    for name, t in tensors.items():
        if name.startswith("opt."):
            _, idx, key = name.split(".", 2)
            opt_state["state"].setdefault(int(idx), {})[key] = t
    try:
        model.load_state_dict({n[len("model."):]: t for n, t in tensors.items() if n.startswith("model.")})
        optimizer.load_state_dict(opt_state)
        return TrainState(step=meta["step"], elapsed_s=meta["elapsed_s"], tokens=meta["tokens"], history=meta["history"])
    except (RuntimeError, ValueError, KeyError, TypeError) as e:
        raise UsageError(f"{folder}: does not fit this config's model ({str(e).splitlines()[0]})",
                         hint="resume with the config the run was started with") from None


def load_train_state(out: Path, model: Transformer, optimizer: torch.optim.Optimizer) -> tuple[TrainState, str]:
    """Restore the newest intact checkpoint into ``model`` and ``optimizer``; returns it and a line saying
    which step it is (and what was skipped). Nothing intact but damaged ones: UsageError naming them."""
    root = out / STATE_DIR
    if not root.is_dir():
        raise UsageError(f"{out}: nothing to resume (no {STATE_DIR})", hint="drop --resume to start a new run")
    skipped = []
    for step, folder in checkpoints(root):
        try:
            meta, tensors = _read_verified(folder, step)
        except Damaged as e:
            skipped.append(f"{folder.name} ({e})")
            continue
        state = _restore(folder, meta, tensors, model, optimizer)
        note = f"; skipped the newer {', '.join(skipped)}" if skipped else ""
        return state, f"resumed from step {state.step} ({folder}){note}"
    if (root / META).is_file():
        raise UsageError(f"{root}: written by an older circuitspec, without a manifest: it cannot be verified, so it is not "
                         "resumed", hint="start again (drop --resume, and remove the folder or choose another --out)")
    if skipped:
        raise UsageError(f"{root}: no intact checkpoint to resume from: {'; '.join(skipped)}",
                         hint="drop --resume and choose another --out to start again")
    return TrainState(), f"no complete checkpoint in {root} yet (a save was interrupted): starting from step 0"
