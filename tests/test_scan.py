"""`circuitspec scan`: knock out one part at a time. On the hand-set oracle model the planted neurons are
the ones whose knockout hurts and the decoys change nothing; on a shipped model the scan's figures are the
ones `verify` reports for the same knockout as an `ablating PART keeps faithfulness` claim."""

import json

import pytest

from circuitspec.cli import main
from circuitspec.engine.checkpoint import save_checkpoint
from circuitspec.engine.masks import MaskSpace
from circuitspec.engine.model import ModelConfig
from circuitspec.engine.errors import UsageError
from circuitspec.schemas import validate
from circuitspec.verify.scan import channel_units, head_and_mlp_units
from conftest import registered_for_module
from test_verify_oracle import CFG, TASK, hand_set_model

task = registered_for_module(TASK)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("scan")
    save_checkpoint(hand_set_model(), root / "model", {"description": "hand-set oracle"})
    return root / "model"


def scan(tmp_path, *argv):
    out = tmp_path / "scan.json"
    code = main(["scan", *argv, "--json", str(out)])
    data = json.loads(out.read_text())
    validate("scan", data)
    return code, data


def test_units_cover_every_head_and_mlp_layer_and_name_spec_selectors():
    space = MaskSpace.for_config(ModelConfig(n_layers=2, d_model=16, n_heads=3, d_head=4, d_mlp=8, n_ctx=16))
    units = head_and_mlp_units(space)
    assert [u.name for u in units] == ["b0_head0", "b0_head1", "b0_head2", "b0_mlp", "b1_head0", "b1_head1", "b1_head2", "b1_mlp"]
    assert units[1].selector == ("{blocks.0.attn.hook_q[head=1, *], blocks.0.attn.hook_k[head=1, *], "
                                 "blocks.0.attn.hook_v[head=1, *], blocks.0.attn.hook_z[head=1, *]}")
    assert [u.name for u in head_and_mlp_units(space, "mlps")] == ["b0_mlp", "b1_mlp"]
    parts = head_and_mlp_units(space, "parts")
    assert [u.name for u in parts[:5]] == ["b0_head0_q", "b0_head0_k", "b0_head0_v", "b0_head0_z", "b0_head1_q"]
    assert parts[2].selector == "blocks.0.attn.hook_v[head=0, *]" and len(parts) == 2 * (3 * 4 + 1)
    per_channel = channel_units(space, "blocks.1.attn.hook_z[head=2]", chunk=3)
    assert [u.selector for u in per_channel] == ["blocks.1.attn.hook_z[head=2, 0:3]", "blocks.1.attn.hook_z[head=2, 3]"]
    assert [u.name for u in channel_units(space, "blocks.0.mlp.hook_post")][:2] == ["b0_post_0", "b0_post_1"]


@pytest.mark.parametrize("layer, message", [
    ("blocks.0.mlp.hook_pre", "not a hook with channels"),
    ("blocks.0.attn.hook_q", "channels per head"),
    ("blocks.0.attn.hook_q[head=9]", "has 2 heads"),
    ("blocks.0.mlp.hook_post[head=0]", "has no heads"),
])
def test_a_layer_that_is_not_one_hook_of_the_model_is_a_usage_error(layer, message):
    with pytest.raises(UsageError, match=message) as error:
        channel_units(MaskSpace.for_config(CFG), layer)
    assert error.value.hint


def test_the_planted_neurons_hurt_and_the_decoys_do_not(model_dir, tmp_path):
    code, data = scan(tmp_path, "--model", str(model_dir), "--task", "last_ab", "--layer", "blocks.0.mlp.hook_post",
                      "--samples", "60", "--random", "5")
    assert code == 0 and data["model"] == str(model_dir) and data["ablation"] == "mean over task"
    units = data["units"]
    assert [u["faithfulness"] for u in units] == sorted(u["faithfulness"] for u in units)
    assert {u["name"] for u in units[:2]} == {"b0_post_0", "b0_post_1"}  # relu(+carrier) and relu(-carrier)
    assert all(u["faithfulness"] < 0.9 for u in units[:2])
    assert all(u["faithfulness"] == pytest.approx(1.0, abs=1e-4) for u in units[2:])  # decoys 2..7
    pool = data["random"][0]["faithfulness"]
    assert data["random"][0]["nodes"] == 1 and len(pool) == 5
    for unit in units:
        assert unit["random_as_low"] == sum(f <= unit["faithfulness"] for f in pool) and unit["random_count"] == 5


