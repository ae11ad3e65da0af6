"""Attack aggregate claims over ablation choices, not inputs.

A circuit can look sufficient only because everything else is ablated at once, effects cancelling out.
If the explanation is right, the rest of the model should not matter however much of it is ablated:
keeping the circuit and ablating only *part* of the rest should still reach the threshold. The attack
tries structured parts (each attention head, each MLP layer, each residual boundary), random subsets
and adversarially chosen subsets of the non-circuit nodes (:mod:`.adversary`), plus other reference
inputs for mean/resample ablation over a task (``mean over corpus`` uses the checkpoint's stored means,
and ``resample from corrupted(F)`` each input's own partner, which no choice of inputs changes), and
reports the worst; each choice is judged with the real ablated forward. A claim attacks only what it states: ``robustness random`` leaves out the chosen subsets,
``robustness none`` every partial ablation (only other reference inputs remain).
Necessity is attacked over reference inputs: it must hold whichever inputs the means or resamples come
from. Minimality is re-judged on other inputs and references: every unit must still matter.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch

from ..engine.ablation import Reference, run_conditions
from ..engine.batch import encode_for
from ..engine.masks import Mask
from ..lang.resolve import ResolvedClaim, ResolvedSpec
from ..stats import faithfulness_interval, verdict_at_least, verdict_at_most
from .adversary import adversarial_parts
from .examples import sample_examples
from .pairs import partner_filter
from .judge import judge
from .runner import RunSettings, complement, make_reference, per_example_metric, run_group, without_part


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


def attack_claim(resolved: ResolvedSpec, claim: ResolvedClaim, settings: RunSettings, trials: int = 12,
                 adversarial: bool = True) -> AttackOutcome:
    """The worst of the ablation choices for a sufficient, necessary or unneeded claim (``trials`` random
    subsets; ``adversarial``: the gradient-chosen subsets too). An unneeded claim, like a necessary one, is
    attacked over reference inputs: its part must stay unneeded whichever inputs the means come from."""
    model = resolved.context.model
    examples = sample_examples(resolved.task, claim.samples or resolved.spec.samples or settings.samples, settings.seed,
                               claim.claim.conditions, keep=partner_filter(resolved.task, claim.ablation, settings.seed, resolved.context.model.tokenizer))
    batch = encode_for(model, examples, resolved.task.name).to(settings.device)
    space = resolved.mask.space
    full = Mask.full(space)
    empty = Mask(space, Mask.empty(space).nodes, full.edges)
    sufficient = claim.kind == "sufficient"
    at_least = claim.kind in ("sufficient", "unneeded")  # F must stay high (else: low, for necessary)
    if sufficient:
        target = resolved.mask
    elif claim.kind == "unneeded":
        target = without_part(claim, space)
    else:
        target = complement(resolved)
    threshold = float(claim.claim.body.threshold)
    references: dict[int, Reference] = {}

    def reference(seed: int) -> Reference:
        if seed not in references:
            references[seed] = make_reference(resolved, claim.ablation, claim.ablation_task, batch, replace(settings, seed=seed),
                                              examples=examples)
        return references[seed]

    choices: list[tuple[str, Mask, int]] = []  # (description, condition, reference seed)
    # zero, the stored corpus means and each input's own corrupted partner do not depend on reference inputs
    # drawn from the task: there are no others to try
    fixed = claim.ablation.kind == "zero" or claim.ablation.source == "corpus" or claim.ablation.corrupted is not None
    reference_seeds = [settings.seed] if fixed else [settings.seed + 1 + i for i in range(3)]
    as_stated = "the claim as stated (its own reference inputs)"
    if not fixed:
        choices.append((as_stated, target, settings.seed))
    for seed in reference_seeds:
        what = ("the stored pretraining means" if claim.ablation.source == "corpus"
                else "each input's corrupted partner" if claim.ablation.corrupted is not None
                else f"reference inputs drawn with seed {seed}")
        choices.append((what, target, seed))
    if sufficient and claim.robustness != "none":  # `robustness none`: everything outside ablated at once only
        parts = {**_structured_parts(resolved), **_random_parts(resolved, trials, settings.seed)}
        choices += [(f"ablating only {label}", mask, settings.seed) for label, mask in parts.items()]
        if adversarial and claim.robustness == "adversarial" and examples:
            adversaries = adversarial_parts(model, resolved.mask, batch, reference(settings.seed))
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
            verdict = verdict_at_least(interval, threshold) if at_least else verdict_at_most(interval, threshold)
            outcomes.append(AttackOutcome(interval.estimate, (interval.low, interval.high), what, len(choices), verdict == "fail",
                                          inconclusive=verdict == "inconclusive"))
    stated = next((o for o in outcomes if o.what in (as_stated, "the stored pretraining means", "each input's corrupted partner")
                   or (fixed and o.what.startswith("reference inputs"))), None)
    # the worst failing choice if any fails, else the worst inconclusive one, else the one closest to failing
    worst = min(outcomes, key=lambda o: (not o.broken, not o.inconclusive, o.worst if at_least else -o.worst))
    if stated is not None:
        worst.as_stated, worst.as_stated_broken = stated.worst, stated.broken
    return worst


def attack_minimal(resolved: ResolvedSpec, claim: ResolvedClaim, settings: RunSettings, rounds: int = 3) -> AttackOutcome:
    """Re-run a ``minimal`` (or edge) claim on fresh inputs and reference inputs; the worst unit across rounds."""
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
