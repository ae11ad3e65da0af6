"""Edge claims (`claim edge A -> B drop >= T`) and edge-level circuits (`circuit edges`).

The engine side is checked against brute force on a random two-block model: an edge between adjacent
nodes, ablated under zero ablation, is the model with those weights set to zero; an edge between nodes
further apart along the residual stream is the receiver reading the sender's reference share of the stream
(a forward pass written out here, with the receiver's input recomputed by hand).

The verifier side runs on the hand-set oracle of test_verify_oracle.py (the final a/b is carried by residual
channel 0; neuron 0 = relu(channel 0) and neuron 1 = relu(-channel 0) write the answer channel), plus a
"parallel" neuron 7 that reads channel 0 too and writes nothing: its edges carry nothing, although they
share their first weights (the token rows into channel 0) with the edges that carry everything.
"""

import copy
import json

import pytest
import torch

from circuitspec.cli import main
from circuitspec.commands.check_cmd import check_file
from circuitspec.engine.ablation import Ablation, Reference, run_conditions
from circuitspec.engine.checkpoint import save_checkpoint
from circuitspec.engine.masks import Mask, MaskSpace
from circuitspec.engine.model import ModelConfig, Transformer
from circuitspec.engine.naming import parse_node_name
from circuitspec.engine.paths import edge_cut, cut_edge, sender_site, stream_hooks
from circuitspec.engine.tokenizer import token_id
from circuitspec.lang import format_spec, parse_spec
from circuitspec.schemas import validate
from conftest import registered_for_module
from test_verify_oracle import HEADER, TASK, hand_set_model

# ---- the engine against brute force --------------------------------------------------------------

CFG2 = ModelConfig(n_layers=2, d_model=16, n_heads=2, d_head=4, d_mlp=8, n_ctx=16)


@pytest.fixture(scope="module")
def random_model():
    torch.manual_seed(0)
    model = Transformer(CFG2).eval()
    with torch.no_grad():  # larger weights than the init, so that every cut moves the logits visibly
        for name, p in model.named_parameters():
            if name.split(".")[-1].startswith(("W_", "b_")):
                p.normal_(std=0.5)
    tokens = torch.randint(0, 256, (3, 10), generator=torch.Generator().manual_seed(1))
    tokens[:, ::3] = token_id("a")  # the embedding row the edges below start from
    references = torch.randint(0, 256, (20, 10), generator=torch.Generator().manual_seed(2))
    return model, tokens, references


def reference_for(random_model, kind):
    model, tokens, references = random_model
    lengths = torch.full((tokens.shape[0],), tokens.shape[1])
    return Reference.compute(model, Ablation(kind), tokens, lengths, references, torch.full((references.shape[0],), 10))


N = parse_node_name
ADJACENT = [  # (sender, receiver, the one weight entry joining them)
    ("blocks.1.hook_resid_pre[5]", "blocks.1.attn.hook_q[head=0, 1]", ("blocks.1.attn.W_Q", (0, 5, 1))),
    ("blocks.0.hook_resid_mid[3]", "blocks.0.mlp.hook_post[6]", ("blocks.0.mlp.W_in", (3, 6))),
    ("blocks.0.mlp.hook_post[2]", "blocks.1.hook_resid_pre[7]", ("blocks.0.mlp.W_out", (2, 7))),
    ("blocks.1.attn.hook_z[head=1, 3]", "blocks.1.hook_resid_mid[9]", ("blocks.1.attn.W_O", (1, 3, 9))),
    ("blocks.1.hook_resid_post[4]", "hook_logits[97]", ("unembed.W_U", (4, 97))),
    (f"hook_tokens[{token_id('a')}]", "blocks.0.hook_resid_pre[1]", ("embed.W_E", (token_id("a"), 1))),
]


