"""Circuit discovery by learned node masks (the pruning of Gao et al. 2025, "Weight-sparse transformers
have interpretable circuits").

Every maskable node (every channel of :class:`~.masks.MaskSpace`: residual channels, per-head q/k/v/z
channels, MLP neurons) gets a learnable logit ``theta``. Training runs the model's own forward pass with
a hook at every maskable hook point that mixes each activation with its reference value,
``act = g * act + (1 - g) * ref`` (``ref``: the node's mean over task inputs, or zero; what ``verify``
puts in place of an ablated node). As in the paper the gate is a hard step, ``g = [theta > 0]``, whose
gradient is taken from ``sigmoid(theta)`` (straight-through). The objective is the task's binary
cross-entropy plus a penalty per kept node. Two ways to set the penalty (``SearchSettings.training``):

- ``path`` (default): the penalty rises log-linearly over the run, so nodes switch off in the order the
  task needs them least; a node's score is the last step its gate was open. One run reads the whole
  regularisation path, as a sweep over penalty weights would.
- ``lagrange``: ``lambda`` times the share of kept nodes, ``lambda`` a Lagrange multiplier raised while
  the training batches meet the target and lowered while they miss it. It ranks the nodes still kept
  at the end only by their logits, which barely differ: on the 4-layer model the prefix search then
  falls through to nearly the whole model (9,471 of 10,496 nodes on closing_quote), where ``path``
  finds 775.

Robustness (``partial_keep``, ``partial_checks``): training can leave random parts of the outside in
place; the circuit chosen and pruned as usual is then grown (:func:`_grow_until_robust`) until it meets
the target with random parts of the outside left in place, with the outside nodes whose presence hurts
most left in place, and with those whose presence helps most ablated (first order): the partial
ablations ``verify`` and ``falsify`` judge a sufficiency claim under.

Training only ranks the nodes. The circuit is chosen with the real node-ablated forward
(:func:`~.ablation.run_conditions`, the engine ``verify`` uses) on *selection* inputs: the smallest
prefix of the ranking that meets the target (a geometric grid, then bisection in the step where the
target is first met), minus nodes nothing downstream reads (:func:`drop_dead_nodes`, exact), minus what
a greedy pass can drop while the target still holds (ordered by a first-order estimate of each node's
cost, bounded in passes). "Meets" means with a margin of ``confidence_z`` standard errors. The greedy
pass's many decisions favour removals that only look harmless on the selection inputs, so the pruned
circuit is re-checked on the training inputs and removals are undone until it passes there. The
figures a :class:`Discovery` reports come from *held-out* inputs (their own seed).

Targets: a task loss (mean binary cross-entropy over the two answers at the answer position) or a
faithfulness (``F = mean(m_C - m_0) / mean(m_M - m_0)`` on logit differences, as ``verify`` computes
it). The default target loss is the full model's loss plus :data:`DEFAULT_MARGIN` nats. A target the
all-ablated model already meets (e.g. on a task whose answers carry no signal) is reported as not
reached: an empty circuit explains nothing.

Edges: the circuit's edges are the non-zero weights whose two ends are both kept nodes (the channel
graph's ``weight`` edges, :mod:`.graph`); embedding rows and logits are not nodes, so their weights are
not counted, nor are structural edges (residual identity, attention's q/k -> pattern -> z).
"""

from __future__ import annotations

import math
import time
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Callable, Iterator, Literal

import torch

from .ablation import Ablation, Reference, mixed_answer_logits, run_conditions
from .batch import TaskBatch, encode_for
from .errors import UsageError
from .masks import IO_WEIGHTS, Mask, MaskSpace
from .metrics import binary_cross_entropy, logit_diff
from .model import Transformer
from .naming import NodeName, resid_hook
from .tasks import Task, TaskExample

TargetKind = Literal["loss", "faithfulness"]
Progress = Callable[[str, int, int], None]  # (phase, done, total)

#: The default loss target: the full model's loss plus this many nats.
DEFAULT_MARGIN = 0.1
#: Training steps of the mask, ``SearchSettings.batch_size`` inputs each (docs/discovery.md, "Many small steps").
DEFAULT_STEPS = 600


@dataclass(frozen=True)
class SearchSettings:
    """Knobs of the search; the defaults are what the shipped models were measured with (docs/discovery.md)."""

    batch_size: int = 16  # training inputs per step (one length bucket): many small steps (see docs/discovery.md)
    lr: float = 0.1  # Adam on the node logits
    init_logit: float = 3.0  # every node starts kept; the penalty has to earn each removal
    surrogate_temperature: float = 1.0  # width of the sigmoid whose slope stands in for the step's
    lambda_init: float = 1.0  # penalty per share of kept nodes, in nats
    lambda_gain: float = 0.3  # log(lambda) -= gain * (smoothed constraint violation) each step
    ema: float = 0.8  # smoothing of that violation
    confidence_z: float = 2.0  # "meets the target": mean loss + z * standard error <= target (0: the mean
    # meets it, as the paper's bisection; `discover --margin-z`)
    prune: bool = True  # greedy pass after the prefix search
    patience: int = 64  # stop the greedy pass after this many nodes in a row could not go ...
    prune_budget: int = 250  # ... or after this many forward passes
    large_circuit: int = 600  # above this many nodes a pass costs a full forward (not a subgraph) ...
    prune_budget_large: int = 80  # ... so the greedy pass gets fewer
    confirm_z: float = 1.0  # margin of the re-check of the pruned circuit on the training inputs
    path_start: float = 1e-5  # penalty per kept node (nats) at the start of the regularisation path ...
    path_end: float = 0.3  # ... and at its end
    partial_keep: float = 0.0  # robust training: outside nodes left in place with probability up to this
    partial_checks: int = 0  # robust selection: random partial ablations every chosen circuit must also pass
    grow_step: float = 0.1  # robust selection: each round of growth adds this share of the circuit's size
    training: str = "path"  # "path" (rising penalty) or "lagrange" (one penalty, settled by the target)


