"""common.py - shared pieces of tools/train: the reference import, episode files, prompts and
actions in the engine's conventions, sharded checkpoints that fit the GPU machine's transfer limits,
and CSV logs.

The engine's model semantics come from tools/reference/wm_ref.py (imported, never copied): the DiT
modules and parameter names, the TAEHV decoder, the tokenizer, the per-latent-frame action mean.
"""
import csv
import glob
import json
import math
import os
import sys
import time

import numpy as np
import torch

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "tools", "reference"))
import wm_ref  # noqa: E402

# wm_ref turns autograd off globally (it is an inference reference); training needs it back.
torch.set_grad_enabled(True)

BUTTONS = ["up", "down", "left", "right", "torch"]
TIME_UPSCALE = 4          # video frames per latent frame (TAEHV time_upscale [true, true])
SPACE_DOWN = 8            # pixels per latent pixel
SPECIAL_TOKENS = ["<pad>", "<unk>"]  # <unk> must be index 1 (MODEL.md 6)


# ------------------------------------------------------------------------------------------------
# Episodes (written by host/game/wm-gamegen)
# ------------------------------------------------------------------------------------------------
def episode_files(data_dir):
    files = sorted(glob.glob(os.path.join(data_dir, "ep_*.safetensors")))
    if not files:
        raise FileNotFoundError(f"no ep_*.safetensors in {data_dir} (generate them with wm-gamegen)")
    return files


def read_index(data_dir):
    with open(os.path.join(data_dir, "index.json")) as f:
        return json.load(f)


def vocab_of(data_dir_or_index):
    idx = read_index(data_dir_or_index) if isinstance(data_dir_or_index, str) else data_dir_or_index
    return SPECIAL_TOKENS + list(idx["vocab"])


class Episode:
    """One episode file, memory-mapped: frames uint8 [T,H,W,3], actions [T,5], prompts [(frame, text)]."""

    def __init__(self, path):
        from safetensors import safe_open
        self.path = path
        self._f = safe_open(path, "np")
        meta = self._f.metadata()
        self.prompts = [(int(fr), p) for fr, p in json.loads(meta["prompts"])]
        self.seed = int(meta["seed"])
        shape = self._f.get_slice("frames").get_shape()
        self.T, self.H, self.W = shape[0], shape[1], shape[2]

    def frames(self, start=0, stop=None):
        return self._f.get_slice("frames")[start:stop]

    def actions(self):
        return self._f.get_tensor("actions")

    def tensor(self, name):
        return self._f.get_tensor(name)

    def prompt_at(self, frame):
        p = self.prompts[0][1]
        for fr, text in self.prompts:
            if fr <= frame:
                p = text
        return p


def n_latents(T):
    """Latent frames of a T-frame episode: frame 0 alone, then groups of 4 (MODEL.md 8)."""
    return 1 + (T - 1) // TIME_UPSCALE


def latent_actions(actions):
    """[T, A] per-video-frame actions -> [n_latents(T), A]: latent 0 = frame 0, latent f = mean of
    frames 4f-3..4f (MODEL.md 8; the engine sums in order in fp32, as here)."""
    T = actions.shape[0]
    L = n_latents(T)
    out = np.zeros((L, actions.shape[1]), np.float32)
    out[0] = actions[0]
    for f in range(1, L):
        acc = np.zeros(actions.shape[1], np.float32)
        for vf in range(TIME_UPSCALE * (f - 1) + 1, TIME_UPSCALE * f + 1):
            acc = (acc + actions[vf]).astype(np.float32)
        out[f] = acc / np.float32(TIME_UPSCALE)
    return out


def latent_prompt_ids(ep, L):
    """Per latent frame, the index into ep.prompts in effect at its last video frame."""
    ids = np.zeros(L, np.int64)
    for f in range(L):
        last = 0 if f == 0 else TIME_UPSCALE * f
        for k, (fr, _) in enumerate(ep.prompts):
            if fr <= last:
                ids[f] = k
    return ids


def button_masks(actions):
    """[T, 5] 0/1 floats -> list of wm_ref action tuples (buttons, axes, dx, dy)."""
    out = []
    for a in actions:
        b = 0
        for i, v in enumerate(a):
            if v > 0.5:
                b |= 1 << i
        out.append((b, [], 0.0, 0.0))
    return out


