"""Pretraining means: every hook's mean over the model's training corpus, computed once, stored with
the checkpoint.

``ablate mean over corpus`` replaces a removed channel by its mean over the *pretraining* distribution
(as Gao et al. 2025 do) instead of over the task's inputs. The difference matters: a channel that is
constant on the task but not on code in general carries a task-specific constant, which a task mean
keeps for free and a pretraining mean does not.

**Why stored, not computed when needed.** The pretraining corpus is the standard library of the
machine that trains (:mod:`.corpus`), which differs between Python versions: means computed at run time
would make verdicts depend on the machine that verifies. So they are computed once, by
:func:`compute_corpus_means`, and written beside the weights as ``corpus_means.safetensors``: at the end
of ``circuitspec train``, or for an existing checkpoint with ``circuitspec means MODEL`` (equivalently
``python -m circuitspec.engine.corpus_means CKPT_DIR``).

**What is stored.** One float32 tensor per key of the reference :meth:`.ablation.Reference.compute`
builds for a global ``mean``, with the hook's channel shape: every hook a masked pass may read a
reference from, plus ``<tokens>`` and ``<positions>``, the mean one-hot inputs of the two embeddings
(the byte frequencies of the corpus and the share of each position). Each is averaged over every
position of ``windows`` corpus windows of ``width`` bytes (default 1024 x 128, the model's training
``seq_len``), drawn exactly as training draws its validation windows: from the validation split (the
training split when that is too short), with a numpy generator seeded ``[seed, 2**31 - 1]``, ``seed``
the training seed; the first 256 *are* training's validation windows (8 batches of 32). 1024 rather
than 256 because of what the means are for: on the shipped specs, circuit faithfulness under means
from two disjoint halves of 256 windows differed by up to 0.036, of 1024 windows by up to 0.014
(typically 0.003). The safetensors
metadata records how: ``weights_sha256`` (the checkpoint's weights the means belong to) and ``info``,
a JSON object with the corpus (SHA-256, root, files, whether it is the one the model was trained on),
the Python version, windows, width, seed, and how stable the means are (``half_vs_half``: the means of
the first and second half of the windows compared, per channel, in units of the channel's standard
deviation over all positions).

**How a model finds its means.** :func:`.checkpoint.load_checkpoint` records on the model the folder
and the weights hash it was loaded from (``model.checkpoint_dir``, ``model.weights_sha256``), so
:func:`corpus_reference` needs only the model; ``ckpt_dir`` names the folder explicitly. Means are read
when asked for, not when the model loads: only ``over corpus`` needs them, and a checkpoint without
them stays usable for everything else. Reading validates the file (present, readable, this format), that
it was computed for exactly these weights (its ``weights_sha256`` equals the checkpoint manifest's, and
the loaded model's), and that every needed key is present with the right shape; each failure is a
:class:`~.errors.ModelError` that names the command that regenerates the file.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save as dump_tensors

from .ablation import _POSITIONS, _TOKENS, Ablation, Reference, reference_hooks
from .atomic import write_bytes
from .checkpoint import MANIFEST_FILE, read_manifest
from .corpus import Corpus, CorpusConfig, load_corpus
from .errors import ModelError, UsageError
from .model import Transformer

MEANS_FILE = "corpus_means.safetensors"
FORMAT = "circuitspec-corpus-means"
FORMAT_VERSION = 1
DEFAULT_WINDOWS = 1024
DEFAULT_WIDTH = 128
VALIDATION_STREAM = 2**31 - 1  # training's validation windows: np.random.default_rng([seed, VALIDATION_STREAM])
#: The ``source`` a Reference of stored means carries.
CORPUS_ABLATION = Ablation("mean", source="corpus")


@dataclass
class CorpusMeans:
    """Stored pretraining means: tensor per reference key, and how they were computed."""

    values: dict[str, torch.Tensor]
    weights_sha256: str | None
    info: dict[str, Any] = field(default_factory=dict)

    def reference(self, device: torch.device | str = "cpu") -> Reference:
        """The ablation reference these means make: a constant per channel, for any target batch."""
        return Reference({k: v.to(device) for k, v in self.values.items()}, CORPUS_ABLATION)


def means_path(ckpt_dir: Path | str) -> Path:
    return Path(ckpt_dir) / MEANS_FILE


def means_command(ckpt_dir: Path | str) -> str:
    """The command that (re)writes a checkpoint's means: by name for a shipped model, else by path."""
    from .zoo import shipped_dir  # zoo imports checkpoint; importing it lazily keeps this module light

    path = Path(ckpt_dir)
    try:
        if path.resolve().parent == shipped_dir().resolve():
            return f"circuitspec means {path.name}"
    except OSError:
        pass
    return f"circuitspec means {path}"


