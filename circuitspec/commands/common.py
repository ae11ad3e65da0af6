"""Arguments and checks shared by several commands."""

from __future__ import annotations

import argparse

import torch

from ..engine.errors import UsageError


def add_device_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"),
                   help="where tensors live (default: cuda when available, else cpu)")


def resolve_device(choice: str) -> str:
    if choice == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if choice == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda requested but no CUDA device is available", hint="use --device cpu")
    return choice
