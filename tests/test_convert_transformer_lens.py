"""TransformerLens 2.x HookedTransformers in circuitspec's model (engine/convert_transformer_lens.py).

Two halves. The first needs no TransformerLens: hand-made configs and state dicts with TransformerLens's
names, checked against a plain re-statement of HookedTransformer's forward pass written here (so the
conversion, the LayerNorm folding included, is tested in CI, which does not install TransformerLens),
the strictness, the command line, and `check` / `verify` on a converted model. The second builds random
HookedTransformers with TransformerLens itself (skipped where it is not installed: the `transformer-lens` extra) and
compares logits and every shared hook.
"""

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from circuitspec.cli import main
from circuitspec.engine.checkpoint import load_checkpoint
from circuitspec.engine.convert_transformer_lens import (config_from_tl, from_hooked_transformer, hook_name_map,
                                                         load_transformer_lens, save_hooked_transformer, tl_shapes)
from circuitspec.engine.errors import ModelError
from tiny_bpe import reference_encode, write_bpe
from conftest import verify_one_head_spec

TOL = {"atol": 1e-4, "rtol": 1e-4}


def tl_config(**changes) -> dict:
    """The fields of a HookedTransformerConfig.to_dict() that matter, as a saved tl_config.json holds them."""
    config = {"n_layers": 2, "d_model": 32, "n_ctx": 64, "d_head": 8, "n_heads": 4, "d_mlp": 64, "d_vocab": 256,
              "act_fn": "gelu", "eps": 1e-5, "normalization_type": "LN", "positional_embedding_type": "standard",
              "d_vocab_out": 256, "dtype": "float32", "tokenizer_name": None}
    config.update(changes)
    return {"attn_scale": math.sqrt(config["d_head"]), **config}


def random_state(config: dict, seed: int = 0) -> dict[str, torch.Tensor]:
    """A HookedTransformer state dict for ``config``: every bias and norm bias non-zero, norm gains around 1,
    plus the mask and IGNORE buffers TransformerLens saves."""
    cfg, settings = config_from_tl(config)
    gen = torch.Generator().manual_seed(seed)
    state = {}
    for key, shape in tl_shapes(cfg, settings["normalization_type"]).items():
        if key.endswith(".w"):
            state[key] = 0.7 + 0.6 * torch.rand(shape, generator=gen)
        else:
            state[key] = torch.randn(shape, generator=gen) * (0.3 if len(shape) > 1 and key.split(".")[-1].startswith("W_") else 0.2)
    for i in range(cfg.n_layers):
        state[f"blocks.{i}.attn.mask"] = torch.ones(cfg.n_ctx, cfg.n_ctx).tril().bool()
        state[f"blocks.{i}.attn.IGNORE"] = torch.tensor(float("-inf"))
    return state


def write_dir(path: Path, config: dict, state: dict, weights: str = "safetensors") -> Path:
    path.mkdir(parents=True, exist_ok=True)
    (path / "tl_config.json").write_text(json.dumps(config))
    if weights == "safetensors":
        save_file(state, str(path / "tl_model.safetensors"))
    else:
        torch.save(state, path / "tl_model.pt")
    return path


def gelu_new(x):
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * torch.pow(x, 3.0))))


def reference_forward(config: dict, s: dict, tokens: torch.Tensor) -> torch.Tensor:
    """HookedTransformer's forward pass for the supported configs, written out from its definition
    (LayerNorm unfolded: centre, divide by sqrt(var + eps), gain, bias), independently of engine/model.py."""
    kind, eps = config["normalization_type"], config["eps"]

    def norm(x, name):
        if kind.startswith("LN"):
            x = x - x.mean(-1, keepdim=True)
        x = x / (x.pow(2).mean(-1, keepdim=True) + eps).sqrt()
        if kind in ("LN", "RMS"):
            x = x * s[f"{name}.w"]
        return x + s[f"{name}.b"] if kind == "LN" else x

    act = {"relu": F.relu, "gelu": F.gelu, "gelu_new": gelu_new}[config["act_fn"]]
    T = tokens.shape[1]
    x = s["embed.W_E"][tokens] + s["pos_embed.W_pos"][:T]
    for i in range(config["n_layers"]):
        b = f"blocks.{i}."
        h = norm(x, b + "ln1")
        q, k, v = (torch.einsum("btd,hde->bthe", h, s[b + f"attn.W_{n}"]) + s[b + f"attn.b_{n}"] for n in "QKV")
        scores = torch.einsum("bqhe,bkhe->bhqk", q, k) / math.sqrt(config["d_head"])
        scores = scores.masked_fill(~torch.ones(T, T).tril().bool(), float("-inf"))
        z = torch.einsum("bhqk,bkhe->bqhe", scores.softmax(-1), v)
        x = x + torch.einsum("bqhe,hed->bqd", z, s[b + "attn.W_O"]) + s[b + "attn.b_O"]
        x = x + act(norm(x, b + "ln2") @ s[b + "mlp.W_in"] + s[b + "mlp.b_in"]) @ s[b + "mlp.W_out"] + s[b + "mlp.b_out"]
    return norm(x, "ln_final") @ s["unembed.W_U"] + s["unembed.b_U"]


