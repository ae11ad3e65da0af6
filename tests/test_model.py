"""Model shapes, causal masking, hooks and activation sparsity."""

import pytest
import torch

from circuitspec.engine.model import ModelConfig, Transformer, abs_topk

TINY = ModelConfig(n_layers=2, d_model=16, n_heads=2, d_head=8, d_mlp=32, n_ctx=24)


@pytest.fixture
def model():
    torch.manual_seed(0)
    return Transformer(TINY).eval()


def test_logit_shape(model):
    tokens = torch.randint(0, 256, (3, 10))
    assert model(tokens).shape == (3, 10, 256)


def test_causal_masking(model):
    """Changing a later token never changes earlier logits."""
    tokens = torch.randint(0, 256, (1, 12))
    changed = tokens.clone()
    changed[0, 7:] = (changed[0, 7:] + 1) % 256
    a, b = model(tokens), model(changed)
    assert torch.allclose(a[0, :7], b[0, :7], atol=1e-6)
    assert not torch.allclose(a[0, 7:], b[0, 7:])


def test_context_limit(model):
    with pytest.raises(ValueError, match="exceeds"):
        model(torch.zeros(1, TINY.n_ctx + 1, dtype=torch.long))


def test_hook_names_and_shapes(model):
    tokens = torch.randint(0, 256, (2, 5))
    _, cache = model.run_with_cache(tokens)
    assert cache["blocks.1.attn.hook_v"].shape == (2, 5, 2, 8)
    assert cache["blocks.0.attn.hook_pattern"].shape == (2, 2, 5, 5)
    assert cache["blocks.0.mlp.hook_post"].shape == (2, 5, 32)
    assert cache["blocks.1.hook_resid_mid"].shape == (2, 5, 16)
    assert cache["hook_logits"].shape == (2, 5, 256)
    assert torch.equal(cache["blocks.0.hook_resid_post"], cache["blocks.1.hook_resid_pre"])


def test_hook_replaces_activation_and_detaches(model):
    tokens = torch.randint(0, 256, (1, 6))
    before = model(tokens)
    with model.hooks({"blocks.1.hook_resid_post": lambda x, name: torch.zeros_like(x)}):
        zeroed = model(tokens)
    expected = model.unembed.b_U.expand_as(zeroed)
    assert torch.allclose(zeroed, expected)
    assert torch.equal(model(tokens), before)  # hooks removed on exit


def test_hook_shape_mismatch_is_an_error(model):
    with model.hooks({"blocks.0.mlp.hook_post": lambda x, name: x[..., :3]}):
        with pytest.raises(ValueError, match="shape"):
            model(torch.zeros(1, 3, dtype=torch.long))


def test_unknown_hook_name(model):
    with pytest.raises(KeyError):
        with model.hooks({"blocks.9.hook_nothing": lambda x, n: x}):
            pass


def test_attention_sink_can_silence_a_head(model):
    with torch.no_grad():
        model.blocks[0].attn.sink.fill_(1e4)
    _, cache = model.run_with_cache(torch.randint(0, 256, (1, 6)), ["blocks.0.attn.hook_pattern", "blocks.0.attn.hook_z"])
    assert cache["blocks.0.attn.hook_pattern"].abs().max() < 1e-6
    assert cache["blocks.0.attn.hook_z"].abs().max() < 1e-6


def test_abs_topk_keeps_largest_magnitudes():
    x = torch.tensor([[0.1, -3.0, 2.0, 0.5]])
    assert torch.equal(abs_topk(x, 2), torch.tensor([[0.0, -3.0, 2.0, 0.0]]))


def test_activation_sparsity_limits_residual_reads():
    cfg = ModelConfig(n_layers=1, d_model=16, n_heads=2, d_head=8, d_mlp=32, n_ctx=8, act_topk=4)
    _, cache = Transformer(cfg).run_with_cache(torch.randint(0, 256, (2, 5)), ["blocks.0.ln1.hook_normalized"])
    assert ((cache["blocks.0.ln1.hook_normalized"] != 0).sum(-1) <= 4).all()


def test_config_rejects_bad_values():
    with pytest.raises(ValueError):
        ModelConfig(d_model=0)
    with pytest.raises(ValueError, match="unknown keys"):
        ModelConfig.from_dict({"n_layers": 1, "colour": "red"})