@dataclass
class Discovery:
    """A discovered circuit and what was measured about it (held-out inputs unless said otherwise)."""

    task: str
    ablation: str  # "mean" or "zero"
    mask: Mask  # node mask, every edge kept (node ablation)
    ranking: list[NodeName]  # every node, most important first (the learned logits' order)
    node_count: int
    edge_count: int
    target_kind: TargetKind
    target: float
    loss: float  # circuit alone: mean BCE over the two answers at the answer position
    loss_stderr: float
    faithfulness_stderr: float
    full_loss: float
    ablated_loss: float  # every node ablated
    faithfulness: float  # logit-difference faithfulness, as verify computes it
    full_logit_diff: float
    reached: bool
    seconds: float
    samples: int
    steps: int
    seed: int
    note: str = ""
    evaluations: int = 0  # hard forward passes the choice took (prefix search, pruning, re-check)
    partial_faithfulness: float = float("nan")  # worst faithfulness with random parts of the outside left in place
    partial_keep_fraction: float = float("nan")  # the share of the outside left in place in that worst case
    adversarial_faithfulness: float = float("nan")  # robust search: worst faithfulness under the chosen partial ablations
    margin_z: float = 2.0  # the selection's margin: mean + margin_z standard errors had to meet the target
    reference: Reference | None = field(default=None, repr=False)  # what ablated nodes carried
    history: list[dict[str, float]] = field(default_factory=list, repr=False)  # training trace

    @property
    def nodes(self) -> list[NodeName]:
        return list(self.mask.node_names())

    def summary(self) -> dict:
        """JSON-ready figures (the mask as node names)."""
        keys = ("task", "ablation", "node_count", "edge_count", "target_kind", "target", "loss", "loss_stderr", "faithfulness_stderr",
                "full_loss", "ablated_loss", "faithfulness", "full_logit_diff", "reached", "seconds", "samples",
                "steps", "seed", "evaluations", "partial_faithfulness", "partial_keep_fraction", "adversarial_faithfulness", "margin_z",
                "note")
        out = {k: getattr(self, k) for k in keys}
        out["nodes"] = [str(n) for n in self.nodes]
        return out


# ---- data ----------------------------------------------------------------------------------------


@dataclass
class TaskInputs:
    """Task inputs sorted by length and cut into chunks that pad little, with the full model's and the
    all-ablated model's answer logits precomputed (rows in the sorted order)."""

    examples: list[TaskExample]
    chunks: list[TaskBatch]
    correct: torch.Tensor  # [n]
    wrong: torch.Tensor
    full: torch.Tensor  # [n, V]
    empty: torch.Tensor

    @classmethod
    def sample(cls, model: Transformer, task: Task, n: int, seed: str, reference: Reference,
               chunk: int = 64) -> "TaskInputs":
        examples = sorted(task.sample(n, seed), key=lambda e: len(e.prefix))
        device = model.device
        chunks = [encode_for(model, examples[i : i + chunk], task.name).to(device) for i in range(0, n, chunk)]
        with torch.no_grad():
            full = torch.cat([model(c.tokens, c.answer_pos) for c in chunks])
        inputs = cls(examples, chunks, torch.cat([c.correct for c in chunks]), torch.cat([c.wrong for c in chunks]),
                     full, full)
        inputs.empty = inputs.run(model, empty_mask(MaskSpace.for_config(model.cfg)), reference)
        return inputs

    def run(self, model: Transformer, mask: Mask, reference: Reference) -> torch.Tensor:
        """Answer logits [n, V] of the circuit alone (the hard node-ablated forward of ``verify``)."""
        return torch.cat([run_conditions(model, c.tokens, [mask], reference, c.answer_pos)[0] for c in self.chunks])

    def logit_diffs(self, logits: torch.Tensor) -> torch.Tensor:
        return logit_diff(logits, self.correct, self.wrong)

    def bce(self, logits: torch.Tensor) -> torch.Tensor:
        return binary_cross_entropy(logits, self.correct, self.wrong)

    def faithfulness(self, logits: torch.Tensor) -> float:
        m0 = self.logit_diffs(self.empty)
        denominator = float((self.logit_diffs(self.full) - m0).mean())
        return float((self.logit_diffs(logits) - m0).mean()) / denominator if denominator else float("nan")


def empty_mask(space: MaskSpace) -> Mask:
    """Every node ablated, every weight kept."""
    return Mask(space, Mask.empty(space).nodes, Mask.full(space).edges)


