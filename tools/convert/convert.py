#!/usr/bin/env python3
"""convert.py - published causal-Wan checkpoints -> the engine's model directory (docs/CONVERT.md).

    convert.py --from self-forcing    self_forcing_dmd.pt     --out models/self-forcing [--no-ema]
    convert.py --from causvid         autoregressive_checkpoint/model.pt --out models/causvid
    convert.py --from longlive        longlive_base.pt --lora lora.pt --out models/longlive
    convert.py --from rolling-forcing rolling_forcing_dmd.pt  --out models/rolling-forcing
    convert.py --from wan             Wan2.1-T2V-1.3B/        --out models/wan   (original or diffusers layout)
    convert.py --from taew2_1         taew2_1.pth             --out models/self-forcing   (adds the decoder)
    convert.py --verify models/self-forcing                   (checks a model directory)

Writes DIR/config.json (engine keys of docs/MODEL.md 1 with the family's sampler preset) and
DIR/model.safetensors (bf16 unless --dtype). Every tensor name and shape is checked against the
manifest of docs/MODEL.md 1 before anything is written. Tensors are streamed: the source is
memory-mapped and one tensor at a time is converted and written.
"""
import argparse
import json
import math
import os
import re
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import manifest as M  # noqa: E402
import st_io  # noqa: E402

# ------------------------------------------------------------------------------------------------
# Families and presets
# ------------------------------------------------------------------------------------------------
# Sampler and cache settings of each published family, as its public inference config sets them:
# assets/presets/<name>.json (engine config keys; "_source" says where each was read). Keys starting
# with "_" are notes, not copied into config.json.
PRESET_DIR = os.path.normpath(os.path.join(HERE, "..", "..", "assets", "presets"))


def load_presets(folder=PRESET_DIR):
    out = {}
    for fn in sorted(os.listdir(folder)):
        if fn.endswith(".json"):
            with open(os.path.join(folder, fn)) as f:
                out[fn[:-5]] = {k: v for k, v in json.load(f).items() if not k.startswith("_")}
    return out


PRESETS = load_presets()
STREAM_DEFAULTS = {"latent_height": 60, "latent_width": 104, "fps": 16}   # 480x832 at 16 fps

# LoRA adapters of the published families: peft LoraConfig(r, lora_alpha) of their inference yaml
LORA_PRESETS = {"longlive": {"rank": 256, "alpha": 256}}

FAMILIES = {  # name: (source kind, default state dict: EMA?, default preset)
    "self-forcing": ("pt", True, "self-forcing"),
    "causvid": ("pt", False, "causvid"),
    "longlive": ("pt", False, "longlive"),
    "rolling-forcing": ("pt", True, "rolling-forcing"),
    "wan": ("wan", False, "wan"),
    "taew2_1": ("decoder", False, None),
}
FAMILY_ALIASES = {"selfforcing": "self-forcing", "self_forcing": "self-forcing", "rollingforcing": "rolling-forcing",
                  "rolling_forcing": "rolling-forcing", "wan2.1": "wan", "taehv": "taew2_1", "taew2.1": "taew2_1"}

# Heads the training wrappers add next to the model (Self-Forcing's GAN variant); not part of it.
TRAINING_ONLY_PREFIXES = ("_cls_pred_branch.", "_register_tokens.", "_gan_ca_blocks.")
WRAPPER_SEGMENTS = ("_fsdp_wrapped_module.", "_checkpoint_wrapped_module.", "_orig_mod.")


class ConvertError(RuntimeError):
    pass


QUIET = False


def log(msg):
    if not QUIET:
        print(msg, file=sys.stderr)


# ------------------------------------------------------------------------------------------------
# Key names
# ------------------------------------------------------------------------------------------------
def strip_wrappers(k):
    for seg in WRAPPER_SEGMENTS:
        k = k.replace(seg, "")
    if k.startswith("module."):
        k = k[len("module."):]
    return k


# diffusers WanTransformer3DModel -> Wan (the inverse of diffusers' scripts/convert_wan_to_diffusers.py
# TRANSFORMER_KEYS_RENAME_DICT; note diffusers' norm2 is Wan's norm3, the affine cross-attention norm)
_DIFFUSERS_TOP = [
    ("condition_embedder.time_embedder.linear_1.", "time_embedding.0."),
    ("condition_embedder.time_embedder.linear_2.", "time_embedding.2."),
    ("condition_embedder.text_embedder.linear_1.", "text_embedding.0."),
    ("condition_embedder.text_embedder.linear_2.", "text_embedding.2."),
    ("condition_embedder.time_proj.", "time_projection.1."),
    ("proj_out.", "head.head."),
]
_DIFFUSERS_BLOCK = [
    ("attn1.to_q.", "self_attn.q."), ("attn1.to_k.", "self_attn.k."), ("attn1.to_v.", "self_attn.v."),
    ("attn1.to_out.0.", "self_attn.o."), ("attn1.norm_q.", "self_attn.norm_q."), ("attn1.norm_k.", "self_attn.norm_k."),
    ("attn2.to_q.", "cross_attn.q."), ("attn2.to_k.", "cross_attn.k."), ("attn2.to_v.", "cross_attn.v."),
    ("attn2.to_out.0.", "cross_attn.o."), ("attn2.norm_q.", "cross_attn.norm_q."), ("attn2.norm_k.", "cross_attn.norm_k."),
    ("ffn.net.0.proj.", "ffn.0."), ("ffn.net.2.", "ffn.2."), ("norm2.", "norm3."),
]


