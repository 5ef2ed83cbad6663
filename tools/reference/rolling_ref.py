"""Rolling Forcing's streaming loop on the reference model (docs/CONVERT.md, "Rolling Forcing's
inference, as its public code runs it"): the spec in code for the engine's implementation (issue 7,
item 3). Written from TencentARC/RollingForcing's pipeline/rolling_forcing_inference.py and the
inference branch of CausalWanSelfAttention.forward (wan/modules/causal_model.py), in terms of latent
frames instead of their token slots:

- n = len(denoising_step_list) levels T0 (noisiest) .. T(n-1); a window of up to n blocks of F frames,
  block j of the window at level (blocks in window - 1 - j): every block's level goes up by one per
  iteration, a new block enters at T0 from fresh noise, the block at T(n-1) is final after the pass.
- span = (n + 2) * F frames (their hard-coded 21 for n = 5, F = 3): the denoise pass attends,
  bidirectionally and without a mask, to [the sink block's keys rotated to the positions just before
  the working frames ; the working frames: the newest clean history before the window, at most
  span - Q - F frames for a window of Q frames ; the window itself]; a window starting at frame 0
  attends to itself only.
- The clean pass re-encodes the final block from its x0 at context_noise and commits its K/V; its keys
  are the newest span - F frames of clean history before it (rotated at their own positions, the sink
  block among them while it is that recent) and itself. Their code re-encodes the window's first block
  after every iteration; before that block is final nothing reads those K/V, so only the final one is
  run here (the same results).
- The sink's keys are kept un-rotated (their cache stores the first block un-rotated) and rotated at
  use: the time axis at frames rope_start + f with rope_start = s - (working frames) - F, the height and
  width axes as everywhere.

Noise is the engine's Philox (wm_ref.noise), not torch.randn: block b's initial noise is stream 256*b,
its re-noise to level L stream 256*b + L. Latents stay fp32 (the public code keeps bf16).

RollingRollout(model, seed, prompt, actions).run_block() returns the next final block like
wm_ref.Rollout.run_chunk(); the first call runs the n iterations that fill the window."""
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import wm_ref  # noqa: E402


def rope_cos_sin_frames(head_dim, frames, h, w):
    """cos/sin like wm_ref.rope_cos_sin for tokens of the given (not necessarily consecutive)
    absolute frame indices."""
    cs = [wm_ref.rope_cos_sin(head_dim, int(f), 1, h, w) for f in frames]
    return torch.cat([c for c, _ in cs]), torch.cat([s for _, s in cs])


