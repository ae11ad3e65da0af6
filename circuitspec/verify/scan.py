"""A knockout scan: ablate one part of the model at a time (each head, each MLP layer, or each channel of
one hook), everything else kept, and measure what is left of the task behaviour.

This is where a hand-written spec starts when discovery keeps too much of the model to read: the parts
whose knockout hurts most are the candidates for a ``necessary`` claim. Each knockout is set next to
knockouts of random same-size circuits (the baselines a ``necessary`` claim is judged against), since on
some tasks ablating almost any few hundred channels hurts. The units are written as ``.circ`` groups and
resolved by the spec resolver, so a unit's name and selector can be pasted into a spec, and the
ablation constants are the ones ``verify`` uses for the same task, seed and ablation.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, replace
from typing import Callable

import torch

from ..engine.ablation import run_conditions_with_cache
from ..engine.batch import encode_for
from ..engine.errors import UsageError
from ..engine.masks import Mask, MaskSpace
from ..lang.ast import quote
from ..lang.diagnostics import render_all
from ..lang.parser import parse_spec
from ..lang.resolve import ResolvedSpec, load_context, resolve
from ..stats import faithfulness, faithfulness_interval
from .baselines import random_circuits
from .examples import sample_examples
from .runner import RunCache, RunSettings, make_reference, per_example_metric, self_check, without_part

#: Conditions per batched forward call: each is a full masked forward, so this only bounds memory and
#: lets the progress bar move.
CHUNK = 8
#: The most units one scan runs (each a condition): a layer wider than this is scanned in chunks.
MAX_UNITS = 4096

_LAYER = re.compile(r"^(?P<hook>[A-Za-z_][\w.]*)(\[\s*head\s*=\s*(?P<head>\d+)\s*\])?$")


@dataclass(frozen=True)
class ScanUnit:
    """One part to knock out: a spec group name and the selector that defines it."""

    name: str
    selector: str


@dataclass(frozen=True)
class UnitResult:
    name: str
    selector: str
    nodes: int
    faithfulness: float  # the model with only this unit ablated
    ci: tuple[float, float]
    random_as_low: int  # random same-size circuits whose knockout leaves as little or less
    random_count: int


@dataclass(frozen=True)
class ScanResult:
    model: str
    task: str
    ablation: str
    samples: int
    seed: int
    units: list[UnitResult]  # lowest faithfulness first
    random: dict[int, list[float]]  # unit size -> faithfulness of each random same-size knockout


def head_and_mlp_units(space: MaskSpace, which: str = "all") -> list[ScanUnit]:
    """Every attention head (its q, k, v and z channels together) and every MLP layer (all its neurons);
    ``which``: "heads", "mlps", "all", or "parts" (each head's q, k, v and z channels as four units, and
    every MLP layer)."""
    units = []
    for layer in range(space.n_layers):
        attn = f"blocks.{layer}.attn"
        n_heads = space.node_shapes[f"{attn}.hook_q"][0]
        for head in range(n_heads):
            if which in ("heads", "all"):
                parts = ", ".join(f"{attn}.hook_{kind}[head={head}, *]" for kind in "qkvz")
                units.append(ScanUnit(f"b{layer}_head{head}", "{" + parts + "}"))
            elif which == "parts":
                units += [ScanUnit(f"b{layer}_head{head}_{kind}", f"{attn}.hook_{kind}[head={head}, *]") for kind in "qkvz"]
        if which in ("mlps", "all", "parts"):
            units.append(ScanUnit(f"b{layer}_mlp", f"blocks.{layer}.mlp.hook_post[*]"))
    return units


def channel_units(space: MaskSpace, layer: str, chunk: int = 1) -> list[ScanUnit]:
    """The channels of one hook, ``chunk`` consecutive ones per unit: ``blocks.1.mlp.hook_post`` (each
    neuron), ``blocks.0.hook_resid_mid`` (each residual channel) or ``blocks.0.attn.hook_z[head=6]`` (each
    channel of one head)."""
    match = _LAYER.match(layer.strip())
    hook = match.group("hook") if match else layer
    hints = ", ".join(sorted(space.node_shapes)[:3])
    if match is None or hook not in space.node_shapes:
        raise UsageError(f"--layer {layer!r}: not a hook with channels of this model",
                         hint=f"name one hook, e.g. blocks.0.mlp.hook_post or blocks.0.attn.hook_z[head=0] ({hints}, ...)")
    shape = space.node_shapes[hook]
    head = match.group("head")
    if len(shape) == 2 and head is None:
        raise UsageError(f"--layer {layer!r}: an attention hook has channels per head",
                         hint=f"name the head: {hook}[head=0]")
    if len(shape) == 1 and head is not None:
        raise UsageError(f"--layer {layer!r}: {hook} has no heads", hint=f"drop [head={head}]")
    if head is not None and int(head) >= shape[0]:
        raise UsageError(f"--layer {layer!r}: the model has {shape[0]} heads", hint=f"heads are 0 to {shape[0] - 1}")
    width = shape[-1]
    prefix = f"head={head}, " if head is not None else ""
    short = hook.replace("blocks.", "b").replace(".attn.hook_", "_").replace(".mlp.hook_", "_").replace(".hook_", "_")
    short += f"_head{head}" if head is not None else ""
    units = []
    for start in range(0, width, chunk):
        stop = min(start + chunk, width)
        index = str(start) if stop == start + 1 else f"{start}:{stop}"
        units.append(ScanUnit(f"{short}_{index.replace(':', '_')}", f"{hook}[{prefix}{index}]"))
    return units


def scan_spec_text(model_ref: str, task: str, ablation: str, units: list[ScanUnit]) -> str:
    """A spec naming each unit as a group, with one ``ablating UNIT keeps faithfulness >= 0`` claim each:
    resolving it gives every unit's channels and the ablation, as a spec a user writes would."""
    lines = ["spec knockout_scan", f"model {quote(model_ref)}", f"task {task}", f"ablate {ablation}", ""]
    lines += [f"group {u.name} = {u.selector}" for u in units]
    lines.append("")
    lines += [f"claim {u.name}_knockout: ablating {u.name} keeps faithfulness >= 0" for u in units]
    return "\n".join(lines) + "\n"


