"""The JSON Schemas of the --json outputs: valid draft 2020-12 schemas, shipped, complete, and strict enough
to reject a broken report. Real outputs are validated where the tests that produce them run (test_cli,
test_falsify, test_diff, test_discover, test_prove, test_edge_claims, test_counterfactual, ...)."""

import copy
import json
import math
import tomllib
from pathlib import Path

import jsonschema
import pytest

from circuitspec import schemas
from circuitspec.cli import COMMANDS, build_parser, main
from circuitspec.schemas import FORMAT_VERSION, finite, header, load_schema, schema_id, validate

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("command", schemas.COMMANDS)
def test_every_schema_is_a_valid_2020_12_schema_with_its_id(command):
    schema = load_schema(command)
    jsonschema.Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["$id"] == schema_id(command) == f"urn:circuitspec:schema:{command}:{FORMAT_VERSION}"
    assert schema["title"] == f"circuitspec {command} --json" and schema["description"]


REFINEMENTS = ("allOf", "if", "then", "else", "not")  # conditions that narrow fields described elsewhere


def _unexplained(node, defs, where="#"):
    """Paths of fields (entries of a `properties` map) that have no description of their own or behind their $ref."""
    missing = []
    if isinstance(node, dict):
        for name, field in node.get("properties", {}).items():
            target = defs.get(field.get("$ref", "").removeprefix("#/$defs/"), {})
            if "description" not in field and "description" not in target:
                missing.append(f"{where}/properties/{name}")
        for key, value in node.items():
            if key not in REFINEMENTS:
                missing += _unexplained(value, defs, f"{where}/{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            missing += _unexplained(value, defs, f"{where}/{i}")
    return missing


@pytest.mark.parametrize("command", schemas.COMMANDS)
def test_every_field_is_described(command):
    schema = load_schema(command)
    assert _unexplained(schema, schema.get("$defs", {})) == []


def test_every_command_with_json_output_has_a_schema_and_it_is_package_data():
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    with_json = {name for name, p in sub.choices.items() if any("--json" in a.option_strings for a in p._actions)}
    assert with_json == set(schemas.COMMANDS) - set(schemas.FILE_OUTPUTS)
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert "circuitspec.schemas" in data["packages"] and data["package-data"]["circuitspec.schemas"] == ["*.schema.json"]
    assert {p.name for p in (ROOT / "circuitspec" / "schemas").glob("*.schema.json")} == {f"{c}.schema.json" for c in schemas.COMMANDS}


def test_falsify_results_are_described_alike_in_both_schemas():
    verify, falsify = load_schema("verify")["$defs"], load_schema("falsify")["$defs"]
    assert verify["falsify_result"] == falsify["result"]
    for name in ("found_input", "ablation_choice", "interval", "number_or_null", "feature_values"):
        assert verify[name] == falsify[name], name


def test_schema_command_prints_the_schema_and_its_path(capsys):
    assert "schema" in {c.NAME for c in COMMANDS}
    assert main(["schema", "verify"]) == 0
    assert json.loads(capsys.readouterr().out) == load_schema("verify")
    assert main(["schema", "prove", "--path"]) == 0
    assert json.loads(Path(capsys.readouterr().out.strip()).read_text()) == load_schema("prove")
    with pytest.raises(SystemExit) as usage:
        main(["schema", "fmt"])
    assert usage.value.code == 2


def test_finite_turns_nan_and_infinity_into_null_everywhere():
    data = {"a": math.nan, "b": [1.5, math.inf, {"c": -math.inf}], "d": (2, "x"), "e": None}
    assert finite(data) == {"a": None, "b": [1.5, None, {"c": None}], "d": [2, "x"], "e": None}


# ---- hand-built reports: the schemas accept a good one and reject broken ones ----------------------------

SUFFICIENT = {
    "spec": "oracle", "file": "specs/o.circ", "line": 9, "name": "line 9", "kind": "sufficient",
    "text": "claim sufficient faithfulness >= 0.9", "verdict": "pass", "statistic": 1.0, "ci": [0.98, 1.01],
    "threshold": 0.9, "op": ">=", "ablation": "mean (last_ab)", "metric": "logit_diff", "confidence": 0.95, "n": 100,
    "seed": 0, "inherited": ["ablation", "metric", "confidence", "samples"],
    "spread": {q: 1.0 for q in ("q00", "q10", "q25", "q50", "q75", "q90", "q100")},
    "baseline": {"random_circuits": 50, "planned": 50, "as_good_or_better": 0, "median_faithfulness": 0.0,
                 "beats_quantile": 0.9, "p_value": 0.005, "alpha": 0.05, "rank_p_value": 0.0196},
    "units": None, "counterexample": None, "note": "robust to random partial ablation",
    "partial": {"conditions": 1, "random": 1, "chosen": 0, "robustness": "random", "verdict": "pass", "worst": 1.0,
                "worst_ci": [1.0, 1.0], "keep_fraction": 0.25, "worst_choice": None, "below_threshold": 0,
                "each": [{"keep_fraction": 0.25, "chosen": None, "faithfulness": 1.0, "ci": [1.0, 1.0], "verdict": "pass"}]},
    "when_ablated": None,
}
BEHAVIOUR = {**SUFFICIENT, "line": 10, "name": "says_a", "kind": "behaviour", "text": "claim says_a: logit['a'] > logit['b']",
             "statistic": 1.0, "ci": [0.995, 1.0], "threshold": 0.995, "baseline": None, "partial": None,
             "units": [{"input": "xya", "features": {"last": "a"}, "logit['a']": 1.2, "logit['b']": -1.2, "holds": True}],
             "when_ablated": {"holds": 598, "n": 598, "would_pass": True, "median_margin_circuit": 2.4,
                              "median_margin_ablated": 1.8}}
MANIFEST = {"circuitspec": "0.1.0", "torch": "2.13.0", "numpy": "2.4.6", "python": "3.11.7",
            "settings": {"seed": 0, "samples": 100, "baselines": 50, "bootstrap_resamples": 1000, "reference_samples": 200,
                         "partial_ablations": 8},
            "specs": [{"file": "specs/o.circ", "spec": "oracle", "spec_sha256": "0" * 64, "model": "model", "model_sha256": None,
                       "task": "last_ab", "circuit_nodes": 5, "circuit_edges": 9216}]}
REPORT = {**header("verify"), "manifest": MANIFEST, "claims": [SUFFICIENT, BEHAVIOUR]}


def _broken(change):
    report = copy.deepcopy(REPORT)
    change(report)
    return report


def test_a_good_report_validates():
    validate("verify", REPORT)


@pytest.mark.parametrize("why, change", [
    ("missing required key", lambda r: r["claims"][0].pop("verdict")),
    ("missing manifest field", lambda r: r["manifest"].pop("settings")),
    ("wrong verdict string", lambda r: r["claims"][0].update(verdict="passed")),
    ("unknown kind", lambda r: r["claims"][0].update(kind="sufficiency")),
    ("unknown field", lambda r: r["claims"][0].update(extra=1)),
    ("wrong format version", lambda r: r.update(format_version=2)),
    ("no schema id", lambda r: r.pop("schema")),
    ("interval of one number", lambda r: r["claims"][0].update(ci=[0.9])),
    ("part of a spread", lambda r: r["claims"][0]["spread"].pop("q50")),
    ("baseline on a behaviour claim", lambda r: r["claims"][1].update(baseline=SUFFICIENT["baseline"])),
    ("partial ablations on a behaviour claim", lambda r: r["claims"][1].update(partial=SUFFICIENT["partial"])),
    ("when_ablated on a sufficient claim", lambda r: r["claims"][0].update(when_ablated=BEHAVIOUR["when_ablated"])),
    ("units on a sufficient claim", lambda r: r["claims"][0].update(units=BEHAVIOUR["units"])),
    ("a per-input unit without holds", lambda r: r["claims"][1]["units"][0].pop("holds")),
    ("a compared value that is text", lambda r: r["claims"][1]["units"][0].update({"logit['a']": "1.2"})),
    ("wrong partial verdict", lambda r: r["claims"][0]["partial"]["each"][0].update(verdict="ok")),
    ("a hash that is not one", lambda r: r["manifest"]["specs"][0].update(spec_sha256="abc")),
])
def test_a_broken_report_is_rejected(why, change):
    with pytest.raises(jsonschema.ValidationError):
        validate("verify", _broken(change))


def test_broken_outputs_of_the_other_commands_are_rejected():
    good_check = [{"file": "x.circ", "line": 5, "col": 10, "end": {"line": 5, "col": 35}, "severity": "error",
                   "code": "E503", "message": "no hook point", "hint": None}]
    validate("check", good_check)
    for bad in ({**good_check[0], "severity": "fatal"}, {**good_check[0], "code": "503"},
                {k: v for k, v in good_check[0].items() if k != "end"}):
        with pytest.raises(jsonschema.ValidationError):
            validate("check", [bad])
    falsified = {**header("falsify"), "seed": 0, "max_examples": 40, "results": [
        {"file": "x.circ", "line": 3, "name": "a", "kind": "role", "tried": 12, "verdict": "falsified",
         "counterexample": {"input": "x = 'a", "answer": "'", "features": {"opening_quote": "'"}, "reader": -0.5},
         "note": "", "seconds": 0.2, "random_tried": 0}]}
    validate("falsify", falsified)
    falsified["results"][0]["verdict"] = "fail"  # verify's word, not falsify's
    with pytest.raises(jsonschema.ValidationError):
        validate("falsify", falsified)
    diff = {**header("diff"), "old": "a.circ", "new": "b.circ", "same_model": True,
            "nodes": {"old": 2, "new": 1, "shared": 1, "only_old": 1, "only_new": 0}, "edges": {"old": 3, "new": 1},
            "only_old_nodes": [], "only_new_nodes": [], "claims_added": [], "claims_removed": [], "claims_changed": [],
            "verdicts": []}
    with pytest.raises(jsonschema.ValidationError):  # on the same model the edges are compared one by one
        validate("diff", diff)
    diff["edges"].update(shared=1, only_old=2, only_new=0)
    validate("diff", diff)
    proof = [{"consistency": {"file": "x.circ", "checked_claims": 1, "feature_combinations": 2, "inconsistencies": []},
              "entailment": [{"file": "x.circ", "line": 4, "claim": "claim logit['a'] > 0", "status": "proved", "premises": [],
                              "assumptions": [], "counter_model": {}, "spec_names": {}, "note": "", "seconds": 1.0,
                              "z3_seconds": 0.1, "z3_checks": 2, "case_splits": 0, "counterexample": None, "inputs_tried": 300}],
              "domain": [{"file": "x.circ", "line": 4, "claim": "claim logit['a'] > 0", "status": "refuted", "domain": {
                  "name": "d", "description": "", "pattern": "a[bc]", "size": 2, "features": {}, "parts": ["a", {"alphabet": "bc", "least": 1, "most": 1}]},
                  "seconds": 0.5, "boxes_bounded": 3, "proved_inputs": 1, "least_bound": 0.2, "note": "",
                  "counterexample": {"input": "ab", "tokens": [97, 98], "margin_bounds": [-1.0, -0.9], "engine_margin": -0.95},
                  "certificate": None}]}]
    validate("prove", proof)
    refuted = json.loads(json.dumps(proof))
    refuted[0]["domain"][0]["counterexample"] = None  # a domain refutation carries its input too
    with pytest.raises(jsonschema.ValidationError):
        validate("prove", refuted)
    proof[0]["entailment"][0]["status"] = "refuted"  # a refutation carries its input
    with pytest.raises(jsonschema.ValidationError):
        validate("prove", proof)
