"""Ablated forward passes: the batched fast path against a channel-by-channel brute force."""

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from circuitspec.engine.ablation import Ablation, Reference, _answer_only, matmul_sites, run_conditions
from circuitspec.engine.masks import Mask, MaskSpace
from circuitspec.engine.model import ModelConfig, Transformer
from circuitspec.engine.sparsity import project_model_

CFG = ModelConfig(n_layers=2, d_model=6, n_heads=2, d_head=3, d_mlp=8, n_ctx=10, d_vocab=12)
SPACE = MaskSpace.for_config(CFG)


def make_model():
    torch.manual_seed(0)
    model = Transformer(CFG)
    for p in model.parameters():
        torch.nn.init.normal_(p.data, std=0.5)
    project_model_({n: p.data for n, p in model.weight_matrices().items()}, 0.6)
    return model.eval()


MODEL = make_model()
GEN = torch.Generator().manual_seed(1)
TOKENS = torch.randint(0, CFG.d_vocab, (3, 7), generator=GEN)
LENGTHS = torch.tensor([7, 5, 6])
REF_TOKENS = torch.randint(0, CFG.d_vocab, (4, 8), generator=GEN)
REF_LENGTHS = torch.tensor([8, 3, 6, 8])


def random_mask(seed, p_node, p_edge):
    gen = torch.Generator().manual_seed(seed)
    return Mask(SPACE, {h: torch.rand(s, generator=gen) < p_node for h, s in SPACE.node_shapes.items()},
                {w: torch.rand(s, generator=gen) < p_edge for w, s in SPACE.edge_shapes.items()})


def brute_force(model, tokens, mask, reference):
    """One condition, one channel and one weight entry at a time (slow, obviously right)."""
    saved = {}
    params = model.weight_matrices()
    hooks = {}

    def add(hook, fn):
        hooks.setdefault(hook, []).append(fn)

    # corrections first (raw matmul output), then node masks, then saving inputs: same order as the semantics
    sites = matmul_sites(model)
    for param, (src, dst, _) in sites.items():
        w = params[param].detach()
        entries = [tuple(e) for e in torch.nonzero(~mask.edges[param]).tolist()]
        if not entries:
            continue

        def correct(y, name, param=param, src=src, w=w, entries=entries):
            y = y.clone()
            x, r = saved[param], reference.value(src)
            r = r.expand_as(x) if r.dim() == x.dim() - 1 or r.dim() == x.dim() else r
            for e in entries:
                s_idx, d_idx = split_entry(param, e)
                y[(..., *d_idx)] -= (x[(..., *s_idx)] - r[(..., *s_idx)]) * w[e]
            return y

        add(dst, correct)
    for hook in SPACE.node_shapes:
        off = [tuple(i) for i in torch.nonzero(~mask.nodes[hook]).tolist()]
        if off:
            def replace(x, name, off=off, hook=hook):
                x = x.clone()
                r = reference.value(hook).expand_as(x)
                for idx in off:
                    x[(..., *idx)] = r[(..., *idx)]
                return x
            add(hook, replace)
    for param, (src, dst, _) in sites.items():
        if (~mask.edges[param]).any():
            if src == "<tokens>":
                saved[param] = F.one_hot(tokens, CFG.d_vocab).float()
            elif src == "<positions>":
                saved[param] = F.one_hot(torch.arange(tokens.shape[1]), CFG.n_ctx).float().expand(tokens.shape[0], -1, -1)
            else:
                add(src, lambda x, name, param=param: saved.__setitem__(param, x))
    with model.hooks(hooks):
        return model(tokens)


def split_entry(param, e):
    """Weight entry -> (index into the input activation's channels, index into the output's channels)."""
    kind = param.rsplit(".", 1)[-1]
    if kind in ("W_Q", "W_K", "W_V"):
        h, i, j = e
        return (i,), (h, j)
    if kind == "W_O":
        h, j, i = e
        return (h, j), (i,)
    return (e[0],), (e[1],)


ABLATIONS = [Ablation("zero"), Ablation("mean"), Ablation("mean", per_position=True), Ablation("resample")]


def reference_for(ablation):
    return Reference.compute(MODEL, ablation, TOKENS, LENGTHS, REF_TOKENS, REF_LENGTHS)