@pytest.mark.parametrize("sender, receiver, entry", ADJACENT, ids=[f"{s}->{r}" for s, r, _ in ADJACENT])
def test_an_adjacent_edge_under_zero_ablation_is_the_model_without_its_weight(random_model, sender, receiver, entry):
    model, tokens, _ = random_model
    cut = edge_cut(model, [N(sender)], [N(receiver)])
    assert not cut.paths and cut.weights() == 1 and bool(cut.direct[entry[0]][entry[1]])
    zeroed = copy.deepcopy(model)
    with torch.no_grad():
        dict(zeroed.named_parameters())[entry[0]][entry[1]] = 0.0
    full = Mask.full(MaskSpace.for_config(CFG2))
    ablated = run_conditions(model, tokens, [cut_edge(full, cut)], reference_for(random_model, "zero"))[0]
    assert torch.allclose(ablated, zeroed(tokens), atol=1e-5)
    assert not torch.allclose(ablated, model(tokens), atol=1e-4)


def share_on_stream(model, cache, reference, sender):
    """What ``sender`` adds to the residual stream minus what its reference value adds, [B, T, d_model]."""
    site = sender_site(sender, CFG2.n_layers)
    if site.param is None:  # a residual channel: itself
        share = torch.zeros_like(cache[sender.hook])
        share[..., sender.index] = cache[sender.hook][..., sender.index] - reference.value(sender.hook)[..., sender.index]
        return share
    if sender.hook == "hook_tokens":
        onehot = torch.nn.functional.one_hot(cache["tokens"], CFG2.d_vocab).float()[..., sender.index]
        return (onehot - reference.value("<tokens>")[..., sender.index])[..., None] * model.embed.W_E[sender.index]
    value, ref = cache[sender.hook], reference.value(sender.hook)
    if sender.head is not None:
        value, ref, row = value[..., sender.head, sender.index], ref[..., sender.head, sender.index], \
            dict(model.named_parameters())[site.param][sender.head, sender.index]
    else:
        value, ref, row = value[..., sender.index], ref[..., sender.index], dict(model.named_parameters())[site.param][sender.index]
    return (value - ref)[..., None] * row


def by_hand(model, tokens, reference, sender, receiver):
    """The model's logits with ``receiver`` computed from the residual stream minus the sender's share (plus its
    reference share), every norm scale as in the run: path patching written out."""
    cache = {"tokens": tokens}
    hooks = [*stream_hooks(CFG2.n_layers), "blocks.0.mlp.hook_post", "blocks.1.mlp.hook_post", "blocks.0.attn.hook_z",
             "blocks.1.attn.hook_z", "blocks.0.ln1.hook_scale", "blocks.1.ln1.hook_scale", "blocks.0.ln2.hook_scale",
             "blocks.1.ln2.hook_scale", "ln_final.hook_scale"]
    with torch.no_grad():
        _, saved = model.run_with_cache(tokens, hooks)
        cache.update(saved)
        share = share_on_stream(model, cache, reference, sender)
        layer = receiver.layer
        if receiver.hook in stream_hooks(CFG2.n_layers):
            value = cache[receiver.hook][..., receiver.index] - share[..., receiver.index]
            patch_hook, index = receiver.hook, (receiver.index,)
        elif receiver.hook == "hook_logits":
            read = (cache["blocks.1.hook_resid_post"] - share) * cache["ln_final.hook_scale"]
            value = read @ model.unembed.W_U[:, receiver.index] + model.unembed.b_U[receiver.index]
            patch_hook, index = "hook_logits", (receiver.index,)
        elif receiver.hook.endswith("mlp.hook_post"):
            mlp = model.blocks[layer].mlp
            read = (cache[f"blocks.{layer}.hook_resid_mid"] - share) * cache[f"blocks.{layer}.ln2.hook_scale"]
            value = read @ mlp.W_in[:, receiver.index] + mlp.b_in[receiver.index]
            patch_hook, index = f"blocks.{layer}.mlp.hook_pre", (receiver.index,)
        else:  # q/k/v
            attn, kind = model.blocks[layer].attn, receiver.hook[-1].upper()
            read = (cache[f"blocks.{layer}.hook_resid_pre"] - share) * cache[f"blocks.{layer}.ln1.hook_scale"]
            weight, bias = getattr(attn, f"W_{kind}"), getattr(attn, f"b_{kind}")
            value = read @ weight[receiver.head, :, receiver.index] + bias[receiver.head, receiver.index]
            patch_hook, index = receiver.hook, (receiver.head, receiver.index)

        def patch(x, name):
            x = x.clone()
            x[(..., *index)] = value
            return x

        with model.hooks({patch_hook: patch}):
            return model(tokens)


