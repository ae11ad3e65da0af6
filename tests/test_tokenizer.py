"""Tokenizers: bytes exactly as before, a data gym BPE read from a model's directory, and every stage
(tasks, the language, verify, eval, the testing API) going through the model's own tokenizer."""

import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from circuitspec.cli import main
from circuitspec.engine.ablation import run_conditions_with_cache
from circuitspec.engine.batch import encode_examples, encode_for
from circuitspec.engine.bpe import BpeTokenizer, byte_order
from circuitspec.engine.checkpoint import load_checkpoint, save_checkpoint
from circuitspec.engine.evaluate import EVAL_SEED
from circuitspec.engine.errors import ModelError
from circuitspec.engine.graph import build_graph
from circuitspec.engine.task_tokens import AnswerTokenError, token_position, tokenize_example
from circuitspec.engine.tasks import Task, TaskExample, all_tasks, get_task, register_task, unregister_task
from circuitspec.engine.tokenizer import BYTES, NotOneTokenError, decode, encode, token_id, token_repr
from circuitspec.engine.tokenizer_spec import TINYPYTHON_2K_PATTERN, TokenizerSpec
from circuitspec.engine.zoo import load_model
from circuitspec.verify.runner import make_reference
from tiny_bpe import ENDOFTEXT, MERGES, gpt2_byte_chars, reference_encode, write_bpe, write_reference_model

# ---- bytes: today's behaviour ---------------------------------------------------------------------------


def test_the_byte_tokenizer_is_the_byte_values():
    assert encode('x = "a') == list(b'x = "a') and decode([120, 10]) == "x\n"
    assert token_id('"') == BYTES.token_id('"') == 34 and token_repr(10) == "'\\n'"
    assert BYTES.token_starts("ab c") == [0, 1, 2, 3] and BYTES.token_index("ab c", 2) == 2
    assert BYTES.token_starts("é!") == [0, 0, 1]  # two bytes of one character
    with pytest.raises(NotOneTokenError, match="2 tokens: 'a' 'b'"):
        BYTES.token_id("ab")
    assert isinstance(NotOneTokenError("x", [], "bytes"), ValueError)  # callers that caught ValueError still do


def test_byte_batches_are_what_they_were():
    """Everything downstream is a function of the batch: the same batch, the same statistics."""
    for task in all_tasks():
        examples = task.sample(60, "tokenizer-test")
        batch = encode_examples(examples, 128)
        for i, ex in enumerate(examples):
            row = list(ex.prefix.encode())
            assert batch.tokens[i, : len(row)].tolist() == row and int(batch.answer_pos[i]) == len(row) - 1
            assert (int(batch.correct[i]), int(batch.wrong[i])) == (ord(ex.correct), ord(ex.wrong))
            assert all(token_position(ex, name, BYTES) == index for name, index in ex.positions.items())
    model = load_model("py-sparse-small")
    assert model.tokenizer is BYTES and encode_for(model, examples).tokens.equal(batch.tokens)


# ---- the BPE -----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def bpe_files(tmp_path_factory) -> SimpleNamespace:
    """The tiny BPE's folder, and its ids (token bytes -> id) as tests/tiny_bpe.py wrote them."""
    directory = tmp_path_factory.mktemp("tokenizer")
    return SimpleNamespace(directory=directory, ids=write_bpe(directory))


@pytest.fixture(scope="module")
def bpe(bpe_files) -> BpeTokenizer:
    return TokenizerSpec.from_manifest({"kind": "bpe", "name": "tinypython_2k", "pattern": TINYPYTHON_2K_PATTERN,
                                        "special_tokens": {"<|endoftext|>": ENDOFTEXT}}, "manifest.json").load(bpe_files.directory, 2048)


