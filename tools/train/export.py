"""export.py - writes a trained model in the engine's layout (docs/MODEL.md 1): config.json and
model.safetensors (fp16) with the DiT, the action MLP, the text encoder and the TAEHV decoder, every
tensor named as the engine expects. The written folder is re-read with wm_ref.load_model, which
refuses any missing, extra or misshapen tensor exactly like the engine.

Beside them, encoder.safetensors (fp16): the autoencoder's encoder, whose latents the DiT was trained
on, with its architecture in the safetensors metadata (ae.save_encoder / ae.load_encoder). The engine
never reads it (it loads config.json and model.safetensors only; config.json gets no extra key); the
fidelity tool (tools/eval/fidelity.py) encodes real frames with it for a context prefill.

    python tools/train/export.py --run RUN --out MODEL_DIR      # from train_dit.py's checkpoint

Size budget: the whole folder must stay <= 16 MiB (it ships in assets/ and travels with every clone).
"""
import argparse
import json
import os

import torch

import common
from ae import ENCODER_FILE, build_encoder, save_encoder
from common import wm_ref

BUDGET = 16 * 1024 * 1024


def build_config(a, vocab, latent_hw, dec_cfg):
    """The engine config.json of a train_dit.py architecture (args dict `a`)."""
    return {
        "name": a.get("name", "wm-game"),
        "dim": a["dim"], "ffn_dim": a["ffn"], "num_heads": a["heads"], "num_layers": a["layers"],
        "patch_size": [1, 2, 2], "in_dim": a["latent_channels"], "out_dim": a["latent_channels"],
        "text_dim": a["text_dim"], "text_len": a["text_len"], "freq_dim": 256, "eps": 1e-6,
        "model_type": "t2v", "qk_norm": True, "cross_attn_norm": True, "window_size": [-1, -1],
        "latent_height": latent_hw[0], "latent_width": latent_hw[1],
        "num_frame_per_block": a["chunk"],
        "denoising_step_list": [int(s) for s in a["sample_steps"]],
        "warp_denoising_step": True, "timestep_shift": float(a["shift"]), "context_noise": 0,
        # plain flow matching, not distilled: Euler steps (MODEL.md 2), not Self-Forcing's re-noising
        "sampler": "flow_euler",
        # the engine's action guidance (MODEL.md 2; tools/train/README.md: what it does for the game)
        "action_guidance": float(a.get("action_guidance", 0.0)),
        "action_guidance_steps": int(a.get("action_guidance_steps", len(a["sample_steps"]))),
        "local_attn_size": a["window"], "sink_size": a["sinks"] if a["window"] > 0 else 0,
        "max_cache_frames": max(21, a["window"]), "fps": 16,
        "action_buttons": list(common.BUTTONS), "action_axes": [], "action_mouse": False,
        "text_encoder": {"vocab": list(vocab), "max_tokens": a["text_len"]},
        "decoder": dec_cfg,
    }


def make_model(config):
    cfg = wm_ref.Config(wm_ref.CONFIG_DEFAULTS)
    cfg.update(config)
    return wm_ref.CausalWanModel(cfg)


def export(model, config, out_dir, dtype=torch.float16, encoder=None):
    """model: wm_ref.CausalWanModel (any device/dtype); encoder: None or (the AE's encoder module, its
    arch dict with latent_channels/enc_channels/enc_blocks). Writes out_dir, re-loads the model,
    returns the folder's size (an encoder file left from an earlier export without `encoder` is
    removed: it would not belong to this model)."""
    from safetensors.torch import save_file
    os.makedirs(out_dir, exist_ok=True)
    enc_path = os.path.join(out_dir, ENCODER_FILE)
    if encoder is not None:
        save_encoder(encoder[0], encoder[1], enc_path, dtype=dtype if dtype != torch.bfloat16 else torch.float16)
    elif os.path.exists(enc_path):
        os.remove(enc_path)
    sd = {k: v.detach().to("cpu", dtype).contiguous() for k, v in model.state_dict().items()}
    save_file(sd, os.path.join(out_dir, "model.safetensors"), metadata={"format": "pt", "producer": "tools/train"})
    cfg_path = os.path.join(out_dir, "config.json")
    notes = {}
    if os.path.exists(cfg_path):  # a re-export keeps the folder's notes: "_comment", "_prompts" (wm-play's list)
        try:
            with open(cfg_path) as f:
                notes = {k: v for k, v in json.load(f).items() if k.startswith("_")}
        except (OSError, ValueError):
            notes = {}
    with open(cfg_path, "w") as f:
        json.dump({**notes, **config}, f, indent=1)
        f.write("\n")
    wm_ref.load_model(out_dir)  # names and shapes exactly as the engine checks them
    size = sum(os.path.getsize(os.path.join(out_dir, n)) for n in ("model.safetensors", "config.json", ENCODER_FILE)
               if os.path.exists(os.path.join(out_dir, n)))
    if size > BUDGET:
        print(f"WARNING: {out_dir} is {size / 2**20:.2f} MiB, over the 16 MiB budget", flush=True)
    return size


