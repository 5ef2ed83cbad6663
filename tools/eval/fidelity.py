"""fidelity.py - the shipped neural game (assets/game) against the ground-truth game (host/game).

Plays held-out seeds with scripted actions in both the ground truth (tools/eval/gt_render.c, compiled
here against host/game/game.c) and the engine (wm-run, CPU backend) under the same prompt and action
script, then measures:

  1. action following: per-frame camera motion estimated from the frames by phase correlation
     (numpy FFT), sign vs the commanded direction (frames without a movement command are ignored);
     per frame (k=1) and per latent frame (k=4: displacement over 4 frames of one command). The same
     metric on the ground truth is the sanity check of the estimator (~100%).
  2. PSNR / SSIM (gaussian 11x11, sigma 1.5, on luma) of engine vs ground truth on frames 1-16, plus
     colour statistics - after a real context when the model folder has the autoencoder's encoder
     (encoder.safetensors, written by tools/train/export.py), else from scratch:
     * context mode: the ground truth's first 1 + 4(n-1) video frames are encoded (PyTorch, CPU,
       tools/train/ae.py) into n latent frames (--context, default 4: 13 frames, as train_dit.py's
       validation rollout), which wm-run commits through session_prefill_latents
       (--prefill-latents) under the same action lines; the engine then generates. Its output frame
       i is the game's frame i (frames 0..12 are the decoded context), and "frame k after the context"
       is video frame 1 + 4(n-1) + k - 1 (frame 1 = video frame 13 for n = 4): train_dit.py's `first`,
       the first generated frame. Beside the engine's PSNR/SSIM: the same frames decoded by the engine
       from the encoder's latents of the true frames (the autoencoder's ceiling) and the decoded
       context's PSNR. Action following and stability are scored on the frames after the context.
     * from scratch (no encoder file, or --no-context): the engine starts from noise without the
       ground truth's context, so the layouts differ and PSNR measures look/colour agreement, not
       reconstruction; frames 1-16 are video frames 0-15.
  3. stability: per-64-frame window sharpness (mean gradient magnitude, Laplacian variance), frame
     contrast and mean colour, engine relative to ground truth; flags blur-out, collapse, colour drift.
  4. prompt adherence: mean RGB of engine frames for each biome x time prompt (clear weather),
     classified to the nearest ground-truth look (4 biomes x 3 times); always from scratch (a context
     would give the look away).

The frame size is the model's (config.json: latent size x 8); the ground truth is rendered at it
(the game moves tile/4 = min(W, H)/64 pixels per frame).

    .venv/bin/python tools/eval/fidelity.py            # quick (~2-3 min on 2 cores)
    .venv/bin/python tools/eval/fidelity.py --full     # 2000-frame stability run (~12 min)
    options: --frames N --look-frames N --threads N --build DIR --model DIR --out-dir DIR --name NAME
             --context N | --no-context --check --action-guidance W --more-episodes

Writes OUT_DIR/fidelity.json and fidelity.png (quick) or fidelity_full.json / fidelity_full.png.
--check exits 1 on absurd results (NaN, ground-truth action accuracy < 90 %), never on the model's
quality; exit 77 when a prerequisite (wm-run, a C compiler) is missing.
"""
import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
W = H = 256          # frame size: set_size() from the model's config
FB = W * H * 3
SPEED = 4.0          # commanded camera speed in pixels per frame (tile / 4)
BIOMES = ["forest", "desert", "snow", "volcanic"]
TIMES = ["day", "dusk", "night"]
DIRS = {"right": (1, 0), "left": (-1, 0), "down": (0, 1), "up": (0, -1)}
# held-out episodes (world seed, prompt): the two standard ones, then --more-episodes' four (the training
# data used wm-gamegen run seeds near 1; these world seeds are far away)
EPISODES = [(90001, "forest day clear"), (90002, "desert dusk clear"), (90003, "forest night clear"),
            (90004, "snow day clear"), (90005, "forest dusk rain"), (90006, "volcanic day clear")]


# ----------------------------------------------------------------------------------------- episodes
def action_script(n):
    """right x8, down x8, left x8, up x8, then a torch press and 7 idle frames; repeated."""
    cyc = []
    for d in ["right", "down", "left", "up"]:
        cyc += [d] * 8
    cyc += ["torch"] + ["-"] * 7
    return [cyc[i % len(cyc)] for i in range(n)]


def command(a):
    """commanded camera direction (dx, dy) of an action line, None without movement."""
    dx = dy = 0
    for b in a.split("+"):
        if b in DIRS:
            dx += DIRS[b][0]
            dy += DIRS[b][1]
    return None if (dx, dy) == (0, 0) else (dx, dy)


