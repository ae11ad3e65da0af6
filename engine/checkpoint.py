"""Checkpoints: ``config.json`` + ``model.safetensors`` + ``manifest.json`` in one directory.

Sparse matrices are stored compactly as flat int32 indices plus float32 values (bit-exact); dense ones as
plain tensors. A loaded model remembers its folder and weights hash (``model.checkpoint_dir``,
``model.weights_sha256``).

Loading never unpickles anything (a ``torch.save`` pickle is refused, not read), and it allocates nothing
the files do not account for: a corrupt or hostile checkpoint must end in one clear error, not in a
traceback or the allocator. It checks, in order: the files are present; the JSON files are UTF-8
objects of bounded size and depth; ``config.json`` has only known keys, a complete ``model`` table whose
every field has its type (a bool is not an integer) and range, and a layout naming exactly the model's
parameters with the shapes the config implies; the weights hash equals the manifest's; the model fits
its weights file (built, it may take at most ``max(MIN_MODEL_BYTES, MAX_EXPANSION x`` the file's size):
a sparse matrix costs 8 bytes per kept weight, so this admits densities down to 1/2048, while a config
claiming a billion channels stops here); the safetensors header holds exactly the tensors the layout
names, with their dtypes and shapes; sparse indices are sorted, distinct and in range; every value is
finite. Each failure is a ModelError (exit 3) that says which file is wrong and what to do.

A model whose manifest records a BPE tokenizer (:mod:`.tokenizer_spec`) has its files, ``vocab.bpe`` and
``encoder.json``, beside the weights; loading reads them into ``model.tokenizer`` (a ModelError names any
that is missing). Without such an entry the model is byte-level.

A fourth, optional file, ``corpus_means.safetensors``, holds the model's pretraining means (what
``ablate mean over corpus`` uses); :mod:`.corpus_means` writes, reads and validates it.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from dataclasses import fields
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save as dump_tensors

from .atomic import write_bytes, write_text
from .config import check_field_types, describe_value
from .errors import ModelError
from .model import ModelConfig, Transformer
from .tokenizer import BYTES
from .tokenizer_spec import MANIFEST_KEY, TokenizerSpec, spec_of, write_tokenizer_files

FORMAT = "circuitspec-checkpoint"
FORMAT_VERSION = 1
CONFIG_FILE, WEIGHTS_FILE, MANIFEST_FILE = "config.json", "model.safetensors", "manifest.json"
SPARSE_BELOW = 0.5  # store a matrix sparsely when at most this fraction of it is non-zero
CONFIG_KEYS = ("format", "format_version", "model", "layout")
MAX_JSON_BYTES = 16 << 20  # config.json of a 1000-layer model is about 1.5 MB
MIN_MODEL_BYTES = 256 << 20  # any model may take this much once built (an all-zero hand-built one stores almost nothing)
MAX_EXPANSION = 1024  # ... and a bigger one at most this many times its weights file
# Model config fields added after checkpoints of this format were first written (options for imported
# models, see model.py): absent means the default, which is what those checkpoints hold, and a default
# value is not written, so a circuitspec model's config.json stays as it was.
OPTIONAL_MODEL_KEYS = ("norm_weight", "norm_eps", "act_fn", "topk_fraction", "topk_sites", "bigram")
MIN_VOCAB = 128  # task text is ASCII: every model must have a token id for each of its bytes
CORRUPT = "the file is corrupt or was edited; re-copy or retrain the checkpoint"
PICKLE_SUFFIXES = (".pt", ".pth", ".bin", ".pkl", ".ckpt")


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def pack_state(model: Transformer) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Tensors to write plus their layout (which are sparse, and the shape of each parameter)."""
    tensors: dict[str, torch.Tensor] = {}
    layout: dict[str, Any] = {}
    matrices = model.weight_matrices()
    for name, p in model.named_parameters():
        t = p.detach().to("cpu", torch.float32).contiguous()
        nonzero = torch.count_nonzero(t).item()
        if name in matrices and nonzero <= SPARSE_BELOW * t.numel():
            flat = t.view(-1)
            idx = torch.nonzero(flat).view(-1)
            tensors[f"{name}.indices"] = idx.to(torch.int32)
            tensors[f"{name}.values"] = flat[idx].clone()
            layout[name] = {"shape": list(t.shape), "storage": "sparse"}
        else:
            tensors[name] = t
            layout[name] = {"shape": list(t.shape), "storage": "dense"}
    return tensors, layout


