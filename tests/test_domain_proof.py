"""Proofs over a finite domain: the interval bounds are sound, the branch and bound agrees with exhaustive
evaluation, a claim false on one input is refuted with that input, a claim exactly at its boundary is not
proved, and certificates are re-verified (and tampered ones rejected) by the independent checker."""

from __future__ import annotations

import copy
import json
import random
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from circuitspec.cli import main
from circuitspec.commands.check_cmd import check_file
from circuitspec.engine.ablation import Reference, run_conditions
from circuitspec.engine.masks import Mask, MaskSpace
from circuitspec.engine.model import ModelConfig, Transformer
from circuitspec.engine.tasks.domain import STRING_BODY_CHARS, Chars, Domain
from circuitspec.engine.tasks.registry import get_task
from circuitspec.engine.ablation import Ablation
from circuitspec.prove.certificate_check import check_certificate
from circuitspec.prove.domain_proof import certificate, prove_over_domain
from circuitspec.prove.intervals import CircuitWeights, margin_bounds
from circuitspec.prove.over_domain import REFERENCE_BATCH, claim_margin
from circuitspec.engine.batch import encode_for
from circuitspec.verify.examples import sample_examples
from circuitspec.verify.runner import RunSettings, make_reference

SPEC = Path("specs/closing_quote_small.circ")
DQ, SQ = ord('"'), ord("'")
BODY = [ord(c) for c in STRING_BODY_CHARS]


@pytest.fixture(scope="module")
def circuit():
    """The shipped closing-quote circuit: resolved spec, its behaviour claim, reference and bounds' weights."""
    resolved, _, _ = check_file(SPEC)
    claim = next(c for c in resolved.claims if c.kind == "behaviour")
    examples = sample_examples(resolved.task, REFERENCE_BATCH, "0:prove-domain")
    batch = encode_for(resolved.context.model, examples, resolved.task.name)
    reference = make_reference(resolved, claim.ablation, claim.ablation_task, batch, RunSettings(), examples=examples)
    return resolved, claim, reference, CircuitWeights.from_model(resolved.context.model, resolved.mask, reference)


def engine_margins(model, mask, reference, inputs: list[list[int]], a: int, b: int | None) -> np.ndarray:
    """The ablation engine's margin logit[a] - logit[b] (or logit[a]) at the last position, per input."""
    by_length: dict[int, list[int]] = {}
    for i, tokens in enumerate(inputs):
        by_length.setdefault(len(tokens), []).append(i)
    values = np.zeros(len(inputs))
    for length, rows in by_length.items():
        t = torch.tensor([inputs[r] for r in rows])
        logits = run_conditions(model, t, [mask], reference, torch.full((len(rows),), length - 1))[0].double()
        diff = logits[:, a] - (logits[:, b] if b is not None else 0)
        values[rows] = diff.numpy()
    return values


def members(box: list[list[int]]) -> list[list[int]]:
    inputs = [[]]
    for tokens in box:
        inputs = [x + [t] for x in inputs for t in tokens]
    return inputs


def lead(text: str) -> list[list[int]]:
    return [[ord(c)] for c in text]


def test_point_boxes_reproduce_the_engine(circuit):
    """A box of single tokens is one input: its bounds are a narrow interval around the engine's value."""
    resolved, claim, reference, cw = circuit
    model = resolved.context.model
    examples = sample_examples(resolved.task, 20, "point-check")
    inputs = [model.tokenizer.encode(e.prefix) for e in examples]
    truth = engine_margins(model, resolved.mask, reference, inputs, DQ, SQ)
    direction, offset = cw.margin_direction(DQ, SQ)
    for tokens, value in zip(inputs, truth):
        box = margin_bounds(cw, [[[t] for t in tokens]], direction, offset)[0]
        assert float(box.lo) <= value + 1e-4 and float(box.hi) >= value - 1e-4
        assert float(box.hi - box.lo) < 1e-3