PATHS = [  # ends further apart than one matrix: cut as paths through the residual stream
    ("blocks.0.mlp.hook_post[3]", "blocks.1.attn.hook_v[head=1, 2]"),  # a neuron to a value channel of the next block
    ("blocks.0.attn.hook_z[head=0, 1]", "hook_logits[97]"),  # a head's output to a logit, through both blocks
    (f"hook_tokens[{token_id('a')}]", "blocks.1.mlp.hook_post[5]"),  # an embedding row to a neuron of the last block
    ("blocks.0.hook_resid_pre[4]", "blocks.1.hook_resid_pre[4]"),  # one residual channel, two blocks apart
    ("blocks.0.hook_resid_pre[6]", "blocks.0.mlp.hook_post[2]"),  # a residual channel past attention into a neuron
    ("blocks.1.attn.hook_z[head=1, 0]", "blocks.1.hook_resid_post[3]"),  # a head's write, read after the MLP
]


@pytest.mark.parametrize("kind", ["zero", "mean"])
@pytest.mark.parametrize("sender, receiver", PATHS, ids=[f"{s}->{r}" for s, r in PATHS])
def test_a_path_cut_is_the_receiver_reading_the_senders_reference_share(random_model, kind, sender, receiver):
    model, tokens, _ = random_model
    cut = edge_cut(model, [N(sender)], [N(receiver)])
    assert cut.weights() == 0 and cut.paths and cut.path_count(model) > 0
    reference = reference_for(random_model, kind)
    full = Mask.full(MaskSpace.for_config(CFG2))
    plain, ablated = run_conditions(model, tokens, [full, cut_edge(full, cut)], reference)
    expected = by_hand(model, tokens, reference, N(sender), N(receiver))
    assert torch.allclose(ablated, expected, atol=1e-5), (ablated - expected).abs().max()
    assert (ablated - plain).abs().max() > 1e-4  # the cut does something to compare


def test_a_cut_through_a_channel_the_condition_ablates_adds_nothing(random_model):
    """Where a hook on the way ablates the channels, the run already replaced what the sender put there."""
    model, tokens, _ = random_model
    space = MaskSpace.for_config(CFG2)
    cut = edge_cut(model, [N("blocks.0.mlp.hook_post[3]")], [N("blocks.1.attn.hook_v[head=1, 2]")])
    full = Mask.full(space)
    nodes = dict(full.nodes)
    nodes["blocks.1.hook_resid_pre"] = torch.zeros_like(nodes["blocks.1.hook_resid_pre"])
    blocked = Mask(space, nodes, full.edges)
    reference = reference_for(random_model, "mean")
    alone, cut_too = run_conditions(model, tokens, [blocked, cut_edge(blocked, cut)], reference)
    assert torch.equal(alone, cut_too)


def test_stacked_conditions_cut_each_its_own_paths(random_model):
    """On a GPU conditions are stacked along the batch: each must apply its own cuts, to its own rows."""
    model, tokens, _ = random_model
    full = Mask.full(MaskSpace.for_config(CFG2))
    masks = [cut_edge(full, edge_cut(model, [N(s)], [N(r)])) for s, r in PATHS[:3]] + [full]
    reference = reference_for(random_model, "mean")
    one_by_one = run_conditions(model, tokens, masks, reference)
    stacked = run_conditions(model, tokens, masks, reference, max_tokens=10**6)
    assert torch.allclose(one_by_one, stacked, atol=1e-5)


def test_nodes_an_edge_names_on_its_own_paths_are_not_cut_twice(random_model):
    """A group end holding a neuron and the residual channel it writes: the channel's own edge covers the
    neuron's share, so the neuron's path through that channel is not cut again."""
    model, _, _ = random_model
    neuron, channel = N("blocks.0.mlp.hook_post[3]"), N("blocks.1.hook_resid_pre[5]")
    receiver = N("blocks.1.attn.hook_v[head=1, 2]")
    alone = edge_cut(model, [neuron], [receiver]).paths[0]
    both = edge_cut(model, [neuron, channel], [receiver])
    assert bool(alone.channels[5]) and not bool(both.paths[0].channels[5])
    assert both.weights() == 1  # the channel's own weight into the value channel


