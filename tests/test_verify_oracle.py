"""Ground truth for the verifier: a tiny model whose weights are set by hand so that a known circuit
computes the task exactly. True claims about it must pass; false ones must fail.

The task ``last_ab``: the input ends in 'a' or 'b'; the answer repeats it (correct) rather than the other.
The circuit: the token embedding writes +1 ('a') or -1 ('b') into residual channel 0; MLP neuron 0 =
relu(channel 0) and neuron 1 = relu(-channel 0) write +1 / -1 into residual channel 1 (and erase channel 0,
so every norm's scale is the same for 'a' and 'b' inputs and the circuit is exact); the unembedding
reads channel 1 into logit 'a' (+) and 'b' (-). Everything else is structure that never reaches those
two logits: every token writes the same random vector into channels 2..15 (so the graph branches
everywhere, as real models do, while mean ablation of it changes nothing), decoy neurons 2..7 read and
write only channels 2..15, which the 'a'/'b' logits do not read, and attention writes nothing (W_O = 0).
"""

import json
import xml.etree.ElementTree as ET

import pytest
import torch

from circuitspec.cli import main
from circuitspec.engine.checkpoint import save_checkpoint
from circuitspec.engine.model import ModelConfig, Transformer
from circuitspec.engine.tasks import Task, TaskExample
from circuitspec.engine.tokenizer import token_id
from circuitspec.schemas import validate
from circuitspec.stats import baseline_looks, look_alpha
from conftest import registered_for_module

CFG = ModelConfig(n_layers=1, d_model=16, n_heads=2, d_head=4, d_mlp=8, n_ctx=16)
A, B = token_id("a"), token_id("b")


def generate(s):
    filler = "".join(s.choice("xyz") for _ in range(s.integer(1, 5)))
    last = s.choice("ab")
    prefix = filler + last
    return TaskExample(prefix, last, "b" if last == "a" else "a", "\n", {"last": last}, {"answer": len(prefix) - 1})


TASK = Task("last_ab", "repeat the final a/b", generate, {"last": "the final character"}, {"answer": "where it is read"})


task = registered_for_module(TASK)


def hand_set_model() -> Transformer:
    gen = torch.Generator().manual_seed(0)
    model = Transformer(CFG)
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
        W_E = model.embed.W_E
        W_E[:, 2:] = torch.randn(CFG.d_model - 2, generator=gen)  # the same vector for every token
        W_E[:, 0] = 1.0  # every token has |channel 0| = 1, so norm scales are the same at every position
        W_E[B, 0] = -1.0
        mlp = model.blocks[0].mlp
        mlp.W_in[0, 0], mlp.W_in[0, 1] = 1.0, -1.0
        mlp.W_out[0, 1], mlp.W_out[1, 1] = 1.0, -1.0
        mlp.W_out[0, 0], mlp.W_out[1, 0] = -1.0, 1.0  # erase the carrier, so the final norm's scale is the same for a and b
        mlp.W_in[2:, 2:] = torch.randn(CFG.d_model - 2, CFG.d_mlp - 2, generator=gen)  # decoys read noise ...
        mlp.W_out[2:, 2:] = torch.randn(CFG.d_mlp - 2, CFG.d_model - 2, generator=gen)  # ... and write noise
        model.blocks[0].attn.W_Q.normal_(generator=gen)  # attention computes, but W_O = 0 drops its output
        model.blocks[0].attn.W_K.normal_(generator=gen)
        model.blocks[0].attn.W_V.normal_(generator=gen)
        model.unembed.W_U[1, A], model.unembed.W_U[1, B] = 4.0, -4.0
        model.unembed.W_U[2:, :] = torch.randn(CFG.d_model - 2, CFG.d_vocab, generator=gen) * 0.1
        model.unembed.W_U[2:, A] = model.unembed.W_U[2:, B] = 0.0  # noise channels never reach 'a' / 'b'
    return model.eval()


