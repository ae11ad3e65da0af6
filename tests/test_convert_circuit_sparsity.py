"""circuit_sparsity checkpoints (Gao et al. 2025) in circuitspec's model: the reference fixtures reproduce
(logits and every recorded activation), loading is strict, and the ablation engine stays exact on the
options those models use (AbsTopK, norm gains, GELU, the sink, the bigram table)."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from safetensors.torch import load_file, save_file

from circuitspec.cli import main
from circuitspec.engine.ablation import Ablation, Reference, run_conditions, run_conditions_with_cache
from circuitspec.engine.checkpoint import load_checkpoint, save_checkpoint
from circuitspec.engine.convert_circuit_sparsity import hook_name_map, load_circuit_sparsity
from circuitspec.engine.errors import ModelError
from circuitspec.engine.masks import Mask, MaskSpace
from circuitspec.engine.model import ModelConfig, Transformer
from circuitspec.engine.subgraph import run_circuit
from circuitspec.prove.entailment import _not_encodable
from tiny_bpe import resize_vocab, write_bpe
from conftest import verify_one_head_spec

# The fixtures live beside the repository (../shared/fixtures/circuit_sparsity: made with the reference
# code, whose licence keeps it out of this repository); CIRCUITSPEC_CS_FIXTURES names another place.
FIXTURES = Path(os.environ.get("CIRCUITSPEC_CS_FIXTURES")
                or Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "circuit_sparsity")
pytestmark = pytest.mark.skipif(not (FIXTURES / "A").is_dir(), reason=f"the circuit_sparsity fixtures are not in {FIXTURES}")
TOL = {"atol": 1e-4, "rtol": 1e-4}  # float32: the fixtures' README measures the reference's own spread at ~2e-5


def fixture(name: str) -> Path:
    return FIXTURES / name


def copy_fixture(name: str, dest: Path, weights: str = "safetensors") -> Path:
    """A writable copy holding the config and one weights file (``safetensors`` or ``pt``)."""
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copy(fixture(name) / "beeg_config.json", dest)
    shutil.copy(fixture(name) / f"final_model.{weights}", dest)
    for p in dest.iterdir():
        p.chmod(0o644)
    return dest


def edit_state(path: Path, edit) -> Path:
    state = load_file(str(path / "final_model.safetensors"))
    edit(state)
    save_file(state, str(path / "final_model.safetensors"))
    return path


def edit_config(path: Path, edit) -> Path:
    config = json.loads((path / "beeg_config.json").read_text())
    edit(config)
    (path / "beeg_config.json").write_text(json.dumps(config))
    return path


def reference_run(name: str):
    d = fixture(name)
    return (load_file(str(d / "input_ids.safetensors"))["input_ids"], load_file(str(d / "logits.safetensors"))["logits"],
            load_file(str(d / "activations.safetensors")))


@pytest.mark.parametrize("weights", ["safetensors", "pt"])
@pytest.mark.parametrize("name", ["A", "B"])
def test_fixture_logits_and_every_activation_reproduce(tmp_path, name, weights):
    model, info = load_circuit_sparsity(copy_fixture(name, tmp_path / name, weights))
    assert info["source_weights"] == f"final_model.{weights}"
    ids, logits, activations = reference_run(name)
    mapping = hook_name_map(model.cfg.n_layers)
    assert set(mapping) == set(activations) and len(set(mapping.values())) == len(mapping)  # one to one, all of them
    with torch.no_grad():
        ours, cache = model.run_with_cache(ids)
    torch.testing.assert_close(ours, logits, **TOL)
    for theirs, hook in mapping.items():
        torch.testing.assert_close(cache[hook].flatten(2), activations[theirs], **TOL, msg=lambda m: f"{theirs} -> {hook}: {m}")


def test_fixture_b_uses_every_option_and_a_none_of_the_sparsity():
    a, _ = load_circuit_sparsity(fixture("A"))
    b, _ = load_circuit_sparsity(fixture("B"))
    assert b.cfg.attn_sink and b.cfg.bigram and b.cfg.topk_fraction == 0.25 and len(b.cfg.topk_sites) == 8
    assert not a.cfg.attn_sink and not a.cfg.bigram and not a.cfg.topk_sites
    for cfg in (a.cfg, b.cfg):
        assert cfg.norm_weight and cfg.act_fn == "gelu" and cfg.norm_eps == torch.finfo(torch.float32).eps
        assert cfg.d_vocab == 200 and cfg.n_ctx == 64
    # q, k and v keep 16 of their 64 channels over all heads together, not 4 per head
    ids, _, _ = reference_run("B")
    _, cache = b.run_with_cache(ids[:1])
    kept = (cache["blocks.0.attn.hook_q"][0] != 0).sum(-1)  # [T, H]
    assert bool((kept.sum(-1) == 16).all()) and bool((kept != 4).any())


def test_the_sparsity_and_the_eps_matter(tmp_path):
    """Each option changes the output: a model without one of them would not pass the parity test."""
    ids, logits, _ = reference_run("B")
    model, _ = load_circuit_sparsity(fixture("B"))
    for change in ({"topk_fraction": None, "topk_sites": ()}, {"norm_eps": 1e-5}, {"bigram": False}, {"act_fn": "relu"}):
        cfg = ModelConfig(**{**model.cfg.to_dict(), **change})
        other = Transformer(cfg).eval()
        other.load_state_dict({k: v for k, v in model.state_dict().items() if k in other.state_dict()})
        with torch.no_grad():
            assert (other(ids) - logits).abs().max() > 1e-3, change


def one_line(error: pytest.ExceptionInfo) -> str:
    message = error.value.message
    assert "\n" not in message and len(message) < 400
    return message


@pytest.mark.parametrize("edit, expected", [
    (lambda s: s.pop("transformer.h.1.mlp.c_fc.bias"), "missing transformer.h.1.mlp.c_fc.bias"),
    (lambda s: s.__setitem__("transformer.h.0.attn.extra", torch.zeros(3)), "unexpected transformer.h.0.attn.extra"),
    (lambda s: s.pop("transformer.h.0.attn.attn_imp.sink_logit"), "missing transformer.h.0.attn.attn_imp.sink_logit"),
    (lambda s: s.pop("bigram_table"), "missing bigram_table"),
    (lambda s: s.__setitem__("lm_head.weight", torch.zeros(64, 200)), "lm_head.weight has shape (64, 200), the config implies (200, 64)"),
    (lambda s: s.__setitem__("transformer.ln_f.weight", torch.zeros(64, dtype=torch.int32)), "int32"),
    (lambda s: s["transformer.wte.weight"].__setitem__((0, 0), float("nan")), "NaN"),
    (lambda s: s.__setitem__("transformer.h.0.attn.bias", torch.ones(1, 1, 64, 64)), "not the causal mask"),
])
def test_a_damaged_state_dict_is_a_one_line_error(tmp_path, edit, expected):
    path = edit_state(copy_fixture("B", tmp_path / "B"), edit)
    with pytest.raises(ModelError) as error:
        load_circuit_sparsity(path)
    assert expected in one_line(error)


@pytest.mark.parametrize("edit, expected", [
    (lambda c: c.__setitem__("pfrac", 0.1), "unknown config keys 'pfrac'"),
    (lambda c: c.pop("n_layer"), "missing config keys n_layer"),
    (lambda c: c.__setitem__("rms_norm", False), "LayerNorm (rms_norm false) is not supported"),
    (lambda c: c.__setitem__("afrac_loctypes", "attn_in,resid_post_mlp"), "'resid_post_mlp': not supported"),
    (lambda c: c.__setitem__("afrac_loctypes", "attn_in,mlp_nueron"), "'mlp_nueron': not sites"),
    (lambda c: c.__setitem__("activation_type", "swish"), "activation_type must be gelu or relu"),
    (lambda c: c.__setitem__("residual_activation_type", "relu"), "residual_activation_type 'relu' is not supported"),
    (lambda c: c.__setitem__("d_pos_emb", 8), "concatenated position embedding"),
    (lambda c: c.__setitem__("n_head", True), "n_head must be a positive integer"),
    (lambda c: c.__setitem__("afrac", 1.5), "topk_fraction must be in (0, 1]"),
    (lambda c: c.__setitem__("n_layer", 3), "missing transformer.h.2"),
    (lambda c: c.__setitem__("sink", False), "unexpected transformer.h.0.attn.attn_imp.sink_logit"),
])
def test_a_config_that_cannot_be_reproduced_is_a_one_line_error(tmp_path, edit, expected):
    path = edit_config(copy_fixture("B", tmp_path / "B"), edit)
    with pytest.raises(ModelError) as error:
        load_circuit_sparsity(path)
    assert expected in one_line(error)


def test_training_only_keys_can_be_dropped_by_name_and_the_legacy_mlp_key_is_read(tmp_path):
    path = edit_config(copy_fixture("A", tmp_path / "A"), lambda c: c.update(pfrac=0.1, n_mlp=c.pop("d_mlp")))
    model, info = load_circuit_sparsity(path, drop_keys=("pfrac",))
    assert info["dropped_config_keys"] == ["pfrac"] and model.cfg.d_mlp == 256


def test_missing_final_bias_is_zeros_and_tied_unembedding_copies_the_embedding(tmp_path):
    ids, logits, _ = reference_run("A")  # A's final_logits_bias is all zeros
    path = edit_state(copy_fixture("A", tmp_path / "A"), lambda s: s.pop("final_logits_bias"))
    model, _ = load_circuit_sparsity(path)
    with torch.no_grad():
        torch.testing.assert_close(model(ids), logits, **TOL)

    def tie(s):
        s["lm_head.weight"] = s["transformer.wte.weight"].clone()
    tied = edit_config(edit_state(copy_fixture("A", tmp_path / "tied"), tie), lambda c: c.update(tied_unembed=True))
    model, _ = load_circuit_sparsity(tied)
    assert torch.equal(model.unembed.W_U, model.embed.W_E.T)
    edit_state(tied, lambda s: s["lm_head.weight"].__setitem__((0, 0), 1.0))
    with pytest.raises(ModelError, match="differs from transformer.wte.weight"):
        load_circuit_sparsity(tied)


def test_bias_free_models_load_with_zero_biases(tmp_path):
    def drop_biases(s):
        for key in [k for k in s if k.endswith(".bias")]:
            del s[key]
    path = edit_config(edit_state(copy_fixture("A", tmp_path / "A"), drop_biases), lambda c: c.update(bias=False))
    model, _ = load_circuit_sparsity(path)
    assert all(not bool(p.any()) for n, p in model.named_parameters() if n.split(".")[-1] in ("b_Q", "b_K", "b_V", "b_O", "b_in", "b_out"))


class Payload:  # pickled by reference: loading it would import and call code
    def __reduce__(self):
        return (print, ("unpickled",))


def test_pt_files_never_unpickle_code(tmp_path, capsys):
    path = copy_fixture("A", tmp_path / "A", "pt")
    state = torch.load(path / "final_model.pt", weights_only=True)
    state["payload"] = Payload()
    torch.save(state, path / "final_model.pt")  # torch's own format: only weights_only stands in the way
    with pytest.raises(ModelError) as error:
        load_circuit_sparsity(path)
    assert "cannot be read" in one_line(error) and "unpickled" not in capsys.readouterr().out


def test_pre_topk_hooks_exist_only_where_a_site_has_topk():
    plain = Transformer(ModelConfig(n_layers=1, d_model=8, n_heads=2, d_head=4, d_mlp=16, n_ctx=8))
    assert not [h for h in plain.hook_names() if "pre_topk" in h]
    model, _ = load_circuit_sparsity(fixture("B"))
    assert sorted(h for h in model.hook_names() if h.startswith("blocks.0.") and "pre_topk" in h) == [
        "blocks.0.attn.hook_k_pre_topk", "blocks.0.attn.hook_q_pre_topk", "blocks.0.attn.hook_v_pre_topk",
        "blocks.0.hook_attn_out_pre_topk", "blocks.0.hook_mlp_out_pre_topk"]


def test_the_original_directory_as_a_model_path_says_how_to_convert_it():
    with pytest.raises(ModelError, match="a circuit_sparsity checkpoint, not a circuitspec one") as error:
        load_checkpoint(fixture("A"))
    assert "circuitspec convert --from circuit-sparsity" in error.value.hint


def with_tiny_bpe(path: Path) -> Path:
    """A copied fixture given 2,048 tokens and a tiny tinypython_2k BPE (tests/tiny_bpe.py): the fixtures hold
    no tokenizer files, and their 200 ids could not hold the real one's."""
    write_bpe(resize_vocab(path))
    return path