def read_rgb(path, n):
    a = np.fromfile(path, dtype=np.uint8)
    if a.size != n * FB:
        raise RuntimeError(f"{path}: {a.size} bytes, expected {n * FB}")
    return a.reshape(n, H, W, 3)


class Runner:
    def __init__(self, args, work):
        self.args, self.work = args, work
        self.wm_run = os.path.join(args.build, "host", "wm-run", "wm-run")
        self.gt = os.path.join(work, "gt_render")
        cc = shutil.which(os.environ.get("CC", "cc")) or shutil.which("gcc")
        if not os.path.exists(self.wm_run) or not cc:
            print("fidelity: wm-run or a C compiler is missing", file=sys.stderr)
            sys.exit(77)
        subprocess.run([cc, "-O2", "-std=c11", "-I" + os.path.join(ROOT, "host/game"),
                        "-I" + os.path.join(ROOT, "plugin/include"),
                        os.path.join(ROOT, "tools/eval/gt_render.c"), os.path.join(ROOT, "host/game/game.c"),
                        "-lm", "-o", self.gt], check=True)
        self.engine_s = 0.0
        self.engine_frames = 0

    def _actions(self, acts, tag):
        p = os.path.join(self.work, tag + ".txt")
        with open(p, "w") as f:
            f.write("\n".join(acts) + "\n")
        return p

    def gt_episode(self, seed, prompt, acts, tag):
        ap = self._actions(acts, tag)
        rgb, cam = os.path.join(self.work, tag + "_gt.rgb"), os.path.join(self.work, tag + "_gt.cam")
        subprocess.run([self.gt, str(seed), prompt, str(len(acts)), ap, rgb, cam, str(W), str(H)], check=True)
        fr = read_rgb(rgb, len(acts))
        os.remove(rgb)
        return fr, np.loadtxt(cam, dtype=np.int64).reshape(-1, 2)

    def engine_episode(self, seed, prompt, acts, tag, prefill=None):
        """The engine's frames 0..len(acts)-1; with prefill (latents [n, C, h, w]) its first
        1 + 4(n-1) frames are those latents decoded (wm-run --prefill-latents), the rest generated."""
        ap = self._actions(acts, tag)
        rgb = os.path.join(self.work, tag + "_wm.rgb")
        cmd = [self.wm_run, "--model", self.args.model, "--frames", str(len(acts)), "--prompt", prompt,
               "--seed", str(seed), "--actions", ap, "--backend", "cpu", "--threads",
               str(self.args.threads), "--out", rgb, "--quiet"]
        if self.args.action_guidance is not None:
            cmd += ["--action-guidance", str(self.args.action_guidance)]
        if prefill is not None:
            lat = os.path.join(self.work, tag + "_ctx.lat")
            np.ascontiguousarray(prefill, dtype=np.float32).tofile(lat)
            cmd += ["--prefill-latents", lat]
        t0 = time.time()
        subprocess.run(cmd, check=True)
        if prefill is None:  # prefill-only runs (the autoencoder's ceiling) are not generation
            self.engine_s += time.time() - t0
            self.engine_frames += len(acts)
        fr = read_rgb(rgb, len(acts))
        os.remove(rgb)
        return fr


# ------------------------------------------------------------------------------------------ metrics
def luma(fr):
    return fr[..., 0].astype(np.float32) * 0.299 + fr[..., 1] * 0.587 + fr[..., 2] * 0.114


_HANN = np.outer(np.hanning(H), np.hanning(W)).astype(np.float32)


def set_size(w, h):
    global W, H, FB, SPEED, _HANN
    W, H, FB, SPEED = w, h, w * h * 3, min(w, h) / 64.0
    _HANN = np.outer(np.hanning(H), np.hanning(W)).astype(np.float32)


def model_config(model):
    """config.json of a model folder (or the file itself)."""
    path = os.path.join(model, "config.json") if os.path.isdir(model) else model
    with open(path) as f:
        return json.load(f)


def model_frame_size(model):
    """(width, height, latent frames per chunk) of a model folder or config.json."""
    cfg = model_config(model)
    up = 2 ** sum(bool(u) for u in cfg.get("decoder", {}).get("space_upscale", [True, True, True]))
    return cfg["latent_width"] * up, cfg["latent_height"] * up, cfg.get("num_frame_per_block", 3)