def tokens_for(config: dict, n: int = 3, seed: int = 1) -> torch.Tensor:
    return torch.randint(0, config["d_vocab"], (n, 20), generator=torch.Generator().manual_seed(seed))


def one_line(error: pytest.ExceptionInfo) -> str:
    message = error.value.message
    assert "\n" not in message and len(message) < 400
    return message


# ---- without TransformerLens ----------------------------------------------------------------------------

@pytest.mark.parametrize("changes", [
    {}, {"act_fn": "relu"}, {"normalization_type": "LNPre", "act_fn": "gelu_new"}, {"normalization_type": "RMS"},
    {"normalization_type": "RMSPre", "act_fn": "relu"}, {"act_fn": "gelu_fast", "eps": 1e-6},
])
def test_logits_match_the_written_out_forward(tmp_path, changes):
    config = tl_config(**changes)
    state = random_state(config)
    model, info = load_transformer_lens(write_dir(tmp_path / "tl", config, state))
    reference = {**config, "act_fn": {"gelu_fast": "gelu_new"}.get(config["act_fn"], config["act_fn"])}
    tokens = tokens_for(config)
    with torch.no_grad():
        expected = reference_forward(reference, {k: v.double() for k, v in state.items()}, tokens).float()
        torch.testing.assert_close(model(tokens), expected, **TOL)
    folded = config["normalization_type"].startswith("LN")
    assert info["processing"].startswith("fold_ln") == folded and info["source_weights"] == "tl_model.safetensors"
    assert model.cfg.norm_weight == (config["normalization_type"] == "RMS") and not model.cfg.attn_sink


def test_a_tanh_gelu_model_round_trips_and_its_subgraph_path_matches_the_masked_forward(tmp_path):
    """act_fn gelu_tanh (model.py), new with this converter: saved and loaded exactly, and the subgraph
    path (engine/subgraph.py) computes it as the masked forward does."""
    from circuitspec.engine.ablation import Ablation, Reference, run_conditions_with_cache
    from circuitspec.engine.checkpoint import save_checkpoint
    from circuitspec.engine.masks import Mask, MaskSpace
    from circuitspec.engine.subgraph import run_circuit

    config = tl_config(act_fn="gelu_new")
    model, _ = load_transformer_lens(write_dir(tmp_path / "tl", config, random_state(config)))
    assert model.cfg.act_fn == "gelu_tanh"
    save_checkpoint(model, tmp_path / "ckpt", {})
    loaded = load_checkpoint(tmp_path / "ckpt")
    tokens = tokens_for(config)
    with torch.no_grad():
        assert loaded.cfg == model.cfg and torch.equal(loaded(tokens), model(tokens))
    lengths = torch.full((3,), 20)
    ref_tokens = tokens_for(config, 6, seed=2)
    reference = Reference.compute(model, Ablation("mean"), tokens, lengths, ref_tokens, torch.full((6,), 20))
    space = MaskSpace.for_config(model.cfg)
    gen = torch.Generator().manual_seed(0)
    mask = Mask(space, {h: torch.rand(shape, generator=gen) < 0.2 for h, shape in space.node_shapes.items()}, Mask.full(space).edges)
    answer = torch.tensor([11, 7, 4])
    masked, _ = run_conditions_with_cache(model, tokens, [mask], reference, answer, capture=("hook_logits",))
    torch.testing.assert_close(run_circuit(model, tokens, mask, reference, answer), masked[0], **TOL)


