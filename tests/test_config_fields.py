"""Training-config fields are type-checked like a checkpoint's: a bool is not an integer, a string is not
a number, and the error names the table and the key (exit 2, a usage error)."""

import pytest

from circuitspec.engine.config import config_from_dict
from circuitspec.engine.errors import UsageError


@pytest.mark.parametrize("table, key, value, message", [
    ("model", "n_heads", True, "[model]: n_heads must be an integer, got True"),
    ("model", "act_topk", 2.5, "[model]: act_topk must be an integer or null, got 2.5"),
    ("model", "attn_sink", 1, "[model]: attn_sink must be true or false, got 1"),
    ("train", "lr", "3e-3", "[train]: lr must be a number, got '3e-3'"),
    ("train", "grad_clip_rms", float("nan"), "[train]: grad_clip_rms must be a number or null, got nan"),
    ("train", "steps", 10.0, "[train]: steps must be an integer, got 10.0"),
    ("data", "tasks", ["for_in", 3], "[data]: tasks must be a list of strings, got a tuple"),
    ("corpus", "root", ["a"], "[corpus]: root must be a string or null, got a tuple"),
    ("sparsity", "target_density", False, "[sparsity]: target_density must be a number, got False"),
    ("sparsity", "embed_density", "0.02", "[sparsity]: embed_density must be a number or null, got '0.02'"),
    ("sparsity", "embed_density", 0, "[sparsity]: embed_density must be in (0, 1], got 0"),
])
def test_a_field_of_the_wrong_type_is_a_usage_error(table, key, value, message):
    with pytest.raises(UsageError) as info:
        config_from_dict({table: {key: value}})
    assert message in info.value.message and info.value.exit_code == 2


def test_numbers_may_be_written_as_integers():
    cfg = config_from_dict({"train": {"lr": 1, "grad_clip_rms": 2}, "sparsity": {"target_density": 1}})
    assert cfg.train.lr == 1 and cfg.sparsity.target_density == 1