def test_ends_joined_only_by_attention_have_nothing_to_cut(random_model):
    model, _, _ = random_model
    cut = edge_cut(model, [N("blocks.0.attn.hook_v[head=1, 2]")], [N("blocks.0.attn.hook_z[head=1, 2]")])
    assert cut.empty(model) and cut.through_attention
    backwards = edge_cut(model, [N("blocks.1.mlp.hook_post[0]")], [N("blocks.0.attn.hook_v[head=0, 0]")])
    assert backwards.empty(model) and not backwards.through_attention


# ---- the language ----------------------------------------------------------------------------------

MESSY = """spec   messy
model "model"
task last_ab
ablate   zero
circuit    edges
node a = blocks.0.mlp.hook_post[0]
edge blocks.0.hook_resid_mid[0]   ->a
claim   carries :  edge   blocks.0.hook_resid_mid[0] ->  a drop>=0.20   samples 50
claim edge a -> logits drop > 1e-1
"""


def test_fmt_writes_edge_claims_and_the_circuit_kind_in_canonical_form(tmp_path):
    path = tmp_path / "messy.circ"
    path.write_text(MESSY)
    assert main(["fmt", str(path)]) == 0
    text = path.read_text()
    assert "circuit edges\n" in text
    assert "claim carries: edge blocks.0.hook_resid_mid[0] -> a drop >= 0.2 samples 50\n" in text
    assert "claim edge a -> logits drop > 0.1\n" in text
    assert parse_spec(text).spec == parse_spec(MESSY).spec
    assert main(["fmt", "--check", str(path)]) == 0
    spec = parse_spec(text).spec
    assert spec.circuit == "edges" and [c.kind for c in spec.claims] == ["edge", "edge"]
    assert format_spec(spec) == text


@pytest.mark.parametrize("line, code", [
    ("circuit edgs\n", "E210"),
    ("claim edge a -> b drop <= 0.1\n", "E205"),
    ("claim edgy a -> b drop >= 0.1\n", "E201"),
    ("claim edge a -> nowhere drop >= 0.1\n", "E102"),
])
def test_edge_claim_and_circuit_kind_errors(line, code):
    text = 'spec s\nmodel "m"\ntask t\nablate zero\n' + ("node a = x[1]\nnode b = y[2]\n" if "circuit" not in line else "") + line
    codes = {d.code for d in parse_spec(text).diagnostics}
    assert codes == {code}, codes


def test_edge_stays_a_name_where_no_keyword_fits():
    text = 'spec s\nmodel "m"\ntask t\nablate zero\nnode edge = x[1]\nclaim edge: edge > 0\nclaim edge edge -> logits drop >= 0.1\n'
    result = parse_spec(text)
    assert result.ok, result.render()
    assert [c.kind for c in result.spec.claims] == ["role", "edge"]


# ---- verify on the hand-set oracle -------------------------------------------------------------------

PARALLEL = 7  # reads the carrier channel, writes nothing
CIRCUIT = f"""node carrier = blocks.0.hook_resid_pre[0] "+1 for a, -1 for b"
node carrier_mid = blocks.0.hook_resid_mid[0]
node pos = blocks.0.mlp.hook_post[0] "relu(+carrier)"
node neg = blocks.0.mlp.hook_post[1] "relu(-carrier)"
node out = blocks.0.hook_resid_post[1] "read by logit a and b"
"""
PARALLEL_NODE = f'node parallel = blocks.0.mlp.hook_post[{PARALLEL}] "reads the carrier, writes nothing"\n'
ARGS = ["--samples", "60", "--baselines", "40", "--threads", "1"]