def test_layer_norm_is_folded_so_the_residual_stream_is_centred(tmp_path):
    config = tl_config()
    model, _ = load_transformer_lens(write_dir(tmp_path / "tl", config, random_state(config)))
    with torch.no_grad():
        _, cache = model.run_with_cache(tokens_for(config))
    for name in ("hook_embed", "hook_pos_embed", "blocks.0.hook_attn_out", "blocks.1.hook_mlp_out", "blocks.1.hook_resid_post"):
        assert cache[name].mean(-1).abs().max() < 1e-5, name
    for key in ("blocks.0.attn.W_Q", "blocks.1.mlp.W_in", "unembed.W_U"):  # the weights that read it are centred too
        p = dict(model.named_parameters())[key]
        assert p.mean(-2).abs().max() < 1e-6, key


def test_tied_embeddings_and_zero_biases_convert(tmp_path):
    config = tl_config()
    state = random_state(config)
    state["unembed.W_U"] = state["embed.W_E"].T.clone()
    state.update({k: torch.zeros_like(v) for k, v in state.items() if ".b_" in k or k.endswith(".b")})
    model, _ = load_transformer_lens(write_dir(tmp_path / "tl", config, state, "pt"))
    tokens = tokens_for(config)
    with torch.no_grad():
        torch.testing.assert_close(model(tokens), reference_forward(config, state, tokens), **TOL)


@pytest.mark.parametrize("edit, expected", [
    (lambda s: s.pop("blocks.1.mlp.b_in"), "missing blocks.1.mlp.b_in"),
    (lambda s: s.pop("blocks.0.ln1.b"), "missing blocks.0.ln1.b"),
    (lambda s: s.__setitem__("blocks.0.attn.extra", torch.zeros(3)), "unexpected blocks.0.attn.extra"),
    (lambda s: s.__setitem__("unembed.W_U", torch.zeros(256, 32)), "unembed.W_U has shape (256, 32), the config implies (32, 256)"),
    (lambda s: s.__setitem__("ln_final.w", torch.zeros(32, dtype=torch.int32)), "int32"),
    (lambda s: s["embed.W_E"].__setitem__((0, 0), float("nan")), "NaN"),
    (lambda s: s.__setitem__("blocks.0.attn.mask", torch.ones(64, 64).bool()), "not the causal mask"),
    (lambda s: s.__setitem__("blocks.1.attn.IGNORE", torch.tensor(-1e5)), "IGNORE is not -inf"),
    (lambda s: [s.pop(k) for k in [k for k in s if k.startswith("blocks.1.")]], "missing blocks.1.ln1.w, blocks.1.ln1.b"),
])
def test_a_partial_or_wrong_state_dict_is_a_one_line_error(tmp_path, edit, expected):
    config = tl_config()
    state = random_state(config)
    edit(state)
    with pytest.raises(ModelError) as error:
        load_transformer_lens(write_dir(tmp_path / "tl", config, state))
    assert expected in one_line(error)


@pytest.mark.parametrize("changes, expected", [
    ({"positional_embedding_type": "rotary"}, "positional_embedding_type='rotary' is not supported"),
    ({"positional_embedding_type": "shortformer"}, "positional_embedding_type='shortformer' is not supported"),
    ({"parallel_attn_mlp": True}, "parallel_attn_mlp=True is not supported"),
    ({"gated_mlp": True}, "gated_mlp=True is not supported"),
    ({"attn_only": True}, "attn_only=True is not supported"),
    ({"final_rms": True}, "final_rms=True is not supported"),
    ({"n_key_value_heads": 2}, "n_key_value_heads=2 is not supported"),
    ({"use_local_attn": True}, "use_local_attn=True is not supported"),
    ({"attention_dir": "bidirectional"}, "attention_dir='bidirectional' is not supported"),
    ({"scale_attn_by_inverse_layer_idx": True}, "scale_attn_by_inverse_layer_idx=True is not supported"),
    ({"normalization_type": None}, "normalization_type=None is not supported"),
    ({"act_fn": "silu"}, "act_fn='silu' is not supported"),
    ({"act_fn": "solu_ln"}, "act_fn='solu_ln' is not supported"),
    ({"d_vocab_out": 10}, "d_vocab_out=10 differs from d_vocab=256"),
    ({"attn_scale": 1.0}, "attn_scale=1.0 is not supported"),
    ({"pfrac": 0.5}, "unknown config fields 'pfrac'"),
    ({"d_mlp": None}, "missing config fields d_mlp"),
    ({"n_heads": 0}, "n_heads must be a positive integer"),
    ({"tokenizer_name": "EleutherAI/pythia-70m"}, "tokenizer_name='EleutherAI/pythia-70m' is not a tokenizer circuitspec can read"),
    ({"n_layers": 3}, "missing blocks.2.ln1.w"),
])
def test_an_unsupported_config_is_a_one_line_error_naming_the_field(tmp_path, changes, expected):
    state = random_state(tl_config())
    with pytest.raises(ModelError) as error:
        load_transformer_lens(write_dir(tmp_path / "tl", tl_config(**changes), state))
    assert expected in one_line(error)


