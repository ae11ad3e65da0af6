"""Checkpoints: bit-exact round trip, compact sparse storage, clear errors for bad files."""

import json

import pytest
import torch

from circuitspec.engine.checkpoint import load_checkpoint, save_checkpoint
from circuitspec.engine.errors import ModelError
from circuitspec.engine.model import ModelConfig, Transformer
from circuitspec.engine.sparsity import project_model_

CFG = ModelConfig(n_layers=1, d_model=16, n_heads=2, d_head=8, d_mlp=32, n_ctx=8)


def make(density):
    torch.manual_seed(0)
    model = Transformer(CFG)
    for p in model.parameters():  # non-zero biases too, so the round trip is tested on every tensor
        torch.nn.init.normal_(p.data)
    project_model_({n: p.data for n, p in model.weight_matrices().items()}, density)
    return model


@pytest.mark.parametrize("density", [0.05, 1.0])
def test_round_trip_is_bit_exact(tmp_path, density):
    model = make(density)
    save_checkpoint(model, tmp_path, {"seed": 0})
    loaded = load_checkpoint(tmp_path)
    for (name, a), (_, b) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert torch.equal(a, b), name


def test_sparse_weights_are_stored_compactly(tmp_path):
    save_checkpoint(make(0.05), tmp_path / "sparse", {})
    save_checkpoint(make(1.0), tmp_path / "dense", {})
    sparse = (tmp_path / "sparse" / "model.safetensors").stat().st_size
    dense = (tmp_path / "dense" / "model.safetensors").stat().st_size
    assert sparse < 0.25 * dense
    layout = json.loads((tmp_path / "sparse" / "config.json").read_text())["layout"]
    assert layout["blocks.0.mlp.W_in"]["storage"] == "sparse"
    assert layout["blocks.0.mlp.b_in"]["storage"] == "dense"


@pytest.fixture
def saved(tmp_path):
    save_checkpoint(make(0.1), tmp_path, {})
    return tmp_path


def test_missing_directory(tmp_path):
    with pytest.raises(ModelError, match="no such checkpoint"):
        load_checkpoint(tmp_path / "nope")


def test_missing_weights(saved):
    (saved / "model.safetensors").unlink()
    with pytest.raises(ModelError, match="missing"):
        load_checkpoint(saved)


def test_corrupt_weights_fail_the_hash_check(saved):
    data = bytearray((saved / "model.safetensors").read_bytes())
    data[-5] ^= 0xFF
    (saved / "model.safetensors").write_bytes(bytes(data))
    with pytest.raises(ModelError, match="hash does not match"):
        load_checkpoint(saved)


def test_truncated_weights_with_matching_hash_are_still_rejected(saved):
    from circuitspec.engine.checkpoint import sha256_file
    (saved / "model.safetensors").write_bytes(b"garbage")
    manifest = json.loads((saved / "manifest.json").read_text())
    manifest["weights_sha256"] = sha256_file(saved / "model.safetensors")
    (saved / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ModelError, match="safetensors"):
        load_checkpoint(saved)


def test_config_that_does_not_match_the_weights(saved):
    config = json.loads((saved / "config.json").read_text())
    config["model"]["d_mlp"] = 64
    (saved / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelError, match="shape"):
        load_checkpoint(saved)


def test_invalid_json_config(saved):
    (saved / "config.json").write_text("{not json")
    with pytest.raises(ModelError, match="not valid JSON"):
        load_checkpoint(saved)


def test_unknown_config_key(saved):
    config = json.loads((saved / "config.json").read_text())
    config["model"]["flux"] = 1
    (saved / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelError, match="unknown keys"):
        load_checkpoint(saved)


def test_not_a_checkpoint(saved):
    (saved / "config.json").write_text(json.dumps({"format": "something-else"}))
    with pytest.raises(ModelError, match="not a circuitspec checkpoint"):
        load_checkpoint(saved)


def test_options_for_imported_models_round_trip_and_stay_out_of_default_configs(tmp_path):
    """The option fields are optional in config.json: checkpoints written before them (and every default
    model now) omit them; a model using them round-trips bit exactly."""
    save_checkpoint(make(0.1), tmp_path / "plain", {})
    table = json.loads((tmp_path / "plain" / "config.json").read_text())["model"]
    assert set(table) == {"n_layers", "d_model", "n_heads", "d_head", "d_mlp", "n_ctx", "d_vocab", "act_topk", "attn_sink"}
    cfg = ModelConfig(n_layers=1, d_model=16, n_heads=2, d_head=8, d_mlp=32, n_ctx=8, d_vocab=200, norm_weight=True,
                      norm_eps=1e-7, act_fn="gelu", topk_fraction=0.25, topk_sites=("q", "mlp_post"), bigram=True)
    torch.manual_seed(0)
    model = Transformer(cfg)
    for p in model.parameters():
        torch.nn.init.normal_(p.data)
    save_checkpoint(model, tmp_path / "options", {})
    loaded = load_checkpoint(tmp_path / "options")
    assert loaded.cfg == cfg
    tokens = torch.randint(0, 200, (2, 8))
    with torch.no_grad():
        assert torch.equal(loaded(tokens), model(tokens))


@pytest.mark.parametrize("key, value, message", [
    ("act_fn", "tanh", "act_fn must be one of relu, gelu"),
    ("topk_sites", ["q"], "topk_fraction and topk_sites go together"),
    ("norm_weight", 1, "norm_weight must be true or false"),
    ("d_vocab", 100, "d_vocab 100 is below the 128 ASCII byte tokens"),
])
def test_bad_option_values_are_model_errors(saved, key, value, message):
    path = saved / "config.json"
    config = json.loads(path.read_text())
    config["model"][key] = value
    path.write_text(json.dumps(config))
    with pytest.raises(ModelError, match=message):
        load_checkpoint(saved)
