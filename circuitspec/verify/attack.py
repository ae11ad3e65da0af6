"""Attack aggregate claims over ablation choices, not inputs.

A circuit can look sufficient only because everything else is ablated at once, effects cancelling out.
If the explanation is right, the rest of the model should not matter however much of it is ablated:
keeping the circuit and ablating only *part* of the rest should still reach the threshold. The attack
tries structured parts (each attention head, each MLP layer, each residual boundary), random subsets
and adversarially chosen subsets of the non-circuit nodes, plus other reference inputs for
mean/resample ablation over a task (``mean over corpus`` uses the checkpoint's stored means, which no
choice of inputs changes), and reports the worst. The adversarial subsets come from a first-order
estimate (one backward pass at the circuit alone, one at the full model) of how much each non-circuit
node's presence moves the logit difference: keep only the nodes whose presence hurts most, or ablate
only those that help most, at a few sizes; each choice is then judged with the real ablated forward.
Necessity is attacked over reference inputs: it must hold whichever inputs the means or resamples come
from. Minimality is re-judged on other inputs and references: every unit must still matter.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch

from ..engine.ablation import Reference, run_conditions
from ..engine.batch import TaskBatch, answer_logits, encode_examples
from ..engine.discover import _frozen  # gradients to the gates only; the model's own flags restored
from ..engine.masks import Mask
from ..engine.metrics import logit_diff
from ..engine.model import Transformer
from ..engine.naming import NodeName, is_per_head
from ..lang.resolve import ResolvedClaim, ResolvedSpec
from ..stats import faithfulness_interval, verdict_at_least, verdict_at_most
from .examples import sample_examples
from .judge import judge
from .runner import RunSettings, make_reference, per_example_metric, run_group


@dataclass
class AttackOutcome:
    worst: float  # the faithfulness furthest on the wrong side of the threshold
    interval: tuple[float, float]
    what: str  # which ablation choice produced it
    tried: int
    broken: bool
    inconclusive: bool = False  # not broken, but this choice's interval straddles the threshold
    as_stated: float = float("nan")  # F of the claim's own condition (its reference inputs, nothing else changed)
    as_stated_broken: bool = False  # the claim fails even there: no attack was needed


def _structured_parts(resolved: ResolvedSpec) -> dict[str, Mask]:
    """Each component's non-circuit channels, as "ablate only these" masks."""
    space, circuit = resolved.mask.space, resolved.mask
    parts = {}
    for hook, shape in space.node_shapes.items():
        outside = ~circuit.nodes[hook]
        groups = ({f"{hook}[head={h}]": (h,) for h in range(shape[0])} if len(shape) == 2 else {hook: ()})
        for label, index in groups.items():
            nodes = {h: torch.ones(s, dtype=torch.bool) for h, s in space.node_shapes.items()}
            keep = torch.ones(shape, dtype=torch.bool)
            if index:
                keep[index] = ~outside[index]
            else:
                keep = ~outside
            if bool(keep.all()):
                continue
            nodes[hook] = keep
            parts[label] = Mask(space, nodes, circuit.edges)
    return parts


def _random_parts(resolved: ResolvedSpec, count: int, seed: int) -> dict[str, Mask]:
    space, circuit = resolved.mask.space, resolved.mask
    rng = torch.Generator().manual_seed(seed)
    parts = {}
    for i in range(count):
        fraction = (0.25, 0.5, 0.75)[i % 3]
        nodes = {h: ~((~circuit.nodes[h]) & (torch.rand(s, generator=rng) < fraction)) for h, s in space.node_shapes.items()}
        parts[f"a random {fraction:.0%} of the non-circuit nodes (#{i})"] = Mask(space, nodes, circuit.edges)
    return parts


