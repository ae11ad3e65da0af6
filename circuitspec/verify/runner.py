"""Run a resolved spec: sample inputs, build the ablation conditions, run them batched, self-check.

Claims that share an ablation, `when` conditions and sample count share one batch of inputs and one
batched pass over all the conditions they need:

- ``full``: nothing ablated (the model itself)          - ``empty``: every node ablated
- ``circuit``: everything outside the circuit ablated   - ``complement``: only the circuit ablated
- one knockout per unit for ``minimal`` claims            - random same-size circuits (and their
  complements) for ``sufficient`` / ``necessary`` claims  - the circuit without its edge, per edge claim
- random partial ablations for ``sufficient`` claims: the circuit kept, and each node outside it kept
  present with probability p (the rest ablated), since effects outside a circuit can cancel only when
  all of them are ablated together.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..engine.ablation import (Ablation, MeanSums, Reference, plain_answer_logits, reference_hooks,
                               run_conditions_with_cache)
from ..engine.batch import TaskBatch, encode_for
from ..engine.errors import CircuitspecError
from ..engine.masks import Mask
from ..engine.metrics import METRICS
from ..engine.naming import resid_hook
from ..engine.paths import cut_edge
from ..engine.task_tokens import token_position
from ..engine.tasks import TaskExample, get_task
from ..engine.tokenizer import BYTES, Tokenizer
from ..lang.ast import PER_INPUT_KINDS
from ..lang.resolve import ResolvedClaim, ResolvedSpec
from ..stats import BASELINE_QUANTILE, baseline_looks, compare_to_baselines, faithfulness, stops_early
from .adversary import adversarial_parts
from .baselines import random_circuits
from .examples import sample_examples
from .pairs import partner_filter, partners_of


class SelfCheckError(CircuitspecError):
    """The engine contradicted itself: no verdict can be trusted (exit 3)."""

    exit_code = 3


@dataclass(frozen=True)
class RunSettings:
    seed: int = 0
    samples: int = 100  # inputs per claim group, unless the spec or claim says `samples N`
    baselines: int = 50  # random same-size circuits per sufficient/necessary claim group
    resamples: int = 1000  # bootstrap resamples
    reference_samples: int = 200  # inputs a task mean averages over, for every group (resample: at least the group's count)
    device: str = "cpu"
    partial_ablations: int = 8  # random partial ablations of the outside per sufficient claim group (0: no
    # partial ablations at all, random or chosen: every sufficient claim judged as `robustness none`)


# Share of the non-circuit nodes each random partial ablation keeps present, cycled over the conditions.
PARTIAL_KEEP_FRACTIONS = (0.25, 0.5, 0.75)


@dataclass
class GroupData:
    """Per-example metric values of every condition a claim group needs (numpy, [n] each)."""

    examples: list[TaskExample]
    metric: dict[str, np.ndarray] = field(default_factory=dict)  # condition name -> per-example metric
    baselines: list[np.ndarray] = field(default_factory=list)  # random circuits
    baseline_complements: list[np.ndarray] = field(default_factory=list)  # run in stages (see run_group)
    complements_planned: int = 0  # the baseline complements there would be had no look stopped them early
    knockouts: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)  # "node"/"edge" -> unit -> metric without it
    unneeded: dict[str, np.ndarray] = field(default_factory=dict)  # claim name -> metric of the model without its part
    edges: dict[str, np.ndarray] = field(default_factory=dict)  # claim name -> metric of the circuit without its edge
    partials: list[tuple[float, np.ndarray]] = field(default_factory=list)  # (keep fraction, metric), random partial ablations
    chosen: list[tuple[str, np.ndarray]] = field(default_factory=list)  # (what, metric), partial ablations chosen against the circuit
    circuit_logits: torch.Tensor | None = None  # [n, V] at the answer position
    empty_logits: torch.Tensor | None = None  # [n, V]: every node ablated (behaviour and agreement claims)
    activations: dict[str, torch.Tensor] = field(default_factory=dict)  # hook -> [n, T, *channels] (circuit run)
    model_logits: torch.Tensor | None = None  # [n, V]: the full model, for `in full model` and agreement claims
    model_activations: dict[str, torch.Tensor] = field(default_factory=dict)  # hook -> [n, T, *channels] (full model)
    tokenizer: Tokenizer = BYTES  # the model's: maps the examples' answers and named positions to tokens


#: Groups of per-input claims run the full model and the all-ablated one only for the self-check, on this
#: many of their inputs (the self-check compares the engine with a plain forward on the same rows).
SELF_CHECK_INPUTS = 64


@dataclass
class RunCache:
    """What the claim groups of one spec share instead of recomputing it (``verify_spec`` makes one per
    spec; ``run_group`` works without one). Everything here is fixed by its key:

    - references: a task mean's reference batch is drawn from the task and the seed alone, so groups with
      as many inputs share it (resampled references depend on the group's inputs and are not kept);
    - mean_sums: the per-position sums behind those means, per chunk of the reference stream
      (:data:`REFERENCE_CHUNK`): a group that needs more inputs runs only the chunks not summed yet;
    - full: the full model's logits on a batch, already checked against a plain forward (the
      self-check), for groups that run on the same inputs (same samples and ``when``, other ablations);
    - baselines: random same-size circuits, drawn from the graph, the size and the seed alone.
    """

    references: dict[tuple, Reference] = field(default_factory=dict)
    mean_sums: dict[tuple, dict[tuple[int, int], MeanSums]] = field(default_factory=dict)  # (task, seed, device) -> chunk -> sums
    full: dict[tuple, torch.Tensor] = field(default_factory=dict)
    baselines: dict[tuple, list[Mask]] = field(default_factory=dict)


def _batch_key(batch: TaskBatch) -> tuple:
    return (tuple(batch.tokens.shape), batch.tokens.cpu().numpy().tobytes(), batch.answer_pos.cpu().numpy().tobytes(),
            str(batch.tokens.device))


#: "on every input" is shown when no sampled input breaks the claim and the sample is large enough to
#: show, at the claim's confidence, that it breaks on fewer than this share of the task's inputs. At 95%
#: confidence that takes 598 clean inputs, and a claim that breaks on 1% of inputs then passes with
#: probability 0.99^598 = 0.25% (docs/verification.md, "Per-input claims").
EVERY_INPUT_RESOLUTION = 0.005


def per_input_target(claim: ResolvedClaim) -> float:
    """The share of inputs a role or behaviour claim must be shown to hold on: its ``on at least q of
    inputs``, or for ``on every input`` (the default) all but :data:`EVERY_INPUT_RESOLUTION`."""
    return claim.coverage if claim.coverage is not None else 1.0 - EVERY_INPUT_RESOLUTION


def per_input_samples(claim: ResolvedClaim) -> int:
    """The fewest inputs on which a claim holding on every one of them clears its target share at its
    confidence (one-sided Clopper-Pearson: ``target ** n <= 1 - confidence``)."""
    target = per_input_target(claim)
    if target <= 0:
        return 1
    return max(1, math.ceil(math.log(1 - claim.confidence) / math.log(target)))


def group_samples(resolved: ResolvedSpec, claims: list[ResolvedClaim], settings: RunSettings) -> int:
    """Inputs a claim group runs on: ``samples N`` when the claim or the spec states it; otherwise
    ``settings.samples``, raised for per-input claims to what their target share needs."""
    first = claims[0]
    stated = first.samples or resolved.spec.samples
    if stated:
        return stated
    needed = [per_input_samples(c) for c in claims if c.kind in PER_INPUT_KINDS]
    return max([settings.samples, *needed])


def group_key(claim: ResolvedClaim) -> tuple:
    """Claims with equal keys share one batch of inputs. Per-input claims run apart from faithfulness
    claims: they need more inputs (:func:`per_input_samples`) but only a few conditions."""
    per_input = claim.kind in PER_INPUT_KINDS
    return (claim.ablation, claim.ablation_task, claim.claim.conditions, claim.samples, claim.metric, per_input)


def minimal_units(resolved: ResolvedSpec, unit: str) -> dict[str, Mask]:
    """What a ``minimal each node|edge`` claim removes one at a time, as circuit masks without it.

    Nodes: each named definition (a ``node`` or a ``group`` as a whole); edges: each declared edge,
    ablated as an edge claim ablates it (:func:`~circuitspec.engine.paths.cut_edge`; an edge joined only
    through attention has nothing to ablate and is no unit). Residual channels that edges pulled in are
    not units of their own.
    """
    circuit = resolved.mask
    units: dict[str, Mask] = {}
    if unit == "node":
        for name, nodes in resolved.definitions.items():
            mask = circuit
            for node in nodes:
                mask = mask.without_node(node)
            units[name] = mask
    else:
        model = resolved.context.model
        for edge in resolved.edges:
            if edge.cut is not None and not edge.cut.empty(model):
                units[f"{edge.source} -> {edge.target}"] = cut_edge(circuit, edge.cut)
    return units


def without_part(claim: ResolvedClaim, space) -> Mask:
    """What an ``ablating PART keeps faithfulness`` claim runs: the whole model, every edge kept, but the part."""
    return Mask(space, (~Mask.from_nodes(space, claim.subject)).nodes, Mask.full(space).edges)


def complement(resolved: ResolvedSpec) -> Mask:
    """What a ``necessary`` claim runs: only the circuit ablated. For a node-level circuit its nodes, every
    weight kept; for an edge-level one (`circuit edges`) its edges, the weights it keeps between its nodes,
    every node kept."""
    circuit, space = resolved.mask, resolved.mask.space
    full = Mask.full(space)
    if not resolved.edge_level:
        return Mask(space, (~circuit).nodes, full.edges)
    between = circuit.induced()
    return Mask(space, full.nodes, {p: ~(t & circuit.edges[p]) for p, t in between.edges.items()})


def partial_ablations(circuit: Mask, count: int, seed: int,
                      fractions: Sequence[float] = PARTIAL_KEEP_FRACTIONS) -> list[tuple[float, Mask]]:
    """``count`` random partial ablations of everything outside ``circuit``, as (keep fraction p, mask).

    Every circuit node is kept; each non-circuit node is kept present independently with probability p
    (p cycling over ``fractions``), and the rest is ablated as usual; the circuit's edges are kept as they
    are. With p = 0 the mask is the circuit itself, with p = 1 the whole model. Seeded by ``seed`` alone
    (a stream of its own, not the falsifier's), so the same seed draws the same conditions.
    """
    generator = torch.Generator().manual_seed(random.Random(f"partial-ablations:{seed}").getrandbits(63))
    conditions = []
    for i in range(count):
        p = float(fractions[i % len(fractions)])
        nodes = {h: keep | (torch.rand(keep.shape, generator=generator) < p) for h, keep in circuit.nodes.items()}
        conditions.append((p, Mask(circuit.space, nodes, circuit.edges)))
    return conditions


def per_example_metric(name: str, logits: torch.Tensor, full: torch.Tensor, batch: TaskBatch) -> np.ndarray:
    """Per-example metric of one condition's answer logits [n, V]; ``kl`` is -KL(full || condition)."""
    if name == "kl":
        kl = F.kl_div(F.log_softmax(logits, -1), F.log_softmax(full, -1), log_target=True, reduction="none").sum(-1)
        return (-kl).cpu().numpy().astype(np.float64)
    return METRICS[name](logits, batch.correct, batch.wrong).cpu().numpy().astype(np.float64)


def make_reference(resolved: ResolvedSpec, ablation: Ablation, task_name: str | None, batch: TaskBatch,
                   settings: RunSettings, cache: RunCache | None = None,
                   examples: Sequence[TaskExample] | None = None) -> Reference:
    """What removed parts carry for ``batch``: zero; the mean (or resampled activations) of reference task
    inputs drawn with ``settings.seed``; for ``resample from corrupted(F)``, the activations of each input's
    own partner (``examples``: the inputs of ``batch``, in order), position by position; or, for ``mean over
    corpus``, the checkpoint's stored pretraining means (the same whatever the seed). Reference inputs run
    grouped by length (on a CPU). ``cache``: reuse a task mean (and the sums behind it) computed for another
    group of the spec, or of another spec of the model."""
    model = resolved.context.model
    lengths = batch.answer_pos + 1
    if ablation.corrupted is not None:
        if examples is None:
            raise ValueError("a corrupted-partner reference needs the batch's inputs")
        partners = partners_of(resolved.task, examples, ablation.corrupted, settings.seed, model.tokenizer)
        ref = encode_for(model, partners, resolved.task.name).to(batch.tokens.device)
        return Reference.compute(model, ablation, batch.tokens, lengths, ref.tokens, ref.answer_pos + 1)
    if ablation.source == "corpus":
        stored = resolved.context.corpus_reference()
        return Reference({h: v.to(batch.tokens.device) for h, v in stored.values.items()}, stored.ablation)
    if ablation.kind == "zero":
        return Reference.compute(model, ablation, batch.tokens, lengths)
    task = get_task(task_name or resolved.task.name)
    if ablation.kind != "mean":  # resampled: each input reads its own reference input, nothing to share
        count = max(settings.reference_samples, batch.tokens.shape[0])
        ref = encode_for(model, sample_examples(task, count, f"{settings.seed}:reference"), task.name).to(batch.tokens.device)
        return Reference.compute(model, ablation, batch.tokens, lengths, ref.tokens, ref.answer_pos + 1, by_length=True)
    # A task mean averages over the same reference_samples inputs for every group, whatever its size: each
    # claim of a spec (and `prove`'s certificate) is judged against the same ablation constants.
    count = settings.reference_samples
    key = (task.name, count, settings.seed, ablation, str(batch.tokens.device),
           batch.tokens.shape[1] if ablation.per_position else None)  # per-position means depend on the width
    if cache is not None and key in cache.references:
        return cache.references[key]
    chunks = cache.mean_sums.setdefault((task.name, settings.seed, str(batch.tokens.device)), {}) if cache is not None else {}
    sums = _reference_sums(model, task, count, settings.seed, batch.tokens.device, chunks)
    reference = Reference(sums.means(ablation, batch.tokens.shape[1]), ablation)
    if cache is not None:
        cache.references[key] = reference
    return reference


#: A task mean's reference inputs are summed in chunks of this many inputs of the reference stream, each
#: chunk once per model (kept in its RunCache) and added in stream order: means over 200 and then 1,000
#: inputs (``RunSettings.reference_samples``) run 1,000 reference inputs, not 1,200, and a mean over N
#: inputs is the same number to the last bit whichever means were computed before it.
REFERENCE_CHUNK = 200


def _reference_sums(model, task, count: int, seed: int, device, chunks: dict[tuple[int, int], MeanSums]) -> MeanSums:
    """Per-position sums over the first ``count`` inputs of ``task``'s reference stream for ``seed``."""
    total = MeanSums({}, torch.zeros(0, device=device))
    for start in range(0, count, REFERENCE_CHUNK):
        stop = min(start + REFERENCE_CHUNK, count)
        part = chunks.get((start, stop))
        if part is None:
            ref = encode_for(model, sample_examples(task, stop, f"{seed}:reference")[start:], task.name).to(device)
            part = chunks[(start, stop)] = MeanSums.of(model, reference_hooks(model), ref.tokens, ref.answer_pos + 1)
        total = total.plus(part)
    return total


def run_group(resolved: ResolvedSpec, claims: list[ResolvedClaim], settings: RunSettings,
              advance: Callable[[], None] = lambda: None, cache: RunCache | None = None) -> GroupData:
    """Sample the group's inputs, run every condition its claims need, self-check, and return the
    per-example metrics. Conditions: the full model and the all-ablated one (the self-check, and the
    denominator of faithfulness); the circuit; its complement (necessary claims); random same-size
    circuits and their complements (sufficient / necessary); random partial ablations (sufficient);
    knockouts (minimal). Per-input claims (role, behaviour) read only the circuit run (or the full
    model's, ``in full model``): their groups run the circuit on every input, and the full model and the
    all-ablated one for the self-check on the first :data:`SELF_CHECK_INPUTS` inputs only (on every
    input when a claim reads the full model); their ``metric`` is left empty.
    ``cache``: what groups of one spec share (:class:`RunCache`)."""
    first = claims[0]
    model = resolved.context.model
    n = group_samples(resolved, claims, settings)
    examples = sample_examples(resolved.task, n, settings.seed, first.claim.conditions,
                               keep=partner_filter(resolved.task, first.ablation, settings.seed, resolved.context.model.tokenizer))
    data = GroupData(examples, tokenizer=model.tokenizer)
    if not examples:
        return data
    batch = encode_for(model, examples, resolved.task.name).to(settings.device)
    reference = make_reference(resolved, first.ablation, first.ablation_task, batch, settings, cache, examples)
    space = resolved.mask.space
    full, circuit = Mask.full(space), resolved.mask
    empty = Mask(space, Mask.empty(space).nodes, full.edges)
    kinds = {c.kind for c in claims}
    # the circuit (or the model) runs on its own when role claims need its activations, so it runs only once
    hooks = sorted({node.hook for c in claims if c.kind == "role" and not c.in_model for node in c.subject})
    model_hooks = sorted({node.hook for c in claims if c.kind == "role" and c.in_model for node in c.subject})

    def run(conditions: list[Mask], capture: Sequence[str] = (), on: TaskBatch = batch, ref: Reference = reference):
        return run_conditions_with_cache(model, on.tokens, conditions, ref, on.answer_pos, capture, by_length=True)

    if kinds <= set(PER_INPUT_KINDS) and not any(c.in_model for c in claims):
        # Per-input claims read the circuit run alone (agreement claims the full model's too): the full
        # model and the all-ablated one are run for the self-check, on the first SELF_CHECK_INPUTS inputs.
        if hooks:
            logits, captured = run([circuit], hooks)
            data.activations = {h: a[0] for h, a in captured.items()}
        else:
            logits, _ = run([circuit])
        data.circuit_logits = logits[0]
        if kinds & {"behaviour", "agreement"}:  # would the claim hold with nothing kept? (cheap: no node computed)
            data.empty_logits = run([empty])[0][0]
        if "agreement" in kinds:
            whole_key = _batch_key(batch)
            data.model_logits = cache.full.get(whole_key) if cache is not None else None
            if data.model_logits is None:
                data.model_logits = plain_answer_logits(model, batch.tokens, batch.answer_pos, by_length=True)
                if cache is not None:
                    cache.full[whole_key] = data.model_logits
        advance()
        rows = torch.arange(min(SELF_CHECK_INPUTS, len(examples)), device=batch.tokens.device)
        part = TaskBatch(batch.tokens[rows], batch.answer_pos[rows], batch.correct[rows], batch.wrong[rows])
        part_reference = reference.select(rows, batch.tokens.shape[1])
        key = _batch_key(part)
        known_full = cache.full.get(key) if cache is not None else None
        conditions = {"full": full, "empty": empty}
        if resolved.mask == full:  # the only self-check that reads the circuit's run
            conditions["circuit"] = circuit
        if known_full is not None:
            del conditions["full"]
        by_name = dict(zip(conditions, run(list(conditions.values()), on=part, ref=part_reference)[0]))
        if known_full is not None:
            by_name["full"] = known_full
        self_check(resolved, part, part_reference, by_name, plain=known_full)
        if cache is not None:
            cache.full[key] = by_name["full"]
        return data
    masks: dict[str, Mask] = {"full": full, "empty": empty, "circuit": circuit}
    if "necessary" in kinds:
        masks["complement"] = complement(resolved)
    baselines = []
    if kinds & {"sufficient", "necessary"}:
        baselines = _random_circuits(resolved, space, circuit.node_count(), settings, cache)
    staged: list[Mask] = []  # baseline complements: full forwards, run in stages after the rest
    for i, b in enumerate(baselines):
        if "sufficient" in kinds:
            masks[f"baseline:{i}"] = b
        if "necessary" in kinds:
            staged.append(Mask(space, (~b).nodes, full.edges))
    data.complements_planned = len(staged)
    keep_fractions: dict[str, float] = {}
    chosen: dict[str, str] = {}
    robustness = {c.robustness for c in claims if c.kind == "sufficient"} if settings.partial_ablations else set()
    if robustness - {"none"}:  # near-full masks: the full masked path, one forward each (on a CPU)
        for i, (p, mask) in enumerate(partial_ablations(circuit, settings.partial_ablations, settings.seed)):
            masks[f"partial:{i}"] = mask
            keep_fractions[str(i)] = p
    if "adversarial" in robustness:
        with torch.enable_grad():
            parts = adversarial_parts(model, circuit, batch, reference)
        for i, (what, mask) in enumerate(parts.items()):
            masks[f"chosen:{i}"] = mask
            chosen[str(i)] = what
    for claim in claims:
        if claim.kind == "minimal":  # `each node` and `each edge` in one group keep their units apart
            kind = claim.claim.body.unit
            for unit, mask in minimal_units(resolved, kind).items():
                masks[f"knockout:{kind}:{unit}"] = mask
        elif claim.kind == "unneeded":  # the whole model but the part
            masks[f"unneeded:{claim.claim.name}"] = without_part(claim, space)
        elif claim.kind == "edge":  # the circuit but the edge
            masks[f"edge:{claim.claim.name}"] = cut_edge(circuit, claim.edge)
    # The full model does not depend on the ablation: a group on the inputs of another group of the spec
    # reuses its logits, which that group's self-check compared with a plain forward.
    key = _batch_key(batch)
    known_full = cache.full.get(key) if cache is not None else None
    if hooks:
        circuit_logits, captured = run([masks.pop("circuit")], hooks)
        data.activations = {h: a[0] for h, a in captured.items()}
    if model_hooks:
        model_logits, captured = run([masks.pop("full")], model_hooks)
        data.model_activations = {h: a[0] for h, a in captured.items()}
    elif known_full is not None:
        del masks["full"]
    names = list(masks)
    logits, _ = run([masks[k] for k in names])
    advance()
    by_name = dict(zip(names, logits))
    if hooks:
        by_name["circuit"] = circuit_logits[0]
    if model_hooks:
        by_name["full"] = model_logits[0]
    elif known_full is not None:
        by_name["full"] = known_full
    # the full model's run that captured activations computed its last block at every position: checked
    # against a plain pass that does the same, not against logits computed at the answer alone
    self_check(resolved, batch, reference, by_name, plain=None if model_hooks else known_full,
               whole_pass=bool(model_hooks))
    if cache is not None:
        cache.full[key] = by_name["full"]
    full_logits = by_name["full"]
    listed = ["full", "empty", "circuit", "complement"]  # the first conditions, in this order, as always
    for name in sorted(by_name, key=lambda k: listed.index(k) if k in listed else len(listed)):
        value = per_example_metric(first.metric, by_name[name], full_logits, batch)
        kind, _, unit = name.partition(":")
        if kind == "baseline":
            data.baselines.append(value)
        elif kind == "knockout":
            unit_kind, _, unit = unit.partition(":")
            data.knockouts.setdefault(unit_kind, {})[unit] = value
        elif kind == "partial":
            data.partials.append((keep_fractions[unit], value))
        elif kind == "chosen":
            data.chosen.append((chosen[unit], value))
        elif kind == "unneeded":
            data.unneeded[unit] = value
        elif kind == "edge":
            data.edges[unit] = value
        else:
            data.metric[name] = value
    if staged:
        _run_staged_complements(data, staged, [c for c in claims if c.kind == "necessary"],
                                lambda part: [per_example_metric(first.metric, logits, full_logits, batch)
                                              for logits in run(part)[0]])
    data.circuit_logits = by_name["circuit"]
    data.empty_logits = by_name["empty"]
    data.model_logits = full_logits
    return data


def _run_staged_complements(data: GroupData, staged: list[Mask], necessary: list[ResolvedClaim],
                            metrics: Callable[[list[Mask]], list[np.ndarray]]) -> None:
    """Run the complements of the random baseline circuits in the stages of
    :func:`~..stats.baseline_schedule`, stopping at a look where every necessity claim of the group already
    beats them at that look's level (:func:`~..stats.stops_early`; the judge reads the same counts). Each is
    a full forward of the model, nearly the whole cost of a necessity claim; one that clearly hurts more
    than random circuits when ablated needs 6 of them at the defaults, not 50."""
    estimate = faithfulness(data.metric["complement"], data.metric["full"], data.metric["empty"])
    # claims of other confidences have other looks: stop only at a look of every one's schedule where
    # every one's test passes, so that each is judged at a look of its own (the judge's look_alpha)
    alphas = sorted({1 - c.confidence for c in necessary})
    planned = len(staged)
    start = 0
    for look in sorted({ran for alpha in alphas for ran in baseline_looks(planned, alpha)}):
        data.baseline_complements.extend(metrics(staged[start:look]))
        start = look
        pool = [faithfulness(b, data.metric["full"], data.metric["empty"]) for b in data.baseline_complements]
        comparison = compare_to_baselines(estimate, pool, higher_is_better=False,
                                          quantile=BASELINE_QUANTILE["necessary"])
        if all(stops_early(comparison, look, planned, alpha) for alpha in alphas):
            return


def _random_circuits(resolved: ResolvedSpec, space, size: int, settings: RunSettings,
                     cache: RunCache | None) -> list[Mask]:
    key = (size, settings.baselines, settings.seed)
    if cache is not None and key in cache.baselines:
        return cache.baselines[key]
    circuits = random_circuits(resolved.context.model, space, size, settings.baselines, settings.seed)
    if cache is not None:
        cache.baselines[key] = circuits
    return circuits


def self_check(resolved: ResolvedSpec, batch: TaskBatch, reference: Reference, logits: dict[str, torch.Tensor],
               plain: torch.Tensor | None = None, whole_pass: bool = False) -> None:
    """Cheap checks on every run; any failure means the engine, not the circuit, is wrong.

    ``plain``: the unablated model's logits on this batch when a group of the same spec already compared
    them with a plain forward; otherwise that forward runs here, on the row groups the conditions ran on
    (:func:`~circuitspec.engine.ablation.plain_answer_logits`; ``whole_pass``: with the last block at every
    position, as the full model's run that captured activations for an `in full model` claim did)."""
    model = resolved.context.model
    if plain is None:
        plain = plain_answer_logits(model, batch.tokens, batch.answer_pos, by_length=True, whole_pass=whole_pass)
    # Exact on CPU; on a GPU, batch shapes change which kernels run, so allow float32 rounding there.
    same = (torch.equal(logits["full"], plain) if plain.device.type == "cpu"
            else torch.allclose(logits["full"], plain, rtol=1e-4, atol=1e-4))
    if not same:
        raise SelfCheckError("self-check failed: the unablated condition does not reproduce the model exactly",
                             hint="this is a bug in circuitspec's ablation engine; please report it")
    # With every node ablated the final residual stream is the reference itself: compute the logits
    # from it directly, without the hook machinery, and compare (at the answer positions only).
    B = batch.tokens.shape[0]
    rows = torch.arange(B, device=batch.tokens.device)
    final = reference.value(resid_hook(model.cfg.n_layers, model.cfg.n_layers))
    if final.dim() == 1:
        final = final.expand(B, -1)
    elif final.dim() == 2:
        final = final[batch.answer_pos]
    else:
        final = final[rows, batch.answer_pos]
    with torch.no_grad():
        direct = model.unembed_resid(final, batch.tokens[rows, batch.answer_pos])
    if not torch.allclose(logits["empty"], direct, atol=1e-4, rtol=1e-4):
        raise SelfCheckError("self-check failed: ablating every node does not give the all-ablated reference output",
                             hint="this is a bug in circuitspec's ablation engine; please report it")
    if resolved.mask == Mask.full(resolved.mask.space) and not torch.equal(logits["circuit"], logits["full"]):
        raise SelfCheckError("self-check failed: a circuit of the whole model differs from the model")


def activation_at(data: GroupData, node, position: str, in_model: bool = False) -> np.ndarray:
    """Per-example activation of one node at a named task position (circuit run, or the full model's): at
    the token that holds the position's character."""
    act = (data.model_activations if in_model else data.activations)[node.hook]
    pos = torch.tensor([token_position(ex, position, data.tokenizer) for ex in data.examples], device=act.device)
    rows = act[torch.arange(act.shape[0], device=act.device), pos]
    value = rows[:, node.head, node.index] if node.head is not None else rows[:, node.index]
    return value.cpu().numpy().astype(np.float64)