def test_the_data_gym_files_give_gpt2s_ids(bpe):
    table = gpt2_byte_chars()
    assert list(table) == byte_order()  # GPT-2's bytes_to_unicode order: printable bytes, then the rest
    assert bpe.vocab_size == 2048 and bpe.token_id("<|endoftext|>") == ENDOFTEXT
    assert bpe.token_id("!") == 0 and bpe.token_id(" ") == list(table).index(32) == 220
    assert bpe.token_id("read") == 256 + MERGES.index(("re", "ad")) and bpe.token_id(" =") == 256 + MERGES.index(("Ġ", "="))
    assert [bpe.token_repr(t) for t in bpe.encode("def read(parts):")] == \
        ["'def'", "' '", "'read'", "'('", "'parts'", "')'", "':'"]
    assert bpe.token_repr(1000) == "<1000>"  # an id between the merges and the end-of-text token: none
    with pytest.raises(NotOneTokenError, match="2 tokens: 'x' 'y'"):
        bpe.token_id("xy")


@given(st.text(st.characters(min_codepoint=0, max_codepoint=127), max_size=60))
def test_encode_decode_round_trips_and_offsets_tile_the_text(bpe, bpe_files, text):
    tokens = bpe.encode(text)
    assert bpe.decode(tokens) == text
    assert tokens == reference_encode(text, bpe_files.ids, TINYPYTHON_2K_PATTERN)  # GPT-2's merge loop gives the same ids
    starts = bpe.token_starts(text)
    assert len(starts) == len(tokens) and starts == sorted(starts)
    ends = starts[1:] + [len(text)]
    assert [text[a:b] for a, b in zip(starts, ends)] == [bpe.token_bytes(t).decode() for t in tokens]
    for char in range(len(text)):  # a character maps to the token that holds it
        j = bpe.token_index(text, char)
        assert starts[j] <= char < ends[j]


def test_offsets_map_task_positions_to_the_token_holding_them(bpe):
    example = TaskExample("x = read(parts", ")", "]", "", {}, {"open": 8, "name": 6, "answer": 13})
    tokens = [bpe.token_repr(t) for t in bpe.encode(example.prefix)]
    assert tokens == ["'x'", "' ='", "' '", "'read'", "'('", "'parts'"]
    assert token_position(example, "open", bpe) == 4 and token_position(example, "name", bpe) == 3
    assert token_position(example, "answer", bpe) == len(tokens) - 1  # the last token of the prefix
    tokenized = tokenize_example(example, bpe, "t")
    assert (tokenized.correct, tokenized.wrong) == (bpe.token_id(")"), bpe.token_id("]"))


def test_an_answer_that_merges_into_the_prefix_is_an_error(bpe):
    example = TaskExample("x = [[[1]]]", "]", "\n", "", {}, {"answer": 10})  # ']]' ']' and then ']]' ']]'
    with pytest.raises(AnswerTokenError, match=r"task 'nest': after the prefix 'x = \[\[\[1\]\]\]' the answer '\]' merges") as error:
        tokenize_example(example, bpe, "nest")
    assert error.value.exit_code == 2 and "tinypython_2k tokenizer" in error.value.message
    with pytest.raises(AnswerTokenError, match=r"the answer 'xy' is not one token of the tinypython_2k tokenizer of .* \(2 tokens"):
        tokenize_example(TaskExample("a = ", "xy", "1", "", {}, {"answer": 3}), bpe, "two")


def test_malformed_or_mismatched_files_are_model_errors(tmp_path):
    write_bpe(tmp_path)
    encoder = json.loads((tmp_path / "encoder.json").read_text())
    encoder["in"] = 300
    (tmp_path / "encoder.json").write_text(json.dumps(encoder))
    with pytest.raises(ModelError, match="encoder.json: does not match vocab.bpe"):
        BpeTokenizer.from_directory(tmp_path, "t", TINYPYTHON_2K_PATTERN)
    write_bpe(tmp_path)
    (tmp_path / "vocab.bpe").write_text("#version: 0.2\ni n\nr e x\n")
    with pytest.raises(ModelError, match=r"vocab.bpe:3: a merge is two tokens"):
        BpeTokenizer.from_directory(tmp_path, "t", TINYPYTHON_2K_PATTERN)
    for name in ("vocab.bpe", "encoder.json"):
        (tmp_path / name).unlink()
    with pytest.raises(ModelError, match="tokenizer files vocab.bpe and encoder.json are missing"):
        BpeTokenizer.from_directory(tmp_path, "t", TINYPYTHON_2K_PATTERN)
    with pytest.raises(ModelError, match="`tokenizer` must be"):
        TokenizerSpec.from_manifest({"kind": "bpe", "name": "t"}, "manifest.json")