def diffusers_to_wan(k):
    """A WanTransformer3DModel key -> the Wan key (unknown keys are returned unchanged)."""
    if k == "scale_shift_table":
        return "head.modulation"
    for a, b in _DIFFUSERS_TOP:
        if k.startswith(a):
            return b + k[len(a):]
    m = re.match(r"(blocks\.\d+\.)(.*)$", k)
    if m:
        head, rest = m.groups()
        if rest == "scale_shift_table":
            return head + "modulation"
        for a, b in _DIFFUSERS_BLOCK:
            if rest.startswith(a):
                return head + b + rest[len(a):]
    return k


def is_diffusers_layout(keys):
    return any(k.startswith("condition_embedder.") or ".attn1." in k for k in keys)


def normalize_dit_keys(keys, strip_model_prefix):
    """Source keys -> {engine name: source key}, plus the notes on dropped keys. Raises on two source
    keys that map to one name."""
    cleaned = {k: strip_wrappers(k) for k in keys}
    dropped = [k for k, c in cleaned.items() if c.startswith(TRAINING_ONLY_PREFIXES)
               or c.startswith(tuple("model." + p for p in TRAINING_ONLY_PREFIXES))]
    cleaned = {k: c for k, c in cleaned.items() if k not in dropped}
    if strip_model_prefix:
        # WanDiffusionWrapper holds the CausalWanModel as `.model`; ComfyUI files use `diffusion_model.`
        for pre in ("model.", "diffusion_model."):
            if cleaned and all(c.startswith(pre) for c in cleaned.values()):
                cleaned = {k: c[len(pre):] for k, c in cleaned.items()}
    diffusers = is_diffusers_layout(cleaned.values())
    out = {}
    for k, c in cleaned.items():
        name = diffusers_to_wan(c) if diffusers else c
        if name in out:
            raise ConvertError(f"source keys '{out[name]}' and '{k}' both map to tensor '{name}'")
        out[name] = k
    notes = []
    if dropped:
        notes.append(f"dropped {len(dropped)} tensors of training-only heads ({dropped[0]} ...)")
    if diffusers:
        notes.append("diffusers (WanTransformer3DModel) key names mapped to Wan's")
    return out, notes


# ------------------------------------------------------------------------------------------------
# Sources
# ------------------------------------------------------------------------------------------------
def open_any(path, trust_pickle):
    """-> (source, the raw object for .pt files or None). Safetensors files/dirs or a torch pickle."""
    if os.path.isdir(path) or path.endswith((".safetensors", ".index.json")):
        return st_io.SafetensorsSource(st_io.safetensors_paths(path)), None
    if not os.path.exists(path):
        raise ConvertError(f"{path}: no such file")
    obj = st_io.torch_load(path, trust_pickle)
    if not isinstance(obj, dict):
        raise ConvertError(f"{path}: expected a dict of tensors, got {type(obj).__name__}")
    return None, obj


def select_state_dict(obj, path, ema, explicit):
    """A training checkpoint dict -> (flat state dict, description). ema: use 'generator_ema' rather
    than 'generator'; explicit: --ema/--no-ema was given (else a missing one falls back to the other)."""
    keys = [k for k in obj if isinstance(k, str)]
    if "generator" in obj or "generator_ema" in obj:
        want = "generator_ema" if ema else "generator"
        if want not in obj:
            other = "generator" if ema else "generator_ema"
            if explicit:
                raise ConvertError(f"{path}: has no '{want}' state dict (top-level keys: {', '.join(keys)}); "
                                   f"{'drop --ema' if ema else 'drop --no-ema'}")
            log(f"note: {path} has no '{want}'; using '{other}'")
            want = other
        sd = obj[want]
        what = want
    elif "model" in obj and isinstance(obj["model"], dict):
        sd, what = obj["model"], "model"
    elif "state_dict" in obj and isinstance(obj["state_dict"], dict):
        sd, what = obj["state_dict"], "state_dict"
    else:
        sd, what = obj, "top level"
    flat = st_io.flatten_tensors(sd)
    if not flat:
        raise ConvertError(f"{path}: '{what}' holds no tensors (top-level keys: {', '.join(keys[:10])})")
    others = [k for k in keys if k != what and k in ("generator", "generator_ema", "critic", "model")]
    desc = f"'{what}'" + (f" (also present: {', '.join(others)})" if others else "")
    return flat, desc


def find_wan_files(path):
    """A Wan2.1 model in the original or the diffusers layout: (safetensors path(s), config.json or None)."""
    if os.path.isdir(path):
        if os.path.isdir(os.path.join(path, "transformer")) and not any(
                f.endswith(".safetensors") for f in os.listdir(path)):
            path = os.path.join(path, "transformer")      # a diffusers pipeline folder
        cfg = os.path.join(path, "config.json")
        idx = [f for f in os.listdir(path) if f.endswith(".safetensors.index.json")]
        files = sorted(f for f in os.listdir(path) if f.endswith(".safetensors"))
        if not files:
            raise ConvertError(f"{path}: no .safetensors file (expected diffusion_pytorch_model.safetensors)")
        dit = [f for f in files if f.startswith("diffusion_pytorch_model")] or files
        src = os.path.join(path, idx[0]) if idx else [os.path.join(path, f) for f in dit]
        return src, (cfg if os.path.exists(cfg) else None)
    cfg = os.path.join(os.path.dirname(path), "config.json")
    return path, (cfg if os.path.exists(cfg) else None)


