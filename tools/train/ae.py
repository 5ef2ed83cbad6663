"""ae.py - the TAEHV-architecture autoencoder of the game's frames.

Decoder: exactly the engine's (docs/MODEL.md 7), built by wm_ref.build_taehv_decoder, so its
state_dict is the `decoder.I.*` tensors the engine loads. Encoder: TAEHV's design (github
madebyollin/taehv, `TAEHV.encoder`): conv(3 -> c0), ReLU, then per stage TPool (time), a stride-2
conv and MemBlocks, a final conv to the latent channels - with smaller widths and two MemBlocks a stage
(it never ships: only the decoder is in the engine's model), plus an RMS normalisation over the latent
channels so the latents the DiT models have unit scale by construction.

Time: 4x (TPool strides 2, 2, 1; decoder time_upscale [true, true]). Frame grouping follows MODEL.md 8:
latent 0 is video frame 0 alone (encoded from four copies of it), latent f >= 1 is frames 4f-3..4f,
so an episode of 1 + 4K frames has K + 1 latents and the engine's trimmed decoder output lines up
with the video frames one to one.
"""
import torch
import torch.nn as nn
import torch.nn.functional as F

from common import wm_ref, TIME_UPSCALE

MemBlock, TGrow = wm_ref.MemBlock, wm_ref.TGrow


def conv(n_in, n_out, **kw):
    return nn.Conv2d(n_in, n_out, 3, padding=1, **kw)


class MemBlockIO(nn.Module):
    """TAEHV MemBlock with n_in != n_out (1x1 skip); the engine's decoder only uses n_in == n_out."""

    def __init__(self, n_in, n_out):
        super().__init__()
        self.conv = nn.Sequential(conv(2 * n_in, n_out), nn.ReLU(), conv(n_out, n_out), nn.ReLU(), conv(n_out, n_out))
        self.skip = nn.Conv2d(n_in, n_out, 1, bias=False) if n_in != n_out else nn.Identity()
        self.act = nn.ReLU()

    def forward(self, x, past):
        return self.act(self.conv(torch.cat([x, past], 1)) + self.skip(x))


class TPool(nn.Module):
    """TAEHV TPool: `stride` consecutive time steps concatenated on channels, 1x1 conv back to n."""

    def __init__(self, n, stride):
        super().__init__()
        self.stride = stride
        self.conv = nn.Conv2d(n * stride, n, 1, bias=False)

    def forward(self, x):
        NT, C, H, W = x.shape
        return self.conv(x.reshape(-1, self.stride * C, H, W))


class RMSLatent(nn.Module):
    """Latent vectors (over channels) scaled to unit RMS: the DiT sees unit-scale data."""

    def forward(self, x):
        return x * torch.rsqrt(x.float().pow(2).mean(1, keepdim=True) + 1e-6).to(x.dtype)


def build_encoder(latent_channels, channels=(32, 32, 64, 64), blocks=2, time_down=(True, True, False)):
    c0, c1, c2, c3 = channels
    layers = [conv(3, c0), nn.ReLU()]
    ins = [c0, c1, c2]
    outs = [c1, c2, c3]
    for s in range(3):
        layers += [TPool(ins[s], 2 if time_down[s] else 1), conv(ins[s], outs[s], stride=2, bias=False)]
        layers += [MemBlockIO(outs[s], outs[s]) for _ in range(blocks)]
    layers += [conv(c3, latent_channels), RMSLatent()]
    return nn.Sequential(*layers)


def apply_parallel(model, x, n):
    """TAEHV's apply_model_with_memblocks_parallel over n clips: x [n*T, C, H, W] (clip-major),
    MemBlock memory = the block's input one time step earlier in the same clip (zeros at the start)."""
    for b in model:
        if isinstance(b, (MemBlock, MemBlockIO)):
            NT, C, H, W = x.shape
            T = NT // n
            xs = x.reshape(n, T, C, H, W)
            past = F.pad(xs, (0, 0, 0, 0, 0, 0, 1, 0))[:, :T].reshape(NT, C, H, W)
            x = b(x, past)
        else:
            x = b(x)
    return x


class AutoEncoder(nn.Module):
    def __init__(self, latent_channels=16, enc_channels=(32, 32, 64, 64), enc_blocks=2,
                 dec_channels=(96, 64, 32, 32)):
        super().__init__()
        self.latent_channels = latent_channels
        self.dec_cfg = {"channels": list(dec_channels), "space_upscale": [True, True, True],
                        "time_upscale": [True, True], "image_channels": 3}
        self.encoder = build_encoder(latent_channels, enc_channels, enc_blocks)
        self.decoder = wm_ref.build_taehv_decoder(latent_channels, self.dec_cfg)

    @staticmethod
    def pad_clip(frames):
        """[n, T, 3, H, W] clips starting at an episode's frame 0 -> 3 copies of frame 0 prepended
        (T = 1 + 4K -> 4(K+1) frames: latent 0 = frame 0 alone)."""
        return torch.cat([frames[:, :1].expand(-1, TIME_UPSCALE - 1, -1, -1, -1), frames], 1)

    def encode(self, frames):
        """frames [n, T, 3, H, W] in [0, 1] with T a multiple of 4 (already grouped) -> [n, T/4, C, h, w]."""
        n, T = frames.shape[:2]
        z = apply_parallel(self.encoder, frames.flatten(0, 1), n)
        return z.reshape(n, T // TIME_UPSCALE, *z.shape[1:])

    def decode(self, z):
        """z [n, L, C, h, w] -> [n, 4L, 3, H, W] (before the engine's trim of the first 3 frames; not clamped)."""
        n, L = z.shape[:2]
        y = apply_parallel(self.decoder, z.flatten(0, 1), n)
        return y.reshape(n, L * TIME_UPSCALE, *y.shape[1:])


@torch.no_grad()
def encode_episode(ae, ep, device, chunk_latents=64, dtype=torch.float32):
    """All latents of an Episode [n_latents, C, h, w] (fp32, CPU). Encodes in pieces of whole groups;
    the encoder's MemBlock memory crosses pieces by overlapping one group (its state is one step deep
    per block, but blocks stack, so pieces overlap by `warm` groups and the overlap is discarded)."""
    frames = torch.from_numpy(ep.frames()).to(device)
    x = frames.permute(0, 3, 1, 2).to(dtype) / 255.0
    x = torch.cat([x[:1].expand(TIME_UPSCALE - 1, -1, -1, -1), x])           # [4L, 3, H, W]
    L = x.shape[0] // TIME_UPSCALE
    x = x[: L * TIME_UPSCALE]
    if L <= chunk_latents:
        return ae.encode(x[None])[0].float().cpu()
    warm = 8  # receptive field in groups is small (one step per MemBlock, 6 blocks over 2 pooled rates)
    out = []
    for s in range(0, L, chunk_latents):
        a = max(0, s - warm)
        z = ae.encode(x[a * TIME_UPSCALE:(s + chunk_latents) * TIME_UPSCALE][None])[0]
        out.append(z[s - a:].float().cpu())
    return torch.cat(out)[:L]
