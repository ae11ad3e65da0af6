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
    """The shipped models' configs and the benchmarks' (which GPU scripts train without a CPU run first)."""
    paths = sorted((ROOT / "configs").glob("*.toml")) + sorted((ROOT / "benchmarks" / "configs").glob("*.toml"))
    assert len(paths) > 5
    for path in paths:
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


class Killed(BaseException):
    """A simulated kill: not an Exception, so nothing on the way up handles it."""


SAVE_OPERATIONS = ("make_dir", "write_bytes", "rename", "discard")  # every file-system change of a save


def kill_inside_save(monkeypatch, step, k, torn=False):
    """Make the k-th file-system operation of the checkpoint save at ``step`` raise Killed (k = 0: count only).
    ``torn``: a write first leaves half its bytes at the target, as a non-atomic write killed mid-way would."""
    import circuitspec.engine.train as train_module
    import circuitspec.engine.train_state as train_state

    calls = {"n": 0, "armed": False}
    save = train_module.save_train_state

    def armed_save(out, model, optimizer, state):
        calls["armed"] = state.step == step
        try:
            return save(out, model, optimizer, state)
        finally:
            calls["armed"] = False

    def failing(name, real):
        def operation(*args):
            if calls["armed"]:
                calls["n"] += 1
                if calls["n"] == k:
                    if torn and name == "write_bytes":
                        Path(args[0]).write_bytes(args[1][: len(args[1]) // 2])
                    raise Killed(name)
            return real(*args)
        return operation

    monkeypatch.setattr(train_module, "save_train_state", armed_save)
    for name in SAVE_OPERATIONS:
        monkeypatch.setattr(train_state, name, failing(name, getattr(train_state, name)))
    return calls


def cheap_runs(monkeypatch):
    """Many short runs: the corpus listed once, no pretraining means (neither is part of the resumable state)."""
    import functools

    import circuitspec.engine.train as train_module

    monkeypatch.setattr(train_module, "load_corpus", functools.cache(train_module.load_corpus))
    monkeypatch.setattr(train_module, "write_corpus_means", lambda *a, **k: None)


def test_a_kill_at_every_point_of_a_checkpoint_save_resumes_to_the_same_model(tmp_path, monkeypatch):
    """Checkpoints at steps 4, 8 and 12; the save at 12 (which also removes the one of step 4) is killed at
    each of its file-system operations in turn, writes also torn half-way. Every resume starts from an
    intact checkpoint (8 before the new one is published, 12 after), says which, and ends bit-identical
    to an uninterrupted run."""
    cheap_runs(monkeypatch)
    cfg = tiny_config(12, checkpoint_every=4)
    with monkeypatch.context() as m:
        calls = kill_inside_save(m, 12, 0)
        straight, _ = train(cfg, tmp_path / "straight")
    operations = calls["n"]
    assert operations == 7  # make_dir, 3 writes, publish, remove step 4 (rename, delete)
    resumed_from = set()
    for k in range(1, operations + 1):
        for torn in (False, True) if 2 <= k <= 4 else (False,):
            out = tmp_path / f"kill-{k}-{torn}"
            with monkeypatch.context() as m:
                kill_inside_save(m, 12, k, torn)
                with pytest.raises(Killed):
                    train(cfg, out)
            messages = []
            resumed, manifest = train(cfg, out, resume=True, on_message=messages.append)
            step = int(messages[0].split("resumed from step ")[1].split()[0])
            resumed_from.add(step)
            assert step == (12 if k >= 6 else 8), (k, messages)  # the 5th operation publishes
            assert manifest["steps"] == 12
            for (name, a), (_, b) in zip(straight.state_dict().items(), resumed.state_dict().items()):
                assert torch.allclose(a, b, atol=1e-6), (k, torn, name)  # as test_resume_continues_the_same_run: two threads reduce in varying order
    assert resumed_from == {8, 12}


def test_a_kill_during_the_first_save_restarts_from_step_0_and_says_so(tmp_path, monkeypatch):
    cheap_runs(monkeypatch)
    cfg = tiny_config(4, checkpoint_every=2)
    straight, _ = train(cfg, tmp_path / "straight")
    with monkeypatch.context() as m:
        kill_inside_save(m, 2, 3, torn=True)
        with pytest.raises(Killed):
            train(cfg, tmp_path / "run")
    messages = []
    resumed, _ = train(cfg, tmp_path / "run", resume=True, on_message=messages.append)
    assert "no complete checkpoint" in messages[0] and "step 0" in messages[0]
    for (name, a), (_, b) in zip(straight.state_dict().items(), resumed.state_dict().items()):
        assert torch.allclose(a, b, atol=1e-6), name  # two threads reduce in varying order


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """A 12-step run with checkpoints at 4, 8 and 12: train_state keeps the two newest, 8 and 12."""
    out = tmp_path_factory.mktemp("run")
    with pytest.MonkeyPatch.context() as m:
        cheap_runs(m)
        train(tiny_config(12, checkpoint_every=4), out)
    assert sorted(p.name for p in (out / "train_state").iterdir()) == ["step-00000008", "step-00000012"]
    return out


def fresh_run_copy(finished_run, tmp_path):
    import shutil

    from circuitspec.engine.model import Transformer
    from circuitspec.engine.train import make_optimizer

    out = tmp_path / "run"
    shutil.copytree(finished_run, out)
    cfg = tiny_config(12, checkpoint_every=4)
    model = Transformer(cfg.model)
    return out, model, make_optimizer(model, cfg)


def flip_a_byte(path):
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x40
    path.write_bytes(bytes(data))


DAMAGE = {
    "a flipped byte in the tensors": (lambda d: flip_a_byte(d / "state.safetensors"), "does not match its SHA-256"),
    "a truncated state.json": (lambda d: (d / "state.json").write_bytes((d / "state.json").read_bytes()[:40]), "state.json does not match"),
    "an empty state.json": (lambda d: (d / "state.json").write_bytes(b""), "state.json does not match"),
    "no manifest": (lambda d: (d / "manifest.json").unlink(), "no manifest.json"),
    "a torn manifest": (lambda d: (d / "manifest.json").write_text('{"format": "circuitspec-train'), "manifest.json cannot be read"),
    "a manifest of another step": (lambda d: (d / "manifest.json").write_text(
        (d / "manifest.json").read_text().replace('"step": 12', '"step": 7')), "does not describe a checkpoint of step 12"),
    "a missing tensors file": (lambda d: (d / "state.safetensors").unlink(), "state.safetensors cannot be read"),
}


@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_resume_skips_a_damaged_newest_checkpoint_and_says_so(finished_run, tmp_path, damage):
    from circuitspec.engine.train_state import load_train_state

    out, model, optimizer = fresh_run_copy(finished_run, tmp_path)
    harm, reason = DAMAGE[damage]
    harm(out / "train_state" / "step-00000012")
    state, message = load_train_state(out, model, optimizer)
    assert state.step == 8
    assert message.startswith("resumed from step 8") and "skipped the newer step-00000012" in message and reason in message


def test_resume_refuses_when_every_checkpoint_is_damaged(finished_run, tmp_path):
    from circuitspec.engine.train_state import load_train_state

    out, model, optimizer = fresh_run_copy(finished_run, tmp_path)
    for step in ("step-00000008", "step-00000012"):
        flip_a_byte(out / "train_state" / step / "state.safetensors")
    with pytest.raises(UsageError, match="no intact checkpoint to resume from: step-00000012 .*; step-00000008"):
        load_train_state(out, model, optimizer)


def test_an_intact_checkpoint_of_another_config_is_an_error_not_a_fallback(finished_run, tmp_path):
    from circuitspec.engine.model import Transformer
    from circuitspec.engine.train import make_optimizer
    from circuitspec.engine.train_state import load_train_state

    out, _, _ = fresh_run_copy(finished_run, tmp_path)
    cfg = config_from_dict({"model": {"n_layers": 1, "d_model": 16, "n_heads": 2, "d_head": 8, "d_mlp": 32, "n_ctx": 80}})
    model = Transformer(cfg.model)
    with pytest.raises(UsageError, match="step-00000012: does not fit this config's model"):
        load_train_state(out, model, make_optimizer(model, cfg))


def test_leftovers_of_a_killed_save_are_ignored_then_cleared(finished_run, tmp_path):
    from circuitspec.engine.train_state import TrainState, load_train_state, save_train_state

    out, model, optimizer = fresh_run_copy(finished_run, tmp_path)
    staging = out / "train_state" / ".staging-step-00000016-1"
    staging.mkdir()
    (staging / "state.json").write_text("{")
    state, _ = load_train_state(out, model, optimizer)
    assert state.step == 12
    save_train_state(out, model, optimizer, TrainState(step=16))
    assert sorted(p.name for p in (out / "train_state").iterdir()) == ["step-00000012", "step-00000016"]


def test_a_train_state_without_manifest_is_not_resumed_blindly(tmp_path):
    """The layout of older versions (state.json beside state.safetensors) cannot be verified: resuming it
    could continue silently from a mix of two steps."""
    from circuitspec.engine.model import Transformer
    from circuitspec.engine.train import make_optimizer
    from circuitspec.engine.train_state import load_train_state

    (tmp_path / "train_state").mkdir()
    (tmp_path / "train_state" / "state.json").write_text('{"step": 6}')
    cfg = tiny_config(12)
    model = Transformer(cfg.model)
    with pytest.raises(UsageError, match="without a manifest"):
        load_train_state(tmp_path, model, make_optimizer(model, cfg))
