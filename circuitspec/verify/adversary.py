"""Partial ablations chosen against a circuit: the parts of the outside whose presence, or absence, the
circuit's explanation says should not matter, picked where a first-order estimate says they matter most.

One backward pass at the circuit alone (everything outside ablated) estimates how much each non-circuit
node's presence moves the mean logit difference, and one at the full model does the same. The
adversary keeps only the nodes whose presence hurts most (the rest of the outside ablated), or ablates
only those whose presence helps most (the rest kept), each at a few sizes on a geometric grid. A
sufficiency claim made ``robustness adversarial`` (the default) must hold under every one of them, in
``verify`` as in ``falsify``: a circuit that reaches its threshold only because the outside is ablated
all at once, effects cancelling, fails there.
"""

from __future__ import annotations

import torch

from ..engine.ablation import Reference, mixed_answer_logits
from ..engine.batch import TaskBatch
from ..engine.discover import _frozen  # gradients to the gates only; the model's own flags restored
from ..engine.masks import Mask
from ..engine.metrics import logit_diff
from ..engine.model import Transformer
from ..engine.naming import NodeName, is_per_head


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
        logits = mixed_answer_logits(model, batch.tokens, batch.answer_pos, reference)
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


def adversarial_parts(model: Transformer, circuit: Mask, batch: TaskBatch, reference: Reference,
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