@pytest.mark.parametrize("ablation", ABLATIONS, ids=str)
def test_full_mask_reproduces_the_model_exactly(ablation):
    logits = run_conditions(MODEL, TOKENS, [Mask.full(SPACE)], reference_for(ablation))
    assert torch.equal(logits[0], MODEL(TOKENS))


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10**6), p_node=st.sampled_from([0.0, 0.3, 0.8, 1.0]), p_edge=st.sampled_from([0.5, 0.9, 1.0]),
       ablation=st.sampled_from(ABLATIONS))
def test_fast_path_equals_brute_force(seed, p_node, p_edge, ablation):
    mask = random_mask(seed, p_node, p_edge)
    reference = reference_for(ablation)
    fast = run_conditions(MODEL, TOKENS, [mask], reference)[0]
    slow = brute_force(MODEL, TOKENS, mask, reference)
    assert torch.allclose(fast, slow, atol=1e-4, rtol=1e-4)


def test_batched_conditions_equal_one_at_a_time():
    masks = [random_mask(s, 0.6, 0.8) for s in range(5)] + [Mask.full(SPACE)]
    reference = reference_for(Ablation("mean"))
    together = run_conditions(MODEL, TOKENS, masks, reference)
    chunked = run_conditions(MODEL, TOKENS, masks, reference, max_tokens=2 * TOKENS.numel())
    for i, m in enumerate(masks):
        alone = run_conditions(MODEL, TOKENS, [m], reference)[0]
        assert torch.allclose(together[i], alone, atol=1e-5)
        assert torch.allclose(chunked[i], alone, atol=1e-5)


def test_zero_ablating_everything_leaves_only_the_unembedding_bias():
    none = Mask.empty(SPACE)
    none = Mask(SPACE, none.nodes, Mask.full(SPACE).edges)
    logits = run_conditions(MODEL, TOKENS, [none], reference_for(Ablation("zero")))[0]
    assert torch.allclose(logits, MODEL.unembed.b_U.expand_as(logits))


def test_answer_positions_are_gathered():
    answer = LENGTHS - 1
    logits = run_conditions(MODEL, TOKENS, [Mask.full(SPACE)], reference_for(Ablation("mean")), answer_pos=answer)
    full = MODEL(TOKENS)
    assert torch.equal(logits[0], MODEL(TOKENS, answer))  # the same answer-only pass, bit for bit
    assert torch.allclose(logits[0], full[torch.arange(3), answer], atol=1e-5)  # the full pass, up to rounding


def test_answer_only_pass_matches_the_full_pass_under_every_ablation():
    """The last block's queries and what follows computed at the answer alone give the full pass's answer
    logits, for node and edge masks and references with and without a position axis (which take the
    full pass); an ablated edge of the last block's W_Q or W_O (input at every position, output at the
    answer) takes the full pass too. Answers before the row's end check that keys past the answer stay
    unseen."""
    gen = torch.Generator().manual_seed(5)
    last = f"blocks.{MODEL.cfg.n_layers - 1}.attn."
    for answer in (LENGTHS - 1, torch.clamp(LENGTHS - 3, min=0)):
        masks = [Mask(SPACE, {h: torch.rand(s, generator=gen) < 0.6 for h, s in SPACE.node_shapes.items()},
                      {p: (torch.rand(s, generator=gen) < 0.8) | p.startswith((last + "W_Q", last + "W_O"))
                       for p, s in SPACE.edge_shapes.items()})
                 for _ in range(3)]
        for ablation in (Ablation("mean"), Ablation("zero"), Ablation("mean", per_position=True), Ablation("resample")):
            reference = reference_for(ablation)
            assert _answer_only(MODEL, masks, reference, {}) == (not ablation.per_position and ablation.kind != "resample")
            at_answer = run_conditions(MODEL, TOKENS, masks, reference, answer_pos=answer)
            everywhere = run_conditions(MODEL, TOKENS, masks, reference)[:, torch.arange(3), answer]
            assert torch.allclose(at_answer, everywhere, atol=1e-5), ablation
        for w in ("W_Q", "W_O"):  # one ablated edge of either: the whole pass, the same logits
            edges = dict(Mask.full(SPACE).edges)
            cut = torch.ones_like(edges[last + w])
            cut.view(-1)[0] = False
            edges[last + w] = cut
            one = Mask(SPACE, Mask.full(SPACE).nodes, edges)
            reference = reference_for(Ablation("mean"))
            assert not _answer_only(MODEL, [one], reference, {})
            at_answer = run_conditions(MODEL, TOKENS, [one], reference, answer_pos=answer)
            everywhere = run_conditions(MODEL, TOKENS, [one], reference)[:, torch.arange(3), answer]
            assert torch.allclose(at_answer, everywhere, atol=1e-5), w


