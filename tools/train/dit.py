"""dit.py - the batched training forward of the engine's causal Wan DiT.

The model is wm_ref.CausalWanModel itself (same modules, same parameter names, so what trains here is
what the engine loads); this file only runs its modules over a batch of whole clips at once, the way
the engine's chunked streaming would see them, with a block-causal attention mask instead of a KV cache:

  sequence = [context copy of frames 0..L-1 ; target copy of frames 0..L-1]   (same RoPE positions)

  * context frame f (chunk c = f // F) attends context frames of chunks <= c: the engine's cache pass
    (commit) of chunk c, run on the clean x0 with timestep context_noise;
  * target frame f attends context frames of chunks < c and the target frames of chunk c: the engine's
    denoising passes of chunk c over the committed cache;
  * with a window of W latent frames (local_attn_size) and S sinks, a chunk at frames [cF, cF+F) sees the
    first S frames and the newest W - F - S committed frames before it, as the engine's eviction
    (MODEL.md 4).

With the context copy clean (timestep 0) this is teacher forcing with exactly the engine's inference
attention pattern; with the context copy equal to the noisy target it is plain diffusion forcing (every
frame its own noise level, chunks attending to noisy pasts). train_dit.py mixes the two per sample.
tools/train/selftest.py checks this forward against wm_ref's streaming forward with a KV cache.
"""
import math

import torch
import torch.nn.functional as F

from common import wm_ref


def frame_mask(L, F_, window=-1, sinks=0, device=None):
    """[2L, 2L] bool, True = may attend: rows/cols 0..L-1 the context copy, L..2L-1 the target copy."""
    f = torch.arange(2 * L, device=device)
    is_tgt, fr = f >= L, f % L
    chunk = fr // F_
    qt, kt = is_tgt[:, None], is_tgt[None, :]
    qc, kc = chunk[:, None], chunk[None, :]
    kf = fr[None, :]
    in_window = torch.ones(2 * L, 2 * L, dtype=torch.bool, device=device)
    if window is not None and window > 0:
        # the engine keeps the first `sinks` frames and the newest window - F - sinks before the chunk
        in_window = (kf >= qc * F_ - (window - F_ - sinks)) | (kf < sinks)
    ctx_q = ~qt & ~kt & (kc <= qc) & (in_window | (kc == qc))
    tgt_q = qt & ((~kt & (kc < qc) & in_window) | (kt & (kc == qc)))
    return ctx_q | tgt_q


def token_mask(fmask, hw):
    """frame mask [S, S] -> token mask [S*hw, S*hw] (dense; for CPU and small tests)."""
    return fmask.repeat_interleave(hw, 0).repeat_interleave(hw, 1)


