"""Resolution against the shipped model: expansion of references, edges, claims, and the compiled mask."""

import pytest

from circuitspec.engine.naming import NodeName
from circuitspec.lang import parse_spec
from circuitspec.lang.resolve import resolve

HEADER = 'spec t "test"\nmodel "py-sparse-small"\ntask closing_quote\nablate mean over task\n'


def resolved(body: str):
    parsed = parse_spec(HEADER + body, "t.circ")
    assert parsed.ok, parsed.render()
    result, diagnostics = resolve(parsed.spec, "t.circ")
    assert not diagnostics, [d.message for d in diagnostics]
    return result


def codes(body: str) -> list[str]:
    parsed = parse_spec(HEADER + body, "t.circ")
    assert parsed.ok, parsed.render()
    result, diagnostics = resolve(parsed.spec, "t.circ")
    assert result is None
    return [d.code for d in diagnostics]


def test_ranges_heads_and_aliases_expand_to_graph_nodes():
    r = resolved("group g = blocks.1.attn.hook_v[head=0:2, 3:5]\nnode n = blocks.0.hook_resid_post[7]\n")
    assert r.definitions["g"] == tuple(NodeName("blocks.1.attn.hook_v", c, h) for h in (0, 1) for c in (3, 4))
    assert r.definitions["n"] == (NodeName("blocks.1.hook_resid_pre", 7),)  # resid_post of block 0 is resid_pre of 1
    assert r.mask.node_count() == 5 and r.mask.contains(NodeName("blocks.1.hook_resid_pre", 7))


def test_star_selects_every_channel():
    r = resolved("group all_z = blocks.1.attn.hook_z[head=*, *]\n")
    assert len(r.definitions["all_z"]) == 4 * 32


def test_edges_through_the_residual_stream_bring_their_channels():
    r = resolved("node reader = blocks.1.attn.hook_z[head=1, 19]\nedge reader -> logits\n")
    edge = r.edges[0]
    assert edge.weights and all(p in ("blocks.1.attn.W_O", "unembed.W_U") for p, _ in edge.weights)
    assert edge.through and all("resid" in n.hook for n in edge.through)
    assert set(edge.through) <= set(r.nodes)
    assert r.mask.node_count() == 1 + len(edge.through)
    assert set(r.added) == set(edge.through)  # what `check` reports as added, apart from what was declared


def test_check_says_how_many_nodes_were_declared_and_how_many_edges_added(tmp_path, capsys):
    from circuitspec.cli import main

    spec = tmp_path / "e.circ"
    spec.write_text(HEADER + "node reader = blocks.1.attn.hook_z[head=1, 19]\nedge reader -> logits\n")
    assert main(["check", str(spec)]) == 0
    added = len(resolved("node reader = blocks.1.attn.hook_z[head=1, 19]\nedge reader -> logits\n").added)
    assert f"({1} declared, {added} residual channels added on the paths of declared edges)" in capsys.readouterr().out


def test_attention_edges_are_structural():
    r = resolved("group q = blocks.1.attn.hook_q[head=1, *]\nnode z = blocks.1.attn.hook_z[head=1, 0]\nedge q -> z\n")
    assert r.edges[0].weights == () and r.edges[0].through == ()


def test_the_compiled_mask_ablates_nodes_and_keeps_every_weight():
    r = resolved("node reader = blocks.1.attn.hook_z[head=1, 19]\nedge reader -> logits\n")
    assert all(bool(keep.all()) for keep in r.mask.edges.values())


def test_claims_inherit_visibly():
    r = resolved("node reader = blocks.1.attn.hook_z[head=1, 19]\n"
                 "claim a: reader > 0 when opening_quote == '\"' at position opening_quote\n"
                 "claim logit['\"'] > logit[\"'\"] ablate zero metric accuracy\n")
    role, behaviour = r.claims
    assert role.kind == "role" and role.subject == (NodeName("blocks.1.attn.hook_z", 19, 1),)
    assert role.position == "opening_quote" and "ablation" in role.inherited and role.ablation_task == "closing_quote"
    assert behaviour.logits == (34, 39) and behaviour.ablation.kind == "zero" and behaviour.metric == "accuracy"
    assert "ablation" not in behaviour.inherited and behaviour.ablation_task is None


def test_include_patterns():
    r = resolved('include nodes matching "blocks.1.attn.hook_z[head=1, 1?]"\n')
    assert len(r.nodes) == 10
    r = resolved('include edges matching "blocks.1.attn.hook_z[head=1, 19]" -> "blocks.1.hook_resid_mid[*]"\n')
    assert NodeName("blocks.1.attn.hook_z", 19, 1) in r.nodes and len(r.nodes) > 1