def save_checkpoint(model: Transformer, out_dir: Path | str, manifest: dict[str, Any]) -> Path:
    """Each file is replaced atomically (:mod:`.atomic`), the manifest last: a kill part-way leaves either
    the old checkpoint or one whose weights hash no longer matches its manifest, which loading reports."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tensors, layout = pack_state(model)
    weights = dump_tensors(tensors, metadata={"format": FORMAT})
    write_bytes(out / WEIGHTS_FILE, weights)
    config = {"format": FORMAT, "format_version": FORMAT_VERSION, "model": model_table(model.cfg), "layout": layout}
    write_text(out / CONFIG_FILE, json.dumps(config, indent=2) + "\n")
    full_manifest = {**manifest, "weights_sha256": hashlib.sha256(weights).hexdigest()}
    if model.tokenizer != BYTES:  # its files go beside the weights, before the manifest that names them
        write_tokenizer_files(model.tokenizer, out)
        full_manifest[MANIFEST_KEY] = spec_of(model.tokenizer).to_manifest()
    write_text(out / MANIFEST_FILE, json.dumps(full_manifest, indent=2, sort_keys=True) + "\n")
    return out


def model_table(cfg: ModelConfig) -> dict[str, Any]:
    """The ``model`` table of config.json: every field, less the optional ones left at their default."""
    defaults = ModelConfig()
    return {k: list(v) if isinstance(v, tuple) else v for k, v in cfg.to_dict().items()
            if k not in OPTIONAL_MODEL_KEYS or v != getattr(defaults, k)}


def _require_file(path: Path, hint: str) -> None:
    """ModelError unless ``path`` is a regular file (a FIFO or a device could block or never end)."""
    if not path.is_file():
        raise ModelError(f"{path}: {'not a regular file' if path.exists() or path.is_symlink() else 'missing'}", hint=hint)


def _read_json(path: Path) -> dict[str, Any]:
    _require_file(path, f"a checkpoint directory holds {CONFIG_FILE}, {WEIGHTS_FILE} and {MANIFEST_FILE}")
    size = path.stat().st_size
    if size > MAX_JSON_BYTES:
        raise ModelError(f"{path}: {size} bytes, more than a checkpoint's JSON file may hold ({MAX_JSON_BYTES})", hint=CORRUPT)
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as e:
        raise ModelError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})", hint=CORRUPT) from None
    except OSError as e:
        raise ModelError(f"{path}: cannot be read ({e.strerror})") from None
    try:
        data = json.loads(text, parse_constant=_reject_constant)
    except RecursionError:
        raise ModelError(f"{path}: not valid JSON (nested too deeply)", hint=CORRUPT) from None
    except ValueError as e:  # malformed, NaN/Infinity, or an integer of thousands of digits
        raise ModelError(f"{path}: not valid JSON ({e})", hint=CORRUPT) from None
    if not isinstance(data, dict):
        raise ModelError(f"{path}: expected a JSON object, got {describe_value(data)}", hint=CORRUPT)
    return data


def _listing(keys: list[Any], limit: int = 5) -> str:
    """``'a', 'b' and 3 more``: keys from a damaged file can be many, long, or not strings."""
    shown = ", ".join(describe_value(k) for k in keys[:limit])
    return shown + (f" and {len(keys) - limit} more" if len(keys) > limit else "")


def _difference(missing: list[str], extra: list[Any]) -> str:
    return "; ".join(f"{what} {_listing(keys)}" for what, keys in (("missing", missing), ("unexpected", extra)) if keys)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def read_config(ckpt_dir: Path | str) -> tuple[ModelConfig, dict[str, Any]]:
    """The model config and raw config file of a checkpoint, fully validated (no weights read)."""
    path = Path(ckpt_dir)
    if not path.is_dir():
        raise ModelError(f"{path}: no such checkpoint directory", hint="run `circuitspec models` to list shipped models")
    file = path / CONFIG_FILE
    if not os.path.lexists(file) and (path / "beeg_config.json").is_file():
        raise ModelError(f"{path}: a circuit_sparsity checkpoint, not a circuitspec one",
                         hint=f"convert it once: circuitspec convert --from circuit-sparsity {path} -o OUT, then use OUT")
    if not os.path.lexists(file) and (path / "tl_config.json").is_file():
        raise ModelError(f"{path}: a TransformerLens model directory, not a circuitspec one",
                         hint=f"convert it once: circuitspec convert --from transformer-lens {path} -o OUT, then use OUT")
    config = _read_json(file)
    if config.get("format") != FORMAT:
        raise ModelError(f"{file}: not a circuitspec checkpoint (format={describe_value(config.get('format'))})")
    version = config.get("format_version")
    if type(version) is not int or version != FORMAT_VERSION:
        raise ModelError(f"{file}: format version {describe_value(version)} is not supported (this circuitspec reads {FORMAT_VERSION})")
    unknown = sorted(set(config) - set(CONFIG_KEYS))
    if unknown:
        raise ModelError(f"{file}: unknown keys {_listing(unknown)}",
                         hint=f"a checkpoint's {CONFIG_FILE} holds exactly {', '.join(CONFIG_KEYS)}")
    cfg = _model_config(config.get("model"), file)
    check_layout(config.get("layout"), cfg, file)
    return cfg, config


def _model_config(table: Any, file: Path) -> ModelConfig:
    """The ``model`` table as a ModelConfig: every field present, typed and in range (defaults would
    silently build some other model)."""
    if not isinstance(table, dict):
        what = "no `model` table" if table is None else f"`model` must be an object, got {describe_value(table)}"
        raise ModelError(f"{file}: {what}", hint="the model's shape is never guessed; " + CORRUPT)
    known = [f.name for f in fields(ModelConfig)]
    required = [k for k in known if k not in OPTIONAL_MODEL_KEYS]
    unknown, missing = sorted(set(table) - set(known)), [k for k in required if k not in table]
    if unknown or missing:
        problem = f"unknown keys {_listing(unknown)}" if unknown else f"missing keys {_listing(missing)}"
        raise ModelError(f"{file}: `model` table: {problem}",
                         hint=f"it holds exactly {', '.join(required)}, and optionally {', '.join(OPTIONAL_MODEL_KEYS)}")
    try:
        check_field_types(ModelConfig, table)
        cfg = ModelConfig.from_dict(table)
    except (TypeError, ValueError) as e:
        raise ModelError(f"{file}: `model` table: {str(e).removeprefix('model config: ')}", hint=CORRUPT) from None
    if cfg.d_vocab < MIN_VOCAB:
        raise ModelError(f"{file}: `model` table: d_vocab {cfg.d_vocab} is below the {MIN_VOCAB} ASCII byte tokens task text uses",
                         hint=CORRUPT)
    return cfg


def parameter_shapes(cfg: ModelConfig) -> dict[str, tuple[int, ...]]:
    """Every parameter of ``Transformer(cfg)`` with its shape, in order, without building the model
    (which, for a corrupt config, could take more memory than there is)."""
    H, D, dh, M, V = cfg.n_heads, cfg.d_model, cfg.d_head, cfg.d_mlp, cfg.d_vocab
    shapes: dict[str, tuple[int, ...]] = {"embed.W_E": (V, D), "pos_embed.W_pos": (cfg.n_ctx, D)}
    for i in range(cfg.n_layers):
        a, m = f"blocks.{i}.attn.", f"blocks.{i}.mlp."
        if cfg.norm_weight:
            shapes[f"blocks.{i}.ln1.w"] = (D,)
        shapes.update({a + "W_Q": (H, D, dh), a + "W_K": (H, D, dh), a + "W_V": (H, D, dh), a + "W_O": (H, dh, D),
                       a + "b_Q": (H, dh), a + "b_K": (H, dh), a + "b_V": (H, dh), a + "b_O": (D,)})
        if cfg.attn_sink:
            shapes[a + "sink"] = (H,)
        if cfg.norm_weight:
            shapes[f"blocks.{i}.ln2.w"] = (D,)
        shapes.update({m + "W_in": (D, M), m + "b_in": (M,), m + "W_out": (M, D), m + "b_out": (D,)})
    if cfg.norm_weight:
        shapes["ln_final.w"] = (D,)
    shapes.update({"unembed.W_U": (D, V), "unembed.b_U": (V,)})
    if cfg.bigram:
        shapes["unembed.bigram"] = (V, V)
    return shapes


def parameter_count(cfg: ModelConfig) -> int:
    return 4 + cfg.n_layers * (12 + cfg.attn_sink + 2 * cfg.norm_weight) + cfg.norm_weight + cfg.bigram


def model_bytes(cfg: ModelConfig) -> int:
    """Memory the built model takes: float32 parameters plus every layer's causal mask (n_ctx^2 bools)."""
    return 4 * sum(math.prod(shape) for shape in parameter_shapes(cfg).values()) + cfg.n_layers * cfg.n_ctx ** 2


