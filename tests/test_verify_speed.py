"""What makes `verify` fast must not change what it computes: rows grouped by length, each condition on its
cheaper path, the subgraph path's reuse across groups, the random baselines' faster walk, and the caches
the claim groups of one spec share."""


import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from circuitspec.commands.check_cmd import check_file
from circuitspec.engine import ablation as engine
from circuitspec.engine import subgraph
from circuitspec.engine.ablation import Ablation, Reference, plain_answer_logits, run_conditions, run_conditions_with_cache
from circuitspec.engine.batch import encode_for, length_buckets
from circuitspec.engine.checkpoint import save_checkpoint
from circuitspec.engine.graph import build_graph, walk_tables
from circuitspec.engine.zoo import load_model
from circuitspec.engine.masks import Mask
from circuitspec.engine.tasks import register_task, unregister_task
from circuitspec.verify import baselines as baseline_module
from circuitspec.verify import runner
from circuitspec.verify.baselines import random_circuits
from circuitspec.verify.examples import sample_examples
from circuitspec.verify.judge import judge
from circuitspec.verify.runner import RunCache, RunSettings, run_group
from circuitspec.verify.verifier import claim_groups, shared_cache, verify_spec
from test_ablation import ABLATIONS, MODEL, SPACE, brute_force, random_mask
from test_verify_oracle import CIRCUIT, HEADER, TASK, hand_set_model

GEN = torch.Generator().manual_seed(7)
LENGTHS = torch.tensor([7, 2, 5, 7, 3, 6, 1, 4])
TOKENS = torch.randint(0, MODEL.cfg.d_vocab, (len(LENGTHS), 7), generator=GEN)
ANSWER = LENGTHS - 1
REF_LENGTHS = torch.tensor([8, 3, 6, 8, 1, 5, 7, 2, 8, 4])
REF_TOKENS = torch.randint(0, MODEL.cfg.d_vocab, (len(REF_LENGTHS), 8), generator=GEN)


def reference_for(ablation):
    return Reference.compute(MODEL, ablation, TOKENS, LENGTHS, REF_TOKENS, REF_LENGTHS)


@given(lengths=st.lists(st.integers(1, 60), min_size=1, max_size=300), max_tokens=st.sampled_from([1, 40, 500, 4096]),
       overhead=st.sampled_from([0, 16, 256]))
def test_length_groups_cover_every_row_once_at_its_widest_length(lengths, max_tokens, overhead):
    lengths = torch.tensor(lengths)
    groups = length_buckets(lengths, max_tokens=max_tokens, overhead=overhead)
    rows = torch.cat([r for r, _ in groups])
    assert sorted(rows.tolist()) == list(range(len(lengths)))
    for r, width in groups:
        assert width == int(lengths[r].max())
        assert len(r) == 1 or len(r) * width <= max(max_tokens, width)


