"""train_dit.py - trains the engine's causal Wan DiT (wm_ref.CausalWanModel: same modules, same
parameter names) with its tiny text encoder and action MLP on latents of wm-gamegen episodes, with
diffusion forcing under flow matching, and exports the engine's model folder.

    python tools/train/train_dit.py --data DATA --ae RUN/ae --out RUN [--time-limit 9] [--resume]

Objective (per latent frame f of a clip, independent noise levels):
    x_t = (1 - s_f) x0 + s_f eps,   v target = eps - x0,   model input timestep t_f = 1000 s_f
conditioned on the prompt (text encoder -> cross-attention) and the per-latent-frame action mean
(MODEL.md 8) added to the time embedding. The clip is doubled (dit.py): a context copy - clean x0 at
timestep 0 (the engine's cache pass; probability --p-clean) or the noisy frames themselves (plain
diffusion forcing) - and the target copy, under the block-causal chunk mask with the engine's window.
--change-weight W weighs the latent frames whose action differs from the previous one's W times in the
loss (a weighted mean of per-frame MSEs; 1 = plain MSE): where only the action predicts the motion.

Training on the model's own rollouts (the engine's sampler after 1-4 real latent frames):
--rollout-ctx P puts them into a share of the batches' context copies with the game's frames as
targets; --dmd trains on them with distribution matching instead (dmd.py, tools/train/README.md).
--init-from MODEL_DIR starts from an exported model (e.g. assets/game).

Validation (every --val-every steps, on held-out episodes): the flow loss at fixed noise levels with a
clean context, and a streaming rollout through wm_ref.Rollout (the engine's few-step schedule and KV
cache, fp32 on the CPU) after a real context of ground-truth latents: PSNR of the generated frames
against the game, and a strip of frames in RUN/dit_samples.png (rows: game, AE reconstruction, model).

Writes RUN/dit/ (checkpoint: fp32 params + bf16 Adam moments in <= 15 MiB shards, state.json),
RUN/dit_log.csv, RUN/model/ (config.json + model.safetensors fp16, the engine's layout, and the AE's
encoder.safetensors beside them for tools/eval/fidelity.py's context), and caches the
encoded latents in --cache (not in RUN: they are large and are rebuilt from the data in a minute).
"""
import argparse
import copy
import hashlib
import json
import math
import os
import random

import numpy as np
import torch
import torch.nn.functional as F

import common
import dit
import dmd
import export as exporter
import imgio
from ae import AutoEncoder, encode_episode
from common import CSVLog, Clock, Episode, TIME_UPSCALE, wm_ref


# ------------------------------------------------------------------------------------------------
# Data: every episode encoded once, kept on the training device
# ------------------------------------------------------------------------------------------------
class LatentSet:
    def __init__(self, z, acts, pid, tok, tok_len, prompts, files):
        self.z, self.acts, self.pid, self.tok, self.tok_len = z, acts, pid, tok, tok_len
        self.prompts, self.files = prompts, files

    def to(self, dev):
        return LatentSet(self.z.to(dev), self.acts.to(dev), self.pid.to(dev), self.tok.to(dev),
                         self.tok_len.to(dev), self.prompts, self.files)

    def subset(self, idx):
        return LatentSet(self.z[idx], self.acts[idx], self.pid[idx], self.tok[idx], self.tok_len[idx],
                         [self.prompts[i] for i in idx], [self.files[i] for i in idx])

    @property
    def n(self):
        return self.z.shape[0]


def encode_dataset(files, ae, dev, tokenizer, max_tokens, cache_path, amp):
    if cache_path and os.path.exists(cache_path):
        d = torch.load(cache_path)
        print(f"latents: loaded {cache_path}", flush=True)
        return LatentSet(d["z"], d["acts"], d["pid"], d["tok"], d["tok_len"], d["prompts"], d["files"])
    eps = [Episode(p) for p in files]
    T = min(e.T for e in eps)
    L = common.n_latents(T)
    zs, acts, pids, toks, lens, prompts = [], [], [], [], [], []
    clock = Clock()
    for i, ep in enumerate(eps):
        with amp:
            z = encode_episode(ae, ep, dev)[:L]
        zs.append(z.half())
        acts.append(torch.from_numpy(common.latent_actions(ep.actions()[:T])))
        pids.append(torch.from_numpy(np.minimum(common.latent_prompt_ids(ep, L), 1)))
        texts = [p for _, p in ep.prompts][:2]
        texts += texts[-1:] * (2 - len(texts))
        ids = [tokenizer(t)[:max_tokens] for t in texts]
        tk = torch.zeros(2, max_tokens, dtype=torch.long)
        for k, i_ in enumerate(ids):
            tk[k, : len(i_)] = torch.tensor(i_, dtype=torch.long)
        toks.append(tk)
        lens.append(torch.tensor([len(i_) for i_ in ids]))
        prompts.append(texts)
        if (i + 1) % 50 == 0 or i + 1 == len(eps):
            print(f"latents: {i + 1}/{len(eps)} episodes encoded ({clock.run():.0f} s)", flush=True)
    ds = LatentSet(torch.stack(zs), torch.stack(acts), torch.stack(pids), torch.stack(toks), torch.stack(lens),
                   prompts, list(files))
    if cache_path:
        os.makedirs(os.path.dirname(os.path.abspath(cache_path)), exist_ok=True)
        torch.save({"z": ds.z, "acts": ds.acts, "pid": ds.pid, "tok": ds.tok, "tok_len": ds.tok_len,
                    "prompts": ds.prompts, "files": ds.files}, cache_path)
    return ds


