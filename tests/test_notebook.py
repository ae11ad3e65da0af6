"""The notebook API: a spec from a file or from text (with includes), verified, falsified and drawn,
each result a table in Jupyter (``_repr_html_``) and plain text elsewhere."""

import pytest

import circuitspec
from circuitspec.engine.checkpoint import save_checkpoint
from circuitspec.engine.tasks import register_task, unregister_task
from circuitspec.testing import SpecLoadError
from test_verify_oracle import CIRCUIT, HEADER, TASK, hand_set_model

CLAIMS = "claim sufficient faithfulness >= 0.9\nclaim says_a: logit['a'] > logit['b'] when last == \"a\"\n"


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    register_task(TASK, replace=True)
    root = tmp_path_factory.mktemp("notebook")
    save_checkpoint(hand_set_model(), root / "model", {"description": "hand-set oracle"})
    (root / "lib").mkdir()
    (root / "lib" / "circuit.circ").write_text(CIRCUIT)
    yield root
    unregister_task(TASK.name)


def test_a_spec_from_a_file_verifies_and_shows_its_verdicts(folder):
    path = folder / "oracle.circ"
    path.write_text(HEADER.format(name="oracle", ablation="mean over task") + CIRCUIT + CLAIMS)
    spec = circuitspec.load_spec(path)
    assert spec.name == "oracle" and "5 nodes" in spec._repr_html_()
    verdicts = spec.verify(samples=40, baselines=40)
    assert [r.verdict for r in verdicts] == ["pass", "pass"] and verdicts.ok
    assert "<table>" in verdicts._repr_html_() and "says_a" in repr(verdicts)
    assert verdicts.to_json()[1]["name"] == "says_a"
    assert circuitspec.load_spec(str(path)).name == "oracle"  # a string naming a file is the file


def test_a_spec_written_as_text_reads_its_includes_from_base(folder):
    text = HEADER.format(name="text", ablation="mean over task") + 'include "lib/circuit.circ"\n' + CLAIMS
    spec = circuitspec.load_spec(text, base=folder)
    assert len(spec.resolved.nodes) == 5
    with pytest.raises(SpecLoadError, match="E401"):  # elsewhere the include is not found: a diagnostic, not a crash
        circuitspec.load_spec(text, base=folder / "lib")


def test_errors_are_diagnostics_not_tracebacks(folder):
    with pytest.raises(SpecLoadError, match=r"<spec>.circ:5:\d+: error\[E504\]"):
        circuitspec.load_spec(HEADER.format(name="bad", ablation="zero") + "node n = blocks.0.mlp.hook_post[99]\n",
                              base=folder)


def test_falsify_and_the_picture(folder):
    text = HEADER.format(name="drawn", ablation="mean over task") + CIRCUIT + CLAIMS
    spec = circuitspec.load_spec(text, base=folder)
    found = spec.falsify(max_examples=20, samples=40)
    assert {r.name: r.verdict for r in found} == {"says_a": "survived", "line 10": "survived"} and found.ok
    assert "survived" in found._repr_html_()
    picture = spec.picture(samples=20)
    assert picture._repr_svg_().startswith("<svg") and "hook_post" in picture.svg
    picture.save(folder / "drawn.svg")
    assert (folder / "drawn.svg").read_text().startswith("<svg")


def test_a_knockout_scan_is_a_table_of_units_lowest_first(folder):
    knockouts = circuitspec.scan("last_ab", model=folder / "model", layer="blocks.0.mlp.hook_post", samples=40, random=3)
    assert isinstance(knockouts, circuitspec.Knockouts) and len(knockouts) == 8
    assert {u.name for u in knockouts[:2]} == {"b0_post_0", "b0_post_1"}  # the planted neurons
    assert knockouts[7].faithfulness == pytest.approx(1.0, abs=1e-4)
    assert knockouts.result.random[1] and knockouts.result.model == str(folder / "model")
    html = knockouts._repr_html_()
    assert html.startswith("<table>") and "b0_post_0" in html and "blocks.0.mlp.hook_post[0]" in html
    assert repr(knockouts).splitlines()[0].startswith("unit | nodes | F without it")
    with pytest.raises(circuitspec.engine.errors.UsageError, match="has no heads"):
        circuitspec.scan("last_ab", model=folder / "model", layer="blocks.0.mlp.hook_post[head=0]")
