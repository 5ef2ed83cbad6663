"""wm_ref.py - the PyTorch reference of the engine (docs/MODEL.md is the contract).

Readable, fp32 (float64 only where MODEL.md says so), CPU. It mirrors the public code the engine
follows, with the same parameter names so checkpoints load by name:
  - Wan2.1 `wan/modules/model.py` (sinusoid, rope tables, WanRMSNorm, WanLayerNorm) and
    Self-Forcing `wan/modules/causal_model.py` (CausalWanModel, per-frame time embedding,
    CausalWanAttentionBlock, CausalHead, unpatchify) - github guandeh17/Self-Forcing;
  - Self-Forcing `pipeline/self_forcing_training.py` / `pipeline/causal_inference.py` (the chunk loop);
  - TAEHV `taehv.py` (MemBlock, TGrow, Clamp, the decoder nn.Sequential) - github madebyollin/taehv.
What is the engine's own (not in the public code): Philox noise (MODEL.md 5), the tiny text encoder
(6), the action MLP (8) and the cache bookkeeping in whole latent frames (4).

Layouts: the batch dimension of the public code is dropped (B = 1); latents are [F, C, H, W];
tokens are [N, dim] with N = F*h*w in (f, i, j) row-major order.

Usage:
    import wm_ref
    r = wm_ref.Rollout("tests/golden/world_window", seed=1, prompt="a red car", actions=[...])
    out = r.run(n_chunks=4)        # out["latents"], out["rgb"], out["rgb8"]
    python tools/reference/wm_ref.py tests/golden/<case>   # re-runs a golden case and diffs it
"""
import json
import math
import os
import re
import sys

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.torch import load_file

torch.set_grad_enabled(False)

# ----------------------------------------------------------------------------------------------
# 5. Noise: Philox4x32-10 + Box-Muller
# ----------------------------------------------------------------------------------------------
PHILOX_M0, PHILOX_M1 = np.uint64(0xD2511F53), np.uint64(0xCD9E8D57)
PHILOX_W0, PHILOX_W1 = np.uint64(0x9E3779B9), np.uint64(0xBB67AE85)
MASK32 = np.uint64(0xFFFFFFFF)


def philox4x32_10(ctr, key):
    """Philox4x32-10 on arrays. ctr: 4 arrays (or ints) of uint32 words, key: 2 of them.
    uint64 arithmetic holds the full 32x32 -> 64-bit product, so mulhilo is exact."""
    c0, c1, c2, c3 = (np.asarray(w, dtype=np.uint64) & MASK32 for w in ctr)
    k0, k1 = (np.asarray(w, dtype=np.uint64) & MASK32 for w in key)
    for _ in range(10):
        p0 = PHILOX_M0 * c0
        p1 = PHILOX_M1 * c2
        hi0, lo0 = p0 >> np.uint64(32), p0 & MASK32
        hi1, lo1 = p1 >> np.uint64(32), p1 & MASK32
        c0, c1, c2, c3 = hi1 ^ c1 ^ k0, lo1, hi0 ^ c3 ^ k1, lo0
        # key schedule: bumped after every round (the bump after the last round is unused)
        k0 = (k0 + PHILOX_W0) & MASK32
        k1 = (k1 + PHILOX_W1) & MASK32
    return c0, c1, c2, c3