HEADER = 'spec oracle "{name}"\nmodel "model"\ntask last_ab\nablate {ablation}\n'
CIRCUIT = """node carrier = blocks.0.hook_resid_pre[0] "+1 for a, -1 for b"
node carrier_mid = blocks.0.hook_resid_mid[0]
node pos = blocks.0.mlp.hook_post[0] "relu(+carrier)"
node neg = blocks.0.mlp.hook_post[1] "relu(-carrier)"
node out = blocks.0.hook_resid_post[1] "read by logit a and b"
"""


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("oracle")
    save_checkpoint(hand_set_model(), root / "model", {"description": "hand-set oracle"})
    return root


def write(folder, name, body, ablation="mean over task"):
    path = folder / f"{name}.circ"
    path.write_text(HEADER.format(name=name, ablation=ablation) + body)
    return path


def verify(folder, path, *extra):
    out = folder / f"{path.stem}.json"
    code = main(["verify", str(path), "--json", str(out), "--samples", "60", "--baselines", "40", *extra])
    data = json.loads(out.read_text())
    validate("verify", data)
    return code, {c["name"] if not c["name"].startswith("line ") else c["kind"]: c for c in data["claims"]}


TRUE_CLAIMS = CIRCUIT + """edge carrier -> pos -> out -> logits
claim sufficient faithfulness >= 0.95
claim necessary faithfulness <= 0.05
claim minimal each node drop >= 0.2
claim fires_for_a: pos > 0.5 when last == "a"
claim silent_for_b: pos <= 0 when last == "b"
claim says_a: logit['a'] > logit['b'] when last == "a"
claim says_b: logit['b'] > logit['a'] when last == "b"
"""


@pytest.mark.parametrize("ablation", ["mean over task", "zero", "resample from task"])
def test_true_claims_pass(folder, ablation):
    body = TRUE_CLAIMS
    if ablation == "zero":
        # Zeroing only the few constant channels a chosen partial ablation picks changes every norm's scale
        # (F = 0.66 ablating the 10 that help most): under zero ablation the circuit is exact only with all
        # of them zeroed or none, so it is claimed robust to random partial ablations only.
        body = body.replace("claim sufficient faithfulness >= 0.95", "claim sufficient faithfulness >= 0.95 robustness random")
    path = write(folder, f"true_{ablation.split()[0]}", body, ablation)
    code, claims = verify(folder, path)
    failing = {k: (v["verdict"], v["statistic"], v["note"]) for k, v in claims.items() if v["verdict"] != "pass"}
    assert code == 0 and not failing, failing
    if ablation == "zero":  # zeroing the constant channels shrinks every norm's input: the circuit overshoots
        assert claims["sufficient"]["statistic"] > 1.0
    else:  # mean and resample leave the constant channels as they are: the circuit is the model
        assert claims["sufficient"]["statistic"] == pytest.approx(1.0, abs=1e-4)
    assert claims["sufficient"]["baseline"]["as_good_or_better"] == 0
    necessity = claims["necessary"]["baseline"]  # 40 planned: looks after 7, 17, 27, 37 and 40
    assert necessity["planned"] == 40 and necessity["random_circuits"] in baseline_looks(40, 0.05)
    if necessity["random_circuits"] < 40:  # stopped at an interim look: its test passed at its own level
        assert necessity["alpha"] == pytest.approx(look_alpha(0.05, necessity["random_circuits"], 40), abs=1e-6)
        assert necessity["p_value"] <= necessity["alpha"]


def test_necessity_claims_of_two_confidences_in_one_group_each_pass_at_their_own_looks(folder):
    """The looks of staged baselines depend on the level: a run may stop early only at a look that every
    necessity claim of the group has, where each one's test passes, so each is judged at a look of its
    own schedule (a weaker claim is never left inconclusive by a stricter one's early stop)."""
    body = CIRCUIT + ("claim loose: necessary faithfulness <= 0.05\n"
                      "claim strict: necessary faithfulness <= 0.05 confidence 0.99\n")
    code, claims = verify(folder, write(folder, "two_confidences", body))
    assert code == 0, {k: (v["verdict"], v["note"]) for k, v in claims.items()}
    for name, alpha in (("loose", 0.05), ("strict", 0.01)):
        baseline = claims[name]["baseline"]
        assert baseline["random_circuits"] in baseline_looks(40, alpha)
        assert baseline["alpha"] == pytest.approx(look_alpha(alpha, baseline["random_circuits"], 40), abs=1e-6)
        assert baseline["p_value"] <= baseline["alpha"]


