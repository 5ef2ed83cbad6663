"""train_ae.py - trains the TAEHV-architecture autoencoder (ae.py) on wm-gamegen episodes.

    python tools/train/train_ae.py --data DATA --out RUN [--time-limit 9] [--resume]

Writes RUN/ae/ (checkpoint: params-*.safetensors fp32 encoder.* + decoder.*, optim-*.safetensors,
state.json), RUN/ae_log.csv (loss curves) and RUN/ae_samples.png (held-out reconstructions: top
ground truth, bottom decoded). Stops at --steps or --time-limit minutes, whichever comes first, with a
checkpoint; --resume continues from RUN/ae/ (optimizer state, step count and clock included).
The decoder is the engine's (MODEL.md 7); train_dit.py copies it into the model it exports.
"""
import argparse
import json
import math
import os
import random

import numpy as np
import torch
import torch.nn.functional as F

import common
from common import CSVLog, Clock, Episode, TIME_UPSCALE, episode_files, psnr
from ae import AutoEncoder
import imgio


class ClipStream(torch.utils.data.IterableDataset):
    """Endless random clips of 4*K frames: from an episode's start (frame 0 repeated, as the latent 0
    convention) or from a group start 4j+1. Yields uint8 [4K, H, W, 3]."""

    def __init__(self, files, K, seed):
        self.files, self.K, self.seed = files, K, seed

    def __iter__(self):
        info = torch.utils.data.get_worker_info()
        rng = random.Random(self.seed * 1000 + (info.id if info else 0) + int.from_bytes(os.urandom(4), "little"))
        eps = {}
        n = TIME_UPSCALE * self.K
        while True:
            path = rng.choice(self.files)
            ep = eps.get(path) or eps.setdefault(path, Episode(path))
            groups = (ep.T - 1) // TIME_UPSCALE
            if rng.random() < 0.25 or groups < self.K:
                fr = ep.frames(0, n - TIME_UPSCALE + 1)
                fr = np.concatenate([np.repeat(fr[:1], TIME_UPSCALE - 1, 0), fr])
            else:
                j = rng.randrange(0, groups - self.K + 1)
                fr = ep.frames(1 + TIME_UPSCALE * j, 1 + TIME_UPSCALE * (j + self.K))
            if fr.shape[0] < n:  # short episode: hold the last frame
                fr = np.concatenate([fr, np.repeat(fr[-1:], n - fr.shape[0], 0)])
            yield torch.from_numpy(np.ascontiguousarray(fr))


