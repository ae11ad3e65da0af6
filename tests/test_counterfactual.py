"""`ablate resample from corrupted(FEATURE)`: counterfactual partners, and verdicts under them.

Partners (engine/tasks/counterfactual.py) are found by replaying a task generator's recorded choices with
one or a few changed: they must differ in the feature and keep the prefix length and every named position.
The verdicts are checked on a model set by hand for the task ``last_ab_paired``: a filler of x/y/z, then
'a' or 'b', which the answer repeats. The embedding writes -1 ('b') or +1 (any other token) into residual
channel 0; MLP neurons 0 = relu(ch0) and 1 = relu(-ch0) write +1 / -1 into channel 1 (and erase channel 0),
which the unembedding reads into logit 'a' (+) and 'b' (-). Decoy neuron 2 = relu(ch0) reads the same
carrier (so it carries the feature too) but writes channel 2, which no answer logit reads. The rest is
noise that never reaches the answer logits but makes the weight graph branch, as a trained model's does
(random baseline circuits are drawn from it). Under the corrupted-partner ablation of `last`, the
carrier path is necessary and the decoy is not.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from circuitspec.cli import main
from circuitspec.commands.check_cmd import check_file
from circuitspec.engine.ablation import Ablation, Reference, plain_answer_logits, run_conditions
from circuitspec.engine.batch import encode_examples
from circuitspec.engine.checkpoint import save_checkpoint
from circuitspec.engine.masks import Mask, MaskSpace
from circuitspec.engine.model import ModelConfig, Transformer
from circuitspec.engine.tasks import RandomSampler, Task, TaskExample, all_tasks, get_task
from circuitspec.engine.tasks.counterfactual import PartnerRuleError, closeness, find_partner, is_partner
from circuitspec.engine.tasks.draws import ReplaySampler, draws_of
from circuitspec.engine.tokenizer import token_id
from circuitspec.lang import format_spec, parse_spec, render_all
from test_verify_oracle import CIRCUIT  # the same five-node circuit, planted in this file's own model
from circuitspec.schemas import validate
from circuitspec.testing import assert_claim, claim_inputs, in_population, load_spec
from circuitspec.verify.pairs import NoPartnerError, partners_of
from conftest import registered_for_module

BUILTIN = [task.name for task in all_tasks() if task.name in {
    "closing_quote", "bracket_nesting", "bracket_type", "var_type", "eq_vs_assign", "header_colon", "for_in",
    "dict_or_set", "call_arity"}]

# ---- recorded choices ------------------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(st.sampled_from(BUILTIN), st.integers(0, 10**6))
def test_replaying_an_inputs_recorded_choices_makes_the_same_input(name, seed):
    task = get_task(name)
    example = task.example(RandomSampler(seed))
    draws = draws_of(example)
    replay = ReplaySampler(draws.draws, {}, RandomSampler("unused"))
    again = draws.generate(replay)
    assert (again.prefix, dict(again.features), dict(again.positions)) == (example.prefix, dict(example.features),
                                                                            dict(example.positions))
    assert replay.diverged == 0 and replay.position == len(draws.draws)


@pytest.mark.parametrize("name", BUILTIN)
def test_recording_changes_no_input(name):
    """verify draws the same inputs as before recording existed (`verify specs/` is unchanged)."""
    task = get_task(name)
    plain = RandomSampler(f"{name}:3")
    assert [ex.prefix for ex in task.sample(30, 3)] == [task.generate(plain).prefix for _ in range(30)]


def test_an_input_built_by_hand_has_no_record():
    example = get_task("closing_quote").sample(1, 0)[0]
    copy = TaskExample(example.prefix, example.correct, example.wrong, example.suffix, example.features, example.positions)
    assert draws_of(example) is not None and draws_of(copy) is None


# ---- partners --------------------------------------------------------------------------------------


@st.composite
def task_features(draw):
    task = get_task(draw(st.sampled_from(BUILTIN)))
    return task, draw(st.sampled_from(list(task.features)))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(task_features(), st.integers(0, 10**6), st.integers(0, 3))
def test_a_partner_differs_in_the_feature_and_keeps_length_and_positions(task_feature, input_seed, search_seed):
    task, feature = task_feature
    example = task.example(RandomSampler(input_seed))
    partner = find_partner(task, example, feature, search_seed)
    if partner is None:
        return
    assert partner.features[feature] != example.features[feature]
    assert len(partner.prefix) == len(example.prefix)
    assert dict(partner.positions) == dict(example.positions)
    assert is_partner(example, partner, feature)
    assert find_partner(task, example, feature, search_seed) is partner  # searched once, the same every time


def test_closing_quote_partners_flip_only_the_opening_quote():
    task = get_task("closing_quote")
    for example in task.sample(50, "pairs"):
        partner = find_partner(task, example, "opening_quote")
        q = example.positions["opening_quote"]
        assert partner.prefix == example.prefix[:q] + partner.prefix[q] + example.prefix[q + 1:]
        assert {partner.prefix[q], example.prefix[q]} == {"'", '"'} and partner.correct == example.wrong
        assert closeness(example, partner, "opening_quote").key() == (0, 1)  # no other feature changed


def test_a_feature_fixed_by_the_named_positions_has_no_partner():
    """The opening quote and the answer are named positions: a partner keeping both has the same body."""
    task = get_task("closing_quote")
    assert all(find_partner(task, ex, "body_length") is None for ex in task.sample(5, "fixed"))


def test_partners_are_deterministic_per_seed():
    task = get_task("bracket_type")
    examples = task.sample(20, "seeded")
    first = [find_partner(task, ex, "innermost", 5) for ex in examples]
    again = [find_partner(task, TaskExample(ex.prefix, ex.correct, ex.wrong, ex.suffix, ex.features, ex.positions), "innermost", 5)
             for ex in examples]
    assert any(p is not None for p in first) and all(p is None for p in again)  # a copy has no record
    fresh = task.sample(20, "seeded")  # the same inputs drawn again: searched anew, the same partners
    assert [p.prefix if p else None for p in first] == [
        (p.prefix if p else None) for p in (find_partner(task, ex, "innermost", 5) for ex in fresh)]


def test_an_input_without_a_partner_is_named():
    task = get_task("closing_quote")
    example = task.sample(1, 0)[0]
    hand_made = TaskExample(example.prefix, example.correct, example.wrong, "", example.features, example.positions)
    with pytest.raises(NoPartnerError, match="no counterfactual partner"):
        partners_of(task, [example, hand_made], "opening_quote", 0)


def _swap_case_pairing(sampler, example, feature):
    """A task's own pairing: the same text with the marker's case swapped (works without a record too)."""
    if feature != "upper":
        return None
    i = example.positions["marker"]
    text = example.prefix[:i] + example.prefix[i].swapcase() + example.prefix[i + 1:]
    return TaskExample(text, example.correct, example.wrong, "", {"upper": not example.features["upper"]},
                       example.positions)


def _marker(s):
    filler = "".join(s.choice("xyz") for _ in range(s.integer(1, 3)))
    mark = s.choice("mM")
    return TaskExample(filler + mark + ".", "a", "b", "", {"upper": mark == "M"},
                       {"marker": len(filler), "answer": len(filler) + 1})


def test_a_task_may_pair_its_own_inputs():
    task = Task("marker", "a marker", _marker, {"upper": "the marker is upper case"},
                {"marker": "the marker", "answer": "the dot"}, counterfactual=_swap_case_pairing)
    example = task.example(RandomSampler(1))
    hand_made = TaskExample(example.prefix, "a", "b", "", example.features, example.positions)
    for x in (example, hand_made):
        partner = find_partner(task, x, "upper")
        assert partner.prefix == _swap_case_pairing(None, x, "upper").prefix and is_partner(x, partner, "upper")
    wrong = Task("marker", "a marker", _marker, {"upper": ""}, {"marker": "", "answer": ""},
                 counterfactual=lambda s, ex, f: ex)  # the input itself: the feature does not differ
    with pytest.raises(PartnerRuleError, match="not a partner"):
        find_partner(wrong, wrong.example(RandomSampler(1)), "upper")


# ---- the language ----------------------------------------------------------------------------------

SPEC = """spec cf "paired ablation"
model "py-sparse-small"
task closing_quote
ablate resample from corrupted(opening_quote)