def test_mean_reference_ignores_padding():
    tokens = REF_TOKENS.clone()
    tokens[1, 3:] = 0  # row 1 is only 3 long: what lies beyond must not change the mean
    a = Reference.compute(MODEL, Ablation("mean"), TOKENS, LENGTHS, REF_TOKENS, REF_LENGTHS)
    b = Reference.compute(MODEL, Ablation("mean"), TOKENS, LENGTHS, tokens, REF_LENGTHS)
    assert torch.allclose(a.value("blocks.0.mlp.hook_post"), b.value("blocks.0.mlp.hook_post"))


def test_resample_aligns_answer_positions():
    ref = Reference.compute(MODEL, Ablation("resample"), TOKENS, LENGTHS, REF_TOKENS, REF_LENGTHS)
    _, cache = MODEL.run_with_cache(REF_TOKENS, ["blocks.1.mlp.hook_post"])
    value = ref.value("blocks.1.mlp.hook_post")
    for b in range(3):
        assert torch.equal(value[b, LENGTHS[b] - 1], cache["blocks.1.mlp.hook_post"][b, REF_LENGTHS[b] - 1])


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 10**6), ablation=st.sampled_from(ABLATIONS))
def test_each_condition_changes_exactly_what_its_mask_says(seed, ablation):
    """Ablated channels carry exactly the reference; kept channels carry what the model computes from
    the (partly ablated) layers before them."""
    from circuitspec.engine.ablation import run_conditions_with_cache
    mask = random_mask(seed, 0.5, 1.0)
    reference = reference_for(ablation)
    hooks = list(SPACE.node_shapes)
    _, cache = run_conditions_with_cache(MODEL, TOKENS, [mask], reference, capture=hooks)
    for hook in hooks:
        act = cache[hook][0]
        ref = reference.value(hook).expand_as(act)
        off = ~mask.nodes[hook]
        assert torch.equal(act[..., off], ref[..., off]), hook
    first = "blocks.0.hook_resid_pre"  # nothing upstream is ablated: kept channels equal the plain model's
    _, plain = MODEL.run_with_cache(TOKENS, [first])
    keep = mask.nodes[first]
    assert torch.equal(cache[first][0][..., keep], plain[first][..., keep])


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10**6), p_node=st.sampled_from([0.0, 0.05, 0.3, 0.8, 1.0]), ablation=st.sampled_from(ABLATIONS))
def test_circuit_subgraph_equals_the_full_masked_forward(seed, p_node, ablation):
    from circuitspec.engine import ablation as engine
    from circuitspec.engine.subgraph import run_circuit
    mask = random_mask(seed, p_node, 1.0)
    reference = reference_for(ablation)
    saved, engine.SUBGRAPH_MAX_FRACTION = engine.SUBGRAPH_MAX_FRACTION, -1.0  # force the full masked forward
    try:
        full = run_conditions(MODEL, TOKENS, [mask], reference)[0]
    finally:
        engine.SUBGRAPH_MAX_FRACTION = saved
    assert torch.allclose(run_circuit(MODEL, TOKENS, mask, reference), full, atol=1e-4, rtol=1e-4)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10**6), p_node=st.sampled_from([0.0, 0.05, 0.3, 0.6, 1.0]), ablation=st.sampled_from(ABLATIONS))
