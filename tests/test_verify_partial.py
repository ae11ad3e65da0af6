"""verify judges sufficiency under random partial ablations of the outside too, not only with everything
outside the circuit ablated at once (where effects outside it can cancel)."""

import dataclasses
import json

import pytest
import torch

from circuitspec.cli import main
from circuitspec.commands.check_cmd import check_file
from circuitspec.engine.ablation import run_conditions
from circuitspec.engine.batch import encode_examples
from circuitspec.engine.checkpoint import save_checkpoint
from circuitspec.engine.masks import Mask
from circuitspec.verify import runner
from circuitspec.verify.examples import sample_examples
from circuitspec.verify.runner import RunSettings, make_reference, partial_ablations, run_group
from circuitspec.engine.model import Transformer
from conftest import registered_for_module
from test_verify_oracle import CFG, CIRCUIT, HEADER, TASK, hand_set_model

SUFFICIENT = "claim sufficient faithfulness >= 0.9\n"
ARGS = ("--samples", "60", "--baselines", "40")


task = registered_for_module(TASK)


def with_writers(model, writers):
    """``model`` with MLP neurons ``n`` that compute relu(carrier) and write it, times ``weight``, to the
    channel the answer reads."""
    with torch.no_grad():
        mlp = model.blocks[0].mlp
        for n, weight in writers:
            mlp.W_in[:, n] = 0.0
            mlp.W_out[n, :] = 0.0
            mlp.W_in[0, n] = 1.0
            mlp.W_out[n, 1] = weight
    return model


def spec_with_model(root, name, writers=()):
    """The hand-set oracle circuit with its sufficiency claim, in a model where MLP neurons ``n`` also compute
    relu(carrier) and write it, times ``weight``, to the channel the answer reads (as in test_falsify.py)."""
    model = with_writers(hand_set_model(), writers)
    folder = root / name
    folder.mkdir()
    save_checkpoint(model, folder / "model", {})
    path = folder / f"{name}.circ"
    path.write_text(HEADER.format(name=name, ablation="mean over task") + CIRCUIT + SUFFICIENT)
    return path


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    """The circuit is the whole mechanism: nothing outside it reaches the answer."""
    return spec_with_model(tmp_path_factory.mktemp("partial"), "planted")


@pytest.fixture(scope="module")
def cancelling(tmp_path_factory):
    """Two neurons outside the circuit write +3 and -3 times relu(carrier) to the answer channel: ablated
    together (or both kept) they cancel, one without the other does not."""
    return spec_with_model(tmp_path_factory.mktemp("partial"), "cancelling", [(6, 3.0), (7, -3.0)])


def widened(extra: int) -> Transformer:
    """The oracle with ``extra`` more MLP neurons that read and write nothing."""
    small = hand_set_model()
    model = Transformer(dataclasses.replace(CFG, d_mlp=CFG.d_mlp + extra))
    params = dict(model.named_parameters())
    with torch.no_grad():
        for name, p in small.named_parameters():
            params[name].zero_()
            params[name][tuple(slice(0, n) for n in p.shape)] = p
    return model


PAIRS, PAIR_WEIGHT = 30, 0.05


@pytest.fixture(scope="module")
def many_pairs(tmp_path_factory):
    """Thirty pairs of neurons outside the circuit write +0.05 and -0.05 times relu(carrier) to the answer
    channel. A random partial ablation keeps about as many of each sign, so F moves little (worst of 8:
    0.90 measured); keeping only the thirty that hurt moves it a lot (0.25): random partial ablations
    cannot see what the ablations chosen against the circuit find."""
    folder = tmp_path_factory.mktemp("partial") / "pairs"
    folder.mkdir()
    writers = [(CFG.d_mlp + 2 * i + j, PAIR_WEIGHT * (1 if j == 0 else -1)) for i in range(PAIRS) for j in range(2)]
    save_checkpoint(with_writers(widened(2 * PAIRS), writers), folder / "model", {})
    return folder


def pairs_spec(folder, name, claim):
    path = folder / f"{name}.circ"
    path.write_text(HEADER.format(name=name, ablation="mean over task") + CIRCUIT + claim)
    return path


def test_chosen_partial_ablations_find_what_random_ones_cannot(many_pairs):
    code, data = verify(pairs_spec(many_pairs, "adversarial", "claim sufficient faithfulness >= 0.75\n"))
    claim = data["claims"][0]
    each = claim["partial"]["each"]
    assert all(c["verdict"] == "pass" for c in each if c["chosen"] is None)  # every random one passes
    assert code == 1 and claim["verdict"] == "fail" and claim["partial"]["worst_choice"] is not None
    assert claim["statistic"] == pytest.approx(1.0, abs=1e-3) and claim["partial"]["worst"] < 0.5
    code, data = verify(pairs_spec(many_pairs, "random", "claim sufficient faithfulness >= 0.75 robustness random\n"))
    claim = data["claims"][0]
    assert code == 0 and claim["verdict"] == "pass" and claim["partial"]["chosen"] == 0
    assert "(the claim says `robustness random`)" in claim["note"]