node reader = blocks.1.attn.hook_z[head=1, 19]
claim necessary faithfulness <= 0.9 ablate resample from corrupted(earlier_quote)
"""


def test_fmt_keeps_the_clause(tmp_path):
    result = parse_spec(SPEC.replace("corrupted(earlier_quote)", "corrupted( earlier_quote )"), "cf.circ")
    assert not result.diagnostics
    assert format_spec(result.spec) == SPEC
    assert str(result.spec.claims[0].ablation) == "resample from corrupted(earlier_quote)"
    path = tmp_path / "cf.circ"
    path.write_text(SPEC)
    assert main(["fmt", "--check", str(path)]) == 0


# ---- verdicts on a hand-set model -----------------------------------------------------------------

CFG = ModelConfig(n_layers=1, d_model=16, n_heads=2, d_head=4, d_mlp=8, n_ctx=16)
A, B = token_id("a"), token_id("b")


def generate(s):
    filler = "".join(s.choice("xyz") for _ in range(s.integer(1, 5)))
    last = s.choice("ab")
    prefix = filler + last
    return TaskExample(prefix, last, "b" if last == "a" else "a", "\n", {"last": last, "first": filler[0]},
                       {"answer": len(prefix) - 1})


TASK = Task("last_ab_paired", "repeat the final a/b", generate, {"last": "the final character", "first": "the first"},
            {"answer": "where it is read"})


task = registered_for_module(TASK)


def hand_set_model() -> Transformer:
    gen = torch.Generator().manual_seed(0)
    model = Transformer.zeros(CFG, anchor=False)
    noise = lambda *shape: torch.randn(*shape, generator=gen)  # noqa: E731
    model.embed.W_E[:, 0] = 1.0  # the carrier: +1, and -1 for 'b' (|carrier| = 1 for every token: the same norm scales)
    model.embed.W_E[B, 0] = -1.0
    model.embed.W_E[:, 3:] = noise(CFG.d_model - 3)  # every token writes the same vector into channels 3..15
    mlp = model.blocks[0].mlp
    mlp.W_in[0, 0], mlp.W_in[0, 1], mlp.W_in[0, 2] = 1.0, -1.0, 1.0
    mlp.W_out[0, 1], mlp.W_out[1, 1] = 1.0, -1.0  # relu(+carrier) - relu(-carrier) into channel 1 ...
    mlp.W_out[0, 0], mlp.W_out[1, 0] = -1.0, 1.0  # ... erasing the carrier
    mlp.W_out[2, 2] = 1.0  # the decoy: reads the carrier, writes a channel no answer logit reads
    mlp.W_in[3:, 3:] = noise(CFG.d_model - 3, CFG.d_mlp - 3)  # other neurons read and write the constant
    mlp.W_out[3:, 3:] = noise(CFG.d_mlp - 3, CFG.d_model - 3)  # channels, so the graph branches everywhere
    for W in (model.blocks[0].attn.W_Q, model.blocks[0].attn.W_K, model.blocks[0].attn.W_V):
        W.copy_(noise(*W.shape))  # attention computes, but W_O = 0 drops its output
    model.unembed.W_U[1, A], model.unembed.W_U[1, B] = 4.0, -4.0
    model.unembed.W_U[2:, :] = noise(CFG.d_model - 2, CFG.d_vocab) * 0.1
    model.unembed.W_U[2:, A] = model.unembed.W_U[2:, B] = 0.0  # no other channel reaches 'a' or 'b'
    return model


HEADER = 'spec {name} "paired"\nmodel "model"\ntask last_ab_paired\nablate resample from corrupted(last)\n'


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("paired")
    save_checkpoint(hand_set_model(), root / "model", {"description": "hand-set, paired ablation"})
    return root


def verify(folder, name, body, *extra):
    path = folder / f"{name}.circ"
    path.write_text(HEADER.format(name=name) + body)
    out = folder / f"{name}.json"
    code = main(["verify", str(path), "--json", str(out), "--samples", "40", "--baselines", "30",
                 "--partial-ablations", "2", "--threads", "1", *extra])
    data = json.loads(out.read_text())
    validate("verify", data)
    claims = {c["name"] if not c["name"].startswith("line ") else c["kind"]: c for c in data["claims"]}
    return code, claims


def test_all_ablated_is_the_model_on_each_partner():
    """F's denominator: with every node ablated, each input's answer logits are the model's on its partner."""
    model = hand_set_model()
    examples = TASK.sample(12, 0)
    partners = partners_of(TASK, examples, "last", 0)
    batch, paired = encode_examples(examples, CFG.n_ctx), encode_examples(partners, CFG.n_ctx)
    assert torch.equal(batch.answer_pos, paired.answer_pos)
    ablation = Ablation("resample", corrupted="last")
    reference = Reference.compute(model, ablation, batch.tokens, batch.answer_pos + 1, paired.tokens, paired.answer_pos + 1)
    space = MaskSpace.for_config(CFG)
    empty = Mask(space, Mask.empty(space).nodes, Mask.full(space).edges)
    logits = run_conditions(model, batch.tokens, [Mask.full(space), empty], reference, batch.answer_pos)
    assert torch.equal(logits[0], plain_answer_logits(model, batch.tokens, batch.answer_pos))
    assert torch.allclose(logits[1], plain_answer_logits(model, paired.tokens, paired.answer_pos), atol=1e-5)