# ---- computing -------------------------------------------------------------------------------------


def corpus_windows(corpus: Corpus, windows: int, width: int, seed: int) -> torch.Tensor:
    """``windows`` x ``width`` byte windows drawn as training draws its validation windows."""
    from .train import corpus_rows  # train writes means at its end, so it imports this module

    data = corpus.validation if corpus.validation.size > width + 1 else corpus.train
    if data.size <= width + 1:
        raise UsageError(f"the corpus has only {data.size} bytes, too few for windows of {width}")
    rng = np.random.default_rng([seed, VALIDATION_STREAM])
    return torch.from_numpy(corpus_rows(data, windows, width + 1, rng)[:, :width])


class _Moments:
    """Sums of a hook's activation and its square over positions, in float64."""

    def __init__(self) -> None:
        self.sum: torch.Tensor | None = None
        self.sq: torch.Tensor | None = None
        self.count = 0

    def add_sums(self, s: torch.Tensor, q: torch.Tensor, count: int) -> None:
        self.sum = s if self.sum is None else self.sum + s
        self.sq = q if self.sq is None else self.sq + q
        self.count += count

    def add(self, act: torch.Tensor) -> None:
        flat = act.flatten(0, 1)
        self.add_sums(flat.sum(0, dtype=torch.float64), (flat * flat).sum(0, dtype=torch.float64), flat.shape[0])

    def mean(self) -> torch.Tensor:
        return self.sum / self.count

    def std(self) -> torch.Tensor:
        return (self.sq / self.count - self.mean().pow(2)).clamp(min=0).sqrt()


def _window_moments(model: Transformer, tokens: torch.Tensor, batch_size: int) -> dict[str, _Moments]:
    """Moments of every reference key over every position of ``tokens`` [N, T] (all positions real).

    The one-hot inputs are counted rather than materialised: a one-hot entry is its own square."""
    hooks = reference_hooks(model)
    cfg = model.cfg
    moments: dict[str, _Moments] = {h: _Moments() for h in [*hooks, _TOKENS, _POSITIONS]}
    for start in range(0, tokens.shape[0], batch_size):
        chunk = tokens[start : start + batch_size].to(model.device)
        _, cache = model.run_with_cache(chunk, hooks)
        for hook in hooks:
            moments[hook].add(cache[hook])
        counts = torch.bincount(chunk.flatten(), minlength=cfg.d_vocab).double()
        moments[_TOKENS].add_sums(counts, counts, chunk.numel())
        per_position = torch.zeros(cfg.n_ctx, dtype=torch.float64, device=chunk.device)
        per_position[: chunk.shape[1]] = chunk.shape[0]
        moments[_POSITIONS].add_sums(per_position, per_position, chunk.numel())
    return moments


def _combine(a: _Moments, b: _Moments) -> _Moments:
    out = _Moments()
    out.sum, out.sq, out.count = a.sum + b.sum, a.sq + b.sq, a.count + b.count
    return out