@pytest.mark.parametrize("seed", range(4))
def test_box_bounds_contain_every_member_on_the_shipped_circuit(circuit, seed):
    resolved, claim, reference, cw = circuit
    rng = random.Random(seed)
    box = lead(rng.choice(["x = ", "print(", "ab["])) + [[DQ]] + [rng.sample(BODY, rng.randint(1, 5)) for _ in range(rng.randint(1, 3))]
    inputs = members(box)
    truth = engine_margins(resolved.context.model, resolved.mask, reference, inputs, DQ, SQ)
    direction, offset = cw.margin_direction(DQ, SQ)
    bounds = margin_bounds(cw, [box], direction, offset)[0]
    last = {t: i for i, t in enumerate(box[-1])}
    for tokens, value in zip(inputs, truth):
        i = last[tokens[-1]]
        assert float(bounds.lo[i]) <= value + 1e-4 and float(bounds.hi[i]) >= value - 1e-4


@pytest.mark.parametrize("seed", range(3))
def test_box_bounds_contain_every_member_on_a_random_model(seed):
    """Random weights, a random node mask and random means: every shape the bounds handle (sinks, kept and
    ablated q/k/v/z channels, neurons, residual channels) is exercised."""
    torch.manual_seed(seed)
    cfg = ModelConfig(n_layers=2, d_model=16, n_heads=2, d_head=4, d_mlp=24, n_ctx=8)
    model = Transformer(cfg).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.6)
    space = MaskSpace.for_config(cfg)
    mask = Mask.full(space)
    gen = torch.Generator().manual_seed(seed)
    mask = Mask(space, {h: torch.rand(t.shape, generator=gen) < 0.6 for h, t in mask.nodes.items()}, mask.edges)
    ref_tokens = torch.randint(0, 256, (20, 6), generator=gen)
    reference = Reference.compute(model, Ablation("mean"), ref_tokens, torch.full((20,), 6), ref_tokens, torch.full((20,), 6))
    cw = CircuitWeights.from_model(model, mask, reference)
    rng = random.Random(seed)
    direction, offset = cw.margin_direction(65, 66)
    for _ in range(3):
        box = [rng.sample(range(256), rng.randint(1, 4)) for _ in range(rng.randint(2, 5))]
        inputs = members(box)
        truth = engine_margins(model, mask, reference, inputs, 65, 66)
        bounds = margin_bounds(cw, [box], direction, offset)[0]
        last = {t: i for i, t in enumerate(box[-1])}
        for tokens, value in zip(inputs, truth):
            i = last[tokens[-1]]
            assert float(bounds.lo[i]) <= value + 1e-4 and float(bounds.hi[i]) >= value - 1e-4


def small_domain(name: str = "xy_double", least: int = 1, most: int = 2) -> Domain:
    return Domain(name, "a one-letter name in {x, y} assigned a double-quoted string of 1-2 body characters",
                  (Chars("xy", 1, 1, "[xy]"), ' = "', Chars(STRING_BODY_CHARS, least, most, "[^\"'\\\\]")),
                  {"opening_quote": '"', "earlier_quote": "none"})


def domain_boxes(domain: Domain) -> list[list[list[int]]]:
    return [[[ord(c) for c in alphabet] for alphabet in box] for box in domain.boxes()]


def domain_inputs(domain: Domain) -> list[list[int]]:
    """Every input of the domain, as tokens."""
    return [x for box in domain_boxes(domain) for x in members(box)]


def least_margin(circuit, domain: Domain, a: int, b: int | None) -> tuple[list[int], float]:
    """The domain's input where ``logit[a] - logit[b]`` (or ``logit[a]``) is least (found by the engine),
    and that value in exact arithmetic: the middle of its point box's bounds."""
    resolved, claim, reference, cw = circuit
    inputs = domain_inputs(domain)
    truth = engine_margins(resolved.context.model, resolved.mask, reference, inputs, a, b)
    worst = inputs[int(np.argmin(truth))]
    point = margin_bounds(cw, [[[t] for t in worst]], *claim_margin(cw, a, b, 1.0, 0.0))[0]
    return worst, (float(point.lo) + float(point.hi)) / 2


def test_exhaustive_evaluation_agrees_with_the_proof(circuit):
    """17,112 inputs: every one evaluated by the ablation engine, and the proof's verdict matches."""
    resolved, claim, reference, cw = circuit
    domain = small_domain()
    assert domain.size() == 2 * (92 + 92 * 92) >= 10_000
    inputs = domain_inputs(domain)
    assert len(inputs) == domain.size()
    truth = engine_margins(resolved.context.model, resolved.mask, reference, inputs, DQ, SQ)
    proof = prove_over_domain(cw, domain, domain_boxes(domain), *cw.margin_direction(DQ, SQ), time.monotonic() + 300)
    assert (truth > 0).all() and proof.status == "proved"
    assert proof.proved_inputs == domain.size()
    assert proof.least_bound <= truth.min() + 1e-4  # a lower bound of the margin over the domain