def test_the_carrier_is_necessary_and_the_decoy_is_not(folder):
    code, claims = verify(folder, "carrier", CIRCUIT + "claim necessary faithfulness <= 0.1\n"
                                                       "claim sufficient faithfulness >= 0.9\n")
    assert code == 0, {k: (v["verdict"], v["note"]) for k, v in claims.items()}
    assert claims["necessary"]["statistic"] < 0.05 and claims["sufficient"]["statistic"] > 0.95
    assert claims["necessary"]["ablation"] == "resample from corrupted(last)"
    code, claims = verify(folder, "decoy", 'node decoy = blocks.0.mlp.hook_post[2] "reads the carrier too"\n'
                                           "claim necessary faithfulness <= 0.5\n")
    assert code == 1 and claims["necessary"]["verdict"] == "fail"
    assert claims["necessary"]["statistic"] > 0.9  # its partner value changes nothing the answer reads


def test_verify_end_to_end(folder, capsys):
    body = CIRCUIT + ("claim nec: necessary faithfulness <= 0.1\n"
                      "claim agrees with model on at least 0.9 of inputs samples 60\n"
                      "claim decoy_free: ablating blocks.0.mlp.hook_post[2] keeps faithfulness >= 0.9\n")
    code, claims = verify(folder, "end_to_end", body)
    assert code == 0, {k: (v["verdict"], v["note"]) for k, v in claims.items()}
    assert {c["ablation"] for c in claims.values()} == {"resample from corrupted(last)"}
    assert "resample from corrupted(last)" in capsys.readouterr().out


