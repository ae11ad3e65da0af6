"""Read a TransformerLens ``HookedTransformer`` (TransformerLens 2.x) into circuitspec's model.

Two ways in, one conversion:

- :func:`from_hooked_transformer` takes the model object (or anything with ``.cfg`` and ``.state_dict()``;
  TransformerLens itself is never imported here);
- :func:`load_transformer_lens` reads a directory in the documented format: ``tl_config.json`` (the
  ``HookedTransformerConfig`` as JSON, ``cfg.to_dict()`` with the dtype written as a string) and
  ``tl_model.safetensors`` or ``tl_model.pt`` (``model.state_dict()``; the safetensors file is read when
  both are there, a ``.pt`` only with ``torch.load(weights_only=True)``). :func:`save_hooked_transformer`
  writes such a directory.

TransformerLens 3.x and later have no ``HookedTransformer``; versions 2.x (tested: 2.18.0) are supported.

Strict, as :mod:`.convert_circuit_sparsity`: every config field is known and its value reproducible (an
unknown field is an error unless named in ``drop_keys``), and every tensor is used, with the shape the
config implies; one-line ``ModelError`` otherwise.

What it reproduces: GPT-2-style models with learned position embeddings, any biases, tied or untied
embeddings (two tensors either way), ``act_fn`` relu, gelu (exact) or the tanh GELUs (``gelu_new``,
``gelu_fast``, ``gelu_pytorch_tanh``), and each ``normalization_type`` but None:

- ``RMS`` / ``RMSPre``: our RMSNorm with (``norm_weight``) or without a gain, the same eps; every
  parameter and activation as in TransformerLens (but ``hook_normalized``, which is after the gain here).
- ``LN`` / ``LNPre``: folded, exactly as TransformerLens's own ``process_weights_(fold_ln=True,
  center_writing_weights=True, center_unembed=False)`` does: every matrix and bias that writes to the
  residual stream is centred (the residual stream then has mean 0 everywhere, and every read of it is
  a LayerNorm, which subtracts the mean anyway: no output changes), so each LayerNorm is a gain-free
  RMSNorm with the same eps; its gain and bias move into the matrices and biases that read it (``W_Q``,
  ``W_K``, ``W_V``, ``W_in``, ``W_U``), which are then centred too. The logits are the original model's
  (up to float rounding); the activations are those of TransformerLens's folded model (the residual
  stream centred, ``hook_normalized`` before the gain). Circuits are then claims about the folded
  weights, which is how TransformerLens analyses such models by default.

Hook names are TransformerLens's (:func:`hook_name_map`); ``ln*.hook_scale`` holds 1/scale here.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from .checkpoint import parameter_shapes
from .errors import ModelError
from .foreign_files import read_json_config, read_state_dict
from .model import ModelConfig, Transformer
from .tokenizer_spec import KNOWN_BPE, TokenizerSpec

CONFIG_FILE = "tl_config.json"
WEIGHT_FILES = ("tl_model.safetensors", "tl_model.pt")
SUPPORTED_VERSIONS = "TransformerLens 2.x (tested with 2.18.0); 3.x and later have no HookedTransformer"
FLOAT_DTYPES = (torch.float32, torch.bfloat16, torch.float16, torch.float64)

ACT_FNS = {"relu": "relu", "gelu": "gelu", "gelu_new": "gelu_tanh", "gelu_fast": "gelu_tanh",
           "gelu_pytorch_tanh": "gelu_tanh"}
NORMS = ("LN", "LNPre", "RMS", "RMSPre")
REQUIRED = ("n_layers", "d_model", "n_ctx", "d_head", "n_heads", "d_mlp", "d_vocab")
# Fields that cannot change what a model computes in eval mode: names, bookkeeping, where it runs,
# initialisation, optional hook points, the tokenizer's BOS habit, and fields that only matter with an
# option refused below (window_size with local attention, rotary_* with rotary embeddings, ...).
IGNORED = ("model_name", "use_attn_result", "use_split_qkv_input", "use_hook_mlp_in", "use_attn_in", "original_architecture",
           "from_checkpoint", "checkpoint_index", "checkpoint_label_type", "checkpoint_value", "window_size", "attn_types",
           "init_mode", "device", "n_devices", "seed", "initializer_range", "init_weights", "rotary_dim", "n_params",
           "use_hook_tokens", "default_prepend_bos", "dtype", "tokenizer_prepends_bos", "rotary_base", "rotary_base_local",
           "trust_remote_code", "rotary_adjacent_pairs", "ungroup_grouped_query_attention", "experts_per_token",
           "relative_attention_max_distance", "relative_attention_num_buckets", "decoder_start_token_id",
           "tie_word_embeddings", "NTK_by_parts_low_freq_factor", "NTK_by_parts_high_freq_factor", "NTK_by_parts_factor",
           "NTK_original_ctx_len")
# Fields whose every value but this one is an architecture circuitspec's model does not have.
MUST_BE: dict[str, Any] = {"positional_embedding_type": "standard", "attn_only": False, "parallel_attn_mlp": False,
                           "gated_mlp": False, "use_local_attn": False, "attention_dir": "causal", "final_rms": False,
                           "use_qk_norm": False, "scale_attn_by_inverse_layer_idx": False, "use_attn_scale": True,
                           "n_key_value_heads": None, "num_experts": None, "post_embedding_ln": False,
                           "use_normalization_before_and_after": False, "attn_scores_soft_cap": -1.0,
                           "output_logits_soft_cap": -1.0, "load_in_4bit": False, "use_NTK_by_parts_rope": False}
MAPPED = ("act_fn", "eps", "normalization_type", "attn_scale", "d_vocab_out", "tokenizer_name")
DEFAULTS: dict[str, Any] = {"eps": 1e-5, "normalization_type": "LN", "attn_scale": -1.0, "d_vocab_out": -1,
                            "tokenizer_name": None, **MUST_BE}


def _check_int(file: Path | str, key: str, value: Any) -> None:
    if type(value) is not int or value < 1:
        raise ModelError(f"{file}: {key} must be a positive integer, got {value!r}"[:300])


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _same(value: Any, expected: Any) -> bool:
    """``value`` is ``expected`` (None and booleans by identity, numbers by value: -1 and -1.0 alike)."""
    if expected is None or isinstance(expected, bool):
        return value is expected
    if _is_number(expected):
        return _is_number(value) and value == expected
    return value == expected


def config_from_tl(data: dict[str, Any], source: Path | str = CONFIG_FILE,
                   drop_keys: tuple[str, ...] = ()) -> tuple[ModelConfig, dict[str, Any]]:
    """Our ModelConfig for a ``HookedTransformerConfig`` as a dict, and the settings the state dict
    depends on (``normalization_type``, ``tokenizer_name``). ModelError naming the field for an unknown
    field (unless in ``drop_keys``) or a value this model cannot reproduce."""
    file = source
    data = dict(data)
    known = set(REQUIRED) | set(IGNORED) | set(MUST_BE) | set(MAPPED)
    unknown = sorted(k for k in data if k not in known and k not in drop_keys)
    if unknown:
        raise ModelError(f"{file}: unknown config fields {', '.join(map(repr, unknown))} (this converter knows TransformerLens 2.x)",
                         hint="if they cannot change the model's output, name each with --drop-config-key to convert anyway")
    missing = [k for k in REQUIRED if data.get(k) is None]
    if missing:
        raise ModelError(f"{file}: missing config fields {', '.join(missing)} (the model's shape is never guessed)")
    c = {**DEFAULTS, **{k: v for k, v in data.items() if k in known}}
    for key in REQUIRED:
        _check_int(file, key, c[key])
    for key, value in MUST_BE.items():
        if not _same(c[key], value):
            raise ModelError(f"{file}: {key}={c[key]!r} is not supported by circuitspec's model (only {value!r})"[:300])
    norm = c["normalization_type"]
    if norm not in NORMS:
        raise ModelError(f"{file}: normalization_type={norm!r} is not supported by circuitspec's model (only {', '.join(NORMS)})"[:300])
    if c["act_fn"] not in ACT_FNS:
        raise ModelError(f"{file}: act_fn={c['act_fn']!r} is not supported by circuitspec's model (only {', '.join(ACT_FNS)})"[:300])
    if c["d_vocab_out"] not in (-1, c["d_vocab"]):
        raise ModelError(f"{file}: d_vocab_out={c['d_vocab_out']!r} differs from d_vocab={c['d_vocab']} (circuitspec's model has one vocabulary)"[:300])
    scale = c["attn_scale"]
    if not _is_number(scale) or (scale != -1 and not math.isclose(scale, math.sqrt(c["d_head"]), rel_tol=1e-6)):
        raise ModelError(f"{file}: attn_scale={scale!r} is not supported by circuitspec's model (only sqrt(d_head))"[:300])
    eps = c["eps"]
    if not _is_number(eps) or not 0 < eps < 1:
        raise ModelError(f"{file}: eps must be a number in (0, 1), got {eps!r}"[:300])
    try:
        cfg = ModelConfig(n_layers=c["n_layers"], d_model=c["d_model"], n_heads=c["n_heads"], d_head=c["d_head"],
                          d_mlp=c["d_mlp"], n_ctx=c["n_ctx"], d_vocab=c["d_vocab"], act_topk=None, attn_sink=False,
                          norm_weight=norm == "RMS", norm_eps=float(eps), act_fn=ACT_FNS[c["act_fn"]])
    except ValueError as e:
        raise ModelError(f"{file}: {str(e).removeprefix('model config: ')}") from None
    return cfg, {"normalization_type": norm, "tokenizer_name": c["tokenizer_name"]}


def tl_shapes(cfg: ModelConfig, norm: str) -> dict[str, tuple[int, ...]]:
    """Every tensor a ``HookedTransformer`` state dict holds for this config, with its shape (the buffers
    ``blocks.{L}.attn.mask`` and ``IGNORE`` aside: see :func:`convert_tl_state`)."""
    H, D, dh, M, V = cfg.n_heads, cfg.d_model, cfg.d_head, cfg.d_mlp, cfg.d_vocab
    norm_params = {"LN": {"w": (D,), "b": (D,)}, "RMS": {"w": (D,)}}.get(norm, {})
    shapes: dict[str, tuple[int, ...]] = {"embed.W_E": (V, D), "pos_embed.W_pos": (cfg.n_ctx, D)}
    for i in range(cfg.n_layers):
        b = f"blocks.{i}."
        shapes.update({b + f"ln1.{k}": s for k, s in norm_params.items()})
        shapes.update({b + "attn.W_Q": (H, D, dh), b + "attn.W_K": (H, D, dh), b + "attn.W_V": (H, D, dh), b + "attn.W_O": (H, dh, D),
                       b + "attn.b_Q": (H, dh), b + "attn.b_K": (H, dh), b + "attn.b_V": (H, dh), b + "attn.b_O": (D,)})
        shapes.update({b + f"ln2.{k}": s for k, s in norm_params.items()})
        shapes.update({b + "mlp.W_in": (D, M), b + "mlp.b_in": (M,), b + "mlp.W_out": (M, D), b + "mlp.b_out": (D,)})
    shapes.update({f"ln_final.{k}": s for k, s in norm_params.items()})
    shapes.update({"unembed.W_U": (D, V), "unembed.b_U": (V,)})
    return shapes


def _listing(keys: list[str]) -> str:
    return f"{', '.join(keys[:4])}{f' and {len(keys) - 4} more' if len(keys) > 4 else ''}"


def convert_tl_state(cfg: ModelConfig, state: dict[str, torch.Tensor], norm: str,
                     source: Path | str = "state dict") -> dict[str, torch.Tensor]:
    """Our parameters (``Transformer(cfg).state_dict()`` names) from a ``HookedTransformer`` state dict,
    strictly; LayerNorm folded (module docstring)."""
    state = dict(state)
    T = cfg.n_ctx
    for i in range(cfg.n_layers):  # the causal mask and the -inf fill TransformerLens stores: rebuilt, so only checked
        mask, ignore = state.pop(f"blocks.{i}.attn.mask", None), state.pop(f"blocks.{i}.attn.IGNORE", None)
        if mask is not None and (tuple(mask.shape) != (T, T) or not torch.equal(mask.bool(), torch.ones(T, T).tril().bool())):
            raise ModelError(f"{source}: blocks.{i}.attn.mask is not the causal mask of n_ctx {T}")
        if ignore is not None and (ignore.numel() != 1 or float(ignore) != float("-inf")):
            raise ModelError(f"{source}: blocks.{i}.attn.IGNORE is not -inf")
    expected = tl_shapes(cfg, norm)
    missing, extra = [k for k in expected if k not in state], sorted(k for k in state if k not in expected)
    if missing or extra:
        parts = [f"{what} {_listing(keys)}" for what, keys in (("missing", missing), ("unexpected", extra)) if keys]
        raise ModelError(f"{source}: tensors do not match the config ({'; '.join(parts)})",
                         hint="the weights belong to another config, or the file is incomplete")
    t: dict[str, torch.Tensor] = {}
    for key, shape in expected.items():
        value = state[key]
        if not isinstance(value, torch.Tensor):
            raise ModelError(f"{source}: {key} is not a tensor")
        if tuple(value.shape) != shape:
            raise ModelError(f"{source}: {key} has shape {tuple(value.shape)}, the config implies {shape}")
        if value.dtype not in FLOAT_DTYPES:
            raise ModelError(f"{source}: {key} is {str(value.dtype).removeprefix('torch.')}, expected a float dtype")
        value = value.detach().to("cpu", torch.float64)  # folded in float64, stored as float32
        if not bool(torch.isfinite(value).all()):
            raise ModelError(f"{source}: {key} holds NaN or infinite values")
        t[key] = value
    out = {k: v for k, v in t.items() if not k.split(".")[-2].startswith("ln") and not k.startswith("ln_final")}
    if norm == "RMS":
        for i in range(cfg.n_layers):
            out[f"blocks.{i}.ln1.w"], out[f"blocks.{i}.ln2.w"] = t[f"blocks.{i}.ln1.w"], t[f"blocks.{i}.ln2.w"]
        out["ln_final.w"] = t["ln_final.w"]
    if norm in ("LN", "LNPre"):
        _fold_layer_norm(cfg, out, t if norm == "LN" else None)
    assert set(out) == set(parameter_shapes(cfg)), "the mapping above must name every parameter"
    return {k: v.to(torch.float32).contiguous() for k, v in out.items()}


def _fold_layer_norm(cfg: ModelConfig, p: dict[str, torch.Tensor], ln: dict[str, torch.Tensor] | None) -> None:
    """In place: centre every write to the residual stream; with ``ln`` (an LN model's tensors), fold each
    LayerNorm's gain and bias into the weights that read it and centre those (TransformerLens's
    fold_layer_norm + center_writing_weights, in the same order of operations)."""

    def fold(w_key: str, b_key: str, ln_name: str, d_axis: int) -> None:
        if ln is None:
            return
        w, b = ln[f"{ln_name}.w"], ln[f"{ln_name}.b"]
        shape = [1] * p[w_key].dim()
        shape[d_axis] = -1
        p[b_key] = p[b_key] + (p[w_key] * b.view(shape)).sum(d_axis)
        p[w_key] = p[w_key] * w.view(shape)
        p[w_key] = p[w_key] - p[w_key].mean(d_axis, keepdim=True)

    for i in range(cfg.n_layers):
        a = f"blocks.{i}."
        for kind in "QKV":
            fold(a + f"attn.W_{kind}", a + f"attn.b_{kind}", a + "ln1", 1)
        fold(a + "mlp.W_in", a + "mlp.b_in", a + "ln2", 0)
    fold("unembed.W_U", "unembed.b_U", "ln_final", 0)
    for key in ["embed.W_E", "pos_embed.W_pos"] + [f"blocks.{i}.{m}" for i in range(cfg.n_layers)
                                                   for m in ("attn.W_O", "attn.b_O", "mlp.W_out", "mlp.b_out")]:
        p[key] = p[key] - p[key].mean(-1, keepdim=True)


def _build(cfg: ModelConfig, params: dict[str, torch.Tensor]) -> Transformer:
    model = Transformer(cfg)
    model.load_state_dict(params)
    return model.eval()


def _cfg_dict(cfg: Any) -> dict[str, Any]:
    data = cfg.to_dict() if hasattr(cfg, "to_dict") else dict(cfg)
    def plain(v: Any) -> Any:  # JSON-ready: the dtype as its name, numpy scalars (attn_scale) as Python numbers
        if isinstance(v, torch.dtype):
            return str(v).removeprefix("torch.")
        if isinstance(v, float) and type(v) is not float:
            return float(v)
        if isinstance(v, int) and not isinstance(v, bool) and type(v) is not int:
            return int(v)
        return v
    return {k: plain(v) for k, v in data.items()}


# TransformerLens's tokenizer_name is the Hugging Face name of the model it came with: the GPT-2 family
# shares GPT-2's BPE.
TOKENIZER_ALIASES = {"gpt2-medium": "gpt2", "gpt2-large": "gpt2", "gpt2-xl": "gpt2", "distilgpt2": "gpt2"}


def check_tokenizer(tokenizer_name: Any, source: Path | str, drop_keys: tuple[str, ...] = ()) -> TokenizerSpec | None:
    """The tokenizer a config names: None for none (the ids are read as bytes) or for a dropped
    ``tokenizer_name``; a BPE circuitspec knows (its files beside the weights); ModelError otherwise."""
    if tokenizer_name is None or "tokenizer_name" in drop_keys:
        return None
    name = TOKENIZER_ALIASES.get(tokenizer_name, tokenizer_name) if isinstance(tokenizer_name, str) else None
    if name in KNOWN_BPE:
        return KNOWN_BPE[name]
    raise ModelError(f"{source}: tokenizer_name={tokenizer_name!r} is not a tokenizer circuitspec can read"[:300],
                     hint=f"circuitspec reads bytes and {', '.join(KNOWN_BPE)}; --drop-config-key tokenizer_name converts "
                          "anyway with the ids read as bytes")


def from_hooked_transformer(model: Any, drop_keys: tuple[str, ...] = ()) -> tuple[Transformer, dict[str, Any]]:
    """circuitspec's model (eval mode, on the CPU, float32) computing what ``model`` (a TransformerLens 2.x
    ``HookedTransformer``) computes, and what the conversion read (for a manifest). The model's tokenizer
    is bytes: set ``.tokenizer`` for another (``info["tokenizer_name"]`` names the source's; a name
    circuitspec cannot read is an error unless ``tokenizer_name`` is in ``drop_keys``)."""
    raw = _cfg_dict(model.cfg)
    source = f"HookedTransformer {raw.get('model_name', '')}".strip()
    cfg, settings = config_from_tl(raw, source, drop_keys)
    check_tokenizer(settings["tokenizer_name"], source, drop_keys)
    ours = _build(cfg, convert_tl_state(cfg, model.state_dict(), settings["normalization_type"], source))
    return ours, _info(raw, settings, drop_keys, None)


def _info(raw: dict[str, Any], settings: dict[str, Any], drop_keys: tuple[str, ...], weights: str | None) -> dict[str, Any]:
    folded = settings["normalization_type"] in ("LN", "LNPre")
    return {"source_format": "transformer-lens", "source_config": raw, "source_weights": weights,
            "dropped_config_keys": sorted(k for k in raw if k in drop_keys), "tokenizer_name": settings["tokenizer_name"],
            "processing": "fold_ln + center_writing_weights (LayerNorm folded)" if folded else "none"}


def _read_config(path: Path) -> dict[str, Any]:
    return read_json_config(path / CONFIG_FILE, "a TransformerLens model directory holds tl_config.json and tl_model.safetensors or tl_model.pt")


def _read_state(path: Path) -> tuple[dict[str, torch.Tensor], Path]:
    return read_state_dict(path, WEIGHT_FILES, "save the model's state_dict() beside tl_config.json")


def is_transformer_lens_dir(path: Path) -> bool:
    return (Path(path) / CONFIG_FILE).is_file()


def load_transformer_lens(path: Path | str, drop_keys: tuple[str, ...] = ()) -> tuple[Transformer, dict[str, Any]]:
    """The model of a TransformerLens directory (``tl_config.json`` + ``tl_model.safetensors``/``.pt``),
    eval mode, and what the conversion read. Its tokenizer is left as bytes: :func:`tokenizer_spec`."""
    path = Path(path)
    if not path.is_dir():
        raise ModelError(f"{path}: no such directory",
                         hint="name a directory holding tl_config.json and tl_model.safetensors (save_hooked_transformer writes one)")
    raw = _read_config(path)
    cfg, settings = config_from_tl(raw, path / CONFIG_FILE, drop_keys)
    check_tokenizer(settings["tokenizer_name"], path / CONFIG_FILE, drop_keys)
    state, weights = _read_state(path)
    model = _build(cfg, convert_tl_state(cfg, state, settings["normalization_type"], weights))
    return model, _info(raw, settings, drop_keys, weights.name)


def tokenizer_spec(path: Path | str, drop_keys: tuple[str, ...] = ()) -> TokenizerSpec | None:
    """The BPE a TransformerLens directory's config names (its files beside it), or None for bytes."""
    path = Path(path)
    return check_tokenizer(_read_config(path).get("tokenizer_name"), path / CONFIG_FILE, drop_keys)