class RollingRollout:
    def __init__(self, model_dir_or_model, seed, prompt=None, actions=None):
        self.model = (model_dir_or_model if isinstance(model_dir_or_model, wm_ref.CausalWanModel)
                      else wm_ref.load_model(model_dir_or_model))
        cfg = self.cfg = self.model.cfg
        self.seed, self.actions = seed, actions
        self.prompt_emb = self.model.prompt_embedding(prompt if prompt is not None
                                                      else torch.zeros(0, cfg.text_dim))
        self.ctx_kv = self.model.context_kv(self.prompt_emb)
        self.T = self.timesteps = wm_ref.denoising_timesteps(cfg)  # T0 (noisiest) .. T(n-1)
        self.n = len(self.T)
        self.F = cfg.num_frame_per_block
        self.span = (self.n + 2) * self.F
        self.h, self.w = cfg.latent_height // cfg.patch_size[1], cfg.latent_width // cfg.patch_size[2]
        self.hd = cfg.dim // cfg.num_heads
        self.window = []     # [block index, level, x at that level [F, C, H, W]], oldest first
        self.next_block = 0  # index of the next block to enter the window
        self.history = []    # per committed clean frame: (frame index, [per layer (k [hw,n,d], v)])
        self.sink = None     # per layer (raw k [F*hw, n, d], v) of block 0
        self.decoder = wm_ref.StreamingDecoder(self.model.decoder) if cfg.decoder else None
        self.blocks_out = 0
        self.debug = {}  # noise0: block 0's initial noise; v0: the first pass's v (block 0 at T0)

    def set_prompt(self, prompt):
        """A prompt change: the next window pass and clean pass use it (the cache keeps what it has)."""
        self.prompt_emb = self.model.prompt_embedding(prompt)
        self.ctx_kv = self.model.context_kv(self.prompt_emb)

    def _sigma(self, level):
        return wm_ref.fp32(wm_ref.sigma_of(self.T[level], self.cfg.timestep_shift))

    def _shape(self):
        c = self.cfg
        return (self.F, c.in_dim, c.latent_height, c.latent_width)

    def _acts(self, start, count):
        return (wm_ref.latent_frame_actions(self.cfg, self.actions, start, count)
                if hasattr(self.model, "action_embedding") else None)

    def _hist_frames(self, lo, hi):
        """History frames with index in [lo, hi), oldest first."""
        return [e for e in self.history if lo <= e[0] < hi]

    def _denoise(self):
        F = self.F
        s = self.window[0][0] * F
        x = torch.cat([b[2] for b in self.window])
        Q = x.shape[0]
        t = torch.cat([torch.full((F,), float(self.T[b[1]]), dtype=torch.float32) for b in self.window])
        if s == 0:
            keys = None
        else:
            work_max = self.span - Q - F
            working = self._hist_frames(max(F, s - work_max), s)
            rope_start = s - len(working) - F
            cos, sin = rope_cos_sin_frames(self.hd, range(rope_start, rope_start + F), self.h, self.w)
            keys = (working, cos, sin)

        def attend_for(layer):
            def attend(q, k, v):
                if keys is None:
                    return wm_ref.attention(q, k, v)
                working, cos, sin = keys
                sk, sv = self.sink[layer]
                K = [wm_ref.rope_apply(sk, cos, sin)] + [e[1][layer][0] for e in working] + [k]
                V = [sv] + [e[1][layer][1] for e in working] + [v]
                return wm_ref.attention(q, torch.cat(K), torch.cat(V))
            return attend
        return self.model(x, t, s, self.ctx_kv, attend_for, self._acts(s, Q))

    def _clean_pass(self, b, x0):
        """Re-encodes final block b and commits its K/V (and block 0's raw keys as the sink)."""
        F, hw = self.F, self.h * self.w
        s = b * F
        before = self._hist_frames(s + F - self.span, s)
        pending = {}

        def attend_for(layer):
            def attend(q, k, v):
                pending[layer] = (k, v)
                K = torch.cat([e[1][layer][0] for e in before] + [k])
                V = torch.cat([e[1][layer][1] for e in before] + [v])
                return wm_ref.attention(q, K, V)
            return attend
        self.model(x0, torch.full((F,), float(self.cfg.context_noise), dtype=torch.float32), s, self.ctx_kv,
                   attend_for, self._acts(s, F))
        for f in range(F):
            self.history.append((s + f, [(pending[l][0][f * hw:(f + 1) * hw], pending[l][1][f * hw:(f + 1) * hw])
                                         for l in range(len(pending))]))
        self.history = self.history[-self.span:]  # more is never read
        if b == 0:  # the sink's raw keys: the inverse rotation of its keys at frames 0..F-1
            cos, sin = wm_ref.rope_cos_sin(self.hd, 0, F, self.h, self.w)
            self.sink = [(wm_ref.rope_apply(pending[l][0], cos, -sin), pending[l][1]) for l in range(len(pending))]

    def iterate(self):
        """One window iteration; returns the final block's x0 when one became final, else None."""
        shape, b = self._shape(), self.next_block
        self.window.append([b, 0, wm_ref.noise(self.seed, 256 * b, shape)])
        self.next_block += 1
        if b == 0:
            self.debug["noise0"] = self.window[0][2].clone()
        v = self._denoise()
        if b == 0:
            self.debug["v0"] = v.clone()
        final = None
        for j, blk in enumerate(self.window):
            sl = slice(j * self.F, (j + 1) * self.F)
            x0 = blk[2] - self._sigma(blk[1]) * v[sl]
            if blk[1] == self.n - 1:
                final = (blk[0], x0)
                continue
            lvl = blk[1] + 1
            s = self._sigma(lvl)
            blk[1], blk[2] = lvl, (1 - s) * x0 + s * wm_ref.noise(self.seed, 256 * blk[0] + lvl, shape)
        if final is None:
            return None
        self.window.pop(0)
        self._clean_pass(*final)
        return final[1]

    def prefill(self, latents):
        """A context prefill (the engine's session_prefill_latents): the clean pass of each block of
        latents [P*F, C, H, W], in order from the next block on, while the window is empty; block 0,
        when among them, becomes the sink. The window then starts at the first block after them, with
        fewer than n blocks while it fills: its passes attend span - Q - F working frames (_denoise).
        Returns the decoded frames, or None without a decoder."""
        assert not self.window, "a prefill needs an empty window (the engine refuses it with blocks in flight)"
        assert latents.shape[0] % self.F == 0
        rgb = []
        for i in range(latents.shape[0] // self.F):
            x0 = latents[i * self.F:(i + 1) * self.F].float()
            self._clean_pass(self.next_block, x0)
            self.next_block += 1
            if self.decoder is not None:
                rgb.append(self.decoder.push(x0))
        return torch.cat(rgb) if rgb else None

    def run_chunk(self):
        """wm_ref.Rollout's name for it: the engine emits one block per generate call."""
        return self.run_block()

    def run_block(self):
        x0 = None
        while x0 is None:
            x0 = self.iterate()
        self.blocks_out += 1
        out = {"latents": x0}
        if self.decoder is not None:
            rgb = self.decoder.push(x0)
            out["rgb"], out["rgb8"] = rgb, wm_ref.to_rgb8(rgb)
        return out