def wan_config_to_arch(wc, path):
    """Architecture keys from a Wan (WanModel) or diffusers (WanTransformer3DModel) config.json."""
    arch = {}
    cls = wc.get("_class_name", "")
    if "num_attention_heads" in wc or cls == "WanTransformer3DModel":
        for k in ("image_dim", "added_kv_proj_dim", "pos_embed_seq_len"):
            if wc.get(k) is not None:
                raise ConvertError(f"{path}: '{k}' = {wc[k]} - an image-to-video model; only t2v is supported")
        if "num_attention_heads" in wc and "attention_head_dim" in wc:
            arch["num_heads"] = wc["num_attention_heads"]
            arch["dim"] = wc["num_attention_heads"] * wc["attention_head_dim"]
        for a, b in (("in_channels", "in_dim"), ("out_channels", "out_dim"), ("text_dim", "text_dim"),
                     ("freq_dim", "freq_dim"), ("ffn_dim", "ffn_dim"), ("num_layers", "num_layers"), ("eps", "eps")):
            if a in wc:
                arch[b] = wc[a]
        if "patch_size" in wc:
            arch["patch_size"] = list(wc["patch_size"])
        if wc.get("qk_norm") not in (None, "rms_norm_across_heads"):
            raise ConvertError(f"{path}: qk_norm = {wc['qk_norm']!r} (the engine does Wan's rms_norm_across_heads)")
        if wc.get("cross_attn_norm") is False:
            raise ConvertError(f"{path}: cross_attn_norm = false is not supported")
        return arch
    if wc.get("model_type", "t2v") != "t2v":
        raise ConvertError(f"{path}: model_type = {wc['model_type']!r}; only t2v is supported")
    for k in ("dim", "ffn_dim", "num_heads", "num_layers", "in_dim", "out_dim", "text_dim", "text_len",
              "freq_dim", "eps", "qk_norm", "cross_attn_norm"):
        if k in wc:
            arch[k] = wc[k]
    for k in ("patch_size", "window_size"):
        if k in wc:
            arch[k] = list(wc[k])
    return arch


def infer_arch(shapes, given, num_heads):
    """Architecture keys from the tensor shapes where the source has no config (training .pt files).
    `given`: keys from a source config.json (they win); num_heads: --num-heads or None."""
    arch = {}

    def sh(n):
        return shapes.get(n)

    pe = sh("patch_embedding.weight")
    if pe is not None and len(pe) == 5:
        arch.update(dim=pe[0], in_dim=pe[1], patch_size=[pe[2], pe[3], pe[4]])
    if sh("text_embedding.0.weight") is not None:
        arch["text_dim"] = sh("text_embedding.0.weight")[1]
    if sh("time_embedding.0.weight") is not None:
        arch["freq_dim"] = sh("time_embedding.0.weight")[1]
    if sh("blocks.0.ffn.0.weight") is not None:
        arch["ffn_dim"] = sh("blocks.0.ffn.0.weight")[0]
    blocks = [int(m.group(1)) for n in shapes for m in [re.match(r"blocks\.(\d+)\.", n)] if m]
    if blocks:
        arch["num_layers"] = max(blocks) + 1
    hh = sh("head.head.weight")
    if hh is not None and pe is not None and len(pe) == 5:
        arch["out_dim"] = hh[0] // (pe[2] * pe[3] * pe[4])
    arch.update(given)
    if num_heads:
        arch["num_heads"] = num_heads
    if "num_heads" not in arch:
        dim = arch.get("dim", M.ARCH_DEFAULTS["dim"])
        if dim % 128:
            raise ConvertError(f"dim = {dim} is not a multiple of Wan's head size 128: pass --num-heads")
        arch["num_heads"] = dim // 128       # Wan2.1: 1.3B 1536/12, 14B 5120/40 - head dim 128
    full = dict(M.ARCH_DEFAULTS)
    full.update(arch)
    return full


# ------------------------------------------------------------------------------------------------
# LoRA
# ------------------------------------------------------------------------------------------------
_LORA_RE = re.compile(r"^(.*)\.(lora_A|lora_B|lora_down|lora_up)(?:\.([A-Za-z0-9_\-]+))?\.weight$")


def lora_module_name(m):
    m = strip_wrappers(m)
    for pre in ("base_model.model.", "model.", "diffusion_model.", "transformer."):
        if m.startswith(pre):
            m = m[len(pre):]
    return diffusers_to_wan(m + ".weight")[: -len(".weight")]