def test_a_necessity_claim_that_fails_runs_every_baseline(folder):
    """Random circuits hurt as much as a decoy when ablated: no look stops them, all 40 run."""
    path = write(folder, "decoy_necessary", "node decoy = blocks.0.mlp.hook_post[4]\nclaim necessary faithfulness <= 0.05\n")
    code, claims = verify(folder, path)
    assert code == 1 and claims["necessary"]["verdict"] == "fail"
    assert claims["necessary"]["baseline"]["random_circuits"] == claims["necessary"]["baseline"]["planned"] == 40
    # judged at the last look's level: the tail of the count a single test at 0.05 passes on
    assert claims["necessary"]["baseline"]["alpha"] == pytest.approx(look_alpha(0.05, 40, 40), abs=1e-6)
    assert look_alpha(0.05, 40, 40) == pytest.approx(0.0403, abs=1e-4)


def test_a_wrong_node_is_not_sufficient(folder):
    path = write(folder, "wrong_node", "node decoy = blocks.0.mlp.hook_post[4]\nclaim sufficient faithfulness >= 0.9\n")
    code, claims = verify(folder, path)
    assert code == 1 and claims["sufficient"]["verdict"] == "fail"
    assert claims["sufficient"]["ci"][1] < 0.9


def test_a_missing_node_is_not_sufficient(folder):
    body = CIRCUIT.replace('node neg = blocks.0.mlp.hook_post[1] "relu(-carrier)"\n', "")
    code, claims = verify(folder, write(folder, "missing_node", body + "claim sufficient faithfulness >= 0.95\n"))
    assert code == 1 and claims["sufficient"]["verdict"] == "fail"
    assert 0.3 < claims["sufficient"]["statistic"] < 0.8  # half the mechanism: one sign of the carrier


def test_a_non_minimal_extra_node_fails_minimality(folder):
    body = CIRCUIT + "node decoy = blocks.0.mlp.hook_post[5]\nclaim minimal each node drop >= 0.2\n"
    code, claims = verify(folder, write(folder, "extra_node", body))
    assert code == 1 and claims["minimal"]["verdict"] == "fail"
    verdicts = {u["unit"]: u["verdict"] for u in claims["minimal"]["units"]}
    assert verdicts["decoy"] == "fail" and verdicts["pos"] == "pass" and verdicts["carrier"] == "pass"


def test_an_irrelevant_node_is_not_necessary(folder):
    body = "node decoy = blocks.0.mlp.hook_post[6]\nclaim necessary faithfulness <= 0.5\n"
    code, claims = verify(folder, write(folder, "irrelevant_node", body))
    assert code == 1 and claims["necessary"]["verdict"] == "fail"
    assert claims["necessary"]["statistic"] == pytest.approx(1.0, abs=1e-4)


def test_a_false_role_claim_fails_with_a_counterexample(folder):
    body = CIRCUIT + 'claim pos_for_b: pos > 0.5 when last == "b"\n'
    code, claims = verify(folder, write(folder, "false_role", body))
    assert code == 1 and claims["pos_for_b"]["verdict"] == "fail"
    assert claims["pos_for_b"]["counterexample"]["input"].endswith("b")
    assert claims["pos_for_b"]["statistic"] == 0.0


def test_same_seed_gives_identical_json_and_junit_lists_every_claim(folder):
    path = write(folder, "determinism", TRUE_CLAIMS)
    first, second = folder / "a.json", folder / "b.json"
    junit = folder / "junit.xml"
    main(["verify", str(path), "--json", str(first), "--samples", "30", "--baselines", "10", "--seed", "7", "--junit", str(junit)])
    main(["verify", str(path), "--json", str(second), "--samples", "30", "--baselines", "10", "--seed", "7"])
    assert first.read_text() == second.read_text()
    data = json.loads(first.read_text())
    assert data["manifest"]["settings"]["seed"] == 7 and data["manifest"]["specs"][0]["model_sha256"]
    for claim in data["claims"]:
        assert {"spec", "line", "kind", "verdict", "statistic", "ci", "threshold", "ablation", "n"} <= set(claim)
    suite = ET.parse(junit).getroot().find("testsuite")
    assert int(suite.get("tests")) == len(data["claims"]) == 7
    assert int(suite.get("failures")) == sum(c["verdict"] != "pass" for c in data["claims"])


