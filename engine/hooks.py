"""Hook points: identity modules at every named activation, so later stages read and replace them.

Names follow TransformerLens (``blocks.0.mlp.hook_post``, ``blocks.1.attn.hook_v`` …). A hook function
receives ``(activation, hook_name)`` and returns a replacement tensor or ``None`` (keep as is).
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Callable, Iterator

import torch
from torch import nn

HookFn = Callable[[torch.Tensor, str], "torch.Tensor | None"]


class HookPoint(nn.Module):
    """Identity unless hook functions are attached; they run in the order they were added."""

    def __init__(self) -> None:
        super().__init__()
        self.name = ""
        self.fns: list[HookFn] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for fn in self.fns:
            out = fn(x, self.name)
            if out is not None:
                if out.shape != x.shape:
                    raise ValueError(f"hook on {self.name} returned shape {tuple(out.shape)}, expected {tuple(x.shape)}")
                x = out
        return x


class HookedModule(nn.Module):
    """Mixin for a model whose HookPoints are named by their module path."""

    def setup_hooks(self) -> None:
        self.hook_points: dict[str, HookPoint] = {}
        for name, module in self.named_modules():
            if isinstance(module, HookPoint):
                module.name = name
                self.hook_points[name] = module

    def hook_names(self) -> list[str]:
        return list(self.hook_points)

    @contextmanager
    def hooks(self, fns: dict[str, HookFn | list[HookFn]]) -> Iterator[None]:
        """Attach hook functions for the duration of a ``with`` block; always detached afterwards."""
        attached: list[tuple[HookPoint, HookFn]] = []
        try:
            for name, value in fns.items():
                if name not in self.hook_points:
                    raise KeyError(f"no hook point named {name!r}")
                for fn in value if isinstance(value, list) else [value]:
                    self.hook_points[name].fns.append(fn)
                    attached.append((self.hook_points[name], fn))
            yield
        finally:
            for point, fn in attached:
                point.fns.remove(fn)

    def run_with_cache(self, tokens: torch.Tensor, names: list[str] | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Logits plus the activations at ``names`` (all hook points when ``None``)."""
        cache: dict[str, torch.Tensor] = {}

        def save(x: torch.Tensor, name: str) -> None:
            cache[name] = x.detach()

        with self.hooks({name: save for name in (names or self.hook_names())}):
            logits = self(tokens)
        return logits, cache
