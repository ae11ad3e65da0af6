"""A campaign of corrupted checkpoints: every one must end in one clear ModelError (exit 3) naming the
checkpoint, never a traceback, an allocator error or an unpickled object.

Each case copies a tiny saved checkpoint (sparse matrices and dense biases, so both storages are
attacked) and damages it one way; the families are those a campaign of 75 bad checkpoints found
(fields of the wrong type, absurd sizes, deep JSON, wrong dtypes behind a rehashed manifest, NaN
weights, a missing ``model`` table) plus missing, truncated or mismatched files and pickles. All run
through the load path in-process; a handful also through ``eval``, ``check`` and ``verify``.
"""

import json
import os
import pickle
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from circuitspec.cli import main
from circuitspec.engine.checkpoint import MIN_MODEL_BYTES, load_checkpoint, parameter_shapes, save_checkpoint, sha256_file
from circuitspec.engine.errors import ModelError
from circuitspec.engine.model import ModelConfig, Transformer
from circuitspec.engine.sparsity import project_model_
from circuitspec.engine.zoo import load_model

CFG = ModelConfig(n_layers=1, d_model=16, n_heads=2, d_head=8, d_mlp=32, n_ctx=8)
SENTINEL = Path(tempfile.gettempdir()) / f"circuitspec-unpickled-{os.getpid()}"  # exists only if our bait ran


class Bait:
    """Unpickling this creates SENTINEL: the proof that a loader ran code from the file."""

    def __reduce__(self):
        return (open, (str(SENTINEL), "w"))


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    torch.manual_seed(0)
    model = Transformer(CFG)
    for p in model.parameters():
        torch.nn.init.normal_(p.data)
    project_model_({n: p.data for n, p in model.weight_matrices().items()}, 0.1)
    return save_checkpoint(model, tmp_path_factory.mktemp("campaign") / "base", {"seed": 0})


# ---- ways to damage a checkpoint -----------------------------------------------------------------


def config(edit):
    def apply(d):
        data = json.loads((d / "config.json").read_text())
        edit(data)
        (d / "config.json").write_text(json.dumps(data))
    return apply


def model_field(key, value):
    return config(lambda c: c["model"].__setitem__(key, value))


def layout_entry(name, value):
    return config(lambda c: c["layout"].__setitem__(name, value))


def raw(file, data):
    def apply(d):
        (d / file).write_bytes(data.encode() if isinstance(data, str) else data)
    return apply


def replaced(file, old, new):
    def apply(d):
        text = (d / file).read_text()
        assert old in text
        (d / file).write_text(text.replace(old, new))
    return apply


def rewritten(file, edit):
    """``file``'s bytes through ``edit``, the manifest left as it was."""
    def apply(d):
        (d / file).write_bytes(edit((d / file).read_bytes()))
    return apply


def rehash(d):
    manifest = json.loads((d / "manifest.json").read_text())
    manifest["weights_sha256"] = sha256_file(d / "model.safetensors")
    (d / "manifest.json").write_text(json.dumps(manifest))


def weights_bytes(edit):
    """Rewrite model.safetensors's bytes, then fix the manifest's hash so that only the content is wrong."""
    def apply(d):
        (d / "model.safetensors").write_bytes(edit((d / "model.safetensors").read_bytes()))
        rehash(d)
    return apply


def tensors(edit):
    """Change the stored tensors, then rehash: a file that passes the hash check but holds the wrong thing."""
    def apply(d):
        data = load_file(str(d / "model.safetensors"))
        edit(data)
        save_file({k: v.contiguous() for k, v in data.items()}, str(d / "model.safetensors"), metadata={"format": "circuitspec-checkpoint"})
        rehash(d)
    return apply


def retype(key, dtype):
    return tensors(lambda t: t.__setitem__(key, t[key].to(dtype)))


def poke(key, index, value):
    def edit(t):
        t[key] = t[key].clone()
        t[key][index] = value
    return tensors(edit)


def remove(file):
    return lambda d: (d / file).unlink()


def both(*steps):
    def apply(d):
        for step in steps:
            step(d)
    return apply


def nested(depth):
    return "[" * depth + "]" * depth


def deep_model(d):
    text = json.dumps({**json.loads((d / "config.json").read_text()), "model": "DEEP"})
    (d / "config.json").write_text(text.replace('"DEEP"', '{"a": ' * 50_000 + "{}" + "}" * 50_000))