def test_a_claim_false_on_exactly_one_input_is_refuted_with_that_input(circuit):
    """Threshold the margin between its least and second least values over the domain."""
    resolved, claim, reference, cw = circuit
    domain = small_domain(most=1)
    inputs = domain_inputs(domain)
    truth = engine_margins(resolved.context.model, resolved.mask, reference, inputs, DQ, SQ)
    order = np.argsort(truth)
    assert truth[order[1]] - truth[order[0]] > 1e-3
    threshold = float(truth[order[0]] + truth[order[1]]) / 2
    # the claim `logit['"'] - logit["'"] > threshold`
    direction, offset = cw.margin_direction(DQ, SQ)
    proof = prove_over_domain(cw, domain, domain_boxes(domain), direction, offset - threshold, time.monotonic() + 300)
    assert proof.status == "refuted"
    assert proof.counterexample["tokens"] == inputs[order[0]]
    assert proof.counterexample["margin_bounds"][1] < 0


def test_a_claim_at_its_boundary_is_not_proved(circuit):
    """`logit['"'] > c` with c the least value over the domain (computed exactly for that input) holds
    with equality there: not proved. A hair below it (well above rounding), it is proved."""
    resolved, claim, reference, cw = circuit
    domain = small_domain(most=1)
    boxes = domain_boxes(domain)
    _, exact = least_margin(circuit, domain, DQ, None)
    at_boundary = prove_over_domain(cw, domain, boxes, *claim_margin(cw, DQ, None, 1.0, exact), time.monotonic() + 300)
    assert at_boundary.status != "proved"
    below = prove_over_domain(cw, domain, boxes, *claim_margin(cw, DQ, None, 1.0, exact - 1e-3), time.monotonic() + 300)
    assert below.status == "proved"


def test_the_checker_accepts_the_certificate_and_rejects_tampering(circuit):
    resolved, claim, reference, cw = circuit
    model = resolved.context.model
    domain = small_domain(most=1)
    proof = prove_over_domain(cw, domain, domain_boxes(domain), *cw.margin_direction(DQ, SQ), time.monotonic() + 300)
    assert proof.status == "proved"
    cert = json.loads(json.dumps(certificate(proof, cw, {"model_sha256": model.weights_sha256, "sign": 1.0, "threshold": 0.0,
                                                         "eps": cw.eps, "claim": "c", "model": "py-sparse-small"}, DQ, SQ)))
    weights = {n: p.detach().double().numpy() for n, p in model.named_parameters()}
    good = check_certificate(cert, weights, model.weights_sha256)
    assert good.ok, good.problems
    assert good.proved_inputs == domain.size()

    def broken(change) -> list[str]:
        bad = copy.deepcopy(cert)
        change(bad)
        result = check_certificate(bad, weights, model.weights_sha256)
        assert not result.ok
        return result.problems

    assert any("SHA-256" in p for p in broken(lambda c: c.__setitem__("model_sha256", "0" * 64)))
    assert any("roots" in p for p in broken(lambda c: c["domain"]["parts"].__setitem__(1, ' == "')))
    # claim the other quote: the recomputed bounds are negative
    assert any("not above 0" in p for p in broken(lambda c: c.__setitem__("claim_tokens", [SQ, DQ])))
    # drop a proved token: the domain is no longer covered
    def drop(c):
        node = next(n for n in c["nodes"] if len(n["proved"]) > 1)
        node["proved"].pop()
        node["bounds"].pop()
    assert any("neither proved nor split" in p or "cover" in p for p in broken(drop))
    # a different ablation constant changes the circuit: some bound moves, and the hash of nothing catches
    # it, but the recomputed bounds are what count (a large shift breaks them)
    def shift(c):
        c["constants"]["blocks.1.hook_resid_post"] = [v + 5.0 for v in c["constants"]["blocks.1.hook_resid_post"]]
    assert broken(shift)


