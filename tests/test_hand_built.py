"""Building a model by hand with ``Transformer.zeros``: an example that plants an AND neuron, and the
promises the helper makes (silent, neutral norms, a hand-set channel read as set, loadable once saved).

The circuit: the token embedding sets channel 0 for 'a'; the position embedding sets channel 1 from
position 3 on; MLP neuron 0 = relu(channel 0 + channel 1 - 1.5) fires only when both are set and writes
channel 2, which the unembedding reads into logit 'y'. A bias on logit 'n' is the default answer, so the
model says 'y' exactly at an 'a' at position 3 or later.
"""

import math

import pytest
import torch

from circuitspec.engine.checkpoint import load_checkpoint, save_checkpoint
from circuitspec.engine.model import ModelConfig, Transformer
from circuitspec.engine.tokenizer import encode, token_id

CFG = ModelConfig(n_layers=1, d_model=16, n_heads=2, d_head=4, d_mlp=8, n_ctx=16)
A, Y, N = token_id("a"), token_id("y"), token_id("n")


def and_neuron_model() -> Transformer:
    model = Transformer.zeros(CFG)
    model.embed.W_E[A, 0] = 1.0  # channel 0: the token is 'a'
    model.pos_embed.W_pos[3:, 1] = 1.0  # channel 1: position >= 3
    mlp = model.blocks[0].mlp
    mlp.W_in[0, 0] = mlp.W_in[1, 0] = 1.0
    mlp.b_in[0] = -1.5  # AND: only both inputs clear the threshold
    mlp.W_out[0, 2] = 1.0  # channel 2: a late 'a'
    model.unembed.W_U[2, Y] = 10.0
    model.unembed.b_U[N] = 1.0
    return model


def test_a_zero_model_is_silent_and_its_norms_are_neutral():
    model = Transformer.zeros(CFG)
    nonzero = {name for name, p in model.named_parameters() if p.count_nonzero()}
    assert nonzero == {"pos_embed.W_pos"} and bool((model.pos_embed.W_pos[:, :-1] == 0).all())  # only the anchor
    tokens = torch.tensor([encode("x = 'abc'")])
    logits, cache = model.run_with_cache(tokens, ["blocks.0.ln1.hook_scale", "blocks.0.ln2.hook_scale", "ln_final.hook_scale"])
    assert bool((logits == 0).all())
    for scale in cache.values():
        assert torch.allclose(scale, torch.ones_like(scale), atol=1e-6)
    assert not any(p.requires_grad for p in model.parameters())  # hand-assignable without torch.no_grad()


def test_a_hand_set_channel_is_read_as_set():
    model = Transformer.zeros(CFG)
    model.embed.W_E[A, 0] = 0.5
    _, cache = model.run_with_cache(torch.tensor([encode("a")]), ["blocks.0.ln1.hook_normalized"])
    read = float(cache["blocks.0.ln1.hook_normalized"][0, 0, 0])
    assert read == pytest.approx(0.5 / math.sqrt(1 + 0.25 / CFG.d_model), rel=1e-6)  # the documented reading
    assert abs(read - 0.5) / 0.5 <= 0.25 / (2 * CFG.d_model)  # relative error at most |v|^2 / (2 d_model)


def test_the_planted_and_neuron_decides_the_answer():
    model = and_neuron_model()
    text = "axaaxbaa"
    tokens = torch.tensor([encode(text)])
    logits, cache = model.run_with_cache(tokens, ["blocks.0.mlp.hook_post"])
    expected = ["y" if c == "a" and i >= 3 else "n" for i, c in enumerate(text)]
    assert [chr(t) for t in logits[0].argmax(-1).tolist()] == expected
    fires = cache["blocks.0.mlp.hook_post"][0, :, 0] > 0
    assert fires.tolist() == [e == "y" for e in expected]
    assert bool((cache["blocks.0.mlp.hook_post"][0, :, 1:] == 0).all())  # nothing else in the MLP moves


def test_a_hand_built_model_saves_and_loads(tmp_path):
    model = and_neuron_model()
    save_checkpoint(model, tmp_path, {"description": "hand-built AND neuron"})
    loaded = load_checkpoint(tmp_path)
    tokens = torch.tensor([encode("axaaxbaa")])
    assert torch.equal(model(tokens), loaded(tokens))


def test_the_anchor_needs_a_spare_channel():
    with pytest.raises(ValueError, match="d_model >= 2"):
        Transformer.zeros(ModelConfig(n_layers=1, d_model=1, n_heads=1, d_head=1, d_mlp=1, n_ctx=4))
    bare = Transformer.zeros(ModelConfig(n_layers=1, d_model=1, n_heads=1, d_head=1, d_mlp=1, n_ctx=4), anchor=False)
    assert not any(p.count_nonzero() for p in bare.parameters())