def reference_for(model: Transformer, task: Task, ablation: str, n: int, seed: str, source: str = "task") -> Reference:
    """What an ablated node carries: zero, or its mean over ``n`` task inputs (all real positions), or with
    ``source="corpus"`` its mean over the pretraining corpus, stored with the model's checkpoint
    (:func:`.corpus_means.corpus_reference`; ``n`` and ``seed`` are then unused)."""
    if ablation not in ("mean", "zero"):
        raise UsageError(f"discovery supports mean and zero ablation, not {ablation!r}")
    if source not in ("task", "corpus"):
        raise UsageError(f"the mean comes from the task or the corpus, not {source!r}")
    if source == "corpus":
        if ablation != "mean":
            raise UsageError("only mean ablation has a corpus reference", hint="use --ablation mean with --reference corpus")
        from .corpus_means import corpus_reference  # stored means, read from the model's checkpoint folder

        return corpus_reference(model)
    batch = encode_for(model, task.sample(n, seed), task.name).to(model.device)
    lengths = batch.answer_pos + 1
    return Reference.compute(model, Ablation(ablation), batch.tokens, lengths, batch.tokens, lengths)


# ---- masks as one flat vector ----------------------------------------------------------------------


@dataclass(frozen=True)
class _Layout:
    """Where each hook's node mask lives in one flat vector of all nodes (the space's order)."""

    space: MaskSpace
    slices: dict[str, tuple[int, int]]
    size: int

    @classmethod
    def of(cls, space: MaskSpace) -> "_Layout":
        slices, start = {}, 0
        for hook, shape in space.node_shapes.items():
            n = math.prod(shape)
            slices[hook] = (start, start + n)
            start += n
        return cls(space, slices, start)

    def mask(self, keep: torch.Tensor) -> Mask:
        """A node mask (every edge kept) from a flat boolean vector."""
        keep = keep.detach().cpu().bool()
        nodes = {h: keep[a:b].reshape(self.space.node_shapes[h]).clone() for h, (a, b) in self.slices.items()}
        return Mask(self.space, nodes, Mask.full(self.space).edges)

    def flat(self, mask: Mask) -> torch.Tensor:
        return torch.cat([mask.nodes[h].reshape(-1) for h in self.slices])

    def names(self) -> list[NodeName]:
        """Node names in flat order."""
        return list(Mask.full(self.space).node_names())


# ---- training ------------------------------------------------------------------------------------


@contextmanager
def _frozen(model: Transformer) -> Iterator[None]:
    """Gradients flow to the mask logits only; the model's own flags are restored afterwards."""
    flags = [(p, p.requires_grad) for p in model.parameters()]
    was_training = model.training
    try:
        for p, _ in flags:
            p.requires_grad_(False)
        model.eval()
        yield
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)
        model.train(was_training)


def _gate_hooks(layout: _Layout, gates: list[torch.Tensor], reference: Reference, device: torch.device) -> dict:
    """One hook per maskable hook point: ``ref + g * (act - ref)`` with the current step's gates."""
    fns = {}
    for hook, (a, b) in layout.slices.items():
        shape = layout.space.node_shapes[hook]
        ref = reference.value(hook).to(device)

        def fn(x: torch.Tensor, name: str, a=a, b=b, shape=shape, ref=ref) -> torch.Tensor:
            g = gates[0][a:b].view(shape)
            return ref + g * (x - ref)

        fns[hook] = fn
    return fns


def _train_logits(model: Transformer, layout: _Layout, train: TaskInputs, reference: Reference, target_kind: TargetKind,
                  target: float, scale: float, steps: int, settings: SearchSettings, seed: int,
                  progress: Progress | None) -> tuple[torch.Tensor, list[dict[str, float]]]:
    """Learned node logits [n_nodes] (higher = more important) and a per-step trace.

    The forward pass uses the hard gate ``theta > 0``, so training sees exactly the circuits the
    selection evaluates; the backward pass uses the slope of ``sigmoid(theta / T)`` instead of the
    step's zero derivative (a straight-through estimator, as in the paper).
    """
    device = model.device
    gen = torch.Generator(device="cpu").manual_seed(seed)
    theta = torch.full((layout.size,), settings.init_logit, device=device)
    adam = _Adam(theta, settings.lr)
    gates: list[torch.Tensor] = [torch.ones(layout.size, device=device)]
    fns = _gate_hooks(layout, gates, reference, device)
    m0_all, mm_all = train.logit_diffs(train.empty), train.logit_diffs(train.full)
    offsets = [0]
    for chunk in train.chunks:
        offsets.append(offsets[-1] + chunk.tokens.shape[0])
    log_lambda = math.log(settings.lambda_init)
    ema = None
    history = []
    with _frozen(model), model.hooks(fns):
        for step in range(steps):
            i = int(torch.randint(len(train.chunks), (1,), generator=gen))
            chunk, rows = train.chunks[i], slice(offsets[i], offsets[i + 1])
            theta.requires_grad_(True)
            gates[0], kept_nodes, _ = _step_gates(theta, settings, gen)
            logits = mixed_answer_logits(model, chunk.tokens, chunk.answer_pos, reference)
            bce = binary_cross_entropy(logits, chunk.correct, chunk.wrong).mean()
            kept = kept_nodes.mean()
            (grad,) = torch.autograd.grad(bce + math.exp(log_lambda) * kept, theta)
            theta = adam.step(theta.detach(), grad)
            with torch.no_grad():
                if target_kind == "loss":
                    violation = (float(bce) - target) / scale
                else:
                    m, m0, mm = logit_diff(logits, chunk.correct, chunk.wrong), m0_all[rows], mm_all[rows]
                    violation = target - float((m - m0).mean() / (mm - m0).mean().clamp(min=1e-6))
            ema = violation if ema is None else settings.ema * ema + (1 - settings.ema) * violation
            log_lambda = min(5.0, max(-9.0, log_lambda - settings.lambda_gain * ema))
            history.append({"step": step, "bce": float(bce.detach()), "kept": float(kept.detach()) * layout.size,
                            "lambda": math.exp(log_lambda)})
            if progress:
                progress("training", step + 1, steps)
    return theta.detach(), history


