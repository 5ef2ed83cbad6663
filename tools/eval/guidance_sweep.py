"""guidance_sweep.py - action guidance settings (docs/MODEL.md section 2) on the fidelity episodes.

Rolls the model out with the PyTorch reference (tools/reference/wm_ref.py's Rollout: the engine's
sampler, bit-compatible with the CPU engine) after the same 13-frame real context as fidelity.py,
under fidelity.py's action script, for each guidance scale w and number of guided steps, and scores
it the way fidelity.py does: action following k1/k4 (phase correlation against the commands) and
PSNR on frames 1-8 after the context, plus the frames' gradient energy (sharpness). It needs no
engine build, so a sweep costs ~30 s per episode and setting on 2 cores; the chosen setting is then
checked with the engine (fidelity.py --action-guidance W, or the config).

    .venv/bin/python tools/eval/guidance_sweep.py [--model assets/game] [--w 0 1 1.5 2] [--steps 2 4]
                                                  [--episodes 0 1 2 3 4 5] [--frames 128] [--out FILE.json]

Episodes: 0 forest day, 1 desert dusk (fidelity.py's two), 2-5 forest night, snow day, forest dusk
rain, volcanic day (its --more-episodes).
"""
import argparse
import json
import os
import sys
import tempfile
import time

import numpy as np
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tools", "eval"))
sys.path.insert(0, os.path.join(ROOT, "tools", "train"))
import fidelity as fd  # noqa: E402
import common  # noqa: E402
from common import wm_ref  # noqa: E402
from engine_check import read_actions  # noqa: E402



def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default=os.path.join(ROOT, "assets", "game"))
    ap.add_argument("--w", type=float, nargs="+", default=[0.0, 1.0, 1.5, 2.0])
    ap.add_argument("--steps", type=int, nargs="+", default=[2], help="guided steps, from the first")
    ap.add_argument("--episodes", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--frames", type=int, default=128)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--build", default=os.path.join(ROOT, "build"), help="only for fidelity.py's checks")
    ap.add_argument("--out", default=None, help="JSON of all results")
    a = ap.parse_args()
    torch.set_grad_enabled(False)
    torch.set_num_threads(a.threads)
    w_, h_, _ = fd.model_frame_size(a.model)
    fd.set_size(w_, h_)
    enc_path = os.path.join(a.model, "encoder.safetensors")
    if not os.path.exists(enc_path):
        sys.exit(f"{a.model}: no encoder.safetensors (the real context needs it)")

    class RunnerArgs:
        build, model, threads, action_guidance = a.build, a.model, a.threads, None
    work = tempfile.mkdtemp(prefix="wm_guidance_")
    runner = fd.Runner(RunnerArgs, work)
    enc = fd.load_context_encoder(enc_path, a.threads)
    model = wm_ref.load_model(a.model)
    cfg = model.cfg
    n_ctx, first = 4, 13
    acts = fd.action_script(a.frames)
    act_file = runner._actions(acts, "acts")
    actions = read_actions(act_file, cfg.action_buttons)
    results = []
    for e in a.episodes:
        seed, prompt = fd.EPISODES[e]
        gt, _ = runner.gt_episode(seed, prompt, acts, "ep")
        z = torch.from_numpy(fd.encode_context(enc, gt[:first], n_ctx))
        for steps, w in [(s, w) for s in a.steps for w in a.w]:
                t0 = time.time()
                r = wm_ref.Rollout(model, seed=seed, prompt=prompt, actions=actions, action_guidance=w,
                                   action_guidance_steps=steps)
                ctx = common.rollout_prefill(r, z)
                out = r.run((a.frames - first + 3) // 4)
                fr = torch.cat([wm_ref.to_rgb8(ctx), out["rgb8"]])[:a.frames].permute(0, 2, 3, 1).numpy()
                res = {"episode": e, "prompt": prompt, "seed": seed, "w": w, "guided_steps": steps}
                for k in (1, 4):
                    acc, n, miss = fd.action_accuracy(fd.camera_motion(fr, k), acts, k, first)
                    res[f"k{k}"], res[f"k{k}_scored"], res[f"k{k}_missed"] = acc, n, miss
                res["gt_k4"] = fd.action_accuracy(fd.camera_motion(gt, 4), acts, 4, first)[0]
                res["psnr_1_8"] = float(np.mean([fd.psnr(fr[t], gt[t]) for t in range(first, first + 8)]))
                lw, lg = fd.luma(fr[first:]), fd.luma(gt[first:])
                res["grad_ratio"] = float(np.mean(np.abs(np.diff(lw, axis=2))) / np.mean(np.abs(np.diff(lg, axis=2))))
                # contrast (fidelity.py's stability windows) of the last 64 frames relative to the game's:
                # guidance that compounds through the cache shows as a ratio growing past 1
                ws = fd.windows(fr[first:], gt[first:], 64)
                res["contrast_ratio_last"] = ws[-1]["contrast_wm"] / ws[-1]["contrast_gt"]
                results.append(res)
                print(f"{prompt:20s} w {w:4.2f} steps {steps}: k4 {res['k4']:.3f} (gt {res['gt_k4']:.3f}) "
                      f"k1 {res['k1']:.3f} PSNR1-8 {res['psnr_1_8']:.2f} grad ratio {res['grad_ratio']:.3f} "
                      f"contrast ratio (last 64 frames) {res['contrast_ratio_last']:.2f} "
                      f"[{time.time() - t0:.0f} s]", flush=True)
    # per setting: k4 over all scored frames, PSNR 1-8 over episodes 0-1 (fidelity.py's summary)
    print("setting: k4 over the episodes' scored frames; PSNR 1-8 mean of the standard episodes (0, 1)")
    summary = []
    for steps, w in [(s, w) for s in a.steps for w in a.w]:
        rs = [r for r in results if r["w"] == w and r["guided_steps"] == steps]
        k4 = sum(r["k4"] * r["k4_scored"] for r in rs) / max(1, sum(r["k4_scored"] for r in rs))
        std = [r["psnr_1_8"] for r in rs if r["episode"] in (0, 1)]
        summary.append({"w": w, "guided_steps": steps, "k4": k4,
                        "psnr_1_8_standard": float(np.mean(std)) if std else None})
        print(f"  w {w:4.2f} steps {steps}: k4 {k4:.3f}" + (f", PSNR1-8 {np.mean(std):.2f}" if std else ""))
    if a.out:
        with open(a.out, "w") as f:
            json.dump({"model": os.path.relpath(a.model, ROOT), "frames": a.frames, "context_latents": n_ctx,
                       "results": results, "summary": summary}, f, indent=1)
        print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