def action_lines(actions):
    """[T, 5] 0/1 floats -> wm-run action script lines ("right+torch", "-" for none)."""
    return ["+".join(BUTTONS[i] for i, v in enumerate(a) if v > 0.5) or "-" for a in actions]


@torch.no_grad()
def rollout_prefill(r, z):
    """A real context in a wm_ref.Rollout before it generates: commits the latents z [n, C, h, w]
    (n a multiple of the chunk) through the cache pass at timestep context_noise, chunk by chunk, and
    decodes them - what the engine's session_prefill_latents does (wm-run --prefill-latents).
    Returns the decoded frames [1 + 4(n-1), 3, H, W] (or None without a decoder); r.run() then
    generates from video frame 1 + 4(n-1) on."""
    F_ = r.cfg.num_frame_per_block
    assert z.shape[0] % F_ == 0 and r.chunk == 0
    rgb = []
    for c in range(z.shape[0] // F_):
        start = c * F_
        x0 = z[start:start + F_].float()
        r.cache.begin_chunk(start, F_)
        r._dit(x0, np.float32(r.cfg.context_noise), start, commit=True)
        r.x0_hist.append((start, x0))
        if r.decoder is not None:
            rgb.append(r.decoder.push(x0))
        r.chunk += 1
    return torch.cat(rgb) if rgb else None


# ------------------------------------------------------------------------------------------------
# Prompts: the engine's tokenizer and the text encoder of MODEL.md 6, batched
# ------------------------------------------------------------------------------------------------
def prompt_embeddings(text_encoder, texts, text_len):
    """texts: list of strings -> [len(texts), text_len, text_dim] (rows past the tokens are zero, as the
    engine pads), using wm_ref.TinyTextEncoder's tokenizer and parameters."""
    te = text_encoder
    dev = te.token_embedding.weight.device
    ids = [te.tokenize(t) for t in texts]
    n = max(1, max(len(i) for i in ids))
    tok = torch.zeros(len(texts), n, dtype=torch.long, device=dev)
    valid = torch.zeros(len(texts), n, dtype=torch.bool, device=dev)
    for b, i in enumerate(ids):
        if i:
            tok[b, : len(i)] = torch.tensor(i, device=dev)
            valid[b, : len(i)] = True
    emb = te.token_embedding(tok) + te.pos_embedding(torch.arange(n, device=dev))[None]
    emb = emb * valid[..., None]
    out = emb.new_zeros(len(texts), text_len, emb.shape[-1])
    out[:, : min(n, text_len)] = emb[:, :text_len]
    return out


# ------------------------------------------------------------------------------------------------
# Checkpoints: safetensors shards of at most 15 MiB (the GPU machine returns files of <= 16 MiB),
# params in fp32, Adam moments in bf16 (half the bytes; enough to resume smoothly)
# ------------------------------------------------------------------------------------------------
SHARD_BYTES = 15 * 1024 * 1024


def _save_sharded(tensors, prefix):
    from safetensors.torch import save_file
    for old in glob.glob(prefix + "-*.safetensors"):
        os.remove(old)
    shard, size, k = {}, 0, 0
    for name in sorted(tensors):
        t = tensors[name].detach().contiguous().cpu()
        nb = t.numel() * t.element_size()
        if shard and size + nb > SHARD_BYTES:
            save_file(shard, f"{prefix}-{k:02d}.safetensors")
            shard, size, k = {}, 0, k + 1
        shard[name] = t
        size += nb
    if shard:
        save_file(shard, f"{prefix}-{k:02d}.safetensors")


def _load_sharded(prefix):
    from safetensors.torch import load_file
    out = {}
    for p in sorted(glob.glob(prefix + "-*.safetensors")):
        out.update(load_file(p))
    return out


def save_checkpoint(ckpt_dir, modules, optimizer, state):
    """modules: {name: nn.Module}; optimizer: torch Adam(W) over their parameters; state: json-able.
    Written to a temp folder and renamed, so a run killed mid-write keeps the previous checkpoint."""
    tmp = ckpt_dir.rstrip("/") + ".tmp"
    os.makedirs(tmp, exist_ok=True)
    params = {f"{m}.{k}": v.float() for m, mod in modules.items() for k, v in mod.state_dict().items()}
    _save_sharded(params, os.path.join(tmp, "params"))
    if optimizer is not None:
        names = {id(p): f"{m}.{k}" for m, mod in modules.items() for k, p in mod.named_parameters()}
        moments = {}
        for group in optimizer.param_groups:
            for p in group["params"]:
                st = optimizer.state.get(p)
                if st and id(p) in names:
                    moments[names[id(p)] + ".exp_avg"] = st["exp_avg"].to(torch.bfloat16)
                    moments[names[id(p)] + ".exp_avg_sq"] = st["exp_avg_sq"].to(torch.bfloat16)
                    state.setdefault("adam_step", float(st["step"]))
        if moments:
            _save_sharded(moments, os.path.join(tmp, "optim"))
    with open(os.path.join(tmp, "state.json"), "w") as f:
        json.dump(state, f, indent=1)
    if os.path.isdir(ckpt_dir):
        old = ckpt_dir.rstrip("/") + ".old"
        if os.path.isdir(old):
            _rmtree(old)
        os.rename(ckpt_dir, old)
        os.rename(tmp, ckpt_dir)
        _rmtree(old)
    else:
        os.rename(tmp, ckpt_dir)


def _rmtree(d):
    for p in glob.glob(os.path.join(d, "*")):
        os.remove(p)
    os.rmdir(d)


def load_checkpoint(ckpt_dir, modules, optimizer=None, strict=True):
    """Restores what save_checkpoint wrote; returns the state dict (json)."""
    params = _load_sharded(os.path.join(ckpt_dir, "params"))
    for m, mod in modules.items():
        sd = {k[len(m) + 1:]: v for k, v in params.items() if k.startswith(m + ".")}
        mod.load_state_dict(sd, strict=strict)
    with open(os.path.join(ckpt_dir, "state.json")) as f:
        state = json.load(f)
    if optimizer is not None and glob.glob(os.path.join(ckpt_dir, "optim-*.safetensors")):
        moments = _load_sharded(os.path.join(ckpt_dir, "optim"))
        step = torch.tensor(float(state.get("adam_step", 0.0)))
        for m, mod in modules.items():
            for k, p in mod.named_parameters():
                key = f"{m}.{k}"
                if key + ".exp_avg" in moments:
                    optimizer.state[p] = {"step": step.clone(),
                                          "exp_avg": moments[key + ".exp_avg"].to(p.device, torch.float32),
                                          "exp_avg_sq": moments[key + ".exp_avg_sq"].to(p.device, torch.float32)}
    return state


def load_params(ckpt_dir, prefix):
    """The fp32 tensors of module `prefix` from a checkpoint folder (names without the prefix)."""
    params = _load_sharded(os.path.join(ckpt_dir, "params"))
    return {k[len(prefix) + 1:]: v for k, v in params.items() if k.startswith(prefix + ".")}


def update(opt, params, loss, max_norm=1.0):
    """One optimizer step on loss: gradients, clipped to max_norm, then the step."""
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(params, max_norm)
    opt.step()


# ------------------------------------------------------------------------------------------------
# Logging and timing
# ------------------------------------------------------------------------------------------------
class CSVLog:
    """Appends rows to a CSV (resuming runs keep appending); the header is written once. A file begun
    by an older version keeps its own columns (a newer field is left out rather than shifting them)."""

    def __init__(self, path, fields):
        new = not os.path.exists(path) or os.path.getsize(path) == 0
        if not new:
            with open(path, newline="") as f:
                fields = next(csv.reader(f), fields)
        self.path, self.fields = path, fields
        self.f = open(path, "a", newline="")
        self.w = csv.DictWriter(self.f, fieldnames=fields, extrasaction="ignore")
        if new:
            self.w.writeheader()

    def write(self, **row):
        self.w.writerow(row)
        self.f.flush()


class Clock:
    """Wall time of this run plus what earlier runs of the same training spent (for resumes)."""

    def __init__(self, already=0.0):
        self.t0, self.already = time.time(), already

    def total(self):
        return self.already + time.time() - self.t0

    def run(self):
        return time.time() - self.t0


def pick_device(name):
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def psnr(a, b):
    """a, b float tensors in [0, 1] -> dB."""
    mse = torch.mean((a.float() - b.float()) ** 2).item()
    return 10 * math.log10(1.0 / max(mse, 1e-10))


def count_params(module):
    return sum(p.numel() for p in module.parameters())