def prompt_emb(model, tok, tok_len, text_len):
    """token ids [B, P, max_tokens] + lengths [B, P] -> engine prompt embeddings [B, P, text_len, text_dim]."""
    te = model.text_encoder
    n = tok.shape[-1]
    pos = torch.arange(n, device=tok.device)
    emb = te.token_embedding(tok) + te.pos_embedding(pos)
    emb = emb * (pos < tok_len[..., None])[..., None]
    out = emb.new_zeros(*tok.shape[:2], text_len, emb.shape[-1])
    out[:, :, : min(n, text_len)] = emb[:, :, :text_len]
    return out


# ------------------------------------------------------------------------------------------------
# One training batch
# ------------------------------------------------------------------------------------------------
def sample_sigmas(B, L, F_, args, sample_sig, gen, dev):
    """Per target frame noise levels: per frame or per chunk, sometimes snapped to the sampler's levels."""
    u = torch.rand(B, L, generator=gen, device=dev)
    per_chunk = torch.rand(B, 1, generator=gen, device=dev) < 0.5
    chunk_u = torch.rand(B, (L + F_ - 1) // F_, generator=gen, device=dev).repeat_interleave(F_, 1)[:, :L]
    u = torch.where(per_chunk, chunk_u, u)
    s = args.shift * u / (1 + (args.shift - 1) * u)
    snap = torch.rand(B, L, generator=gen, device=dev) < 0.25
    levels = torch.tensor(sample_sig, device=dev)
    pick = levels[torch.randint(0, len(sample_sig), (B, L), generator=gen, device=dev)]
    return torch.where(snap, pick, s)


def make_batch(ds, B, clip, args, sample_sig, gen, dev, pool=None):
    """A batch of B clips; with pool (rollout_pool) its first round(B x --rollout-ctx) clips are drawn
    from the pool: the same episodes and frames, with the pool's rollout as their (clean) context."""
    E, Lep = ds.z.shape[:2]
    e = torch.randint(0, E, (B,), generator=gen, device=dev)
    start = torch.randint(0, Lep - clip + 1, (B,), generator=gen, device=dev)
    start = torch.where(torch.rand(B, generator=gen, device=dev) < 0.3, torch.zeros_like(start), start)
    n_pool = int(round(B * args.rollout_ctx)) if pool is not None else 0
    if n_pool:
        pick = torch.randint(0, pool["e"].shape[0], (n_pool,), generator=gen, device=dev)
        e[:n_pool], start[:n_pool] = pool["e"][pick], pool["start"][pick]
    fr = start[:, None] + torch.arange(clip, device=dev)[None]
    x0 = ds.z[e[:, None], fr].float()                                        # [B, L, C, h, w]
    acts = ds.acts[e[:, None], fr]
    # latent frames whose action differs from the previous latent frame's (of the episode): where the
    # motion so far does not predict the next one and only the action does
    prev = ds.acts[e[:, None], (fr - 1).clamp(min=0)]
    change = ((acts - prev).abs().sum(-1) > 1e-6) & (fr > 0)
    pid = ds.pid[e[:, None], fr]
    base = dict(acts=acts, pid=pid, tok=ds.tok[e], tok_len=ds.tok_len[e], episodes=e, start=start, change=change)
    return noise_clips(base, x0, args, sample_sig, gen, pool["ctx"][pick] if n_pool else None)


def noise_clips(base, x0, args, sample_sig, gen, ctx_first=None):
    """The training inputs of clips x0 [B, L, C, h, w] (base: their per-frame actions and prompt ids,
    tokens, ...): per-frame noise levels, the doubled sequence [context copy ; noisy target copy] with
    its timesteps, and the v target. ctx_first [n, L, ...]: the clean context copy of the first n clips
    (a rollout pool's). The result keeps `base` for a re-noising of other clips under the same
    conditions (the DMD critic)."""
    B, L = x0.shape[:2]
    dev = x0.device
    sig = sample_sigmas(B, L, args.chunk, args, sample_sig, gen, dev)
    eps = torch.randn(x0.shape, generator=gen, device=dev)
    s = sig[..., None, None, None]
    xt = (1 - s) * x0 + s * eps
    clean = (torch.rand(B, generator=gen, device=dev) < args.p_clean)
    aug = torch.rand(B, 1, 1, 1, 1, generator=gen, device=dev) * args.ctx_aug
    ctx_clean = x0 + aug * torch.randn(x0.shape, generator=gen, device=dev)
    if ctx_first is not None:
        clean[:ctx_first.shape[0]] = True
        ctx_clean[:ctx_first.shape[0]] = ctx_first
    ctx = torch.where(clean[:, None, None, None, None], ctx_clean, xt)
    t_ctx = torch.where(clean[:, None], torch.zeros_like(sig), sig) * 1000
    x = torch.cat([ctx, xt], 1)
    t = torch.cat([t_ctx, sig * 1000], 1)
    return dict(base, x=x, t=t, acts=torch.cat([base["acts"], base["acts"]], 1),
                pid=torch.cat([base["pid"], base["pid"]], 1), v=eps - x0, x0=x0, clean=clean, base=base)


@torch.no_grad()
def rollout_context(model, b, n0, args, sample_sig, mask, rope, amp, noise, record_step=None):
    """Self-Forcing-style context: the context copy's frames from latent frame n0 on (a multiple of the
    chunk) become the model's own rollout - the engine's streaming loop (flow_euler: Euler steps of the
    flow ODE over the sampler's levels sample_sig, then the clean x0 committed as context) run with the
    training forward, chunk by chunk, under the clip's actions and prompts and after its real frames
    0..n0-1. The target copy keeps the game's frames: the model learns the true next frame after a
    context of its own frames, as the engine's cache holds them on long rollouts (where they lose detail
    frame after frame). noise(c, shape) gives chunk c's starting noise [B, F, C, h, w].
    b: a make_batch batch with clean contexts; returns it with the new context copy, and with
    record_step k also "x_step": each generated frame's input to denoising step k (zeros before n0)."""
    x0 = b["x0"]
    B, L = x0.shape[:2]
    F_ = args.chunk
    ctx, tgt, t = b["x"][:, :L].clone(), b["x"][:, L:].clone(), b["t"].clone()
    t[:, :L] = 0
    x_step = torch.zeros_like(x0) if record_step is not None else None
    # a target frame attends only to context frames before its chunk, so the context copy's frames from
    # the current chunk on (still the real ones) do not enter the chunk being generated
    for c0 in range(n0, L, F_):
        fr = slice(c0, c0 + F_)
        x = noise(c0 // F_, (B, F_) + tuple(x0.shape[2:])).to(x0.device, torch.float32)
        for k, s in enumerate(sample_sig):
            if k == record_step:
                x_step[:, fr] = x
            tgt[:, fr] = x
            t[:, L + c0:L + c0 + F_] = 1000 * s
            v = forward_v(model, dict(b, x=torch.cat([ctx, tgt], 1), t=t), args, mask, rope, amp)
            v = v[:, L + c0:L + c0 + F_].float()
            x0_hat = x - s * v
            if k + 1 < len(sample_sig):
                x = x + (sample_sig[k + 1] - s) * v
        ctx[:, fr] = x0_hat
    out = dict(b, x=torch.cat([ctx, b["x"][:, L:]], 1), t=torch.cat([t[:, :L], b["t"][:, L:]], 1))
    if x_step is not None:
        out["x_step"] = x_step
    return out


@torch.no_grad()
def rollout_batch(model, ds, args, sample_sig, mask, rope, amp, gen, dev, record_step=None):
    """--batch clean-context clips of ds and the model's rollout of them (rollout_context, eval mode)
    from a real context of n0 = 1-4 latent frames (rounded to chunks), drawn per batch: (b, rolled, n0)."""
    a = copy.copy(args)
    a.p_clean, a.ctx_aug = 1.0, 0.0
    b = make_batch(ds, args.batch, args.clip, a, sample_sig, gen, dev)
    n0 = args.chunk * int(torch.randint(1, max(1, 4 // args.chunk) + 1, (1,), generator=gen, device=dev))
    n0 = min(n0, args.clip - args.chunk)
    was = model.training
    model.eval()
    rolled = rollout_context(model, b, n0, args, sample_sig, mask, rope, amp,
                             lambda c, shape: torch.randn(shape, generator=gen, device=dev), record_step)
    model.train(was)
    return b, rolled, n0


def rollout_pool(model, ds, args, sample_sig, mask, rope, amp, gen, dev):
    """--rollout-pool clips of ds rolled out by the model (rollout_batch, per batch of --batch clips):
    {"e", "start", "ctx"} for make_batch. Generating costs about (clip - n0) x steps forwards per batch,
    so the pool is refreshed every --rollout-every steps instead of per step."""
    es, starts, ctxs = [], [], []
    for _ in range(max(1, args.rollout_pool // args.batch)):
        b, r, _ = rollout_batch(model, ds, args, sample_sig, mask, rope, amp, gen, dev)
        es.append(b["episodes"])
        starts.append(b["start"])
        ctxs.append(r["x"][:, :args.clip].float())
    return {"e": torch.cat(es), "start": torch.cat(starts), "ctx": torch.cat(ctxs)}


def weighted_mse(v, target, change, change_weight):
    """MSE over target frames [B, L, ...]; with change_weight != 1 the frames marked in change [B, L]
    weigh change_weight times the others (normalised: a weighted mean of per-frame MSEs)."""
    if change_weight == 1:
        return F.mse_loss(v, target)
    w = 1.0 + (change_weight - 1.0) * change.float()
    per_frame = ((v - target) ** 2).flatten(2).mean(2)
    return (per_frame * w).sum() / w.sum()


# The batched forward; --compile swaps in torch.compile(dit.forward) (main). The model is small (dim 192),
# so eager mode spends most of a step launching elementwise kernels.
FORWARD = dit.forward


def forward_v(model, b, args, mask, rope, amp):
    """The batched forward of a batch's doubled sequence b["x"] at timesteps b["t"]: v [B, 2L, ...]."""
    with amp:
        ctxkv = dit.context_kv(model, prompt_emb(model, b["tok"], b["tok_len"], args.text_len))
        return FORWARD(model, b["x"], b["t"], b["acts"], ctxkv, b["pid"], mask, rope)


def loss_of(model, b, args, mask, rope, amp, change_weight=None):
    v = forward_v(model, b, args, mask, rope, amp)
    L = b["v"].shape[1]
    cw = args.change_weight if change_weight is None else change_weight
    return weighted_mse(v[:, L:].float(), b["v"], b["change"], cw)


# ------------------------------------------------------------------------------------------------
# Validation
# ------------------------------------------------------------------------------------------------
@torch.no_grad()
def val_loss(model, ds, args, sample_sig, mask, rope, amp, dev):
    gen = torch.Generator(device=dev).manual_seed(1234)
    tot, n = 0.0, 0
    for s in [0.25, 0.5, 0.75, 1.0]:
        a = copy.copy(args)
        a.p_clean, a.ctx_aug = 1.0, 0.0
        b = make_batch(ds, min(8, ds.n * 2), args.clip, a, sample_sig, gen, dev)
        L = args.clip
        x0 = b["x"][:, :L]
        eps = b["v"] + x0
        b["x"] = torch.cat([x0, (1 - s) * x0 + s * eps], 1)
        b["t"] = torch.cat([torch.zeros_like(b["t"][:, :L]), torch.full_like(b["t"][:, :L], 1000 * s)], 1)
        tot += loss_of(model, b, args, mask, rope, amp, change_weight=1.0).item()  # the plain flow loss
        n += 1
    return tot / n


@torch.no_grad()
def val_rollout(model, ds_val, out_png, ctx_latents=4, gen_latents=8):
    """Streams a held-out episode through wm_ref.Rollout (the engine's sampler) after a real context."""
    m = copy.deepcopy(model).float().cpu().eval()
    cfg = m.cfg
    F_ = cfg.num_frame_per_block
    # an episode that keeps one prompt: the rollout takes the first prompt for all its frames
    i = next((k for k in range(ds_val.n) if ds_val.prompts[k][0] == ds_val.prompts[k][-1]), 0)
    ep = Episode(ds_val.files[i])
    z = ds_val.z[i].float().cpu()
    n_ctx = max(F_, (ctx_latents // F_) * F_)
    n_gen = max(F_, (gen_latents // F_) * F_)
    n_gen = min(n_gen, z.shape[0] - n_ctx) // F_ * F_
    if n_gen <= 0:
        return float("nan"), float("nan")
    actions = common.button_masks(ep.actions())
    r = wm_ref.Rollout(m, seed=7, prompt=ds_val.prompts[i][0], actions=actions)
    common.rollout_prefill(r, z[:n_ctx])   # the engine's session_prefill_latents (fidelity.py's context)
    gen = r.run(n_gen // F_)
    rgb = gen["rgb"]                                                   # frames after the context
    first = 1 + TIME_UPSCALE * (n_ctx - 1)                             # first generated video frame
    gt = torch.from_numpy(ep.frames(first, first + rgb.shape[0])).permute(0, 3, 1, 2).float() / 255
    # the AE's own reconstruction of the same frames, for reference
    recon = wm_ref.StreamingDecoder(m.decoder)
    rec = torch.cat([recon.push(z[i:i + 1]) for i in range(n_ctx + n_gen)])[first:first + rgb.shape[0]]
    p = common.psnr(rgb[: gt.shape[0]], gt)
    p_ae = common.psnr(rec[: gt.shape[0]], gt)
    pick = list(range(0, gt.shape[0], max(1, gt.shape[0] // 8)))[:8]
    img = torch.cat([gt[pick], rec[pick], rgb[pick]]).permute(0, 2, 3, 1).numpy()
    imgio.write_png(out_png, imgio.grid((img * 255).round().clip(0, 255).astype(np.uint8), len(pick)))
    return p, p_ae


def lr_at(args, step, minutes):
    """Linear warm-up over --warmup steps, then constant, or with --anneal FROM,TO a linear fall to lr/10
    between those minutes of total training (time, not steps: runs are time-limited and resumed)."""
    lr = args.lr * min(1.0, (step + 1) / args.warmup)
    if args.anneal:
        a, b = (float(x) for x in args.anneal.split(","))
        f = min(1.0, max(0.0, (minutes - a) / max(1e-9, b - a)))
        lr *= 1.0 - 0.9 * f
    return lr


# ------------------------------------------------------------------------------------------------
# what a checkpoint fixes (resume keeps them) and what each run's command line sets
ARCH_KEYS = ["name", "dim", "ffn", "heads", "layers", "text_dim", "text_len", "chunk", "window", "sinks",
             "sample_steps", "shift", "latent_channels", "clip", "action_guidance", "action_guidance_steps"]
OBJECTIVE_KEYS = ["p_clean", "ctx_aug", "change_weight", "rollout_ctx", "rollout_every", "rollout_pool", "dmd",
                  "teacher", "critic_steps", "critic_lr", "critic_from", "dmd_reg"]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True, help="folder of wm-gamegen episodes")
    ap.add_argument("--ae", required=True, help="train_ae.py checkpoint folder (RUN/ae)")
    ap.add_argument("--out", required=True, help="run folder")
    ap.add_argument("--resume", action="store_true", help="continue from OUT/dit/")
    ap.add_argument("--init-from", default=None, metavar="MODEL_DIR",
                    help="start a new run from an exported model folder (config.json + model.safetensors, e.g. "
                         "assets/game): its architecture and DiT/text/action weights; the optimizer starts fresh")
    ap.add_argument("--cache", default=None, help="encoded-latents cache file (default /tmp/wm_latents_<hash>.pt)")
    ap.add_argument("--steps", type=int, default=1_000_000)
    ap.add_argument("--time-limit", type=float, default=9.0, help="minutes for this run")
    ap.add_argument("--ckpt-every", type=float, default=3.0, help="minutes between checkpoints")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--clip", type=int, default=17, help="latent frames per training clip")
    ap.add_argument("--lr", type=float, default=3e-4)
    ap.add_argument("--warmup", type=int, default=500)
    ap.add_argument("--anneal", default=None, metavar="FROM,TO",
                    help="minutes of total training (across resumes): the lr falls linearly from --lr at FROM to "
                         "a tenth of it at TO and stays there (default: constant after warm-up)")
    ap.add_argument("--weight-decay", type=float, default=0.01)
    # architecture (engine config.json)
    ap.add_argument("--name", default="wm-game")
    ap.add_argument("--dim", type=int, default=192)
    ap.add_argument("--ffn", type=int, default=768)
    ap.add_argument("--heads", type=int, default=3)
    ap.add_argument("--layers", type=int, default=8)
    ap.add_argument("--text-dim", type=int, default=64)
    ap.add_argument("--text-len", type=int, default=16, help="text_len = the tokenizer's max_tokens")
    ap.add_argument("--chunk", type=int, default=1, help="num_frame_per_block (latent frames per chunk)")
    ap.add_argument("--window", type=int, default=8, help="local_attn_size in latent frames (-1 unbounded)")
    ap.add_argument("--sinks", type=int, default=0)
    ap.add_argument("--sample-steps", default="1000,750,500,250", help="denoising_step_list")
    ap.add_argument("--shift", type=float, default=1.0, help="timestep_shift (sampler and training levels)")
    ap.add_argument("--action-guidance", type=float, default=0.75,
                    help="the engine's action guidance w, written into the exported config.json (training and its "
                         "rollouts are unguided; docs/MODEL.md 2)")
    ap.add_argument("--action-guidance-steps", type=int, default=2, help="the denoising steps it guides, from the first")
    # objective
    ap.add_argument("--p-clean", type=float, default=0.5, help="share of clips with a clean context copy")
    ap.add_argument("--ctx-aug", type=float, default=0.05, help="max noise std on the clean context")
    ap.add_argument("--rollout-ctx", type=float, default=0.0,
                    help="share of each batch whose context copy is the model's own rollout (Self-Forcing style: "
                         "the engine's sampler after 1-4 real latent frames; targets stay the game's frames; "
                         "default 0 = off)")
    ap.add_argument("--rollout-every", type=int, default=50, help="steps between refreshes of the rollout pool")
    ap.add_argument("--rollout-pool", type=int, default=64, help="clips in the rollout pool")
    ap.add_argument("--dmd", action="store_true",
                    help="distribution matching on the model's own rollouts (dmd.py): a frozen teacher (--teacher, "
                         "default the --init-from model) and a trained critic score the generator's samples")
    ap.add_argument("--teacher", default=None, metavar="MODEL_DIR", help="--dmd's teacher (needed with --resume)")
    ap.add_argument("--critic-steps", type=int, default=5, help="--dmd: critic updates per generator update")
    ap.add_argument("--critic-lr", type=float, default=None, help="--dmd: the critic's lr (default --lr)")
    ap.add_argument("--critic-from", default=None, metavar="MODEL_DIR",
                    help="--dmd: the critic's starting weights (an earlier run's RUN/critic_model; default the teacher)")
    ap.add_argument("--dmd-reg", type=float, default=0.0,
                    help="--dmd: weight of the diffusion-forcing loss on the game's frames added to the generator's")
    ap.add_argument("--change-weight", type=float, default=1.0,
                    help="loss weight of latent frames whose action differs from the previous latent frame's "
                         "(1 = plain MSE); > 1 pushes the model to follow a new action at once")
    # validation and machinery
    ap.add_argument("--val-episodes", type=int, default=2)
    ap.add_argument("--val-every", type=int, default=1000)
    ap.add_argument("--log-every", type=int, default=25)
    ap.add_argument("--attn", default="auto", choices=["auto", "sdpa", "flex"])
    ap.add_argument("--device", default="auto")
    ap.add_argument("--bf16", action="store_true", help="bf16 autocast (CUDA)")
    ap.add_argument("--compile", action="store_true", help="torch.compile the training forward (fuses its elementwise ops)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-export", action="store_true")
    args = ap.parse_args(argv)
    global FORWARD
    FORWARD = torch.compile(dit.forward, dynamic=False) if args.compile else dit.forward

    dev = common.pick_device(args.device)
    torch.manual_seed(args.seed)
    os.makedirs(args.out, exist_ok=True)
    ckpt_dir = os.path.join(args.out, "dit")
    amp = torch.autocast("cuda", dtype=torch.bfloat16) if (args.bf16 and dev.type == "cuda") else torch.autocast("cpu", enabled=False)

    resume = args.resume and os.path.isdir(ckpt_dir)
    if resume and args.init_from:
        raise SystemExit(f"--init-from starts a new run, but {ckpt_dir} exists and --resume was given")
    if resume:  # the checkpoint's architecture wins over the command line; the objective is the command line's
        with open(os.path.join(ckpt_dir, "state.json")) as f:
            saved = json.load(f)
        for k, v in saved["arch"].items():
            if k in ARCH_KEYS:
                setattr(args, k, v)
    init = None
    if args.init_from:
        init = exporter.load_exported(args.init_from)
        for k, v in init["arch"].items():
            setattr(args, k, v)
    args.sample_steps = [int(s) for s in str(args.sample_steps).replace("[", "").replace("]", "").split(",")] \
        if not isinstance(args.sample_steps, list) else args.sample_steps

    # the autoencoder: decoder into the model, encoder for the latents
    with open(os.path.join(args.ae, "state.json")) as f:
        ae_state = json.load(f)
    ae = AutoEncoder(**ae_state["arch"])
    common.load_checkpoint(args.ae, {"encoder": ae.encoder, "decoder": ae.decoder})
    ae = ae.to(dev).eval()
    args.latent_channels = ae.latent_channels

    index = common.read_index(args.data)
    vocab = common.vocab_of(index)
    H, W = index["height"], index["width"]
    latent_hw = (H // common.SPACE_DOWN, W // common.SPACE_DOWN)
    arch = {k: getattr(args, k) for k in ARCH_KEYS}
    objective = {k: getattr(args, k) for k in OBJECTIVE_KEYS}
    config = exporter.build_config(arch, vocab, latent_hw, ae.dec_cfg)
    if init is not None and init["config"]["text_encoder"]["vocab"] != vocab:
        raise SystemExit(f"the data's vocabulary differs from {args.init_from}'s")
    if resume and saved["config"]["text_encoder"]["vocab"] != vocab:
        raise SystemExit("the data's vocabulary differs from the checkpoint's")
    model = exporter.make_model(config).to(dev)
    model.decoder.load_state_dict(ae.decoder.state_dict())
    model.decoder.requires_grad_(False)
    dit.init_weights(model, args.seed)
    params = dit.param_groups(model)
    opt = torch.optim.AdamW(params, lr=args.lr, betas=(0.9, 0.99), weight_decay=args.weight_decay)
    state = {"step": 0, "seconds": 0.0}
    if resume:
        state = common.load_checkpoint(ckpt_dir, {"model": model}, opt, strict=False)
        print(f"resumed {ckpt_dir} at step {state['step']} ({state['seconds'] / 60:.1f} min trained)", flush=True)
    if init is not None:
        exporter.load_dit_weights(model, init["weights"], args.init_from)
        state["init_from"] = os.path.abspath(args.init_from)
        print(f"initialised from {args.init_from}", flush=True)
    state.update(arch=arch, objective=objective, config=config, ae_ckpt=os.path.abspath(args.ae))
    critic_dir = ckpt_dir + "_critic"
    distill = None
    if args.dmd:
        teacher_dir = args.teacher or args.init_from
        if not teacher_dir:
            raise SystemExit("--dmd needs its teacher: --init-from MODEL_DIR (a new run) or --teacher MODEL_DIR")
        if args.rollout_ctx > 0:
            raise SystemExit("--dmd draws its own rollouts: leave --rollout-ctx out")
        if model.cfg.sampler != "flow_euler":
            raise SystemExit(f"--dmd runs the flow_euler sampler; this model samples with {model.cfg.sampler}")
        tw = init["weights"] if init is not None and teacher_dir == args.init_from else \
            exporter.load_exported(teacher_dir)["weights"]
        cw = exporter.load_exported(args.critic_from)["weights"] if args.critic_from else None
        distill = dmd.DMD(model, tw, teacher_dir, args, dit.param_groups,
                          lambda p, lr: torch.optim.AdamW(p, lr=lr, betas=(0.9, 0.99), weight_decay=args.weight_decay),
                          cw, args.critic_from)
        if resume and os.path.isdir(critic_dir):
            common.load_checkpoint(critic_dir, {"model": distill.critic}, distill.opt_c, strict=False)
            print(f"resumed the critic from {critic_dir}", flush=True)
        print(f"DMD: teacher {teacher_dir}, {args.critic_steps} critic updates per generator update", flush=True)
    n_dit = dit.count(model, exclude="decoder.")
    n_all = common.count_params(model)
    print(f"model: DiT+text+action {n_dit / 1e6:.2f}M, decoder {(n_all - n_dit) / 1e6:.2f}M, total {n_all / 1e6:.2f}M "
          f"params = {n_all * 2 / 2**20:.2f} MiB as fp16; latents {args.latent_channels}x{latent_hw[0]}x{latent_hw[1]}, "
          f"chunk {args.chunk}, window {args.window}, device {dev}"
          f"{f' ({torch.cuda.get_device_name(dev)})' if dev.type == 'cuda' else ''}", flush=True)

    # data
    files = common.episode_files(args.data)
    key = hashlib.sha1(json.dumps([os.path.abspath(args.data), len(files), os.path.getmtime(files[-1]),
                                   os.path.abspath(args.ae), ae_state.get("step")]).encode()).hexdigest()[:12]
    cache = args.cache or os.path.join("/tmp", f"wm_latents_{key}.pt")
    ds = encode_dataset(files, ae, dev, model.text_encoder.tokenize, args.text_len, cache, amp)
    encoder = (copy.deepcopy(ae.encoder).cpu(), ae_state["arch"])  # exported beside the model (fidelity context)
    del ae
    Lep = ds.z.shape[1]
    if args.clip > Lep:
        args.clip = arch["clip"] = Lep
    args.clip = max(args.chunk, args.clip // args.chunk * args.chunk)
    n_val = min(args.val_episodes, ds.n - 1)
    ds_val = ds.subset(list(range(ds.n - n_val, ds.n)))
    ds_train = ds.subset(list(range(ds.n - n_val))).to(dev)
    ds_val_dev = ds_val.to(dev)
    zstd = ds_train.z.float().std().item()
    print(f"data: {ds_train.n} train / {ds_val.n} val episodes of {Lep} latents, latent std {zstd:.3f}", flush=True)

    # attention mask and rope for the clip length
    h, w = latent_hw[0] // 2, latent_hw[1] // 2
    use_flex = args.attn == "flex" or (args.attn == "auto" and dev.type == "cuda")
    fm = dit.frame_mask(args.clip, args.chunk, args.window, args.sinks, dev)
    mask = dit.flex_block_mask(args.clip, args.chunk, h * w, args.window, args.sinks, dev) if use_flex \
        else dit.token_mask(fm, h * w)
    rope = dit.rope_tables(args.dim // args.heads, args.clip, h, w, dev)
    sample_sig = [float(wm_ref.sigma_of(t, args.shift)) for t in wm_ref.denoising_timesteps(model.cfg)]

    log = CSVLog(os.path.join(args.out, "dit_log.csv"),
                 ["step", "minutes", "loss", "val_loss", "val_psnr", "ae_psnr", "lr", "samples_per_s", "critic_loss"])
    clock = Clock(state["seconds"])
    last_ckpt = clock.run()
    gen = torch.Generator(device=dev).manual_seed(args.seed * 7919 + state["step"])
    step = state["step"]
    acc, n_acc, t_acc = 0.0, 0, clock.run()
    c_acc = 0.0

    def dit_only(m):
        """m as a module whose state is the DiT, text encoder and action MLP (the decoder comes from ae/)."""
        sd = {k: v for k, v in m.state_dict().items() if not k.startswith("decoder.")}

        class _Wrap(torch.nn.Module):
            def state_dict(self, *a, **k):
                return sd

            def named_parameters(self, *a, **k):
                return ((n, p) for n, p in m.named_parameters() if not n.startswith("decoder."))
        return _Wrap()

    def checkpoint():
        state.update(step=step, seconds=clock.total())
        common.save_checkpoint(ckpt_dir, {"model": dit_only(model)}, opt, state)
        if distill is not None:
            common.save_checkpoint(critic_dir, {"model": dit_only(distill.critic)}, distill.opt_c, {"step": step})

    def validate():
        model.eval()
        vl = val_loss(model, ds_val_dev, args, sample_sig, mask, rope, amp, dev)
        pr = val_rollout(model, ds_val, os.path.join(args.out, "dit_samples.png"))
        model.train()
        return vl, pr

    if args.rollout_ctx > 0 and model.cfg.sampler != "flow_euler":
        raise SystemExit(f"--rollout-ctx runs the flow_euler sampler; this model samples with {model.cfg.sampler}")
    pool = None
    model.train()
    while True:
        lr = lr_at(args, step, clock.total() / 60)
        for g in opt.param_groups:
            g["lr"] = lr
        if distill is not None:
            distill.set_lr(lr)
            loss, closs = distill.step(model, opt, params, ds_train, args, sample_sig, mask, rope, amp, gen, dev)
            c_acc += closs
        else:
            if args.rollout_ctx > 0 and (pool is None or step % args.rollout_every == 0):
                pool = rollout_pool(model, ds_train, args, sample_sig, mask, rope, amp, gen, dev)
            b = make_batch(ds_train, args.batch, args.clip, args, sample_sig, gen, dev, pool)
            loss = loss_of(model, b, args, mask, rope, amp)
            common.update(opt, params, loss)
        step += 1
        acc += loss.item()
        n_acc += 1
        done = step >= args.steps or clock.run() > args.time_limit * 60
        if step % args.log_every == 0 or step % args.val_every == 0 or done:
            row = dict(step=step, minutes=f"{clock.total() / 60:.3f}", loss=f"{acc / n_acc:.6g}", lr=f"{lr:.2e}",
                       samples_per_s=f"{n_acc * args.batch / max(1e-6, clock.run() - t_acc):.1f}")
            msg = f"step {step} {clock.total() / 60:.1f} min loss {acc / n_acc:.4g} ({row['samples_per_s']} clips/s)"
            if distill is not None:
                msg += f", critic loss {c_acc / n_acc:.4f}"
                row["critic_loss"] = f"{c_acc / n_acc:.6g}"
                c_acc = 0.0
            if step % args.val_every == 0 or done:
                vl, pr = validate()
                row.update(val_loss=f"{vl:.5f}", val_psnr=f"{pr[0]:.2f}", ae_psnr=f"{pr[1]:.2f}")
                msg += f" | val loss {vl:.4f}, rollout PSNR {pr[0]:.2f} dB (AE alone {pr[1]:.2f} dB)"
            log.write(**row)
            print(msg, flush=True)
            acc, n_acc, t_acc = 0.0, 0, clock.run()
        if done or clock.run() - last_ckpt > args.ckpt_every * 60:
            checkpoint()
            last_ckpt = clock.run()
        if done:
            break
    if not args.no_export:
        size = exporter.export(model, config, os.path.join(args.out, "model"), encoder=encoder)
        print(f"exported {os.path.join(args.out, 'model')} ({size / 2**20:.2f} MiB)", flush=True)
        if distill is not None:  # small enough to carry to a new machine (--critic-from), unlike RUN/dit_critic
            exporter.export(distill.critic, config, os.path.join(args.out, "critic_model"))
            print(f"exported the critic to {os.path.join(args.out, 'critic_model')}", flush=True)
    print(f"done: step {step}, {clock.total() / 60:.1f} min trained", flush=True)


if __name__ == "__main__":
    main()