def test_heads_that_write_nothing_are_not_needed_and_the_mlp_is(model_dir, tmp_path, capsys):
    code, data = scan(tmp_path, "--model", str(model_dir), "--task", "last_ab", "--samples", "40", "--random", "0")
    assert code == 0
    by_name = {u["name"]: u for u in data["units"]}
    assert abs(by_name["b0_mlp"]["faithfulness"]) < 0.05  # channel 1 left at its mean (the a/b balance of the reference)
    assert by_name["b0_head0"]["faithfulness"] == pytest.approx(1.0, abs=1e-4)  # W_O = 0
    assert data["units"][0]["name"] == "b0_mlp" and data["random"] == []
    out = capsys.readouterr().out
    assert "F without it" in out and "as a spec group: group b0_mlp = blocks.0.mlp.hook_post[*]" in out


def test_the_figures_are_verifys_for_the_same_knockout(tmp_path):
    """The scan's F and interval for an MLP layer equal the statistic and interval `verify` reports for
    `ablating b1_mlp keeps faithfulness >= 0` on the same inputs, seed and ablation."""
    _, data = scan(tmp_path, "--task", "closing_quote", "--units", "mlps", "--samples", "40", "--random", "2")
    unit = next(u for u in data["units"] if u["name"] == "b1_mlp")
    spec = tmp_path / "knockout.circ"
    spec.write_text(f'spec knockout\nmodel "py-sparse-small"\ntask closing_quote\nablate mean over task\n'
                    f"group b1_mlp = {unit['selector']}\n"
                    "claim b1_mlp_knockout: ablating b1_mlp keeps faithfulness >= 0\n")
    report = tmp_path / "verify.json"
    main(["verify", str(spec), "--samples", "40", "--json", str(report)])
    claim = json.loads(report.read_text())["claims"][0]
    assert unit["nodes"] == 512
    assert unit["faithfulness"] == pytest.approx(claim["statistic"], abs=1e-5)
    assert unit["ci"] == pytest.approx(claim["ci"], abs=1e-5)


@pytest.mark.parametrize("argv, message", [
    (["--task", "closing_quote", "--chunk", "4"], "--chunk applies to --layer"),
    (["--task", "closing_quote", "--reference", "corpus", "--ablation", "zero"], "needs mean ablation"),
    (["--task", "closing_quote", "--layer", "blocks.7.mlp.hook_post"], "not a hook with channels"),
    (["--task", "no_such_task"], "no_such_task"),
])
def test_bad_arguments_exit_2_with_a_message(argv, message, capsys):
    assert main(["scan", *argv]) == 2
    assert message in capsys.readouterr().err


def test_an_unknown_model_exits_3_with_the_shipped_names(capsys):
    assert main(["scan", "--model", "no/such/model", "--task", "closing_quote"]) == 3
    assert "py-sparse-small" in capsys.readouterr().err


def test_the_project_seed_applies_and_the_flag_overrides(model_dir, tmp_path, monkeypatch):
    (tmp_path / "pyproject.toml").write_text("[tool.circuitspec]\nseed = 3\n")
    monkeypatch.chdir(tmp_path)
    base = ["--model", str(model_dir), "--task", "last_ab", "--units", "mlps", "--samples", "20", "--random", "0"]
    assert scan(tmp_path, *base)[1]["seed"] == 3
    assert scan(tmp_path, *base, "--seed", "5")[1]["seed"] == 5


def test_a_layer_wider_than_one_spec_holds_is_resolved_in_parts(tmp_path):
    """512 neurons are 1,024 statements, past the language's 1,000: the units go into specs of 400."""
    from circuitspec.lang.resolve import load_context
    from circuitspec.verify.scan import SPEC_UNITS, resolve_scan

    context = load_context("py-sparse-small")
    units = channel_units(context.space, "blocks.0.mlp.hook_post")
    specs = resolve_scan(str(context.path), "closing_quote", "mean over task", units)
    assert [len(s.claims) for s in specs] == [SPEC_UNITS, 512 - SPEC_UNITS]
    subjects = [c.subject for s in specs for c in s.claims]
    assert [(n.hook, n.index) for (n,) in subjects] == [("blocks.0.mlp.hook_post", i) for i in range(512)]
    code, data = scan(tmp_path, "--task", "closing_quote", "--layer", "blocks.0.mlp.hook_post", "--samples", "4",
                      "--random", "0")
    assert code == 0 and len(data["units"]) == 512