@pytest.mark.parametrize("ablation", ABLATIONS, ids=str)
def test_grouping_rows_by_length_gives_the_same_answer_logits(ablation):
    reference = reference_for(ablation)
    masks = [random_mask(s, p, e) for s, (p, e) in enumerate([(0.1, 1.0), (0.8, 1.0), (0.6, 0.8), (1.0, 1.0), (0.0, 1.0)])]
    plain = run_conditions(MODEL, TOKENS, masks, reference, ANSWER)
    grouped = run_conditions(MODEL, TOKENS, masks, reference, ANSWER, by_length=True)
    assert torch.allclose(grouped, plain, atol=1e-5, rtol=1e-5)
    for i, mask in enumerate(masks):  # and the brute force, one condition at a time, agrees
        slow = brute_force(MODEL, TOKENS, mask, reference)[torch.arange(len(LENGTHS)), ANSWER]
        assert torch.allclose(grouped[i], slow, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("ablation", ABLATIONS, ids=str)
def test_grouped_activations_match_up_to_each_answer_and_are_zero_after_it(ablation):
    reference = reference_for(ablation)
    mask = random_mask(3, 0.7, 1.0)
    hooks = ["blocks.0.attn.hook_z", "blocks.1.mlp.hook_post", "blocks.1.hook_resid_post"]
    _, plain = run_conditions_with_cache(MODEL, TOKENS, [mask], reference, ANSWER, hooks)
    _, grouped = run_conditions_with_cache(MODEL, TOKENS, [mask], reference, ANSWER, hooks, by_length=True)
    for hook in hooks:
        assert grouped[hook].shape == plain[hook].shape
        for b, n in enumerate(LENGTHS.tolist()):
            assert torch.allclose(grouped[hook][0, b, :n], plain[hook][0, b, :n], atol=1e-5, rtol=1e-5)
            assert not grouped[hook][0, b, n:].any()


@pytest.mark.parametrize("ablation", ABLATIONS, ids=str)
def test_the_all_true_condition_reproduces_the_plain_grouped_forward_exactly(ablation):
    full = run_conditions(MODEL, TOKENS, [Mask.full(SPACE), random_mask(1, 0.5, 1.0)], reference_for(ablation), ANSWER,
                          by_length=True)
    assert torch.equal(full[0], plain_answer_logits(MODEL, TOKENS, ANSWER, by_length=True))


@pytest.mark.parametrize("per_position", [False, True])
def test_grouped_reference_means_equal_the_whole_batch_means(per_position):
    ablation = Ablation("mean", per_position=per_position)
    whole = Reference.compute(MODEL, ablation, TOKENS, LENGTHS, REF_TOKENS, REF_LENGTHS)
    grouped = Reference.compute(MODEL, ablation, TOKENS, LENGTHS, REF_TOKENS, REF_LENGTHS, by_length=True)
    assert whole.values.keys() == grouped.values.keys()
    for hook, value in whole.values.items():
        assert grouped.values[hook].shape == value.shape
        assert torch.allclose(grouped.values[hook], value, atol=1e-6, rtol=1e-5), hook


def test_each_condition_takes_its_own_path_on_a_cpu(monkeypatch):
    """Small node masks go through the subgraph path even beside large ones, with the same logits as alone."""
    reference = reference_for(Ablation("mean"))
    small, large, edges = random_mask(11, 0.1, 1.0), random_mask(12, 0.9, 1.0), random_mask(13, 0.1, 0.5)
    alone = [run_conditions(MODEL, TOKENS, [m], reference, ANSWER)[0] for m in (small, large, edges)]
    calls = []
    run_circuit = subgraph.run_circuit
    monkeypatch.setattr(subgraph, "run_circuit", lambda *a, **k: calls.append(1) or run_circuit(*a, **k))
    together = run_conditions(MODEL, TOKENS, [small, large, edges], reference, ANSWER)
    assert len(calls) == 1  # the small node mask only: the large one and the edge mask take the masked forward
    for got, want in zip(together, alone):
        assert torch.equal(got, want)


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 10**6), p_node=st.sampled_from([0.0, 0.05, 0.3, 0.8]), ablation=st.sampled_from(ABLATIONS))
def test_the_subgraph_path_reuses_its_gathers_without_changing_a_bit(seed, p_node, ablation):
    mask = random_mask(seed, p_node, 1.0)
    reference = reference_for(ablation)
    memo = {}
    for rows, width in length_buckets(LENGTHS, max_tokens=12, overhead=0):
        part = reference.select(rows, width)
        fresh = subgraph.run_circuit(MODEL, TOKENS[rows, :width], mask, part, ANSWER[rows])
        reused = subgraph.run_circuit(MODEL, TOKENS[rows, :width], mask, part, ANSWER[rows], memo)
        assert torch.equal(fresh, reused)
    saved, engine.SUBGRAPH_MAX_FRACTION = engine.SUBGRAPH_MAX_FRACTION, -1.0  # force the full masked forward
    try:
        full = run_conditions(MODEL, TOKENS, [mask], reference, ANSWER)[0]
    finally:
        engine.SUBGRAPH_MAX_FRACTION = saved
    assert torch.allclose(subgraph.run_circuit(MODEL, TOKENS, mask, reference, ANSWER), full, atol=1e-4, rtol=1e-4)


# ---- the verifier: baselines and the caches of one spec


@pytest.fixture(scope="module")
def oracle_spec(tmp_path_factory):
    register_task(TASK, replace=True)
    folder = tmp_path_factory.mktemp("speed")
    save_checkpoint(hand_set_model(), folder / "model", {})
    path = folder / "oracle.circ"
    path.write_text(HEADER.format(name="speed", ablation="mean over task") + CIRCUIT + """
claim sufficient faithfulness >= 0.95
claim necessary faithfulness <= 0.05
claim minimal each node drop >= 0.2
claim fires_for_a: pos > 0.5 when last == "a"
claim silent_for_b: pos <= 0 when last == "b"
claim says_a: logit['a'] > logit['b'] when last == "a"
claim in_model: blocks.0.mlp.hook_post[1] > 0.5 when last == "b" in full model
claim sufficient faithfulness >= 0.95 ablate resample from task
""")
    yield path
    unregister_task(TASK.name)


def test_the_fast_walk_draws_the_same_random_circuits(oracle_spec, monkeypatch):
    resolved, _, _ = check_file(oracle_spec)
    graph, space = resolved.context.graph, resolved.mask.space
    assert baseline_module._SAME_DRAWS  # CPython's choice and randrange(n) draw through _randbelow
    for size in (1, 3, 17, 400):
        fast = random_circuits(graph, space, size, 6, 5)
        monkeypatch.setattr(baseline_module, "_SAME_DRAWS", False)
        slow = random_circuits(graph, space, size, 6, 5)
        monkeypatch.undo()
        assert all(a == b for a, b in zip(fast, slow)) and len(fast) == len(slow) == 6
        assert all(m.node_count() == min(size, sum(math.prod(s) for s in space.node_shapes.values())) for m in fast)


