"""Draw a spec's resolved circuit as a layered picture: a self-contained HTML page, or an SVG file.

Columns follow the forward pass (inputs, then per block resid_pre, attention q/k/v, z, resid_mid, MLP
neurons, then the final residual stream and the logits); boxes are the circuit's channels, big groups
collapsed into one box with a count; wires are the model's weights between them, the spec's declared
edges and the residual stream. Each box shows its spec names, description and its activation on a
seeded sample of the task. See docs/show.md.

Exit 0 when the picture was written, 2 on a spec or usage error, 3 when the model cannot be read.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rich.markup import escape

from ..engine.errors import UsageError
from . import defaults
from .argtypes import MAX_SAMPLES, non_negative_int, positive_int, seed
from .common import add_device_argument, resolve_device
from .outputs import check_output_file, save_output
from .paths import circ_files
from .reporting import Reporter

NAME, HELP = "show", "draw a spec's circuit as a picture (self-contained HTML or SVG)"
FORMATS = {".html": "html", ".htm": "html", ".svg": "svg"}
MAX_DRAWN = 100_000  # --max-edges, --expand: far beyond what a picture can show


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("path", metavar="SPEC", help="a .circ spec file")
    p.add_argument("-o", "--output", metavar="FILE", type=Path,
                   help="where to write: FILE.html (a page with the picture) or FILE.svg; default SPEC's name + .html")
    p.add_argument("--svg", metavar="FILE", type=Path, help="also write the picture as an SVG file")
    p.add_argument("--samples", type=positive_int(MAX_SAMPLES), default=defaults.SHOW_SAMPLES, metavar="N",
                   help=f"task inputs the activations are measured on (default {defaults.SHOW_SAMPLES})")
    p.add_argument("--seed", type=seed,
                   help=f"seed for those inputs (default: [tool.circuitspec] seed, else {defaults.SHOW_SEED})")
    p.add_argument("--split", metavar="FEATURE",
                   help="task feature to split activations by (default: the one the spec's claims condition on "
                        "most, else the task's first; 'none' for no split)")
    p.add_argument("--max-edges", type=non_negative_int(MAX_DRAWN), default=defaults.SHOW_MAX_EDGES, metavar="N",
                   help=f"draw at most N weight connections, the strongest (default {defaults.SHOW_MAX_EDGES})")
    p.add_argument("--expand", type=positive_int(MAX_DRAWN), default=defaults.SHOW_EXPAND, metavar="N",
                   help=f"draw groups of at most N channels channel by channel; larger ones as one box (default {defaults.SHOW_EXPAND})")
    add_device_argument(p)


def _outputs(args: argparse.Namespace, spec: Path) -> list[tuple[Path, str]]:
    output = args.output or Path(spec.stem + ".html")
    targets = [(output, FORMATS.get(output.suffix.lower()))]
    if args.svg is not None:
        targets.append((args.svg, "svg"))
    for path, fmt in targets:
        if fmt is None:
            raise UsageError(f"{path}: unknown output format {path.suffix or '(no extension)'!r}",
                             hint="name the output FILE.html or FILE.svg")
        check_output_file(path)
    return targets


def run(args: argparse.Namespace) -> int:
    from ..lang.diagnostics import render_all
    from ..lang.parser import parse_spec_or_library
    from ..show import ShowOptions, build_picture, lay_out, render_html, render_svg
    from .specs import resolve_specs

    files = circ_files([args.path])
    if len(files) != 1:
        raise UsageError(f"{args.path} holds {len(files)} specs; show draws one", hint="name one .circ file")
    spec_path = files[0]
    targets = _outputs(args, spec_path)
    parsed, is_library = parse_spec_or_library(spec_path)
    if is_library:
        if parsed.diagnostics:
            sys.stderr.write(render_all(parsed.diagnostics, parsed.sources))
            return 2
        raise UsageError(f"{spec_path} is an include-only library: it names no model to draw against",
                         hint="show a spec that includes it")
    device = resolve_device(args.device)
    report = Reporter(args)
    resolved_specs, exit_code = resolve_specs([str(spec_path)])
    if not resolved_specs:
        return exit_code or 2
    resolved = resolved_specs[0]
    resolved.context.model.to(device)
    sample_seed = defaults.SHOW_SEED if args.seed is None else args.seed
    options = ShowOptions(samples=args.samples, seed=sample_seed, split=args.split, max_edges=args.max_edges, expand=args.expand,
                          device=device)
    with report.status(f"drawing {spec_path.name}") as status:
        picture = build_picture(resolved, options, progress=lambda message: status.update(f"{spec_path.name}: {message}"))
        status.update(f"{spec_path.name}: laying out {len(picture.units)} boxes")
        layout = lay_out(picture)
        written = [path for path, fmt in targets
                   if save_output(path, render_html(layout) if fmt == "html" else render_svg(layout), "the picture")]
    wires = sum(link.kind == "weight" for link in picture.links)
    boxes = sum(u.kind not in ("tokens", "positions", "logits") for u in picture.units)
    for path in written:
        report.summary(escape(f"wrote {path}: {len(resolved.nodes):,} circuit nodes in {boxes} boxes, "
                              f"{wires} weight connections drawn"), soft_wrap=True)
    return exit_code if len(written) == len(targets) else max(exit_code, 2)