#: Units per generated spec: two statements each, so a spec stays inside the language's 1,000-statement
#: limit (a layer of 1,024 neurons is four specs).
SPEC_UNITS = 400


def resolve_scan(model_ref: str, task: str, ablation: str, units: list[ScanUnit]) -> list[ResolvedSpec]:
    """:func:`scan_spec_text` of ``units``, :data:`SPEC_UNITS` at a time, each resolved against the model."""
    specs = []
    for start in range(0, len(units), SPEC_UNITS):
        text = scan_spec_text(model_ref, task, ablation, units[start:start + SPEC_UNITS])
        name = "<knockout scan>.circ"
        parsed = parse_spec(text, name)
        diagnostics = list(parsed.diagnostics)
        resolved = None
        if parsed.ok and parsed.spec is not None:
            resolved, more = resolve(parsed.spec, name)
            diagnostics += more
        errors = [d for d in diagnostics if d.is_error]
        if resolved is None or errors:  # the units are generated from the model's own hooks: shown in full
            raise UsageError("the scan's units did not resolve:\n" + render_all(errors or diagnostics, {name: text}))
        specs.append(resolved)
    return specs


def run_scan(specs: list[ResolvedSpec], units: list[ScanUnit], ablation: str, settings: RunSettings,
             random_count: int = 10, progress: Callable[[int, int], None] = lambda done, total: None) -> ScanResult:
    """Knock out each unit (``specs`` are :func:`resolve_scan`'s of ``units``) on ``settings.samples`` task
    inputs, with random same-size circuits knocked out as baselines; self-checked as ``verify`` is."""
    resolved = specs[0]
    model, space, task = resolved.context.model, resolved.mask.space, resolved.task
    claims = [claim for spec in specs for claim in spec.claims]
    by_claim = {f"{u.name}_knockout": u for u in units}
    first = claims[0]
    examples = sample_examples(task, settings.samples, settings.seed)
    batch = encode_for(model, examples, task.name).to(settings.device)
    reference = make_reference(resolved, first.ablation, first.ablation_task, batch, settings, RunCache(), examples)
    full = Mask.full(space)
    masks: dict[str, Mask] = {"full": full, "empty": Mask(space, Mask.empty(space).nodes, full.edges)}
    sizes = {}
    for claim in claims:
        masks[f"unit:{claim.claim.name}"] = without_part(claim, space)
        sizes[claim.claim.name] = len(set(claim.subject))
    for size in sorted(set(sizes.values())):
        for i, circuit in enumerate(random_circuits(model, space, size, random_count, settings.seed)):
            masks[f"random:{size}:{i}"] = Mask(space, (~circuit).nodes, full.edges)
    names = list(masks)
    logits: dict[str, torch.Tensor] = {}
    progress(0, len(names))
    for start in range(0, len(names), CHUNK):
        part = names[start:start + CHUNK]
        out, _ = run_conditions_with_cache(model, batch.tokens, [masks[k] for k in part], reference, batch.answer_pos,
                                           (), by_length=True)
        logits.update(zip(part, out))
        progress(min(start + CHUNK, len(names)), len(names))
    self_check(resolved, batch, reference, logits)
    metric = {k: per_example_metric(first.metric, v, logits["full"], batch) for k, v in logits.items()}
    m_full, m_empty = metric["full"], metric["empty"]
    random: dict[int, list[float]] = {}
    for key, values in metric.items():
        if key.startswith("random:"):
            random.setdefault(int(key.split(":")[1]), []).append(faithfulness(values, m_full, m_empty))
    results = []
    for claim in claims:
        name = claim.claim.name
        m = metric[f"unit:{name}"]
        f = faithfulness(m, m_full, m_empty)
        interval = faithfulness_interval(m, m_full, m_empty, first.confidence, settings.resamples, settings.seed)
        pool = random.get(sizes[name], [])
        unit = by_claim[name]
        results.append(UnitResult(unit.name, unit.selector, sizes[name], f, (interval.low, interval.high),
                                  sum(r <= f for r in pool), len(pool)))
    results.sort(key=lambda r: (math.isnan(r.faithfulness), r.faithfulness))  # undefined F (no behaviour to lose) last
    return ScanResult(resolved.context.ref, task.name, ablation, len(examples), settings.seed, results, random)


def knockout_scan(model_ref: str, task: str, ablation: str, settings: RunSettings, random_count: int = 10, *,
                  which: str = "all", layer: str | None = None, chunk: int = 1,
                  progress: Callable[[int, int], None] = lambda done, total: None) -> ScanResult:
    """The whole scan, as ``circuitspec scan`` and the notebook's ``scan`` run it: the model (a shipped name
    or a checkpoint folder) loaded once, the units (:func:`channel_units` of ``layer`` when given, else
    :func:`head_and_mlp_units` of ``which``) resolved as a spec against it, run on ``settings.device``;
    the result names the model as ``model_ref`` says it."""
    context = load_context(model_ref)
    units = channel_units(context.space, layer, chunk) if layer else head_and_mlp_units(context.space, which)
    if len(units) > MAX_UNITS:
        raise UsageError(f"{len(units)} units: more than a scan runs ({MAX_UNITS})",
                         hint="group channels: --chunk K (chunk=K in Python)")
    specs = resolve_scan(str(context.path), task, ablation, units)  # the checkpoint already loaded
    specs[0].context.model.to(settings.device)
    return replace(run_scan(specs, units, ablation, settings, random_count, progress), model=model_ref)
