"""Z3 consistency of a spec's per-input claims: contradictions come back as unsat cores of claim lines."""

import json

import pytest
import torch

from circuitspec.cli import main
from circuitspec.lang import parse_spec
from circuitspec.lang.resolve import resolve
from circuitspec.prove.consistency import check_consistency
from circuitspec.schemas import validate

HEADER = 'spec p "x"\nmodel "py-sparse-small"\ntask closing_quote\nablate mean over task\nnode reader = blocks.1.attn.hook_z[head=1, 19]\n'


@pytest.fixture
def oracle_task():
    """The hand-set model's task (test_verify_oracle), registered for one test."""
    from circuitspec.engine.tasks import register_task, unregister_task
    from test_verify_oracle import TASK
    register_task(TASK, replace=True)
    yield TASK
    unregister_task(TASK.name)


def report(body: str):
    parsed = parse_spec(HEADER + body, "p.circ")
    assert parsed.ok, parsed.render()
    resolved, diagnostics = resolve(parsed.spec, "p.circ")
    assert not diagnostics
    return check_consistency(resolved, samples=200)


def test_contradicting_roles_are_reported_with_their_lines_and_a_witness():
    r = report("claim up: reader > 0.5 when opening_quote == '\"'\nclaim down: reader < 0 when body_length >= 0\n"
               "claim fine: reader > -5\n")
    assert len(r.inconsistencies) == 1
    problem = r.inconsistencies[0]
    assert [c.line for c in problem.claims] == [6, 7]  # the unsat core leaves out the harmless claim
    assert problem.witness["opening_quote"] == '"' and problem.witnesses > 1


def test_cycles_of_logit_comparisons_are_contradictions():
    r = report("claim a: logit['x'] > logit['y']\nclaim b: logit['y'] > logit['z']\nclaim c: logit['z'] > logit['x']\n")
    assert [c.name for c in r.inconsistencies[0].claims] == ["a", "b", "c"]


def test_claims_about_different_runs_or_disjoint_inputs_do_not_conflict():
    r = report("claim up: reader > 0.5 when opening_quote == '\"'\nclaim zero_run: reader < -1 ablate zero\n"
               "claim single: reader < 0 when opening_quote == \"'\"\n")
    assert r.consistent and r.checked_claims == 3 and r.feature_combinations > 1


def test_prove_command_exit_codes(tmp_path, capsys):
    assert main(["prove", "specs/quote_head.circ"]) == 0
    bad = tmp_path / "bad.circ"
    bad.write_text(HEADER + "claim a: logit['x'] > logit['y']\nclaim b: logit['y'] > logit['x']\n")
    assert main(["prove", str(bad), "--json", str(tmp_path / "r.json")]) == 1
    data = json.loads((tmp_path / "r.json").read_text())
    validate("prove", data)
    assert [c["line"] for c in data[0]["consistency"]["inconsistencies"][0]["claims"]] == [6, 7]
    out = capsys.readouterr().out  # results on stdout
    assert "cannot all hold" in out and "bad.circ:6" in out and "bad.circ:7" in out


def _oracle_spec(tmp_path, claims):
    from circuitspec.commands.check_cmd import check_file
    from circuitspec.engine.checkpoint import save_checkpoint
    from test_verify_oracle import CIRCUIT, HEADER, hand_set_model
    save_checkpoint(hand_set_model(), tmp_path / "model", {})
    spec = tmp_path / "oracle.circ"
    spec.write_text(HEADER.format(name="oracle", ablation="mean over task") + CIRCUIT + claims)
    resolved, diagnostics, _ = check_file(spec)
    assert not diagnostics, diagnostics
    return resolved