def consistent_huge_ctx(c):  # config and layout edited together: only the size limit can tell
    c["model"]["n_ctx"] = 10**6
    c["layout"]["pos_embed.W_pos"]["shape"] = [10**6, 16]


def as_dir(file):
    def apply(d):
        (d / file).unlink()
        (d / file).mkdir()
    return apply


def fifo(d):
    (d / "model.safetensors").unlink()
    os.mkfifo(d / "model.safetensors")  # reading it would block forever


def dev_zero(d):
    (d / "model.safetensors").unlink()
    (d / "model.safetensors").symlink_to("/dev/zero")  # reading it would never end


def torch_pickle(d):
    torch.save({"embed.W_E": Bait()}, d / "model.safetensors")
    rehash(d)


def plain_pickle(d):
    (d / "model.safetensors").write_bytes(pickle.dumps({"embed.W_E": Bait()}, protocol=2))
    rehash(d)


def pickle_beside(d):
    (d / "model.safetensors").unlink()
    torch.save({"embed.W_E": Bait()}, d / "model.pt")


def sparse_stored_dense(t):
    t[W_IN] = torch.zeros(16, 32)
    del t[IDX], t[VAL]


def swap(key_a, key_b):
    return tensors(lambda t: t.update({key_a: t[key_b], key_b: t[key_a]}))


W_IN, B_IN = "blocks.0.mlp.W_in", "blocks.0.mlp.b_in"
IDX, VAL = f"{W_IN}.indices", f"{W_IN}.values"

