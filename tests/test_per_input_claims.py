"""Per-input claims pass only with the confidence they state, and falsify is never weaker than random draws.

The task ``rare_ab`` ends in 'b' on exactly 1% of its inputs (one value of a 0..99 choice, an interior
one: Hypothesis favours small and boundary values), else in 'a'. On the hand-set oracle model (see
test_verify_oracle.py) the circuit answers with the last character, so "the circuit prefers 'a'" is a
claim that breaks on 1% of the task's inputs.
"""

import json

import pytest

from circuitspec.cli import main
from circuitspec.engine.checkpoint import save_checkpoint
from circuitspec.engine.tasks import Task, TaskExample, register_task, unregister_task
from circuitspec.verify.runner import EVERY_INPUT_RESOLUTION
from conftest import registered_for_module
from test_verify_oracle import CIRCUIT, hand_set_model


def generate(s):
    filler = "".join(s.choice("xyz") for _ in range(s.integer(1, 5)))
    last = "b" if s.integer(0, 99) == 37 else "a"
    prefix = filler + last
    return TaskExample(prefix, last, "b" if last == "a" else "a", "\n", {"last": last}, {"answer": len(prefix) - 1})


TASK = Task("rare_ab", "repeat the final a/b; b is rare", generate, {"last": "the final character"},
            {"answer": "where it is read"})
HEADER = 'spec rare "{name}"\nmodel "model"\ntask rare_ab\nablate mean over task\n'
RARE_CLAIM = "claim prefers_a: logit['a'] > logit['b']\n"  # false exactly when the input ends in 'b' (1%)


task = registered_for_module(TASK)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("rare")
    save_checkpoint(hand_set_model(), root / "model", {"description": "hand-set oracle"})
    return root


def write(folder, name, body):
    path = folder / f"{name}.circ"
    path.write_text(HEADER.format(name=name) + CIRCUIT + body)
    return path


def verify(folder, path, *extra):
    out = folder / f"{path.stem}.json"
    code = main(["verify", str(path), "--json", str(out), "--baselines", "10", *extra])
    return code, {c["name"]: c for c in json.loads(out.read_text())["claims"]}


@pytest.mark.parametrize("seed", range(5))
def test_a_claim_that_breaks_on_1_percent_of_inputs_never_passes_at_default_settings(folder, seed):
    code, claims = verify(folder, write(folder, "rare", RARE_CLAIM), "--seed", str(seed))
    claim = claims["prefers_a"]
    assert code == 1 and claim["verdict"] in ("fail", "inconclusive"), claim
    assert claim["n"] >= 598  # drawn so that a clean sample would show a failure rate below 0.5%


def test_a_clean_sample_too_small_to_show_every_input_is_inconclusive_and_says_how_many(folder):
    body = "claim says_a: logit['a'] > logit['b'] when last == \"a\" samples 100\n"
    code, claims = verify(folder, write(folder, "small_sample", body))
    claim = claims["says_a"]
    assert claim["statistic"] == 1.0 and claim["verdict"] == "inconclusive" and code == 1
    assert "samples 598" in claim["note"]
    assert claim["ci"][0] == pytest.approx(0.05 ** (1 / 100), abs=1e-6)  # one-sided exact lower bound


def test_a_true_claim_passes_with_the_drawn_sample(folder):
    code, claims = verify(folder, write(folder, "true", "claim says_a: logit['a'] > logit['b'] when last == \"a\"\n"))
    claim = claims["says_a"]
    assert code == 0 and claim["verdict"] == "pass" and claim["n"] == 598
    assert claim["ci"][0] >= 1 - EVERY_INPUT_RESOLUTION
@pytest.mark.parametrize("seed", range(3))
def test_falsify_finds_the_rare_branch(folder, tmp_path, seed):
    path = write(folder, "rare_falsify", RARE_CLAIM)
    out = tmp_path / "falsify.json"
    code = main(["falsify", str(path), "--seed", str(seed), "--max-examples", "600", "--no-database", "--json", str(out)])
    found = {r["name"]: r for r in json.loads(out.read_text())["results"]}["prefers_a"]
    assert code == 1 and found["verdict"] == "falsified" and found["counterexample"]["input"].endswith("b")
    assert found["random_tried"] in (0, 600)  # the draws run when the Hypothesis search finds nothing


