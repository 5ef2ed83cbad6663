"""engine_check.py - compares an engine run (wm-run --latents F --out X.rgb) with the PyTorch reference
(wm_ref.Rollout) on the same model folder, prompt, seed and wm-run action script.

    python tools/train/engine_check.py MODEL ENGINE.lat ENGINE.rgb "PROMPT" ACTIONS.txt [--seed 0]
                                       [--prefill CTX.lat]

With --prefill (the file given to wm-run --prefill-latents), the reference first commits those latents
the way train_dit.py's validation rollout does (common.rollout_prefill) and then generates; the
engine's dump then starts with them and its frames with their decoding.
Prints the max difference of the latents and of the RGB8 frames; exits 1 beyond tolerance
(default latents 1e-3 absolute, RGB8 2 levels: the engine's CPU backend matches to ~1e-6 in practice;
--tol-rel R instead takes R x max|reference| for the latents, e.g. 3e-2 with --tol-rgb 8 for the
CUDA backend's bf16, the tolerances of test_golden --backend cuda).
"""
import argparse
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402
from common import wm_ref  # noqa: E402


def read_actions(path, buttons):
    out = []
    for line in open(path):
        line = line.split("#")[0].strip()
        if not line:
            continue
        tok = line.split()[0]
        b = 0
        if tok != "-":
            for name in tok.split("+"):
                b |= 1 << [x.lower() for x in buttons].index(name.lower())
        out.append((b, [], 0.0, 0.0))
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("latents")
    ap.add_argument("rgb")
    ap.add_argument("prompt")
    ap.add_argument("actions")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--prefill", default=None, help="the raw fp32 latents given to wm-run --prefill-latents")
    ap.add_argument("--tol-rel", type=float, default=None, help="latent tolerance relative to max|reference|")
    ap.add_argument("--tol-rgb", type=int, default=2, help="RGB8 tolerance in levels")
    a = ap.parse_args()
    torch.set_grad_enabled(False)
    cfg = wm_ref.Config.load(a.model)
    eng = np.fromfile(a.latents, np.float32)
    per_chunk = cfg.num_frame_per_block * cfg.in_dim * cfg.latent_height * cfg.latent_width
    n_chunks = eng.size // per_chunk
    r = wm_ref.Rollout(a.model, seed=a.seed, prompt=a.prompt, actions=read_actions(a.actions, cfg.action_buttons))
    ctx_lat, ctx_rgb, n_pre = [], None, 0
    if a.prefill:
        z = torch.from_numpy(np.fromfile(a.prefill, np.float32)).view(-1, cfg.in_dim, cfg.latent_height,
                                                                        cfg.latent_width)
        ctx_rgb = common.rollout_prefill(r, z)
        ctx_lat, n_pre = [z], z.shape[0] // cfg.num_frame_per_block
    out = r.run(n_chunks - n_pre)
    if ctx_rgb is not None:
        out["rgb8"] = torch.cat([wm_ref.to_rgb8(ctx_rgb), out["rgb8"]])
    ref = torch.cat(ctx_lat + out["latents"]).numpy().ravel()
    dl = float(np.abs(ref - eng).max())
    h, w = cfg.latent_height * 8, cfg.latent_width * 8
    rgb = np.fromfile(a.rgb, np.uint8).reshape(-1, h, w, 3)
    rr = out["rgb8"].permute(0, 2, 3, 1).numpy()[: rgb.shape[0]]
    dr = int(np.abs(rgb.astype(int) - rr.astype(int)).max())
    tol = 1e-3 if a.tol_rel is None else a.tol_rel * float(np.abs(ref).max())
    ok = dl < tol and dr <= a.tol_rgb and rgb.shape[0] == rr.shape[0] and eng.size == ref.size
    print(f"engine vs reference{' after a prefill' if a.prefill else ''}: {n_chunks} chunks, latents max|diff| {dl:.3g} (max|ref| {np.abs(ref).max():.3g}), "
          f"{rgb.shape[0]} frames RGB8 max|diff| {dr} (tolerances {tol:.3g}, {a.tol_rgb}): {'OK' if ok else 'MISMATCH'}")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
