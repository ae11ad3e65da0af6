"""Pretraining means (`ablate mean over corpus`): stored with the checkpoint, validated when read, equal to
Reference.compute on the same windows, and used by resolve, verify, prove and discover.

The hand-set oracle of test_verify_oracle shows why they exist: give it a channel that is constant on
the task but not on code in general and make the circuit depend on it; the circuit without that
channel is sufficient under task means (the constant stays) and not under pretraining means.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from circuitspec.cli import main
from circuitspec.engine.ablation import Ablation, Reference
from circuitspec.engine.checkpoint import load_checkpoint, save_checkpoint
from circuitspec.engine.corpus import Corpus, CorpusConfig, load_corpus
from circuitspec.engine.corpus_means import (MEANS_FILE, VALIDATION_STREAM, CorpusMeans, compute_corpus_means,
                                             corpus_reference, corpus_windows, load_corpus_means, means_command,
                                             save_corpus_means, write_corpus_means)
from circuitspec.engine.discover import discover, reference_for
from circuitspec.engine.errors import ModelError, UsageError
from circuitspec.engine.model import Transformer
from circuitspec.engine.tokenizer import token_id
from circuitspec.engine.train import corpus_rows
from circuitspec.engine.zoo import load_model, shipped_names
from circuitspec.lang import parse_spec
from circuitspec.lang.resolve import CORPUS_DISTRIBUTION, resolve
from circuitspec.verify.runner import RunSettings, make_reference
from test_verify_oracle import CIRCUIT, TASK, hand_set_model

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = ROOT / "circuitspec" / "checkpoints"
BENCHMARKS = sorted(p for p in (ROOT / "benchmarks" / "checkpoints").iterdir() if (p / "config.json").is_file())


@pytest.fixture(scope="module")
def small_corpus() -> Corpus:
    """A few standard-library files: enough windows, quick to read."""
    return load_corpus(CorpusConfig(max_files=40))


@pytest.fixture()
def sparse_copy(tmp_path) -> Path:
    """A copy of py-sparse-small (with its stored means) that tests may damage."""
    copy = tmp_path / "py-sparse-small"
    shutil.copytree(SHIPPED / "py-sparse-small", copy)
    return copy


# ---- computing: the same numbers as the engine's own mean reference ----------------------------------


def test_windows_are_drawn_as_training_draws_validation_windows(small_corpus):
    windows = corpus_windows(small_corpus, 24, 32, seed=5)
    data = small_corpus.validation if small_corpus.validation.size > 33 else small_corpus.train
    rng = np.random.default_rng([5, VALIDATION_STREAM])  # train.validation_loss's generator
    assert torch.equal(windows, torch.from_numpy(corpus_rows(data, 24, 33, rng)[:, :32]))


def test_stored_means_equal_reference_compute_on_the_same_windows(small_corpus, sparse_copy):
    model = load_checkpoint(sparse_copy)
    means = compute_corpus_means(model, small_corpus, windows=12, width=96, seed=3, batch_size=5,
                                 weights_sha256=model.weights_sha256)
    tokens = corpus_windows(small_corpus, 12, 96, 3)
    lengths = torch.full((12,), 96)
    engine = Reference.compute(model, Ablation("mean"), tokens[:1], lengths[:1], tokens, lengths)
    assert set(means.values) == set(engine.values)  # every hook a masked pass may read, and the one-hot inputs
    for key, value in engine.values.items():
        assert means.values[key].shape == value.shape, key
        assert torch.allclose(means.values[key], value, atol=1e-5, rtol=1e-5), key
    # ... and the file round-trips exactly, into the reference `mean over corpus` uses
    save_corpus_means(sparse_copy, means)
    stored = corpus_reference(model)
    assert stored.ablation == Ablation("mean", source="corpus")
    assert all(torch.equal(stored.values[k], means.values[k]) for k in means.values)
    info = load_corpus_means(sparse_copy).info
    assert info["windows"] == 12 and info["width"] == 96 and info["seed"] == 3
    assert info["corpus"]["sha256"] == small_corpus.sha256 and info["python"]
    assert info["half_vs_half"]["windows_each"] == [6, 6] and info["half_vs_half"]["median_abs_diff_over_std"] >= 0


@pytest.mark.parametrize("ckpt", [SHIPPED / name for name in shipped_names()] + BENCHMARKS, ids=lambda p: p.name)
def test_every_shipped_checkpoint_has_valid_means(ckpt):
    model = load_checkpoint(ckpt)
    reference = corpus_reference(model)  # present, for these weights, every hook with its shape
    info = load_corpus_means(ckpt).info
    assert info["windows"] >= 1024 and info["width"] == 128 and info["half_vs_half"]["max_abs_diff_over_std"] < 0.5
    tokens = reference.value("<tokens>")
    assert tokens.sum().item() == pytest.approx(1.0, abs=1e-4) and tokens[token_id(" ")] > 0.05  # byte frequencies of code


def test_train_writes_means_for_the_new_checkpoint(tmp_path):
    from test_train import tiny_config
    from circuitspec.engine.train import train
    train(tiny_config(2), tmp_path)
    model = load_checkpoint(tmp_path)
    assert (tmp_path / MEANS_FILE).is_file() and corpus_reference(model).ablation.source == "corpus"
    info = load_corpus_means(tmp_path).info
    assert info["corpus"]["is_training_corpus"] is True and info["width"] == 64  # the run's own corpus and seq_len


# ---- validation: every way the file can be wrong is a clear ModelError -------------------------------


def test_missing_means_say_how_to_make_them(sparse_copy):
    (sparse_copy / MEANS_FILE).unlink()
    with pytest.raises(ModelError, match="no stored pretraining means") as e:
        corpus_reference(load_checkpoint(sparse_copy))
    assert f"circuitspec means {sparse_copy}" in e.value.hint
    assert means_command(SHIPPED / "py-sparse-small") == "circuitspec means py-sparse-small"  # shipped: by name


def test_means_of_other_weights_are_stale(sparse_copy):
    shutil.copy(SHIPPED / "py-dense-small" / MEANS_FILE, sparse_copy / MEANS_FILE)  # same shapes, other weights
    with pytest.raises(ModelError, match="computed for other weights") as e:
        corpus_reference(load_checkpoint(sparse_copy))
    assert "regenerate them with `circuitspec means" in e.value.hint


def test_a_missing_hook_or_a_wrong_shape_is_reported(sparse_copy):
    model = load_checkpoint(sparse_copy)
    good = load_corpus_means(sparse_copy)
    values = dict(good.values)
    del values["blocks.1.mlp.hook_post"]
    save_corpus_means(sparse_copy, CorpusMeans(values, good.weights_sha256, good.info))
    with pytest.raises(ModelError, match=r"no mean for 1 hook\(s\): blocks.1.mlp.hook_post") as e:
        corpus_reference(model)
    assert "circuitspec means" in e.value.hint
    values["blocks.1.mlp.hook_post"] = torch.zeros(511)
    save_corpus_means(sparse_copy, CorpusMeans(values, good.weights_sha256, good.info))
    with pytest.raises(ModelError, match=r"blocks.1.mlp.hook_post has shape \(511,\), the model's is \(512,\)"):
        corpus_reference(model)


def test_a_corrupt_file_or_a_model_without_a_checkpoint(sparse_copy):
    (sparse_copy / MEANS_FILE).write_bytes(b"not safetensors")
    with pytest.raises(ModelError, match="cannot be read as safetensors"):
        corpus_reference(load_checkpoint(sparse_copy))
    with pytest.raises(ModelError, match="not loaded from a checkpoint"):
        corpus_reference(Transformer(load_model("py-sparse-small").cfg))
    with pytest.raises(ModelError, match="not loaded from this checkpoint"):  # a model and someone else's folder
        corpus_reference(load_model("py-dense-small"), SHIPPED / "py-sparse-small")


def test_the_means_command_writes_and_checks(sparse_copy, capsys):
    (sparse_copy / MEANS_FILE).unlink()
    assert main(["means", str(sparse_copy), "--check"]) == 3
    assert "circuitspec means" in capsys.readouterr().err
    assert main(["means", str(sparse_copy), "--windows", "8"]) == 0
    assert "8 windows x 128 bytes" in capsys.readouterr().out.replace("\n", " ")
    assert main(["means", str(sparse_copy), "--check"]) == 0
    with pytest.raises(SystemExit) as exit_:  # checked when the command line is read
        main(["means", str(sparse_copy), "--windows", "1"])
    assert exit_.value.code == 2


# ---- the language and the verifier ---------------------------------------------------------------------

HEADER = 'spec t "test"\nmodel "{model}"\ntask closing_quote\nablate mean over corpus\n'


def resolved_spec(body: str, model: str = "py-sparse-small", file: str = "t.circ"):
    parsed = parse_spec(HEADER.format(model=model) + body, file)
    assert parsed.ok, parsed.render()
    return resolve(parsed.spec, file)


def test_resolve_binds_corpus_means_and_reports_missing_ones_once(sparse_copy):
    resolved, diagnostics = resolved_spec("node r = blocks.1.attn.hook_z[head=1, 19]\nclaim sufficient faithfulness >= 0.1\n"
                                          "claim t: sufficient faithfulness >= 0.1 ablate mean over task\n")
    assert not diagnostics
    corpus, task = resolved.claims
    assert corpus.ablation == Ablation("mean", source="corpus") and corpus.ablation_task == CORPUS_DISTRIBUTION
    assert task.ablation == Ablation("mean") and task.ablation_task == "closing_quote"
    (sparse_copy / MEANS_FILE).unlink()
    _, diagnostics = resolved_spec("claim sufficient faithfulness >= 0.1\nclaim necessary faithfulness <= 0.9\n",
                                   str(sparse_copy), str(sparse_copy.parent / "t.circ"))
    assert [d.code for d in diagnostics] == ["E513"] and diagnostics[0].line == 4
    assert "circuitspec means" in diagnostics[0].hint


def test_the_reference_of_a_corpus_claim_is_the_stored_means_whatever_the_seed():
    resolved, _ = resolved_spec("node r = blocks.1.attn.hook_z[head=1, 19]\nclaim sufficient faithfulness >= 0.1\n")
    claim = resolved.claims[0]
    stored = corpus_reference(resolved.context.model)
    from circuitspec.engine.batch import encode_examples
    batch = encode_examples(resolved.task.sample(4, "x"), resolved.context.cfg.n_ctx)
    for seed in (0, 7):
        ref = make_reference(resolved, claim.ablation, claim.ablation_task, batch, RunSettings(seed=seed))
        assert all(torch.equal(ref.values[k], stored.values[k]) for k in stored.values)
    task_ref = make_reference(resolved, Ablation("mean"), "closing_quote", batch, RunSettings())
    assert not torch.allclose(task_ref.value("<tokens>"), stored.value("<tokens>"))  # task text is not the corpus


def test_a_spec_with_corpus_means_verifies_end_to_end(tmp_path):
    """The shipped closing-quote circuit under pretraining means, on py-sparse-small: its sufficiency is
    lower than under task means (0.70 against 1.0 on 200 inputs), but well above 0.4. Its per-input claims
    are judged under the corpus means too (not asserted to pass: with seed 0, `closes_single` breaks on 1 of
    the 598 inputs an "every input" claim draws, `key['yes id yes`)."""
    shutil.copytree(ROOT / "specs" / "lib", tmp_path / "lib")
    text = (ROOT / "specs" / "closing_quote.circ").read_text()
    text, replaced = re.subn(r"claim sufficient faithfulness >= [0-9.]+", "claim sufficient faithfulness >= 0.4\nclaim t: "
                             "sufficient faithfulness >= 0.4 ablate mean over task", text.replace("ablate mean over task", "ablate mean over corpus"))
    assert replaced == 1
    spec = tmp_path / "closing_quote_corpus.circ"
    spec.write_text(text)
    out = tmp_path / "out.json"
    code = main(["verify", str(spec), "--samples", "60", "--baselines", "30", "--json", str(out)])
    claims = json.loads(out.read_text())["claims"]
    failing = [(c["name"], c["verdict"], c["note"]) for c in claims if c["verdict"] != "pass"]
    assert code == (1 if failing else 0) and all(c["kind"] in ("role", "behaviour") for c in claims if c["verdict"] != "pass"), failing
    corpus, task = sorted((c for c in claims if c["kind"] == "sufficient"), key=lambda c: c["line"])
    assert corpus["ablation"] == "mean (pretraining corpus)" and corpus["verdict"] == "pass", corpus
    assert {c["ablation"] for c in claims if c["kind"] != "sufficient"} == {"mean (pretraining corpus)"}
    assert task["ablation"] == "mean (closing_quote)" and task["statistic"] > corpus["statistic"]


def test_prove_encodes_corpus_means():
    from circuitspec.prove.entailment import _not_encodable
    resolved, _ = resolved_spec("node r = blocks.1.attn.hook_z[head=1, 19]\n"
                                "claim logit['\"'] > logit[\"'\"] when opening_quote == '\"'\n")
    assert _not_encodable(resolved, resolved.claims[0]) == ""  # stored means are constants, like task means


# ---- the reason for all this, on the hand-set oracle -------------------------------------------------

ALPHABET = [token_id(c) for c in "abxyz"]  # every byte the oracle task's inputs use


def constant_on_task_model() -> Transformer:
    """The oracle with residual channel 3 = +1 on the task's bytes and -1 on every other byte, and both
    carrier neurons reading it: neuron 0 = relu(carrier + ch3), neuron 1 = relu(-carrier + ch3). On task
    inputs ch3 is the constant +1 the mechanism needs; on code it is mostly -1."""
    model = hand_set_model()
    with torch.no_grad():
        model.embed.W_E[:, 3] = -1.0
        model.embed.W_E[ALPHABET, 3] = 1.0
        model.blocks[0].mlp.W_in[3, 0] = model.blocks[0].mlp.W_in[3, 1] = 1.0
    return model


@pytest.fixture(scope="module")
def oracle_folder(tmp_path_factory, small_corpus):
    from circuitspec.engine.tasks import register_task, unregister_task
    register_task(TASK, replace=True)
    root = tmp_path_factory.mktemp("corpus_oracle")
    save_checkpoint(constant_on_task_model(), root / "model", {"description": "oracle with a task-constant channel"})
    write_corpus_means(root / "model", corpus=small_corpus)
    yield root
    unregister_task(TASK.name)


def test_a_task_constant_channel_is_free_under_task_means_but_not_under_corpus_means(oracle_folder):
    results = {}
    for ablation in ("mean over task", "mean over corpus"):
        spec = oracle_folder / f"{ablation.split()[-1]}.circ"
        spec.write_text(f'spec oracle "t"\nmodel "model"\ntask last_ab\nablate {ablation}\n' + CIRCUIT
                        + "claim sufficient faithfulness >= 0.9\n")
        out = oracle_folder / f"{spec.stem}.json"
        code = main(["verify", str(spec), "--samples", "60", "--baselines", "30", "--json", str(out)])
        results[ablation] = (code, json.loads(out.read_text())["claims"][0])
    code, task = results["mean over task"]
    assert code == 0 and task["statistic"] == pytest.approx(1.0, abs=0.01)  # the ablated constant is the real one
    code, corpus = results["mean over corpus"]
    assert code == 1 and corpus["verdict"] == "fail" and corpus["statistic"] < 0.3  # the constant is gone


def test_discover_with_the_corpus_reference_writes_mean_over_corpus(oracle_folder):
    from circuitspec.discover import draft_spec, measure_nodes
    model = load_checkpoint(oracle_folder / "model")
    found = discover(model, TASK, samples=32, steps=30, reference="corpus")
    assert found.reference.ablation.source == "corpus"
    channel3 = {"blocks.0.hook_resid_pre[3]", "blocks.0.hook_resid_mid[3]"}
    assert channel3 & {str(n) for n in found.nodes}  # the task constant must be kept: its corpus mean breaks the circuit
    stats = measure_nodes(model, TASK, found.mask, "mean", 64, "t", reference="corpus")
    out = oracle_folder / "found.circ"
    draft = draft_spec(found, TASK, str(oracle_folder / "model"), out, stats)
    assert "\nablate mean over corpus\n" in draft.text
    resolved, diagnostics = resolve(parse_spec(draft.text, str(out)).spec, str(out))
    assert not diagnostics and resolved.claims[0].ablation.source == "corpus"
    with pytest.raises(UsageError, match="only mean ablation"):
        reference_for(model, TASK, "zero", 8, "s", "corpus")


def test_a_spec_whose_model_lacks_the_means_it_needs_exits_3_like_means_check(sparse_copy, tmp_path):
    (sparse_copy / MEANS_FILE).unlink()
    spec = tmp_path / "t.circ"
    spec.write_text(HEADER.format(model=str(sparse_copy)) + "node r = blocks.1.attn.hook_z[head=1, 19]\n"
                    "claim sufficient faithfulness >= 0.1\n")
    assert main(["check", str(spec)]) == 3
    assert main(["verify", str(spec)]) == 3
    assert main(["means", str(sparse_copy), "--check"]) == 3