def test_plain_random_draws_find_what_uniform_sampling_finds(folder):
    from circuitspec.testing import load_spec
    from circuitspec.verify.falsify import _random_draws

    spec = load_spec(write(folder, "rare_draws", RARE_CLAIM))
    draws = _random_draws(spec, spec.claim("prefers_a"), (), 600, seed=0)
    assert draws.drawn == 600 and draws.worst is not None and draws.worst.prefix.endswith("b")
    assert 1 <= draws.failures <= 20  # about 1% of 600
    assert _random_draws(spec, spec.claim("prefers_a"), (), 20, seed=0).drawn == 20  # 1% in 20 draws: usually missed


def test_a_claim_of_a_share_passes_or_fails_on_its_bounds(folder):
    body = ("claim most: logit['a'] > logit['b'] on at least 0.9 of inputs\n"
            "claim nearly_all: logit['a'] > logit['b'] on at least 0.995 of inputs\n")
    code, claims = verify(folder, write(folder, "shares", body))
    assert claims["most"]["verdict"] == "pass" and claims["most"]["threshold"] == 0.9
    nearly_all = claims["nearly_all"]  # 1% of inputs break it: never a pass (here 3 of 598 do: inconclusive)
    assert nearly_all["verdict"] in ("fail", "inconclusive") and nearly_all["ci"][0] < 0.995 and code == 1
    assert nearly_all["n"] >= 598 and "samples 1196" in nearly_all["note"]


def test_in_full_model_reads_a_node_outside_the_circuit_in_the_unablated_model(folder):
    """On the oracle's own task (a and b equally often) neuron 1 computes relu(-carrier): 1 at a final 'b' in
    the model, 0 at every other token. Outside the circuit, the circuit-alone run holds it at its mean over
    all positions (well below 0.5), so the same claim read there fails."""
    from test_verify_oracle import TASK as LAST_AB

    register_task(LAST_AB, replace=True)
    try:
        path = folder / "full_model.circ"
        path.write_text('spec full "x"\nmodel "model"\ntask last_ab\nablate mean over task\n'
                        "node pos = blocks.0.mlp.hook_post[0]\n"
                        'claim in_model: blocks.0.mlp.hook_post[1] > 0.5 when last == "b" in full model\n'
                        'claim ablated: blocks.0.mlp.hook_post[1] > 0.5 when last == "b"\n')
        code, claims = verify(folder, path)
    finally:
        unregister_task(LAST_AB.name)
    assert claims["in_model"]["verdict"] == "pass", claims["in_model"]
    assert claims["ablated"]["verdict"] == "fail" and code == 1


def falsify(folder, path, *extra):
    out = folder / f"{path.stem}.falsify.json"
    code = main(["falsify", str(path), "--seed", "0", "--max-examples", "600", "--no-database", "--json", str(out), *extra])
    return code, {r["name"]: r for r in json.loads(out.read_text())["results"]}


def test_falsify_judges_a_claim_of_a_share_on_random_draws_not_on_one_counterexample(folder):
    """1% of inputs break `prefers_a`: a claim on 95% of inputs survives although failing inputs exist (the
    worst is shown), a claim on 99.9% is falsified by the share of draws it fails on."""
    body = ("claim most: logit['a'] > logit['b'] on at least 0.95 of inputs\n"
            "claim nearly_all: logit['a'] > logit['b'] on at least 0.999 of inputs\n")
    code, results = falsify(folder, write(folder, "share_falsify", body))
    most, nearly_all = results["most"], results["nearly_all"]
    assert most["verdict"] == "survived" and most["random_tried"] == 600, most
    assert most["counterexample"]["input"].endswith("b") and "within the share it allows" in most["note"]
    assert nearly_all["verdict"] == "falsified" and "fewer than the 0.999" in nearly_all["note"] and code == 1


AGREES = "claim agrees: agrees with model\n"


