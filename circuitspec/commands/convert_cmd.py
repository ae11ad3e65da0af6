"""Convert a model trained elsewhere into a circuitspec checkpoint directory (a model path every command takes).

Supported: `--from circuit-sparsity`, a checkpoint directory of OpenAI's circuit_sparsity release
(beeg_config.json + final_model.pt or final_model.safetensors), and `--from transformer-lens`, a
TransformerLens 2.x HookedTransformer saved as tl_config.json (its config as JSON) + tl_model.safetensors
or tl_model.pt (its state_dict; engine.convert_transformer_lens.save_hooked_transformer writes both).
Loading is strict: every tensor must be used and every config key known (--drop-config-key KEY drops a
key that only mattered for training); .pt files are read with torch.load(weights_only=True), which never
runs pickled code. docs/models.md lists what maps to what.

The model's tokenizer (the config's tokenizer_name, e.g. tinypython_2k) is recorded in OUT's manifest,
and its files, vocab.bpe and encoder.json, are checked and copied into OUT when DIR holds them; without
them OUT is written, with a warning, and commands refuse it until the files are copied into it. A
TransformerLens config without a tokenizer_name converts to a byte-level model; one naming a tokenizer
circuitspec cannot read is exit 3 (--drop-config-key tokenizer_name reads its ids as bytes).

Exit 0: written; 2: bad arguments or an output folder that is not empty; 3: the input cannot be converted.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from rich.markup import escape

from ..engine.errors import UsageError
from .outputs import output_dir
from .reporting import Reporter

NAME, HELP = "convert", "convert another project's checkpoint into a circuitspec checkpoint directory"
SOURCES = ("circuit-sparsity", "transformer-lens")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("source", metavar="DIR", help="the checkpoint directory to convert")
    p.add_argument("--from", dest="source_format", required=True, choices=SOURCES, help="the format of DIR")
    p.add_argument("-o", "--out", required=True, type=output_dir, metavar="OUT",
                   help="the circuitspec checkpoint directory to write (new or empty)")
    p.add_argument("--drop-config-key", action="append", default=[], metavar="KEY",
                   help="ignore this unknown config key (one that only mattered for training); repeatable; "
                        "with --from transformer-lens, tokenizer_name reads the model's ids as bytes")
    p.add_argument("--name", default=None, help="the model's name in its manifest (default: OUT's folder name)")


def run(args: argparse.Namespace) -> int:
    import torch

    from ..engine.checkpoint import save_checkpoint
    from ..engine.tokenizer_spec import BYTES_KIND, MANIFEST_KEY, TokenizerSpec, missing_files

    out = args.out
    if out.is_dir() and any(out.iterdir()):
        raise UsageError(f"{out}: not empty", hint="name a new or empty folder for the converted checkpoint")
    drop = tuple(args.drop_config_key)
    if args.source_format == "transformer-lens":
        from ..engine import convert_transformer_lens as tl

        model, info = tl.load_transformer_lens(args.source, drop)
        tokenizer = tl.tokenizer_spec(args.source, drop) or TokenizerSpec()  # None: the ids are bytes
        what = "a TransformerLens HookedTransformer"
    else:
        from ..engine.convert_circuit_sparsity import load_circuit_sparsity, tokenizer_spec

        model, info = load_circuit_sparsity(args.source, drop)
        tokenizer = tokenizer_spec(args.source)
        what = "a circuit_sparsity checkpoint"
    cfg = model.cfg
    missing = missing_files(Path(args.source)) if tokenizer.kind != BYTES_KIND else []
    if tokenizer.kind != BYTES_KIND and not missing:  # checked here; save_checkpoint copies them
        model.tokenizer = tokenizer.load(args.source, cfg.d_vocab)
    manifest = {
        "name": args.name or out.name,
        "description": f"converted from {what} ({args.source})",
        "command": shlex.join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "converted_from": {**info, "path": str(args.source)},
        "torch": torch.__version__,
        MANIFEST_KEY: tokenizer.to_manifest(),
    }
    save_checkpoint(model, out, manifest)
    say = Reporter(args)
    if missing:
        say.err.print(f"[yellow]warning:[/] {escape(str(args.source))} has no {escape(' or '.join(missing))}: the "
                      f"{escape(tokenizer.name)} tokenizer's files, which the model needs; copy them into {escape(str(out))} "
                      "before using it", soft_wrap=True, highlight=False)
    shape = f"{cfg.n_layers} layers, d_model {cfg.d_model}, {cfg.n_heads} heads, d_mlp {cfg.d_mlp}, vocabulary {cfg.d_vocab}"
    say.summary(f"wrote {escape(str(out))} ({escape(shape)}, tokenizer {escape(tokenizer.name)})", soft_wrap=True)
    return 0
