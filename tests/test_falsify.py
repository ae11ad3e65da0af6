"""circuitspec falsify: Hypothesis finds and shrinks inputs that break per-input claims, and replays them."""

import json
import shutil
from pathlib import Path

import pytest

from circuitspec.cli import main
from circuitspec.schemas import validate

BACKWARDS = "claim backwards: logit[\"'\"] > logit['\"'] when opening_quote == '\"'\n"


def make_spec(tmp_path, extra=""):
    shutil.copytree("specs/lib", tmp_path / "lib")
    path = tmp_path / "quotes.circ"
    path.write_text(Path("specs/closing_quote.circ").read_text() + extra)
    return path


def run(tmp_path, path, *args):
    out = tmp_path / "falsify.json"
    database = [] if "--no-database" in args else ["--database", str(tmp_path / "db")]  # the two contradict: exit 2
    code = main(["falsify", str(path), "--seed", "0", "--max-examples", "40", "--samples", "30", *database, "--json", str(out), *args])
    data = json.loads(out.read_text())
    validate("falsify", data)
    return code, {r["name"]: r for r in data["results"]}


def test_a_false_claim_is_falsified_shrunk_and_replayed(tmp_path):
    path = make_spec(tmp_path, BACKWARDS)
    code, results = run(tmp_path, path)
    assert code == 1
    first = results["backwards"]
    assert first["verdict"] == "falsified" and first["counterexample"]["features"]["opening_quote"] == '"'
    assert len(first["counterexample"]["input"]) <= 12  # shrunk to something like 'x = "a'
    assert results["closes_single"]["verdict"] == "survived"
    assert any((tmp_path / "db").rglob("*")), "the counterexample is stored"
    code, again = run(tmp_path, path)
    assert code == 1 and again["backwards"]["counterexample"]["input"] == first["counterexample"]["input"]
    assert again["backwards"]["tried"] == 1 and "stored counterexample" in again["backwards"]["note"]  # replayed
    stored = json.loads((tmp_path / "db" / "quotes" / "backwards.json").read_text())
    assert [e["prefix"] for e in stored] == [first["counterexample"]["input"]]


def test_claims_whose_conditions_never_hold_are_inconclusive(tmp_path):
    path = make_spec(tmp_path, "claim never: logit['a'] > 0 when opening_quote == 'x'\n")
    code, results = run(tmp_path, path, "--no-database")
    assert code == 1 and results["never"]["verdict"] == "inconclusive"


def test_falsify_reports_spec_errors(tmp_path, capsys):
    bad = tmp_path / "bad.circ"
    bad.write_text('spec b "x"\nmodel "py-sparse-small"\ntask closing_quote\nablate zero\nnode n = blocks.0.mlp.hook_post[999]\n')
    assert main(["falsify", str(bad), "--no-database"]) == 2
    assert "E504" in capsys.readouterr().err


def test_verify_with_falsify_fails_a_claim_the_search_breaks(tmp_path, monkeypatch):
    path = make_spec(tmp_path, BACKWARDS)
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "v.json"
    code = main(["verify", str(path), "--falsify", "--max-examples", "30", "--samples", "30", "--baselines", "10",
                 "--json", str(out)])
    data = json.loads(out.read_text())
    validate("verify", data)
    backwards = next(c for c in data["claims"] if c["name"] == "backwards")
    assert code == 1 and backwards["verdict"] == "fail" and backwards["counterexample"]["input"]
    assert any(f["name"] == "backwards" and f["verdict"] == "falsified" for f in data["manifest"]["falsification"])
    assert (tmp_path / ".circuitspec" / "examples" / "quotes" / "backwards.json").is_file()
    elsewhere, nowhere = tmp_path / "db", tmp_path / "nowhere"
    nowhere.mkdir()
    args = ["verify", str(path), "--falsify", "--max-examples", "30", "--samples", "30", "--baselines", "10"]
    assert main([*args, "--database", str(elsewhere)]) == 1
    assert (elsewhere / "quotes" / "backwards.json").is_file()
    monkeypatch.chdir(nowhere)
    assert main([*args, "--no-database"]) == 1 and not (nowhere / ".circuitspec").exists()