def _presence_effects(model: Transformer, circuit: Mask, batch: TaskBatch, reference: Reference,
                      outside_kept: bool) -> dict[str, torch.Tensor]:
    """d mean logit difference / d presence of every node, with the circuit kept and the rest kept
    (``outside_kept``) or ablated; a node's presence ``g`` mixes ``ref + g * (act - ref)``."""
    device = batch.tokens.device
    gates = {h: (torch.ones_like(keep, dtype=torch.float32) if outside_kept else keep.float()).to(device).requires_grad_(True)
             for h, keep in circuit.nodes.items()}

    def gate(x: torch.Tensor, name: str) -> torch.Tensor:
        ref = reference.value(name)
        return ref + gates[name] * (x - ref)

    with _frozen(model), model.hooks({h: gate for h in gates}):
        logits = answer_logits(model(batch.tokens), batch.answer_pos)
        diff = logit_diff(logits, batch.correct, batch.wrong).mean()
        grads = torch.autograd.grad(diff, list(gates.values()))
    return {h: g.detach().cpu() for h, g in zip(gates, grads)}


def _ranked_outside(circuit: Mask, effects: dict[str, torch.Tensor], sign: float) -> list[tuple[str, int]]:
    """Non-circuit nodes (hook, flat index) whose effect has the given sign, strongest first."""
    scored = []
    for hook, keep in circuit.nodes.items():
        values = (effects[hook] * sign).reshape(-1)
        candidates = torch.nonzero((~keep).reshape(-1) & (values > 0)).reshape(-1)
        scored += [(float(values[i]), hook, int(i)) for i in candidates]
    scored.sort(key=lambda t: -t[0])
    return [(hook, i) for _, hook, i in scored]


def _with_nodes(circuit: Mask, base: bool, flips: list[tuple[str, int]]) -> Mask:
    """The circuit plus every non-circuit node set to ``base``, except ``flips``, set to ``not base``."""
    nodes = {h: (keep | torch.full_like(keep, base)).clone() for h, keep in circuit.nodes.items()}
    for hook, i in flips:
        nodes[hook].view(-1)[i] = not base
    return Mask(circuit.space, nodes, circuit.edges)


