"""The training corpus: sorted file list, stable split, content hash."""

from circuitspec.engine.corpus import CorpusConfig, is_validation, load_corpus


def write_tree(root, files):
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def test_hash_depends_on_content_and_excludes_apply(tmp_path):
    write_tree(tmp_path, {"a.py": "x = 1\n", "pkg/b.py": "y = 2\n", "test/t.py": "z = 3\n", "notes.txt": "no"})
    corpus = load_corpus(CorpusConfig(root=str(tmp_path), validation_fraction=0.0))
    assert corpus.files == ["a.py", "pkg/b.py"]
    assert bytes(corpus.train).startswith(b"x = 1\n")
    again = load_corpus(CorpusConfig(root=str(tmp_path), validation_fraction=0.0))
    assert again.sha256 == corpus.sha256
    (tmp_path / "a.py").write_text("x = 2\n")
    assert load_corpus(CorpusConfig(root=str(tmp_path), validation_fraction=0.0)).sha256 != corpus.sha256


def test_split_is_stable_per_file():
    names = [f"pkg/mod{i}.py" for i in range(2000)]
    val = [n for n in names if is_validation(n, 0.05)]
    assert 50 <= len(val) <= 150
    assert val == [n for n in names if is_validation(n, 0.05)]


def test_stdlib_corpus_is_real_python():
    corpus = load_corpus(CorpusConfig(max_files=20))
    assert len(corpus.files) == 20 and corpus.files == sorted(corpus.files)
    assert b"def " in bytes(corpus.train) + bytes(corpus.validation)
    assert not any(f.startswith(("test/", "site-packages/")) for f in corpus.files)