def test_the_subgraph_captures_what_the_full_masked_forward_captures(seed, p_node, ablation):
    """Role claims read a small circuit's activations from its subgraph run: every node hook it can
    capture holds what the full masked forward's hooks hold (kept channels computed, the reference
    elsewhere), at every position; by_length routes a single small mask with capture there."""
    from circuitspec.engine import ablation as engine
    from circuitspec.engine.ablation import run_conditions_with_cache
    from circuitspec.engine.subgraph import can_capture, run_circuit
    mask = random_mask(seed, p_node, 1.0)
    reference = reference_for(ablation)
    hooks = [h for h in SPACE.node_shapes if can_capture(mask, [h])]
    assert {h for h in SPACE.node_shapes if not h.endswith(("hook_q", "hook_k", "hook_v"))} <= set(hooks)
    saved, engine.SUBGRAPH_MAX_FRACTION = engine.SUBGRAPH_MAX_FRACTION, -1.0  # force the full masked forward
    try:
        full_logits, full = run_conditions_with_cache(MODEL, TOKENS, [mask], reference, capture=hooks)
        answer = LENGTHS - 1
        by_length_full = run_conditions_with_cache(MODEL, TOKENS, [mask], reference, answer, hooks, by_length=True)
    finally:
        engine.SUBGRAPH_MAX_FRACTION = saved
    captured = {}
    logits = run_circuit(MODEL, TOKENS, mask, reference, capture=hooks, captured=captured)
    assert torch.allclose(logits, full_logits[0], atol=1e-4, rtol=1e-4)
    for hook in hooks:
        assert captured[hook].shape == full[hook][0].shape, hook
        assert torch.allclose(captured[hook], full[hook][0], atol=1e-4, rtol=1e-4), hook
    saved, engine.SUBGRAPH_MAX_FRACTION = engine.SUBGRAPH_MAX_FRACTION, 1.0  # every node mask counts as small
    try:
        routed = run_conditions_with_cache(MODEL, TOKENS, [mask], reference, answer, hooks, by_length=True)
    finally:
        engine.SUBGRAPH_MAX_FRACTION = saved
    assert torch.allclose(routed[0], by_length_full[0], atol=1e-4, rtol=1e-4)
    for hook in hooks:
        assert torch.allclose(routed[1][hook], by_length_full[1][hook], atol=1e-4, rtol=1e-4), hook


def test_the_subgraph_does_not_capture_queries_of_heads_it_does_not_compute():
    from circuitspec.engine.subgraph import can_capture
    nodes = {h: torch.zeros(s, dtype=torch.bool) for h, s in SPACE.node_shapes.items()}
    nodes["blocks.0.attn.hook_q"][1, 0] = True  # a query channel of head 1, whose output is not kept
    mask = Mask(SPACE, nodes, Mask.full(SPACE).edges)
    assert not can_capture(mask, ["blocks.0.attn.hook_q"])
    assert can_capture(mask, ["blocks.0.attn.hook_k", "blocks.0.attn.hook_z", "blocks.0.mlp.hook_post"])
    nodes["blocks.0.attn.hook_z"][1, 2] = True
    assert can_capture(Mask(SPACE, nodes, Mask.full(SPACE).edges), ["blocks.0.attn.hook_q"])
    assert not can_capture(mask, ["blocks.0.attn.hook_pattern"])  # not a node hook


def test_models_with_act_topk_never_take_the_subgraph_path():
    """AbsTopK reads every channel, which the subgraph path does not compute: on such a model a small
    node mask must give what the full masked forward gives (before this was checked, a small mask took
    the subgraph path, which ignored the top-k: 0.47 apart on the logits of a random such model)."""
    from circuitspec.engine import ablation as engine
    from circuitspec.engine.subgraph import run_circuit
    cfg = ModelConfig(**{**CFG.to_dict(), "act_topk": 3})
    model = Transformer(cfg).eval()
    model.load_state_dict(MODEL.state_dict())
    reference = Reference.compute(model, Ablation("mean"), TOKENS, LENGTHS, REF_TOKENS, REF_LENGTHS)
    mask = random_mask(4, 0.2, 1.0)
    saved, engine.SUBGRAPH_MAX_FRACTION = engine.SUBGRAPH_MAX_FRACTION, -1.0  # force the full masked forward
    try:
        full = run_conditions(model, TOKENS, [mask], reference)[0]
    finally:
        engine.SUBGRAPH_MAX_FRACTION = saved
    assert torch.equal(run_conditions(model, TOKENS, [mask], reference)[0], full)
    with pytest.raises(ValueError, match="AbsTopK"):
        run_circuit(model, TOKENS, mask, reference)