def load_lora(path, args, family, base_shapes):
    """-> ({target weight name: (A, B, scale)}, report lines). peft (lora_A/lora_B, alpha from
    adapter_config.json / --lora-alpha / the family preset) or kohya (lora_down/lora_up/.alpha)."""
    cfg_path = None
    if os.path.isdir(path):
        cfg_path = os.path.join(path, "adapter_config.json")
        cands = [f for f in ("adapter_model.safetensors", "adapter_model.bin") if os.path.exists(os.path.join(path, f))]
        if not cands:
            raise ConvertError(f"{path}: no adapter_model.safetensors / adapter_model.bin")
        path = os.path.join(path, cands[0])
    else:
        c = os.path.join(os.path.dirname(path), "adapter_config.json")
        cfg_path = c if os.path.exists(c) else None
    src, obj = open_any(path, args.trust_pickle)
    if src is not None:
        flat = {k: src.get(k) for k in src.keys()}
    else:
        if "generator_lora" in obj:
            obj = obj["generator_lora"]
        flat = st_io.flatten_tensors(obj)
    acfg = {}
    if cfg_path and os.path.exists(cfg_path):
        with open(cfg_path) as f:
            acfg = json.load(f)

    parts, alphas, adapters, bad = {}, {}, set(), []
    for k, t in flat.items():
        m = _LORA_RE.match(k)
        if m:
            mod, side, adapter = m.groups()
            if adapter is not None:
                adapters.add(adapter)
                if args.lora_adapter and adapter != args.lora_adapter:
                    continue
            side = "A" if side in ("lora_A", "lora_down") else "B"
            parts.setdefault(lora_module_name(mod), {})[side] = (t, k)
        elif k.endswith(".alpha") and t.numel() == 1:
            alphas[lora_module_name(k[: -len(".alpha")])] = float(t.float().item())
        else:
            bad.append(k)
    if bad:
        raise ConvertError(f"{path}: {len(bad)} key(s) that are not LoRA A/B weights: {', '.join(bad[:10])}")
    if len(adapters) > 1 and not args.lora_adapter:
        raise ConvertError(f"{path}: several adapters ({', '.join(sorted(adapters))}): pick one with --lora-adapter")
    if not parts:
        raise ConvertError(f"{path}: no LoRA weights found")

    preset = LORA_PRESETS.get(family, {})
    rank_cfg = args.lora_rank or acfg.get("r") or preset.get("rank")
    alpha_cfg = args.lora_alpha if args.lora_alpha is not None else acfg.get("lora_alpha", preset.get("alpha"))
    rslora = bool(acfg.get("use_rslora", False)) or args.lora_rslora
    out, problems, ranks = {}, [], set()
    for mod, ab in sorted(parts.items()):
        target = mod + ".weight"
        if "A" not in ab or "B" not in ab:
            problems.append(f"{mod}: only lora_{'A' if 'A' in ab else 'B'}")
            continue
        (A, ka), (B, _) = ab["A"], ab["B"]
        if target not in base_shapes:
            problems.append(f"{ka}: targets '{target}', which is not a weight of the model")
            continue
        W = base_shapes[target]
        if len(W) != 2 or A.ndim != 2 or B.ndim != 2:
            problems.append(f"{mod}: LoRA of a {len(W)}-D weight (only Linear layers)")
            continue
        r = A.shape[0]
        if B.shape[1] != r or A.shape[1] != W[1] or B.shape[0] != W[0]:
            problems.append(f"{mod}: lora_A {list(A.shape)} / lora_B {list(B.shape)} do not fit the weight {list(W)}")
            continue
        ranks.add(r)
        alpha = alphas.get(mod, alpha_cfg)
        if alpha is None:
            raise ConvertError(f"{path}: the LoRA scale is alpha / rank and the alpha is not known: pass "
                               f"--lora-alpha (peft keeps it in adapter_config.json as lora_alpha)")
        scale = alpha / math.sqrt(r) if rslora else alpha / r
        out[target] = (A, B, scale)
    if rank_cfg and not alphas and ranks and ranks != {rank_cfg}:
        src_of = ("--lora-rank" if args.lora_rank else "adapter_config.json" if acfg.get("r")
                  else f"the {family} adapter config")
        raise ConvertError(f"{path}: the LoRA has rank {sorted(ranks)}, but {src_of} says r = {rank_cfg}; the scale "
                           f"is alpha / r: pass --lora-rank and --lora-alpha of the config it was trained with")
    if problems:
        raise ConvertError(f"{path}: LoRA does not fit the model:\n    " + "\n    ".join(problems[:10]) +
                           (f"\n    ... and {len(problems) - 10} more" if len(problems) > 10 else ""))
    kinds = {}
    for t in out:
        kinds.setdefault(re.sub(r"^blocks\.\d+\.", "", t[: -len(".weight")]), []).append(t)
    scales = sorted({round(s, 6) for _, _, s in out.values()})
    report = [f"LoRA {os.path.basename(path)}: {len(out)} Linear weights, rank {sorted(ranks)}, "
              f"scale {'alpha/sqrt(r)' if rslora else 'alpha/r'} = {scales}",
              "  targets: " + ", ".join(f"{k} x{len(v)}" for k, v in sorted(kinds.items()))]
    return out, report


# ------------------------------------------------------------------------------------------------
# TAEHV decoder (taew2_1)
# ------------------------------------------------------------------------------------------------
def parse_bools(s, n, what):
    v = [x.strip().lower() for x in s.split(",")]
    if len(v) != n or any(x not in ("true", "false", "1", "0") for x in v):
        raise ConvertError(f"{what}: expected {n} comma-separated true/false values, got {s!r}")
    return [x in ("true", "1") for x in v]