def to_input(batch, device):
    return batch.to(device, non_blocking=True).permute(0, 1, 4, 2, 3).float().div_(255.0)  # [n, T, 3, H, W]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True, help="folder of wm-gamegen episodes")
    ap.add_argument("--out", required=True, help="run folder (checkpoint, logs, samples)")
    ap.add_argument("--resume", action="store_true", help="continue from OUT/ae/")
    ap.add_argument("--steps", type=int, default=1_000_000, help="stop after this many steps in total")
    ap.add_argument("--time-limit", type=float, default=9.0, help="minutes for this run (then checkpoint and stop)")
    ap.add_argument("--ckpt-every", type=float, default=3.0, help="minutes between checkpoints")
    ap.add_argument("--batch", type=int, default=16, help="clips per step")
    ap.add_argument("--clip", type=int, default=3, help="latent frames per clip (4x video frames)")
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--warmup", type=int, default=300)
    ap.add_argument("--latent-channels", type=int, default=16)
    ap.add_argument("--enc-channels", default="32,32,64,64")
    ap.add_argument("--enc-blocks", type=int, default=2)
    ap.add_argument("--dec-channels", default="96,64,32,32")
    ap.add_argument("--noise-aug", type=float, default=0.2,
                    help="max std of noise added to latents before decoding (half the clips): robustness to DiT output")
    ap.add_argument("--val-episodes", type=int, default=2, help="last N episodes are held out")
    ap.add_argument("--log-every", type=int, default=25)
    ap.add_argument("--val-every", type=int, default=500)
    ap.add_argument("--workers", type=int, default=min(8, os.cpu_count() or 1))
    ap.add_argument("--device", default="auto")
    ap.add_argument("--bf16", action="store_true", help="bf16 autocast (CUDA)")
    ap.add_argument("--compile", action="store_true", help="torch.compile the encoder and decoder")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    dev = common.pick_device(args.device)
    torch.manual_seed(args.seed)
    os.makedirs(args.out, exist_ok=True)
    ckpt_dir = os.path.join(args.out, "ae")
    files = episode_files(args.data)
    n_val = min(args.val_episodes, len(files) - 1)
    train_files, val_files = files[: len(files) - n_val], files[len(files) - n_val:]

    arch = dict(latent_channels=args.latent_channels, enc_channels=[int(c) for c in args.enc_channels.split(",")],
                enc_blocks=args.enc_blocks, dec_channels=[int(c) for c in args.dec_channels.split(",")])
    state = {"step": 0, "seconds": 0.0, "arch": arch}
    if args.resume and os.path.isdir(ckpt_dir):
        with open(os.path.join(ckpt_dir, "state.json")) as f:
            arch = json.load(f)["arch"]  # the checkpoint's architecture wins
    ae = AutoEncoder(**arch).to(dev)
    opt = torch.optim.AdamW(ae.parameters(), lr=args.lr, betas=(0.9, 0.99), weight_decay=0.0)
    if args.resume and os.path.isdir(ckpt_dir):
        state = common.load_checkpoint(ckpt_dir, {"encoder": ae.encoder, "decoder": ae.decoder}, opt)
        print(f"resumed {ckpt_dir} at step {state['step']} ({state['seconds'] / 60:.1f} min trained)", flush=True)
    state["arch"] = arch
    n_enc, n_dec = common.count_params(ae.encoder), common.count_params(ae.decoder)
    print(f"autoencoder: encoder {n_enc / 1e6:.2f}M, decoder {n_dec / 1e6:.2f}M params "
          f"(decoder {n_dec * 2 / 2**20:.1f} MiB as fp16); {len(train_files)} train / {len(val_files)} val episodes; "
          f"device {dev}", flush=True)

    enc, dec = ae.encoder, ae.decoder
    encode = torch.compile(ae.encode) if args.compile else ae.encode
    decode = torch.compile(ae.decode) if args.compile else ae.decode

    loader = torch.utils.data.DataLoader(ClipStream(train_files, args.clip, args.seed + state["step"]),
                                         batch_size=args.batch, num_workers=args.workers,
                                         pin_memory=dev.type == "cuda", persistent_workers=args.workers > 0)
    log = CSVLog(os.path.join(args.out, "ae_log.csv"), ["step", "minutes", "loss", "mse", "psnr", "val_psnr", "lr"])
    clock = Clock(state["seconds"])
    last_ckpt = clock.run()
    amp = torch.autocast("cuda", dtype=torch.bfloat16) if (args.bf16 and dev.type == "cuda") else torch.autocast("cpu", enabled=False)
    step = state["step"]
    acc = {"loss": 0.0, "mse": 0.0, "n": 0}

    def checkpoint():
        state.update(step=step, seconds=clock.total())
        common.save_checkpoint(ckpt_dir, {"encoder": enc, "decoder": dec}, opt, state)

    def validate():
        ae.eval()
        scores, rows = [], []
        with torch.no_grad():
            for p in val_files:
                ep = Episode(p)
                T = min(ep.T, 1 + TIME_UPSCALE * 8)
                fr = torch.from_numpy(ep.frames(0, T)).to(dev).permute(0, 3, 1, 2).float()[None] / 255
                x = AutoEncoder.pad_clip(fr)
                x = x[:, : (x.shape[1] // TIME_UPSCALE) * TIME_UPSCALE]
                with amp:
                    y = ae.decode(ae.encode(x)).float().clamp(0, 1)
                y = y[:, TIME_UPSCALE - 1:]               # the engine drops the first 3 outputs
                scores.append(psnr(y, fr[:, : y.shape[1]]))
                pick = list(range(0, y.shape[1], max(1, y.shape[1] // 6)))[:6]
                rows.append((fr[0, pick], y[0, pick]))
        ae.train()
        img = [torch.cat([g, r]) for g, r in rows]
        img = (torch.cat(img).permute(0, 2, 3, 1).cpu().numpy() * 255).round().astype(np.uint8)
        imgio.write_png(os.path.join(args.out, "ae_samples.png"), imgio.grid(img, 6))
        return float(np.mean(scores))

    ae.train()
    done = False
    for batch in loader:
        x = to_input(batch, dev)
        lr = args.lr * min(1.0, (step + 1) / args.warmup)
        for g in opt.param_groups:
            g["lr"] = lr
        with amp:
            z = encode(x)
            if args.noise_aug > 0:
                sig = torch.rand(z.shape[0], 1, 1, 1, 1, device=dev) * args.noise_aug
                sig = sig * (torch.rand_like(sig) < 0.5)
                z = z + sig * torch.randn_like(z)
            y = decode(z).float()
        mse = F.mse_loss(y, x)
        loss = mse + 0.5 * F.l1_loss(y, x)
        common.update(opt, ae.parameters(), loss)
        step += 1
        acc["loss"] += loss.item()
        acc["mse"] += mse.item()
        acc["n"] += 1
        val = ""
        if step % args.val_every == 0:
            val = validate()
        if step % args.log_every == 0 or val != "":
            m = acc["mse"] / max(1, acc["n"])
            log.write(step=step, minutes=f"{clock.total() / 60:.3f}", loss=f"{acc['loss'] / max(1, acc['n']):.5f}",
                      mse=f"{m:.6f}", psnr=f"{10 * math.log10(1 / max(m, 1e-10)):.2f}",
                      val_psnr=f"{val:.2f}" if val != "" else "", lr=f"{lr:.2e}")
            print(f"step {step} {clock.total() / 60:.1f} min loss {acc['loss'] / max(1, acc['n']):.4f} "
                  f"psnr {10 * math.log10(1 / max(m, 1e-10)):.2f}" + (f" val {val:.2f} dB" if val != "" else ""), flush=True)
            acc = {"loss": 0.0, "mse": 0.0, "n": 0}
        if step >= args.steps or clock.run() > args.time_limit * 60:
            done = True
        if done or clock.run() - last_ckpt > args.ckpt_every * 60:
            checkpoint()
            last_ckpt = clock.run()
        if done:
            break
    v = validate()
    log.write(step=step, minutes=f"{clock.total() / 60:.3f}", val_psnr=f"{v:.2f}", lr="")
    print(f"done: step {step}, {clock.total() / 60:.1f} min trained, held-out PSNR {v:.2f} dB; checkpoint {ckpt_dir}", flush=True)


if __name__ == "__main__":
    main()