def _names(circuit: Mask, flips: list[tuple[str, int]], most: int = 3) -> str:
    """The first ``most`` of ``flips`` in the one naming scheme."""
    names = []
    for hook, i in flips[:most]:
        shape = circuit.space.node_shapes[hook]
        names.append(str(NodeName(hook, i % shape[-1], i // shape[-1]) if is_per_head(hook) else NodeName(hook, i)))
    return ", ".join(names) + (", ..." if len(flips) > most else "")


def _adversarial_parts(model: Transformer, circuit: Mask, batch: TaskBatch, reference: Reference,
                       sizes: int = 6) -> dict[str, Mask]:
    """Partial ablations chosen against the circuit, from first-order estimates (see the module docstring):
    keep only the ``k`` non-circuit nodes whose presence lowers the logit difference most (the rest ablated),
    or ablate only the ``k`` whose presence raises it most (the rest kept), for ``k`` on a geometric grid."""
    parts = {}
    hurting = _ranked_outside(circuit, _presence_effects(model, circuit, batch, reference, outside_kept=False), -1.0)
    helping = _ranked_outside(circuit, _presence_effects(model, circuit, batch, reference, outside_kept=True), +1.0)
    for ranked, base, template in (
        (hurting, False, "ablating all non-circuit nodes except the {k} whose presence hurts most (adversarial: {names})"),
        (helping, True, "ablating only the {k} non-circuit node(s) whose presence helps most (adversarial: {names})"),
    ):
        for k in sorted({max(1, round(len(ranked) ** (j / max(1, sizes - 1)))) for j in range(sizes)} if ranked else ()):
            parts[template.format(k=k, names=_names(circuit, ranked[:k]))] = _with_nodes(circuit, base, ranked[:k])
    return parts


def attack_claim(resolved: ResolvedSpec, claim: ResolvedClaim, settings: RunSettings, trials: int = 12,
                 adversarial: bool = True) -> AttackOutcome:
    """The worst of the ablation choices for a sufficient or necessary claim (``trials`` random subsets;
    ``adversarial``: the gradient-chosen subsets too)."""
    model = resolved.context.model
    examples = sample_examples(resolved.task, claim.samples or resolved.spec.samples or settings.samples, settings.seed,
                               claim.claim.conditions)
    batch = encode_examples(examples, model.cfg.n_ctx).to(settings.device)
    space = resolved.mask.space
    full = Mask.full(space)
    empty = Mask(space, Mask.empty(space).nodes, full.edges)
    sufficient = claim.kind == "sufficient"
    target = resolved.mask if sufficient else Mask(space, (~resolved.mask).nodes, full.edges)
    threshold = float(claim.claim.body.threshold)
    references: dict[int, Reference] = {}

    def reference(seed: int) -> Reference:
        if seed not in references:
            references[seed] = make_reference(resolved, claim.ablation, claim.ablation_task, batch, replace(settings, seed=seed))
        return references[seed]

    choices: list[tuple[str, Mask, int]] = []  # (description, condition, reference seed)
    # zero and the stored corpus means do not depend on reference inputs: there are no others to try
    fixed = claim.ablation.kind == "zero" or claim.ablation.source == "corpus"
    reference_seeds = [settings.seed] if fixed else [settings.seed + 1 + i for i in range(3)]
    as_stated = "the claim as stated (its own reference inputs)"
    if not fixed:
        choices.append((as_stated, target, settings.seed))
    for seed in reference_seeds:
        what = "the stored pretraining means" if claim.ablation.source == "corpus" else f"reference inputs drawn with seed {seed}"
        choices.append((what, target, seed))
    if sufficient:
        parts = {**_structured_parts(resolved), **_random_parts(resolved, trials, settings.seed)}
        choices += [(f"ablating only {label}", mask, settings.seed) for label, mask in parts.items()]
        if adversarial and examples:
            adversaries = _adversarial_parts(model, resolved.mask, batch, reference(settings.seed))
            choices += [(what, mask, settings.seed) for what, mask in adversaries.items()]
    by_seed: dict[int, list[tuple[str, Mask]]] = {}
    for what, mask, seed in choices:
        by_seed.setdefault(seed, []).append((what, mask))
    outcomes: list[AttackOutcome] = []
    for seed, group in by_seed.items():
        logits = run_conditions(model, batch.tokens, [full, empty] + [m for _, m in group], reference(seed), batch.answer_pos)
        m_full, m_empty = (per_example_metric(claim.metric, lg, logits[0], batch) for lg in logits[:2])
        for (what, _), lg in zip(group, logits[2:]):
            interval = faithfulness_interval(per_example_metric(claim.metric, lg, logits[0], batch), m_full, m_empty,
                                             claim.confidence, settings.resamples, settings.seed)
            verdict = verdict_at_least(interval, threshold) if sufficient else verdict_at_most(interval, threshold)
            outcomes.append(AttackOutcome(interval.estimate, (interval.low, interval.high), what, len(choices), verdict == "fail",
                                          inconclusive=verdict == "inconclusive"))
    stated = next((o for o in outcomes if o.what in (as_stated, "the stored pretraining means")
                   or (fixed and o.what.startswith("reference inputs"))), None)
    # the worst failing choice if any fails, else the worst inconclusive one, else the one closest to failing
    worst = min(outcomes, key=lambda o: (not o.broken, not o.inconclusive, o.worst if sufficient else -o.worst))
    if stated is not None:
        worst.as_stated, worst.as_stated_broken = stated.worst, stated.broken
    return worst


def attack_minimal(resolved: ResolvedSpec, claim: ResolvedClaim, settings: RunSettings, rounds: int = 3) -> AttackOutcome:
    """Re-run a ``minimal`` claim on fresh inputs and reference inputs; the worst unit across rounds."""
    worst: AttackOutcome | None = None
    for i in range(1, rounds + 1):
        round_settings = replace(settings, seed=settings.seed + i)
        result = judge(resolved, claim, run_group(resolved, [claim], round_settings), round_settings)
        for unit in result.units or []:
            outcome = AttackOutcome(unit["drop"], tuple(unit["ci"]), f"{unit['unit']} with inputs drawn with seed "
                                    f"{round_settings.seed}", rounds, unit["verdict"] == "fail",
                                    inconclusive=unit["verdict"] == "inconclusive")
            if worst is None or (outcome.broken, outcome.inconclusive, -outcome.worst) > (worst.broken, worst.inconclusive, -worst.worst):
                worst = outcome
    return worst or AttackOutcome(float("nan"), (float("nan"), float("nan")), "no units to remove", rounds, False)
