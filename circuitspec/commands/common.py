"""Arguments and checks shared by several commands."""

from __future__ import annotations

import argparse

from ..engine.errors import UsageError


def add_device_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", choices=("auto", "cpu", "cuda"),
                   help="where tensors live (default: [tool.circuitspec] device, else cuda when available, else cpu)")


def resolve_device(choice: str | None) -> str:
    import torch  # here, not at the top: reading the command line must not import torch

    if choice in (None, "auto"):
        return "cuda" if torch.cuda.is_available() else "cpu"
    if choice == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda requested but no CUDA device is available", hint="use --device cpu")
    return choice