def test_walks_read_from_the_weights_are_the_graphs(oracle_spec):
    """The baselines walk tables built from the weights alone (no graph) list every node's successors
    in the graph's order, so they draw the same random circuits; a weight written in place is seen."""
    resolved, _, _ = check_file(oracle_spec)
    model, space = resolved.context.model, resolved.mask.space
    for candidate in (model, load_model("py-sparse-small")):
        graph = build_graph(candidate)
        succ, kinds = walk_tables(candidate)
        assert succ == {n: list(graph.successors(n)) for n in graph.nodes}
        assert kinds == {n: d["kind"] for n, d in graph.nodes(data=True)}
    for size in (3, 40):
        assert all(a == b for a, b in zip(random_circuits(model, space, size, 4, 1),
                                          random_circuits(build_graph(model), space, size, 4, 1)))
    weight = model.blocks[0].mlp.W_in
    saved = weight.detach().clone()
    try:
        with torch.no_grad():
            weight.zero_()
        assert all(a == b for a, b in zip(random_circuits(model, space, 5, 4, 1),
                                          random_circuits(build_graph(model), space, 5, 4, 1)))
    finally:
        with torch.no_grad():
            weight.copy_(saved)


def test_groups_sharing_one_cache_judge_exactly_as_groups_alone(oracle_spec):
    resolved, _, _ = check_file(oracle_spec)
    settings = RunSettings(samples=40, baselines=6, partial_ablations=2, resamples=200)
    shared = verify_spec(resolved, settings)
    alone = []
    for group in claim_groups(resolved):
        data = run_group(resolved, group, settings)
        alone += [(c, judge(resolved, c, data, settings)) for c in group]
    by_claim = {id(c): r for c, r in alone}
    assert [r.to_json() for r in shared] == [by_claim[id(c)].to_json() for c in resolved.claims]
    assert "fail" not in {r.verdict for r in shared}  # true claims (some inconclusive on so few inputs)


def test_specs_of_one_model_sharing_a_cache_judge_exactly_as_specs_alone(oracle_spec):
    """verify shares one RunCache among the specs of a model: a second spec of the same task (here the same
    file, resolved twice onto the same model object) reuses its references, full logits and baselines."""
    first, _, _ = check_file(oracle_spec)
    second, _, _ = check_file(oracle_spec)
    assert first.context.model is second.context.model
    settings = RunSettings(samples=40, baselines=6, partial_ablations=2, resamples=200)
    caches: dict = {}
    shared = [verify_spec(r, settings, cache=shared_cache(caches, r)) for r in (first, second)]
    cache = shared_cache(caches, first)
    assert len(caches) == 1 and cache.references and cache.full and cache.baselines
    alone = [verify_spec(r, settings) for r in (first, second)]
    assert [[r.to_json() for r in rs] for rs in shared] == [[r.to_json() for r in rs] for rs in alone]


@pytest.mark.parametrize("per_position", [False, True])
def test_task_means_summed_in_chunks_do_not_depend_on_what_ran_before(oracle_spec, per_position):
    """make_reference sums the reference stream in chunks a RunCache keeps: a mean over 598 reference
    inputs after means over 100 and 1,000 runs only the chunk [400, 598) and gets, bit for bit, the
    reference it gets alone; which is the whole-batch mean up to float rounding."""
    resolved, _, _ = check_file(oracle_spec)
    model, task = resolved.context.model, resolved.task
    ablation = Ablation("mean", per_position=per_position)
    target = encode_for(model, sample_examples(task, 100, 0), task.name)

    alone = runner.make_reference(resolved, ablation, None, target, RunSettings(reference_samples=598))
    cache = RunCache()
    for n in (100, 1000, 598):
        after = runner.make_reference(resolved, ablation, None, target, RunSettings(reference_samples=n), cache)
    chunks = cache.mean_sums[(task.name, 0, "cpu")]
    assert sorted(chunks) == [(0, 100), (0, 200), (200, 400), (400, 598), (400, 600), (600, 800), (800, 1000)]
    assert all(torch.equal(alone.values[h], after.values[h]) for h in alone.values)
    ref = encode_for(model, sample_examples(task, 598, "0:reference"), task.name)
    whole = Reference.compute(model, ablation, target.tokens, target.answer_pos + 1, ref.tokens, ref.answer_pos + 1)
    assert set(whole.values) == set(after.values)
    assert all(torch.allclose(whole.values[h], after.values[h], atol=1e-5) for h in whole.values)


