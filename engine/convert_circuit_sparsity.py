"""Read a checkpoint of OpenAI's circuit_sparsity release (Gao et al. 2025) into circuitspec's model.

Such a directory holds ``beeg_config.json`` (the reference ``GPTConfig`` as JSON) and ``final_model.pt``
(a ``torch.save`` of the state dict) or ``final_model.safetensors`` (the same tensors). The reference
loader is lenient (``strict=False``: missing or extra tensors pass silently, and a sink dropped that way
changes every output); this one is strict, because a converted model that is quietly not the trained
one gives confident, wrong verdicts:

- every config key is known and its value supported (an unknown key is an error unless the caller names
  it in ``drop_keys``); keys that cannot change the forward pass of a trained model are dropped, listed
  in :data:`IGNORED_KEYS`;
- every tensor is used, with the shape and a float dtype the config implies; only the causal-mask
  buffer ``attn.bias`` (rebuilt by the model) and ``final_logits_bias`` (zeros, as the reference loader
  fills it in) may be missing;
- ``.pt`` files are read with ``torch.load(weights_only=True)``, which refuses pickled code; a
  ``.safetensors`` file is preferred when both exist.

The reference computes the same function as ``Transformer`` with ``norm_weight``, ``norm_eps`` =
float32's machine epsilon (``torch.nn.RMSNorm`` with eps unset), biases, ``act_fn``, the sink, AbsTopK
at the configured sites (k = int(afrac x width)), the bigram table and ``final_logits_bias`` (as
``b_U``). :func:`hook_name_map` maps its recorded activations onto our hook names.

The weights do not say what their token ids mean: :func:`tokenizer_spec` reads the tokenizer the config
names, whose files the release ships apart from the weights (``load_model`` and ``convert`` read them).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from .checkpoint import parameter_shapes
from .errors import ModelError
from .foreign_files import read_json_config, read_state_dict
from .model import ModelConfig, Transformer
from .tokenizer_spec import TokenizerSpec, spec_for_reference

CONFIG_FILE = "beeg_config.json"
WEIGHT_FILES = ("final_model.safetensors", "final_model.pt")

# Their AbsTopK site names (``afrac_loctypes``) -> ours (model.TOPK_SITES).
SITE_NAMES = {"attn_in": "attn_in", "attn_q": "q", "attn_k": "k", "attn_v": "v", "attn_out": "attn_out",
              "mlp_in": "mlp_in", "mlp_neuron": "mlp_post", "mlp_out": "mlp_out"}
UNSUPPORTED_SITES = ("resid_post_attn", "resid_post_mlp")

# Config keys whose value cannot change what a trained model computes in eval mode: training settings
# (dropout, grad_checkpointing, debug_nans), speed switches (flash, enable_sparse_kernels; the reference
# loader overwrites flash anyway), the tokenizer's name (not the model's function: see tokenizer_spec), whether
# the bigram table was trained, and the LayerNorm bias switch (RMSNorm has none).
IGNORED_KEYS = ("dropout", "grad_checkpointing", "debug_nans", "flash", "enable_sparse_kernels", "tokenizer_name",
                "learnable_bigram_table", "ln_bias")
# Keys with the reference dataclass's default where absent (the shape keys have none here: never guessed).
DEFAULTS: dict[str, Any] = {"d_head": None, "d_mlp": None, "bias": True, "rms_norm": False,
                            "residual_activation_type": "identity", "activation_type": "gelu", "afrac": None,
                            "afrac_loctypes": "attn_in,attn_out,mlp_in,mlp_out", "tied_unembed": True,
                            "enable_bigram_table": False, "d_pos_emb": None, "dropout_cat_pos_emb": False,
                            "sinusoidal_cat_pos_emb": False, "sink": False}
REQUIRED = ("block_size", "vocab_size", "n_layer", "n_head", "d_model")
FLOAT_DTYPES = (torch.float32, torch.bfloat16, torch.float16)  # converted to float32 exactly


def _read_config(path: Path) -> dict[str, Any]:
    return read_json_config(path / CONFIG_FILE, "a circuit_sparsity checkpoint directory holds beeg_config.json and final_model.pt or .safetensors")


def _check_type(file: Path, key: str, value: Any, kind: str) -> None:
    ok = {"int": type(value) is int and value > 0, "bool": type(value) is bool, "str": isinstance(value, str),
          "number": type(value) in (int, float)}[kind]
    if not ok:
        what = {"int": "a positive integer", "bool": "true or false", "str": "a string", "number": "a number"}[kind]
        raise ModelError(f"{file}: {key} must be {what}, got {value!r}"[:300])


def config_from_reference(data: dict[str, Any], source: Path | str = CONFIG_FILE,
                          drop_keys: tuple[str, ...] = ()) -> tuple[ModelConfig, dict[str, Any]]:
    """Our ModelConfig for a reference config, and the reference settings the state dict depends on
    (``bias``, ``tied_unembed``). ModelError on an unknown key (unless in ``drop_keys``) or a setting
    this model cannot reproduce."""
    file = Path(source)
    data = dict(data)
    if "n_mlp" in data:  # a legacy name the reference loader renames
        if "d_mlp" in data:
            raise ModelError(f"{file}: both n_mlp (the legacy name) and d_mlp are set")
        data["d_mlp"] = data.pop("n_mlp")
    if data.pop("use_tied_aux_matrix", False) is not False:  # the reference loader accepts only false
        raise ModelError(f"{file}: use_tied_aux_matrix true is not supported (the reference loader refuses it too)")
    known = set(REQUIRED) | set(DEFAULTS) | set(IGNORED_KEYS)
    unknown = sorted(k for k in data if k not in known and k not in drop_keys)
    if unknown:
        raise ModelError(f"{file}: unknown config keys {', '.join(map(repr, unknown))}",
                         hint="if they only mattered for training, name each with --drop-config-key to convert anyway")
    missing = [k for k in REQUIRED if k not in data]
    if missing:
        raise ModelError(f"{file}: missing config keys {', '.join(missing)} (the model's shape is never guessed)")
    c = {**DEFAULTS, **{k: v for k, v in data.items() if k in known}}
    for key in REQUIRED:
        _check_type(file, key, c[key], "int")
    for key in ("d_head", "d_mlp", "d_pos_emb"):
        if c[key] is not None:
            _check_type(file, key, c[key], "int")
    for key in ("bias", "rms_norm", "tied_unembed", "enable_bigram_table", "dropout_cat_pos_emb",
                "sinusoidal_cat_pos_emb", "sink"):
        _check_type(file, key, c[key], "bool")
    for key in ("residual_activation_type", "activation_type", "afrac_loctypes"):
        _check_type(file, key, c[key], "str")

    def unsupported(what: str) -> ModelError:
        return ModelError(f"{file}: {what} is not supported by circuitspec's model")

    if not c["rms_norm"]:
        raise unsupported("LayerNorm (rms_norm false)")
    if c["residual_activation_type"] != "identity":
        raise unsupported(f"residual_activation_type {c['residual_activation_type']!r}")
    if c["activation_type"] not in ("gelu", "relu"):
        raise ModelError(f"{file}: activation_type must be gelu or relu, got {c['activation_type']!r}")
    if c["d_pos_emb"] is not None or c["dropout_cat_pos_emb"] or c["sinusoidal_cat_pos_emb"]:
        raise unsupported("a concatenated position embedding (d_pos_emb)")
    if c["d_model"] % c["n_head"]:
        raise ModelError(f"{file}: d_model {c['d_model']} is not a multiple of n_head {c['n_head']}")
    sites: tuple[str, ...] = ()
    if c["afrac"] is not None:
        _check_type(file, "afrac", c["afrac"], "number")
        names = c["afrac_loctypes"].split(",")
        bad = [n for n in names if n not in SITE_NAMES]
        if bad:
            reason = "not supported" if all(n in UNSUPPORTED_SITES for n in bad) else "not sites of the reference model"
            raise ModelError(f"{file}: afrac_loctypes {', '.join(map(repr, bad))}: {reason}")
        sites = tuple(dict.fromkeys(SITE_NAMES[n] for n in names))
    try:
        cfg = ModelConfig(n_layers=c["n_layer"], d_model=c["d_model"], n_heads=c["n_head"],
                          d_head=c["d_head"] or c["d_model"] // c["n_head"], d_mlp=c["d_mlp"] or 4 * c["d_model"],
                          n_ctx=c["block_size"], d_vocab=c["vocab_size"], act_topk=None, attn_sink=c["sink"],
                          norm_weight=True, norm_eps=torch.finfo(torch.float32).eps, act_fn=c["activation_type"],
                          topk_fraction=float(c["afrac"]) if sites else None, topk_sites=sites,
                          bigram=c["enable_bigram_table"])
    except ValueError as e:
        raise ModelError(f"{file}: {str(e).removeprefix('model config: ')}") from None
    return cfg, {"bias": c["bias"], "tied_unembed": c["tied_unembed"], "tokenizer_name": data.get("tokenizer_name")}


def _read_state(path: Path) -> tuple[dict[str, torch.Tensor], Path]:
    return read_state_dict(path, WEIGHT_FILES, "copy the checkpoint's weights file next to beeg_config.json")


def reference_shapes(cfg: ModelConfig, bias: bool) -> dict[str, tuple[int, ...]]:
    """Every tensor a reference state dict holds for this config, with its shape (the causal-mask
    buffers ``transformer.h.{L}.attn.bias`` aside: see :func:`convert_state`)."""
    H, D, dh, M, V = cfg.n_heads, cfg.d_model, cfg.d_head, cfg.d_mlp, cfg.d_vocab
    shapes: dict[str, tuple[int, ...]] = {"final_logits_bias": (V,)}
    if cfg.bigram:
        shapes["bigram_table"] = (V, V)
    shapes.update({"transformer.wte.weight": (V, D), "transformer.wpe.weight": (cfg.n_ctx, D)})
    for i in range(cfg.n_layers):
        h = f"transformer.h.{i}."
        shapes.update({h + "ln_1.weight": (D,), h + "ln_2.weight": (D,),
                       h + "attn.c_attn.weight": (3 * H * dh, D), h + "attn.c_proj.weight": (D, H * dh),
                       h + "mlp.c_fc.weight": (M, D), h + "mlp.c_proj.weight": (D, M)})
        if bias:
            shapes.update({h + "attn.c_attn.bias": (3 * H * dh,), h + "attn.c_proj.bias": (D,),
                           h + "mlp.c_fc.bias": (M,), h + "mlp.c_proj.bias": (D,)})
        if cfg.attn_sink:
            shapes[h + "attn.attn_imp.sink_logit"] = (H,)
    shapes["transformer.ln_f.weight"] = (D,)
    shapes["lm_head.weight"] = (V, D)
    return shapes


def convert_state(cfg: ModelConfig, state: dict[str, torch.Tensor], bias: bool, tied: bool,
                  source: Path | str = "state dict") -> dict[str, torch.Tensor]:
    """Our parameters (``Transformer(cfg).state_dict()`` names) from a reference state dict, strictly."""
    state = dict(state)
    expected = reference_shapes(cfg, bias)
    for i in range(cfg.n_layers):  # the causal mask a flash=false model stores: rebuilt, so only checked
        mask = state.pop(f"transformer.h.{i}.attn.bias", None)
        if mask is None:
            continue
        T = cfg.n_ctx
        if tuple(mask.shape) != (1, 1, T, T) or not torch.equal(mask.float(), torch.ones(T, T).tril().view(1, 1, T, T)):
            raise ModelError(f"{source}: transformer.h.{i}.attn.bias is not the causal mask of block_size {T}")
    if "final_logits_bias" not in state:  # the reference loader fills in zeros
        state["final_logits_bias"] = torch.zeros(cfg.d_vocab)
    if tied:  # one tensor under two names; a safetensors file may hold it once
        wte, head = state.get("transformer.wte.weight"), state.get("lm_head.weight")
        if wte is None and head is not None:
            state["transformer.wte.weight"] = head
        elif head is None and wte is not None:
            state["lm_head.weight"] = wte
        elif wte is not None and not torch.equal(wte, head):
            raise ModelError(f"{source}: tied_unembed is true but lm_head.weight differs from transformer.wte.weight")
    missing, extra = [k for k in expected if k not in state], sorted(k for k in state if k not in expected)
    if missing or extra:
        parts = [f"{what} {', '.join(keys[:4])}{f' and {len(keys) - 4} more' if len(keys) > 4 else ''}"
                 for what, keys in (("missing", missing), ("unexpected", extra)) if keys]
        raise ModelError(f"{source}: tensors do not match beeg_config.json ({'; '.join(parts)})",
                         hint="the weights belong to another config, or the file is incomplete")
    t: dict[str, torch.Tensor] = {}
    for key, shape in expected.items():
        value = state[key]
        if tuple(value.shape) != shape:
            raise ModelError(f"{source}: {key} has shape {tuple(value.shape)}, the config implies {shape}")
        if value.dtype not in FLOAT_DTYPES:
            raise ModelError(f"{source}: {key} is {str(value.dtype).removeprefix('torch.')}, expected float32 (or bfloat16/float16)")
        value = value.to(torch.float32)
        if not bool(torch.isfinite(value).all()):
            raise ModelError(f"{source}: {key} holds NaN or infinite values")
        t[key] = value
    H, D, dh = cfg.n_heads, cfg.d_model, cfg.d_head
    out = {"embed.W_E": t["transformer.wte.weight"], "pos_embed.W_pos": t["transformer.wpe.weight"]}
    for i in range(cfg.n_layers):
        h, b = f"transformer.h.{i}.", f"blocks.{i}."
        qkv = t[h + "attn.c_attn.weight"].view(3, H, dh, D)  # rows: q, then k, then v; head-major in each
        out[b + "ln1.w"], out[b + "ln2.w"] = t[h + "ln_1.weight"], t[h + "ln_2.weight"]
        for j, kind in enumerate("QKV"):
            out[b + f"attn.W_{kind}"] = qkv[j].transpose(1, 2)  # [H, D, dh]
            out[b + f"attn.b_{kind}"] = t[h + "attn.c_attn.bias"].view(3, H, dh)[j] if bias else torch.zeros(H, dh)
        out[b + "attn.W_O"] = t[h + "attn.c_proj.weight"].T.reshape(H, dh, D)
        out[b + "attn.b_O"] = t[h + "attn.c_proj.bias"] if bias else torch.zeros(D)
        if cfg.attn_sink:
            out[b + "attn.sink"] = t[h + "attn.attn_imp.sink_logit"]
        out[b + "mlp.W_in"] = t[h + "mlp.c_fc.weight"].T
        out[b + "mlp.b_in"] = t[h + "mlp.c_fc.bias"] if bias else torch.zeros(cfg.d_mlp)
        out[b + "mlp.W_out"] = t[h + "mlp.c_proj.weight"].T
        out[b + "mlp.b_out"] = t[h + "mlp.c_proj.bias"] if bias else torch.zeros(D)
    out["ln_final.w"] = t["transformer.ln_f.weight"]
    out["unembed.W_U"] = t["lm_head.weight"].T
    out["unembed.b_U"] = t["final_logits_bias"]
    if cfg.bigram:
        out["unembed.bigram"] = t["bigram_table"]
    assert set(out) == set(parameter_shapes(cfg)), "the mapping above must name every parameter"
    return {k: v.contiguous() for k, v in out.items()}


def load_circuit_sparsity(path: Path | str, drop_keys: tuple[str, ...] = ()) -> tuple[Transformer, dict[str, Any]]:
    """The model of a circuit_sparsity checkpoint directory (eval mode), and what the conversion read:
    the source files, the reference config and the keys dropped from it (for a manifest)."""
    path = Path(path)
    if not path.is_dir():
        raise ModelError(f"{path}: no such directory",
                         hint="name a circuit_sparsity checkpoint directory (beeg_config.json + final_model.pt)")
    raw = _read_config(path)
    cfg, settings = config_from_reference(raw, path / CONFIG_FILE, drop_keys)
    state, weights = _read_state(path)
    params = convert_state(cfg, state, settings["bias"], settings["tied_unembed"], weights)
    model = Transformer(cfg)
    model.load_state_dict(params)
    model.eval()
    info = {"source_format": "circuit-sparsity", "source_config": raw, "source_weights": weights.name,
            "dropped_config_keys": sorted(k for k in raw if k in drop_keys), "tokenizer_name": settings["tokenizer_name"]}
    return model, info


def tokenizer_spec(path: Path | str) -> TokenizerSpec:
    """The tokenizer a circuit_sparsity directory's config names (``tokenizer_name``; its files, ``vocab.bpe``
    and ``encoder.json``, are expected beside it); ModelError for a name circuitspec does not know."""
    path = Path(path)
    return spec_for_reference(_read_config(path).get("tokenizer_name"), path / CONFIG_FILE)


def hook_name_map(n_layers: int) -> dict[str, str]:
    """The reference's recorded activation names -> ours, one to one. Shapes agree except for q, k, v
    and y -> hook_z: theirs ``[B, T, H*d_head]``, ours ``[B, T, H, d_head]`` (flatten the last two
    dimensions of ours to compare)."""
    names: dict[str, str] = {}
    for i in range(n_layers):
        b = f"blocks.{i}."
        names.update({f"{i}.resid_in": b + "hook_resid_pre", f"{i}.attn.act_in": b + "ln1.hook_normalized",
                      f"{i}.attn.q": b + "attn.hook_q", f"{i}.attn.k": b + "attn.hook_k", f"{i}.attn.v": b + "attn.hook_v",
                      f"{i}.attn.y": b + "attn.hook_z", f"{i}.attn.resid_delta": b + "hook_attn_out",
                      f"{i}.resid_mid": b + "hook_resid_mid", f"{i}.mlp.act_in": b + "ln2.hook_normalized",
                      f"{i}.mlp.post_act": b + "mlp.hook_post", f"{i}.mlp.resid_delta": b + "hook_mlp_out"})
    names["final_resid"] = f"blocks.{n_layers - 1}.hook_resid_post"
    return names
