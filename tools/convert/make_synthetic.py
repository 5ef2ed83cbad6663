#!/usr/bin/env python3
"""make_synthetic.py - synthetic checkpoints in the published layouts, for testing tools/convert.

Each file has the real key names, nesting and per-layer shapes of the family's published checkpoint,
but small dimensions (default: dim 64, 2 heads, FFN 128, text_dim 64, 2 layers) and seeded random
values:

  self_forcing.pt          {"generator": {"model.<wan key>": ..}, "generator_ema": {..}, "critic": {..}}
                           (Self-Forcing trainer/distillation.py save(); EMA differs from generator)
  causvid/model.pt         {"generator": {"model.<wan key>": ..}}              (CausVid autoregressive_checkpoint)
  longlive_base.pt         {"generator": {"model.<wan key>": ..}}              (LongLive-1.3B models/longlive_base.pt)
  longlive_lora.pt         {"generator_lora": {"base_model.model.blocks.N.<linear>.lora_A.weight": [r, in],
                            "...lora_B.weight": [out, r]}}                      (peft get_peft_model_state_dict)
                           every Linear of every block (LongLive's configure_lora_for_model), rank --lora-rank
  rolling_forcing.pt       {"generator": .., "generator_ema": {"model.blocks.N._fsdp_wrapped_module.<..>": ..}}
                           (FSDP-wrapped EMA names, which RollingForcing's inference.py strips)
  wan/                     diffusion_pytorch_model.safetensors + config.json (Wan2.1-T2V-1.3B layout, WanModel)
  wan_diffusers/transformer/  the same weights in diffusers' WanTransformer3DModel names + its config.json
  taew2_1.pth              TAEHV state dict, encoder.* and decoder.* (real taew2_1 shapes unless --taehv-small)

    make_synthetic.py OUT_DIR [--dim 64 --heads 2 --ffn 128 --text-dim 64 --layers 2 --seed 0]
    make_synthetic.py --check-full-size    # the manifest at Wan2.1-T2V-1.3B size has 1,418,996,800 params
"""
import argparse
import json
import os
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import convert as C  # noqa: E402
import manifest as M  # noqa: E402

from safetensors.torch import save_file  # noqa: E402


def arch(args):
    return dict(M.ARCH_DEFAULTS, dim=args.dim, num_heads=args.heads, ffn_dim=args.ffn, text_dim=args.text_dim,
                num_layers=args.layers)


def wan_state_dict(cfg, gen, scale=1.0):
    """{wan key: fp32 tensor} with magnitudes like a trained model's (fan-in scaled weights, small
    biases, norm weights near 1, modulation ~0.1)."""
    sd = {}
    for name, shape in M.dit_manifest(cfg):
        if name.endswith("modulation"):
            t = 0.1 * torch.randn(shape, generator=gen)
        elif ".norm" in name and name.endswith(".weight"):
            t = 1 + 0.1 * torch.randn(shape, generator=gen)
        elif name.endswith(".bias"):
            t = 0.02 * torch.randn(shape, generator=gen)
        else:
            fan_in = 1
            for s in shape[1:]:
                fan_in *= s
            t = torch.randn(shape, generator=gen) / fan_in ** 0.5
        sd[name] = (t * scale).float()
    return sd


def wan_to_diffusers(k):
    """The forward rename of diffusers' convert_wan_to_diffusers.py (for building the test file)."""
    inv_top = {b: a for a, b in C._DIFFUSERS_TOP}
    if k == "head.modulation":
        return "scale_shift_table"
    for b, a in inv_top.items():
        if k.startswith(b):
            return a + k[len(b):]
    import re
    m = re.match(r"(blocks\.\d+\.)(.*)$", k)
    if m:
        head, rest = m.groups()
        if rest == "modulation":
            return head + "scale_shift_table"
        for a, b in C._DIFFUSERS_BLOCK:
            if rest.startswith(b):
                return head + a + rest[len(b):]
    return k