def _is_matrix(name: str) -> bool:
    return name.split(".")[-1].startswith("W_")


def check_layout(layout: Any, cfg: ModelConfig, file: Path) -> None:
    """ModelError unless ``layout`` names exactly the parameters of ``cfg`` with their shapes, each stored
    dense or (a weight matrix only) sparse, as :func:`pack_state` writes it."""
    if not isinstance(layout, dict):
        raise ModelError(f"{file}: no `layout` object" if layout is None else f"{file}: `layout` must be an object", hint=CORRUPT)
    if parameter_count(cfg) != len(layout) and parameter_count(cfg) > 2 * len(layout) + 16:  # too many to list
        raise ModelError(f"{file}: the layout lists {len(layout)} parameters, the model config implies {parameter_count(cfg)} "
                         f"(n_layers={cfg.n_layers})", hint=CORRUPT)
    expected = parameter_shapes(cfg)
    if set(layout) != set(expected):
        missing, extra = sorted(set(expected) - set(layout)), sorted(set(layout) - set(expected))
        raise ModelError(f"{file}: the layout does not match the model config ({_difference(missing, extra)})", hint=CORRUPT)
    for name, shape in expected.items():
        entry = layout[name]
        if not isinstance(entry, dict) or set(entry) != {"shape", "storage"}:
            got = f"keys {_listing(sorted(map(str, entry)))}" if isinstance(entry, dict) else describe_value(entry)
            raise ModelError(f"{file}: layout entry {name} must be an object of `shape` and `storage`, got {got}", hint=CORRUPT)
        storage, got = entry["storage"], entry["shape"]
        if storage not in ("dense", "sparse") or (storage == "sparse" and not _is_matrix(name)):
            raise ModelError(f"{file}: layout entry {name}: storage {describe_value(storage)} is not "
                             f"{'dense or sparse' if _is_matrix(name) else 'dense'}", hint=CORRUPT)
        if not (isinstance(got, list) and all(type(n) is int for n in got)) or tuple(got) != shape:
            shown = tuple(got) if isinstance(got, list) and len(got) <= 8 else describe_value(got)
            raise ModelError(f"{file}: {name} has shape {shown} in the layout but the config implies {shape}", hint=CORRUPT)