def test_falsify_attacks_without_other_references(folder):
    path = folder / "falsify.circ"
    path.write_text(HEADER.format(name="falsify") + CIRCUIT + "claim nec: necessary faithfulness <= 0.1\n"
                    "claim says_a: logit['a'] > logit['b'] when last == \"a\"\n")
    out = folder / "falsify.json"
    code = main(["falsify", str(path), "--max-examples", "15", "--seed", "0", "--no-database", "--threads", "1",
                 "--json", str(out)])
    results = {r["name"]: r for r in json.loads(out.read_text())["results"]}
    assert code == 0 and {r["verdict"] for r in results.values()} == {"survived"}
    assert results["nec"]["tried"] == 1 and "each input's corrupted partner" in results["nec"]["note"]


def test_check_names_a_feature_the_task_lacks(folder, capsys):
    path = folder / "lacks.circ"
    path.write_text(HEADER.format(name="lacks").replace("corrupted(last)", "corrupted(lats)") + CIRCUIT
                    + "claim necessary faithfulness <= 0.1\n")
    assert main(["check", str(path)]) == 2
    assert "error[E515]: task 'last_ab_paired' has no feature 'lats'" in capsys.readouterr().err


def test_the_testing_api_pairs_inputs_as_verify_does(folder):
    path = folder / "api.circ"
    path.write_text(HEADER.format(name="api") + CIRCUIT + "claim says_a: logit['a'] > logit['b'] when last == \"a\"\n")
    spec = load_spec(path)
    claim = spec.claim("says_a")
    example = TASK.sample(1, 3)[0]
    hand_made = TaskExample(example.prefix, example.correct, example.wrong, "", example.features, example.positions)
    assert in_population(spec, claim, example) == (example.features["last"] == "a")
    assert not in_population(spec, claim, hand_made)  # no record, so no partner: outside the claim, as in verify

    @settings(max_examples=10, deadline=None)
    @given(claim_inputs(spec, "says_a"))
    def holds(example):
        assert_claim(spec, "says_a", example)

    holds()


def test_the_e517_shown_in_the_docs_is_real(tmp_path, monkeypatch):
    doc = (Path(__file__).parent.parent / "docs" / "language.md").read_text()
    shown = re.search(r"```\n(quote_pairs\.circ:.*?)```", doc, re.S).group(1)
    monkeypatch.chdir(tmp_path)
    Path("quote_pairs.circ").write_text('spec quote_pairs "x"\nmodel "py-sparse-small"\ntask closing_quote\n'
                                        "ablate resample from corrupted(body_length)\n\n"
                                        "node reader = blocks.1.attn.hook_z[head=1, 19]\nclaim necessary faithfulness <= 0.2\n")
    resolved, diagnostics, sources = check_file(Path("quote_pairs.circ"))
    assert resolved is None and [d.code for d in diagnostics] == ["E517"]
    assert render_all(diagnostics, sources).startswith(shown)