def stability(first: dict[str, _Moments], second: dict[str, _Moments]) -> dict[str, Any]:
    """How much the means of two disjoint halves of the windows differ.

    Per channel ``|mean_1 - mean_2| / std`` (std over every position of both halves; channels with no
    spread are skipped), summarised over all channels of all hooks; and per hook the relative L2
    distance ``|m_1 - m_2| / |m|``, its largest value and where.
    """
    ratios, worst_l2, worst_hook = [], 0.0, ""
    for key in first:
        both = _combine(first[key], second[key])
        diff = (first[key].mean() - second[key].mean()).flatten()
        std = both.std().flatten()
        spread = std > 1e-12
        ratios.append((diff.abs()[spread] / std[spread]).float())
        norm = float(both.mean().norm())
        rel = float(diff.norm()) / norm if norm > 0 else 0.0
        if rel > worst_l2:
            worst_l2, worst_hook = rel, key
    r = torch.cat(ratios)
    return {
        "channels": int(r.numel()),
        "median_abs_diff_over_std": round(float(r.median()), 5),
        "p99_abs_diff_over_std": round(float(torch.quantile(r, 0.99)), 5),
        "max_abs_diff_over_std": round(float(r.max()), 5),
        "max_relative_l2": round(worst_l2, 5),
        "max_relative_l2_hook": worst_hook,
    }


@torch.no_grad()
def compute_corpus_means(model: Transformer, corpus: Corpus | None = None, *, corpus_config: CorpusConfig = CorpusConfig(),
                         windows: int = DEFAULT_WINDOWS, width: int | None = None, seed: int = 0, batch_size: int = 128,
                         training_corpus_sha256: str | None = None, weights_sha256: str | None = None) -> CorpusMeans:
    """The means of every reference key over ``windows`` corpus windows (see the module docstring).

    ``corpus``: the loaded corpus (else ``corpus_config`` is loaded); ``width``: window length (default
    :data:`DEFAULT_WIDTH`, at most the model's context); ``training_corpus_sha256``: the hash of the
    corpus the model was trained on, to record whether these windows come from it.
    """
    if windows < 2:
        raise UsageError(f"corpus means need at least 2 windows, got {windows}")
    if model.tokenizer.name != "bytes":  # the windows are byte ids: another tokenizer would read them as other tokens
        raise UsageError(f"corpus means are computed over byte windows, and this model reads {model.tokenizer.describe()}",
                         hint="pretraining means exist only for byte-level models; use `ablate mean over task`")
    width = min(width or DEFAULT_WIDTH, model.cfg.n_ctx)
    corpus = corpus if corpus is not None else load_corpus(corpus_config)
    tokens = corpus_windows(corpus, windows, width, seed)
    was_training = model.training
    model.eval()
    try:
        half = windows // 2
        first, second = _window_moments(model, tokens[:half], batch_size), _window_moments(model, tokens[half:], batch_size)
    finally:
        model.train(was_training)
    values = {key: _combine(first[key], second[key]).mean().float().cpu().contiguous() for key in first}
    report = {"windows_each": [half, windows - half], **stability(first, second)}
    described = corpus.describe()
    info = {
        "windows": windows,
        "width": width,
        "positions": windows * width,
        "seed": seed,
        "drawn_as": f"training's validation windows: the {'validation' if corpus.validation.size > width + 1 else 'training'} "
                    f"split, start offsets from numpy default_rng([seed, {VALIDATION_STREAM}])",
        "corpus": {"sha256": described["sha256"], "root": described["root"], "files": described["files"],
                   "validation_bytes": described["validation_bytes"], "train_bytes": described["train_bytes"],
                   "is_training_corpus": None if training_corpus_sha256 is None else described["sha256"] == training_corpus_sha256},
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "half_vs_half": report,
    }
    return CorpusMeans(values, weights_sha256, info)


def save_corpus_means(ckpt_dir: Path | str, means: CorpusMeans) -> Path:
    """Write ``ckpt_dir/corpus_means.safetensors`` (atomically: a partial file never replaces a good one)."""
    if not means.weights_sha256:
        raise ValueError("corpus means must record the weights they belong to")
    path = means_path(ckpt_dir)
    metadata = {"format": FORMAT, "format_version": str(FORMAT_VERSION), "weights_sha256": means.weights_sha256,
                "info": json.dumps(means.info, sort_keys=True)}
    write_bytes(path, dump_tensors({k: v.detach().to("cpu", torch.float32).contiguous() for k, v in means.values.items()},
                                   metadata=metadata))
    return path