def load_decoder(path, args):
    """taew2_1.pth / .safetensors (TAEHV state dict: encoder.* dropped, decoder.* kept) or a decoder-only
    / full engine model directory. -> (decoder config, {name: tensor}, notes)."""
    notes = []
    dc = {}
    if os.path.isdir(path) and os.path.exists(os.path.join(path, "config.json")):
        with open(os.path.join(path, "config.json")) as f:
            dc = json.load(f).get("decoder")
        if dc is None:
            raise ConvertError(f"{path}: config.json has no 'decoder' section")
        path = os.path.join(path, "model.safetensors")
    src, obj = open_any(path, args.trust_pickle)
    if src is not None:
        flat = {k: src.get(k) for k in src.keys()}
    else:
        for k in ("state_dict", "model"):
            if k in obj and isinstance(obj[k], dict):
                obj = obj[k]
        flat = st_io.flatten_tensors(obj)
    flat = {strip_wrappers(k): v for k, v in flat.items()}
    enc = [k for k in flat if k.startswith("encoder.")]
    dec = {k: v for k, v in flat.items() if k.startswith("decoder.")}
    other = [k for k in flat if not k.startswith(("encoder.", "decoder."))]
    if enc:
        notes.append(f"dropped {len(enc)} encoder tensors (the engine decodes only)")
    if other:
        notes.append(f"ignored {len(other)} non-TAEHV tensors ({other[0]} ...)")
    if not dec:
        raise ConvertError(f"{path}: no decoder.* tensors (is this a TAEHV checkpoint?)")
    if "decoder.0.weight" in dec:
        raise ConvertError(f"{path}: a TAEHV 'super' decoder (decoder.0 is a conv); only the base TAEHV "
                           f"architecture (taew2_1) is supported")

    def shape(n):
        if n not in dec:
            raise ConvertError(f"{path}: missing tensor '{n}' (not a TAEHV base decoder)")
        return tuple(dec[n].shape)

    ch = [shape("decoder.1.weight")[0], shape("decoder.8.weight")[0], shape("decoder.14.weight")[0],
          shape("decoder.20.weight")[0]]
    latent = shape("decoder.1.weight")[1]
    img = shape("decoder.22.weight")[0]
    if img != 3:
        raise ConvertError(f"{path}: the decoder outputs {img} channels (3 expected; taew2_2-style patch "
                           f"size 2 decoders are not supported)")
    # an engine directory's decoder keeps its settings unless they are given again
    tu = (parse_bools(args.decoder_time_upscale, 2, "--decoder-time-upscale") if args.decoder_time_upscale
          else list(dc.get("time_upscale", [True, True])))
    su = (parse_bools(args.decoder_space_upscale, 3, "--decoder-space-upscale") if args.decoder_space_upscale
          else list(dc.get("space_upscale", [True, True, True])))
    dcfg = {"channels": ch, "space_upscale": su, "time_upscale": tu, "image_channels": img}
    # TAEHV.patch_tgrow_layers: a TGrow built with a smaller stride than the checkpoint's keeps the
    # last time step's output channels (the checkpoint's rows [-n*stride:]).
    strides = [1] + [2 if t else 1 for t in tu]
    for s, idx in enumerate(M.DEC_TGROW):
        n = f"decoder.{idx}.conv.weight"
        want = strides[s] * ch[s]
        rows = dec[n].shape[0] if n in dec else 0
        if 0 < rows < want:
            raise ConvertError(f"{path}: {n} has {rows} output channels: this decoder was saved with time upscale "
                               f"off at stage {s} and cannot be turned back on (use the original taew2_1.pth)")
        if rows > want and rows % ch[s] == 0:
            dec[n] = dec[n][-want:]
            notes.append(f"{n}: kept the last {want} of {rows} output channels "
                         f"(time upscale off: TAEHV's patch_tgrow_layers)")
    return dcfg, latent, dec, notes


# ------------------------------------------------------------------------------------------------
# Config and writing
# ------------------------------------------------------------------------------------------------
def parse_set(items):
    out = {}
    for it in items or []:
        if "=" not in it:
            raise ConvertError(f"--set {it!r}: expected KEY=JSON")
        k, v = it.split("=", 1)
        try:
            out[k] = json.loads(v)
        except json.JSONDecodeError:
            out[k] = v
    return out


def build_config(arch, args, preset_name, name):
    cfg = {"name": name}
    for k in M.ARCH_DEFAULTS:
        cfg[k] = arch[k]
    cfg.update(STREAM_DEFAULTS)
    if preset_name:
        if preset_name not in PRESETS:
            raise ConvertError(f"--preset {preset_name!r}: known presets: {', '.join(PRESETS)}")
        cfg.update(PRESETS[preset_name])
    if args.preset_file:
        with open(args.preset_file) as f:
            extra = json.load(f)
        for k, v in extra.items():
            if k in M.ARCH_DEFAULTS and v != cfg.get(k):
                raise ConvertError(f"--preset-file {args.preset_file}: key '{k}' = {v!r} contradicts the "
                                   f"checkpoint ({cfg.get(k)!r})")
            cfg[k] = v
    if args.latent_size:
        m = re.match(r"^(\d+)x(\d+)$", args.latent_size)
        if not m:
            raise ConvertError(f"--latent-size {args.latent_size!r}: expected HxW, e.g. 60x104")
        cfg["latent_height"], cfg["latent_width"] = int(m.group(1)), int(m.group(2))
    cfg.update(parse_set(args.set))
    return cfg


def check_manifest(expected, shapes, what):
    missing, unexpected, mis = M.diff_manifest(expected, shapes)
    if missing or unexpected or mis:
        raise ConvertError(M.format_diff(missing, unexpected, mis, what))


def dump_config(cfg):
    """One key per line, values compact (lists and sections on their line)."""
    return "{\n" + ",\n".join(f"  {json.dumps(k)}: {json.dumps(v)}" for k, v in cfg.items()) + "\n}\n"


