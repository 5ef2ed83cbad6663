"""selftest.py - checks of the reference against independent formulations and the public code's
own semantics (run: .venv/bin/python tools/reference/selftest.py; a few seconds on a CPU).

Each check prints one line; the exit status is non-zero when any fails.
"""
import copy
import math
import os
import sys
import traceback

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import make_goldens  # noqa: E402
import wm_ref  # noqa: E402

GOLDEN = os.path.normpath(os.path.join(HERE, "..", "..", "tests", "golden"))
FAILURES = []
CHECKS = []


def check(fn):
    CHECKS.append(fn)
    return fn


def close(a, b, tol, what):
    d = (a - b).abs().max().item()
    assert d <= tol, f"{what}: max|diff| {d:.3g} > {tol:.3g}"
    return d


# ----------------------------------------------------------------------------------------------
# Noise
# ----------------------------------------------------------------------------------------------
@check
def philox_kat():
    for ctr, key, want in make_goldens.PHILOX_KAT:
        got = [int(w) for w in wm_ref.philox4x32_10(ctr, key)]
        assert got == want, f"philox({ctr}, {key}) = {[hex(w) for w in got]}, want {[hex(w) for w in want]}"


@check
def noise_layout_and_stats():
    full = wm_ref.noise(7, 3, (1000,))
    # element n only depends on (seed, stream, n): a prefix of a longer draw and a reshaped draw agree
    assert torch.equal(wm_ref.noise(7, 3, (13,)), full[:13])
    assert torch.equal(wm_ref.noise(7, 3, (2, 5, 10, 10)).reshape(-1), full)
    # streams and the seed's high word matter
    assert not torch.equal(wm_ref.noise(7, 4, (8,)), full[:8])
    assert not torch.equal(wm_ref.noise(7 + (1 << 32), 3, (8,)), full[:8])
    assert not torch.equal(wm_ref.noise(7, 3 + (1 << 32), (8,)), full[:8])
    # element 4j+w is Box-Muller output w of block j
    x = wm_ref.philox4x32_10((5, 0, 3, 0), (7, 0))
    u = [(int(w) + 0.5) / 2 ** 32 for w in x]
    r = math.sqrt(-2 * math.log(u[0]))
    assert np.float32(r * math.cos(2 * math.pi * u[1])) == full[20].item()
    assert np.float32(r * math.sin(2 * math.pi * u[1])) == full[21].item()
    big = wm_ref.noise(123, 0, (200000,))
    assert abs(big.mean().item()) < 0.01 and abs(big.std().item() - 1) < 0.01, "noise moments"


@check
def philox_golden_file():
    path = os.path.join(GOLDEN, "philox.safetensors")
    if not os.path.exists(path):
        return "skipped (no goldens)"
    t = load_file(path)
    for s in make_goldens.NOISE_STREAMS:
        assert torch.equal(t[f"noise.s{s}"], wm_ref.noise(make_goldens.NOISE_SEED, s, (1000,)))


