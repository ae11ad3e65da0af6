"""What the circuit-alone run shows at the answer position: the ranges the entailment check assumes,
measured on one sample of inputs and checked on a fresh one."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..engine.ablation import run_conditions_with_cache
from ..engine.batch import encode_for
from ..engine.naming import resid_hook
from ..lang.resolve import ResolvedClaim, ResolvedSpec
from ..verify.examples import sample_examples
from ..verify.runner import RunSettings, make_reference

MEASURE_FACTOR = 4  # the assumptions' ranges come from this many times the claim's sample count


@dataclass
class Observation:
    """What the circuit-alone run shows at the answer position on a sample of inputs."""

    examples: list
    reference: object
    answer: dict[str, np.ndarray]  # scale hook -> [n]; "self/earlier(L, h)" -> attention mass [n]
    value_lo: dict[int, np.ndarray]  # layer -> [n, H, dh]: min / max of each value channel over the
    value_hi: dict[int, np.ndarray]  # positions before the answer, per input
    entering: dict[int, np.ndarray]  # layer -> [n, d_model]: the residual entering that block


@dataclass
class Measurements:
    """The samples the assumptions come from, and the fresh samples they are checked on. All four
    runs share one ablation reference, so a fresh sample differs from the measured one only in its
    inputs (a reference averaged over a different number of inputs would shift every constant)."""

    claim_inputs: Observation  # inputs the claim covers: scales, attention, values
    claim_check: Observation | None  # None when the fresh sample found no input the claim covers
    task_inputs: Observation  # any task input: the box of the residual entering the encoding
    task_check: Observation


def observe(resolved: ResolvedSpec, claim: ResolvedClaim, settings: RunSettings, seed: str, layers: range,
             samples: int, conditions, reference=None) -> Observation | None:
    """Run the circuit alone on ``samples`` inputs meeting ``conditions`` and keep what the encoding of
    ``layers`` needs at the answer position; ``reference`` (the ablation's constants) is made if None."""
    model, cfg = resolved.context.model, resolved.context.cfg
    examples = sample_examples(resolved.task, samples, seed, conditions)
    if not examples:
        return None
    batch = encode_for(model, examples, resolved.task.name).to(settings.device)
    if reference is None:
        reference = make_reference(resolved, claim.ablation, claim.ablation_task, batch, settings, examples=examples)
    scale_hooks = [f"blocks.{layer}.{norm}.hook_scale" for layer in layers for norm in ("ln1", "ln2")] + ["ln_final.hook_scale"]
    attn_hooks = [f"blocks.{layer}.attn.{name}" for layer in layers for name in ("hook_pattern", "hook_v")]
    entering_hooks = {layer: resid_hook(layer, cfg.n_layers) for layer in layers}
    _, cache = run_conditions_with_cache(model, batch.tokens, [resolved.mask], reference, batch.answer_pos,
                                         scale_hooks + attn_hooks + list(entering_hooks.values()))
    rows, pos = torch.arange(len(examples)), batch.answer_pos
    answer = {h: cache[h][0][rows, pos, 0].double().cpu().numpy() for h in scale_hooks}
    entering = {layer: cache[hook][0][rows, pos].double().cpu().numpy() for layer, hook in entering_hooks.items()}
    earlier = torch.arange(cfg.n_ctx)[None, :cache[attn_hooks[0]].shape[-1]] < pos[:, None]  # [n, T]
    value_lo, value_hi = {}, {}
    for layer in layers:
        pattern = cache[f"blocks.{layer}.attn.hook_pattern"][0][rows, :, pos]  # [n, H, T]: from the answer position
        for h in range(cfg.n_heads):
            answer[f"self({layer}, {h})"] = pattern[rows, h, pos].double().cpu().numpy()
            answer[f"earlier({layer}, {h})"] = (pattern[:, h] * earlier).sum(-1).double().cpu().numpy()
        v = cache[f"blocks.{layer}.attn.hook_v"][0].double()  # [n, T, H, dh]
        hide = (~earlier)[:, :, None, None]
        value_lo[layer] = v.masked_fill(hide, float("inf")).amin(1).cpu().numpy()
        value_hi[layer] = v.masked_fill(hide, float("-inf")).amax(1).cpu().numpy()
    return Observation(examples, reference, answer, value_lo, value_hi, entering)


def measure(resolved: ResolvedSpec, claim: ResolvedClaim, settings: RunSettings, layers: range) -> Measurements | None:
    """Ranges are extremes, so they are measured on more inputs than they are checked on."""
    seed, n, when = settings.seed, MEASURE_FACTOR * settings.samples, claim.claim.conditions
    claim_inputs = observe(resolved, claim, settings, f"{seed}:prove", layers, n, when)
    if claim_inputs is None:
        return None
    ref = claim_inputs.reference
    return Measurements(
        claim_inputs,
        observe(resolved, claim, settings, f"{seed}:prove-check", layers, settings.samples, when, ref),
        observe(resolved, claim, settings, f"{seed}:prove-task", layers, n, (), ref),
        observe(resolved, claim, settings, f"{seed}:prove-task-check", layers, settings.samples, (), ref))