def noise(seed, stream, shape):
    """Standard normals of MODEL.md 5: element n of stream s comes from counter block n // 4.
    Box-Muller in float64, each value rounded once to fp32. Returns a float32 tensor of `shape`."""
    n = int(np.prod(shape))
    seed, stream = int(seed) & (2**64 - 1), int(stream) & (2**64 - 1)
    j = np.arange((n + 3) // 4, dtype=np.uint64)
    x = philox4x32_10((j & MASK32, j >> np.uint64(32), stream & 0xFFFFFFFF, stream >> 32),
                      (seed & 0xFFFFFFFF, seed >> 32))
    u0, u1, u2, u3 = ((w.astype(np.float64) + 0.5) / 4294967296.0 for w in x)
    r01, r23 = np.sqrt(-2.0 * np.log(u0)), np.sqrt(-2.0 * np.log(u2))
    two_pi = 2.0 * np.pi
    z = np.stack([r01 * np.cos(two_pi * u1), r01 * np.sin(two_pi * u1),
                  r23 * np.cos(two_pi * u3), r23 * np.sin(two_pi * u3)], axis=1)
    return torch.from_numpy(z.reshape(-1)[:n].astype(np.float32).reshape(shape))


# ----------------------------------------------------------------------------------------------
# 1. config.json
# ----------------------------------------------------------------------------------------------
CONFIG_DEFAULTS = dict(
    dim=1536, ffn_dim=8960, num_heads=12, num_layers=30, patch_size=[1, 2, 2], in_dim=16, out_dim=16,
    text_dim=4096, text_len=512, freq_dim=256, eps=1e-6, model_type="t2v", qk_norm=True,
    cross_attn_norm=True, window_size=[-1, -1],
    name=None, latent_height=60, latent_width=104, num_frame_per_block=3,
    denoising_step_list=[1000, 750, 500, 250], warp_denoising_step=True, timestep_shift=5.0,
    context_noise=0, local_attn_size=-1, sink_size=0, recache_on_prompt_switch=False, max_cache_frames=21, fps=16,
    sampler="self_forcing", action_guidance=0.0, action_guidance_steps=None, action_buttons=[], action_axes=[], action_mouse=False, text_encoder=None, decoder=None,
)


class Config(dict):
    """config.json over the MODEL.md defaults; attribute access for readability."""

    def __getattr__(self, k):
        try:
            return self[k]
        except KeyError as e:
            raise AttributeError(k) from e

    @staticmethod
    def load(model_dir):
        with open(os.path.join(model_dir, "config.json")) as f:
            raw = json.load(f)
        cfg = Config(CONFIG_DEFAULTS)
        for k, v in raw.items():
            if k.startswith("_"):
                continue  # diffusers bookkeeping
            if k not in CONFIG_DEFAULTS:
                raise ValueError(f"config.json: unknown key {k!r}")
            cfg[k] = v
        if cfg.name is None:
            cfg["name"] = os.path.basename(os.path.normpath(model_dir))
        assert cfg.patch_size[0] == 1 and cfg.in_dim == cfg.out_dim and cfg.model_type == "t2v"
        assert (cfg.dim // cfg.num_heads) % 2 == 0 and cfg.dim % cfg.num_heads == 0
        assert cfg.latent_height % cfg.patch_size[1] == 0 and cfg.latent_width % cfg.patch_size[2] == 0
        if cfg.sampler not in ("self_forcing", "flow_euler", "rolling_forcing"):
            raise ValueError(f"config.json: sampler {cfg.sampler!r} (self_forcing, flow_euler or rolling_forcing)")
        if cfg.action_guidance and (cfg.action_dim == 0 or cfg.sampler == "rolling_forcing"):
            raise ValueError("config.json: action_guidance needs an action-conditioned model and a per-chunk sampler")
        if cfg.sampler == "rolling_forcing":  # its spans are fixed by the step count (docs/CONVERT.md)
            F, n = cfg.num_frame_per_block, len(cfg.denoising_step_list)
            if cfg.local_attn_size != (n + 2) * F or cfg.sink_size != F or cfg.recache_on_prompt_switch:
                raise ValueError("config.json: sampler rolling_forcing needs local_attn_size = (steps + 2) * "
                                 "num_frame_per_block, sink_size = num_frame_per_block, no re-cache")
        return cfg

    @property
    def action_dim(self):
        return len(self.action_buttons) + len(self.action_axes) + (2 if self.action_mouse else 0)

    @property
    def time_upscale(self):
        """u of MODEL.md 8: video frames per latent frame (1 without a decoder)."""
        if not self.decoder:
            return 1
        return int(np.prod([2 if t else 1 for t in self.decoder["time_upscale"]]))


# ----------------------------------------------------------------------------------------------
# 2. Timesteps
# ----------------------------------------------------------------------------------------------
def denoising_timesteps(cfg):
    """The step list as fp32 timesteps. With warping, step t -> T[1000 - t] where
    T_i = 1000 * shift*s_i / (1 + (shift-1)*s_i), s_i = 1 - i/1000, T_1000 = 0 (Self-Forcing's
    FlowMatchScheduler(shift, sigma_min=0, extra_one_step=True).set_timesteps(1000) plus the
    appended 0). Computed in float64 and rounded once to fp32 (the public code builds the table in
    fp32 torch ops; the difference is at most an ulp or two of T)."""
    steps = cfg.denoising_step_list
    if not cfg.warp_denoising_step:
        return [np.float32(t) for t in steps]
    shift = float(cfg.timestep_shift)
    out = []
    for t in steps:
        i = 1000 - int(t)
        if i == 1000:
            out.append(np.float32(0.0))
            continue
        s = 1.0 - i / 1000.0
        out.append(np.float32(1000.0 * (shift * s / (1.0 + (shift - 1.0) * s))))
    return out


def shifted_table(shift):
    """The scheduler's 1000 (timestep, sigma) pairs: s_i = 1 - i/1000, sigma_i = shift*s/(1+(shift-1)*s),
    T_i = 1000*sigma_i, float64 rounded once to fp32."""
    s = 1.0 - np.arange(1000, dtype=np.float64) / 1000.0
    sig = shift * s / (1.0 + (shift - 1.0) * s)
    return (1000.0 * sig).astype(np.float32), sig.astype(np.float32)


def sigma_of(t, shift):
    """Self-Forcing's convert_flow_pred_to_x0 / add_noise: the sigma of the table entry whose timestep
    is nearest to t (first on ties). Equals t/1000 for warped steps; differs for unwarped ones."""
    T, sig = shifted_table(float(shift))
    i = int(np.argmin(np.abs(T.astype(np.float64) - float(t))))
    return sig[i]


# ----------------------------------------------------------------------------------------------
# 3. The causal Wan DiT
# ----------------------------------------------------------------------------------------------
def sinusoidal_embedding_1d(dim, position):
    """Wan's sinusoid: [cos, sin] (cos half first), float64; the caller casts to fp32."""
    half = dim // 2
    position = position.to(torch.float64)
    sinusoid = torch.outer(position, torch.pow(10000, -torch.arange(half).to(position).div(half)))
    return torch.cat([torch.cos(sinusoid), torch.sin(sinusoid)], dim=1)


def rope_freqs(max_pos, dim, theta=10000.0):
    """Wan's rope_params without the complex polar: angles [max_pos, dim/2] in float64."""
    inv = 1.0 / torch.pow(theta, torch.arange(0, dim, 2).to(torch.float64).div(dim))
    return torch.outer(torch.arange(max_pos, dtype=torch.float64), inv)


def rope_cos_sin(head_dim, frame_offset, f, h, w, dtype=torch.float32):
    """cos/sin [f*h*w, head_dim/2] fp32 for tokens (frame_offset + fi, i, j). Pair split as
    Wan/causal_rope_apply: c = d/2 pairs -> [c - 2*(c//3), c//3, c//3] (t, h, w); the tables are
    rope_params(., d - 4*(d//6)), rope_params(., 2*(d//6)) x2. Angles float64 -> cos/sin fp32
    (MODEL.md 3; the public code rotates in float64 and caps frames at 1024, the engine does not).
    `dtype` other than fp32 only for a model cast to it (compare_public.py --dtype fp64)."""
    d = head_dim
    d_t, d_hw = d - 4 * (d // 6), 2 * (d // 6)
    ang_t = rope_freqs(frame_offset + f, d_t)[frame_offset:frame_offset + f]  # [f, d_t/2]
    ang_h = rope_freqs(h, d_hw)                                             # [h, d_h/2]
    ang_w = rope_freqs(w, d_hw)                                             # [w, d_w/2]
    ang = torch.cat([
        ang_t.view(f, 1, 1, -1).expand(f, h, w, -1),
        ang_h.view(1, h, 1, -1).expand(f, h, w, -1),
        ang_w.view(1, 1, w, -1).expand(f, h, w, -1)], dim=-1).reshape(f * h * w, d // 2)
    return torch.cos(ang).to(dtype), torch.sin(ang).to(dtype)


def rope_apply(x, cos, sin):
    """x [N, heads, d] fp32; pairs (2p, 2p+1) rotated: (a, b) -> (a cos - b sin, a sin + b cos)."""
    N, n, d = x.shape
    xp = x.view(N, n, d // 2, 2)
    a, b = xp[..., 0], xp[..., 1]
    c, s = cos.view(N, 1, d // 2), sin.view(N, 1, d // 2)
    return torch.stack([a * c - b * s, a * s + b * c], dim=-1).view(N, n, d)


def attention(q, k, v):
    """softmax(q k^T / sqrt(d)) v per head. q [N, n, d], k/v [M, n, d] -> [N, n*d] (head-major)."""
    N, n, d = q.shape
    scores = torch.einsum("qhd,khd->hqk", q, k) / math.sqrt(d)
    p = torch.softmax(scores, dim=-1)
    return torch.einsum("hqk,khd->qhd", p, v).reshape(N, n * d)


class WanRMSNorm(nn.Module):
    """RMS over the full dim (before the head split), times weight (Wan's WanRMSNorm)."""

    def __init__(self, dim, eps):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(dim=-1, keepdim=True) + self.eps) * self.weight


class WanLayerNorm(nn.LayerNorm):
    def __init__(self, dim, eps, elementwise_affine=False):
        super().__init__(dim, elementwise_affine=elementwise_affine, eps=eps)


class CausalWanSelfAttention(nn.Module):
    def __init__(self, dim, num_heads, eps):
        super().__init__()
        self.num_heads, self.head_dim = num_heads, dim // num_heads
        self.q, self.k, self.v, self.o = (nn.Linear(dim, dim) for _ in range(4))
        self.norm_q, self.norm_k = WanRMSNorm(dim, eps), WanRMSNorm(dim, eps)

    def forward(self, x, cos, sin, attend):
        """`attend(q, k, v)` supplies the key set ([cache window; this call]) - see KVCache."""
        N, n, d = x.shape[0], self.num_heads, self.head_dim
        q = self.norm_q(self.q(x)).view(N, n, d)
        k = self.norm_k(self.k(x)).view(N, n, d)
        v = self.v(x).view(N, n, d)
        q, k = rope_apply(q, cos, sin), rope_apply(k, cos, sin)
        return self.o(attend(q, k, v))


class WanT2VCrossAttention(nn.Module):
    def __init__(self, dim, num_heads, eps):
        super().__init__()
        self.num_heads, self.head_dim = num_heads, dim // num_heads
        self.q, self.k, self.v, self.o = (nn.Linear(dim, dim) for _ in range(4))
        self.norm_q, self.norm_k = WanRMSNorm(dim, eps), WanRMSNorm(dim, eps)

    def context_kv(self, ctx):
        """K/V of the prompt, computed once per prompt (Self-Forcing's crossattn_cache)."""
        L, n, d = ctx.shape[0], self.num_heads, self.head_dim
        return self.norm_k(self.k(ctx)).view(L, n, d), self.v(ctx).view(L, n, d)

    def forward(self, x, kv):
        N, n, d = x.shape[0], self.num_heads, self.head_dim
        q = self.norm_q(self.q(x)).view(N, n, d)
        return self.o(attention(q, kv[0], kv[1]))


class CausalWanAttentionBlock(nn.Module):
    def __init__(self, dim, ffn_dim, num_heads, eps):
        super().__init__()
        self.norm1 = WanLayerNorm(dim, eps)
        self.self_attn = CausalWanSelfAttention(dim, num_heads, eps)
        self.norm3 = WanLayerNorm(dim, eps, elementwise_affine=True)  # cross_attn_norm=True
        self.cross_attn = WanT2VCrossAttention(dim, num_heads, eps)
        self.norm2 = WanLayerNorm(dim, eps)
        self.ffn = nn.Sequential(nn.Linear(dim, ffn_dim), nn.GELU(approximate="tanh"), nn.Linear(ffn_dim, dim))
        self.modulation = nn.Parameter(torch.zeros(1, 6, dim))

    def forward(self, x, e0, cos, sin, ctx_kv, attend):
        """x [N, dim]; e0 [F, 6, dim] per frame. As CausalWanAttentionBlock.forward: the frame's
        6 vectors broadcast over its h*w tokens (unflatten(1, (F, frame_seqlen)))."""
        Fr = e0.shape[0]
        e = (self.modulation + e0).unsqueeze(1).chunk(6, dim=2)     # 6 x [F, 1, 1, dim]
        e = [m.squeeze(2) for m in e]                                # [F, 1, dim]

        def per_frame(t):  # [N, dim] -> [F, hw, dim]
            return t.unflatten(0, (Fr, -1))

        y = self.self_attn((per_frame(self.norm1(x)) * (1 + e[1]) + e[0]).flatten(0, 1), cos, sin, attend)
        x = x + (per_frame(y) * e[2]).flatten(0, 1)
        x = x + self.cross_attn(self.norm3(x), ctx_kv)
        y = self.ffn((per_frame(self.norm2(x)) * (1 + e[4]) + e[3]).flatten(0, 1))
        x = x + (per_frame(y) * e[5]).flatten(0, 1)
        return x


class CausalHead(nn.Module):
    def __init__(self, dim, out_dim, patch_size, eps):
        super().__init__()
        self.norm = WanLayerNorm(dim, eps)
        self.head = nn.Linear(dim, math.prod(patch_size) * out_dim)
        self.modulation = nn.Parameter(torch.zeros(1, 2, dim))

    def forward(self, x, e):
        """x [N, dim], e [F, dim] (time embedding before time_projection, as CausalHead)."""
        Fr = e.shape[0]
        n0, n1 = (self.modulation + e.unsqueeze(1)).unsqueeze(1).chunk(2, dim=2)  # [F,1,1,dim] each
        y = self.norm(x).unflatten(0, (Fr, -1)) * (1 + n1.squeeze(2)) + n0.squeeze(2)
        return self.head(y.flatten(0, 1))


class TinyTextEncoder(nn.Module):
    """MODEL.md 6: a bag of word embeddings plus positions (the engine's own prompt encoder)."""

    def __init__(self, vocab, max_tokens, text_dim):
        super().__init__()
        self.vocab = {w: i for i, w in reversed(list(enumerate(vocab)))}  # first occurrence wins
        self.max_tokens = max_tokens
        self.token_embedding = nn.Embedding(len(vocab), text_dim)
        self.pos_embedding = nn.Embedding(max_tokens, text_dim)

    def tokenize(self, text):
        # ASCII lower-casing only: a C engine lower-cases bytes, and any non [a-z0-9] char separates.
        text = "".join(chr(ord(c) + 32) if "A" <= c <= "Z" else c for c in text)
        words = [w for w in re.split(r"[^a-z0-9]", text) if w]
        return [self.vocab.get(w, 1) for w in words][: self.max_tokens]

    def forward(self, text):
        ids = torch.tensor(self.tokenize(text), dtype=torch.long)
        return self.token_embedding(ids) + self.pos_embedding(torch.arange(len(ids)))  # [L, text_dim]


class CausalWanModel(nn.Module):
    """The DiT plus the engine's extras (action_embedding, text_encoder, decoder), with the
    checkpoint names of MODEL.md 1."""

    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        dim = cfg.dim
        self.patch_embedding = nn.Conv3d(cfg.in_dim, dim, kernel_size=cfg.patch_size, stride=cfg.patch_size)
        self.text_embedding = nn.Sequential(nn.Linear(cfg.text_dim, dim), nn.GELU(approximate="tanh"),
                                            nn.Linear(dim, dim))
        self.time_embedding = nn.Sequential(nn.Linear(cfg.freq_dim, dim), nn.SiLU(), nn.Linear(dim, dim))
        self.time_projection = nn.Sequential(nn.SiLU(), nn.Linear(dim, dim * 6))
        self.blocks = nn.ModuleList([CausalWanAttentionBlock(dim, cfg.ffn_dim, cfg.num_heads, cfg.eps)
                                     for _ in range(cfg.num_layers)])
        self.head = CausalHead(dim, cfg.out_dim, cfg.patch_size, cfg.eps)
        if cfg.action_dim > 0:
            self.action_embedding = nn.Sequential(nn.Linear(cfg.action_dim, dim), nn.SiLU(), nn.Linear(dim, dim))
        if cfg.text_encoder:
            self.text_encoder = TinyTextEncoder(cfg.text_encoder["vocab"], cfg.text_encoder["max_tokens"],
                                                cfg.text_dim)
        if cfg.decoder:
            self.decoder = build_taehv_decoder(cfg.in_dim, cfg.decoder)

    # -- prompt ----------------------------------------------------------------------------------
    def prompt_embedding(self, prompt):
        """Text (needs text_encoder) or an embedding [L <= text_len, text_dim] -> [L, text_dim]."""
        if isinstance(prompt, str):
            if not hasattr(self, "text_encoder"):
                raise ValueError("text prompt given but the model has no text_encoder")
            return self.text_encoder(prompt)
        emb = torch.as_tensor(prompt, dtype=torch.float32)
        assert emb.ndim == 2 and emb.shape[1] == self.cfg.text_dim and emb.shape[0] <= self.cfg.text_len
        return emb

    def context_kv(self, prompt_emb):
        """Per block (K, V) of cross-attention: text_embedding of the prompt zero-padded to text_len
        (the padding rows are attended, as in Wan)."""
        L = prompt_emb.shape[0]
        padded = torch.cat([prompt_emb, prompt_emb.new_zeros(self.cfg.text_len - L, self.cfg.text_dim)])
        ctx = self.text_embedding(padded)
        return [b.cross_attn.context_kv(ctx) for b in self.blocks]

    # -- forward -----------------------------------------------------------------------------------
    def time_embed(self, t, actions=None):
        """t [F] fp32 timesteps, actions [F, A] -> e [F, dim], e0 [F, 6, dim]."""
        # float64 sinusoid cast to the weights' dtype (fp32; fp64 only in compare_public.py --dtype fp64)
        wdt = self.time_embedding[0].weight.dtype
        e = self.time_embedding(sinusoidal_embedding_1d(self.cfg.freq_dim, t).to(wdt))
        if hasattr(self, "action_embedding"):
            e = e + self.action_embedding(actions)
        e0 = self.time_projection(e).unflatten(1, (6, self.cfg.dim))
        return e, e0

    def forward(self, x, t, frame_offset, ctx_kv, attend, actions=None):
        """One DiT call. x [F, C, H, W] latents, t [F] timesteps, frame_offset = absolute index of
        frame 0, ctx_kv from context_kv(), attend(layer) -> attend(q, k, v) the self-attention
        key set. Returns the flow prediction v [F, C, H, W]."""
        cfg = self.cfg
        Fr, C, H, W = x.shape
        h, w = H // cfg.patch_size[1], W // cfg.patch_size[2]
        # patchify: Conv3d over [1, C, F, H, W], tokens (f, i, j) row-major
        tok = self.patch_embedding(x.permute(1, 0, 2, 3).unsqueeze(0)).flatten(2).transpose(1, 2)[0]
        e, e0 = self.time_embed(t, actions)
        cos, sin = rope_cos_sin(cfg.dim // cfg.num_heads, frame_offset, Fr, h, w, tok.dtype)
        for i, block in enumerate(self.blocks):
            tok = block(tok, e0, cos, sin, ctx_kv[i], attend(i))
        out = self.head(tok, e)                                   # [N, 4*C_out]
        return self.unpatchify(out, Fr, h, w)

    def unpatchify(self, out, f, h, w):
        """CausalWanModel.unpatchify: view (f,h,w,p,q,r,c), einsum fhwpqrc->cfphqwr, then [F,C,H,W]."""
        c, (p, q, r) = self.cfg.out_dim, self.cfg.patch_size
        u = out.view(f, h, w, p, q, r, c)
        u = torch.einsum("fhwpqrc->cfphqwr", u).reshape(c, f * p, h * q, w * r)
        return u.permute(1, 0, 2, 3).contiguous()


# ----------------------------------------------------------------------------------------------
# 4. KV cache policies (latent-frame granular)
# ----------------------------------------------------------------------------------------------
class KVCache:
    """Per layer, the committed K (after rope) and V of whole latent frames.
    window == -1: unbounded with `capacity` frames (exceeding it is an error).
    window W, sinks S: before a chunk of F frames, evict oldest non-sink frames until <= W - F remain."""

    def __init__(self, num_layers, window=-1, sinks=0, capacity=21):
        self.window, self.sinks, self.capacity = window, sinks, capacity
        self.frames = []                                  # absolute indices of the kept frames
        self.k = [[] for _ in range(num_layers)]          # per layer, per kept frame [hw, n, d]
        self.v = [[] for _ in range(num_layers)]

    def begin_chunk(self, start, n_frames):
        if self.window == -1:
            if len(self.frames) + n_frames > self.capacity:
                raise RuntimeError(f"KV cache full: {len(self.frames)} + {n_frames} > {self.capacity} frames")
            return
        if self.window < self.sinks + n_frames:
            raise ValueError("window must be >= sinks + frames per chunk")
        while len(self.frames) > self.window - n_frames:
            # frames are kept in order and the first S are never evicted: the oldest non-sink is
            # at position S (the first S committed frames are frames 0..S-1)
            pos = self.sinks
            del self.frames[pos]
            for layer in range(len(self.k)):
                del self.k[layer][pos]
                del self.v[layer][pos]

    def attend_fn(self, frames, commit, pending):
        """Returns attend(layer) for one DiT call over `frames` (absolute indices). With commit the
        call's k/v are kept in `pending` and appended by end_commit()."""
        def for_layer(layer):
            def attend(q, k, v):
                K = torch.cat(self.k[layer] + [k]) if self.k[layer] else k
                V = torch.cat(self.v[layer] + [v]) if self.v[layer] else v
                if commit:
                    pending[layer] = (k, v)
                return attention(q, K, V)
            return attend
        return for_layer

    def end_commit(self, frames, pending):
        for layer, (k, v) in pending.items():
            per = k.shape[0] // len(frames)
            self.k[layer] += list(k.split(per))
            self.v[layer] += list(v.split(per))
        self.frames += list(frames)


# ----------------------------------------------------------------------------------------------
# 7. TAEHV decoder (streaming)
# ----------------------------------------------------------------------------------------------
def conv3x3(n_in, n_out, bias=True):
    return nn.Conv2d(n_in, n_out, 3, padding=1, bias=bias)


class Clamp(nn.Module):
    def forward(self, x):
        return torch.tanh(x / 3) * 3


class MemBlock(nn.Module):
    """TAEHV MemBlock with n_in == n_out (skip = Identity): ReLU(conv(cat(x, past)) + x)."""

    def __init__(self, n):
        super().__init__()
        self.conv = nn.Sequential(conv3x3(2 * n, n), nn.ReLU(), conv3x3(n, n), nn.ReLU(), conv3x3(n, n))
        self.skip = nn.Identity()
        self.act = nn.ReLU()

    def forward(self, x, past):
        return self.act(self.conv(torch.cat([x, past], 1)) + self.skip(x))


class TGrow(nn.Module):
    """1x1 conv n -> n*stride; output channels [k*n, (k+1)*n) are time step k."""

    def __init__(self, n, stride):
        super().__init__()
        self.stride = stride
        self.conv = nn.Conv2d(n, n * stride, 1, bias=False)

    def forward(self, x):
        NT, C, H, W = x.shape
        return self.conv(x).reshape(-1, C, H, W)


def build_taehv_decoder(latent_channels, dcfg):
    """TAEHV.decoder with its nn.Sequential indices (a 2-entry time_upscale means TAEHV's
    (False, *time_upscale): the first TGrow has stride 1)."""
    n = dcfg["channels"]
    su = dcfg.get("space_upscale", [True, True, True])
    tu = [False] + list(dcfg.get("time_upscale", [True, True]))
    img = dcfg.get("image_channels", 3)

    def up(s):
        return nn.Upsample(scale_factor=2 if s else 1)

    return nn.Sequential(
        Clamp(), conv3x3(latent_channels, n[0]), nn.ReLU(),
        MemBlock(n[0]), MemBlock(n[0]), MemBlock(n[0]), up(su[0]), TGrow(n[0], 2 if tu[0] else 1),
        conv3x3(n[0], n[1], bias=False),
        MemBlock(n[1]), MemBlock(n[1]), MemBlock(n[1]), up(su[1]), TGrow(n[1], 2 if tu[1] else 1),
        conv3x3(n[1], n[2], bias=False),
        MemBlock(n[2]), MemBlock(n[2]), MemBlock(n[2]), up(su[2]), TGrow(n[2], 2 if tu[2] else 1),
        conv3x3(n[2], n[3], bias=False),
        nn.ReLU(), conv3x3(n[3], img),
    )


def decoder_time_upscale(decoder):
    return int(np.prod([b.stride for b in decoder if isinstance(b, TGrow)]))


class StreamingDecoder:
    """TAEHV's apply_model_with_memblocks_sequential as a stream: latent frames are pushed in order,
    each MemBlock keeps its previous input; the first (u - 1) outputs of the stream are dropped
    (TAEHV frames_to_trim). Output clamped to [0, 1]."""

    def __init__(self, decoder):
        self.decoder = decoder
        self.memory = [None] * len(decoder)
        self.to_trim = decoder_time_upscale(decoder) - 1

    def _run(self, x, i):
        """Depth-first over the layers: a TGrow's time steps go through the rest in time order,
        which keeps every later MemBlock's memory in time order."""
        if i == len(self.decoder):
            return [x]
        b = self.decoder[i]
        if isinstance(b, MemBlock):
            past = self.memory[i] if self.memory[i] is not None else torch.zeros_like(x)
            self.memory[i] = x
            return self._run(b(x, past), i + 1)
        if isinstance(b, TGrow):
            y = b.conv(x)                                   # [1, C*stride, H, W]
            out = []
            for step in y.chunk(b.stride, dim=1):
                out += self._run(step, i + 1)
            return out
        return self._run(b(x), i + 1)

    def push(self, latents):
        """latents [T, C, H, W] -> decoded frames [n, 3, Hp, Wp] in [0, 1] (n may be < T*u at start)."""
        frames = []
        for t in range(latents.shape[0]):
            frames += self._run(latents[t:t + 1], 0)
        drop = min(self.to_trim, len(frames))
        self.to_trim -= drop
        # every latent frame yields u >= to_trim + 1 outputs, so frames is never empty here
        return torch.cat(frames[drop:]).clamp(0, 1)


def decode_parallel(decoder, latents):
    """TAEHV.decode_video(parallel=True) for N = 1: all time steps at once, MemBlock memory = the
    input shifted by one time step; then clamp and trim. Used to check the streaming decoder."""
    x = latents
    for b in decoder:
        if isinstance(b, MemBlock):
            past = F.pad(x, (0, 0, 0, 0, 0, 0, 1, 0))[: x.shape[0]]
            x = b(x, past)
        else:
            x = b(x)
    return x.clamp(0, 1)[decoder_time_upscale(decoder) - 1:]


def to_rgb8(rgb):
    """MODEL.md 7: round(clamp(y, 0, 1) * 255) (round half to even in torch; ties are measure-zero)."""
    return torch.round(rgb.clamp(0, 1) * 255).to(torch.uint8)


# ----------------------------------------------------------------------------------------------
# 8. Actions
# ----------------------------------------------------------------------------------------------
def action_vector(cfg, action):
    """(buttons bitmask, [axes], mouse_dx, mouse_dy) -> fp32 [action_dim]."""
    buttons, axes, dx, dy = action
    v = [float((int(buttons) >> i) & 1) for i in range(len(cfg.action_buttons))]
    axes = list(axes) + [0.0] * (len(cfg.action_axes) - len(axes))
    v += [float(a) for a in axes[: len(cfg.action_axes)]]
    if cfg.action_mouse:
        v += [float(dx), float(dy)]
    return np.array(v, dtype=np.float32)


def latent_frame_actions(cfg, actions, first, count):
    """Action vectors [count, A] of latent frames first..first+count-1. Latent frame f covers video
    frames [u*(f-1)+1, u*f] (f = 0 covers frame 0); its vector is the fp32 mean, summed in order.
    A video frame without an action takes the last one given (neutral zeros before any)."""
    A, u = cfg.action_dim, cfg.time_upscale
    vecs = [action_vector(cfg, a) for a in (actions or [])]

    def at(frame):
        if not vecs:
            return np.zeros(A, np.float32)
        return vecs[min(frame, len(vecs) - 1)]

    out = np.zeros((count, A), np.float32)
    for n, f in enumerate(range(first, first + count)):
        frames = [0] if f == 0 else range(u * (f - 1) + 1, u * f + 1)
        acc = np.zeros(A, np.float32)
        for vf in frames:
            acc = (acc + at(vf)).astype(np.float32)
        out[n] = (acc / np.float32(len(frames))).astype(np.float32)
    return torch.from_numpy(out)


# ----------------------------------------------------------------------------------------------
# Loading and the streaming driver (MODEL.md 2)
# ----------------------------------------------------------------------------------------------
def load_model(model_dir):
    """config.json + model.safetensors (F32/F16/BF16, converted to fp32). Every tensor must exist
    with the right shape, and no other tensor may be present (as the engine checks)."""
    cfg = Config.load(model_dir)
    model = CausalWanModel(cfg).float()
    sd = {k: v.float() for k, v in load_file(os.path.join(model_dir, "model.safetensors")).items()}
    expected = model.state_dict()
    extra, missing = set(sd) - set(expected), set(expected) - set(sd)
    if extra or missing:
        raise ValueError(f"tensor names: missing {sorted(missing)} unexpected {sorted(extra)}")
    for k, v in expected.items():
        if tuple(sd[k].shape) != tuple(v.shape):
            raise ValueError(f"tensor {k}: shape {tuple(sd[k].shape)} != {tuple(v.shape)}")
    model.load_state_dict(sd)
    return model.eval()


def fp32(x):
    """A 0-d fp32 tensor, so scalar arithmetic stays in fp32 like the engine's."""
    return torch.tensor(x, dtype=torch.float32)


class Rollout:
    """The Self-Forcing streaming loop over chunks of num_frame_per_block latent frames.
    prompt: text or an embedding [L, text_dim]; actions: one (buttons, [axes], dx, dy) per video
    frame (the last repeats); window/sinks/capacity default to the config's policy, action_guidance
    and action_guidance_steps to the config's (wm_session_params.action_guidance overrides the first)."""

    def __init__(self, model_dir_or_model, seed, prompt=None, actions=None, window=None, sinks=None,
                 capacity=None, cache_factory=None, action_guidance=None, action_guidance_steps=None):
        self.model = (model_dir_or_model if isinstance(model_dir_or_model, CausalWanModel)
                      else load_model(model_dir_or_model))
        cfg = self.cfg = self.model.cfg
        self.seed = seed
        self.actions = actions
        self.prompt_emb = self.model.prompt_embedding(prompt if prompt is not None
                                                      else torch.zeros(0, cfg.text_dim))
        self.ctx_kv = self.model.context_kv(self.prompt_emb)
        window = cfg.local_attn_size if window is None else window
        sinks = (cfg.sink_size if sinks is None else sinks) if window != -1 else 0
        capacity = cfg.max_cache_frames if capacity is None else capacity
        factory = cache_factory or (lambda: KVCache(cfg.num_layers, window, sinks, capacity))
        self.cache = factory()
        self.timesteps = denoising_timesteps(cfg)
        self.guidance = float(cfg.action_guidance if action_guidance is None else action_guidance)
        self.guided_steps = action_guidance_steps or cfg.action_guidance_steps or len(self.timesteps)
        self.decoder = StreamingDecoder(self.model.decoder) if cfg.decoder else None
        self.chunk = 0
        self.debug = {}
        self.recache = bool(cfg.recache_on_prompt_switch)
        self.x0_hist = []  # (first frame, clean x0) of every committed chunk, for the re-cache

    def set_prompt(self, prompt):
        """A prompt change before the next chunk. With recache_on_prompt_switch (LongLive), the cache
        after the sink frames is rebuilt under the new prompt: the cache pass of the chunks of frames
        [max(S, s - (W - S)), s), in order, on top of the sinks (docs/CONVERT.md)."""
        self.prompt_emb = self.model.prompt_embedding(prompt)
        self.ctx_kv = self.model.context_kv(self.prompt_emb)
        if not self.recache or self.chunk == 0:
            return
        cache, Fr = self.cache, self.cfg.num_frame_per_block
        s, W, S = self.chunk * Fr, cache.window, cache.sinks
        lo = max(S, s - (W - S))
        keep = [i for i, f in enumerate(cache.frames) if f < S]
        cache.frames = [cache.frames[i] for i in keep]
        for layer in range(len(cache.k)):
            cache.k[layer] = [cache.k[layer][i] for i in keep]
            cache.v[layer] = [cache.v[layer][i] for i in keep]
        for start, x0 in self.x0_hist:
            if lo <= start < s:
                cache.begin_chunk(start, Fr)
                self._dit(x0, np.float32(self.cfg.context_noise), start, commit=True)

    def _acts(self, start, Fr):
        return (latent_frame_actions(self.cfg, self.actions, start, Fr)
                if hasattr(self.model, "action_embedding") else None)

    def _dit(self, x, t, start, commit, acts=None):
        Fr = x.shape[0]
        frames = list(range(start, start + Fr))
        if acts is None:
            acts = self._acts(start, Fr)
        pending = {}
        v = self.model(x, torch.full((Fr,), float(t), dtype=torch.float32), start, self.ctx_kv,
                       self.cache.attend_fn(frames, commit, pending), acts)
        if commit:
            self.cache.end_commit(frames, pending)
        return v

    def run_chunk(self):
        cfg, c = self.cfg, self.chunk
        Fr = cfg.num_frame_per_block
        start = c * Fr
        shape = (Fr, cfg.in_dim, cfg.latent_height, cfg.latent_width)
        self.cache.begin_chunk(start, Fr)
        x = noise(self.seed, 256 * c, shape)
        if c == 0:
            self.debug["noise0"] = x.clone()
        ts = self.timesteps
        acts = self._acts(start, Fr)
        # action guidance (MODEL.md 2): v + w (v - v_idle) on the first guided steps, v_idle the same
        # forward under the neutral action; skipped when the chunk's actions are all neutral (v_idle = v)
        guided = self.guidance > 0 and acts is not None and bool((acts != 0).any())
        for k, t in enumerate(ts):
            v = self._dit(x, t, start, commit=False)
            if guided and k < self.guided_steps:
                v_idle = self._dit(x, t, start, commit=False, acts=torch.zeros_like(acts))
                v = fp32(1.0 + self.guidance) * v - fp32(self.guidance) * v_idle
            if c == 0 and k == 0:
                self.debug["v0"] = v.clone()
            sig = fp32(sigma_of(t, cfg.timestep_shift))
            x0 = x - sig * v
            if k < len(ts) - 1:
                s = fp32(sigma_of(ts[k + 1], cfg.timestep_shift))
                if cfg.sampler == "flow_euler":  # an Euler step of the flow ODE (flow-matching models)
                    x = x + (s - sig) * v
                else:                            # Self-Forcing: x0 re-noised with fresh noise (distilled)
                    x = (1 - s) * x0 + s * noise(self.seed, 256 * c + k + 1, shape)
        # Self-Forcing's inference pipeline (causal_inference.py) feeds the clean x0 with the
        # timestep context_noise to the cache pass; it does not re-noise it.
        xc = x0
        self._dit(xc, np.float32(cfg.context_noise), start, commit=True)
        self.x0_hist.append((start, x0))
        self.chunk += 1
        out = {"latents": x0}
        if self.decoder is not None:
            rgb = self.decoder.push(x0)
            out["rgb"], out["rgb8"] = rgb, to_rgb8(rgb)
        return out

    def run(self, n_chunks):
        outs = [self.run_chunk() for _ in range(n_chunks)]
        res = {"latents": [o["latents"] for o in outs]}
        if self.decoder is not None:
            res["rgb"] = torch.cat([o["rgb"] for o in outs])
            res["rgb8"] = torch.cat([o["rgb8"] for o in outs])
        return res


# ----------------------------------------------------------------------------------------------
# Golden case re-run (python wm_ref.py tests/golden/<case>)
# ----------------------------------------------------------------------------------------------
def run_case(case_dir):
    """Runs a golden case folder with the reference. Returns (expected-style dict, case)."""
    with open(os.path.join(case_dir, "case.json")) as f:
        case = json.load(f)
    exp_path = os.path.join(case_dir, "expected.safetensors")
    prompt = case["prompt_text"]
    if case["prompt_embedding"]:
        prompt = load_file(exp_path)["prompt"]
    if Config.load(case_dir).sampler == "rolling_forcing":
        import rolling_ref  # the loop of Rolling Forcing's public code (docs/CONVERT.md)
        r = rolling_ref.RollingRollout(case_dir, case["seed"], prompt, case["actions"])
    else:
        r = Rollout(case_dir, case["seed"], prompt, case["actions"], window=case["window_frames"],
                    sinks=case["sink_frames"], capacity=case["max_cache_frames"])
    if case.get("prefill_chunks"):  # a context prefilled before the first chunk (expected "prefill")
        assert hasattr(r, "prefill") and r.decoder is None, "prefill cases: Rolling Forcing, no decoder"
        r.prefill(load_file(exp_path)["prefill"])
    # prompt switches: {"chunk": k, "prompt_text": ...} before chunk k
    switches = {sw["chunk"]: sw["prompt_text"] for sw in case.get("switches", [])}
    outs = []
    for c in range(case["n_chunks"]):
        if c in switches:
            r.set_prompt(switches[c])
        outs.append(r.run_chunk())
    res = {"latents": [o["latents"] for o in outs]}
    if r.decoder is not None:
        res["rgb"] = torch.cat([o["rgb"] for o in outs])
    out = {f"latents.{k}": l for k, l in enumerate(res["latents"])}
    if "v0" in r.debug:  # block 0 is not generated after a prefill
        out["debug.c0.v0"] = r.debug["v0"]
        out["debug.c0.noise0"] = r.debug["noise0"]
    if "rgb" in res:
        out["rgb"] = res["rgb"]
    return out, case, r


def main(argv):
    for case_dir in argv[1:]:
        got, _, _ = run_case(case_dir)
        exp = load_file(os.path.join(case_dir, "expected.safetensors"))
        for k, v in got.items():
            d = (v - exp[k]).abs().max().item()
            print(f"{case_dir} {k:18s} {tuple(v.shape)} max|diff| {d:.3g}")


if __name__ == "__main__":
    main(sys.argv)