# ---- a model with the BPE, through the commands ----------------------------------------------------------

SPEC = '''spec bpe "bracket_type on a model that reads a BPE"
model "{model}"
task bracket_type
ablate mean over task
samples 30

group head = blocks.1.attn.hook_z[head=1, *]
node reader = blocks.1.attn.hook_z[head=0, 3]

claim suff: sufficient faithfulness >= -100 robustness none
claim prefers: logit[')'] > logit[']'] on at least 0.01 of inputs
claim agrees: agrees with model on at least 0.01 of inputs
claim opened: reader > -1000 at position innermost_open on at least 0.01 of inputs
'''


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("bpe-models")
    source = write_reference_model(root / "source")
    assert main(["convert", "--from", "circuit-sparsity", str(source), "-o", str(root / "converted"), "--threads", "1"]) == 0
    return SimpleNamespace(root=root, source=source, converted=root / "converted")


def test_convert_records_the_tokenizer_and_copies_its_files(models):
    manifest = json.loads((models.converted / "manifest.json").read_text())
    assert manifest["tokenizer"]["kind"] == "bpe" and manifest["tokenizer"]["name"] == "tinypython_2k"
    for name in ("vocab.bpe", "encoder.json"):
        assert (models.converted / name).read_bytes() == (models.source / name).read_bytes()
    converted, direct = load_checkpoint(models.converted), load_model(str(models.source))
    text = "def read(parts, text):"
    assert converted.tokenizer.encode(text) == direct.tokenizer.encode(text) != encode(text)
    ids = torch.tensor([converted.tokenizer.encode(text)])
    with torch.no_grad():
        assert torch.equal(converted(ids), direct(ids))
    save_checkpoint(converted, models.root / "resaved", {})  # a saved BPE model carries its files along
    assert load_checkpoint(models.root / "resaved").tokenizer.encode(text) == converted.tokenizer.encode(text)
    assert build_graph(converted).nodes["hook_logits[8]"]["token"] == "')'"  # labels in the model's tokenizer


def test_a_task_runs_through_verify_on_the_bpe_model(models, capsys):
    spec = models.root / "bpe.circ"
    spec.write_text(SPEC.format(model="converted"))
    out = models.root / "bpe.json"
    assert main(["check", str(spec), "--threads", "1"]) == 0
    rc = main(["verify", str(spec), "--baselines", "2", "--partial-ablations", "1", "--json", str(out), "--threads", "1"])
    err = capsys.readouterr().err
    assert rc in (0, 1) and "self-check" not in err and "Traceback" not in err, err
    claims = {c["name"]: c for c in json.loads(out.read_text())["claims"]}
    assert set(claims) == {"suff", "prefers", "agrees", "opened"} and all(c["n"] for c in claims.values())


def test_token_literals_and_positions_resolve_through_the_tokenizer(models):
    from circuitspec.testing import check_claim, load_spec

    spec_path = models.root / "literals.circ"
    spec_path.write_text(SPEC.format(model="converted"))
    spec = load_spec(spec_path)
    tokenizer = spec.resolved.context.model.tokenizer
    assert spec.claim("prefers").logits == (tokenizer.token_id(")"), tokenizer.token_id("]")) == (8, 60)
    example = next(ex for ex in get_task("bracket_type").sample(20, 3)  # merges made the prefix shorter in tokens
                   if token_position(ex, "innermost_open", tokenizer) != ex.positions["innermost_open"])
    position = token_position(example, "innermost_open", tokenizer)
    model = spec.resolved.context.model
    value = check_claim(spec, "opened", example).values["blocks.1.attn.hook_z[head=0, 3]"]
    batch = encode_for(model, [example], "bracket_type")
    claim = spec.claim("opened")
    reference = make_reference(spec.resolved, claim.ablation, claim.ablation_task, batch, spec.settings)
    _, cache = run_conditions_with_cache(model, batch.tokens, [spec.resolved.mask], reference, batch.answer_pos,
                                         ["blocks.1.attn.hook_z"])
    assert value == pytest.approx(float(cache["blocks.1.attn.hook_z"][0, 0, position, 0, 3]), abs=1e-6)