def write_model(out_dir, cfg, entries, getter, args, metadata):
    """entries: [(name, shape, dtype)], getter(name) -> tensor. Writes model.safetensors then config.json."""
    os.makedirs(out_dir, exist_ok=True)
    st_path = os.path.join(out_dir, "model.safetensors")
    w = st_io.StreamWriter(st_path, entries, metadata)
    prog = st_io.Progress(len(entries), "writing", args.quiet)
    try:
        for i, (n, _, _) in enumerate(entries):
            w.write(n, getter(n))
            prog.update(i + 1, n)
        w.close()
    except BaseException:
        w.abort()
        raise
    prog.done()
    tmp = os.path.join(out_dir, "config.json.tmp")
    with open(tmp, "w") as f:
        f.write(dump_config(cfg))
    os.replace(tmp, os.path.join(out_dir, "config.json"))
    n = M.n_params([(e[0], e[1]) for e in entries])
    log(f"wrote {out_dir}/model.safetensors ({len(entries)} tensors, {n:,} parameters, "
        f"{w.total / 2**30:.2f} GiB) and config.json")


def convert_dit(args, family):
    kind, ema_default, preset_default = FAMILIES[family]
    preset = args.preset or preset_default
    src_cfg = {}
    if kind == "wan" and (os.path.isdir(args.source) or args.source.endswith((".safetensors", ".index.json"))):
        files, cfg_path = find_wan_files(args.source)
        if cfg_path:
            with open(cfg_path) as f:
                src_cfg = wan_config_to_arch(json.load(f), cfg_path)
        paths = st_io.safetensors_paths(files) if isinstance(files, str) else files
        src = st_io.SafetensorsSource(paths)
        desc = src.describe() + (f" + {os.path.basename(cfg_path)}" if cfg_path else "")
        if not args.quiet and family == "wan" and not args.preset:
            log("note: the base Wan2.1 model is a bidirectional 50-step model, not a causal few-step one: "
                "the Self-Forcing sampler preset is written, but the video will not be good; the base model "
                "is useful to check shapes and numerics")
    else:
        st, obj = open_any(args.source, args.trust_pickle)
        if st is not None:
            src, desc = st, st.describe()
        else:
            ema = ema_default if args.ema is None else args.ema
            flat, what = select_state_dict(obj, args.source, ema, args.ema is not None)
            src = st_io.DictSource(flat, f"{os.path.basename(args.source)} {what}")
            desc = src.describe()
    names, notes = normalize_dit_keys(src.keys(), strip_model_prefix=True)
    shapes = {n: src.shape(k) for n, k in names.items()}
    log(f"source: {desc}: {len(names)} tensors")
    for n in notes:
        log(f"  {n}")
    arch = infer_arch(shapes, src_cfg, args.num_heads)
    if (arch["in_dim"], arch["out_dim"], list(arch["patch_size"])) != (16, 16, [1, 2, 2]) and not args.any_arch:
        raise ConvertError(
            f"{args.source}: latent channels {arch['in_dim']}/{arch['out_dim']}, patch {arch['patch_size']}: not a "
            f"Wan2.1 model (16 channels, patch [1, 2, 2]; e.g. Wan2.2-TI2V-5B / LongLive 2.0 use 48 channels and "
            f"another VAE). --any-arch converts it anyway")
    if (family != "wan" or not src_cfg) and any(arch[k] != M.ARCH_DEFAULTS[k] for k in
                                                 ("dim", "num_layers", "ffn_dim", "text_dim")):
        log(f"note: architecture dim {arch['dim']}, {arch['num_layers']} layers, ffn {arch['ffn_dim']}, "
            f"text_dim {arch['text_dim']} - not Wan2.1-T2V-1.3B, which the {preset} preset was tuned for")

    # decoder
    dec_tensors, dcfg = {}, None
    if args.decoder:
        dcfg, latent, dec_tensors, dnotes = load_decoder(args.decoder, args)
        log(f"decoder: {args.decoder}: channels {dcfg['channels']}, time upscale {dcfg['time_upscale']}")
        for n in dnotes:
            log(f"  {n}")
        if latent != arch["out_dim"]:
            raise ConvertError(f"{args.decoder}: the decoder takes {latent} latent channels, the model makes "
                               f"{arch['out_dim']}")

    name = args.name or os.path.basename(os.path.normpath(args.out))
    cfg = build_config(arch, args, preset, name)
    if dcfg is not None:
        cfg["decoder"] = dcfg
    try:
        full = M.validate_config(cfg)
    except M.ConfigError as e:
        raise ConvertError(f"the config would be invalid: {e}") from e

    if full["decoder"] is not None and dcfg is None:
        raise ConvertError("the config has a 'decoder' section but no decoder was given: pass --decoder taew2_1.pth")
    dit_exp = M.dit_manifest(full)
    check_manifest(dit_exp, shapes, f"{args.source} ({desc})")
    dec_exp = M.decoder_manifest(full)
    if dcfg is not None:
        check_manifest(dec_exp, {k: tuple(v.shape) for k, v in dec_tensors.items()}, f"decoder {args.decoder}")
    if M.text_encoder_manifest(full):
        raise ConvertError("a text_encoder section needs its tensors; published models take umT5 embeddings "
                           "(tools/prompt/encode_prompt.py)")

    lora = {}
    if args.lora:
        lora, report = load_lora(args.lora, args, family, dict(dit_exp))
        for line in report:
            log(line)
    elif family == "longlive" and not args.quiet:
        log("note: LongLive's published weights are longlive_base.pt + lora.pt: pass --lora lora.pt")

    def get(n):
        if n in dec_tensors:
            return dec_tensors[n]
        t = src.get(names[n])
        if n in lora:
            A, B, s = lora[n]
            t = t.float() + s * (B.float() @ A.float())
        return t

    dtype = args.dtype
    entries = [(n, s, dtype) for n, s in dit_exp] + [(n, s, args.decoder_dtype) for n, s in dec_exp]
    cfg["_converted_from"] = {k: v for k, v in {
        "family": family, "preset": preset, "source": os.path.basename(os.path.normpath(args.source)),
        "state_dict": desc, "lora": os.path.basename(args.lora) if args.lora else None,
        "decoder": os.path.basename(os.path.normpath(args.decoder)) if args.decoder else None,
        "dtype": dtype, "tool": "tools/convert/convert.py"}.items() if v is not None}
    log(f"config: {preset} preset: steps {full['denoising_step_list']} (warp {full['warp_denoising_step']}, "
        f"shift {full['timestep_shift']}), {full['num_frame_per_block']} frames per chunk, window "
        f"{full['local_attn_size']} sinks {full['sink_size']}, latents {full['latent_height']}x{full['latent_width']}")
    if args.dry_run:
        log("dry run: every tensor checks out; nothing written")
        return cfg
    write_model(args.out, cfg, entries, get, args, {"format": "pt", "converted_from": family})
    return cfg