def test_verify_database_options_need_falsify(tmp_path, capsys):
    assert main(["verify", "specs/quote_head.circ", "--no-database"]) == 2
    assert "--no-database applies only with --falsify" in capsys.readouterr().err


def test_aggregate_claims_are_attacked_over_ablation_choices(tmp_path):
    path = make_spec(tmp_path)
    code, results = run(tmp_path, path, "--no-database")
    attacked = next(r for r in results.values() if r["kind"] == "sufficient")
    assert attacked["tried"] > 10
    assert attacked["verdict"] == "survived" and attacked["note"].startswith("worst of")


def readers_of_the_carrier(tmp_path, writers):
    """The hand-set circuit's sufficiency claim, in a model whose MLP neurons ``n`` also compute
    relu(carrier) (on for 'a', off for 'b') and write it, times ``weight``, to the channel the answer reads."""
    from circuitspec.engine.checkpoint import save_checkpoint
    from test_verify_oracle import CIRCUIT, HEADER, hand_set_model
    from test_verify_partial import with_writers

    save_checkpoint(with_writers(hand_set_model(), writers), tmp_path / "model", {})
    spec = tmp_path / "readers.circ"
    spec.write_text(HEADER.format(name="readers", ablation="mean over task") + CIRCUIT + "claim sufficient faithfulness >= 0.9\n")
    return spec


@pytest.fixture
def oracle_task():
    from circuitspec.engine.tasks import register_task, unregister_task
    from test_verify_oracle import TASK

    register_task(TASK, replace=True)
    yield
    unregister_task(TASK.name)


def attack_readers_of_the_carrier(tmp_path, writers, **attack):
    from circuitspec.commands.check_cmd import check_file
    from circuitspec.verify.attack import attack_claim
    from circuitspec.verify.runner import RunSettings

    resolved, diagnostics, _ = check_file(readers_of_the_carrier(tmp_path, writers))
    assert not diagnostics
    return attack_claim(resolved, resolved.claims[0], RunSettings(samples=60), **attack)


HURTING = [(2, 0.6), (3, 0.6), (4, 0.6), (5, 0.6), (6, 0.6), (7, -3.0)]


def test_a_sufficiency_that_needs_everything_ablated_at_once_is_falsified(tmp_path, oracle_task):
    """Two neurons outside the circuit cancel each other exactly. Ablating all of the rest hides them (F = 1);
    ablating one without the other does not, and random partial ablations find that."""
    outcome = attack_readers_of_the_carrier(tmp_path, [(6, 3.0), (7, -3.0)], trials=12, adversarial=False)
    assert outcome.broken and outcome.interval[1] < 0.9
    assert outcome.what.startswith("ablating only a random")


def test_the_adversarial_attack_keeps_the_one_node_whose_presence_hurts(tmp_path, oracle_task):
    """One neuron outside the circuit pushes against the answer and five others push for it, cancelling in
    sum. Ablating whole components or all of the rest hides this; keeping the one that hurts while its five
    counterweights are ablated breaks the claim. The gradient-chosen subsets find exactly that neuron."""
    without = attack_readers_of_the_carrier(tmp_path, HURTING, trials=0, adversarial=False)
    assert not without.broken  # whole heads, layers and boundaries do not expose it
    outcome = attack_readers_of_the_carrier(tmp_path, HURTING, trials=0)
    assert outcome.broken and outcome.interval[1] < 0.9
    assert "adversarial" in outcome.what and "blocks.0.mlp.hook_post[7]" in outcome.what