def test_drop_config_key_drops_an_unknown_field_and_reads_an_unknown_tokenizer_as_bytes(tmp_path):
    config = tl_config(pfrac=0.5, tokenizer_name="EleutherAI/pythia-70m")
    model, info = load_transformer_lens(write_dir(tmp_path / "tl", config, random_state(tl_config())),
                                        drop_keys=("pfrac", "tokenizer_name"))
    assert info["dropped_config_keys"] == ["pfrac", "tokenizer_name"] and model.tokenizer.name == "bytes"


class Payload:  # pickled by reference: loading it would import and call code
    def __reduce__(self):
        return (print, ("unpickled",))


def test_pt_files_never_unpickle_code(tmp_path, capsys):
    config = tl_config()
    state = random_state(config)
    state["payload"] = Payload()
    with pytest.raises(ModelError) as error:
        load_transformer_lens(write_dir(tmp_path / "tl", config, state, "pt"))
    assert "cannot be read" in one_line(error) and "unpickled" not in capsys.readouterr().out


def test_hook_names_are_ours():
    from circuitspec.engine.model import ModelConfig, Transformer

    ours = set(Transformer(ModelConfig(n_layers=2, d_model=8, n_heads=2, d_head=4, d_mlp=16, n_ctx=8, attn_sink=False)).hook_names())
    mapping = hook_name_map(2)
    assert set(mapping.values()) <= ours and ours - set(mapping.values()) == {"hook_logits"}