def write_corpus_means(ckpt_dir: Path | str, model: Transformer | None = None, *, corpus: Corpus | None = None,
                       corpus_root: str | None = None, windows: int = DEFAULT_WINDOWS, seed: int | None = None,
                       batch_size: int = 128) -> tuple[Path, CorpusMeans]:
    """Compute and store the means of the checkpoint in ``ckpt_dir``, the way its manifest says it was trained:
    its corpus settings (``corpus_root`` overrides the root: e.g. the standard library of the Python version it was
    trained with), its ``seq_len`` as the window width and its seed. ``model``: the checkpoint's model, if loaded."""
    from .checkpoint import load_checkpoint
    from .config import config_from_dict

    ckpt_dir = Path(ckpt_dir)
    if model is None:
        model = load_checkpoint(ckpt_dir)
    manifest = read_manifest(ckpt_dir)
    weights_sha256 = manifest.get("weights_sha256")
    if not weights_sha256:
        raise ModelError(f"{ckpt_dir / MANIFEST_FILE}: no weights_sha256", hint="the manifest is incomplete; re-copy or retrain the checkpoint")
    try:
        cfg = config_from_dict(manifest["config"]) if isinstance(manifest.get("config"), dict) else None
    except UsageError:
        cfg = None
    corpus_config = cfg.corpus if cfg else CorpusConfig()
    if corpus_root is not None:
        corpus_config = CorpusConfig(root=corpus_root, exclude=corpus_config.exclude,
                                     validation_fraction=corpus_config.validation_fraction, max_files=corpus_config.max_files)
    if corpus is None:
        try:
            corpus = load_corpus(corpus_config)
        except FileNotFoundError as e:
            raise UsageError(str(e), hint="pass --corpus-root with a Python standard library folder") from None
    training_sha = (manifest.get("corpus") or {}).get("sha256")
    means = compute_corpus_means(model, corpus, windows=windows, width=cfg.train.seq_len if cfg else None,
                                 seed=seed if seed is not None else (cfg.train.seed if cfg else 0), batch_size=batch_size,
                                 training_corpus_sha256=training_sha, weights_sha256=weights_sha256)
    return save_corpus_means(ckpt_dir, means), means


# ---- reading ---------------------------------------------------------------------------------------


def load_corpus_means(ckpt_dir: Path | str) -> CorpusMeans:
    """The stored means of a checkpoint, as written (present, readable, this format; nothing else checked)."""
    path = means_path(ckpt_dir)
    regenerate = f"compute them with `{means_command(ckpt_dir)}`"
    if not path.is_file():
        raise ModelError(f"{path}: missing: this checkpoint has no stored pretraining means",
                         hint=f"`mean over corpus` needs them; {regenerate}")
    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
            values = {key: f.get_tensor(key) for key in f.keys()}
    except (SafetensorError, OSError, ValueError) as e:
        raise ModelError(f"{path}: cannot be read as safetensors ({e})", hint=f"the file is corrupt; {regenerate}") from None
    if metadata.get("format") != FORMAT or metadata.get("format_version") != str(FORMAT_VERSION):
        raise ModelError(f"{path}: not circuitspec corpus means of format version {FORMAT_VERSION} "
                         f"(format={metadata.get('format')!r}, version={metadata.get('format_version')!r})", hint=regenerate)
    try:
        info = json.loads(metadata.get("info", "{}"))
    except json.JSONDecodeError:
        info = {}
    return CorpusMeans(values, metadata.get("weights_sha256"), info)


def expected_shapes(model: Transformer) -> dict[str, tuple[int, ...]]:
    """Every key a global mean reference has, with its shape (a zero reference has the same keys)."""
    one = torch.zeros(1, 1, dtype=torch.long, device=model.device)
    zero = Reference.compute(model, Ablation("zero"), one, torch.ones(1, dtype=torch.long, device=model.device))
    return {key: tuple(value.shape) for key, value in zero.values.items()}


