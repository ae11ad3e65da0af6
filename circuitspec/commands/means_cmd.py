"""Compute a checkpoint's pretraining means (what `ablate mean over corpus` uses) and store them with it.

The means of every hook over corpus windows drawn as training draws its validation windows, written to
CKPT/corpus_means.safetensors with how they were computed (corpus hash, Python version, windows, seed,
the weights they belong to) and how stable they are (two halves of the windows compared). `circuitspec
train` writes them for new checkpoints; this adds them to an existing one, or (--check) only validates
them. The corpus is the standard library of the running Python unless --corpus-root names another
(e.g. that of the Python version the model was trained with: the manifest records which).

Exit 0: written (or valid); 2: bad arguments; 3: unreadable model, or with --check, means missing or stale.
"""

from __future__ import annotations

import argparse

from rich.markup import escape

from .argtypes import bounded, seed
from .defaults import DEFAULT_WINDOWS
from .outputs import check_output_dir
from .reporting import Reporter

MAX_WINDOWS = 1_000_000  # corpus windows: about 1000 times the default
NAME, HELP = "means", "compute and store a checkpoint's pretraining means (for `ablate mean over corpus`)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("models", nargs="+", metavar="MODEL", help="shipped model name or checkpoint directory")
    p.add_argument("--windows", type=bounded(2, MAX_WINDOWS), default=DEFAULT_WINDOWS,
                   help=f"corpus windows to average over (default {DEFAULT_WINDOWS}, of the training seq_len each)")
    p.add_argument("--seed", type=seed, default=None, help="seed of the windows (default: the checkpoint's training seed)")
    p.add_argument("--corpus-root", metavar="DIR", default=None,
                   help="a standard-library folder to draw from instead of the running Python's")
    p.add_argument("--check", action="store_true", help="only validate the stored means (exit 3 if missing or stale)")


def run(args: argparse.Namespace) -> int:
    from ..engine.corpus_means import corpus_reference, describe, means_path, write_corpus_means
    from ..engine.zoo import load_model, resolve_model_path

    say = Reporter(args)  # ok / wrote lines on stdout, the spinner and notes on stderr
    paths = [resolve_model_path(ref) for ref in args.models]
    if not args.check:  # each checkpoint folder is written to: checked before any averaging
        for path in paths:
            check_output_dir(path)
    for ref, path in zip(args.models, paths):
        model = load_model(str(path))
        if args.check:
            corpus_reference(model, path)  # raises a ModelError saying what is wrong and how to fix it
            say.summary(f"[green]ok[/] {escape(describe(means_path(path)))}", soft_wrap=True, highlight=False)
            continue
        with say.status(f"{ref}: averaging over {args.windows} corpus windows"):
            written, means = write_corpus_means(path, model, corpus_root=args.corpus_root, windows=args.windows, seed=args.seed)
        corpus = means.info["corpus"]
        if corpus.get("is_training_corpus") is False:
            say.err.print(f"[yellow]note:[/] {escape(ref)} was trained on another corpus than {escape(corpus['root'])} (another "
                          "Python version?); the stored means are what verdicts use from now on, wherever they run",
                          soft_wrap=True, highlight=False)
        corpus_reference(model, path)  # what was written reads back and validates
        say.summary(f"wrote {escape(describe(written))}", soft_wrap=True, highlight=False)
    return 0