CASES = {
    # config.json fields of the wrong type
    "n_heads_true": (model_field("n_heads", True), "n_heads must be an integer"),
    "n_layers_false": (model_field("n_layers", False), "n_layers must be an integer"),
    "act_topk_float": (model_field("act_topk", 2.5), "act_topk must be"),
    "act_topk_string": (model_field("act_topk", "4"), "act_topk must be"),
    "d_model_string": (model_field("d_model", "16"), "d_model must be an integer"),
    "d_model_float": (model_field("d_model", 16.0), "d_model must be an integer"),
    "d_mlp_null": (model_field("d_mlp", None), "d_mlp must be an integer"),
    "d_head_list": (model_field("d_head", [8]), "d_head must be an integer"),
    "attn_sink_int": (model_field("attn_sink", 1), "attn_sink must be true or false"),
    "attn_sink_string": (model_field("attn_sink", "yes"), "attn_sink must be true or false"),
    "model_is_list": (config(lambda c: c.__setitem__("model", [1, 2])), "`model` must be an object"),
    "model_is_string": (config(lambda c: c.__setitem__("model", "tiny")), "`model` must be an object"),
    "layout_is_list": (config(lambda c: c.__setitem__("layout", [])), "`layout` must be an object"),
    "layout_entry_string": (layout_entry(B_IN, "dense"), f"layout entry {B_IN}"),
    "layout_entry_list": (layout_entry(B_IN, [32]), f"layout entry {B_IN}"),
    "layout_shape_string": (layout_entry(B_IN, {"shape": "32", "storage": "dense"}), "shape"),
    "layout_shape_floats": (layout_entry(W_IN, {"shape": [16.0, 32], "storage": "sparse"}), "shape"),
    "layout_shape_bools": (layout_entry("blocks.0.attn.sink", {"shape": [True, True], "storage": "dense"}), "shape"),
    "layout_storage_unknown": (layout_entry(W_IN, {"shape": [16, 32], "storage": "compressed"}), "storage"),
    "layout_bias_sparse": (layout_entry(B_IN, {"shape": [32], "storage": "sparse"}), "storage"),
    "layout_entry_extra_key": (layout_entry(B_IN, {"shape": [32], "storage": "dense", "dtype": "F32"}), "layout entry"),
    # out-of-range values
    "n_ctx_negative": (model_field("n_ctx", -1), "n_ctx must be a positive integer"),
    "n_heads_zero": (model_field("n_heads", 0), "n_heads must be a positive integer"),
    "act_topk_zero": (model_field("act_topk", 0), "act_topk"),
    "act_topk_above_d_model": (model_field("act_topk", 1000), "act_topk"),
    "d_vocab_below_bytes": (model_field("d_vocab", 100), "d_vocab"),
    # absurd sizes
    "d_model_billions": (model_field("d_model", 4 * 10**9), "shape"),
    "n_ctx_billions": (model_field("n_ctx", 10**9), "shape"),
    "n_layers_billions": (model_field("n_layers", 10**9), "n_layers=1000000000"),
    "d_mlp_billions": (model_field("d_mlp", 3 * 10**9), "shape"),
    "n_heads_2_62": (model_field("n_heads", 2**62), "shape"),
    "d_model_10_30": (model_field("d_model", 10**30), "shape"),
    "n_layers_3": (model_field("n_layers", 3), "missing"),
    "n_ctx_consistent_but_huge": (config(consistent_huge_ctx), "more than a"),
    "integer_of_5000_digits": (raw("config.json", '{"format": ' + "9" * 5000 + "}"), "not valid JSON"),
    # deeply nested JSON
    "config_nested_lists": (raw("config.json", nested(100_000)), "nested too deeply"),
    "config_nested_model": (deep_model, "nested too deeply"),
    "manifest_nested": (raw("manifest.json", '{"a": ' + nested(100_000) + "}"), "nested too deeply"),
    "config_nested_shallow": (raw("config.json", nested(500)), "expected a JSON object"),
    # the config file itself
    "config_not_utf8": (raw("config.json", b'{"format": "\xff\xfe"}'), "not UTF-8"),
    "config_utf16": (rewritten("config.json", lambda b: b.decode().encode("utf-16")), "not UTF-8"),
    "config_bom": (rewritten("config.json", lambda b: "\ufeff".encode() + b), "not valid JSON"),
    "config_empty": (raw("config.json", ""), "not valid JSON"),
    "config_truncated": (rewritten("config.json", lambda b: b[:200]), "not valid JSON"),
    "config_is_list": (raw("config.json", "[1, 2]"), "expected a JSON object"),
    "config_is_number": (raw("config.json", "42"), "expected a JSON object"),
    "config_is_null": (raw("config.json", "null"), "expected a JSON object"),
    "config_is_string": (raw("config.json", '"config"'), "expected a JSON object"),
    "config_nan": (replaced("config.json", '"d_model": 16', '"d_model": NaN'), "NaN"),
    "config_infinity": (replaced("config.json", '"d_mlp": 32', '"d_mlp": Infinity'), "Infinity"),
    "config_too_large": (raw("config.json", " " * (17 << 20) + "{}"), "more than a checkpoint's JSON file may hold"),
    "no_model_table": (config(lambda c: c.pop("model")), "no `model` table"),
    "no_layout": (config(lambda c: c.pop("layout")), "no `layout` object"),
    "unknown_top_level_key": (config(lambda c: c.__setitem__("comment", "hi")), "unknown keys"),
    "unknown_model_key": (model_field("flux", 1), "unknown keys"),
    "missing_model_key": (config(lambda c: c["model"].pop("d_mlp")), "missing keys 'd_mlp'"),
    "wrong_format": (config(lambda c: c.__setitem__("format", "something-else")), "not a circuitspec checkpoint"),
    "format_version_string": (config(lambda c: c.__setitem__("format_version", "1")), "format version"),
    "format_version_true": (config(lambda c: c.__setitem__("format_version", True)), "format version"),
    "format_version_2": (config(lambda c: c.__setitem__("format_version", 2)), "format version"),
    # missing or unreadable files
    "no_config": (remove("config.json"), "missing"),
    "no_manifest": (remove("manifest.json"), "missing"),
    "no_weights": (remove("model.safetensors"), "missing"),
    "config_is_directory": (as_dir("config.json"), "not a regular file"),
    "weights_are_directory": (as_dir("model.safetensors"), "not a regular file"),
    "weights_are_fifo": (fifo, "not a regular file"),
    "weights_are_dev_zero": (dev_zero, "not a regular file"),
    # the manifest
    "wrong_manifest_hash": (lambda d: (d / "manifest.json").write_text(json.dumps({"weights_sha256": "0" * 64})), "hash does not match"),
    "manifest_without_hash": (raw("manifest.json", "{}"), "no weights_sha256"),
    "manifest_hash_number": (raw("manifest.json", '{"weights_sha256": 123}'), "no weights_sha256"),
    "manifest_is_list": (raw("manifest.json", "[]"), "expected a JSON object"),
    "manifest_not_utf8": (raw("manifest.json", b"\xc3\x28"), "not UTF-8"),
    "flipped_weights_byte": (rewritten("model.safetensors", lambda b: b"x" + b[1:]), "hash does not match"),
    # the safetensors file (hash made to match)
    "truncated_weights": (weights_bytes(lambda b: b[: len(b) // 2]), "cannot be read as safetensors"),
    "weights_of_4_bytes": (weights_bytes(lambda b: b[:4]), "cannot be read as safetensors"),
    "empty_weights": (weights_bytes(lambda b: b""), "cannot be read as safetensors"),
    "garbage_weights": (weights_bytes(lambda b: b"garbage" * 10), "cannot be read as safetensors"),
    "weights_header_flipped": (weights_bytes(lambda b: b[:12] + b"\x00" + b[13:]), "cannot be read as safetensors"),
    "weights_header_huge": (weights_bytes(lambda b: (2**60).to_bytes(8, "little") + b[8:]), "cannot be read as safetensors"),
    "weights_with_tail": (weights_bytes(lambda b: b + b"\0" * 64), "cannot be read as safetensors"),
    "dense_shape_wrong": (tensors(lambda t: t.__setitem__(B_IN, t[B_IN][:16])), "shape"),
    "dense_shape_same_size": (tensors(lambda t: t.__setitem__(B_IN, t[B_IN].view(2, 16))), "shape"),
    "sparse_indices_2d": (tensors(lambda t: t.__setitem__(IDX, t[IDX].view(1, -1))), "sparse indices"),
    "sparse_values_short": (tensors(lambda t: t.__setitem__(VAL, t[VAL][:-1])), "sparse indices"),
    "sparse_too_many": (tensors(lambda t: t.update({IDX: torch.arange(600, dtype=torch.int32), VAL: torch.ones(600)})), "at most 512"),
    "sparse_index_out_of_range": (poke(IDX, -1, 512), "sparse indices are not sorted, distinct and within"),
    "sparse_index_negative": (poke(IDX, 0, -1), "sparse indices are not sorted, distinct and within"),
    "sparse_index_duplicate": (poke(IDX, 1, 0), "sparse indices are not sorted, distinct and within"),
    "sparse_index_unsorted": (tensors(lambda t: t.__setitem__(IDX, t[IDX].flip(0))), "sparse indices are not sorted, distinct and within"),
    "extra_tensor": (tensors(lambda t: t.__setitem__("blocks.0.mlp.W_gate", torch.zeros(3))), "unexpected 'blocks.0.mlp.W_gate'"),
    "missing_tensor": (tensors(lambda t: t.pop(B_IN)), f"missing '{B_IN}'"),
    "sparse_stored_dense": (tensors(sparse_stored_dense), f"missing '{IDX}', '{VAL}'; unexpected '{W_IN}'"),
    "swapped_biases": (swap(B_IN, "blocks.0.mlp.b_out"), "shape"),
    # wrong dtypes behind a rehashed manifest (an int8 embedding is all zeros: verify then crashed)
    "values_int8": (retype(VAL, torch.int8), "stored as I8, expected F32"),
    "indices_int8": (retype(IDX, torch.int8), "stored as I8, expected I32"),
    "indices_int64": (retype(IDX, torch.int64), "stored as I64, expected I32"),
    "dense_float64": (retype(B_IN, torch.float64), "stored as F64, expected F32"),
    "dense_float16": (retype(B_IN, torch.float16), "stored as F16, expected F32"),
    "dense_bfloat16": (retype(B_IN, torch.bfloat16), "stored as BF16, expected F32"),
    "dense_int8": (retype(B_IN, torch.int8), "stored as I8, expected F32"),
    "dense_bool": (retype(B_IN, torch.bool), "stored as BOOL, expected F32"),
    "values_float16": (retype(VAL, torch.float16), "stored as F16, expected F32"),
    # non-finite weights
    "nan_in_dense_bias": (poke(B_IN, 3, float("nan")), "NaN or infinite"),
    "inf_in_sparse_values": (poke(VAL, 0, float("inf")), "NaN or infinite"),
    "minus_inf_in_embedding": (poke("embed.W_E.values", 2, float("-inf")), "NaN or infinite"),
    # pickles: refused, never unpickled
    "torch_pickle_as_weights": (torch_pickle, "torch pickle"),
    "plain_pickle_as_weights": (plain_pickle, "torch pickle"),
    "pickle_beside_missing_weights": (pickle_beside, "missing"),
    "pickle_plus_bad_hash": (both(torch_pickle, raw("manifest.json", '{"weights_sha256": "x"}')), "hash does not match"),
}


def damaged(base, tmp_path, name):
    ckpt = tmp_path / name
    shutil.copytree(base, ckpt)
    CASES[name][0](ckpt)
    return ckpt


def test_the_campaign_is_large():
    assert len(CASES) >= 75


@pytest.mark.parametrize("name", CASES)
def test_every_damaged_checkpoint_is_one_clear_model_error(base, tmp_path, name):
    ckpt = damaged(base, tmp_path, name)
    with pytest.raises(ModelError) as info:
        load_model(str(ckpt))
    e = info.value
    assert e.exit_code == 3
    assert CASES[name][1] in e.message, e.message
    assert "\n" not in e.message and "\n" not in (e.hint or ""), "one line, and one for the hint"
    assert str(ckpt) in e.message, "the error names the checkpoint"
    assert len(e.message) < 400, e.message
    assert not SENTINEL.exists(), "a pickle was unpickled"


def test_the_intact_base_loads(base):
    load_checkpoint(base)


def test_pickle_hint_names_the_pickle(base, tmp_path):
    with pytest.raises(ModelError) as info:
        load_checkpoint(damaged(base, tmp_path, "pickle_beside_missing_weights"))
    assert "model.pt" in info.value.hint and "never" in info.value.hint


def test_the_size_limit_grows_with_the_file(base):
    """A sparse model far larger than its file still loads when it stays within the limit."""
    model = load_checkpoint(base)
    assert 4 * sum(p.numel() for p in model.parameters()) < MIN_MODEL_BYTES


@pytest.mark.parametrize("cfg", [CFG, ModelConfig(n_layers=3, d_model=8, n_heads=3, d_head=2, d_mlp=5, n_ctx=4, attn_sink=False),
                                 ModelConfig(n_layers=2, d_model=8, n_heads=1, d_head=4, d_mlp=4, n_ctx=6, act_topk=3)])
def test_parameter_shapes_match_the_model(cfg):
    """The loader checks shapes before building the model, so its list of them must never drift from it."""
    model = Transformer(cfg)
    assert list(parameter_shapes(cfg).items()) == [(n, tuple(p.shape)) for n, p in model.named_parameters()]


# ---- through the command line --------------------------------------------------------------------

CLI_CASES = ["n_heads_true", "config_nested_lists", "values_int8", "nan_in_dense_bias", "no_model_table", "torch_pickle_as_weights"]
SPEC = 'spec probe "a spec over a damaged model"\nmodel "{model}"\ntask closing_quote\nablate mean over task\n' \
       "node n = blocks.0.mlp.hook_post[0]\nclaim sufficient faithfulness >= 0.5\n"


def spec_for(ckpt):
    spec = ckpt.parent / f"{ckpt.name}.circ"
    spec.write_text(SPEC.format(model=ckpt.name))
    return spec


@pytest.mark.parametrize("name", CLI_CASES)
def test_cli_says_exit_3_in_one_message(base, tmp_path, capsys, name):
    ckpt = damaged(base, tmp_path, name)
    expected = CASES[name][1]
    spec = str(spec_for(ckpt))
    for argv in (["eval", str(ckpt), "--tasks", "closing_quote", "-n", "2"], ["check", spec], ["verify", spec]):
        assert main(argv) == 3, argv
        captured = capsys.readouterr()
        err = " ".join((captured.err + captured.out).split())  # the console may wrap long lines
        assert expected in err and "Traceback" not in err, (argv, err)
    assert not SENTINEL.exists()


def test_the_real_entry_point_prints_no_traceback(base, tmp_path):
    """The int8 weights that verify once crashed on, through `python -m circuitspec` (a few seconds: one process)."""
    ckpt = damaged(base, tmp_path, "values_int8")
    proc = subprocess.run([sys.executable, "-m", "circuitspec", "verify", str(spec_for(ckpt))], capture_output=True, text=True,
                          timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 3, proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    assert "error[E512]" in proc.stderr and "stored as I8, expected F32" in proc.stderr