def flex_block_mask(L, F_, hw, window, sinks, device):
    """The same mask as a FlexAttention BlockMask (block-sparse: skips the empty tiles)."""
    from torch.nn.attention.flex_attention import create_block_mask
    fm = frame_mask(L, F_, window, sinks, device)

    def mask_mod(b, h, q_idx, kv_idx):
        return fm[q_idx // hw, kv_idx // hw]

    n = 2 * L * hw
    return create_block_mask(mask_mod, B=None, H=None, Q_LEN=n, KV_LEN=n, device=device)


_flex = None


def attention(q, k, v, mask):
    """q, k, v [B, heads, N, d]; mask: dense bool [N, N] (SDPA) or a FlexAttention BlockMask."""
    global _flex
    if isinstance(mask, torch.Tensor) or mask is None:
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    if _flex is None:
        from torch.nn.attention.flex_attention import flex_attention
        _flex = torch.compile(flex_attention, dynamic=False) if q.is_cuda else flex_attention
    return _flex(q, k, v, block_mask=mask)


def rope_tables(head_dim, L, h, w, device):
    """cos/sin [2*L*h*w, d/2] for the doubled sequence (context and target share frame positions)."""
    cos, sin = wm_ref.rope_cos_sin(head_dim, 0, L, h, w)
    return torch.cat([cos, cos]).to(device), torch.cat([sin, sin]).to(device)


def rope_apply(x, cos, sin):
    """x [B, N, heads, d]; pairs (2p, 2p+1) rotated (wm_ref.rope_apply, batched), in fp32."""
    B, N, n, d = x.shape
    xp = x.float().view(B, N, n, d // 2, 2)
    a, b = xp[..., 0], xp[..., 1]
    c, s = cos.view(1, N, 1, d // 2), sin.view(1, N, 1, d // 2)
    return torch.stack([a * c - b * s, a * s + b * c], dim=-1).view(B, N, n, d)


def rms(norm, x):
    """WanRMSNorm in fp32 (its weight), back to the input dtype."""
    return norm(x.float()).to(x.dtype)


def context_kv(model, prompt_emb):
    """prompt_emb [B, P, text_len, text_dim] (already zero padded) -> per block (K, V) [B, P, Lt, n, d]."""
    B, P, Lt, _ = prompt_emb.shape
    ctx = model.text_embedding(prompt_emb.flatten(0, 1))          # [B*P, Lt, dim]
    out = []
    for blk in model.blocks:
        ca = blk.cross_attn
        k = rms(ca.norm_k, ca.k(ctx)).view(B, P, Lt, ca.num_heads, ca.head_dim)
        v = ca.v(ctx).view(B, P, Lt, ca.num_heads, ca.head_dim)
        out.append((k, v))
    return out


def forward(model, x, t, actions, ctx_kv, prompt_idx, mask, rope):
    """One batched DiT call over the doubled sequence.
    x [B, S, C, H, W] latents (S = 2L), t [B, S] timesteps, actions [B, S, A] (or None),
    ctx_kv from context_kv(), prompt_idx [B, S] which prompt each frame uses, mask from frame_mask /
    flex_block_mask, rope from rope_tables. Returns v [B, S, C, H, W]."""
    cfg = model.cfg
    B, S, C, H, W = x.shape
    h, w = H // 2, W // 2
    hw, dim = h * w, cfg.dim
    n_heads, hd = cfg.num_heads, dim // cfg.num_heads
    tok = model.patch_embedding(x.transpose(1, 2)).flatten(2).transpose(1, 2).float()  # [B, S*hw, dim], fp32 stream
    sinus = wm_ref.sinusoidal_embedding_1d(cfg.freq_dim, t.flatten()).float()
    e = model.time_embedding(sinus)
    if hasattr(model, "action_embedding"):
        e = e + model.action_embedding(actions.flatten(0, 1))
    e0 = model.time_projection(e).unflatten(1, (6, dim)).view(B, S, 6, dim)
    e = e.view(B, S, dim)
    cos, sin = rope
    P = ctx_kv[0][0].shape[1]
    sel = [(prompt_idx == p)[:, :, None, None].expand(B, S, hw, 1).reshape(B, S * hw, 1) for p in range(P)]

    def per_frame(u):
        return u.view(B, S, hw, dim)

    for i, blk in enumerate(model.blocks):
        m = (blk.modulation[None] + e0).unsqueeze(2)                                 # [B, S, 1, 6, dim]
        m = [m[..., j, :] for j in range(6)]                                         # [B, S, 1, dim]
        y = (per_frame(blk.norm1(tok.float())) * (1 + m[1]) + m[0]).flatten(1, 2).to(tok.dtype)
        sa = blk.self_attn
        q = rope_apply(rms(sa.norm_q, sa.q(y)).view(B, S * hw, n_heads, hd), cos, sin)
        k = rope_apply(rms(sa.norm_k, sa.k(y)).view(B, S * hw, n_heads, hd), cos, sin)
        v = sa.v(y).view(B, S * hw, n_heads, hd)
        dt = v.dtype
        a = attention(q.to(dt).transpose(1, 2), k.to(dt).transpose(1, 2), v.transpose(1, 2), mask)
        y = sa.o(a.transpose(1, 2).reshape(B, S * hw, dim))
        tok = tok + (per_frame(y) * m[2]).flatten(1, 2)
        ca = blk.cross_attn
        qc = rms(ca.norm_q, ca.q(blk.norm3(tok.float()).to(tok.dtype))).view(B, S * hw, n_heads, hd).transpose(1, 2)
        kc, vc = ctx_kv[i]
        out = 0
        for p in range(P):
            o = F.scaled_dot_product_attention(qc, kc[:, p].transpose(1, 2).to(qc.dtype), vc[:, p].transpose(1, 2).to(qc.dtype))
            o = o.transpose(1, 2).reshape(B, S * hw, dim)
            out = o if P == 1 else out + o * sel[p]
        tok = tok + ca.o(out)
        y = blk.ffn((per_frame(blk.norm2(tok.float())) * (1 + m[4]) + m[3]).flatten(1, 2).to(tok.dtype))
        tok = tok + (per_frame(y) * m[5]).flatten(1, 2)
    hm = (model.head.modulation[None] + e.unsqueeze(2)).unsqueeze(2)               # [B, S, 1, 2, dim]
    y = per_frame(model.head.norm(tok.float())) * (1 + hm[..., 1, :]) + hm[..., 0, :]
    out = model.head.head(y.to(tok.dtype))                                         # [B, S, hw, 4C]
    out = out.view(B, S, h, w, 2, 2, C).permute(0, 1, 6, 2, 4, 3, 5).reshape(B, S, C, H, W)
    return out


def param_groups(model):
    """The trainable parts: DiT + action MLP + text encoder (the decoder comes frozen from the AE)."""
    return [p for n, p in model.named_parameters() if not n.startswith("decoder.")]


def count(model, prefix=None, exclude=None):
    return sum(p.numel() for n, p in model.named_parameters()
               if (prefix is None or n.startswith(prefix)) and (exclude is None or not n.startswith(exclude)))


def init_weights(model, seed=0):
    """Wan-style init: Linear/Conv xavier-uniform, zero biases, embeddings N(0, 0.02), modulation
    N(0, 1/sqrt(dim)) - and the head's output layer at zero so the first prediction is v = 0."""
    g = torch.Generator().manual_seed(seed)
    for name, p in model.named_parameters():
        if name.startswith("decoder."):
            continue
        with torch.no_grad():
            if name.endswith("modulation"):
                p.copy_(torch.randn(p.shape, generator=g) / math.sqrt(model.cfg.dim))
            elif "token_embedding" in name:
                p.copy_(torch.randn(p.shape, generator=g) * 0.5)
            elif "pos_embedding" in name:
                p.copy_(torch.randn(p.shape, generator=g) * 0.1)
            elif name.endswith("bias"):
                p.zero_()
            elif "norm" in name:
                p.fill_(1.0)
            elif p.ndim >= 2:
                fan_out, fan_in = p.shape[0], p[0].numel()
                bound = math.sqrt(6.0 / (fan_in + fan_out))
                p.copy_((torch.rand(p.shape, generator=g) * 2 - 1) * bound)
    with torch.no_grad():
        model.head.head.weight.zero_()
        model.head.head.bias.zero_()