def test_falsify_attacks_with_chosen_subsets_only_what_claims_adversarial_robustness(many_pairs):
    for name, robustness, verdict in (("f_adversarial", "", "falsified"), ("f_random", " robustness random", "survived")):
        out = many_pairs / f"{name}.json"
        main(["falsify", str(pairs_spec(many_pairs, name, f"claim sufficient faithfulness >= 0.75{robustness}\n")),
              "--seed", "0", "--samples", "60", "--no-database", "--json", str(out)])
        result = json.loads(out.read_text())["results"][0]
        assert result["verdict"] == verdict, result


def test_discover_writes_the_strongest_robustness_that_verifies(many_pairs, capsys):
    out = many_pairs / "discovered.circ"
    code = main(["discover", "--model", str(many_pairs / "model"), "--task", TASK.name, "-o", str(out),
                 "--samples", "64", "--steps", "60", "--no-compare"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "not robust to partial ablations chosen against it" in captured.out
    assert "robustness random" in next(line for line in out.read_text().splitlines() if line.startswith("claim sufficient"))
    assert main(["verify", str(out)]) == 0


def verify(path, *extra):
    out = path.with_suffix(".json")
    code = main(["verify", str(path), "--json", str(out), *ARGS, *extra])
    return code, json.loads(out.read_text())


def test_a_sufficiency_that_needs_everything_ablated_at_once_no_longer_passes(cancelling):
    code, data = verify(cancelling, "--seed", "0")
    claim = data["claims"][0]
    assert code == 1 and claim["verdict"] in ("fail", "inconclusive")
    assert claim["statistic"] == pytest.approx(1.0, abs=1e-4)  # the reported statistic is still the all-at-once F
    assert "holds only with everything outside ablated at once: " in claim["note"]
    partial = claim["partial"]
    assert partial["random"] == 8 and partial["chosen"] >= 2 and partial["robustness"] == "adversarial"
    assert partial["conditions"] == partial["random"] + partial["chosen"] and partial["verdict"] == claim["verdict"]
    assert partial["worst_ci"][1] < 0.9 and partial["worst"] < 0.9 and partial["below_threshold"] >= 1
    each = partial["each"]
    assert [c["keep_fraction"] for c in each[:8]] == [0.25, 0.5, 0.75] * 2 + [0.25, 0.5]
    assert all(c["chosen"] is None for c in each[:8]) and all(c["keep_fraction"] is None for c in each[8:])
    # the adversary keeps the neuron whose presence hurts (-3) without the one that cancels it, or ablates
    # only the one that helps (+3): either breaks the claim on its own, whatever the random draws do
    assert any(c["verdict"] == "fail" for c in each[8:]) and "(adversarial: blocks.0.mlp.hook_post[" in \
        next(c["chosen"] for c in each[8:] if c["verdict"] == "fail")
    assert data["manifest"]["settings"]["partial_ablations"] == 8


def test_robustness_random_drops_the_chosen_ablations_and_still_fails_the_cancelling_pair(cancelling):
    path = cancelling.parent / "random.circ"
    path.write_text(cancelling.read_text().replace(SUFFICIENT, "claim sufficient faithfulness >= 0.9 robustness random\n"))
    code, data = verify(path, "--seed", "0")
    claim = data["claims"][0]
    assert claim["partial"]["chosen"] == 0 and claim["partial"]["random"] == 8 and claim["partial"]["robustness"] == "random"
    assert code == 1 and claim["verdict"] in ("fail", "inconclusive")
    assert "keeping a random" in claim["note"]


def test_robustness_none_judges_everything_outside_ablated_at_once_only(cancelling):
    path = cancelling.parent / "none.circ"
    path.write_text(cancelling.read_text().replace(SUFFICIENT, "claim sufficient faithfulness >= 0.9 robustness none\n"))
    code, data = verify(path, "--seed", "0")
    claim = data["claims"][0]
    assert code == 0 and claim["verdict"] == "pass" and claim["partial"] is None


def test_partial_ablations_0_restores_the_all_at_once_verdict(cancelling):
    code, data = verify(cancelling, "--seed", "0", "--partial-ablations", "0")
    claim = data["claims"][0]
    assert code == 0 and claim["verdict"] == "pass", claim["note"]
    assert claim["partial"] is None and "partial ablation" not in claim["note"]
    assert data["manifest"]["settings"]["partial_ablations"] == 0


def test_a_genuinely_sufficient_circuit_still_passes(planted, capsys):
    code, data = verify(planted)
    claim = data["claims"][0]
    assert code == 0 and claim["verdict"] == "pass", claim["note"]
    assert claim["note"].startswith("robust to partial ablation: worst of 8 random and ")
    assert claim["partial"]["chosen"] >= 1  # the adversary finds nothing outside to exploit, and says so by passing
    assert claim["partial"]["verdict"] == "pass" and claim["partial"]["below_threshold"] == 0
    assert claim["partial"]["worst"] == pytest.approx(1.0, abs=1e-4)
    assert all(c["ci"][0] >= 0.9 for c in claim["partial"]["each"])
    assert "robust to partial ablation" in capsys.readouterr().out  # the terminal report says so too


def test_the_same_seed_gives_the_same_json(cancelling):
    first, second = cancelling.parent / "first.json", cancelling.parent / "second.json"
    for out in (first, second):
        main(["verify", str(cancelling), "--json", str(out), *ARGS, "--seed", "3"])
    assert first.read_text() == second.read_text()
    assert json.loads(first.read_text())["claims"][0]["partial"]["random"] == 8


def test_negative_partial_ablations_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exit_:  # checked when the command line is read (argparse: exit 2)
        main(["verify", "specs/quote_head.circ", "--partial-ablations", "-1"])
    assert exit_.value.code == 2
    assert "--partial-ablations: must be at least 0, got -1" in capsys.readouterr().err


def test_the_pytest_plugin_rejects_negative_partial_ablations(pytester):
    result = pytester.runpytest("--circuitspec-partial-ablations", "-1", "-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--circuitspec-partial-ablations must be 0 (off) or more, got -1*"])


def test_partial_ablations_are_seeded_and_keep_the_circuit(planted):
    resolved, _, _ = check_file(planted)
    circuit = resolved.mask
    first, again = partial_ablations(circuit, 6, 5), partial_ablations(circuit, 6, 5)
    assert [p for p, _ in first] == [0.25, 0.5, 0.75] * 2
    assert all(a == b for (_, a), (_, b) in zip(first, again))
    assert any(a != b for (_, a), (_, b) in zip(first, partial_ablations(circuit, 6, 6)))
    for p, mask in first:
        assert all(bool((mask.nodes[h] | ~keep).all()) for h, keep in circuit.nodes.items())  # the circuit is kept
        assert all(torch.equal(mask.edges[e], circuit.edges[e]) for e in circuit.edges)
    kept = [sum(int((m.nodes[h] & ~k).sum()) for h, k in circuit.nodes.items()) for _, m in first]
    outside = sum(int((~k).sum()) for k in circuit.nodes.values())
    assert kept[0] < kept[1] < kept[2] and 0 < kept[0] < outside


def test_keeping_none_of_the_outside_is_exactly_the_circuit_and_all_of_it_the_model(planted):
    """Self-check hygiene: p = 0 must reproduce the circuit run bit for bit, p = 1 the model."""
    resolved, _, _ = check_file(planted)
    circuit = resolved.mask
    (p0, none), (p1, everything) = partial_ablations(circuit, 2, 0, fractions=(0.0, 1.0))
    assert (p0, p1) == (0.0, 1.0) and none == circuit
    assert everything == Mask(circuit.space, Mask.full(circuit.space).nodes, circuit.edges)
    model, settings = resolved.context.model, RunSettings(samples=20)
    batch = encode_examples(sample_examples(resolved.task, 20, 0), model.cfg.n_ctx)
    reference = make_reference(resolved, resolved.claims[0].ablation, resolved.claims[0].ablation_task, batch, settings)
    full = Mask.full(circuit.space)
    logits = run_conditions(model, batch.tokens, [full, circuit, none, everything], reference, batch.answer_pos)
    assert torch.equal(logits[2], logits[1]) and torch.equal(logits[3], logits[0])


def test_a_keep_fraction_of_0_in_run_group_gives_the_circuit_metric_exactly(planted, monkeypatch):
    resolved, _, _ = check_file(planted)
    monkeypatch.setattr(runner, "partial_ablations",
                        lambda circuit, count, seed: partial_ablations(circuit, count, seed, fractions=(0.0,)))
    data = run_group(resolved, resolved.claims, RunSettings(samples=20, baselines=2, partial_ablations=3))
    assert [p for p, _ in data.partials] == [0.0] * 3
    assert all((m == data.metric["circuit"]).all() for _, m in data.partials)


def test_a_robust_discovery_grows_until_the_chosen_ablations_no_longer_break_it(many_pairs, capsys):
    """The plain search's circuit is broken by the ablations chosen against it (the test above); `--robust`
    grows it until neither attack breaks it on its selection inputs, so the written claim keeps the
    default `robustness adversarial` and verifies on fresh inputs."""
    out = many_pairs / "discovered_robust.circ"
    code = main(["discover", "--model", str(many_pairs / "model"), "--task", TASK.name, "-o", str(out),
                 "--samples", "64", "--steps", "60", "--no-compare", "--robust"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "not robust to partial ablations chosen against it" not in captured.out
    sufficient = next(line for line in out.read_text().splitlines() if line.startswith("claim sufficient"))
    assert "robustness" not in sufficient
    code, data = verify(out)
    claim = next(c for c in data["claims"] if c["kind"] == "sufficient")
    assert code == 0 and claim["partial"]["robustness"] == "adversarial" and claim["partial"]["chosen"] >= 2