task = registered_for_module(TASK)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    model = hand_set_model()
    with torch.no_grad():
        mlp = model.blocks[0].mlp
        mlp.W_in[:, PARALLEL] = 0.0
        mlp.W_in[0, PARALLEL] = 1.0
        mlp.W_out[PARALLEL, :] = 0.0
    root = tmp_path_factory.mktemp("edges")
    save_checkpoint(model, root / "model", {"description": "hand-set oracle with a parallel neuron"})
    return root


def write(folder, name, body, header_extra=""):
    path = folder / f"{name}.circ"
    path.write_text(HEADER.format(name=name, ablation="mean over task") + header_extra + body)
    return path


def verify(folder, path, *extra):
    out = folder / f"{path.stem}.json"
    code = main(["verify", str(path), "--json", str(out), *ARGS, *extra])
    data = json.loads(out.read_text())
    validate("verify", data)
    return code, {c["name"] if not c["name"].startswith("line ") else c["kind"]: c for c in data["claims"]}, data


EDGE_CLAIMS = """claim carries: edge carrier_mid -> pos drop >= 0.2
claim idle: edge carrier_mid -> parallel drop >= 0.2
claim carries_far: edge hook_tokens['a', 'b'] -> pos drop >= 0.2
claim idle_far: edge hook_tokens['a', 'b'] -> parallel drop >= 0.2
"""


def test_the_edge_that_carries_the_signal_passes_and_the_parallel_one_fails(folder):
    """`idle_far` shares its first weights (the token rows into the carrier channel) with `carries_far`:
    ablating those weights would break both; the edge cuts only the path into the parallel neuron."""
    code, claims, _ = verify(folder, write(folder, "parallel", CIRCUIT + PARALLEL_NODE + EDGE_CLAIMS))
    assert code == 1
    for name in ("carries", "carries_far"):
        assert claims[name]["verdict"] == "pass" and claims[name]["ci"][0] > 0.3, claims[name]
    for name in ("idle", "idle_far"):
        claim = claims[name]
        assert claim["verdict"] == "fail" and abs(claim["statistic"]) < 1e-4 and claim["ci"][1] < 0.2, claim
        assert "not shown to carry" in claim["note"]
    carries, far = claims["carries"]["units"][0], claims["carries_far"]["units"][0]
    assert (carries["weights"], carries["paths"]) == (1, 0)  # W_in[0, 0]
    assert far["weights"] == 0 and far["paths"] == 2  # tokens a and b, through channel 0, into neuron 0
    assert claims["carries"]["kind"] == "edge" and claims["carries"]["threshold"] == 0.2
    assert claims["carries"]["text"] == "claim carries: edge carrier_mid -> pos drop >= 0.2"


def test_verify_exits_0_when_every_edge_claim_holds(folder):
    body = CIRCUIT + PARALLEL_NODE + "claim carries: edge carrier_mid -> pos drop >= 0.2\nclaim edge neg -> out drop >= 0.2\n"
    code, claims, data = verify(folder, write(folder, "all_hold", body))
    assert code == 0 and {c["verdict"] for c in claims.values()} == {"pass"}
    assert "circuit" not in data["manifest"]["specs"][0]  # node-level: the manifest is as before


def test_minimal_each_edge_removes_a_declared_edge_as_an_edge_claim_does(folder):
    body = (CIRCUIT + PARALLEL_NODE + "edge carrier_mid -> pos\nedge hook_tokens['a', 'b'] -> parallel\n"
            "claim minimal each edge drop >= 0.2\n" + EDGE_CLAIMS)
    _, claims, _ = verify(folder, write(folder, "minimal_edges", body))
    units = {u["unit"]: u for u in claims["minimal"]["units"]}
    assert units["carrier_mid -> pos"]["drop"] == claims["carries"]["statistic"]
    assert units['hook_tokens["a", "b"] -> parallel']["drop"] == claims["idle_far"]["statistic"]
    assert claims["minimal"]["verdict"] == "fail"


EDGES = """edge hook_tokens[*] -> carrier
edge carrier_mid -> pos -> out -> logits
edge carrier_mid -> neg -> out
"""
SUFFICIENT = "claim sufficient faithfulness >= 0.9\nclaim necessary faithfulness <= 0.1\n"


