"""Training: a tiny model learns a task within the test suite; resume replays the same run; configs validate."""

from pathlib import Path

import pytest
import torch

from circuitspec.engine.checkpoint import load_checkpoint
from circuitspec.engine.config import config_from_dict, load_config
from circuitspec.engine.errors import UsageError
from circuitspec.engine.evaluate import score_task
from circuitspec.engine.tasks import get_task
from circuitspec.engine.train import learning_rate, make_batch, select_tasks, train
from circuitspec.engine.corpus import load_corpus

ROOT = Path(__file__).resolve().parent.parent


def tiny_config(steps, task="for_in", **train):
    return config_from_dict({
        "name": "tiny",
        "model": {"n_layers": 1, "d_model": 32, "n_heads": 2, "d_head": 16, "d_mlp": 64, "n_ctx": 80},
        "sparsity": {"target_density": 0.3, "anneal_fraction": 0.5},
        "train": {"steps": steps, "batch_size": 16, "seq_len": 64, "lr": 1e-2, "warmup_steps": 20,
                  "eval_every": 10_000, "checkpoint_every": 10_000, "eval_examples": 50, **train},
        "data": {"task_mix": 1.0, "tasks": [task]},
        "corpus": {"max_files": 3},
    })


def test_tiny_sparse_model_learns_a_task(tmp_path):
    """Well under a minute on two CPU cores; the learned model is sparse and accurate.

    (for_in is learnable from local context; a model this small needs far longer for closing_quote,
    whose rule lives in attention.)
    """
    model, manifest = train(tiny_config(300), tmp_path)
    score = score_task(model, get_task("for_in"), n=300)
    assert score.accuracy >= 0.9, score
    for name, w in model.weight_matrices().items():
        assert (w != 0).float().mean() <= 0.3 + 1e-3, name
    assert manifest["corpus"]["sha256"] and manifest["corpus"]["tasks"] == ["for_in"]
    assert manifest["metrics"]["step"] == 300
    reloaded = load_checkpoint(tmp_path)
    assert score_task(reloaded, get_task("for_in"), n=300) == score


def test_resume_continues_the_same_run(tmp_path):
    """A run killed after its step-6 checkpoint and resumed ends where an uninterrupted run ends."""
    cfg = tiny_config(12, checkpoint_every=6)
    straight, _ = train(cfg, tmp_path / "straight")

    def crash_after_checkpoint(state, stats):
        if state.step == 7:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(cfg, tmp_path / "resumed", on_progress=crash_after_checkpoint)
    resumed, manifest = train(cfg, tmp_path / "resumed", resume=True)
    assert manifest["steps"] == 12
    for (name, a), (_, b) in zip(straight.state_dict().items(), resumed.state_dict().items()):
        assert torch.allclose(a, b, atol=1e-6), name


def test_resume_without_state_is_a_usage_error(tmp_path):
    with pytest.raises(UsageError, match="nothing to resume"):
        train(tiny_config(2), tmp_path, resume=True)


def test_batches_are_a_function_of_seed_and_step():
    cfg = tiny_config(10)
    corpus = load_corpus(cfg.corpus)
    tasks = select_tasks(cfg.data.tasks)
    a, b, c = make_batch(cfg, corpus, tasks, 3), make_batch(cfg, corpus, tasks, 3), make_batch(cfg, corpus, tasks, 4)
    assert a.shape == (16, 65) and torch.equal(a, b) and not torch.equal(a, c)


def test_learning_rate_warms_up_then_decays():
    cfg = tiny_config(100)
    lrs = [learning_rate(cfg, s) for s in range(100)]
    assert lrs[0] < lrs[19] == pytest.approx(1e-2)
    assert lrs[-1] < lrs[50] < lrs[20]
    assert min(lrs[20:]) >= 1e-3 - 1e-9


def test_shipped_configs_load():
    for path in sorted((ROOT / "configs").glob("*.toml")):
        cfg = load_config(path)
        assert cfg.train.seq_len <= cfg.model.n_ctx, path


def test_config_errors_name_the_file_and_key(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[model]\nn_layer = 2\n")
    with pytest.raises(UsageError, match=r"bad.toml \[model\]: unknown keys \['n_layer'\]"):
        load_config(bad)
    bad.write_text("[model\n")
    with pytest.raises(UsageError, match="invalid TOML"):
        load_config(bad)
    with pytest.raises(UsageError, match="no such config"):
        load_config(tmp_path / "missing.toml")
    bad.write_text("[sparsity]\ntarget_density = 0\n")
    with pytest.raises(UsageError, match="target_density"):
        load_config(bad)