def test_the_original_directory_is_a_model_path_of_every_command(tmp_path, capsys):
    """load_model (and so every command) converts such a directory in memory, as strictly as `convert`, and
    reads its tokenizer from the files beside it."""
    from circuitspec.engine.zoo import load_model

    with pytest.raises(ModelError, match="tokenizer files vocab.bpe and encoder.json are missing"):
        load_model(str(fixture("B")))  # what its token ids mean is not in the fixture
    direct = with_tiny_bpe(copy_fixture("B", tmp_path / "direct"))
    ids, logits, _ = reference_run("B")
    with torch.no_grad():
        assert torch.equal(load_model(str(direct))(ids), load_circuit_sparsity(direct)[0](ids))
    spec = tmp_path / "direct.circ"
    spec.write_text(f'spec direct "read as it is"\nmodel "{direct}"\ntask bracket_type\nablate mean over task\n\n'
                    "group head = blocks.1.attn.hook_z[head=1, *]\n\nclaim necessary faithfulness <= 5\n")
    out = tmp_path / "direct.json"
    assert main(["check", str(spec)]) == 0
    rc = main(["verify", str(spec), "--samples", "20", "--baselines", "2", "--partial-ablations", "1", "--json", str(out)])
    assert rc in (0, 1) and "self-check" not in capsys.readouterr().err
    assert json.loads(out.read_text())["manifest"]["specs"][0]["model_sha256"] is None  # no manifest to take it from
    broken = edit_state(copy_fixture("B", tmp_path / "B"), lambda s: s.pop("transformer.wpe.weight"))
    spec.write_text(spec.read_text().replace(str(direct), str(broken)))
    assert main(["check", str(spec)]) == 3  # the converter's strictness holds here too