def read_manifest(ckpt_dir: Path | str) -> dict[str, Any]:
    return _read_json(Path(ckpt_dir) / MANIFEST_FILE)


def load_checkpoint(ckpt_dir: Path | str, device: str | torch.device = "cpu") -> Transformer:
    path = Path(ckpt_dir)
    cfg, config = read_config(path)
    manifest = read_manifest(path)
    weights = path / WEIGHTS_FILE
    _require_file(weights, _missing_weights_hint(path))
    expected = manifest.get("weights_sha256")
    if not isinstance(expected, str):
        raise ModelError(f"{path / MANIFEST_FILE}: no weights_sha256 string", hint=CORRUPT)
    if expected != sha256_file(weights):
        raise ModelError(f"{weights}: content hash does not match {MANIFEST_FILE}",
                         hint="the weights file is corrupt or was replaced; re-copy or retrain the checkpoint")
    size, need = weights.stat().st_size, model_bytes(cfg)
    if need > max(MIN_MODEL_BYTES, MAX_EXPANSION * size):
        raise ModelError(f"{path / CONFIG_FILE}: the model config implies a model of {need:,} bytes, more than a "
                         f"{size:,}-byte weights file can describe (at most {MAX_EXPANSION}x its size, or {MIN_MODEL_BYTES >> 20} MiB)",
                         hint=CORRUPT)
    tokenizer = TokenizerSpec.from_manifest(manifest.get(MANIFEST_KEY), path / MANIFEST_FILE).load(path, cfg.d_vocab)
    shapes = parameter_shapes(cfg)
    state = unpack_state(_read_tensors(weights, config["layout"], shapes), config["layout"], shapes, weights)
    try:
        model = Transformer(cfg)
        model.load_state_dict(state)
    except (MemoryError, RuntimeError) as e:  # the size check passed, yet this machine lacks the memory
        raise ModelError(f"{path}: cannot build the model ({str(e).splitlines()[0] if str(e) else type(e).__name__})") from None
    model.eval()
    model.checkpoint_dir, model.weights_sha256 = path.resolve(), expected
    model.tokenizer = tokenizer
    return model.to(device)