def test_a_literal_that_is_not_one_token_is_e519_at_its_place(models, capsys):
    spec = models.root / "e519.circ"
    spec.write_text(SPEC.format(model="converted").replace("logit[')'] > logit[']']", "logit['read'] > logit['xy']"))
    assert main(["check", str(spec)]) == 2
    out = capsys.readouterr().err  # diagnostics go to stderr
    assert "e519.circ:11:38: error[E519]: 'xy' is not one token of the model's vocabulary (tinypython_2k: 2 tokens: 'x' 'y')" in out
    assert "'read'" not in out.split("E519")[1].splitlines()[0]  # `read` is one token: only `xy` is wrong


def test_eval_reads_the_task_through_the_tokenizer(models, capsys):
    out = models.root / "eval.json"
    assert main(["eval", str(models.converted), "--tasks", "bracket_type", "-n", "40", "--json", str(out), "--threads", "1"]) == 0
    score = json.loads(out.read_text())["bracket_type"]
    model = load_checkpoint(models.converted)
    right = 0
    for ex in get_task("bracket_type").sample(40, EVAL_SEED):
        with torch.no_grad():
            logits = model(torch.tensor([model.tokenizer.encode(ex.prefix)]))[0, -1]
        right += bool(logits[model.tokenizer.token_id(ex.correct)] > logits[model.tokenizer.token_id(ex.wrong)])
    assert score["accuracy"] == pytest.approx(right / 40)