# ----------------------------------------------------------------------------------------------
# DiT pieces against the public formulations
# ----------------------------------------------------------------------------------------------
def public_rope_apply(x, f, h, w, start_frame):
    """Transcription of Self-Forcing causal_rope_apply (complex float64) for one sample."""
    n, d = x.shape[1], x.shape[2]
    c = d // 2
    freqs = torch.cat([wm_ref.rope_freqs(1024, d - 4 * (d // 6)), wm_ref.rope_freqs(1024, 2 * (d // 6)),
                       wm_ref.rope_freqs(1024, 2 * (d // 6))], dim=1)
    freqs = torch.polar(torch.ones_like(freqs), freqs)
    fr = freqs.split([c - 2 * (c // 3), c // 3, c // 3], dim=1)
    seq = f * h * w
    xi = torch.view_as_complex(x.to(torch.float64).reshape(seq, n, -1, 2))
    fi = torch.cat([fr[0][start_frame:start_frame + f].view(f, 1, 1, -1).expand(f, h, w, -1),
                    fr[1][:h].view(1, h, 1, -1).expand(f, h, w, -1),
                    fr[2][:w].view(1, 1, w, -1).expand(f, h, w, -1)], dim=-1).reshape(seq, 1, -1)
    return torch.view_as_real(xi * fi).flatten(2).float()


@check
def rope_matches_public():
    g = torch.Generator().manual_seed(0)
    for d, (f, h, w, off) in [(16, (3, 3, 4, 7)), (32, (2, 2, 3, 1000)), (128, (2, 3, 5, 20))]:
        x = torch.randn(f * h * w, 2, d, generator=g)
        cos, sin = wm_ref.rope_cos_sin(d, off, f, h, w)
        close(wm_ref.rope_apply(x, cos, sin), public_rope_apply(x, f, h, w, off), 2e-5, f"rope d={d}")


@check
def sinusoid_and_steps():
    s = wm_ref.sinusoidal_embedding_1d(8, torch.tensor([0.0, 937.5]))
    assert s.dtype == torch.float64 and torch.allclose(s[0], torch.tensor([1.0] * 4 + [0.0] * 4, dtype=torch.float64))
    assert abs(s[1, 1].item() - math.cos(937.5 * 10000 ** (-1 / 4))) < 1e-12
    cfg = wm_ref.Config(wm_ref.CONFIG_DEFAULTS)
    assert [float(t) for t in wm_ref.denoising_timesteps(cfg)] == [1000.0, 937.5, np.float32(2500 / 3), 625.0]
    cfg["denoising_step_list"] = [1000, 757, 522]
    cfg["timestep_shift"] = 8.0
    # Self-Forcing's table: shift*s/(1+(shift-1)*s) at s = 1 - i/1000 (CausVid's steps, shift 8)
    want = [np.float32(1000 * 8 * s / (1 + 7 * s)) for s in (1.0, 0.757, 0.522)]
    assert wm_ref.denoising_timesteps(cfg) == want


def tiny_model(seed=5, **kw):
    cfg = wm_ref.Config(wm_ref.CONFIG_DEFAULTS)
    cfg.update(make_goldens.base_config(**kw))
    m = wm_ref.CausalWanModel(cfg)
    make_goldens.init_weights(m, seed)
    return m


@check
def patchify_unpatchify_index_maps():
    m = tiny_model(in_dim=3, out_dim=3, latent_height=4, latent_width=6)
    cfg = m.cfg
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 3, 4, 6, generator=g)
    # MODEL.md 3: token (f,i,j) takes the vector over (c, 0, di, dj) in weight order
    tok = m.patch_embedding(x.permute(1, 0, 2, 3).unsqueeze(0)).flatten(2).transpose(1, 2)[0]
    Wt = m.patch_embedding.weight.reshape(cfg.dim, -1)
    ref = []
    for f in range(2):
        for i in range(2):
            for j in range(3):
                ref.append(x[f, :, 2 * i:2 * i + 2, 2 * j:2 * j + 2].reshape(-1) @ Wt.T + m.patch_embedding.bias)
    close(tok, torch.stack(ref), 1e-5, "patchify")
    # out[(f,i,j), (di*2+dj)*C + c] -> v[f, c, 2i+di, 2j+dj]
    out = torch.randn(2 * 2 * 3, 4 * 3, generator=g)
    v = m.unpatchify(out, 2, 2, 3)
    for f in range(2):
        for i in range(2):
            for j in range(3):
                for di in range(2):
                    for dj in range(2):
                        for c in range(3):
                            assert v[f, c, 2 * i + di, 2 * j + dj] == out[(f * 2 + i) * 3 + j, (di * 2 + dj) * 3 + c]


@check
def dit_rope_is_relative_and_timesteps_per_frame():
    """Without cached frames RoPE is relative, so a call's output does not depend on its frame
    offset; with cached frames it does. Timesteps act per frame."""
    m = tiny_model()
    kv = m.context_kv(torch.zeros(0, m.cfg.text_dim))
    x = wm_ref.noise(1, 0, (2, 4, 4, 6))
    t = torch.tensor([500.0, 500.0])
    empty = wm_ref.KVCache(2)
    a = m(x, t, 0, kv, empty.attend_fn([0, 1], False, {}))
    b = m(x, t, 5, kv, empty.attend_fn([5, 6], False, {}))
    close(a, b, 1e-4, "offset without cache")
    c = m(x, torch.tensor([500.0, 400.0]), 0, kv, empty.attend_fn([0, 1], False, {}))
    assert (a - c).abs().max() > 1e-3, "per-frame timestep has no effect"
    cache, pending = wm_ref.KVCache(2), {}
    m(x, torch.zeros(2), 0, kv, cache.attend_fn([0, 1], True, pending))
    cache.end_commit([0, 1], pending)
    y = wm_ref.noise(1, 1, (2, 4, 4, 6))
    p = m(y, t, 2, kv, cache.attend_fn([2, 3], False, {}))
    q = m(y, t, 5, kv, cache.attend_fn([5, 6], False, {}))
    assert (p - q).abs().max() > 1e-3, "frame offset relative to the cache has no effect"


# ----------------------------------------------------------------------------------------------
# Cache policies
# ----------------------------------------------------------------------------------------------
class MaskedHistoryCache:
    """Brute force: keeps every committed frame and masks keys with the closed form of the window
    policy: before a chunk at [a, a+F), the visible committed frames are f < S (sinks) and the
    latest W - F - S frames before a (all of them when unbounded)."""

    def __init__(self, num_layers, window, sinks):
        self.window, self.sinks = window, sinks
        self.k = [None] * num_layers
        self.v = [None] * num_layers
        self.frames = []
        self.start = 0

    def begin_chunk(self, start, n):
        self.start, self.n = start, n

    def visible(self, f):
        if self.window == -1:
            return True
        return f < self.sinks or f >= self.start - (self.window - self.n - self.sinks)

    def attend_fn(self, frames, commit, pending):
        def for_layer(layer):
            def attend(q, k, v):
                per = k.shape[0] // len(frames)
                K = torch.cat([self.k[layer], k]) if self.k[layer] is not None else k
                V = torch.cat([self.v[layer], v]) if self.v[layer] is not None else v
                key_frames = [f for f in self.frames for _ in range(per)] + [f for f in frames for _ in range(per)]
                mask = torch.tensor([f in frames or self.visible(f) for f in key_frames])
                N, n, d = q.shape
                s = torch.einsum("qhd,khd->hqk", q, K) / math.sqrt(d)
                s = s.masked_fill(~mask.view(1, 1, -1), float("-inf"))
                out = torch.einsum("hqk,khd->qhd", torch.softmax(s, -1), V).reshape(N, n * d)
                if commit:
                    pending[layer] = (k, v)
                return out
            return attend
        return for_layer

    def end_commit(self, frames, pending):
        for layer, (k, v) in pending.items():
            self.k[layer] = torch.cat([self.k[layer], k]) if self.k[layer] is not None else k
            self.v[layer] = torch.cat([self.v[layer], v]) if self.v[layer] is not None else v
        self.frames += list(frames)


class SelfForcingCache:
    """Token-level transcription of Self-Forcing CausalWanSelfAttention.forward's kv_cache branch:
    every forward (noisy ones too) writes its k/v at [local_end - new, local_end); rolling with
    sinks when the window is full; attention over the last max_attention_size cached tokens.
    (The public code hard-codes 1560 tokens per frame in max_attention_size; here frame_seqlen.)"""

    def __init__(self, num_layers, frame_seqlen, local_attn_size, sink_size, capacity, heads, d):
        frames = local_attn_size if local_attn_size != -1 else capacity
        self.size = frames * frame_seqlen
        self.max_attention_size = self.size
        self.local_attn_size, self.sink_tokens = local_attn_size, sink_size * frame_seqlen
        self.caches = [dict(k=torch.zeros(self.size, heads, d), v=torch.zeros(self.size, heads, d),
                            global_end_index=0, local_end_index=0) for _ in range(num_layers)]
        self.frame_seqlen = frame_seqlen

    def begin_chunk(self, start, n):
        self.current_start = start * self.frame_seqlen

    def end_commit(self, frames, pending):
        pass

    def attend_fn(self, frames, commit, pending):
        def for_layer(layer):
            kv = self.caches[layer]

            def attend(q, roped_key, v):
                num_new = q.shape[0]
                current_end = self.current_start + num_new
                if (self.local_attn_size != -1 and current_end > kv["global_end_index"]
                        and num_new + kv["local_end_index"] > self.size):
                    num_evicted = num_new + kv["local_end_index"] - self.size
                    num_rolled = kv["local_end_index"] - num_evicted - self.sink_tokens
                    s, e = self.sink_tokens, self.sink_tokens + num_evicted
                    kv["k"][s:s + num_rolled] = kv["k"][e:e + num_rolled].clone()
                    kv["v"][s:s + num_rolled] = kv["v"][e:e + num_rolled].clone()
                    local_end = kv["local_end_index"] + current_end - kv["global_end_index"] - num_evicted
                else:
                    local_end = kv["local_end_index"] + current_end - kv["global_end_index"]
                assert local_end <= self.size, "cache overflow"
                kv["k"][local_end - num_new:local_end] = roped_key
                kv["v"][local_end - num_new:local_end] = v
                lo = max(0, local_end - self.max_attention_size)
                out = wm_ref.attention(q, kv["k"][lo:local_end], kv["v"][lo:local_end])
                kv["global_end_index"], kv["local_end_index"] = current_end, local_end
                return out
            return attend
        return for_layer


def rollout_with(model_dir, case, cache_factory=None, **kw):
    prompt = case["prompt_text"]
    if case["prompt_embedding"]:
        prompt = load_file(os.path.join(model_dir, "expected.safetensors"))["prompt"]
    args = dict(window=case["window_frames"], sinks=case["sink_frames"], capacity=case["max_cache_frames"])
    args.update(kw)
    r = wm_ref.Rollout(model_dir, case["seed"], prompt, case["actions"], cache_factory=cache_factory, **args)
    return r, r.run(case["n_chunks"])


def load_case(name):
    import json
    d = os.path.join(GOLDEN, name)
    with open(os.path.join(d, "case.json")) as f:
        return d, json.load(f)


@check
def window_eviction_equals_masked_brute_force():
    d, case = load_case("world_window")
    cfg = wm_ref.Config.load(d)
    _, ref = rollout_with(d, case)
    _, bf = rollout_with(d, case, lambda: MaskedHistoryCache(cfg.num_layers, case["window_frames"], case["sink_frames"]))
    for k, (a, b) in enumerate(zip(ref["latents"], bf["latents"])):
        close(a, b, 1e-5, f"latents.{k}")
    # and the same policy with a tighter window (eviction at every chunk from 2 on)
    _, ref = rollout_with(d, case, window=5, sinks=1)
    _, bf = rollout_with(d, case, lambda: MaskedHistoryCache(cfg.num_layers, 5, 1))
    for k, (a, b) in enumerate(zip(ref["latents"], bf["latents"])):
        close(a, b, 1e-5, f"W=5 S=1 latents.{k}")


@check
def cache_matches_self_forcing_rolling():
    for name in ("world_window", "t2v_unbounded", "bf16_ctxnoise"):
        d, case = load_case(name)
        cfg = wm_ref.Config.load(d)
        hw = (cfg.latent_height // 2) * (cfg.latent_width // 2)
        hd = cfg.dim // cfg.num_heads
        _, ref = rollout_with(d, case)
        _, sf = rollout_with(d, case, lambda: SelfForcingCache(
            cfg.num_layers, hw, case["window_frames"], case["sink_frames"], case["max_cache_frames"],
            cfg.num_heads, hd))
        for k, (a, b) in enumerate(zip(ref["latents"], sf["latents"])):
            close(a, b, 1e-5, f"{name} latents.{k}")


class RollingForcingTranscription:
    """Transcription of TencentARC/RollingForcing (a1477d0): the token-slot KV cache of the inference
    branch of CausalWanSelfAttention.forward (wan/modules/causal_model.py: 24-frame cache, the first
    block stored un-rotated, eviction keeping it, the anchor re-rotated before the working cache, the
    clean pass's 21-frame extract) and the window loop of pipeline/rolling_forcing_inference.py (its
    flush windows included), with the engine's noise streams instead of torch.randn and
    public_rope_apply for causal_rope_apply. Sizes in tokens as theirs, with frame_length = h*w."""

    def __init__(self, model, seed, prompt, n_blocks):
        self.m, self.seed, self.N = model, seed, n_blocks
        cfg = model.cfg
        self.Fb = cfg.num_frame_per_block
        self.h, self.w = cfg.latent_height // 2, cfg.latent_width // 2
        self.fl = self.h * self.w
        self.block, self.max_attn, self.size = 3 * self.fl, 21 * self.fl, 24 * self.fl
        L, n, d = cfg.num_layers, cfg.num_heads, cfg.dim // cfg.num_heads
        self.k = [torch.zeros(self.size, n, d) for _ in range(L)]
        self.v = [torch.zeros(self.size, n, d) for _ in range(L)]
        self.gend, self.lend = [0] * L, [0] * L
        self.ctx = model.context_kv(model.prompt_embedding(prompt))
        for i, blk in enumerate(model.blocks):
            blk.self_attn.forward = self._attn(i, blk.self_attn)

    def _attn(self, layer, sa):
        def forward(x, cos, sin, attend):  # cos/sin/attend of the reference are not used
            N, n, d = x.shape[0], sa.num_heads, sa.head_dim
            q = sa.norm_q(sa.q(x)).view(N, n, d)
            k = sa.norm_k(sa.k(x)).view(N, n, d)
            v = sa.v(x).view(N, n, d)
            f, start = N // self.fl, self.cur_start // self.fl
            rq, rk = (public_rope_apply(t, f, self.h, self.w, start) for t in (q, k))
            K, V, B = self.k[layer], self.v[layer], self.block
            cache_end = self.cur_start + B
            new = cache_end - self.gend[layer]
            if new > 0 and new + self.lend[layer] > self.size:
                ev = new + self.lend[layer] - self.size
                rolled = self.lend[layer] - ev - B
                K[B:B + rolled] = K[B + ev:B + ev + rolled].clone()
                V[B:B + rolled] = V[B + ev:B + ev + rolled].clone()
                lend = self.lend[layer] + cache_end - self.gend[layer] - ev
                K[lend - B:lend], V[lend - B:lend] = rk[:B], v[:B]
            else:
                lend = self.lend[layer] + cache_end - self.gend[layer]
                K[lend - B:lend] = k[:B] if lend - B == 0 else rk[:B]
                V[lend - B:lend] = v[:B]
            lstart = lend - B
            if new > 0:
                self.gend[layer], self.lend[layer] = cache_end, lend
            if lstart == 0:
                return sa.o(wm_ref.attention(rq, rk, v))
            if self.updating:
                a = max(0, lend - self.max_attn)
                wk, wv = K[a:lend].clone(), V[a:lend]
                if a == 0:
                    wk[:B] = public_rope_apply(wk[:B], 3, self.h, self.w, 0)
                return sa.o(wm_ref.attention(rq, wk, wv))
            wmax = self.max_attn - N - B
            a = max(B, lstart - wmax)
            wk, wv = K[a:lstart], V[a:lstart]
            anchor = public_rope_apply(K[:B], 3, self.h, self.w, start - wk.shape[0] // self.fl - 3)
            return sa.o(wm_ref.attention(rq, torch.cat([anchor, wk, rk]), torch.cat([V[:B], wv, v])))
        return forward

    def _gen(self, x, t, start, updating):
        self.cur_start, self.updating = start * self.fl, updating
        return self.m(x, t, start, self.ctx, lambda i: None)

    def run(self):
        cfg, Fb, N = self.m.cfg, self.Fb, self.N
        T = wm_ref.denoising_timesteps(cfg)
        nT = len(T)
        shape = (N * Fb, cfg.in_dim, cfg.latent_height, cfg.latent_width)
        noise = torch.cat([wm_ref.noise(self.seed, 256 * b, (Fb,) + shape[1:]) for b in range(N)])
        noisy, out = torch.zeros(shape), torch.zeros(shape)
        shared = torch.tensor([float(t) for t in reversed(T) for _ in range(Fb)], dtype=torch.float32)
        for wi in range(N + nT - 1):
            sb, eb = max(0, wi - nT + 1), min(N - 1, wi)
            s, e = sb * Fb, (eb + 1) * Fb
            nf = e - s
            if nf == nT * Fb or s == 0:
                x = torch.cat([noisy[s:e - Fb], noise[e - Fb:e]])
            else:
                x = noisy[s:e]
            t = shared if nf == nT * Fb else (shared[-nf:] if s == 0 else shared[:nf])
            v = self._gen(x, t, s, False)
            sig = torch.stack([wm_ref.fp32(wm_ref.sigma_of(float(tf), cfg.timestep_shift)) for tf in t])
            x0 = x - sig.view(-1, 1, 1, 1) * v
            out[s:e] = x0
            for b in range(sb, eb + 1):
                j = b - sb
                idx = [i for i, tt in enumerate(T) if abs(float(tt) - float(t[j * Fb])) < 1e-4][0]
                if idx == nT - 1:
                    continue
                sn = wm_ref.fp32(wm_ref.sigma_of(T[idx + 1], cfg.timestep_shift))
                eps = wm_ref.noise(self.seed, 256 * b + idx + 1, (Fb,) + shape[1:])
                noisy[b * Fb:(b + 1) * Fb] = (1 - sn) * x0[j * Fb:(j + 1) * Fb] + sn * eps
            self._gen(x0[:Fb], torch.full((Fb,), float(cfg.context_noise)), s, True)
        return out


@check
def rolling_forcing_matches_public_transcription():
    import rolling_ref
    kw = dict(denoising_step_list=[1000, 800, 600, 400, 200], latent_height=4, latent_width=4)
    N = 13  # blocks 0..8 finalise before the flush windows: the history passes 21 frames and evicts
    ref = rolling_ref.RollingRollout(tiny_model(**kw), 11, torch.randn(3, 16, generator=torch.Generator().manual_seed(1)))
    got = [ref.run_block()["latents"] for _ in range(N - 4)]
    tr = RollingForcingTranscription(tiny_model(**kw), 11, ref.prompt_emb, N).run()
    worst = 0.0
    for b, x0 in enumerate(got):
        worst = max(worst, close(x0, tr[b * 3:(b + 1) * 3], 2e-5, f"block {b}"))
    return f"{len(got)} blocks, max|diff| {worst:.2g}"


@check
def window_golden_evicts():
    """The world_window golden is discriminative: without eviction chunks 0-2 are unchanged (no
    eviction happened yet) and chunk 3 differs."""
    d, case = load_case("world_window")
    _, unb = rollout_with(d, case, window=-1, sinks=0, capacity=21)
    exp = load_file(os.path.join(d, "expected.safetensors"))
    for k in range(3):
        close(unb["latents"][k], exp[f"latents.{k}"], 0, f"unbounded latents.{k}")
    diff = (unb["latents"][3] - exp["latents.3"]).abs().max().item()
    assert diff > 1e-2, f"eviction changes latents.3 by only {diff}"


@check
def unbounded_capacity_is_an_error():
    d, case = load_case("t2v_unbounded")
    r = wm_ref.Rollout(d, case["seed"], load_file(os.path.join(d, "expected.safetensors"))["prompt"],
                       capacity=case["max_cache_frames"])
    r.run(3)
    try:
        r.run_chunk()
    except RuntimeError:
        return
    raise AssertionError("a 4th chunk fitted in a 9-frame cache")


@check
def zero_cross_attention_keys_finite():
    d, case = load_case("t2v_unbounded")
    m = wm_ref.load_model(d)
    for b in m.blocks:
        b.cross_attn.k.weight.zero_()
        b.cross_attn.k.bias.zero_()
    r = wm_ref.Rollout(m, case["seed"], load_file(os.path.join(d, "expected.safetensors"))["prompt"])
    out = r.run(2)
    assert all(torch.isfinite(l).all() for l in out["latents"])
    # the keys are rms(0) = 0: attention is uniform, so the output equals the mean of V
    kv = m.context_kv(r.prompt_emb)[0]
    assert kv[0].abs().max() == 0


@check
def empty_prompt_and_neutral_actions():
    d, case = load_case("world_window")
    r = wm_ref.Rollout(d, 3, prompt="", actions=None)
    assert r.prompt_emb.shape == (0, r.cfg.text_dim)
    out = r.run(1)
    assert torch.isfinite(out["latents"][0]).all()


# ----------------------------------------------------------------------------------------------
# Decoder
# ----------------------------------------------------------------------------------------------
@check
def decoder_streaming_is_chunk_invariant():
    g = torch.Generator().manual_seed(3)
    for tu in ([True, True], [False, True], [False, False], [True, False]):
        dcfg = {"channels": [8, 6, 4, 4], "space_upscale": [True, False, True], "time_upscale": tu}
        dec = wm_ref.build_taehv_decoder(4, dcfg)
        for p in dec.parameters():
            p.copy_(torch.randn(p.shape, generator=g) / math.sqrt(max(1, p[0].numel())))
        lat = torch.randn(7, 4, 3, 5, generator=g)
        par = wm_ref.decode_parallel(dec, lat)
        u = wm_ref.decoder_time_upscale(dec)
        assert par.shape[0] == u * (7 - 1) + 1
        for split in ([7], [1] * 7, [2, 3, 2], [3, 1, 3]):
            s = wm_ref.StreamingDecoder(dec)
            parts, i = [], 0
            for n in split:
                parts.append(s.push(lat[i:i + n]))
                i += n
            close(torch.cat(parts), par, 1e-5, f"tu={tu} split={split}")


@check
def decoder_matches_taehv_sequential():
    """A transcription of TAEHV's apply_model_with_memblocks_sequential work queue (breadth of
    TGrow outputs pushed to the front of the queue) gives the same frames as the recursion."""
    from collections import namedtuple
    Item = namedtuple("Item", ("x", "i"))
    g = torch.Generator().manual_seed(4)
    dec = wm_ref.build_taehv_decoder(4, {"channels": [8, 6, 4, 4], "time_upscale": [True, True]})
    for p in dec.parameters():
        p.copy_(torch.randn(p.shape, generator=g) / math.sqrt(max(1, p[0].numel())))
    lat = torch.randn(4, 4, 2, 3, generator=g)
    queue, mem, out = [Item(x, 0) for x in lat.unsqueeze(1).unbind(0)], [None] * len(dec), []
    while queue:
        x, i = queue.pop(0)
        if i == len(dec):
            out.append(x)
            continue
        b = dec[i]
        if isinstance(b, wm_ref.MemBlock):
            y = b(x, x * 0 if mem[i] is None else mem[i])
            mem[i] = x
            queue.insert(0, Item(y, i + 1))
        elif isinstance(b, wm_ref.TGrow):
            y = b(x)
            NT, C, H, W = y.shape
            for xt in reversed(y.view(NT // b.stride, b.stride * C, H, W).chunk(b.stride, 1)):
                queue.insert(0, Item(xt, i + 1))
        else:
            queue.insert(0, Item(b(x), i + 1))
    taehv = torch.cat(out).clamp(0, 1)[3:]
    close(wm_ref.StreamingDecoder(dec).push(lat), taehv, 1e-6, "sequential")


@check
def decoder_names_match_taew2_1():
    """State-dict names of the default decoder are TAEHV's (taew2_1.pth keys without 'decoder.')."""
    dec = wm_ref.build_taehv_decoder(16, {"channels": [256, 128, 64, 64]})
    names = set(dec.state_dict())
    want = {"1.weight", "1.bias", "7.conv.weight", "8.weight", "13.conv.weight", "14.weight",
            "19.conv.weight", "20.weight", "22.weight", "22.bias"}
    for i in (3, 4, 5, 9, 10, 11, 15, 16, 17):
        want |= {f"{i}.conv.{j}.{p}" for j in (0, 2, 4) for p in ("weight", "bias")}
    assert names == want, f"{sorted(names ^ want)}"
    assert tuple(dec.state_dict()["13.conv.weight"].shape) == (256, 128, 1, 1)
    assert sum(p.numel() for p in dec.parameters()) > 9e6  # ~9.8M params (CAUSAL_WAN.md)


# ----------------------------------------------------------------------------------------------
# Prompt and actions
# ----------------------------------------------------------------------------------------------
@check
def tokenizer():
    enc = wm_ref.TinyTextEncoder(["<pad>", "<unk>", "a", "red", "car"], 4, 8)
    assert enc.tokenize("A RED-car, a Blue   car!") == [2, 3, 4, 2]
    assert enc.tokenize("  ") == [] and enc.tokenize("red42 car") == [1, 4]
    assert enc.tokenize("r\u00e9d car") == [1, 1, 4]  # non-ASCII separates


@check
def action_frames():
    cfg = wm_ref.Config(wm_ref.CONFIG_DEFAULTS)
    cfg.update(action_buttons=["a", "b"], action_axes=["x"], action_mouse=True,
               decoder={"channels": [8, 8, 8, 8], "time_upscale": [True, True]})
    acts = [[1, [0.5], 1.0, 2.0], [2, [-1.0], 0.0, 0.0], [3, [0.25], 4.0, -4.0]]
    a = wm_ref.latent_frame_actions(cfg, acts, 0, 3).numpy()
    np.testing.assert_array_equal(a[0], [1, 0, 0.5, 1, 2])                      # frame 0 alone
    # frames 1..4: frame 1, frame 2, then frame 2's action repeats for 3 and 4
    np.testing.assert_allclose(a[1], (np.array([0, 1, -1, 0, 0]) + 3 * np.array([1, 1, 0.25, 4, -4])) / 4)
    np.testing.assert_allclose(a[2], [1, 1, 0.25, 4, -4])
    np.testing.assert_array_equal(wm_ref.latent_frame_actions(cfg, [], 0, 2).numpy(), 0)


# ----------------------------------------------------------------------------------------------
# Goldens
# ----------------------------------------------------------------------------------------------
@check
def goldens_reproduce():
    for name in make_goldens.CASES:
        d = os.path.join(GOLDEN, name)
        if not os.path.exists(d):
            return "skipped (no goldens)"
        got, _, _ = wm_ref.run_case(d)
        exp = load_file(os.path.join(d, "expected.safetensors"))
        for k, v in got.items():
            # bit-exact on the machine that wrote them; the tolerance covers other BLAS builds
            close(v, exp[k], 1e-5 * (1 + exp[k].abs().max().item()), f"{name}/{k}")


@check
def world_golden_depends_on_actions_and_prompt():
    d, case = load_case("world_window")
    exp = load_file(os.path.join(d, "expected.safetensors"))
    _, neutral = rollout_with(d, dict(case, actions=[]))
    assert (neutral["latents"][0] - exp["latents.0"]).abs().max() > 1e-2, "actions have no effect"
    late = [a for a in case["actions"]]
    late[3] = [0, [0.0], 0.0, 0.0]                      # video frame 3 belongs to latent frame 1
    cfg = wm_ref.Config.load(d)
    a0, a1 = (wm_ref.latent_frame_actions(cfg, acts, 0, 8) for acts in (case["actions"], late))
    changed = (a0 != a1).any(dim=1).nonzero().flatten().tolist()
    assert changed == [1], f"video frame 3 changes latent frames {changed}"
    _, one = rollout_with(d, dict(case, actions=late))
    assert (one["latents"][0] - exp["latents.0"]).abs().max() > 1e-3, "frame 3's action unused"
    _, other = rollout_with(d, dict(case, prompt_text="snow snow snow"))
    assert (other["latents"][0] - exp["latents.0"]).abs().max() > 1e-2, "prompt has no effect"


@check
def action_guidance_golden():
    """The action_guidance golden: its first velocity is (1 + w) v(actions) - w v(neutral), each taken
    from an unguided rollout; without guidance, or guiding all 4 steps instead of 3, the rollout
    differs."""
    d, case = load_case("action_guidance")
    exp = load_file(os.path.join(d, "expected.safetensors"))
    w = wm_ref.Config.load(d).action_guidance
    r_c, plain = rollout_with(d, case, action_guidance=0.0)
    r_u, _ = rollout_with(d, dict(case, actions=[]), action_guidance=0.0)
    close(exp["debug.c0.v0"], (1 + w) * r_c.debug["v0"] - w * r_u.debug["v0"], 1e-5, "guided v0")
    assert (plain["latents"][0] - exp["latents.0"]).abs().max() > 1e-2, "guidance has no effect"
    _, all4 = rollout_with(d, case, action_guidance_steps=4)
    assert (all4["latents"][0] - exp["latents.0"]).abs().max() > 1e-3, "the 4th step is guided too"


def main():
    import time
    torch.set_num_threads(1)  # the models are tiny: threads only add overhead
    for fn in CHECKS:
        try:
            t0 = time.time()
            note = fn()
            print(f"ok   {fn.__name__} [{time.time() - t0:.1f} s]" + (f" ({note})" if note else ""))
        except Exception as e:  # noqa: BLE001 - report every failing check, not just the first
            FAILURES.append(fn.__name__)
            print(f"FAIL {fn.__name__}: {e}")
            traceback.print_exc(limit=3)
    print(f"{len(CHECKS) - len(FAILURES)}/{len(CHECKS)} checks passed")
    return 1 if FAILURES else 0


if __name__ == "__main__":
    sys.exit(main())
