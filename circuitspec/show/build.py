"""From a resolved spec to a :class:`~.picture.Picture`: boxes, their activations, and the links to draw."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable

from ..engine.batch import encode_for
from ..lang.resolve import ResolvedSpec
from .activations import choose_feature, measure, sample
from .edges import declared_links, select_weight_links, structural_links, weight_links
from .picture import Picture, Unit
from .units import UnitBuilder, columns


@dataclass(frozen=True)
class ShowOptions:
    samples: int = 200  # task inputs the activation summaries are measured on
    seed: int = 0
    split: str | None = None  # a task feature, "none", or None: chosen from the spec's claims
    max_edges: int = 120  # weight connections drawn at most
    expand: int = 8  # clusters of at most this many channels get one box per channel
    device: str = "cpu"


def build_picture(resolved: ResolvedSpec, options: ShowOptions = ShowOptions(),
                  progress: Callable[[str], None] = lambda message: None) -> Picture:
    examples = sample(resolved.task, options.samples, options.seed)
    answers = encode_for(resolved.context.model, examples, resolved.task.name)  # the answers' ids, checked
    answer_tokens = sorted(set(answers.correct.tolist()) | set(answers.wrong.tolist()))
    builder = UnitBuilder(resolved, answer_tokens, options.expand)
    units, nodes = builder.build()

    progress(f"running the model on {len(examples)} {resolved.task.name} inputs")
    feature = choose_feature(resolved, options.split)
    measured = [n for n in nodes if n.hook not in ("hook_tokens", "hook_positions")]
    acts = measure(resolved, examples, measured, options.seed, feature, options.device,
                   explicit_feature=options.split is not None)
    units = [replace(u, stats=acts.unit_stats(u.members)) if u.kind not in ("tokens", "positions") else u for u in units]

    progress("measuring connections")
    node_unit = {str(m): u.id for u in units for m in u.members}
    graph = resolved.context.graph
    all_weights = weight_links(graph, units, node_unit, resolved.mask.edges if resolved.edge_level else None)
    drawn = select_weight_links(all_weights, options.max_edges)
    links = (structural_links(graph, units, node_unit) + drawn
             + declared_links(resolved, builder.member_nodes, node_unit))
    units, cols = _drop_empty_columns(units, columns(resolved.context.cfg.n_layers))

    if len(drawn) < len(all_weights):
        edge_note = (f"showing the {len(drawn)} strongest of {len(all_weights):,} weight connections between boxes "
                     f"(each box keeps its strongest in and out); --max-edges changes this")
    elif all_weights:
        edge_note = f"all {len(all_weights):,} weight connections between boxes"
    else:
        edge_note = "no weights connect these boxes directly"
    circuit_units = [u for u in units if u.kind not in ("tokens", "positions", "logits")]
    collapsed = sum(u.collapsed for u in circuit_units)
    facts = (
        f"model {resolved.spec.model} · task {resolved.task.name} · ablate {resolved.spec.ablation}"
        if resolved.spec.ablation else f"model {resolved.spec.model} · task {resolved.task.name}",
        f"{len(resolved.nodes):,} circuit nodes in {len(circuit_units)} boxes"
        + (f" ({collapsed} collapsed groups of more than {options.expand} channels)" if collapsed else "")
        + f" · {len(resolved.edges)} declared edges · {len(resolved.claims)} claims",
    )
    return Picture(resolved.spec.name or resolved.file, resolved.spec.description, facts, tuple(cols), tuple(units),
                   tuple(links), edge_note, acts.split)


def _drop_empty_columns(units: list[Unit], cols: list) -> tuple[list[Unit], list]:
    used = sorted({u.column for u in units})
    remap = {old: new for new, old in enumerate(used)}
    return [replace(u, column=remap[u.column]) for u in units], [cols[i] for i in used]