def convert_decoder(args):
    """taew2_1: merge the decoder into an existing engine model dir, or write a decoder-only dir."""
    dcfg, latent, dec, notes = load_decoder(args.source, args)
    log(f"decoder: {args.source}: channels {dcfg['channels']}, latent channels {latent}, "
        f"time upscale {dcfg['time_upscale']}, space upscale {dcfg['space_upscale']}")
    for n in notes:
        log(f"  {n}")
    cfg_path = os.path.join(args.out, "config.json")
    st_path = os.path.join(args.out, "model.safetensors")
    merge = os.path.exists(cfg_path) and os.path.exists(st_path)
    if merge:
        with open(cfg_path) as f:
            cfg = json.load(f)
        decoder_only = bool(cfg.get("_decoder_only"))
    else:
        cfg = {"name": args.name or os.path.basename(os.path.normpath(args.out)), "in_dim": latent,
               "out_dim": latent, "_decoder_only": True}
        decoder_only = True
    cfg["decoder"] = dcfg
    full = M.full_config(cfg)
    if full["out_dim"] != latent:
        raise ConvertError(f"{args.out}: the model makes {full['out_dim']} latent channels, the decoder takes {latent}")
    dec_exp = M.decoder_manifest(full)
    check_manifest(dec_exp, {k: tuple(v.shape) for k, v in dec.items()}, f"decoder {args.source}")
    entries, getters = [], {}
    if merge:
        old = st_io.SafetensorsSource([st_path])
        hdr, _ = st_io.st_header(st_path)
        inv = {v[1]: k for k, v in st_io.DTYPES.items()}
        kept = [k for k in old.keys() if not k.startswith("decoder.")]
        if not decoder_only:
            M.validate_config(cfg)
            check_manifest(M.dit_manifest(full) + M.text_encoder_manifest(full),
                           {k: old.shape(k) for k in kept}, st_path)
            order = [n for n, _ in M.dit_manifest(full) + M.text_encoder_manifest(full)]
        else:
            order = kept
        for k in order:
            entries.append((k, old.shape(k), inv[hdr[k]["dtype"]]))
            getters[k] = (lambda k=k: old.get(k))
        log(f"merging into {args.out}: keeping {len(order)} tensors, "
            f"{'replacing' if len(kept) != len(old.keys()) else 'adding'} the decoder")
    for n, s in dec_exp:
        entries.append((n, s, args.decoder_dtype))
        getters[n] = (lambda n=n: dec[n])
    prov = cfg.pop("_converted_from", {})
    if isinstance(prov, dict):
        prov["decoder"] = os.path.basename(os.path.normpath(args.source))
    cfg["_converted_from"] = prov
    if args.dry_run:
        log("dry run: every tensor checks out; nothing written")
        return cfg
    write_model(args.out, cfg, entries, lambda n: getters[n](), args, {"format": "pt"})
    if decoder_only and not merge:
        log(f"note: {args.out} holds only the decoder; add it to a model with "
            f"--from taew2_1 {args.out} --out MODEL_DIR, or --decoder {args.out} when converting")
    return cfg


def verify_dir(path):
    """Checks an engine model directory: config.json valid, model.safetensors = the manifest."""
    with open(os.path.join(path, "config.json")) as f:
        cfg = json.load(f)
    if cfg.get("_decoder_only"):
        full = M.full_config(cfg)
        exp = M.decoder_manifest(full)
    else:
        full = M.validate_config(cfg)
        exp = M.manifest(full)
    hdr, _ = st_io.st_header(os.path.join(path, "model.safetensors"))
    shapes = {k: tuple(v["shape"]) for k, v in hdr.items() if k != "__metadata__"}
    bad = [k for k, v in hdr.items() if k != "__metadata__" and v["dtype"] not in ("F32", "F16", "BF16")]
    if bad:
        raise ConvertError(f"{path}: tensors of a dtype the engine does not load: {', '.join(bad[:10])}")
    check_manifest(exp, shapes, os.path.join(path, "model.safetensors"))
    log(f"{path}: config.json valid, {len(exp)} tensors ({M.n_params(exp):,} parameters) match the manifest")


