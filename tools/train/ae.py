"""ae.py - the TAEHV-architecture autoencoder of the game's frames.

Decoder: exactly the engine's (docs/MODEL.md 7), built by wm_ref.build_taehv_decoder, so its
state_dict is the `decoder.I.*` tensors the engine loads. Encoder: TAEHV's design (github
madebyollin/taehv, `TAEHV.encoder`): conv(3 -> c0), ReLU, then per stage TPool (time), a stride-2
conv and MemBlocks, a final conv to the latent channels - with smaller widths and two MemBlocks a stage,
plus an RMS normalisation over the latent channels so the latents the DiT models have unit scale by
construction. The engine's model holds only the decoder; export.py writes the encoder beside it as
encoder.safetensors (save_encoder / load_encoder below), for the Python tools.

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
def encode_video(encoder, frames, device, chunk_latents=64, dtype=torch.float32):
    """Latents [n_latents(T), C, h, w] (fp32, CPU) of video frames uint8 [T, H, W, 3] (numpy or torch)
    starting at an episode's frame 0, with the encoder alone (build_encoder / load_encoder). Frames
    past the last whole group (4f) are not used: latent f needs frames 4f-3..4f. The encoder is
    causal (TPool groups, MemBlock memory of the previous step), so the latents of a prefix of an
    episode are the first latents of the whole episode. Encodes in pieces of whole groups; the
    MemBlock memory crosses pieces by overlapping them by `warm` groups (its state is one step deep
    per block, but blocks stack), and the overlap is discarded."""
    frames = torch.as_tensor(frames).to(device)
    x = frames.permute(0, 3, 1, 2).to(dtype) / 255.0
    x = torch.cat([x[:1].expand(TIME_UPSCALE - 1, -1, -1, -1), x])           # [4L, 3, H, W]
    L = x.shape[0] // TIME_UPSCALE
    x = x[: L * TIME_UPSCALE]

    def enc(v):
        z = apply_parallel(encoder, v, 1)
        return z.reshape(v.shape[0] // TIME_UPSCALE, *z.shape[1:])
    if L <= chunk_latents:
        return enc(x).float().cpu()
    warm = 8  # receptive field in groups is small (one step per MemBlock, 6 blocks over 2 pooled rates)
    out = []
    for s in range(0, L, chunk_latents):
        a = max(0, s - warm)
        z = enc(x[a * TIME_UPSCALE:(s + chunk_latents) * TIME_UPSCALE])
        out.append(z[s - a:].float().cpu())
    return torch.cat(out)[:L]


@torch.no_grad()
def encode_episode(ae, ep, device, chunk_latents=64, dtype=torch.float32):
    """All latents of an Episode [n_latents, C, h, w] (fp32, CPU): encode_video of its frames."""
    return encode_video(ae.encoder, ep.frames(), device, chunk_latents, dtype)


# ------------------------------------------------------------------------------------------------
# The encoder beside the engine's model: MODEL_DIR/encoder.safetensors (the engine never reads it)
# ------------------------------------------------------------------------------------------------
ENCODER_FILE = "encoder.safetensors"
ENCODER_FORMAT = "wm-taehv-encoder/1"


def save_encoder(encoder, arch, path, dtype=torch.float16, extra=None):
    """Writes the encoder's parameters (names of build_encoder's nn.Sequential) to `path` with what
    load_encoder needs to rebuild it in the safetensors metadata (strings): format, arch (JSON:
    latent_channels, enc_channels, enc_blocks), time_upscale, space_down, and how frames group into
    latents. Returns the file's size in bytes."""
    import json
    import os
    from safetensors.torch import save_file
    a = {"latent_channels": int(arch["latent_channels"]), "enc_channels": [int(c) for c in arch["enc_channels"]],
         "enc_blocks": int(arch["enc_blocks"])}
    meta = {"format": ENCODER_FORMAT, "producer": "tools/train", "arch": json.dumps(a),
            "time_upscale": str(TIME_UPSCALE), "space_down": "8",
            "input": "RGB frames in [0, 1], [T, 3, H, W], T = 4L; MemBlock memory = the previous step",
            "grouping": "latent 0 = frame 0 (4 copies of it), latent f = frames 4f-3..4f (docs/MODEL.md 8)",
            "output": "RMS-normalised latents [L, C, H/8, W/8]: what the DiT and decoder of this folder take",
            "usage": "tools/train/ae.py load_encoder + encode_video (not read by the engine)"}
    meta.update({k: str(v) for k, v in (extra or {}).items()})
    sd = {k: v.detach().to("cpu", dtype).contiguous() for k, v in encoder.state_dict().items()}
    save_file(sd, path, metadata=meta)
    return os.path.getsize(path)


def load_encoder(path, device="cpu"):
    """encoder.safetensors (a model folder or the file) -> (encoder nn.Sequential in fp32, eval mode,
    metadata dict). Refuses a file of another format or with missing / extra tensors."""
    import json
    import os
    from safetensors import safe_open
    if os.path.isdir(path):
        path = os.path.join(path, ENCODER_FILE)
    with safe_open(path, "pt") as f:
        meta = f.metadata() or {}
        sd = {k: f.get_tensor(k).float() for k in f.keys()}
    if meta.get("format") != ENCODER_FORMAT:
        raise ValueError(f"{path}: format {meta.get('format')!r}, expected {ENCODER_FORMAT!r}")
    if int(meta.get("time_upscale", -1)) != TIME_UPSCALE:
        raise ValueError(f"{path}: time_upscale {meta.get('time_upscale')}, this code groups {TIME_UPSCALE} frames")
    a = json.loads(meta["arch"])
    enc = build_encoder(a["latent_channels"], tuple(a["enc_channels"]), a["enc_blocks"])
    enc.load_state_dict(sd, strict=True)
    return enc.to(device).eval(), meta