@pytest.mark.parametrize("per_position", [False, True])
def test_a_task_mean_does_not_depend_on_the_group_size(oracle_spec, per_position):
    """Every group of a spec is judged against the same task mean, over ``reference_samples`` inputs, however
    many inputs the group itself runs (per-input claims draw 598): the same constants verify, falsify and
    prove's certificate use. A resampled reference still draws one reference input per group input."""
    resolved, _, _ = check_file(oracle_spec)
    model, task, settings = resolved.context.model, resolved.task, RunSettings()
    ablation = Ablation("mean", per_position=per_position)
    small, large = (encode_for(model, sample_examples(task, n, 0), task.name) for n in (100, 598))
    ref_small = runner.make_reference(resolved, ablation, None, small, settings)
    ref_large = runner.make_reference(resolved, ablation, None, large, settings)
    ref = encode_for(model, sample_examples(task, settings.reference_samples, "0:reference"), task.name)
    expected = Reference.compute(model, ablation, large.tokens, large.answer_pos + 1, ref.tokens, ref.answer_pos + 1)
    for hook, value in ref_large.values.items():
        assert torch.allclose(value, expected.values[hook], atol=1e-5), hook
        width = min(value.shape[0], ref_small.values[hook].shape[0]) if per_position else None
        assert torch.equal(value[:width], ref_small.values[hook][:width]), hook
    resampled = runner.make_reference(resolved, Ablation("resample"), None, large, settings)
    assert all(v.shape[0] == 598 for v in resampled.values.values())


def test_per_input_groups_run_the_circuit_and_self_check_on_a_few_inputs(oracle_spec, monkeypatch):
    resolved, _, _ = check_file(oracle_spec)
    claim = next(c for c in resolved.claims if c.claim.name == "says_a")
    settings = RunSettings()  # per-input claims draw enough inputs for their target share: 598
    monkeypatch.setattr(runner, "SELF_CHECK_INPUTS", 16)
    checked = []
    self_check = runner.self_check
    monkeypatch.setattr(runner, "self_check",
                        lambda r, batch, *a, **k: checked.append(len(batch.tokens)) or self_check(r, batch, *a, **k))
    cache = RunCache()
    data = run_group(resolved, [claim], settings, cache=cache)
    assert checked == [16] and len(data.examples) == 598 and not data.metric and data.model_logits is None
    batch = runner.encode_for(resolved.context.model, data.examples, resolved.task.name)
    reference = runner.make_reference(resolved, claim.ablation, claim.ablation_task, batch, settings)
    circuit = run_conditions(resolved.context.model, batch.tokens, [resolved.mask], reference, batch.answer_pos, by_length=True)
    assert torch.equal(data.circuit_logits, circuit[0])
    run_group(resolved, [claim], settings, cache=cache)  # the same inputs again: the full model's run is reused
    assert checked == [16, 16] and len(cache.full) == 1


def test_a_self_check_still_catches_an_engine_that_breaks_the_full_model(oracle_spec, monkeypatch):
    resolved, _, _ = check_file(oracle_spec)
    claim = next(c for c in resolved.claims if c.claim.name == "says_a")
    run = runner.run_conditions_with_cache

    def broken(model, tokens, masks, *args, **kwargs):
        logits, cache = run(model, tokens, masks, *args, **kwargs)
        return logits + torch.tensor([float(m == Mask.full(m.space)) for m in masks]).view(-1, 1, 1), cache

    monkeypatch.setattr(runner, "run_conditions_with_cache", broken)
    with pytest.raises(runner.SelfCheckError):
        run_group(resolved, [claim], RunSettings(samples=30))
    sufficient = [c for c in resolved.claims if c.kind == "sufficient"][:1]
    with pytest.raises(runner.SelfCheckError):
        run_group(resolved, sufficient, RunSettings(samples=30, baselines=2, partial_ablations=1))


def test_inputs_read_from_a_shared_stream_are_those_a_fresh_sampler_draws():
    """Claim groups read one stream of inputs per task and seed; whatever was drawn before, a group gets
    exactly the inputs a sampler of its own would draw, filtered the same way."""
    from circuitspec.engine.tasks import RandomSampler, get_task
    from circuitspec.verify import examples

    task = get_task("closing_quote")
    sampler = RandomSampler(f"{task.name}:verify:shared-stream")
    fresh = [task.example(sampler).prefix for _ in range(400)]
    examples._STREAMS.clear()
    short = examples.sample_examples(task, 30, "shared-stream")
    doubles = examples.sample_examples(task, 50, "shared-stream", keep=lambda e: e.features["opening_quote"] == '"')
    long = examples.sample_examples(task, 200, "shared-stream")
    assert [e.prefix for e in short] == fresh[:30] and [e.prefix for e in long] == fresh[:200]
    expected = [p for p, e in zip(fresh, long) if e.features["opening_quote"] == '"']
    assert [e.prefix for e in doubles][: len(expected)] == expected[:50]