def test_the_domains_hold_generated_inputs_of_their_shape():
    """Every generated closing_quote input with no earlier literal, opened after `N = ` (one-letter N) or
    `print(` with a body of at most 3 characters, belongs to the domain of its quote."""
    task = get_task("closing_quote")
    domains = {d.name: d for d in task.domains}
    seen = 0
    for example in task.sample(4000, "domain-shape"):
        f = example.features
        if f["earlier_quote"] != "none" or f["body_length"] > 3:
            continue
        quote = "double" if f["opening_quote"] == '"' else "single"
        text = example.prefix
        if text.startswith("print(") or (len(text) > 4 and text[1:4] == " = "):
            lead = "print" if text.startswith("print(") else "assign"
            if lead == "assign" and not text[0].isalpha():
                continue
            assert domains[f"{lead}_{quote}"].contains(text), text
            assert all(domains[f"{lead}_{quote}"].features[k] == f[k] for k in ("opening_quote", "earlier_quote"))
            seen += 1
    assert seen > 20


def test_domain_sizes_patterns_and_overlaps():
    d = small_domain()
    assert d.size() == 2 * (92 + 92 ** 2) and len(d.boxes()) == 2
    assert d.pattern() == '[xy] = "[^"\'\\\\]{1,2}'
    assert d.contains('x = "a!') and not d.contains('z = "a') and not d.contains('x = "a"')
    with pytest.raises(ValueError, match="share inputs"):
        Domain("twice", "", (Chars("ab", 1, 2, "[ab]"), Chars("ab", 1, 2, "[ab]")))
    with pytest.raises(ValueError, match="least"):
        Chars("ab", 2, 1, "[ab]")


def test_prove_and_check_proof_through_the_command_line(tmp_path, capsys):
    """`prove --domain NAME --certificate DIR` then `check-proof` on what it wrote."""
    task = get_task("closing_quote")
    object.__setattr__(task, "domains", task.domains + (small_domain("tiny_double", most=1),))
    try:
        code = main(["prove", str(SPEC), "--domain", "tiny_double", "--certificate", str(tmp_path), "--json", str(tmp_path / "p.json")])
        out = capsys.readouterr().out
        assert code == 0, out
        assert "proved" in out and "184 inputs" in out
        report = json.loads((tmp_path / "p.json").read_text())
        from circuitspec.schemas import validate
        validate("prove", report)
        [result] = report[0]["domain"]
        assert result["status"] == "proved" and result["proved_inputs"] == 184
        certs = list(tmp_path.glob("*.json"))
        certs.remove(tmp_path / "p.json")
        assert main(["check-proof", str(certs[0])]) == 0
        assert "valid" in capsys.readouterr().out
        bad = json.loads(certs[0].read_text())
        bad["claim_tokens"] = [SQ, DQ]
        (tmp_path / "bad.json").write_text(json.dumps(bad))
        assert main(["check-proof", str(tmp_path / "bad.json")]) == 1
        assert main(["check-proof", str(tmp_path / "missing.json")]) == 2
    finally:
        object.__setattr__(task, "domains", tuple(d for d in task.domains if d.name != "tiny_double"))


def test_a_bias_moved_one_float32_step_past_the_boundary_is_not_proved(circuit):
    """The issue's soundness check, literally: move one weight (the bias of logit['"']) so that the least
    margin over the domain is 0, then one float32 rounding step further down. The claim is then false or
    true by about 1e-7 on one input, far inside the bounds' rounding pad: never "proved"."""
    resolved, claim, reference, cw = circuit
    domain = small_domain(most=1)
    boxes = domain_boxes(domain)
    worst, least = least_margin(circuit, domain, DQ, SQ)
    bias = np.float32(float(cw.b_U[DQ]) - least)
    moved = float(np.nextafter(bias, np.float32(-np.inf), dtype=np.float32))
    b_U = cw.b_U.clone()
    b_U[DQ] = moved
    shifted = CircuitWeights(cw.W_E, cw.W_pos, cw.blocks, cw.W_U, b_U, cw.keep, cw.ref, cw.eps, cw.n_heads, cw.d_head)
    proof = prove_over_domain(shifted, domain, boxes, *shifted.margin_direction(DQ, SQ), time.monotonic() + 300)
    assert proof.status in ("refuted", "unknown")
    assert proof.counterexample["tokens"] == worst


def test_an_unknown_domain_name_is_a_usage_error_with_a_suggestion(capsys):
    assert main(["prove", str(SPEC), "--domain", "print_doubel"]) == 2
    err = capsys.readouterr().err
    assert "did you mean 'print_double'" in err and "Traceback" not in err