def _missing_weights_hint(path: Path) -> str:
    pickles = sorted(p.name for p in path.iterdir() if p.suffix in PICKLE_SUFFIXES)
    if pickles:
        return (f"{pickles[0]} looks like a torch pickle, which circuitspec never loads (unpickling runs code); "
                "save the model with save_checkpoint")
    return "the checkpoint is incomplete; re-copy or retrain it"


def _read_tensors(weights: Path, layout: dict[str, Any], shapes: dict[str, tuple[int, ...]]) -> dict[str, torch.Tensor]:
    """The tensors of ``weights``, read only after its header is checked against the layout."""
    try:
        with safe_open(str(weights), framework="pt") as f:
            header = {key: (f.get_slice(key).get_dtype(), tuple(f.get_slice(key).get_shape())) for key in f.keys()}
            _check_header(header, layout, shapes, weights)
            return {key: f.get_tensor(key) for key in header}
    except (SafetensorError, OSError, ValueError) as e:
        with open(weights, "rb") as f:
            start = f.read(2)
        if start[:1] == b"\x80" or start == b"PK":  # a pickle, or the zip archive torch.save writes
            raise ModelError(f"{weights}: a torch pickle, not safetensors; circuitspec never unpickles (it would run code)",
                             hint="load it in a trusted session with torch.load(weights_only=True), "
                                  "and save it with save_checkpoint") from None
        raise ModelError(f"{weights}: cannot be read as safetensors ({str(e).splitlines()[0]})", hint=CORRUPT) from None


def _check_header(header: dict[str, tuple[str, tuple[int, ...]]], layout: dict[str, Any],
                  shapes: dict[str, tuple[int, ...]], weights: Path) -> None:
    """ModelError unless the file holds exactly the tensors the layout names: dense ones float32 of the
    parameter's shape, sparse ones as int32 indices and float32 values, 1-D, of one length <= its size."""
    wanted: dict[str, tuple[str, tuple[int, ...] | None]] = {}
    for name, shape in shapes.items():
        if layout[name]["storage"] == "dense":
            wanted[name] = ("F32", shape)
        else:
            wanted[f"{name}.indices"], wanted[f"{name}.values"] = ("I32", None), ("F32", None)
    missing, extra = sorted(set(wanted) - set(header)), sorted(set(header) - set(wanted))
    if missing or extra:
        raise ModelError(f"{weights}: tensors do not match {CONFIG_FILE}'s layout ({_difference(missing, extra)})", hint=CORRUPT)
    for key, (dtype, shape) in wanted.items():
        got_dtype, got_shape = header[key]
        if got_dtype != dtype:
            raise ModelError(f"{weights}: {key} is stored as {got_dtype}, expected {dtype}", hint=CORRUPT)
        if shape is not None and got_shape != shape:
            raise ModelError(f"{weights}: {key} has shape {got_shape}, the config implies {shape}", hint=CORRUPT)
    for name, shape in shapes.items():
        if layout[name]["storage"] == "sparse":
            idx, values = header[f"{name}.indices"][1], header[f"{name}.values"][1]
            if len(idx) != 1 or idx != values or idx[0] > math.prod(shape):
                raise ModelError(f"{weights}: {name}: sparse indices {idx} and values {values} must be 1-D, of one length, "
                                 f"at most {math.prod(shape)}", hint=CORRUPT)


def unpack_state(tensors: dict[str, torch.Tensor], layout: dict[str, Any], shapes: dict[str, tuple[int, ...]],
                 source: Path) -> dict[str, torch.Tensor]:
    """Dense parameters from checked tensors; ModelError on sparse indices that are not sorted, distinct
    and in range, or on a NaN or infinite value (a model that gives meaningless verdicts)."""
    state = {}
    for name, shape in shapes.items():
        stored = tensors[name] if layout[name]["storage"] == "dense" else tensors[f"{name}.values"]
        if not bool(torch.isfinite(stored).all()):
            raise ModelError(f"{source}: {name} holds NaN or infinite values",
                             hint="the training run diverged or the file was damaged; retrain or re-copy the checkpoint")
        if layout[name]["storage"] == "dense":
            state[name] = stored
            continue
        idx, size = tensors[f"{name}.indices"].long(), math.prod(shape)
        if idx.numel() and (idx[0] < 0 or idx[-1] >= size or not bool((idx[1:] > idx[:-1]).all())):
            raise ModelError(f"{source}: {name}: sparse indices are not sorted, distinct and within the matrix", hint=CORRUPT)
        dense = torch.zeros(size, dtype=torch.float32)
        dense[idx] = stored
        state[name] = dense.view(shape)
    return state
