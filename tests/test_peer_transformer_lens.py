"""The TransformerLens port that benchmarks/ablation_throughput.py times against circuitspec computes the
same function: the benchmark's comparison means nothing otherwise. Needs the benchmark-only extra
(``.[bench]``); CI installs only ``.[test]`` and skips this file."""

import sys
from pathlib import Path

import pytest
import torch

pytest.importorskip("transformer_lens")

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import peer_transformer_lens as peer_tl  # noqa: E402

from circuitspec.engine.ablation import Ablation, Reference, run_conditions  # noqa: E402
from circuitspec.engine.masks import Mask, MaskSpace  # noqa: E402
from circuitspec.engine.model import ModelConfig, Transformer  # noqa: E402

CFG = ModelConfig(n_layers=2, d_model=16, n_heads=2, d_head=8, d_mlp=32, n_ctx=12)


def tiny_model(dtype: torch.dtype, **options) -> Transformer:
    """Random weights, biases and sinks, scaled up so that attention is far from uniform and the sink takes
    a real share of it (head 0 much, head 1 little): a port that ignored the sink would be far off."""
    torch.manual_seed(0)
    model = Transformer(ModelConfig(**{**CFG.to_dict(), **options})).to(dtype).eval().requires_grad_(False)
    for name, p in model.named_parameters():
        if name.endswith(".w"):
            p.uniform_(0.5, 1.5)
        else:
            p.normal_(std=0.5 if name.split(".")[-1].startswith("W_") else 0.3)
    for block in model.blocks:
        block.attn.sink.copy_(torch.tensor([2.0, -1.0]))
    return model


def tokens(rows: int = 5) -> torch.Tensor:
    return torch.randint(0, CFG.d_vocab, (rows, CFG.n_ctx), generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize("options", [{}, {"norm_weight": True, "act_fn": "gelu"}])
def test_port_reproduces_the_logits_exactly_in_float64(options):
    model = tiny_model(torch.float64, **options)
    peer = peer_tl.to_hooked_transformer(model)
    assert peer_tl.logit_difference(model, peer, tokens()) < 1e-12


def test_port_matches_in_float32_and_the_sink_is_what_makes_it_match():
    model = tiny_model(torch.float32)
    peer = peer_tl.to_hooked_transformer(model)
    assert peer_tl.logit_difference(model, peer, tokens()) < 1e-4
    peer.reset_hooks(including_permanent=True)  # the same weights without the sink's two hooks
    assert peer_tl.logit_difference(model, peer, tokens()) > 1e-2


def test_hook_names_differ_only_where_documented():
    model = tiny_model(torch.float32)
    only_ours, only_theirs = peer_tl.hook_name_differences(model, peer_tl.to_hooked_transformer(model))
    assert only_ours == ["hook_logits"]
    assert {name.split(".", 2)[-1] for name in only_theirs} == {
        "hook_attn_in", "hook_q_input", "hook_k_input", "hook_v_input", "hook_mlp_in", "attn.hook_result"}
    assert set(MaskSpace.for_config(CFG).node_shapes) <= set(model.hook_names()) - set(only_ours)


def test_run_with_hooks_mean_ablation_equals_run_conditions():
    """The benchmark's TransformerLens loop computes circuitspec's conditions, node for node."""
    model = tiny_model(torch.float32)
    peer = peer_tl.to_hooked_transformer(model)
    batch = tokens(6)
    answer_pos = torch.tensor([3, 11, 7, 0, 11, 5])
    lengths = answer_pos + 1
    reference = Reference.compute(model, Ablation("mean"), batch, lengths, batch, lengths)
    space = MaskSpace.for_config(model.cfg)
    gen = torch.Generator().manual_seed(2)
    names = list(Mask.full(space).node_names())
    masks = [Mask.from_nodes(space, [names[i] for i in torch.randperm(len(names), generator=gen)[:size].tolist()])
             for size in (3, len(names) // 2, len(names) - 1)]
    expected = run_conditions(model, batch, masks, reference, answer_pos=answer_pos)
    rows = torch.arange(len(batch))
    with torch.no_grad():
        got = torch.stack([peer.run_with_hooks(batch, fwd_hooks=peer_tl.mean_ablation_hooks(m, reference))[rows, answer_pos]
                           for m in masks])
    assert (got - expected).abs().max() < 1e-4
    assert (expected[0] - expected[2]).abs().max() > 1e-2  # the conditions differ: the check has teeth


def test_models_with_abstopk_or_a_bigram_table_are_refused():
    for options in ({"act_topk": 4}, {"bigram": True}):
        with pytest.raises(ValueError, match="no TransformerLens counterpart"):
            peer_tl.hooked_config(Transformer(ModelConfig(**{**CFG.to_dict(), **options})))
