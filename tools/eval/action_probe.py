"""action_probe.py - does the model's next latent frame follow the action at once?

Rolls a model out with the reference (tools/reference/wm_ref.py's Rollout: the engine's sampler and
cache, fp32 on the CPU; the decoder is not run) for --history latent frames holding one direction,
then branches the same state (same noise) into right / left / up / down / none for two latent frames
and measures each branch's camera motion in latent space (phase correlation over all channels,
upsampled 8x: 1-pixel resolution at the latent's 8x scale): over the first branch latent frame (the
action's immediate effect) and over the second. The game moves min(W, H)/64 pixels per video frame in
the commanded direction: 16 px per latent frame at 256 x 256.

    .venv/bin/python tools/eval/action_probe.py [--model assets/game] [--seeds 1 2 3] [--out probe.json]

Prints per branch the mean motion and the share of (prompt, seed, history) cases that follow the
action (commanded sign on the commanded axis, under half the speed on the other; for "none": under
half the speed on both) or continue the history's direction. A model that responds one latent frame
late follows at frame 2 but not at frame 1.
"""
import argparse
import copy
import json
import os
import sys

import numpy as np
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tools", "reference"))
import wm_ref  # noqa: E402

DIRS = {"right": (1, 0), "left": (-1, 0), "up": (0, -1), "down": (0, 1), "none": (0, 0)}


def latent_motion(a, b, scale):
    """camera motion in pixels from latent frame a to b ([C, h, w]): minus the content shift, from the
    channel-summed normalised cross-power spectrum, its correlation upsampled 8x by zero padding."""
    R = (np.fft.fft2(b) * np.conj(np.fft.fft2(a))).sum(0)
    R /= np.abs(R) + 1e-9
    h, w = R.shape
    up = 8
    P = np.zeros((h * up, w * up), complex)
    P[(h * up - h) // 2:(h * up + h) // 2, (w * up - w) // 2:(w * up + w) // 2] = np.fft.fftshift(R)
    r = np.abs(np.fft.ifft2(np.fft.ifftshift(P)))
    iy, ix = np.unravel_index(np.argmax(r), r.shape)
    iy = iy - h * up if iy > h * up // 2 else iy
    ix = ix - w * up if ix > w * up // 2 else ix
    return (-float(ix) * scale / up, -float(iy) * scale / up)


def follows(d, c, tol):
    return all((np.sign(d[ax]) == c[ax] and abs(d[ax]) > tol) if c[ax] else abs(d[ax]) <= tol for ax in range(2))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=os.path.join(ROOT, "assets", "game"))
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    ap.add_argument("--prompts", nargs="+", default=["forest day clear", "desert dusk clear"])
    ap.add_argument("--history", type=int, default=6, help="latent frames before the branch")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default=None, help="JSON file with every case")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.set_grad_enabled(False)
    model = wm_ref.load_model(a.model)
    cfg = model.cfg
    scale = 2 ** sum(bool(u) for u in cfg.decoder["space_upscale"]) if cfg.decoder else 8
    speed = min(cfg.latent_width, cfg.latent_height) * scale / 64 * cfg.time_upscale   # px per latent frame
    u, F_ = cfg.time_upscale, cfg.num_frame_per_block
    names = list(cfg.action_buttons)
    n_hist = max(F_, a.history // F_ * F_)
    v_hist = 1 + u * (n_hist - 1)                                                 # video frames of the history
    n_br = max(1, -(-2 // F_))                                                    # chunks covering 2 latent frames

    def act(name):
        return (0 if name == "none" else 1 << names.index(name), [], 0.0, 0.0)
    cases = []
    for prompt in a.prompts:
        for seed in a.seeds:
            for hist in ("right", "down"):
                r = wm_ref.Rollout(model, seed=seed, prompt=prompt, actions=[act(hist)] * v_hist)
                r.decoder = None
                z = torch.cat(r.run(n_hist // F_)["latents"]).numpy()
                d_hist = latent_motion(z[-2], z[-1], scale)
                line = []
                for b in DIRS:
                    rb = copy.deepcopy(r, memo={id(model): model})
                    rb.actions = [act(hist)] * v_hist + [act(b)] * (u * F_ * n_br)
                    g = torch.cat(rb.run(n_br)["latents"]).numpy()
                    d1, d2 = latent_motion(z[-1], g[0], scale), latent_motion(g[0], g[1], scale)
                    cases.append({"prompt": prompt, "seed": seed, "history": hist, "branch": b,
                                  "history_motion": d_hist, "motion_1": d1, "motion_2": d2})
                    line.append(f"{b} {d1[0]:+.0f},{d1[1]:+.0f} then {d2[0]:+.0f},{d2[1]:+.0f}")
                print(f"{prompt!r} seed {seed}, history {hist} (last motion {d_hist[0]:+.0f},{d_hist[1]:+.0f}): "
                      + "; ".join(line), flush=True)
    tol = speed / 2
    summary = {"speed_px_per_latent_frame": speed}
    for b, c in DIRS.items():
        cs = [x for x in cases if x["branch"] == b]
        s = {}
        for k in ("motion_1", "motion_2"):
            s[k] = {"mean": np.mean([x[k] for x in cs], axis=0).round(2).tolist(),
                    "follows_action": float(np.mean([follows(x[k], c, tol) for x in cs])),
                    "continues_history": float(np.mean([follows(x[k], DIRS[x["history"]], tol) for x in cs]))}
        summary[b] = s
        print(f"branch {b:5s} (commanded {c[0] * speed:+.0f},{c[1] * speed:+.0f}): latent frame 1 mean "
              f"{s['motion_1']['mean']}, follows {s['motion_1']['follows_action']:.2f}, continues the history "
              f"{s['motion_1']['continues_history']:.2f} | latent frame 2 mean {s['motion_2']['mean']}, follows "
              f"{s['motion_2']['follows_action']:.2f}")
    changes = [x for x in cases if x["branch"] != x["history"]]
    summary["changes_follow_at_frame_1"] = float(np.mean([follows(x["motion_1"], DIRS[x["branch"]], tol) for x in changes]))
    summary["changes_follow_at_frame_2"] = float(np.mean([follows(x["motion_2"], DIRS[x["branch"]], tol) for x in changes]))
    print(f"action changes followed at once: {summary['changes_follow_at_frame_1']:.2f}, one latent frame later: "
          f"{summary['changes_follow_at_frame_2']:.2f} ({len(changes)} cases)")
    if a.out:
        with open(a.out, "w") as f:
            json.dump({"model": a.model, "summary": summary, "cases": cases}, f, indent=1)


if __name__ == "__main__":
    main()