def _step_gates(theta: torch.Tensor, settings: SearchSettings, gen: torch.Generator) -> tuple[torch.Tensor, ...]:
    """This step's gates (what the hooks apply), the kept-node indicator the penalty counts, and the hard
    circuit; the first two carry the surrogate gradient of ``sigmoid(theta / T)``.

    With ``partial_keep`` > 0 each node outside the circuit is left in place with a probability drawn
    from [0, partial_keep] for the whole batch (robust training, see :func:`_train_path`).
    """
    # clamped so no slope is a denormal float (they make CPU arithmetic crawl)
    soft = torch.sigmoid((theta / settings.surrogate_temperature).clamp(-30.0, 30.0))
    hard = (theta > 0).float()
    kept = hard + soft - soft.detach()
    if settings.partial_keep <= 0:
        return kept, kept, hard
    p = settings.partial_keep * float(torch.rand((), generator=gen))
    present = (torch.rand(theta.shape, generator=gen) < p).float().to(theta.device)
    return torch.maximum(hard, present) + soft - soft.detach(), kept, hard


def _train_path(model: Transformer, layout: _Layout, train: TaskInputs, reference: Reference, steps: int,
                settings: SearchSettings, seed: int, progress: Progress | None) -> tuple[torch.Tensor, list[dict[str, float]]]:
    """Node scores from a regularisation path (higher = more important) and a per-step trace.

    The objective is the paper's: task cross-entropy plus a penalty per kept node, with the hard gate
    ``theta > 0`` forward and the slope of ``sigmoid(theta / T)`` backward. Instead of one penalty
    weight, the weight rises log-linearly from ``path_start`` to ``path_end`` nats per node over the
    run, so nodes switch off in order of how little the task needs them; a node's score is the last
    step its gate was open (ties broken by its final logit). The prefix search then reads the whole
    path at once, as the paper's sweep over penalty weights would, in one run.

    Robustness (``partial_keep`` > 0): at each step every node outside the current circuit is left in
    place with a probability drawn from [0, partial_keep] for the whole batch, so the circuit is
    trained to work whatever part of the outside happens to be present (the remedy Drori 2026 proposes
    for pruning that explains through cancellation): a node whose presence would hurt must bring the
    nodes that balance it into the circuit.
    """
    device = model.device
    gen = torch.Generator(device="cpu").manual_seed(seed)
    theta = torch.full((layout.size,), settings.init_logit, device=device)
    adam = _Adam(theta, settings.lr)
    last_on = torch.zeros(layout.size, device=device)
    gates: list[torch.Tensor] = [torch.ones(layout.size, device=device)]
    fns = _gate_hooks(layout, gates, reference, device)
    start, end = math.log(settings.path_start), math.log(settings.path_end)
    history = []
    with _frozen(model), model.hooks(fns):
        for step in range(steps):
            weight = math.exp(start + (end - start) * step / max(1, steps - 1))
            i = int(torch.randint(len(train.chunks), (1,), generator=gen))
            chunk = train.chunks[i]
            theta.requires_grad_(True)
            gates[0], kept, hard = _step_gates(theta, settings, gen)
            last_on[hard.bool()] = step + 1
            logits = mixed_answer_logits(model, chunk.tokens, chunk.answer_pos, reference)
            bce = binary_cross_entropy(logits, chunk.correct, chunk.wrong).mean()
            (grad,) = torch.autograd.grad(bce + weight * kept.sum(), theta)
            theta = adam.step(theta.detach(), grad)
            history.append({"step": step, "bce": float(bce.detach()), "kept": float(hard.sum()), "penalty": weight})
            if progress:
                progress("training", step + 1, steps)
    return last_on + torch.sigmoid(theta.detach()), history


