"""Mask algebra laws (Hypothesis) and node/edge bookkeeping."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from circuitspec.engine.graph import build_graph
from circuitspec.engine.masks import Mask, MaskSpace
from circuitspec.engine.model import ModelConfig, Transformer
from circuitspec.engine.naming import NodeName, parse_node_name
from circuitspec.engine.sparsity import project_model_

CFG = ModelConfig(n_layers=2, d_model=4, n_heads=2, d_head=2, d_mlp=6, n_ctx=4, d_vocab=8)
SPACE = MaskSpace.for_config(CFG)


@st.composite
def masks(draw):
    seed = draw(st.integers(0, 2**31 - 1))
    p = draw(st.floats(0.0, 1.0))
    gen = torch.Generator().manual_seed(seed)
    rand = lambda shape: torch.rand(shape, generator=gen) < p  # noqa: E731
    return Mask(SPACE, {h: rand(s) for h, s in SPACE.node_shapes.items()}, {w: rand(s) for w, s in SPACE.edge_shapes.items()})


LAWS = settings(max_examples=40, deadline=None)


@LAWS
@given(masks())
def test_complement_is_an_involution(a):
    assert ~~a == a


@LAWS
@given(masks())
def test_union_with_complement_is_everything(a):
    assert a | ~a == Mask.full(SPACE)
    assert a & ~a == Mask.empty(SPACE)


@LAWS
@given(masks(), masks())
def test_de_morgan(a, b):
    assert ~(a | b) == ~a & ~b
    assert ~(a & b) == ~a | ~b


@LAWS
@given(masks(), masks(), masks())
def test_union_and_intersection_are_associative_and_commutative(a, b, c):
    assert a | b == b | a and a & b == b & a
    assert (a | b) | c == a | (b | c)
    assert (a & b) & c == a & (b & c)


@LAWS
@given(masks(), masks())
def test_difference(a, b):
    assert a - b == a & ~b
    assert (a - b) & b == Mask.empty(SPACE)


@LAWS
@given(masks())
def test_removing_a_node_changes_exactly_that_node(a):
    names = list(Mask.full(SPACE).node_names())
    name = names[len(names) // 2]
    removed = a.without_node(name)
    assert not removed.contains(name)
    assert removed.node_count() == a.node_count() - int(a.contains(name))
    assert removed.with_node(name, a.contains(name)) == a


@LAWS
@given(masks(), masks())
def test_induced_edges_only_touch_kept_nodes(a, b):
    induced = a.induced()
    assert all(torch.equal(induced.nodes[h], a.nodes[h]) for h in a.nodes)
    for param, ends in SPACE.endpoints.items():
        allowed = torch.ones(SPACE.edge_shapes[param], dtype=torch.bool)
        if ends.src:
            allowed = allowed & a.nodes[ends.src].reshape(ends.src_view)
        if ends.dst:
            allowed = allowed & a.nodes[ends.dst].reshape(ends.dst_view)
        assert torch.equal(induced.edges[param], allowed)
    assert induced.induced() == induced
    union = (a | b).induced()
    assert (a.induced() - union).edge_count() == 0  # more nodes never lose an edge


def test_node_names_round_trip_through_from_nodes():
    names = [parse_node_name(n) for n in ("blocks.0.mlp.hook_post[5]", "blocks.1.attn.hook_v[head=1, 0]",
                                           "blocks.0.attn.hook_q[head=0, 1]", "blocks.1.hook_resid_mid[3]",
                                           "blocks.1.hook_resid_post[2]", "blocks.0.hook_resid_post[1]")]
    mask = Mask.from_nodes(SPACE, names)
    assert mask.node_count() == 6
    kept = set(mask.node_names())
    assert NodeName("blocks.1.hook_resid_pre", 1) in kept  # resid_post of block 0 is resid_pre of block 1
    assert NodeName("blocks.0.attn.hook_q", 1, 0) in kept


@pytest.mark.parametrize("text, error", [
    ("blocks.0.mlp.hook_post[6]", IndexError),
    ("blocks.0.attn.hook_v[3]", IndexError),  # needs head=
    ("blocks.0.attn.hook_v[head=2, 0]", IndexError),
    ("blocks.3.mlp.hook_post[0]", KeyError),
    ("hook_logits[3]", KeyError),
    ("blocks.0.attn.hook_pattern[head=0]", KeyError),
])
def test_invalid_node_positions(text, error):
    with pytest.raises(error):
        SPACE.node_position(parse_node_name(text))


def test_induced_edges_match_the_graph():
    """An edge is kept iff both endpoints are kept and the weight is non-zero — the graph's weight edges."""
    torch.manual_seed(0)
    model = Transformer(CFG)
    project_model_({n: p.data for n, p in model.weight_matrices().items()}, 0.4)
    g = build_graph(model)
    names = [parse_node_name(n) for n in ("blocks.0.hook_resid_pre[1]", "blocks.0.attn.hook_q[head=0, 1]",
                                           "blocks.0.hook_resid_mid[2]", "blocks.0.mlp.hook_post[3]",
                                           "blocks.1.hook_resid_pre[0]", "blocks.1.hook_resid_post[1]")]
    mask = Mask.from_nodes(SPACE, names).induced(model)
    kept = {str(n) for n in names} | {str(NodeName("blocks.1.hook_resid_pre", 0)), "blocks.1.hook_resid_post[1]"}
    expected = 0
    for u, v, d in g.edges(data=True):
        if d["kind"] != "weight":
            continue
        src_ok = u in kept or u.startswith(("hook_tokens", "hook_positions"))
        dst_ok = v in kept or v.startswith("hook_logits")
        in_mask = bool(mask.edges[d["param"]][d["entry"]])
        assert in_mask == (src_ok and dst_ok), (u, v)
        expected += in_mask
    assert mask.edge_count() == expected


def test_shape_checks():
    with pytest.raises(ValueError):
        Mask(SPACE, {}, {})
    full = Mask.full(SPACE)
    bad = dict(full.nodes)
    bad["blocks.0.mlp.hook_post"] = torch.ones(5, dtype=torch.bool)
    with pytest.raises(ValueError, match="expected bool"):
        Mask(SPACE, bad, full.edges)