def detect_family(path, trust_pickle):
    """--from auto: the layouts a file can tell apart by itself."""
    if os.path.isdir(path):
        cj = os.path.join(path, "config.json")
        if os.path.exists(cj):
            with open(cj) as f:
                if json.load(f).get("_decoder_only"):
                    return "taew2_1"
        files, _ = find_wan_files(path)
        src = st_io.SafetensorsSource(st_io.safetensors_paths(files) if isinstance(files, str) else files)
        obj = None
    else:
        src, obj = open_any(path, trust_pickle)
    if src is None and ("generator" in obj or "generator_ema" in obj):
        raise ConvertError(f"{path}: a causal-Wan training checkpoint ('generator'/'generator_ema'); the file does "
                           f"not say which family trained it: pass --from self-forcing|causvid|longlive|rolling-forcing")
    flat = src.keys() if src is not None else list(st_io.flatten_tensors(obj))
    if flat and all(strip_wrappers(k).startswith(("encoder.", "decoder.")) for k in flat):
        return "taew2_1"
    if src is not None:
        return "wan"
    raise ConvertError(f"{path}: cannot tell the family: pass --from")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("source", nargs="?", help="checkpoint file or directory")
    p.add_argument("--from", dest="family", default="auto",
                   help="self-forcing | causvid | longlive | rolling-forcing | wan | taew2_1 | auto (default)")
    p.add_argument("--out", help="engine model directory to write")
    p.add_argument("--verify", metavar="DIR", help="only check an engine model directory")
    p.add_argument("--preset", help=f"sampler preset ({', '.join(PRESETS)}); default: the family's")
    p.add_argument("--preset-file", help="JSON of engine config keys laid over the preset")
    p.add_argument("--set", action="append", metavar="KEY=JSON", help="set one engine config key (repeatable)")
    p.add_argument("--latent-size", metavar="HxW", help="latent grid (default 60x104 = 480x832 video)")
    p.add_argument("--name", help="model name in config.json (default: the output directory's name)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--ema", dest="ema", action="store_true", default=None,
                   help="use 'generator_ema' (default for self-forcing and rolling-forcing: their READMEs run --use_ema)")
    g.add_argument("--no-ema", dest="ema", action="store_false",
                   help="use 'generator' (default for causvid and longlive, whose inference code loads it)")
    p.add_argument("--num-heads", type=int, help="attention heads (default: the source config, else dim/128)")
    p.add_argument("--dtype", choices=list(st_io.DTYPES), default="bf16", help="DiT tensor dtype (default bf16)")
    p.add_argument("--decoder", metavar="PATH", help="TAEHV decoder to include (taew2_1.pth, .safetensors, a dir)")
    p.add_argument("--decoder-dtype", choices=list(st_io.DTYPES), default="f16", help="decoder dtype (default f16)")
    p.add_argument("--decoder-time-upscale", metavar="B,B", help="TAEHV decoder_time_upscale, 2 values "
                   "(default true,true: 4x time; false drops a TGrow's first time step as TAEHV does)")
    p.add_argument("--decoder-space-upscale", metavar="B,B,B", help="decoder_space_upscale, 3 values (default true)")
    p.add_argument("--lora", metavar="PATH", help="LoRA to merge (peft lora_A/lora_B or kohya lora_down/lora_up)")
    p.add_argument("--lora-alpha", type=float, help="LoRA alpha (scale = alpha / rank); default: adapter_config.json "
                   "or the family's (LongLive 256)")
    p.add_argument("--lora-rank", type=int, help="expected LoRA rank (default: adapter_config.json or the family's)")
    p.add_argument("--lora-rslora", action="store_true", help="scale = alpha / sqrt(rank) (peft use_rslora)")
    p.add_argument("--lora-adapter", help="adapter name when the file holds several")
    p.add_argument("--any-arch", action="store_true", help="convert a DiT that is not Wan2.1-shaped (latent channels "
                   "other than 16): the presets and the 60x104 latent grid are for Wan2.1's VAE")
    p.add_argument("--trust-pickle", action="store_true", help="allow torch.load(weights_only=False)")
    p.add_argument("--dry-run", action="store_true", help="check everything, write nothing")
    p.add_argument("--quiet", action="store_true")
    args = p.parse_args(argv)
    global QUIET
    QUIET = args.quiet
    try:
        if args.verify:
            verify_dir(args.verify)
            return 0
        if not args.source or not args.out:
            p.error("a source checkpoint and --out DIR are required")
        fam = FAMILY_ALIASES.get(args.family.lower(), args.family.lower())
        if fam == "auto":
            fam = detect_family(args.source, args.trust_pickle)
            log(f"detected: --from {fam}")
        if fam not in FAMILIES:
            p.error(f"--from {args.family}: one of {', '.join(FAMILIES)}, auto")
        if args.lora and fam in ("taew2_1",):
            p.error("--lora applies to DiT checkpoints")
        if FAMILIES[fam][0] == "decoder":
            convert_decoder(args)
        else:
            convert_dit(args, fam)
        return 0
    except (ConvertError, st_io.SourceError, M.ConfigError, OSError) as e:
        print(f"convert.py: error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
