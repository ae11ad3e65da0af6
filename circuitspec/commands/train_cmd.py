"""Train a weight-sparse (or dense) transformer from a TOML config; resumable, seeded, with progress."""

from __future__ import annotations

import argparse
import shlex
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from ..engine.errors import UsageError
from .argtypes import MAX_STEPS, positive_int
from .defaults import STATE_DIR
from .common import add_device_argument, resolve_device
from .outputs import output_dir
from .reporting import Reporter

NAME, HELP = "train", "train a model from a config file"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", required=True, type=Path, help="TOML training config (see configs/)")
    p.add_argument("--out", required=True, type=output_dir, help="output checkpoint directory")
    p.add_argument("--resume", action="store_true",
                   help=f"continue from the newest intact checkpoint in OUT/{STATE_DIR} (it says which step)")
    p.add_argument("--steps", type=positive_int(MAX_STEPS), help="override [train] steps")
    add_device_argument(p)


def git_revision() -> str | None:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True,
                              cwd=Path(__file__).parent).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def run(args: argparse.Namespace) -> int:
    from ..engine.config import load_config
    from ..engine.train import train

    cfg = load_config(args.config)
    if args.steps is not None:
        cfg = replace(cfg, train=replace(cfg.train, steps=args.steps))
    if not args.resume and (args.out / STATE_DIR).exists():
        raise UsageError(f"{args.out} already holds a training run", hint="pass --resume to continue it, or choose another --out")
    device = resolve_device(args.device)
    say = Reporter(args)  # -q: only the closing `wrote` line (on stdout) and errors
    console = say.err
    if not say.quiet:
        console.print(f"training [bold]{cfg.name}[/] on {device}: {cfg.train.steps} steps, density -> {cfg.sparsity.target_density}"
                      + _io_targets(cfg.sparsity, cfg.train.steps))
    columns = (TextColumn("[progress.description]{task.description}"), BarColumn(), MofNCompleteColumn(),
               TimeRemainingColumn(), TextColumn("{task.fields[status]}"))
    with Progress(*columns, console=console, disable=say.quiet) as progress:
        bar = progress.add_task("train", total=cfg.train.steps, status="")

        def on_progress(state, stats):
            tok_s = state.tokens / max(state.elapsed_s, 1e-9)
            progress.update(bar, completed=state.step,
                            status=f"loss {stats['loss']:.3f} density {stats['density']:.3f} {tok_s:,.0f} tok/s")

        def on_eval(record):
            if say.quiet:
                return
            accs = " ".join(f"{k}={v:.2f}" for k, v in record["task_accuracy"].items())
            progress.console.print(f"step {record['step']}: val_loss {record['val_loss']:.3f}  {accs}")

        _, manifest = train(cfg, args.out, device=device, resume=args.resume, on_progress=on_progress, on_eval=on_eval,
                            on_message=lambda line: progress.console.print(line, markup=False, highlight=False, soft_wrap=True),
                            manifest_extra={"command": shlex.join([Path(sys.argv[0]).name, *sys.argv[1:]]),
                                            "git_revision": git_revision()})
    say.summary(f"wrote {args.out} ({manifest['train_tokens_per_second']:,} tok/s)", highlight=False, soft_wrap=True)
    return 0


def _io_targets(sparsity, steps: int) -> str:
    """The embeddings' and the unembedding's own targets (the schedule's densities at the last step), where
    the config sets them."""
    io, embed = sparsity.io_density_at(steps, steps), sparsity.embed_density_at(steps, steps)
    if sparsity.embed_density is not None:
        return f" (embeddings -> {embed}, unembedding -> {io})"
    if sparsity.io_density is not None:
        return f" (embeddings and unembedding -> {io})"
    return ""