def test_node_claims_and_weights_entail_the_behaviour(tmp_path, oracle_task):
    """In the hand-set model: carrier > 0.5 on 'a' inputs, through relu neurons and the unembedding,
    forces logit a > logit b; without that premise Z3 finds a counter-model."""
    from circuitspec.prove.entailment import prove_behaviour
    from circuitspec.verify.runner import RunSettings
    with_premise = _oracle_spec(tmp_path, 'claim big: carrier > 0.5 when last == "a"\n'
                                          'claim says_a: logit[\'a\'] > logit[\'b\'] when last == "a"\n')
    result = prove_behaviour(with_premise, with_premise.claims[1], RunSettings(samples=40))
    assert result.status == "proved", result
    assert result.premises == ['claim big: carrier > 0.5 when last == "a"']
    assert all(a.fresh_fraction == 1.0 for a in result.assumptions) and len(result.assumptions) == 3
    # the carrier's box comes from every task input ('a' and 'b'), so the premise is what proves it
    assert "(0 in [-1, 1])" in result.assumptions[0].text and "any feature values" in result.assumptions[0].measured
    without = _oracle_spec(tmp_path, 'claim says_a: logit[\'a\'] > logit[\'b\'] when last == "a"\n')
    result = prove_behaviour(without, without.claims[0], RunSettings(samples=40))
    assert result.status == "counter-model"
    assert result.counter_model["blocks.0.hook_resid_pre[0]"] <= 0  # a carrier that is not positive


def test_a_counter_model_fails_the_prove_command(tmp_path, oracle_task, capsys):
    resolved = _oracle_spec(tmp_path, 'claim says_a: logit[\'a\'] > logit[\'b\'] when last == "a"\n')
    assert main(["prove", resolved.file]) == 1
    out = capsys.readouterr().out
    assert "counter-model oracle.circ:10" in out and "  counter-model: " in out and "(carrier)" in out


def test_a_claim_a_real_input_breaks_is_refuted_with_that_input(tmp_path, oracle_task, capsys):
    """The circuit answers 'b' on 'b' inputs, so "logit a > logit b" without a `when` is broken by real task
    inputs: prove reports it refuted with one of them, before any encoding."""
    from circuitspec.prove.entailment import prove_behaviour
    from circuitspec.verify.runner import RunSettings
    resolved = _oracle_spec(tmp_path, "claim says_a: logit['a'] > logit['b']\n")
    result = prove_behaviour(resolved, resolved.claims[0], RunSettings(samples=40))
    assert result.status == "refuted" and result.counterexample["input"].endswith("b")
    assert result.inputs_tried > 0 and result.z3_checks == 0
    assert main(["prove", resolved.file]) == 1
    out = capsys.readouterr().out
    assert "refuted oracle.circ" in out and "counterexample (a real task input)" in out


def attention_model():
    """A one-head copy: the head attends from the final 'a'/'b' to itself (its key reads a marker only
    'a' and 'b' carry) and moves the carrier (+1 'a', -1 'b') into channel 1, which the unembedding reads.
    Every token has the same norm; earlier (filler) positions carry no carrier, so their values are 0."""
    import math

    from circuitspec.engine.model import Transformer
    from test_verify_oracle import A, B, CFG
    model = Transformer(CFG)
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
        W_E = model.embed.W_E
        W_E[:, 3] = math.sqrt(2)  # filler: one channel of the same norm as carrier + marker
        for token, sign in ((A, 1.0), (B, -1.0)):
            W_E[token, 3], W_E[token, 0], W_E[token, 2] = 0.0, sign, 1.0
        attn = model.blocks[0].attn
        attn.b_Q[0, 0] = 1.0
        attn.W_K[0, 2, 0] = 3.0
        attn.W_V[0, 0, 0] = 1.0
        attn.W_O[0, 0, 1] = 1.0
        model.unembed.W_U[1, A], model.unembed.W_U[1, B] = 4.0, -4.0
    return model.eval()


