"""circuitspec diff: what two specs' circuits and claims have that the other lacks, and verdicts that changed."""

import json

import pytest

from circuitspec.cli import main
from circuitspec.commands.diff_cmd import compact
from circuitspec.schemas import validate
from circuitspec.engine.checkpoint import save_checkpoint
from circuitspec.engine.tasks import register_task, unregister_task
from test_verify_oracle import CIRCUIT, HEADER, TASK, hand_set_model


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    register_task(TASK, replace=True)
    root = tmp_path_factory.mktemp("diff")
    save_checkpoint(hand_set_model(), root / "model", {"description": "hand-set oracle"})
    yield root
    unregister_task(TASK.name)


def write(folder, name, body):
    path = folder / f"{name}.circ"
    path.write_text(HEADER.format(name=name, ablation="mean over task") + body)
    return path


def diff(folder, a, b, *extra):
    out = folder / f"{a.stem}-{b.stem}.json"
    code = main(["diff", str(a), str(b), "--json", str(out), *extra])
    data = json.loads(out.read_text())
    validate("diff", data)
    return code, data


def test_a_circuit_and_its_variant(folder, capsys):
    old = write(folder, "old", CIRCUIT + "claim sufficient faithfulness >= 0.9\nclaim fires: pos > 0.5 when last == \"a\"\n")
    without_neg = CIRCUIT.replace('node neg = blocks.0.mlp.hook_post[1] "relu(-carrier)"\n', "")
    new = write(folder, "new", without_neg + "claim sufficient faithfulness >= 0.9\nclaim fires: pos > 0.7 when last == \"a\"\n"
                "claim agrees: agrees with model\n")
    code, data = diff(folder, old, new)
    assert code == 0 and data["same_model"]
    assert data["nodes"] == {"old": 5, "new": 4, "shared": 4, "only_old": 1, "only_new": 0}
    assert data["only_old_nodes"] == ["blocks.0.mlp.hook_post[1]"] and data["only_new_nodes"] == []
    assert data["edges"]["only_old"] >= 1 and data["edges"]["only_new"] == 0
    assert data["edges"]["old"] == data["edges"]["shared"] + data["edges"]["only_old"]
    assert data["claims_added"] == ["claim agrees: agrees with model"] and data["claims_removed"] == []
    assert data["claims_changed"] == [{"name": "fires", "old": 'claim fires: pos > 0.5 when last == "a"',
                                       "new": 'claim fires: pos > 0.7 when last == "a"'}]
    out = capsys.readouterr()
    assert "- 1 nodes: blocks.0.mlp.hook_post[1]" in out.out + out.err


def test_verify_lists_the_verdicts_that_changed_and_exits_1_when_one_got_worse(folder):
    good = write(folder, "good", CIRCUIT + "claim sufficient faithfulness >= 0.9\n")
    carrier_only = 'node carrier = blocks.0.hook_resid_pre[0] "+1 for a, -1 for b"\n'
    bad = write(folder, "bad", carrier_only + "claim sufficient faithfulness >= 0.9\n")
    code, data = diff(folder, good, bad, "--verify")
    assert code == 1 and data["verdicts"] == [{"name": "claim sufficient faithfulness >= 0.9", "old": "pass", "new": "fail"}]
    code, data = diff(folder, bad, good, "--verify")
    assert code == 0 and data["verdicts"][0]["new"] == "pass"  # better is not a failure


def test_the_same_spec_has_no_differences(folder, capsys):
    path = write(folder, "same", CIRCUIT + "claim sufficient faithfulness >= 0.9\n")
    code, data = diff(folder, path, path)
    assert code == 0 and not (data["only_old_nodes"] or data["only_new_nodes"] or data["claims_changed"])
    out = capsys.readouterr()
    assert "same circuit and claims" in out.out + out.err


def test_a_library_or_a_broken_spec_is_refused(folder, capsys):
    library = folder / "lib.circ"
    library.write_text('node x = blocks.0.mlp.hook_post[0]\n')
    spec = write(folder, "spec", CIRCUIT + "claim sufficient faithfulness >= 0.9\n")
    assert main(["diff", str(spec), str(library)]) == 2
    assert "an included library is not one" in capsys.readouterr().err
    broken = write(folder, "broken", "node x = blocks.0.mlp.hook_post[99]\n")
    assert main(["diff", str(spec), str(broken)]) == 2


def test_names_are_gathered_per_hook_and_head_with_ranges():
    names = ["blocks.0.mlp.hook_post[3]", "blocks.0.mlp.hook_post[4]", "blocks.0.mlp.hook_post[9]",
             "blocks.1.attn.hook_v[head=2, 0]", "blocks.1.attn.hook_v[head=2, 1]", "blocks.1.attn.hook_v[head=3, 5]"]
    assert compact(names) == ["blocks.0.mlp.hook_post[3:5, 9]", "blocks.1.attn.hook_v[head=2, 0:2]",
                              "blocks.1.attn.hook_v[head=3, 5]"]
