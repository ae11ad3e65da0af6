"""The public testing API: Hypothesis strategies over task inputs, and claims checked on single inputs."""

import ast
import shutil
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from circuitspec.testing import SpecLoadError, assert_claim, check_claim, load_spec, task_inputs
from circuitspec.engine.tasks import all_tasks
from circuitspec.verify.examples import sample_examples

SPEC = load_spec("specs/closing_quote.circ")


@settings(max_examples=20, deadline=None)
@given(st.data())
def test_every_task_is_a_strategy(data):
    task = data.draw(st.sampled_from(all_tasks()))
    example = data.draw(task_inputs(task))
    assert example.prefix and example.correct != example.wrong


def test_single_input_checks_agree_with_verify():
    """check_claim on one input gives the same answer as the batched verify run on that input."""
    from circuitspec.verify.runner import RunSettings, run_group
    from circuitspec.verify.judge import judge
    claim = SPEC.claim("closes_single")
    data = run_group(SPEC.resolved, [claim], RunSettings(samples=12))
    result = judge(SPEC.resolved, claim, data, RunSettings(samples=12))
    single = [check_claim(SPEC, "closes_single", ex).holds for ex in data.examples]
    assert sum(single) / len(single) == pytest.approx(result.statistic)


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.filter_too_much, HealthCheck.too_slow])
@given(task_inputs("closing_quote"))
def test_a_true_claim_survives_hypothesis(example):
    assert_claim(SPEC, "closes_single", example)


def test_a_false_claim_is_falsified_and_shrunk(tmp_path):
    shutil.copytree("specs/lib", tmp_path / "lib")
    wrong = tmp_path / "backwards.circ"
    wrong.write_text(Path("specs/closing_quote.circ").read_text()
                     + "claim backwards: logit[\"'\"] > logit['\"'] when opening_quote == '\"'\n")
    spec = load_spec(wrong)

    @settings(max_examples=50, deadline=None, database=None, suppress_health_check=list(HealthCheck), derandomize=True)
    @given(task_inputs("closing_quote"))
    def backwards(example):
        assert_claim(spec, "backwards", example)

    with pytest.raises(AssertionError, match="claim 'backwards' does not hold on") as failure:
        backwards()
    shrunk = str(failure.value).split("does not hold on ")[1].split(": {")[0]
    assert len(ast.literal_eval(shrunk)) <= 12  # a minimal snippet such as 'x = "a' (repr of the prefix)


def test_unknown_claim_and_bad_spec(tmp_path):
    with pytest.raises(KeyError, match="no claim 'nope'"):
        SPEC.claim("nope")
    bad = tmp_path / "bad.circ"
    bad.write_text('spec b "x"\nmodel "py-sparse-small"\ntask closing_quote\nablate zero\nnode n = blocks.0.mlp.hook_post[999]\n')
    with pytest.raises(SpecLoadError, match="E504"):
        load_spec(bad)
    with pytest.raises(ValueError, match="only role, behaviour and agreement"):
        sufficient = next(c.claim.name for c in SPEC.resolved.claims if c.kind == "sufficient")
        check_claim(SPEC, sufficient, sample_examples(SPEC.resolved.task, 1, 0)[0])