def test_an_edge_level_circuit_missing_the_carrying_edge_fails_where_its_node_level_twin_passes(folder):
    missing = EDGES.replace("edge carrier_mid -> neg -> out\n", "")
    code, claims, _ = verify(folder, write(folder, "nodes_twin", CIRCUIT + missing + SUFFICIENT))
    assert code == 0 and claims["sufficient"]["statistic"] == pytest.approx(1.0, abs=1e-3), claims["sufficient"]
    code, claims, data = verify(folder, write(folder, "edges_missing", CIRCUIT + missing + SUFFICIENT, "circuit edges\n"))
    assert code == 1 and claims["sufficient"]["verdict"] == "fail"
    assert 0.3 < claims["sufficient"]["statistic"] < 0.8  # neg still computes, but nothing it reads or writes is kept
    assert data["manifest"]["specs"][0]["circuit"] == "edges"
    code, claims, _ = verify(folder, write(folder, "edges_whole", CIRCUIT + EDGES + SUFFICIENT, "circuit edges\n"))
    assert code == 0, {k: (c["verdict"], c["statistic"], c["note"]) for k, c in claims.items()}
    assert claims["sufficient"]["statistic"] == pytest.approx(1.0, abs=1e-3)
    assert claims["necessary"]["statistic"] < 0.05  # only its edges ablated: every node kept


def test_an_edge_level_circuit_ablates_the_weights_between_its_nodes_that_no_edge_states(folder):
    """The parallel neuron is a node of both circuits; only the node-level one keeps its weight from the carrier."""
    body = CIRCUIT + PARALLEL_NODE + EDGES
    nodes, _, _ = check_file(write(folder, "check_nodes", body))
    edges, diagnostics, _ = check_file(write(folder, "check_edges", body, "circuit edges\n"))
    assert not diagnostics and edges.edge_level and not nodes.edge_level
    assert bool(nodes.mask.edges["blocks.0.mlp.W_in"][0, PARALLEL])
    assert not bool(edges.mask.edges["blocks.0.mlp.W_in"][0, PARALLEL])
    assert bool(edges.mask.edges["blocks.0.mlp.W_in"][0, 0]) and bool(edges.mask.edges["unembed.W_U"][1, token_id("a")])
    assert bool(edges.mask.edges["blocks.0.mlp.W_in"][5, 3])  # not between kept nodes: left as it is
    assert edges.nodes == nodes.nodes


def test_check_reports_the_edges_of_an_edge_level_circuit(folder, capsys):
    path = write(folder, "check_report", CIRCUIT + PARALLEL_NODE + EDGES, "circuit edges\n")
    assert main(["check", str(path)]) == 0
    out = capsys.readouterr().out
    # kept: W_in[0, 0], W_in[0, 1], W_out[0, 1], W_out[1, 1] (the token rows and the unembedding are stated too,
    # and not counted as edges); ablated: W_in[0, 7], the carrier into the parallel neuron
    assert "6 nodes, 4 edges (edge-level: 1 unstated weight between its nodes, input and logits ablated)" in out


@pytest.mark.parametrize("body, header, code, message", [
    (CIRCUIT + "claim edge pos -> carrier drop >= 0.1\n", "", "E506", "no non-zero weights connect pos to carrier"),
    (CIRCUIT + "claim edge blocks.0.attn.hook_v[head=0, 1] -> blocks.0.attn.hook_z[head=0, 1] drop >= 0.1\n", "",
     "E511", "only through a head's attention"),
    (CIRCUIT + "claim edge carrier_mid -> blocks.0.mlp.hook_post[7] drop >= 0.1\n", "", "E518",
     "blocks.0.mlp.hook_post[7] is not in the circuit"),
    (CIRCUIT.replace("node carrier_mid = blocks.0.hook_resid_mid[0]\n", "") + "claim edge carrier -> pos drop >= 0.1\n", "",
     "E518", "pass only residual channels outside the circuit"),
    (CIRCUIT + EDGES.replace("edge carrier_mid -> neg -> out\n", "") + "claim edge carrier_mid -> neg drop >= 0.1\n",
     "circuit edges\n", "E518", "no edge statement states it"),
])
def test_edge_claims_outside_the_circuit_or_the_model_are_diagnosed(folder, body, header, code, message):
    resolved, diagnostics, _ = check_file(write(folder, f"diag_{code}_{len(body)}", body, header))
    assert resolved is None and [d.code for d in diagnostics] == [code]
    assert message in diagnostics[0].message and diagnostics[0].hint