@pytest.mark.parametrize("body, expected", [
    ("node a = blocks.0.mlp.hook_post[512]\n", ["E504"]),
    ("node a = blocks.2.mlp.hook_post[0]\n", ["E503"]),
    ("node a = blocks.0.attn.hook_q[0]\n", ["E505"]),
    ("node a = blocks.1.attn.hook_pattern[head=0]\n", ["E510"]),
    ("node a = blocks.1.attn.hook_z[head=1, 19]\nnode b = blocks.0.mlp.hook_post[1]\nedge a -> b\n", ["E506"]),
    ('include nodes matching "nothing*"\n', ["E303"]),
    ("node a = blocks.1.attn.hook_z[head=1, 19]\nclaim a > 0 when depth == 1\n", ["E507"]),
])
def test_resolution_errors(body, expected):
    assert codes(body) == expected


def test_every_spec_in_specs_resolves():
    from pathlib import Path
    from circuitspec.commands.check_cmd import check_file
    specs = sorted((Path(__file__).parent.parent / "specs").glob("*.circ"))
    assert len(specs) >= 3
    for path in specs:
        r, diagnostics, _ = check_file(path)
        assert r is not None and not diagnostics, path
        assert r.claims and r.mask.node_count() > 0


# ---- per-input claims: how much they cover, and where they are read ------------------------------

COVERAGE_HEADER = ('spec c "x"\nmodel "py-sparse-small"\ntask closing_quote\nablate mean over task\n'
                   "node reader = blocks.1.attn.hook_z[head=1, 19]\n")


def _resolve_text(text):
    from circuitspec.lang import parse_spec
    from circuitspec.lang.resolve import resolve

    parsed = parse_spec(text, "c.circ")
    assert parsed.ok, parsed.render()
    return resolve(parsed.spec, "c.circ")


def test_coverage_and_full_model_clauses_reach_the_resolved_claim_and_format_back():
    from circuitspec.lang import parse_spec
    from circuitspec.lang.fmt import format_spec

    text = (COVERAGE_HEADER + "claim a: reader > 0 when opening_quote == '\"' on at least 0.99 of inputs\n"
            "claim b: reader > 0 on every input in full model\nclaim c: logit['\"'] > logit[\"'\"]\n")
    resolved, diagnostics = _resolve_text(text)
    assert not diagnostics
    a, b, c = resolved.claims
    assert (a.coverage, a.in_model) == (0.99, False)
    assert (b.coverage, b.in_model, b.claim.every_input) == (None, True, True)
    assert (c.coverage, c.in_model, c.claim.every_input) == (None, False, False)
    formatted = format_spec(parse_spec(text, "c.circ").spec)
    assert "on at least 0.99 of inputs" in formatted and "on every input in full model" in formatted
    assert parse_spec(formatted, "c.circ").spec == parse_spec(text, "c.circ").spec


@pytest.mark.parametrize("claim, code", [
    ("claim sufficient faithfulness >= 0.5 on every input", "E206"),
    ("claim sufficient faithfulness >= 0.5 in full model", "E206"),
    ("claim reader > 0 on at least 1 of inputs", "E208"),
    ("claim reader > 0 on at least 0 of inputs", "E208"),
    ("claim reader > 0 on every input on at least 0.9 of inputs", "E107"),
])
def test_coverage_clauses_are_checked(claim, code):
    from circuitspec.lang import parse_spec

    parsed = parse_spec(COVERAGE_HEADER + claim + "\n", "c.circ")
    assert code in [d.code for d in parsed.diagnostics], parsed.render()


def test_a_role_claim_about_a_node_outside_the_circuit_is_flagged_unless_read_in_the_full_model():
    outside = "blocks.0.mlp.hook_post[40]"
    resolved, diagnostics = _resolve_text(COVERAGE_HEADER + f"claim probe: {outside} > 0\n")
    assert resolved is not None and [d.code for d in diagnostics] == ["W514"]
    warning = diagnostics[0]
    assert warning.severity == "warning" and outside in warning.message and "in full model" in warning.hint
    assert (warning.line, warning.col) == (6, 14)
    resolved, diagnostics = _resolve_text(COVERAGE_HEADER + f"claim probe: {outside} > 0 in full model\n")
    assert resolved is not None and not diagnostics
    resolved, diagnostics = _resolve_text(COVERAGE_HEADER + "claim inside: reader > 0\n")
    assert not diagnostics