# train_dit.py's architecture arguments <- the engine config.json keys they become (build_config)
_ARCH_OF_CONFIG = {"name": "name", "dim": "dim", "ffn": "ffn_dim", "heads": "num_heads", "layers": "num_layers",
                   "text_dim": "text_dim", "text_len": "text_len", "chunk": "num_frame_per_block",
                   "window": "local_attn_size", "sinks": "sink_size", "sample_steps": "denoising_step_list",
                   "shift": "timestep_shift"}
# keys that exports before action guidance lack (train_dit.py's defaults fill them in)
_OPTIONAL_ARCH_OF_CONFIG = ("action_guidance", "action_guidance_steps")


def load_exported(model_dir):
    """An exported model folder as a starting point (train_dit.py --init-from): {"arch": train_dit
    architecture arguments, "config": config.json, "weights": the safetensors state dict in fp32}."""
    from safetensors.torch import load_file
    cfg_path, w_path = os.path.join(model_dir, "config.json"), os.path.join(model_dir, "model.safetensors")
    for p in (cfg_path, w_path):
        if not os.path.isfile(p):
            raise SystemExit(f"{model_dir}: no {os.path.basename(p)} (an exported model folder has config.json "
                             "and model.safetensors)")
    with open(cfg_path) as f:
        config = json.load(f)
    missing = [c for c in _ARCH_OF_CONFIG.values() if c not in config]
    if missing or "text_encoder" not in config:
        raise SystemExit(f"{cfg_path}: not a tools/train export (missing {missing or ['text_encoder']})")
    arch = {a: config[c] for a, c in _ARCH_OF_CONFIG.items()}
    arch.update({a: config[a] for a in _OPTIONAL_ARCH_OF_CONFIG if a in config})
    weights = {k: v.float() for k, v in load_file(w_path).items()}
    return {"arch": arch, "config": config, "weights": weights}


def load_dit_weights(model, weights, src):
    """Copies the DiT, text encoder and action MLP tensors of `weights` into model (the decoder comes from
    the autoencoder checkpoint); every one of them must be there with the model's shape."""
    own = {k: v for k, v in model.state_dict().items() if not k.startswith("decoder.")}
    missing = sorted(set(own) - set(weights))
    bad = sorted(k for k in own if k in weights and weights[k].shape != own[k].shape)
    if missing or bad:
        raise SystemExit(f"{src}: does not fit this model: missing {missing[:5]}, shape mismatch {bad[:5]}")
    model.load_state_dict({k: weights[k] for k in own}, strict=False)


def load_ae_encoder(ae_dir):
    """(encoder module, arch) from a train_ae.py checkpoint folder (RUN/ae)."""
    with open(os.path.join(ae_dir, "state.json")) as f:
        arch = json.load(f)["arch"]
    enc = build_encoder(arch["latent_channels"], tuple(arch["enc_channels"]), arch["enc_blocks"])
    enc.load_state_dict(common.load_params(ae_dir, "encoder"))
    return enc, arch


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", required=True, help="train_dit.py run folder (RUN/dit/ checkpoint, RUN/ae/ decoder)")
    ap.add_argument("--out", required=True)
    ap.add_argument("--dtype", default="float16", choices=["float16", "bfloat16", "float32"])
    ap.add_argument("--no-encoder", action="store_true", help="leave encoder.safetensors out")
    args = ap.parse_args()
    with open(os.path.join(args.run, "dit", "state.json")) as f:
        st = json.load(f)
    model = make_model(st["config"])
    common.load_checkpoint(os.path.join(args.run, "dit"), {"model": model}, strict=False)
    ae_dir = st["ae_ckpt"] if os.path.isdir(st["ae_ckpt"]) else os.path.join(args.run, "ae")
    dec = common.load_params(ae_dir, "decoder")
    model.decoder.load_state_dict(dec)
    encoder = None if args.no_encoder else load_ae_encoder(ae_dir)
    size = export(model, st["config"], args.out, getattr(torch, args.dtype), encoder)
    enc_note = ""
    if encoder is not None:
        enc_note = (f"; {ENCODER_FILE} {os.path.getsize(os.path.join(args.out, ENCODER_FILE)) / 2**20:.2f} MiB "
                    f"({common.count_params(encoder[0]) / 1e6:.2f}M params)")
    print(f"exported {args.out}: {size / 2**20:.2f} MiB, {common.count_params(model) / 1e6:.2f}M params{enc_note}")


if __name__ == "__main__":
    main()
