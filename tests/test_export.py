"""`circuitspec export` / `circuitspec import`: a resolved circuit as JSON and back as a .circ skeleton that
resolves to the identical masks (nodes and edges), and the EAP-IG graph export. Check-level only: nothing
here runs a forward pass."""

import json
from pathlib import Path

import pytest
import torch

from circuitspec.cli import main
from circuitspec.commands.check_cmd import check_file
from circuitspec.engine.checkpoint import save_checkpoint
from circuitspec.lang import format_statement
from circuitspec.schemas import validate
from circuitspec.travel.eap import read_eap
from conftest import registered_for_module
from test_verify_oracle import HEADER, TASK, hand_set_model

ROOT = Path(__file__).resolve().parent.parent
SMALL = ROOT / "specs" / "closing_quote_small.circ"
CIRCUIT = """node carrier = blocks.0.hook_resid_pre[0] "+1 for a, -1 for b"
node carrier_mid = blocks.0.hook_resid_mid[0]
node pos = blocks.0.mlp.hook_post[0] "relu(+carrier)"
node neg = blocks.0.mlp.hook_post[1] "relu(-carrier)"
node out = blocks.0.hook_resid_post[1] "read by logit a and b"
edge hook_tokens[*] -> carrier
edge carrier_mid -> pos -> out -> logits
claim sufficient faithfulness >= 0.9
claim through_pos: edge pos -> out drop >= 0.1
"""


task = registered_for_module(TASK)


@pytest.fixture(scope="module")
def edge_spec(tmp_path_factory):
    """An edge-level circuit on the hand-set oracle (it leaves out carrier_mid -> neg, which its nodes would keep)."""
    root = tmp_path_factory.mktemp("export")
    save_checkpoint(hand_set_model(), root / "model", {"description": "hand-set oracle"})
    path = root / "edges.circ"
    path.write_text(HEADER.format(name="edges", ablation="mean over task") + "circuit edges\n" + CIRCUIT)
    return path


def export(spec, out, *extra):
    assert main(["export", str(spec), "-o", str(out), "--threads", "1", *extra]) == 0
    return json.loads(Path(out).read_text())


def round_trip(spec, folder):
    """(original, re-imported) resolved specs."""
    data = export(spec, folder / "circuit.json")
    validate("export", data)
    skeleton = folder / "sub" / "skeleton.circ"  # another folder: a checkpoint path must be re-pointed
    skeleton.parent.mkdir(exist_ok=True)
    assert main(["import", str(folder / "circuit.json"), "-o", str(skeleton), "--threads", "1"]) == 0
    original, diagnostics, _ = check_file(spec)
    again, diagnostics, _ = check_file(skeleton)
    assert again is not None, [d.message for d in diagnostics]
    return original, again, data, skeleton.read_text()


def assert_same_masks(a, b):
    assert a.mask.space == b.mask.space
    for hook, t in a.mask.nodes.items():
        assert torch.equal(t, b.mask.nodes[hook]), hook
    for param, t in a.mask.edges.items():
        assert torch.equal(t, b.mask.edges[param]), param


def test_the_shipped_small_circuit_survives_export_and_import(tmp_path):
    original, again, data, text = round_trip(SMALL, tmp_path)
    assert_same_masks(original, again)
    assert again.definitions.keys() == original.definitions.keys()
    assert [format_statement(c.claim) for c in again.claims] == [format_statement(c.claim) for c in original.claims]
    assert data["circuit"] == "nodes" and data["ablation"] == "mean over task" and len(data["nodes"]) == 134
    assert data["model_sha256"] == json.loads((ROOT / "circuitspec/checkpoints/py-sparse-small/manifest.json").read_text())["weights_sha256"]
    node = next(n for n in data["nodes"] if n["name"] == "blocks.0.mlp.hook_post[350]")
    assert node == {"name": "blocks.0.mlp.hook_post[350]", "hook": "blocks.0.mlp.hook_post", "head": None, "index": 350,
                    "in": ["double_quote_neuron"]}
    assert "node double_quote_neuron = blocks.0.mlp.hook_post[350]" in text
    assert [c["line"] for c in data["claims"]] == sorted(c["line"] for c in data["claims"])