ATTENTION_CIRCUIT = """node carrier = blocks.0.hook_resid_pre[0] "+1 for a, -1 for b"
node marker = blocks.0.hook_resid_pre[2] "1 on a and b"
node key = blocks.0.attn.hook_k[head=0, 0]
node value = blocks.0.attn.hook_v[head=0, 0]
node copied = blocks.0.attn.hook_z[head=0, 0]
node out = blocks.0.hook_resid_mid[1]
node out_post = blocks.0.hook_resid_post[1]
"""


def test_attention_is_encoded_with_measured_masses(tmp_path, oracle_task):
    """The premise is on the residual stream *before* attention, so only the encoded attention (most of
    the answer position's attention on itself, earlier values in their measured range) links it to the
    logits; the attention assumptions are reported, and without the premise there is a counter-model."""
    from circuitspec.commands.check_cmd import check_file
    from circuitspec.engine.checkpoint import save_checkpoint
    from circuitspec.prove.entailment import prove_behaviour
    from circuitspec.verify.runner import RunSettings
    from test_verify_oracle import HEADER
    save_checkpoint(attention_model(), tmp_path / "model", {})

    def resolve(claims):
        spec = tmp_path / "attention.circ"
        spec.write_text(HEADER.format(name="attention", ablation="mean over task") + ATTENTION_CIRCUIT + claims)
        resolved, diagnostics, _ = check_file(spec)
        assert not diagnostics, diagnostics
        return resolved

    says_a = "claim says_a: logit['a'] > logit['b'] when last == \"a\"\n"
    resolved = resolve('claim big: carrier > 0.5 when last == "a"\n' + says_a)
    result = prove_behaviour(resolved, resolved.claims[1], RunSettings(samples=40))
    assert result.status == "proved", result
    texts = [a.text for a in result.assumptions]
    itself = next(a for a in result.assumptions if "head 0: attention from the answer position to itself" in a.text)
    assert float(itself.text.split("[")[1].split(",")[0]) > 0.8 and itself.fresh_fraction > 0.9
    assert any("values at earlier positions" in t and "v0 in [0, 0]" in t for t in texts), texts
    resolved = resolve(says_a)
    result = prove_behaviour(resolved, resolved.claims[0], RunSettings(samples=40))
    assert result.status == "counter-model"
    assert result.counter_model["blocks.0.hook_resid_pre[0]"] <= 0
    assert result.counter_model["blocks.0.attn.hook_z[head=0, 0]"] <= 0


def test_premises_the_circuit_cannot_meet_are_vacuous_not_proofs(tmp_path, oracle_task, monkeypatch, capsys):
    """carrier > 5 is outside the range the carrier takes on any task input ([-1, 1]): the premise
    and the assumptions contradict each other, which would 'prove' anything; it is reported and fails."""
    from circuitspec.prove import entailment
    from circuitspec.verify.runner import RunSettings
    resolved = _oracle_spec(tmp_path, 'claim huge: carrier > 5 when last == "a"\n'
                                      'claim says_a: logit[\'a\'] > logit[\'b\'] when last == "a"\n')
    result = entailment.prove_behaviour(resolved, resolved.claims[1], RunSettings(samples=40))
    assert result.status == "vacuous" and "cannot hold together" in result.note, result
    assert main(["prove", resolved.file]) == 1
    assert "vacuous oracle.circ:11" in capsys.readouterr().out
    monkeypatch.setattr(entailment, "MAX_NEURONS", 0)
    result = entailment.prove_behaviour(resolved, resolved.claims[1], RunSettings(samples=40))
    assert result.status == "not encodable" and "kept MLP neurons (limit 0)" in result.note


def test_a_check_that_runs_out_of_time_is_unknown_and_fails(tmp_path, oracle_task, capsys):
    resolved = _oracle_spec(tmp_path, 'claim says_a: logit[\'a\'] > logit[\'b\'] when last == "a"\n')
    assert main(["prove", resolved.file, "--timeout", "0"]) == 1
    out = capsys.readouterr().out
    assert "unknown oracle.circ:10" in out
    assert "before Z3 was called" in out and "Z3 gave up" not in out  # no check ran: say so, not that Z3 gave up