def test_an_agreement_claim_holds_where_the_circuit_answers_as_the_model_does(folder):
    code, claims = verify(folder, write(folder, "agrees", AGREES))
    claim = claims["agrees"]
    assert code == 0 and claim["kind"] == "agreement" and claim["verdict"] == "pass" and claim["n"] == 598
    code, results = falsify(folder, write(folder, "agrees_falsify", AGREES))
    assert code == 0 and results["agrees"]["verdict"] == "survived"


def test_an_agreement_claim_fails_where_the_circuit_alone_answers_otherwise(folder):
    """Without `carrier` (+1 for a final 'a', -1 for 'b') the circuit alone holds it at its task mean, +0.98:
    it answers 'a' everywhere, and no longer prefers 'b' after a final 'b' as the model does (1% of inputs)."""
    circuit = CIRCUIT.replace('node carrier = blocks.0.hook_resid_pre[0] "+1 for a, -1 for b"\n', "")
    path = folder / "no_neg.circ"
    path.write_text(HEADER.format(name="no_neg") + circuit + AGREES
                    + "claim mostly: agrees with model on at least 0.95 of inputs\n")
    code, claims = verify(folder, path)
    assert claims["agrees"]["verdict"] == "fail" and code == 1
    assert claims["agrees"]["counterexample"]["input"].endswith("b")
    assert claims["agrees"]["counterexample"]["model_logit_diff"] > 0 > claims["agrees"]["counterexample"]["circuit_logit_diff"]
    assert claims["mostly"]["verdict"] == "pass"


def test_a_sufficiency_claim_implies_no_agreement_claim(folder):
    """falsify checks what a spec states: a circuit claimed sufficient on average is not claimed to answer
    like the model on every input (that is `claim agrees with model`)."""
    code, results = falsify(folder, write(folder, "sufficient_only", "claim sufficient faithfulness >= 0.5\n"))
    assert set(results) == {"line 10"} and results["line 10"]["kind"] == "sufficient"


def test_a_claim_that_holds_with_every_node_ablated_is_flagged(folder):
    """With every node mean-ablated the oracle's answer channel sits at its task mean, which favours 'a'
    (99% of rare_ab's inputs end in 'a'): "the circuit prefers 'a' after an 'a'" then holds with nothing
    kept, and says nothing about the circuit. Agreement with the model does not: the ablated model
    answers 'a' after a final 'b' too."""
    body = "claim says_a: logit['a'] > logit['b'] when last == \"a\"\nclaim agrees: agrees with model\n"
    code, claims = verify(folder, write(folder, "vacuous", body))
    says_a, agrees = claims["says_a"], claims["agrees"]
    assert code == 0 and says_a["verdict"] == "pass" and agrees["verdict"] == "pass"
    assert says_a["when_ablated"]["would_pass"] and says_a["when_ablated"]["holds"] == says_a["n"]
    assert "also holds with every node ablated" in says_a["note"]
    assert says_a["when_ablated"]["median_margin_ablated"] < says_a["when_ablated"]["median_margin_circuit"]
    assert not agrees["when_ablated"]["would_pass"] and "every node ablated" not in agrees["note"]


def test_in_full_model_claims_self_check_against_a_pass_like_their_own():
    """An `in full model` claim captures the full model's activations, so that run computes the last block
    at every position; at the answer alone the logits differ by float rounding on some rows (rows 52 and
    58 of these 60 inputs, 1.9e-6), so the self-check must compare it with a whole pass (it raised a
    SelfCheckError here before)."""
    from pathlib import Path

    import torch

    from circuitspec.commands.check_cmd import check_file
    from circuitspec.engine.ablation import plain_answer_logits
    from circuitspec.engine.batch import encode_for
    from circuitspec.verify.runner import RunSettings, run_group

    resolved = check_file(Path("specs/call_arity.circ"))[0]
    group = [c for c in resolved.claims if c.claim.name == "later_argument"]
    assert group and group[0].in_model
    data = run_group(resolved, group, RunSettings(seed=1))
    model = resolved.context.model
    batch = encode_for(model, data.examples, resolved.task.name)
    whole = plain_answer_logits(model, batch.tokens, batch.answer_pos, by_length=True, whole_pass=True)
    assert torch.equal(data.model_logits, whole)