class _Adam:
    """Adam on one tensor (torch.optim's constructor imports the compiler stack: seconds on a CPU)."""

    def __init__(self, like: torch.Tensor, lr: float, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8) -> None:
        self.lr, self.betas, self.eps, self.t = lr, betas, eps, 0
        self.m, self.v = torch.zeros_like(like), torch.zeros_like(like)

    def step(self, x: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
        b1, b2 = self.betas
        self.t += 1
        self.m.mul_(b1).add_(grad, alpha=1 - b1)
        self.v.mul_(b2).addcmul_(grad, grad, value=1 - b2)
        m_hat, v_hat = self.m / (1 - b1**self.t), self.v / (1 - b2**self.t)
        return x - self.lr * m_hat / (v_hat.sqrt() + self.eps)


# ---- selection with the hard forward -------------------------------------------------------------


@dataclass
class _Judge:
    """Hard circuit-alone evaluation on one set of inputs, and whether it meets the target with a margin."""

    model: Transformer
    inputs: TaskInputs
    reference: Reference
    layout: _Layout
    kind: TargetKind
    target: float
    z: float
    calls: int = 0
    partials: tuple[torch.Tensor, ...] = ()  # fixed random sets of outside nodes left in place
    adversarial: bool = False  # also leave in place the outside nodes whose presence hurts most

    def logits(self, keep: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return self.inputs.run(self.model, self.layout.mask(keep), self.reference)

    def score(self, keep: torch.Tensor) -> tuple[float, float]:
        """(estimate, standard error) of the mean loss, or of the faithfulness."""
        logits = self.logits(keep)
        if self.kind == "loss":
            values = self.inputs.bce(logits)
        else:
            m0 = self.inputs.logit_diffs(self.inputs.empty)
            denominator = (self.inputs.logit_diffs(self.inputs.full) - m0).mean()
            values = (self.inputs.logit_diffs(logits) - m0) / denominator
        n = values.numel()
        se = float(values.std()) / math.sqrt(n) if n > 1 else 0.0
        return float(values.mean()), se

    def meets(self, keep: torch.Tensor) -> bool:
        """The target holds with everything outside ablated and, for a robust search, also under every
        partial ablation of the outside :meth:`failing` tries."""
        return self.failing(keep) is None

    def failing(self, keep: torch.Tensor) -> tuple[str, torch.Tensor] | None:
        """The first condition under which ``keep`` misses the target, as (what, the nodes present there),
        or None: the circuit alone; for a robust search then each fixed random part of the outside left
        in place, the outside nodes whose presence hurts most left in place (the rest ablated), and the
        outside nodes whose presence helps most ablated (the rest left in place): the two kinds of
        partial ablation ``verify``'s adversary chooses."""
        if not self._meets_one(keep):
            return "circuit", keep
        for extra in self.partials:
            if not self._meets_one(keep | extra):
                return "random", keep | extra
        if not self.adversarial:
            return None
        for extra in self._hurting_sets(keep):
            if not self._meets_one(keep | extra):
                return "hurting", keep | extra
        for ablated in self._helping_sets(keep):
            if not self._meets_one(~ablated):
                return "helping", ~ablated
        return None

    def _ranked_outside(self, keep: torch.Tensor, at: torch.Tensor, sign: float) -> list[int]:
        """Nodes outside ``keep`` by ``sign`` times the first-order cost of removing them at ``at`` (the
        nodes present), strongest first, those with a positive score only."""
        score = sign * _removal_costs(self.model, self.layout, self.inputs, self.reference, at, self.kind)
        self.calls += 1
        return [i for i in torch.argsort(score, descending=True).tolist() if score[i] > 0 and not keep[i]]

    @staticmethod
    def _grid_sets(keep: torch.Tensor, ranked: list[int], sizes: int = 3) -> list[torch.Tensor]:
        """The top k of ``ranked`` for k on a geometric grid from 1 to all of them, as node sets."""
        sets = []
        for k in sorted({max(1, round(len(ranked) ** (j / max(1, sizes - 1)))) for j in range(sizes)} if ranked else ()):
            extra = torch.zeros_like(keep)
            extra[ranked[:k]] = True
            sets.append(extra)
        return sets

    def _hurting_sets(self, keep: torch.Tensor) -> list[torch.Tensor]:
        """The outside nodes whose presence worsens the measure most (first order, one backward pass at the
        circuit alone), the top k of them for k on a geometric grid: the partial ablations falsify's
        adversary would try first."""
        return self._grid_sets(keep, self._ranked_outside(keep, keep, -1.0))

    def _helping_sets(self, keep: torch.Tensor) -> list[torch.Tensor]:
        """The outside nodes whose presence improves the measure most with the whole model present (first
        order), the top k of them on the same grid: ablating only those is the adversary's other attack."""
        return self._grid_sets(keep, self._ranked_outside(keep, torch.ones_like(keep), +1.0))

    def _meets_one(self, keep: torch.Tensor) -> bool:
        estimate, se = self.score(keep)
        if not math.isfinite(estimate):
            return False
        if self.kind == "loss":
            return estimate + self.z * se <= self.target
        return estimate - self.z * se >= self.target


def _partial_sets(size: int, count: int, seed: int) -> tuple[torch.Tensor, ...]:
    """``count`` fixed random node sets, each node in with probability 0.25, 0.5, 0.75 in turn: the
    parts of the outside a robust search leaves in place when it judges a candidate circuit."""
    gen = torch.Generator().manual_seed(seed + 7919)
    return tuple(torch.rand(size, generator=gen) < PARTIAL_FRACTIONS[i % 3] for i in range(count))


def _smallest_prefix(judge: _Judge, order: torch.Tensor, progress: Progress | None, growth: float = 1.4) -> int | None:
    """Smallest k whose top-k nodes meet the target; None if not even the whole model does.

    More nodes do not always help under ablation (a node kept without the nodes it works with can
    hurt), so k is not bisected over the whole range: prefixes are tried on a geometric grid from the
    small end, and only the step where the target is first met is bisected.
    """
    n = order.numel()

    def keep(k: int) -> torch.Tensor:
        out = torch.zeros(n, dtype=torch.bool)
        out[order[:k]] = True
        return out

    grid, k = [0], 1
    while k < n:
        grid.append(k)
        k = max(k + 1, round(k * growth))
    grid.append(n)
    total = len(grid) + math.ceil(math.log2(n))
    for done, k in enumerate(grid, 1):
        if progress:
            progress("selecting", done, total)
        if judge.meets(keep(k)):
            break
    else:
        return None
    if k == 0:
        return 0
    lo, hi = grid[grid.index(k) - 1], k  # keep(lo) fails, keep(hi) meets
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if judge.meets(keep(mid)) else (mid, hi)
    if progress:
        progress("selecting", total, total)
    return hi


def _grow_until_robust(judge: _Judge, keep: torch.Tensor, step: float,
                       progress: Progress | None) -> tuple[torch.Tensor, int, bool]:
    """Add nodes to the circuit until it meets the target under every partial ablation the robust
    judge tries (:meth:`_Judge.failing`): at the first condition it misses, the ``step`` share of its
    size (at least one node) among the nodes ablated there whose presence would help most (first
    order) joins the circuit. Returns the circuit, the rounds it took and whether it is robust now: it
    stops short when no ablated node would help."""
    keep = keep.clone()
    rounds = 0
    while True:
        failing = judge.failing(keep)
        if progress:
            progress("growing", int(keep.sum()), keep.numel())
        if failing is None:
            return keep, rounds, True
        _, present = failing
        helpful = judge._ranked_outside(present, present, +1.0)
        if not helpful:
            return keep, rounds, False
        keep[helpful[: max(1, math.ceil(step * int(keep.sum())))]] = True
        rounds += 1


def _removal_costs(model: Transformer, layout: _Layout, inputs: TaskInputs, reference: Reference, keep: torch.Tensor,
                   kind: TargetKind) -> torch.Tensor:
    """First-order estimate of how much removing each kept node would worsen the target's measure
    (loss, or minus faithfulness): ``-d measure / d gate`` at the circuit, from one backward pass."""
    device = model.device
    gate = keep.float().to(device).requires_grad_(True)
    fns = _gate_hooks(layout, [gate], reference, device)
    m0 = inputs.logit_diffs(inputs.empty)
    denominator = (inputs.logit_diffs(inputs.full) - m0).mean().clamp(min=1e-6)
    total = torch.zeros((), device=device)
    start = 0
    with _frozen(model), model.hooks(fns):
        for chunk in inputs.chunks:
            logits = mixed_answer_logits(model, chunk.tokens, chunk.answer_pos, reference)
            rows = slice(start, start + chunk.tokens.shape[0])
            start = rows.stop
            if kind == "loss":
                total = total + binary_cross_entropy(logits, chunk.correct, chunk.wrong).sum()
            else:
                total = total - ((logit_diff(logits, chunk.correct, chunk.wrong) - m0[rows]) / denominator).sum()
    (grad,) = torch.autograd.grad(total / start, gate)
    return -grad.detach().cpu()


def _greedy_prune(judge: _Judge, keep: torch.Tensor, order: list[int], patience: int, budget: int,
                  progress: Progress | None) -> tuple[torch.Tensor, list[int]]:
    """Drop every node whose removal still meets the target, trying them in ``order`` (cheapest
    first); returns the circuit and the removed nodes in the order they went.

    Nodes are tried in runs whose length adapts (doubling after a run could go, halving after one
    could not, which is then split and retried), so long stretches of removable nodes cost a few
    forward passes. The pass stops after ``patience`` nodes in a row could not go, or after
    ``budget`` forward passes: the rest are kept.
    """
    keep = keep.clone()
    removed: list[int] = []
    failures = 0

    def attempt(nodes: list[int]) -> None:
        nonlocal failures
        keep[nodes] = False
        if judge.meets(keep):
            removed.extend(nodes)
            failures = 0
            return
        keep[nodes] = True
        if len(nodes) == 1:
            failures += 1
            return
        half = len(nodes) // 2
        attempt(nodes[:half])
        attempt(nodes[half:])

    size, done, start = 4, 0, judge.calls
    while done < len(order) and failures < patience and judge.calls - start < budget:
        run = order[done : done + size]
        before = len(removed)
        attempt(run)
        size = min(64, size * 2) if len(removed) - before == len(run) else max(1, size // 2)
        done += len(run)
        if progress:
            progress("pruning", done, len(order))
    if progress:
        progress("pruning", len(order), len(order))
    return keep, removed


def _confirm(judge: _Judge, keep: torch.Tensor, removed: list[int], steps: int = 10) -> torch.Tensor:
    """Hundreds of accept/reject decisions on one set of inputs favour removals that merely look
    harmless there. Re-check the pruned circuit on inputs the decisions did not see and, while it
    fails, put back the latest removals a tenth at a time."""
    j = len(removed)
    step = max(1, math.ceil(len(removed) / steps))
    while j > 0:
        candidate = keep.clone()
        candidate[removed[j:]] = True
        if judge.meets(candidate):
            return candidate
        j = max(0, j - step)
    candidate = keep.clone()
    candidate[removed] = True
    return candidate


def drop_dead_nodes(mask: Mask, model: Transformer) -> Mask:
    """The same circuit without nodes nothing downstream reads (exact: the output cannot change).

    A head's q/k channels are dead when none of its z channels is kept, a v channel when its z channel
    is not kept, a z channel or an MLP neuron when none of its non-zero output weights lands on a kept
    residual channel. A residual channel is dead when its identity continuation is not kept and no
    kept channel reads the norm it feeds (a norm's scale depends on every channel, so any kept reader
    keeps every residual channel it normalizes alive). Repeated until nothing changes.
    """
    cfg = model.cfg
    L = cfg.n_layers
    nodes = {h: t.clone() for h, t in mask.nodes.items()}
    weights = {name: (w.detach() != 0).cpu() for name, w in model.weight_matrices().items()}
    changed = True
    while changed:
        before = sum(int(t.sum()) for t in nodes.values())
        for layer in reversed(range(L)):
            a, pre, mid, post = f"blocks.{layer}.attn", resid_hook(layer, L), f"blocks.{layer}.hook_resid_mid", resid_hook(layer + 1, L)
            mlp = f"blocks.{layer}.mlp.hook_post"
            nodes[mlp] &= (weights[f"blocks.{layer}.mlp.W_out"] & nodes[post][None, :]).any(1)
            nodes[f"{a}.hook_z"] &= (weights[f"{a}.W_O"] & nodes[mid].view(1, 1, -1)).any(-1)
            z = nodes[f"{a}.hook_z"]
            nodes[f"{a}.hook_v"] &= z
            for kind in "qk":
                nodes[f"{a}.hook_{kind}"] &= z.any(-1, keepdim=True)
            if not bool(nodes[mlp].any()):
                nodes[mid] &= nodes[post]
            if not any(bool(nodes[f"{a}.hook_{kind}"].any()) for kind in "qkv"):
                nodes[pre] &= nodes[mid]
        changed = sum(int(t.sum()) for t in nodes.values()) != before
    return Mask(mask.space, nodes, mask.edges)


# ---- the entry point ------------------------------------------------------------------------------


def discover(model: Transformer, task: Task, *, ablation: str = "mean", target_loss: float | None = None,
             target_faithfulness: float | None = None, samples: int = 256, steps: int = DEFAULT_STEPS, seed: int = 0,
             device: str = "cpu", progress: Progress | None = None,
             settings: SearchSettings = SearchSettings(), reference: str = "task") -> Discovery:
    """Find a small node circuit of ``model`` for ``task`` that meets the target (see the module doc).

    ``samples`` inputs each are drawn for training, selection and the held-out report (three seeds),
    plus as many for the mean ablation's reference. At most one of the targets may be given.
    ``reference``: where the mean comes from, ``"task"`` (those inputs) or ``"corpus"`` (the pretraining
    means stored with the model's checkpoint, as ``ablate mean over corpus``; the Discovery's
    ``reference.ablation.source`` says which).
    """
    if target_loss is not None and target_faithfulness is not None:
        raise UsageError("give a target loss or a target faithfulness, not both")
    if samples < 8:
        raise UsageError(f"discovery needs at least 8 samples, got {samples}")
    if steps < 0:
        raise UsageError(f"steps must be at least 0, got {steps}")
    started = time.perf_counter()
    model = model.to(device)
    space = MaskSpace.for_config(model.cfg)
    layout = _Layout.of(space)
    tag = f"discover:{seed}"
    reference = reference_for(model, task, ablation, samples, f"{tag}:reference", reference)
    train = TaskInputs.sample(model, task, samples, f"{tag}:train", reference, chunk=settings.batch_size)
    select, held = (TaskInputs.sample(model, task, samples, f"{tag}:{name}", reference) for name in ("select", "heldout"))
    full_loss = float(select.bce(select.full).mean())
    ablated_loss = float(select.bce(select.empty).mean())
    if target_faithfulness is not None:
        kind: TargetKind = "faithfulness"
        target = float(target_faithfulness)
    else:
        kind = "loss"
        target = float(target_loss) if target_loss is not None else full_loss + DEFAULT_MARGIN
    scale = max(abs(ablated_loss - full_loss), 1e-3)

    note = ""
    theta = torch.zeros(layout.size)
    history: list[dict[str, float]] = []
    keep = torch.ones(layout.size, dtype=torch.bool)
    judge = _Judge(model, select, reference, layout, kind, target, settings.confidence_z)
    trivial = (kind == "loss" and ablated_loss <= target) or (kind == "faithfulness" and target <= 0)
    # a robust search chooses and prunes the circuit as a plain one, then grows it until random and
    # adversarial partial ablations no longer break it (docs/discovery.md, "Growing until robust")
    robust = replace(judge, partials=_partial_sets(layout.size, settings.partial_checks, seed),
                     adversarial=True) if settings.partial_checks else None
    if trivial:
        note = (f"the target is met with every node ablated (on the selection inputs: all-ablated loss {ablated_loss:.3f}, full model "
                f"{full_loss:.3f}): it says nothing about a circuit")
        keep = torch.zeros(layout.size, dtype=torch.bool)
    else:
        if settings.training == "path":
            theta, history = _train_path(model, layout, train, reference, steps, settings, seed, progress)
        else:
            theta, history = _train_logits(model, layout, train, reference, kind, target, scale, steps, settings, seed, progress)
        theta = theta.cpu()
        order = torch.argsort(theta, descending=True, stable=True)
        k = _smallest_prefix(judge, order, progress)
        if k is None:
            note = "not even the full model meets the target on the selection inputs"
        else:
            keep = torch.zeros(layout.size, dtype=torch.bool)
            keep[order[:k]] = True
            keep = layout.flat(drop_dead_nodes(layout.mask(keep), model))
            if settings.prune and int(keep.sum()) > 0:
                costs = _removal_costs(model, layout, select, reference, keep, kind)
                order = sorted(torch.nonzero(keep).flatten().tolist(), key=lambda i: float(costs[i]))
                large = int(keep.sum()) > settings.large_circuit  # each pass costs a full masked forward
                budget = settings.prune_budget_large if large else settings.prune_budget
                keep, removed = _greedy_prune(judge, keep, order, settings.patience, budget, progress)
                recheck = replace(judge, inputs=train, z=min(settings.confirm_z, settings.confidence_z), calls=0)
                keep = _confirm(recheck, keep, removed)
                judge.calls += recheck.calls
            if robust is not None:
                keep, rounds, robust_now = _grow_until_robust(robust, keep, settings.grow_step, progress)
                judge.calls += robust.calls
                if not robust_now:
                    note = (f"after {rounds} rounds of growth the circuit still misses the target under a partial "
                            "ablation, and no ablated node would help (first order)")
    mask = layout.mask(keep)
    names = layout.names()
    ranking = [names[i] for i in torch.argsort(theta, descending=True, stable=True).tolist()]

    logits = held.run(model, mask, reference)
    losses = held.bce(logits)
    loss, loss_se = float(losses.mean()), float(losses.std()) / math.sqrt(losses.numel())
    faith = held.faithfulness(logits)
    faith_se = _faithfulness_stderr(held, logits)
    partial, partial_fraction = _worst_partial_faithfulness(model, layout, held, reference, keep, seed)
    adversarial = _worst_adversarial_faithfulness(model, layout, held, reference, keep) if robust is not None else float("nan")
    # held-out inputs must not show the target missed by more than one standard error
    reached = not note and (loss - loss_se <= target if kind == "loss" else faith + faith_se >= target)
    if not reached and not note:
        measured = (f"loss {loss:.3f} ± {loss_se:.3f} > {target:.3f}" if kind == "loss"
                    else f"faithfulness {faith:.3f} ± {faith_se:.3f} < {target:.3f}")
        note = f"the circuit meets the target on the selection inputs but not on held-out ones ({measured})"
    return Discovery(task=task.name, ablation=ablation, mask=mask, ranking=ranking, node_count=mask.node_count(),
                     edge_count=circuit_edge_count(mask, model), target_kind=kind, target=target, loss=loss,
                     loss_stderr=loss_se, faithfulness_stderr=faith_se, full_loss=float(held.bce(held.full).mean()),
                     ablated_loss=float(held.bce(held.empty).mean()), faithfulness=faith,
                     full_logit_diff=float(held.logit_diffs(held.full).mean()), reached=reached,
                     seconds=time.perf_counter() - started, samples=samples, steps=steps, seed=seed, note=note,
                     evaluations=judge.calls, partial_faithfulness=partial, partial_keep_fraction=partial_fraction,
                     adversarial_faithfulness=adversarial,
                     margin_z=settings.confidence_z,
                     reference=reference, history=history)


#: Random partial ablations every discovered circuit is measured under (as verify's default judges it).
PARTIAL_CHECKS = 8
#: The shares of the outside such a partial ablation leaves in place, in turn (as verify draws them).
PARTIAL_FRACTIONS = (0.25, 0.5, 0.75)


def _worst_partial_faithfulness(model: Transformer, layout: _Layout, inputs: TaskInputs, reference: Reference,
                                keep: torch.Tensor, seed: int) -> tuple[float, float]:
    """The lowest faithfulness of the circuit with a random part of the outside left in place (the
    rest ablated) over :data:`PARTIAL_CHECKS` draws, and that draw's kept share: what ``verify``'s
    partial-ablation check will see, so the proposed sufficiency threshold can allow for it."""
    if not bool(keep.any()):
        return float("nan"), float("nan")
    results = [(inputs.faithfulness(inputs.run(model, layout.mask(keep | extra), reference)), PARTIAL_FRACTIONS[i % 3])
               for i, extra in enumerate(_partial_sets(layout.size, PARTIAL_CHECKS, seed + 1))]
    return min(results)


def _worst_adversarial_faithfulness(model: Transformer, layout: _Layout, inputs: TaskInputs, reference: Reference,
                                    keep: torch.Tensor) -> float:
    """The lowest faithfulness of the circuit under the partial ablations a robust search grows against
    (:meth:`_Judge.failing`: the most hurting outside nodes kept, the most helping ones ablated), chosen
    afresh on ``inputs``: what ``verify``'s adversary will see, so the proposed claim can allow for it."""
    if not bool(keep.any()):
        return float("nan")
    judge = _Judge(model, inputs, reference, layout, "faithfulness", 0.0, 0.0)
    conditions = [keep | extra for extra in judge._hurting_sets(keep)] + [~ablated for ablated in judge._helping_sets(keep)]
    return min((inputs.faithfulness(inputs.run(model, layout.mask(c), reference)) for c in conditions), default=float("nan"))


def _faithfulness_stderr(inputs: TaskInputs, logits: torch.Tensor) -> float:
    """Standard error of the faithfulness estimate (per-example shares of the full model's effect)."""
    m0 = inputs.logit_diffs(inputs.empty)
    denominator = float((inputs.logit_diffs(inputs.full) - m0).mean())
    if not denominator:
        return float("nan")
    shares = (inputs.logit_diffs(logits) - m0) / denominator
    return float(shares.std()) / math.sqrt(shares.numel())


def circuit_edge_count(mask: Mask, model: Transformer) -> int:
    """Non-zero weights whose two ends are kept nodes and that the mask keeps (an edge-level circuit ablates the
    unstated ones); inputs and outputs are not circuit nodes."""
    induced = mask.induced(model)
    return sum(int((t & mask.edges[p]).sum()) for p, t in induced.edges.items() if p not in IO_WEIGHTS)


def jaccard(a: Mask, b: Mask) -> float:
    """|a ∩ b| / |a ∪ b| over nodes (1.0 for two empty circuits)."""
    union = (a | b).node_count()
    return (a & b).node_count() / union if union else 1.0


def shuffled_answers(task: Task) -> Task:
    """A copy of ``task`` whose correct and wrong answers are swapped at random per example.

    A sanity check for discovery: nothing in the input predicts the answer any more, so no circuit
    should be found that explains it.
    """

    def generate(sampler):
        example = task.generate(sampler)
        if sampler.boolean():
            example = replace(example, correct=example.wrong, wrong=example.correct)
        return example

    return Task(f"{task.name}_shuffled", f"{task.description} (answers swapped at random)", generate,
                dict(task.features), dict(task.positions), task.answers, task.tags)