def test_converted_checkpoint_round_trips_bit_exactly(tmp_path):
    model, _ = load_circuit_sparsity(fixture("B"))
    save_checkpoint(model, tmp_path / "ckpt", {})
    loaded = load_checkpoint(tmp_path / "ckpt")
    assert loaded.cfg == model.cfg
    ids, _, _ = reference_run("B")
    with torch.no_grad():
        assert torch.equal(loaded(ids), model(ids))


# ---- the ablation engine on these options --------------------------------------------------------------

def batch(model, n=3, T=12, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(0, model.cfg.d_vocab - 1, (n, T), generator=gen), torch.full((n,), T)


def test_all_kept_mask_reproduces_the_forward_exactly_on_fixture_b():
    model, _ = load_circuit_sparsity(fixture("B"))
    tokens, lengths = batch(model)
    ref_tokens, ref_lengths = batch(model, 5, 12, 1)
    reference = Reference.compute(model, Ablation("mean"), tokens, lengths, ref_tokens, ref_lengths)
    full = Mask.full(MaskSpace.for_config(model.cfg))
    with torch.no_grad():
        assert torch.equal(run_conditions(model, tokens, [full], reference)[0], model(tokens))


@pytest.mark.parametrize("param", ["blocks.0.attn.W_Q", "blocks.1.attn.W_V", "blocks.0.attn.W_O", "blocks.1.mlp.W_in",
                                   "blocks.0.mlp.W_out", "unembed.W_U"])
def test_zero_ablated_edges_equal_zeroed_weights_before_each_topk(param):
    """Under zero ablation an ablated edge is a zero weight, so the masked forward must equal the model
    with those weights zeroed: the edge correction has to act before the AbsTopK that follows the matrix."""
    model, _ = load_circuit_sparsity(fixture("B"))
    tokens, lengths = batch(model)
    reference = Reference.compute(model, Ablation("zero"), tokens, lengths)
    space = MaskSpace.for_config(model.cfg)
    keep = torch.rand(space.edge_shapes[param], generator=torch.Generator().manual_seed(3)) < 0.7
    mask = Mask(space, Mask.full(space).nodes, {**Mask.full(space).edges, param: keep})
    expected = Transformer(model.cfg).eval()
    expected.load_state_dict(model.state_dict())
    with torch.no_grad():
        dict(expected.named_parameters())[param].mul_(keep)
        torch.testing.assert_close(run_conditions(model, tokens, [mask], reference)[0], expected(tokens), atol=1e-4, rtol=1e-4)
        assert (expected(tokens) - model(tokens)).abs().max() > 1e-3  # the mask does change something


def random_node_mask(space, share, seed):
    gen = torch.Generator().manual_seed(seed)
    nodes = {h: torch.rand(s, generator=gen) < share for h, s in space.node_shapes.items()}
    return Mask(space, nodes, Mask.full(space).edges)


def without_topk(model):
    """Fixture B's weights in a model without AbsTopK: the sink, norm gains, GELU and the bigram table."""
    cfg = ModelConfig(**{**model.cfg.to_dict(), "topk_fraction": None, "topk_sites": ()})
    other = Transformer(cfg).eval()
    other.load_state_dict(model.state_dict())
    return other


@pytest.mark.parametrize("name", ["A", "B-without-topk"])
def test_the_subgraph_path_matches_the_masked_forward_on_the_other_options(name):
    model, _ = load_circuit_sparsity(fixture(name[0]))
    if name != "A":
        model = without_topk(model)
    tokens, lengths = batch(model)
    ref_tokens, ref_lengths = batch(model, 6, 12, 1)
    reference = Reference.compute(model, Ablation("mean"), tokens, lengths, ref_tokens, ref_lengths)
    space = MaskSpace.for_config(model.cfg)
    answer = torch.tensor([11, 7, 4])
    for seed in range(3):
        mask = random_node_mask(space, 0.2, seed)
        masked, _ = run_conditions_with_cache(model, tokens, [mask], reference, answer, capture=("hook_logits",))
        sub = run_circuit(model, tokens, mask, reference, answer)
        torch.testing.assert_close(sub, masked[0], atol=1e-4, rtol=1e-4)
        assert (sub - model(tokens)[torch.arange(3), answer]).abs().max() > 1e-3


def test_models_with_topk_always_take_the_full_masked_forward():
    model, _ = load_circuit_sparsity(fixture("B"))
    tokens, lengths = batch(model)
    ref_tokens, ref_lengths = batch(model, 6, 12, 1)
    reference = Reference.compute(model, Ablation("mean"), tokens, lengths, ref_tokens, ref_lengths)
    mask = random_node_mask(MaskSpace.for_config(model.cfg), 0.1, 0)  # small: would take the subgraph path
    with pytest.raises(ValueError, match="AbsTopK"):
        run_circuit(model, tokens, mask, reference)
    masked, _ = run_conditions_with_cache(model, tokens, [mask], reference, capture=("hook_logits",))
    assert torch.equal(run_conditions(model, tokens, [mask], reference), masked)


@pytest.mark.parametrize("change, reason", [
    ({}, "AbsTopK"),
    ({"topk_fraction": None, "topk_sites": ()}, "GELU"),
    ({"topk_fraction": None, "topk_sites": (), "act_fn": "relu"}, "norm gains"),
    ({"topk_fraction": None, "topk_sites": (), "act_fn": "relu", "norm_weight": False}, "bigram"),
])
def test_prove_says_not_encodable_for_each_option(change, reason):
    model, _ = load_circuit_sparsity(fixture("B"))
    cfg = ModelConfig(**{**model.cfg.to_dict(), **change})
    claim = SimpleNamespace(ablation=Ablation("mean"))
    assert reason in _not_encodable(SimpleNamespace(context=SimpleNamespace(cfg=cfg), edge_level=False), claim)


# ---- the command line -----------------------------------------------------------------------------------

def run_cli(*args, cwd=None):
    proc = subprocess.run([sys.executable, "-m", "circuitspec", *args], capture_output=True, text=True, timeout=600, cwd=cwd)
    return proc.returncode, proc.stdout, proc.stderr


def test_convert_then_check_and_verify_through_the_cli(tmp_path, capsys):
    out = tmp_path / "without_tokenizer"
    rc, _, err = run_cli("convert", "--from", "circuit-sparsity", str(fixture("A")), "-o", str(out))
    assert rc == 0 and "warning:" in err and "vocab.bpe or encoder.json" in err, err  # written, but not usable yet
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["converted_from"]["source_config"]["vocab_size"] == 200 and "convert --from" in manifest["command"]
    assert manifest["tokenizer"]["name"] == "tinypython_2k"
    with pytest.raises(ModelError, match="tokenizer files vocab.bpe and encoder.json are missing"):
        load_checkpoint(out)
    for name, source in (("converted", with_tiny_bpe(copy_fixture("A", tmp_path / "A"))),
                         ("b", with_tiny_bpe(copy_fixture("B", tmp_path / "B")))):
        assert main(["convert", "--from", "circuit-sparsity", str(source), "-o", str(tmp_path / name)]) == 0
        converted, direct = load_checkpoint(tmp_path / name), load_circuit_sparsity(source)[0]
        ids, _, _ = reference_run(source.name)
        with torch.no_grad():
            assert torch.equal(converted(ids), direct(ids))
        assert (tmp_path / name / "vocab.bpe").read_bytes() == (source / "vocab.bpe").read_bytes()
    for model in ("converted", "b"):  # B: verify's self-checks on AbsTopK, the sink and the bigram table
        verify_one_head_spec(tmp_path, model, "a circuit_sparsity model, converted", capsys)
    assert main(["convert", "--from", "circuit-sparsity", str(fixture("A")), "-o", str(out)]) == 2
    assert "not empty" in capsys.readouterr().err


def test_convert_a_broken_directory_is_exit_3_with_one_line(tmp_path, capsys):
    broken = edit_state(copy_fixture("A", tmp_path / "A"), lambda s: s.pop("transformer.wpe.weight"))
    rc, out, err = run_cli("convert", "--from", "circuit-sparsity", str(broken), "-o", str(tmp_path / "out"))
    assert rc == 3 and "missing transformer.wpe.weight" in err and "Traceback" not in err + out
    assert len([line for line in err.splitlines() if line.startswith("error:")]) == 1
    assert not (tmp_path / "out" / "config.json").exists()
    assert main(["convert", "--from", "circuit-sparsity", str(tmp_path / "nothing"), "-o", str(tmp_path / "out2")]) == 3
    assert "no such directory" in capsys.readouterr().err