def phase_shift(a, b):
    """(dx, dy) with b(x) ~ a(x - d): content displacement from a to b (integer pixels)."""
    a = (a - a.mean()) * _HANN
    b = (b - b.mean()) * _HANN
    Fa, Fb = np.fft.rfft2(a), np.fft.rfft2(b)
    R = Fb * np.conj(Fa)
    R /= np.abs(R) + 1e-9
    r = np.fft.irfft2(R, s=a.shape)
    iy, ix = np.unravel_index(np.argmax(r), r.shape)
    if iy > H // 2:
        iy -= H
    if ix > W // 2:
        ix -= W
    return ix, iy


def camera_motion(fr, k):
    """estimated camera motion between frame t-k and t (index t, NaN for t < k): minus the content shift."""
    L = luma(fr)
    m = np.full((len(fr), 2), np.nan)
    for t in range(k, len(fr)):
        dx, dy = phase_shift(L[t - k], L[t])
        m[t] = (-dx, -dy)
    return m


def action_accuracy(motion, acts, k, start=0):
    """fraction of frames t >= start whose estimated motion has the commanded sign on every commanded
    axis (k > 1: only frames whose last k commands are the same movement). Returns (fraction, frames
    scored, the scored frames that missed)."""
    hits = n = 0
    missed = []
    for t in range(max(k, start), len(acts)):
        c = command(acts[t])
        if c is None or any(command(acts[t - j]) != c for j in range(k)):
            continue
        n += 1
        ok = True
        for ax in range(2):
            s = np.sign(motion[t, ax])
            if c[ax] != 0 and s != c[ax]:
                ok = False
            if c[ax] == 0 and abs(motion[t, ax]) > 2 * k * SPEED:  # wild motion on the idle axis
                ok = False
        hits += ok
        if not ok:
            missed.append(t)
    return hits / max(n, 1), n, missed


def psnr(a, b):
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float(10 * math.log10(255.0 ** 2 / max(mse, 1e-10)))


def _gauss_valid(x, g):
    k = len(g)
    y = sum(g[i] * x[i:x.shape[0] - k + 1 + i, :] for i in range(k))
    return sum(g[i] * y[:, i:y.shape[1] - k + 1 + i] for i in range(k))