def test_a_task_whose_answer_merges_fails_clearly(models, capsys):
    spec = models.root / "nesting.circ"
    spec.write_text(SPEC.format(model="converted").replace("bracket_type", "bracket_nesting").split("\ngroup")[0]
                    + "\ngroup head = blocks.1.attn.hook_z[head=1, *]\nclaim necessary faithfulness <= 5\n")
    assert main(["verify", str(spec), "--baselines", "2", "--partial-ablations", "1", "--threads", "1"]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "task 'bracket_nesting'" in err and "the answer ']' merges" in err and str(models.converted) in err
    assert "Traceback" not in err


@pytest.fixture
def two_token_task():
    def generate(sampler):
        name = sampler.choice(["x", "y", "parts"])
        return TaskExample(f"for {name} ", "in", "xy", " z:\n", {"name": name}, {"name": 4, "answer": 4 + len(name)})

    task = register_task(Task("two_token_answer", "`in` is one token of the BPE, `xy` is two", generate, {"name": "the name"},
                              {"name": "the loop variable", "answer": "where the answer is read"}, "'in' vs 'xy'"))
    yield task
    unregister_task(task.name)


def test_an_answer_of_two_tokens_fails_clearly_on_either_model(models, two_token_task, tmp_path, capsys):
    for model, answer in ((models.converted, "xy"), ("py-sparse-small", "in")):
        spec = tmp_path / "two.circ"
        spec.write_text(f'spec two "answers"\nmodel "{model}"\ntask two_token_answer\nablate zero\n\n'
                        "group head = blocks.1.attn.hook_z[head=1, *]\nclaim necessary faithfulness <= 5\n")
        assert main(["verify", str(spec), "--samples", "10", "--baselines", "2", "--partial-ablations", "1", "--threads", "1"]) == 2
        err = " ".join(capsys.readouterr().err.split())  # verify wraps a spec's error at the terminal's width
        assert f"task 'two_token_answer': the answer '{answer}' is not one token of the" in err and "Traceback" not in err, err


def test_missing_tokenizer_files_are_exit_3_naming_them(models, tmp_path, capsys):
    broken = tmp_path / "broken"
    shutil.copytree(models.converted, broken)
    (broken / "vocab.bpe").unlink()
    spec = tmp_path / "missing.circ"
    spec.write_text(SPEC.format(model=broken))
    assert main(["check", str(spec)]) == 3
    assert "error[E512]" in (err := capsys.readouterr().err) and "the model's tokenizer files vocab.bpe are missing" in err
    assert main(["eval", str(broken), "--tasks", "bracket_type", "-n", "5"]) == 3
    err = capsys.readouterr().err
    assert "the model's tokenizer files vocab.bpe are missing" in err and "Traceback" not in err
    source = shutil.copytree(models.source, tmp_path / "source")  # the original directory, read as a model path
    (source / "encoder.json").unlink()
    assert main(["eval", str(source), "--tasks", "bracket_type", "-n", "5"]) == 3
    assert "encoder.json are missing" in capsys.readouterr().err


def test_convert_without_the_files_warns_and_the_result_is_refused(tmp_path, capsys):
    source = write_reference_model(tmp_path / "source", with_bpe=False)
    assert main(["convert", "--from", "circuit-sparsity", str(source), "-o", str(tmp_path / "out")]) == 0
    err = capsys.readouterr().err
    assert "warning:" in err and "vocab.bpe or encoder.json" in err and "tinypython_2k" in err
    with pytest.raises(ModelError, match="tokenizer files vocab.bpe and encoder.json are missing"):
        load_checkpoint(tmp_path / "out")
    write_bpe(tmp_path / "out")  # copied in afterwards: the checkpoint works
    assert load_checkpoint(tmp_path / "out").tokenizer.name == "tinypython_2k"


def test_an_unknown_tokenizer_name_cannot_be_read(tmp_path, capsys):
    source = write_reference_model(tmp_path / "source", tokenizer_name="cl100k_base")
    assert main(["convert", "--from", "circuit-sparsity", str(source), "-o", str(tmp_path / "out")]) == 3
    assert "tokenizer_name 'cl100k_base' is not a tokenizer circuitspec knows" in capsys.readouterr().err


def test_show_names_tokens_in_the_models_tokenizer(models, capsys):
    spec = models.root / "show.circ"
    spec.write_text(SPEC.format(model="converted").split("\ngroup")[0]
                    + "\ngroup out = blocks.1.hook_resid_post[0:4]\nclaim logit['read'] > logit[')'] on at least 0.01 of inputs\n")
    picture = models.root / "show.svg"
    assert main(["show", str(spec), "-o", str(picture), "--samples", "20", "--threads", "1"]) == 0
    svg = picture.read_text()
    assert 'logit <tspan class="mono">&#x27;read&#x27;</tspan>' in svg  # the box of logit 260: the token `read`


def test_corpus_means_stay_byte_level(models):
    from circuitspec.engine.corpus_means import compute_corpus_means
    from circuitspec.engine.errors import UsageError

    with pytest.raises(UsageError, match="byte windows, and this model reads the tinypython_2k tokenizer"):
        compute_corpus_means(load_checkpoint(models.converted))


def test_counterfactual_partners_line_up_as_tokens_under_a_bpe(bpe):
    """Equal character lengths and positions do not make equal token positions under a BPE: with the model's
    tokenizer, every partner found lines up token by token (the resample reads the partner aligned at the
    answer), where the character rule alone lets some through that do not."""
    from circuitspec.engine.tasks.counterfactual import find_partner, tokens_align

    task = get_task("bracket_type")
    examples = task.sample(60, "bpe-partners")
    char_only = [find_partner(task, e, "innermost", 0) for e in examples]
    misaligned = sum(p is not None and not tokens_align(e, p, bpe) for e, p in zip(examples, char_only))
    assert misaligned > 0  # the character rule alone is not enough under this BPE
    with_tokens = [find_partner(task, e, "innermost", 0, bpe) for e in examples]
    found = [(e, p) for e, p in zip(examples, with_tokens) if p is not None]
    assert found and all(tokens_align(e, p, bpe) for e, p in found)
    assert all(len(bpe.encode(e.prefix)) == len(bpe.encode(p.prefix)) for e, p in found)