def taehv_state_dict(gen, channels=(256, 128, 64, 64), latent=16, enc=64):
    """TAEHV(taew2_1) state dict: the encoder (dropped by the converter) and the decoder, with
    decoder_time_upscale (False, True, True) as in taew2_1.pth."""
    sd = {}

    def conv(prefix, o, i, k, bias=True):
        sd[f"{prefix}.weight"] = torch.randn(o, i, k, k, generator=gen) / (i * k * k) ** 0.5
        if bias:
            sd[f"{prefix}.bias"] = 0.02 * torch.randn(o, generator=gen)

    def mem(idx, n):
        conv(f"{idx}.conv.0", n, 2 * n, 3)
        conv(f"{idx}.conv.2", n, n, 3)
        conv(f"{idx}.conv.4", n, n, 3)

    # encoder: conv, ReLU, (TPool, conv s2, 3 MemBlock) x3, conv; encoder_time_downscale (T, T, F)
    conv("encoder.0", enc, 3, 3)
    for tpool, stride in ((2, 2), (7, 2), (12, 1)):
        sd[f"encoder.{tpool}.conv.weight"] = torch.randn(enc, enc * stride, 1, 1, generator=gen) / (enc * stride) ** 0.5
        conv(f"encoder.{tpool + 1}", enc, enc, 3, bias=False)
        for m in range(3):
            mem(f"encoder.{tpool + 2 + m}", enc)
    conv("encoder.17", latent, enc, 3)
    n = channels
    conv("decoder.1", n[0], latent, 3)
    for s, (ci, mi, ti) in enumerate(zip(M.DEC_CONV, M.DEC_MEM, M.DEC_TGROW)):
        if s:
            conv(f"decoder.{ci}", n[s], n[s - 1], 3, bias=False)
        for m in range(3):
            mem(f"decoder.{mi + m}", n[s])
        stride = 1 if s == 0 else 2
        sd[f"decoder.{ti}.conv.weight"] = torch.randn(n[s] * stride, n[s], 1, 1, generator=gen) / n[s] ** 0.5
    conv("decoder.20", n[3], n[2], 3, bias=False)
    conv("decoder.22", 3, n[3], 3)
    return {k: v.half() for k, v in sd.items()}   # taew2_1.pth ships half-precision-sized weights


def lora_state_dict(cfg, gen, rank):
    """peft state dict of LongLive's adapter: every nn.Linear inside the CausalWanAttentionBlocks."""
    sd = {}
    for name, shape in M.dit_manifest(cfg):
        if not name.startswith("blocks.") or not name.endswith(".weight") or len(shape) != 2:
            continue
        mod = name[: -len(".weight")]
        out_f, in_f = shape
        sd[f"base_model.model.{mod}.lora_A.weight"] = torch.randn(rank, in_f, generator=gen) / in_f ** 0.5
        sd[f"base_model.model.{mod}.lora_B.weight"] = 0.05 * torch.randn(out_f, rank, generator=gen)
    return sd


def prefixed(sd, prefix="model.", fsdp=False):
    out = {}
    for k, v in sd.items():
        if fsdp and k.startswith("blocks."):
            i = k.index(".", len("blocks.")) + 1
            k = k[:i] + "_fsdp_wrapped_module." + k[i:]
        out[prefix + k] = v
    return out