def test_export_is_deterministic_and_writes_stdout(tmp_path, capsys):
    export(SMALL, tmp_path / "a.json")
    capsys.readouterr()
    assert main(["export", str(SMALL), "-o", "-", "--threads", "1"]) == 0
    assert capsys.readouterr().out == (tmp_path / "a.json").read_text()


def test_an_edge_level_circuit_survives_export_and_import(edge_spec, tmp_path):
    original, again, data, text = round_trip(edge_spec, tmp_path)
    assert again.edge_level and "circuit edges" in text
    assert_same_masks(original, again)
    weights = {(e["weight"], tuple(e["entry"])) for e in data["edges"]}
    assert ("blocks.0.mlp.W_in", (0, 0)) in weights and ("blocks.0.mlp.W_in", (0, 1)) not in weights  # -> neg not stated
    assert any(e["source"].startswith("hook_tokens[") for e in data["edges"])  # an edge-level circuit states its input


def test_a_different_model_hash_is_a_warning_and_the_skeleton_is_still_written(tmp_path, capsys):
    data = export(SMALL, tmp_path / "c.json")
    data["model_sha256"] = "0" * 64
    (tmp_path / "c.json").write_text(json.dumps(data))
    capsys.readouterr()
    assert main(["import", str(tmp_path / "c.json"), "-o", str(tmp_path / "c.circ"), "--threads", "1"]) == 0
    assert "warning:" in capsys.readouterr().err and (tmp_path / "c.circ").exists()


@pytest.mark.parametrize("content", ["{not json", "[1, 2]", '{"spec": "x"}'])
def test_a_file_that_is_not_an_exported_circuit_is_one_line_exit_2(tmp_path, capsys, content):
    (tmp_path / "bad.json").write_text(content)
    assert main(["import", str(tmp_path / "bad.json"), "-o", str(tmp_path / "bad.circ"), "--threads", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and len(err.splitlines()) == 1 and not (tmp_path / "bad.circ").exists()


def test_the_eap_graph_round_trips_heads_mlps_and_their_edges(tmp_path):
    data = export(SMALL, tmp_path / "circuit.json")
    graph = export(SMALL, tmp_path / "eap.json", "--format", "eap")
    nodes, edges = read_eap(graph)  # what EAP-IG's Graph.from_json would read back
    heads = {f"a{n['hook'].split('.')[1]}.h{n['head']}" for n in data["nodes"] if ".attn." in n["hook"]}
    mlps = {f"m{n['hook'].split('.')[1]}" for n in data["nodes"] if ".mlp." in n["hook"]}
    assert nodes == heads | mlps | {"input", "logits"}
    assert heads == {"a0.h0", "a0.h2", "a0.h3", "a1.h1"} and mlps == {"m0", "m1"}
    assert {"input->m0", "a1.h1->logits", "m0->a1.h1<v>", "input->a1.h1<k>"} <= edges
    assert all(e.split("->")[0] in nodes and e.split("->")[1].split("<")[0] in nodes for e in edges)
    assert all(v["score"] == 0 for k, v in graph["edges"].items() if k not in edges)
    assert graph["cfg"] == {"n_layers": 2, "n_heads": 4, "parallel_attn_mlp": False, "d_model": 128}
    with pytest.raises(ValueError):
        read_eap({"cfg": graph["cfg"], "nodes": {"a9.h0": {"in_graph": True}}, "edges": {}})


def test_the_eap_graph_of_an_edge_level_circuit_follows_its_stated_edges(edge_spec, tmp_path):
    nodes, edges = read_eap(export(edge_spec, tmp_path / "eap.json", "--format", "eap"))
    assert nodes == {"input", "m0", "logits"}
    assert edges == {"input->m0", "m0->logits"}