def save_hooked_transformer(model: Any, directory: Path | str, weights: str = "safetensors") -> Path:
    """Write ``model`` (a ``HookedTransformer``) in the format :func:`load_transformer_lens` reads:
    ``tl_config.json`` and ``tl_model.safetensors`` (``weights="pt"``: ``tl_model.pt``)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    config = _cfg_dict(model.cfg)
    (directory / CONFIG_FILE).write_text(json.dumps(config, indent=1, default=str) + "\n")
    state = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    if weights == "safetensors":
        save_file(state, str(directory / WEIGHT_FILES[0]))
    elif weights == "pt":
        torch.save(state, directory / WEIGHT_FILES[1])
    else:
        raise ValueError(f"weights must be safetensors or pt, got {weights!r}")
    return directory


def hook_name_map(n_layers: int) -> dict[str, str]:
    """TransformerLens hook names -> ours: the same names, one to one, for every hook both models have.
    Shapes agree; ``ln*.hook_scale`` is TransformerLens's scale and our 1/scale; with ``normalization_type``
    RMS, our ``ln*.hook_normalized`` is after the gain ``w``, TransformerLens's before it. TransformerLens's optional
    points (``hook_attn_in``, ``hook_q_input``…, ``hook_mlp_in``, ``attn.hook_result``, ``hook_tokens``)
    have no counterpart; ``hook_logits`` is only ours."""
    names = ["hook_embed", "hook_pos_embed"]
    for i in range(n_layers):
        b = f"blocks.{i}."
        names += [b + n for n in ("hook_resid_pre", "ln1.hook_scale", "ln1.hook_normalized", "attn.hook_q", "attn.hook_k",
                                  "attn.hook_v", "attn.hook_attn_scores", "attn.hook_pattern", "attn.hook_z", "hook_attn_out",
                                  "hook_resid_mid", "ln2.hook_scale", "ln2.hook_normalized", "mlp.hook_pre", "mlp.hook_post",
                                  "hook_mlp_out", "hook_resid_post")]
    names += ["ln_final.hook_scale", "ln_final.hook_normalized"]
    return {n: n for n in names}