def test_spec_errors_exit_2_and_corrupt_models_exit_3(folder, capsys):
    bad = write(folder, "bad_index", "node n = blocks.0.mlp.hook_post[99]\nclaim sufficient faithfulness >= 0.9\n")
    assert main(["verify", str(bad)]) == 2
    assert "error[E504]" in capsys.readouterr().err
    corrupt = folder / "corrupt"
    corrupt.mkdir()
    for f in ("config.json", "manifest.json"):
        (corrupt / f).write_text((folder / "model" / f).read_text())
    (corrupt / "model.safetensors").write_bytes(b"garbage")
    spec = folder / "corrupt_spec.circ"
    spec.write_text(HEADER.format(name="c", ablation="zero").replace('model "model"', 'model "corrupt"') + CIRCUIT
                    + "claim sufficient faithfulness >= 0.9\n")
    assert main(["verify", str(spec)]) == 3
    assert "error[E512]" in capsys.readouterr().err


def test_too_few_baselines_is_inconclusive_not_a_fail(folder):
    """With 5 random circuits, none doing as well cannot show the circuit beats 90% of them (0.9^5 = 0.59),
    nor that it does not: inconclusive, and the note says so."""
    path = write(folder, "few_baselines", CIRCUIT + "claim sufficient faithfulness >= 0.9\n")
    out = folder / "few_baselines.json"
    code = main(["verify", str(path), "--json", str(out), "--samples", "60", "--baselines", "5"])
    claim = json.loads(out.read_text())["claims"][0]
    assert code == 1 and claim["verdict"] == "inconclusive", claim
    assert "0 of 5" in claim["note"] and "too few" in claim["note"]


def test_minimal_each_node_and_each_edge_in_one_group_judge_their_own_units(folder):
    """Both claims share a batch of inputs (same ablation, conditions, samples, metric); each is judged on
    its own units only: the named nodes, or the declared edges (they once got both, and the Holm
    correction over all of them)."""
    body = CIRCUIT + ("edge carrier_mid -> pos -> out\nclaim nodes: minimal each node drop >= 0.2\n"
                      "claim edges: minimal each edge drop >= 0.2\n")
    _, claims = verify(folder, write(folder, "both_minimal", body))
    assert [u["unit"] for u in claims["nodes"]["units"]] == ["carrier", "carrier_mid", "pos", "neg", "out"]
    assert [u["unit"] for u in claims["edges"]["units"]] == ["carrier_mid -> pos", "pos -> out"]


def test_a_part_that_is_not_needed_and_one_that_is(folder, tmp_path):
    """The decoy neurons (2..7) never reach the answer: ablating them keeps everything. Ablating the carrier
    channel leaves the mean, which favours neither answer: F = 0."""
    body = CIRCUIT + ("group decoys = blocks.0.mlp.hook_post[2:8]\n"
                      "claim decoys_unneeded: ablating decoys keeps faithfulness >= 0.95\n"
                      "claim carrier_unneeded: ablating carrier keeps faithfulness >= 0.5\n")
    code, claims = verify(folder, write(folder, "unneeded", body))
    decoys, carrier = claims["decoys_unneeded"], claims["carrier_unneeded"]
    assert decoys["kind"] == "unneeded" and decoys["verdict"] == "pass"
    assert decoys["statistic"] == pytest.approx(1.0, abs=1e-4)
    assert carrier["verdict"] == "fail" and carrier["ci"][1] < 0.5 and "the part is needed" in carrier["note"]
    assert code == 1
    out = tmp_path / "falsify.json"
    main(["falsify", str(write(folder, "unneeded_falsify", body)), "--seed", "0", "--samples", "60", "--no-database",
          "--json", str(out)])
    results = {r["name"]: r for r in json.loads(out.read_text())["results"]}
    assert results["decoys_unneeded"]["verdict"] == "survived" and results["carrier_unneeded"]["verdict"] == "falsified"
