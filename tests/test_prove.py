"""Z3 consistency of a spec's per-input claims: contradictions come back as unsat cores of claim lines."""

from circuitspec.cli import main
from circuitspec.lang import parse_spec
from circuitspec.lang.resolve import resolve
from circuitspec.prove.consistency import check_consistency

HEADER = 'spec p "x"\nmodel "py-sparse-small"\ntask closing_quote\nablate mean over task\nnode reader = blocks.1.attn.hook_z[head=1, 19]\n'


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
    err = capsys.readouterr().err
    assert "cannot all hold" in err and "bad.circ:6" in err and "bad.circ:7" in err


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


def test_node_claims_and_weights_entail_the_behaviour(tmp_path):
    """In the hand-set model: carrier > 0.5 on 'a' inputs, through relu neurons and the unembedding,
    forces logit a > logit b; without that premise Z3 finds a counter-model."""
    from circuitspec.engine.tasks import register_task, unregister_task
    from circuitspec.prove.entailment import prove_behaviour
    from circuitspec.verify.runner import RunSettings
    from test_verify_oracle import TASK
    register_task(TASK, replace=True)
    try:
        with_premise = _oracle_spec(tmp_path, 'claim big: carrier > 0.5 when last == "a"\n'
                                              'claim says_a: logit[\'a\'] > logit[\'b\'] when last == "a"\n')
        result = prove_behaviour(with_premise, with_premise.claims[1], RunSettings(samples=40))
        assert result.status == "proved", result
        assert result.premises == ['claim big: carrier > 0.5 when last == "a"']
        assert all(a.fresh_fraction == 1.0 for a in result.assumptions) and len(result.assumptions) == 2
        without = _oracle_spec(tmp_path, 'claim says_a: logit[\'a\'] > logit[\'b\'] when last == "a"\n')
        result = prove_behaviour(without, without.claims[0], RunSettings(samples=40))
        assert result.status == "counter-model"
        assert result.counter_model["blocks.0.hook_resid_pre[0]"] <= 0  # a carrier that is not positive
    finally:
        unregister_task(TASK.name)


def test_a_counter_model_fails_the_prove_command(tmp_path, capsys):
    from circuitspec.engine.tasks import register_task, unregister_task
    from test_verify_oracle import TASK
    register_task(TASK, replace=True)
    try:
        resolved = _oracle_spec(tmp_path, 'claim says_a: logit[\'a\'] > logit[\'b\'] when last == "a"\n')
        assert main(["prove", resolved.file]) == 1
    finally:
        unregister_task(TASK.name)
    err = capsys.readouterr().err
    assert "counter-model oracle.circ:10" in err and "  counter-model: " in err
