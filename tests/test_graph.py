"""The model graph: node naming and edges == non-zero weights."""

import torch

from circuitspec.engine.graph import build_graph, weight_edges
from circuitspec.engine.model import ModelConfig, Transformer
from circuitspec.engine.naming import NodeName, canonical, parse_node_name
from circuitspec.engine.sparsity import project_model_

CFG = ModelConfig(n_layers=2, d_model=8, n_heads=2, d_head=4, d_mlp=12, n_ctx=6)


def sparse_model(density=0.2):
    torch.manual_seed(1)
    model = Transformer(CFG)
    project_model_({n: p.data for n, p in model.weight_matrices().items()}, density)
    return model


def test_weight_edges_are_exactly_the_nonzero_weights():
    model = sparse_model()
    g = build_graph(model)
    edges = weight_edges(g)
    expected = sum(int((p != 0).sum()) for p in model.weight_matrices().values())
    assert len(edges) == expected
    params = {n: p.detach() for n, p in model.named_parameters()}
    for _, _, data in edges:
        assert data["weight"] == float(params[data["param"]][data["entry"]]) != 0.0


def test_edge_endpoints_follow_the_weight_layout():
    model = sparse_model(1.0)
    g = build_graph(model)
    assert g.has_edge("blocks.0.hook_resid_mid[3]", "blocks.0.mlp.hook_post[5]")
    data = g.edges["blocks.0.hook_resid_mid[3]", "blocks.0.mlp.hook_post[5]"]
    assert data["param"] == "blocks.0.mlp.W_in" and data["entry"] == (3, 5)
    data = g.edges["blocks.1.hook_resid_pre[2]", "blocks.1.attn.hook_v[head=1, 3]"]
    assert data["param"] == "blocks.1.attn.W_V" and data["entry"] == (1, 2, 3)
    assert g.edges["blocks.1.attn.hook_v[head=1, 3]", "blocks.1.attn.hook_z[head=1, 3]"]["kind"] == "attn_value"
    assert g.has_edge("blocks.1.hook_resid_post[7]", "hook_logits[34]")
    assert g.edges["hook_tokens[34]", "blocks.0.hook_resid_pre[0]"]["param"] == "embed.W_E"


def test_node_counts():
    g = build_graph(sparse_model())
    kinds = {}
    for _, d in g.nodes(data=True):
        kinds[d["kind"]] = kinds.get(d["kind"], 0) + 1
    assert kinds["mlp"] == CFG.n_layers * CFG.d_mlp
    assert kinds["resid"] == (2 * CFG.n_layers + 1) * CFG.d_model
    assert kinds["z"] == CFG.n_layers * CFG.n_heads * CFG.d_head
    assert kinds["logits"] == kinds["tokens"] == 256


def test_every_node_name_parses_back():
    g = build_graph(sparse_model())
    for node in g.nodes:
        assert str(parse_node_name(node)) == node


def test_node_names_and_aliases():
    assert str(NodeName("blocks.1.attn.hook_v", 7, 2)) == "blocks.1.attn.hook_v[head=2, 7]"
    assert parse_node_name("blocks.1.attn.hook_v[head=2, 7]") == NodeName("blocks.1.attn.hook_v", 7, 2)
    assert parse_node_name("blocks.0.mlp.hook_post[113]").layer == 0
    assert canonical(parse_node_name("blocks.0.hook_resid_post[4]"), 2) == NodeName("blocks.1.hook_resid_pre", 4)
    assert canonical(parse_node_name("blocks.1.hook_resid_post[4]"), 2) == NodeName("blocks.1.hook_resid_post", 4)