def test_convert_a_partial_state_dict_is_exit_3_with_one_line(tmp_path, capsys):
    config = tl_config()
    state = random_state(config)
    del state["pos_embed.W_pos"]
    broken = write_dir(tmp_path / "tl", config, state)
    proc = subprocess.run([sys.executable, "-m", "circuitspec", "convert", "--from", "transformer-lens", str(broken), "-o",
                           str(tmp_path / "out")], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 3 and "missing pos_embed.W_pos" in proc.stderr and "Traceback" not in proc.stderr + proc.stdout
    assert len([line for line in proc.stderr.splitlines() if line.startswith("error:")]) == 1
    assert not (tmp_path / "out" / "config.json").exists()
    assert main(["convert", "--from", "transformer-lens", str(tmp_path / "nothing"), "-o", str(tmp_path / "out2")]) == 3
    assert "no such directory" in capsys.readouterr().err
    with pytest.raises(ModelError, match="a TransformerLens model directory, not a circuitspec one") as error:
        load_checkpoint(broken)
    assert "circuitspec convert --from transformer-lens" in error.value.hint


def test_convert_then_check_and_verify_through_the_cli(tmp_path, capsys):
    """A byte-level model and one whose config names the tiny tinypython_2k BPE (tests/tiny_bpe.py, 2,048 ids)."""
    bpe_config = tl_config(d_vocab=2048, d_vocab_out=2048, tokenizer_name="tinypython_2k")
    sources = {"bytes": write_dir(tmp_path / "tl_bytes", tl_config(), random_state(tl_config())),
               "bpe": write_dir(tmp_path / "tl_bpe", bpe_config, random_state(bpe_config, seed=2))}
    write_bpe(sources["bpe"])
    for name, source in sources.items():
        assert main(["convert", "--from", "transformer-lens", str(source), "-o", str(tmp_path / name)]) == 0
        manifest = json.loads((tmp_path / name / "manifest.json").read_text())
        assert manifest["converted_from"]["source_format"] == "transformer-lens"
        assert manifest["tokenizer"]["kind"] == name
        converted, direct = load_checkpoint(tmp_path / name), load_transformer_lens(source)[0]
        assert converted.tokenizer.name == ("bytes" if name == "bytes" else "tinypython_2k")
        tokens = tokens_for(bpe_config if name == "bpe" else tl_config())
        with torch.no_grad():
            assert torch.equal(converted(tokens), direct(tokens))
        verify_one_head_spec(tmp_path, name, "a TransformerLens model, converted", capsys)
    (tmp_path / "tl_bpe" / "vocab.bpe").unlink()
    assert main(["convert", "--from", "transformer-lens", str(sources["bpe"]), "-o", str(tmp_path / "no_files")]) == 0
    assert "warning:" in capsys.readouterr().err
    assert main(["convert", "--from", "transformer-lens", str(sources["bytes"]), "-o", str(tmp_path / "bytes")]) == 2
    assert "not empty" in capsys.readouterr().err


def test_a_gpt2_model_reads_gpt2s_bpe_from_its_directory(tmp_path, capsys):
    """tokenizer_name gpt2 (and the GPT-2 family's names): GPT-2's split pattern (tiktoken's own) and
    end-of-text id 50256, with the merges from vocab.bpe + encoder.json in DIR; here a tiny stand-in for
    GPT-2's files (tests/tiny_bpe.py), so the model needs 50,257 logits."""
    from tiktoken_ext.openai_public import r50k_pat_str

    from circuitspec.engine.tokenizer_spec import KNOWN_BPE

    assert KNOWN_BPE["gpt2"].pattern == r50k_pat_str
    config = tl_config(d_model=16, d_head=4, d_mlp=32, d_vocab=50257, d_vocab_out=50257, tokenizer_name="gpt2-medium")
    source = write_dir(tmp_path / "tl", config, random_state(config))
    ids = write_bpe(source, endoftext=False)
    assert main(["convert", "--from", "transformer-lens", str(source), "-o", str(tmp_path / "out")]) == 0
    model = load_checkpoint(tmp_path / "out")
    assert model.tokenizer.name == "gpt2" and model.tokenizer.token_id("<|endoftext|>") == 50256
    for text in ("def f(x): return x's  \n\n  [[1]] = 12345", "x = [[[1]]]"):  # GPT-2's split, then the merges
        assert model.tokenizer.encode(text) == reference_encode(text, ids, r50k_pat_str)
    spec = tmp_path / "gpt2.circ"
    spec.write_text('spec gpt2 "a GPT-2-tokenized model"\nmodel "out"\ntask bracket_type\nablate mean over task\n\n'
                    "group head = blocks.1.attn.hook_z[head=1, *]\n\nclaim necessary faithfulness <= 5\n")
    assert main(["check", str(spec)]) == 0


# ---- with TransformerLens -------------------------------------------------------------------------------

def hooked(**changes):
    """A random HookedTransformer (no download) with non-zero biases and norm parameters."""
    tl = pytest.importorskip("transformer_lens", reason="TransformerLens 2.x (the transformer-lens extra) is not installed")
    cfg = tl.HookedTransformerConfig(**{"n_layers": 2, "d_model": 32, "n_heads": 4, "d_head": 8, "d_mlp": 64, "n_ctx": 32,
                                        "d_vocab": 256, "act_fn": "gelu", "normalization_type": "LN", "device": "cpu",
                                        "seed": 0, **changes})
    model = tl.HookedTransformer(cfg).eval()
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, p in model.named_parameters():
            last = name.split(".")[-1]
            if last == "w":
                p.copy_(0.7 + 0.6 * torch.rand(p.shape, generator=gen))
            elif last == "b" or last.startswith("b_"):
                p.copy_(0.2 * torch.randn(p.shape, generator=gen))
    return model


def folded_peer(model):
    """TransformerLens's own folded model (fold_ln + center_writing_weights, nothing else): the model whose
    activations a LayerNorm model's conversion reproduces."""
    import transformer_lens as tl

    norm = model.cfg.normalization_type
    cfg = tl.HookedTransformerConfig(**{**model.cfg.to_dict(), "normalization_type": "LNPre"})
    peer = tl.HookedTransformer(cfg).eval()
    peer.load_and_process_state_dict(model.state_dict(), fold_ln=norm == "LN", center_writing_weights=True,
                                     center_unembed=False, fold_value_biases=False)
    return peer


TL_CONFIGS = {
    "LN-gelu": {}, "LN-relu": {"act_fn": "relu"}, "LN-gelu_new": {"act_fn": "gelu_new"}, "LNPre-gelu": {"normalization_type": "LNPre"},
    "RMS-gelu": {"normalization_type": "RMS"}, "RMS-relu": {"normalization_type": "RMS", "act_fn": "relu"},
    "RMSPre-relu": {"normalization_type": "RMSPre", "act_fn": "relu"}, "LN-tied": {"tied": True},
}


@pytest.mark.parametrize("name", list(TL_CONFIGS))
def test_logits_and_every_shared_hook_match_transformer_lens(name):
    changes = dict(TL_CONFIGS[name])
    tied = changes.pop("tied", False)
    model = hooked(**changes)
    if tied:  # HookedTransformer has no tying: a tied model is one whose W_U is W_E transposed
        with torch.no_grad():
            model.unembed.W_U.copy_(model.embed.W_E.T)
    ours, info = from_hooked_transformer(model)
    tokens = torch.randint(0, 256, (3, 32), generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        theirs_logits = model(tokens)
        ours_logits, cache = ours.run_with_cache(tokens)
        torch.testing.assert_close(ours_logits, theirs_logits, **TOL)
        folded = model.cfg.normalization_type.startswith("LN")
        peer = folded_peer(model) if folded else model
        _, theirs = peer.run_with_cache(tokens)
    if folded:  # the conversion is TransformerLens's own folding, weight for weight
        for key, value in peer.state_dict().items():
            if key in dict(ours.named_parameters()):
                torch.testing.assert_close(dict(ours.named_parameters())[key], value, atol=1e-5, rtol=1e-5, msg=key)
    mapping = hook_name_map(model.cfg.n_layers)
    assert set(mapping) <= set(theirs.cache_dict)
    for tl_name, hook in mapping.items():
        value = cache[hook]
        expected = theirs[tl_name]
        if tl_name.endswith("hook_scale"):
            value = 1 / value  # TransformerLens stores the scale, circuitspec its reciprocal
        if tl_name.endswith("hook_normalized") and model.cfg.normalization_type == "RMS":  # theirs is before the gain
            expected = expected * model.get_parameter(tl_name.replace("hook_normalized", "w"))
        torch.testing.assert_close(value, expected, **TOL, msg=lambda m: f"{tl_name} -> {hook}: {m}")


@pytest.mark.parametrize("weights", ["safetensors", "pt"])
def test_a_saved_hooked_transformer_converts_like_the_object(tmp_path, weights):
    model = hooked(normalization_type="RMS", act_fn="gelu_new")
    ours, _ = from_hooked_transformer(model)
    loaded, info = load_transformer_lens(save_hooked_transformer(model, tmp_path / "tl", weights))
    assert info["source_weights"] == f"tl_model.{weights}"
    for key, value in ours.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key


def test_every_field_of_a_default_config_is_known():
    """The field lists follow the installed TransformerLens: a new field would be an 'unknown config
    fields' error, which this names first."""
    model = hooked()
    config_from_tl({k: v for k, v in model.cfg.to_dict().items() if k != "dtype"})


@pytest.mark.parametrize("changes, field", [
    ({"positional_embedding_type": "rotary"}, "positional_embedding_type"),
    ({"positional_embedding_type": "shortformer"}, "positional_embedding_type"),
    ({"parallel_attn_mlp": True}, "parallel_attn_mlp"),
    ({"gated_mlp": True}, "gated_mlp"),
    ({"attn_only": True}, "attn_only"),
    ({"act_fn": "silu"}, "act_fn"),
])
def test_unsupported_transformer_lens_models_are_refused_by_field(changes, field):
    with pytest.raises(ModelError) as error:
        from_hooked_transformer(hooked(**changes))
    assert one_line(error).startswith(f"HookedTransformer custom: {field}=")