def test_verify_with_falsify_fails_a_sufficiency_the_attack_breaks(tmp_path, oracle_task, capsys, monkeypatch):
    """The failure names the ablation choice (an aggregate claim has no single failing input)."""
    spec = readers_of_the_carrier(tmp_path, HURTING)
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "v.json"
    code = main(["verify", str(spec), "--falsify", "--max-examples", "20", "--samples", "60", "--baselines", "10",
                 "--seed", "0", "--json", str(out)])
    data = json.loads(out.read_text())
    validate("verify", data)
    claim = data["claims"][0]
    assert code == 1 and claim["verdict"] == "fail" and claim["counterexample"]["ablation choice"].startswith("ablating")
    captured = capsys.readouterr()
    assert "counterexample: ablating" in captured.out + captured.err


def test_a_unit_that_never_matters_breaks_minimality_on_every_round(tmp_path):
    from circuitspec.commands.check_cmd import check_file
    from circuitspec.engine.checkpoint import save_checkpoint
    from circuitspec.engine.tasks import register_task, unregister_task
    from circuitspec.verify.attack import attack_minimal
    from circuitspec.verify.runner import RunSettings
    from test_verify_oracle import CIRCUIT, HEADER, TASK, hand_set_model

    save_checkpoint(hand_set_model(), tmp_path / "model", {})
    spec = tmp_path / "extra.circ"
    spec.write_text(HEADER.format(name="extra", ablation="mean over task") + CIRCUIT
                    + "node decoy = blocks.0.mlp.hook_post[5]\nclaim minimal each node drop >= 0.2\n")
    register_task(TASK, replace=True)
    try:
        resolved, _, _ = check_file(spec)
        outcome = attack_minimal(resolved, resolved.claims[0], RunSettings(samples=40), rounds=2)
    finally:
        unregister_task(TASK.name)
    assert outcome.broken and outcome.what.startswith("decoy") and outcome.interval[1] < 0.2


def test_notes_say_what_was_measured_for_claims_that_never_held(tmp_path, oracle_task):
    """A circuit with no effect is not "sufficient only when everything is ablated at once": it is not
    sufficient at all; an irrelevant node is not "necessary depending on the reference": it is not necessary."""
    from circuitspec.engine.checkpoint import save_checkpoint
    from test_verify_oracle import HEADER, hand_set_model

    save_checkpoint(hand_set_model(), tmp_path / "model", {})
    spec = tmp_path / "decoy.circ"
    spec.write_text(HEADER.format(name="decoy", ablation="mean over task") + "node decoy = blocks.0.mlp.hook_post[5]\n"
                    "claim suff: sufficient faithfulness >= 0.5\nclaim nec: necessary faithfulness <= 0.5\n")
    code, results = run(tmp_path, spec, "--no-database")
    assert code == 1
    assert "does not hold even with everything outside the circuit ablated" in results["suff"]["note"]
    assert "not necessary" in results["nec"]["note"] and "depends on which inputs" not in results["nec"]["note"]


def test_an_attack_whose_worst_interval_straddles_the_threshold_is_inconclusive():
    from circuitspec.verify.attack import AttackOutcome
    from circuitspec.verify.falsify import FalsifyResult  # noqa: F401 (the verdicts it can carry)
    from circuitspec.verify import falsify

    class Claim:
        class claim:
            span = type("S", (), {"line": 3})
            name = "suff"

            class body:
                threshold = 0.8
        kind = "sufficient"

    class Resolved:
        file = "x.circ"

    outcome = AttackOutcome(0.795, (0.76, 0.83), "ablating only a random 50% of the non-circuit nodes (#1)", 30, False,
                            inconclusive=True)
    original = falsify.attack_claim
    falsify.attack_claim = lambda *a, **k: outcome
    try:
        result = falsify._attack_result(Resolved, Claim, type("Spec", (), {"settings": None}))
    finally:
        falsify.attack_claim = original
    assert result.verdict == "inconclusive" and "straddles 0.8" in result.note
