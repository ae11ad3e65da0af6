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


# ---- options for imported models (docs/models.md); off by default ----------------------------------------

@pytest.mark.parametrize("change, message", [
    ({"act_fn": "swish"}, "act_fn"),
    ({"norm_eps": 0.0}, "norm_eps"),
    ({"topk_fraction": 0.5}, "go together"),
    ({"topk_sites": ("q",)}, "go together"),
    ({"topk_fraction": 0.5, "topk_sites": ("q", "query")}, "topk_sites"),
    ({"topk_fraction": 0.5, "topk_sites": ("q", "q")}, "distinct"),
    ({"topk_fraction": 1.5, "topk_sites": ("q",)}, r"\(0, 1\]"),
    ({"topk_fraction": 0.5, "topk_sites": ("q",), "act_topk": 4}, "exclude each other"),
])
def test_imported_options_are_validated(change, message):
    with pytest.raises(ValueError, match=message):
        ModelConfig(**{**TINY.to_dict(), **change})


def test_defaults_add_no_parameters_or_hooks(model):
    assert (TINY.norm_weight, TINY.norm_eps, TINY.act_fn, TINY.topk_fraction, TINY.topk_sites, TINY.bigram) == (
        False, 1e-5, "relu", None, (), False)
    assert not [n for n, _ in model.named_parameters() if n.endswith((".w", "bigram"))]
    assert not [h for h in model.hook_names() if "pre_topk" in h]


def test_topk_sites_keep_floor_of_the_fraction_of_each_width():
    cfg = ModelConfig(**{**TINY.to_dict(), "topk_fraction": 0.3, "act_fn": "gelu",
                         "topk_sites": ("attn_in", "q", "k", "v", "attn_out", "mlp_in", "mlp_post", "mlp_out")})
    torch.manual_seed(1)
    m = Transformer(cfg).eval()
    for p in m.parameters():  # dense random values: no entry is zero by chance
        torch.nn.init.normal_(p.data)
    _, cache = m.run_with_cache(torch.randint(0, 256, (2, 7)))
    widths = {"ln1.hook_normalized": 16, "attn.hook_q": 16, "attn.hook_k": 16, "attn.hook_v": 16, "hook_attn_out": 16,
              "ln2.hook_normalized": 16, "mlp.hook_post": 32, "hook_mlp_out": 16}
    for hook, width in widths.items():
        kept = (cache[f"blocks.1.{hook}"].flatten(2) != 0).sum(-1)
        assert bool((kept == int(0.3 * width)).all()), hook
    # q/k/v: all heads compete, so the two heads need not keep the same number
    per_head = (cache["blocks.0.attn.hook_q"] != 0).sum(-1)
    assert bool((per_head[..., 0] != per_head[..., 1]).any())
    assert not torch.equal(cache["blocks.0.attn.hook_q_pre_topk"], cache["blocks.0.attn.hook_q"])


def test_norm_gain_gelu_and_bigram_table():
    cfg = ModelConfig(**{**TINY.to_dict(), "norm_weight": True, "norm_eps": 1e-6, "act_fn": "gelu", "bigram": True})
    torch.manual_seed(2)
    m = Transformer(cfg).eval()
    assert torch.equal(m.ln_final.w, torch.ones(16)) and not m.unembed.bigram.any()
    tokens = torch.randint(0, 200, (1, 6))
    with torch.no_grad():
        base, cache = m.run_with_cache(tokens)
        assert torch.equal(cache["blocks.0.mlp.hook_post"], torch.nn.functional.gelu(cache["blocks.0.mlp.hook_pre"]))
        m.blocks[0].ln1.w[3] = 2.0
        assert torch.equal(m.run_with_cache(tokens)[1]["blocks.0.ln1.hook_normalized"][..., 3],
                           2.0 * cache["blocks.0.ln1.hook_normalized"][..., 3])
        m.blocks[0].ln1.w[3] = 1.0
        m.unembed.bigram[tokens[0, 2], 7] = 5.0  # the row of the current token, the column of the next-token logit
        moved = m(tokens) - base
    expected = torch.zeros_like(moved)
    expected[0, tokens[0] == tokens[0, 2], 7] = 5.0
    torch.testing.assert_close(moved, expected, atol=1e-5, rtol=0)


def test_zeros_keeps_norm_gains_at_one():
    cfg = ModelConfig(**{**TINY.to_dict(), "norm_weight": True})
    m = Transformer.zeros(cfg)
    assert torch.equal(m.blocks[1].ln2.w, torch.ones(16)) and not m.blocks[1].mlp.W_in.any()