def make_all(out, args):
    os.makedirs(out, exist_ok=True)
    cfg = arch(args)
    gen = torch.Generator().manual_seed(args.seed)
    made = {}

    ema = wan_state_dict(cfg, gen)
    raw = {k: v + 0.01 * torch.randn(v.shape, generator=gen) for k, v in ema.items()}
    # the GAN variant's training-only heads live next to `model` in the wrapper
    critic = {"model.patch_embedding.weight": torch.zeros(4, 16, 1, 2, 2)}
    p = os.path.join(out, "self_forcing.pt")
    torch.save({"generator": prefixed(raw), "generator_ema": prefixed(ema), "critic": critic}, p)
    made["self-forcing"] = p

    os.makedirs(os.path.join(out, "causvid"), exist_ok=True)
    p = os.path.join(out, "causvid", "model.pt")
    torch.save({"generator": prefixed(wan_state_dict(cfg, gen))}, p)
    made["causvid"] = p

    base = wan_state_dict(cfg, gen)
    p = os.path.join(out, "longlive_base.pt")
    torch.save({"generator": prefixed(base)}, p)
    made["longlive"] = p
    p = os.path.join(out, "longlive_lora.pt")
    torch.save({"generator_lora": lora_state_dict(cfg, gen, args.lora_rank)}, p)
    made["longlive-lora"] = p

    rf = wan_state_dict(cfg, gen)
    p = os.path.join(out, "rolling_forcing.pt")
    torch.save({"generator": prefixed({k: v * 0.5 for k, v in rf.items()}),
                "generator_ema": prefixed(rf, fsdp=True)}, p)
    made["rolling-forcing"] = p

    wan = wan_state_dict(cfg, gen)
    d = os.path.join(out, "wan")
    os.makedirs(d, exist_ok=True)
    save_file(wan, os.path.join(d, "diffusion_pytorch_model.safetensors"))
    with open(os.path.join(d, "config.json"), "w") as f:   # Wan-AI/Wan2.1-T2V-1.3B's keys
        json.dump({"_class_name": "WanModel", "_diffusers_version": "0.30.0", "dim": cfg["dim"], "eps": 1e-06,
                   "ffn_dim": cfg["ffn_dim"], "freq_dim": 256, "in_dim": 16, "model_type": "t2v",
                   "num_heads": cfg["num_heads"], "num_layers": cfg["num_layers"], "out_dim": 16, "text_len": 512,
                   "text_dim": cfg["text_dim"]}, f, indent=2)
    made["wan"] = d

    d = os.path.join(out, "wan_diffusers", "transformer")
    os.makedirs(d, exist_ok=True)
    save_file({wan_to_diffusers(k): v for k, v in wan.items()}, os.path.join(d, "diffusion_pytorch_model.safetensors"))
    with open(os.path.join(d, "config.json"), "w") as f:   # WanTransformer3DModel's keys
        json.dump({"_class_name": "WanTransformer3DModel", "_diffusers_version": "0.33.0.dev0",
                   "added_kv_proj_dim": None, "attention_head_dim": cfg["dim"] // cfg["num_heads"],
                   "cross_attn_norm": True, "eps": 1e-06, "ffn_dim": cfg["ffn_dim"], "freq_dim": 256,
                   "image_dim": None, "in_channels": 16, "num_attention_heads": cfg["num_heads"],
                   "num_layers": cfg["num_layers"], "out_channels": 16, "patch_size": [1, 2, 2],
                   "qk_norm": "rms_norm_across_heads", "rope_max_seq_len": 1024, "text_dim": cfg["text_dim"]},
                  f, indent=2)
    made["wan-diffusers"] = os.path.join(out, "wan_diffusers")

    ch = (8, 8, 8, 4) if args.taehv_small else (256, 128, 64, 64)
    p = os.path.join(out, "taew2_1.pth")
    torch.save(taehv_state_dict(gen, ch, enc=8 if args.taehv_small else 64), p)
    made["taew2_1"] = p

    # a prompt embedding of 7 real tokens
    emb = torch.randn(7, cfg["text_dim"], generator=gen)
    save_file({"prompt": emb}, os.path.join(out, "prompt.safetensors"))
    made["prompt"] = os.path.join(out, "prompt.safetensors")
    with open(os.path.join(out, "made.json"), "w") as f:
        json.dump({"files": made, "arch": {k: cfg[k] for k in ("dim", "num_heads", "ffn_dim", "text_dim", "num_layers")},
                   "lora_rank": args.lora_rank}, f, indent=2)
    return made


def check_full_size():
    n = M.n_params(M.dit_manifest({}))
    ok = n == M.WAN_1_3B_PARAMS
    print(f"Wan2.1-T2V-1.3B manifest (dim 1536, 30 layers): {n:,} parameters "
          f"({'=' if ok else '!='} the documented {M.WAN_1_3B_PARAMS:,})")
    return ok


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("out", nargs="?")
    p.add_argument("--dim", type=int, default=64)
    p.add_argument("--heads", type=int, default=2)
    p.add_argument("--ffn", type=int, default=128)
    p.add_argument("--text-dim", type=int, default=64)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--lora-rank", type=int, default=8)
    p.add_argument("--taehv-small", action="store_true", help="decoder channels [8,8,8,4] instead of taew2_1's")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--check-full-size", action="store_true")
    args = p.parse_args()
    if args.check_full_size:
        return 0 if check_full_size() else 1
    if not args.out:
        p.error("OUT_DIR is required")
    for fam, path in make_all(args.out, args).items():
        print(f"{fam:16s} {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