def validate(means: CorpusMeans, model: Transformer, ckpt_dir: Path | str) -> dict[str, tuple[int, ...]]:
    """ModelError unless ``means`` belong to exactly the weights in ``ckpt_dir`` (and ``model``) and have
    every key a reference needs, with the right shape; returns those keys and shapes."""
    path = means_path(ckpt_dir)
    regenerate = f"the checkpoint's means are stale or damaged; regenerate them with `{means_command(ckpt_dir)}`"
    expected_hash = read_manifest(ckpt_dir).get("weights_sha256")
    if model.weights_sha256 is not None and expected_hash != model.weights_sha256:
        raise ModelError(f"{ckpt_dir}: the model was not loaded from this checkpoint (its weights hash differs from "
                         f"{MANIFEST_FILE}'s)", hint="pass the checkpoint directory the model was loaded from")
    if means.weights_sha256 != expected_hash:
        raise ModelError(f"{path}: computed for other weights (weights_sha256 {str(means.weights_sha256)[:12]}..., "
                         f"this checkpoint's is {str(expected_hash)[:12]}...)", hint=regenerate)
    shapes = expected_shapes(model)
    missing = [key for key in shapes if key not in means.values]
    if missing:
        raise ModelError(f"{path}: no mean for {len(missing)} hook(s): {', '.join(missing[:3])}{', ...' if len(missing) > 3 else ''}",
                         hint=regenerate)
    for key, shape in shapes.items():
        if tuple(means.values[key].shape) != shape:
            raise ModelError(f"{path}: the mean of {key} has shape {tuple(means.values[key].shape)}, the model's is {shape}",
                             hint=regenerate)
        if means.values[key].dtype != torch.float32:
            raise ModelError(f"{path}: the mean of {key} is stored as {means.values[key].dtype}, expected float32",
                             hint=regenerate)
        if not bool(torch.isfinite(means.values[key]).all()):
            raise ModelError(f"{path}: the mean of {key} is not finite", hint=regenerate)
    return shapes


def corpus_reference(model: Transformer, ckpt_dir: Path | str | None = None) -> Reference:
    """The ``mean over corpus`` reference of ``model``: its checkpoint's stored means, validated, on the
    model's device. ``ckpt_dir`` defaults to the folder the model was loaded from."""
    if ckpt_dir is None:
        ckpt_dir = model.checkpoint_dir
    if ckpt_dir is None:
        raise ModelError("this model was not loaded from a checkpoint, so it has no stored pretraining means",
                         hint="save it with save_checkpoint, add its means with `circuitspec means DIR`, and load it from DIR")
    means = load_corpus_means(ckpt_dir)
    shapes = validate(means, model, ckpt_dir)
    return Reference({key: means.values[key].to(model.device) for key in shapes}, CORPUS_ABLATION)


def describe(path: Path | str) -> str:
    """One line about a means file: size and what it was computed from."""
    path = Path(path)
    means = load_corpus_means(path.parent)
    info, stab = means.info, means.info.get("half_vs_half", {})
    corpus = info.get("corpus", {})
    return (f"{path} ({path.stat().st_size / 1e3:.1f} kB): {len(means.values)} tensors over {info.get('windows')} windows x "
            f"{info.get('width')} bytes of {corpus.get('files')} files in {corpus.get('root')} (corpus "
            f"{str(corpus.get('sha256'))[:12]}, {'the training corpus' if corpus.get('is_training_corpus') else 'not the training corpus'}); "
            f"halves differ by a median {stab.get('median_abs_diff_over_std')} "
            f"(max {stab.get('max_abs_diff_over_std')}) standard deviations")


def main(argv: list[str] | None = None) -> int:
    """``python -m circuitspec.engine.corpus_means CKPT_DIR...``: the same as ``circuitspec means``."""
    from circuitspec.cli import main as cli_main

    return cli_main(["means", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    raise SystemExit(main())