def ssim(a, b, sigma=1.5, size=11):
    g = np.exp(-0.5 * ((np.arange(size) - size // 2) / sigma) ** 2)
    g /= g.sum()
    a = a.astype(np.float64)
    b = b.astype(np.float64)
    C1, C2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    mu_a, mu_b = _gauss_valid(a, g), _gauss_valid(b, g)
    saa = _gauss_valid(a * a, g) - mu_a ** 2
    sbb = _gauss_valid(b * b, g) - mu_b ** 2
    sab = _gauss_valid(a * b, g) - mu_a * mu_b
    m = ((2 * mu_a * mu_b + C1) * (2 * sab + C2)) / ((mu_a ** 2 + mu_b ** 2 + C1) * (saa + sbb + C2))
    return float(m.mean())


def sharpness(fr):
    """per frame: mean gradient magnitude and Laplacian variance of luma."""
    L = luma(fr)
    gx = np.diff(L, axis=2)[:, :-1, :]
    gy = np.diff(L, axis=1)[:, :, :-1]
    grad = np.sqrt(gx ** 2 + gy ** 2).mean(axis=(1, 2))
    lap = (L[:, 1:-1, 1:-1] * -4 + L[:, :-2, 1:-1] + L[:, 2:, 1:-1] + L[:, 1:-1, :-2] + L[:, 1:-1, 2:])
    return grad, lap.reshape(len(fr), -1).var(axis=1)


def colour_stats(fr):
    x = fr.reshape(-1, 3).astype(np.float64)
    return {"mean_rgb": x.mean(0).round(2).tolist(), "std_rgb": x.std(0).round(2).tolist()}


def windows(fr_wm, fr_gt, win):
    gw, lw = sharpness(fr_wm)
    gg, lg = sharpness(fr_gt)
    out = []
    for s in range(0, len(fr_wm) - win + 1, win):
        e = s + win
        mw = fr_wm[s:e].reshape(-1, 3).mean(0)
        mg = fr_gt[s:e].reshape(-1, 3).mean(0)
        out.append({"start": s, "grad_wm": float(gw[s:e].mean()), "grad_gt": float(gg[s:e].mean()),
                    "grad_ratio": float(gw[s:e].mean() / max(gg[s:e].mean(), 1e-6)),
                    "lapvar_wm": float(lw[s:e].mean()), "lapvar_gt": float(lg[s:e].mean()),
                    "lapvar_ratio": float(lw[s:e].mean() / max(lg[s:e].mean(), 1e-6)),
                    "contrast_wm": float(luma(fr_wm[s:e]).std(axis=(1, 2)).mean()),
                    "contrast_gt": float(luma(fr_gt[s:e]).std(axis=(1, 2)).mean()),
                    "mean_rgb_wm": mw.round(2).tolist(), "mean_rgb_gt": mg.round(2).tolist(),
                    "colour_diff": float(np.abs(mw - mg).mean())})
    return out


def stability_flags(ws):
    if not ws:
        return {}
    f, l = ws[0], ws[-1]
    first_mw, last_mw = np.array(f["mean_rgb_wm"]), np.array(l["mean_rgb_wm"])
    first_mg, last_mg = np.array(f["mean_rgb_gt"]), np.array(l["mean_rgb_gt"])
    drift = float(np.abs((last_mw - first_mw) - (last_mg - first_mg)).mean())
    return {
        "blur_out": bool(l["grad_ratio"] < 0.5 * f["grad_ratio"]),
        "collapse": bool(min(w["contrast_wm"] for w in ws) < 3.0 or min(w["grad_wm"] for w in ws) < 0.5),
        "colour_drift": bool(drift > 30.0),
        "grad_ratio_first_last": [f["grad_ratio"], l["grad_ratio"]],
        "colour_drift_vs_gt": drift,
    }


# ------------------------------------------------------------------------------------------ context
def load_context_encoder(path, threads):
    """The autoencoder's encoder of the model folder (tools/train/ae.py; PyTorch on the CPU)."""
    sys.path.insert(0, os.path.join(ROOT, "tools", "train"))
    import torch
    import ae  # noqa: E402  (imports tools/reference/wm_ref.py through tools/train/common.py)
    torch.set_num_threads(max(1, threads))
    enc, meta = ae.load_encoder(path)
    return enc, ae


def encode_context(encoder, frames, n):
    """Game frames 0..1+4(n-1)-1 (uint8 [T, H, W, 3]) -> the n latent frames [n, C, h, w] (fp32) the
    DiT was trained on (latent 0 = frame 0, latent f = frames 4f-3..4f)."""
    enc, ae = encoder
    if len(frames) != 1 + 4 * (n - 1):
        raise ValueError(f"{len(frames)} frames for {n} latent frames (need {1 + 4 * (n - 1)})")
    z = ae.encode_video(enc, np.ascontiguousarray(frames), "cpu").numpy()
    if z.shape[0] != n or not np.isfinite(z).all():
        raise RuntimeError(f"encoder gave {z.shape} latents (finite: {np.isfinite(z).all()}), expected {n}")
    return z


# ---------------------------------------------------------------------------------------------- main
def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--full", action="store_true", help="2000-frame stability run, 32 frames per look")
    ap.add_argument("--frames", type=int, default=None, help="frames of the action/stability episodes")
    ap.add_argument("--look-frames", type=int, default=None, help="frames per prompt-adherence run")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--model", default=os.path.join(ROOT, "assets", "game"))
    ap.add_argument("--out-dir", default=os.path.join(ROOT, "docs", "game"))
    ap.add_argument("--name", default=None, help="output base name (default fidelity / fidelity_full)")
    ap.add_argument("--check", action="store_true", help="exit 1 on absurd results (NaN, GT accuracy < 90%%)")
    ap.add_argument("--context", type=int, default=4,
                    help="latent frames of real context (1 + 4(n-1) video frames) when the model folder has "
                         "encoder.safetensors (default 4 = 13 frames, as train_dit.py's validation)")
    ap.add_argument("--no-context", action="store_true", help="from scratch even with an encoder file")
    ap.add_argument("--action-guidance", type=float, default=None,
                    help="the engine's action guidance (wm-run --action-guidance; default: the model's config)")
    ap.add_argument("--more-episodes", action="store_true",
                    help="4 more held-out episodes of 128 frames (forest night, snow day, forest dusk rain, volcanic "
                         "day) after the two standard ones; the summary is then over all six")
    args = ap.parse_args()
    frames = args.frames or (2000 if args.full else 128)
    look_frames = args.look_frames or (32 if args.full else 16)
    name = args.name or ("fidelity_full" if args.full else "fidelity")
    w, h, chunk = model_frame_size(args.model)
    set_size(w, h)
    enc_path = os.path.join(args.model, "encoder.safetensors") if os.path.isdir(args.model) else None
    use_ctx = bool(enc_path) and os.path.exists(enc_path) and not args.no_context
    n_ctx = args.context
    first = 1 + 4 * (n_ctx - 1) if use_ctx else 0          # video frames of the context = index of frame 1 after it
    if use_ctx and (n_ctx < 1 or n_ctx % chunk):
        ap.error(f"--context {n_ctx}: need a positive multiple of the model's {chunk} latent frames per chunk")
    if use_ctx and frames <= first + 4:
        ap.error(f"--frames {frames}: the context alone is {first} video frames; ask for more than {first + 4}")
    t_start = time.time()
    work = tempfile.mkdtemp(prefix="wm_fidelity_")
    try:
        R = Runner(args, work)
        encoder = load_context_encoder(enc_path, args.threads) if use_ctx else None
        # the first episode is the long one in --full; the others 128 frames at most
        episodes = [(s, p, frames if i == 0 else min(frames, 128))
                    for i, (s, p) in enumerate(EPISODES[:6 if args.more_episodes else 2])]
        res = {"model": os.path.relpath(args.model, ROOT), "mode": "full" if args.full else "quick",
               "threads": args.threads, "backend": "cpu", "frame_size": [w, h],
               "action_guidance": (args.action_guidance if args.action_guidance is not None
                                   else model_config(args.model).get("action_guidance", 0.0)),
               "action_script": "right x8, down x8, left x8, up x8, torch x1, idle x7; repeated",
               "episodes": []}
        if use_ctx:
            res["context"] = {
                "mode": "after_context", "latent_frames": n_ctx, "video_frames": first,
                "encoder": os.path.relpath(enc_path, ROOT),
                "alignment": f"engine frame i = game frame i; frames 0..{first - 1} are the context (the encoder's "
                             f"latents of the game's frames 0..{first - 1}, committed by wm-run --prefill-latents "
                             f"under the same action lines and decoded by the engine); frame k after the context "
                             f"(k = 1..16) is video frame {first} + k - 1, the first generated frame being video "
                             f"frame {first} (train_dit.py val_rollout's `first` = 1 + 4 (n_ctx - 1))",
                "scored_from_video_frame": first}
        else:
            res["context"] = {
                "mode": "from_scratch", "latent_frames": 0, "video_frames": 0, "scored_from_video_frame": 0,
                "note": ("--no-context" if args.no_context else
                         f"no encoder.safetensors in {os.path.relpath(args.model, ROOT)} (tools/train/export.py "
                         "writes it)") + ": the engine starts from noise without the ground truth's context, so "
                         "layouts differ and frames 1-16 (video frames 0-15) measure look, not reconstruction"}
        key16 = "frames_1_16_after_context" if use_ctx else "frames_1_16_from_scratch"
        plot_data = {}
        for i, (seed, prompt, n) in enumerate(episodes):
            acts = action_script(n)
            gt, cam = R.gt_episode(seed, prompt, acts, f"ep{i}")
            ep = {"seed": seed, "prompt": prompt, "frames": n}
            m = min(16, n - first)                               # frames scored after the context
            if use_ctx:
                z = encode_context(encoder, gt[:first], n_ctx)
                wm = R.engine_episode(seed, prompt, acts, f"ep{i}", prefill=z)
                # the autoencoder's ceiling: the engine decoding the encoder's latents of the true frames
                n_ae = n_ctx + (m + 3) // 4                      # whole latent frames covering frames 1..m
                n_ae = -(-n_ae // chunk) * chunk
                acts_ae = action_script(1 + 4 * (n_ae - 1))      # the same script, longer if need be
                gt_ae = gt if len(gt) >= len(acts_ae) else R.gt_episode(seed, prompt, acts_ae, f"ep{i}ae")[0]
                ae_fr = R.engine_episode(seed, prompt, acts_ae, f"ep{i}ae",
                                         prefill=encode_context(encoder, gt_ae[:len(acts_ae)], n_ae))
            else:
                wm = R.engine_episode(seed, prompt, acts, f"ep{i}")
            # 1. action following (frames t >= first: the generated ones; the motion over k frames may
            # start in the context's last frames)
            acc = {}
            mot = {}
            for k in (1, 4):
                mw, mg = camera_motion(wm, k), camera_motion(gt, k)
                mot[k] = (mw, mg)
                aw, nw, miss = action_accuracy(mw, acts, k, first)
                ag, _, _ = action_accuracy(mg, acts, k, first)
                true = np.full_like(mg, np.nan)
                true[k:] = cam[k:] - cam[:-k]
                valid = ~np.isnan(mg[:, 0])
                acc[f"k{k}"] = {"engine": aw, "ground_truth": ag, "frames_scored": nw, "from_video_frame": first,
                                "gt_estimator_exact": float(np.mean(np.all(mg[valid] == true[valid], axis=1))),
                                "missed_video_frames": miss}  # where the engine's misses sit
                mv = np.array([command(a) is not None for a in acts])
                mv[:max(k, first)] = False
                sp = np.linalg.norm(mw[mv], axis=1)
                acc[f"k{k}"]["engine_median_speed_px"] = float(np.median(sp)) if sp.size else float("nan")
                acc[f"k{k}"]["commanded_speed_px"] = SPEED * k
            ep["action_following"] = acc
            # 2. frames 1-16: video frames first .. first + 15
            idx = list(range(first, first + m))
            ps = [psnr(wm[t], gt[t]) for t in idx]
            ss = [ssim(luma(wm[t:t + 1])[0], luma(gt[t:t + 1])[0]) for t in idx]
            f16 = {"video_frames": [first, first + m - 1],
                   "psnr": [round(p, 3) for p in ps], "ssim": [round(s, 4) for s in ss],
                   "psnr_mean_1_8": float(np.mean(ps[:8])), "psnr_mean_1_16": float(np.mean(ps)),
                   "ssim_mean_1_8": float(np.mean(ss[:8])), "ssim_mean_1_16": float(np.mean(ss)),
                   "colour_engine": colour_stats(wm[first:first + m]),
                   "colour_ground_truth": colour_stats(gt[first:first + m])}
            if use_ctx:
                pa = [psnr(ae_fr[t], gt_ae[t]) for t in idx]
                sa = [ssim(luma(ae_fr[t:t + 1])[0], luma(gt_ae[t:t + 1])[0]) for t in idx]
                pc = [psnr(wm[t], gt[t]) for t in range(first)]
                f16.update({
                    "note": f"after a real context of {n_ctx} latent frames ({first} video frames); frame k = video "
                            f"frame {first} + k - 1",
                    "ae_ceiling_psnr": [round(p, 3) for p in pa], "ae_ceiling_ssim": [round(s, 4) for s in sa],
                    "ae_ceiling_psnr_mean_1_16": float(np.mean(pa)), "ae_ceiling_ssim_mean_1_16": float(np.mean(sa)),
                    "ae_ceiling_note": "the engine decoding the encoder's latents of the true frames (prefill only): "
                                       "the best the model's latent space allows",
                    "context_psnr": [round(p, 3) for p in pc], "context_psnr_mean": float(np.mean(pc))})
            else:
                f16["note"] = res["context"]["note"]
            ep[key16] = f16
            # 3. stability (after the context)
            n_s = n - first
            win = 64 if n_s >= 128 else max(16, n_s // 2)
            ws = windows(wm[first:], gt[first:], win)
            for x in ws:
                x["start"] += first
            ep["stability"] = {"window": win, "from_video_frame": first, "windows": ws, "flags": stability_flags(ws)}
            res["episodes"].append(ep)
            plot_data[i] = (acts, mot, ps, ss, ws, wm, gt, first)
            ctx_msg = (f" (AE ceiling {f16['ae_ceiling_psnr_mean_1_16']:.2f}, context {f16['context_psnr_mean']:.2f} dB)"
                       if use_ctx else "")
            print(f"episode {i} ({prompt}, {n} frames, {'after a context of ' + str(first) if use_ctx else 'from scratch'}): "
                  f"action k1 {acc['k1']['engine']:.3f} (gt {acc['k1']['ground_truth']:.3f}) k4 {acc['k4']['engine']:.3f} "
                  f"(gt {acc['k4']['ground_truth']:.3f}); PSNR1-16 {np.mean(ps):.2f}{ctx_msg} SSIM {np.mean(ss):.3f}; "
                  f"flags {ep['stability']['flags']}", flush=True)
        # 4. prompt adherence
        acts = action_script(look_frames)
        gt_mean, wm_mean = {}, {}
        for b in BIOMES:
            for t in TIMES:
                p = f"{b} {t} clear"
                gms = [R.gt_episode(s, p, acts, "look")[0].reshape(-1, 3).mean(0) for s in (91001, 91002, 91003)]
                gt_mean[p] = np.mean(gms, axis=0)
                wm_mean[p] = R.engine_episode(91001, p, acts, "look").reshape(-1, 3).mean(0)
        keys = list(gt_mean)
        G = np.array([gt_mean[k] for k in keys])
        conf = np.zeros((len(keys), len(keys)), dtype=int)
        hit = hb = ht = 0
        per = {}
        for i, k in enumerate(keys):
            j = int(np.argmin(np.linalg.norm(G - wm_mean[k], axis=1)))
            conf[i, j] += 1
            hit += i == j
            hb += keys[i].split()[0] == keys[j].split()[0]
            ht += keys[i].split()[1] == keys[j].split()[1]
            per[k] = {"engine_mean_rgb": wm_mean[k].round(2).tolist(), "gt_mean_rgb": gt_mean[k].round(2).tolist(),
                      "nearest_look": keys[j]}
        res["prompt_adherence"] = {"frames_per_look": look_frames, "from_scratch": True, "looks": per,
                                   "accuracy_look": hit / len(keys), "accuracy_biome": hb / len(keys),
                                   "accuracy_time": ht / len(keys), "chance_look": 1 / len(keys)}
        print(f"prompt adherence: look {hit}/{len(keys)}, biome {hb}/{len(keys)}, time {ht}/{len(keys)}", flush=True)
        res["engine_fps_cpu"] = R.engine_frames / max(R.engine_s, 1e-9)
        res["wall_s"] = time.time() - t_start
        # summary
        e0 = res["episodes"]

        def over_frames(k, who):
            """the share over all scored frames of all episodes (in --full the first episode is the long
            one: a plain mean over episodes would give its 2000 frames the weight of the short one's 128)"""
            n = [e["action_following"][k]["frames_scored"] for e in e0]
            return float(np.dot([e["action_following"][k][who] for e in e0], n) / max(1, sum(n)))
        res["summary"] = {
            "action_following_engine_k1": over_frames("k1", "engine"),
            "action_following_engine_k4": over_frames("k4", "engine"),
            "action_following_gt_k1": over_frames("k1", "ground_truth"),
            "action_following_gt_k4": over_frames("k4", "ground_truth"),
            "frames_1_16_mode": res["context"]["mode"],
            "context_video_frames": first,
        }
        tag = "after_context" if use_ctx else "from_scratch"
        for a, b in [("psnr_1_8", "psnr_mean_1_8"), ("ssim_1_8", "ssim_mean_1_8"), ("psnr_1_16", "psnr_mean_1_16"),
                     ("ssim_1_16", "ssim_mean_1_16")] + ([("ae_ceiling_psnr_1_16", "ae_ceiling_psnr_mean_1_16"),
                                                         ("ae_ceiling_ssim_1_16", "ae_ceiling_ssim_mean_1_16"),
                                                         ("context_psnr", "context_psnr_mean")] if use_ctx else []):
            res["summary"][a + ("" if a.startswith(("ae_", "context_")) else "_" + tag)] = \
                float(np.mean([e[key16][b] for e in e0]))
        res["summary"].update({
            "stability_frames": frames,
            "any_blur_out": any(e["stability"]["flags"].get("blur_out") for e in e0),
            "any_collapse": any(e["stability"]["flags"].get("collapse") for e in e0),
            "any_colour_drift": any(e["stability"]["flags"].get("colour_drift") for e in e0),
            "prompt_accuracy_look": res["prompt_adherence"]["accuracy_look"],
            "prompt_accuracy_biome": res["prompt_adherence"]["accuracy_biome"],
            "prompt_accuracy_time": res["prompt_adherence"]["accuracy_time"],
        })
        os.makedirs(args.out_dir, exist_ok=True)
        jp = os.path.join(args.out_dir, name + ".json")
        with open(jp, "w") as f:
            json.dump(res, f, indent=1)
        plot(os.path.join(args.out_dir, name + ".png"), plot_data, keys, conf, res)
        print(json.dumps(res["summary"], indent=1))
        print(f"wrote {jp} ({res['wall_s']:.0f} s, engine {res['engine_fps_cpu']:.2f} fps on {args.threads} threads)")
        if args.check:
            bad = []
            flat = json.dumps(res)
            if "NaN" in flat or "Infinity" in flat:
                bad.append("NaN/inf in the results")
            if res["summary"]["action_following_gt_k1"] < 0.9 or res["summary"]["action_following_gt_k4"] < 0.9:
                bad.append("ground-truth action accuracy < 90%: the motion estimator is broken")
            for e in e0:
                for v in e[key16]["psnr"] + e[key16].get("ae_ceiling_psnr", []) + e[key16].get("context_psnr", []):
                    if not (0 < v < 100):
                        bad.append(f"absurd PSNR {v}")
            if bad:
                print("fidelity check FAILED: " + "; ".join(bad), file=sys.stderr)
                return 1
        return 0
    finally:
        shutil.rmtree(work, ignore_errors=True)


def plot(path, pd, keys, conf, res):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(2, 3, figsize=(17, 9.5))
    acts, mot, ps, ss, ws, wm, gt, first = pd[0]
    n = min(len(acts), 160)
    if first:
        ax[0, 0].axvspan(0, first - 0.5, color="0.85", label="context (prefilled)")
    mw, mg = mot[4]
    for c, (axis, col) in enumerate([("x", "tab:red"), ("y", "tab:blue")]):
        ax[0, 0].plot(mg[:n, c], color=col, lw=2, alpha=0.35, label=f"ground truth d{axis}")
        ax[0, 0].plot(mw[:n, c], color=col, lw=1, label=f"engine d{axis}")
    ax[0, 0].set_title(f"camera motion over 4 frames (phase correlation), ep 0\n"
                       f"engine acc k1 {res['summary']['action_following_engine_k1']:.2f} "
                       f"k4 {res['summary']['action_following_engine_k4']:.2f}; gt k1 "
                       f"{res['summary']['action_following_gt_k1']:.2f}")
    ax[0, 0].set_xlabel("frame")
    ax[0, 0].set_ylabel("px")
    ax[0, 0].legend(fontsize=7)
    for i, d in pd.items():
        ax[0, 1].plot(range(1, len(d[2]) + 1), d[2], "o-", label=f"PSNR ep{i}")
    ax2 = ax[0, 1].twinx()
    for i, d in pd.items():
        ax2.plot(range(1, len(d[3]) + 1), d[3], "s--", alpha=0.6, label=f"SSIM ep{i}")
    if first:
        for i, d in pd.items():
            e = res["episodes"][i]["frames_1_16_after_context"]
            ax[0, 1].plot(range(1, len(e["ae_ceiling_psnr"]) + 1), e["ae_ceiling_psnr"], ":", color="0.4",
                          label="AE ceiling" if i == 0 else None)
        ax[0, 1].set_title(f"frames 1-16 after a real context of {first} frames (frame 1 = video frame {first})")
    else:
        ax[0, 1].set_title("frames 1-16 vs ground truth (from scratch: no image context)")
    ax[0, 1].set_xlabel("frame")
    ax[0, 1].set_ylabel("PSNR dB")
    ax2.set_ylabel("SSIM")
    ax[0, 1].legend(loc="upper left", fontsize=7)
    ax2.legend(loc="upper right", fontsize=7)
    for i, d in pd.items():
        w = d[4]
        xs = [x["start"] for x in w]
        ax[0, 2].plot(xs, [x["grad_ratio"] for x in w], "o-", label=f"grad ratio ep{i}")
        ax[0, 2].plot(xs, [x["lapvar_ratio"] for x in w], "x--", label=f"Laplacian var ratio ep{i}")
    ax[0, 2].axhline(1, color="k", lw=0.5)
    ax[0, 2].set_title("stability: sharpness engine / ground truth per window")
    ax[0, 2].set_xlabel("window start frame")
    ax[0, 2].legend(fontsize=7)
    w = pd[0][4]
    xs = [x["start"] for x in w]
    for c, col in enumerate(["r", "g", "b"]):
        ax[1, 0].plot(xs, [x["mean_rgb_wm"][c] for x in w], col + "-o", label=f"engine {col.upper()}")
        ax[1, 0].plot(xs, [x["mean_rgb_gt"][c] for x in w], col + "--", alpha=0.5, label=f"gt {col.upper()}")
    ax[1, 0].set_title("stability: mean colour per window, ep 0")
    ax[1, 0].set_xlabel("window start frame")
    ax[1, 0].legend(fontsize=7, ncol=2)
    ax[1, 1].imshow(conf, cmap="Blues")
    ax[1, 1].set_xticks(range(len(keys)))
    ax[1, 1].set_xticklabels([k.rsplit(" ", 1)[0] for k in keys], rotation=70, fontsize=7)
    ax[1, 1].set_yticks(range(len(keys)))
    ax[1, 1].set_yticklabels([k.rsplit(" ", 1)[0] for k in keys], fontsize=7)
    pa = res["prompt_adherence"]
    ax[1, 1].set_title(f"prompt adherence (nearest GT look): look {pa['accuracy_look']:.2f}, "
                       f"biome {pa['accuracy_biome']:.2f}, time {pa['accuracy_time']:.2f}")
    ax[1, 1].set_ylabel("prompt")
    ax[1, 1].set_xlabel("nearest look")
    t = [max(0, first - 1), min(first + 15, len(wm) - 1), len(wm) - 1]
    strip = np.concatenate([np.concatenate([gt[i], wm[i]], axis=0) for i in t], axis=1)
    ax[1, 2].imshow(strip)
    ax[1, 2].set_title(f"ep 0 video frames {t}: ground truth (top) / engine (bottom)"
                       + (f"\n(frame {first - 1}: last of the decoded context)" if first else ""))
    ax[1, 2].axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