def test_falsify_rejudges_edge_claims_on_fresh_inputs(folder):
    body = CIRCUIT + PARALLEL_NODE + "claim carries: edge carrier_mid -> pos drop >= 0.2\nclaim idle: edge carrier_mid -> parallel drop >= 0.2\n"
    out = folder / "falsify.json"
    code = main(["falsify", str(write(folder, "falsify_edges", body)), "--samples", "60", "--no-database", "--threads", "1",
                 "--json", str(out)])
    data = json.loads(out.read_text())
    validate("falsify", data)
    results = {r["name"]: r for r in data["results"]}
    assert code == 1 and results["carries"]["verdict"] == "survived" and results["idle"]["verdict"] == "falsified"
    assert "drop" in results["idle"]["counterexample"]


def test_prove_does_not_encode_an_edge_level_circuit(folder):
    from circuitspec.prove.entailment import prove_behaviour
    from circuitspec.verify.runner import RunSettings

    body = CIRCUIT + EDGES + "claim says_a: logit['a'] > logit['b'] when last == \"a\"\n"
    resolved, diagnostics, _ = check_file(write(folder, "prove_edges", body, "circuit edges\n"))
    assert not diagnostics
    result = prove_behaviour(resolved, resolved.claims[0], RunSettings(samples=60))
    assert result.status == "not encodable" and "circuit edges" in result.note


def test_show_draws_only_the_weights_an_edge_level_circuit_keeps(folder):
    from circuitspec.show import ShowOptions, build_picture

    body = CIRCUIT + PARALLEL_NODE + EDGES.replace("edge hook_tokens[*] -> carrier\n", "")  # 256 boxes fewer
    notes = {}
    for kind, header in (("nodes", ""), ("edges", "circuit edges\n")):
        resolved, _, _ = check_file(write(folder, f"show_{kind}", body, header))
        picture = build_picture(resolved, ShowOptions(samples=20))
        notes[kind] = " ".join(link.note for link in picture.links if link.kind == "weight")
    into_parallel = f"blocks.0.mlp.W_in[0, {PARALLEL}]"
    assert into_parallel in notes["nodes"] and into_parallel not in notes["edges"]
    assert "blocks.0.mlp.W_in[0, 0]" in notes["edges"]


def test_paths_are_not_cut_in_a_model_with_abs_topk(folder):
    """AbsTopK makes the residual stream non-linear, so a sender's share cannot be taken out of it: edges
    between adjacent nodes still work, paths are E511 (for edge claims and for `minimal each edge`)."""
    import dataclasses

    from test_verify_oracle import CFG

    plain = hand_set_model()
    model = Transformer(dataclasses.replace(CFG, act_topk=CFG.d_model)).eval()  # keeps every channel, but is AbsTopK
    model.load_state_dict(plain.state_dict())
    save_checkpoint(model, folder / "topk_model", {"description": "the oracle, with AbsTopK that keeps everything"})

    def diagnostics(name, body):
        path = folder / f"{name}.circ"
        path.write_text(HEADER.format(name=name, ablation="mean over task").replace('"model"', '"topk_model"') + CIRCUIT + body)
        return check_file(path)[1]

    assert diagnostics("topk_adjacent", "claim edge carrier_mid -> pos drop >= 0.2\n") == []
    far = diagnostics("topk_far", "claim edge carrier -> pos drop >= 0.2\n")
    assert [d.code for d in far] == ["E511"] and "AbsTopK" in far[0].message
    minimal = diagnostics("topk_minimal", "edge carrier -> pos\nclaim minimal each edge drop >= 0.2\n")
    assert [d.code for d in minimal] == ["E511"] and "`carrier -> pos`" in minimal[0].message
