"""manifest.py - the engine's model contract (docs/MODEL.md section 1) in Python.

The config keys with their defaults, a validation of config.json as the engine does it (names the
key), and the expected manifest: every tensor name with its PyTorch shape, in the order MODEL.md
lists them (DiT, action MLP, text encoder, TAEHV decoder). tools/convert writes exactly this set;
tools/convert/make_synthetic.py builds synthetic checkpoints from it.
"""
import math

# MODEL.md 1: Wan-compatible keys (defaults are Wan2.1-T2V-1.3B) ...
ARCH_DEFAULTS = {
    "dim": 1536, "ffn_dim": 8960, "num_heads": 12, "num_layers": 30, "patch_size": [1, 2, 2],
    "in_dim": 16, "out_dim": 16, "text_dim": 4096, "text_len": 512, "freq_dim": 256, "eps": 1e-6,
    "model_type": "t2v", "qk_norm": True, "cross_attn_norm": True, "window_size": [-1, -1],
}
# ... and the streaming / engine keys.
ENGINE_DEFAULTS = {
    "name": None, "latent_height": 60, "latent_width": 104, "num_frame_per_block": 3,
    "denoising_step_list": [1000, 750, 500, 250], "warp_denoising_step": True, "timestep_shift": 5.0,
    "context_noise": 0, "local_attn_size": -1, "sink_size": 0, "recache_on_prompt_switch": False,
    "sampler": "self_forcing", "max_cache_frames": 21, "fps": 16,
    "action_buttons": [], "action_axes": [], "action_mouse": False, "text_encoder": None, "decoder": None,
}
ALL_KEYS = dict(ARCH_DEFAULTS, **ENGINE_DEFAULTS)

# TAEHV's base decoder (taew2_1): MODEL.md 7
DECODER_DEFAULT = {"channels": [256, 128, 64, 64], "space_upscale": [True, True, True],
                   "time_upscale": [True, True], "image_channels": 3}
DEC_CONV = (1, 8, 14)     # conv entering stage i (bias only on the first)
DEC_MEM = (3, 9, 15)      # first of the stage's three MemBlocks
DEC_TGROW = (7, 13, 19)   # the stage's TGrow
DEC_HEAD, DEC_OUT = 20, 22

# Documented parameter count of Wan2.1-T2V-1.3B (../shared/docs/CAUSAL_WAN.md)
WAN_1_3B_PARAMS = 1_418_996_800


class ConfigError(ValueError):
    pass


def full_config(cfg):
    """cfg over the MODEL.md defaults (keys starting with '_' dropped)."""
    out = dict(ALL_KEYS)
    for k, v in cfg.items():
        if not k.startswith("_"):
            out[k] = v
    return out


def _int(c, k, lo, hi=1 << 30):
    v = c[k]
    if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
        raise ConfigError(f"config key '{k}' = {v!r} must be an integer in [{lo}, {hi}]")
    return v


def _num(c, k, lo, hi):
    v = c[k]
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not lo <= v <= hi:
        raise ConfigError(f"config key '{k}' = {v!r} must be a number in [{lo}, {hi}]")
    return v


def _bool(c, k):
    if not isinstance(c[k], bool):
        raise ConfigError(f"config key '{k}' = {c[k]!r} must be true or false")
    return c[k]


def validate_config(cfg):
    """The checks of plugin/src/config.c that a converter can get wrong. Raises ConfigError naming
    the key. Returns the full config (defaults filled in)."""
    for k in cfg:
        if not k.startswith("_") and k not in ALL_KEYS:
            raise ConfigError(f"config key '{k}' is not an engine key (docs/MODEL.md section 1)")
    c = full_config(cfg)
    for k in ("dim", "ffn_dim", "num_heads", "num_layers", "in_dim", "out_dim", "text_dim", "text_len",
              "latent_height", "latent_width", "num_frame_per_block", "max_cache_frames"):
        _int(c, k, 1)
    _int(c, "freq_dim", 2)
    if c["freq_dim"] % 2:
        raise ConfigError(f"config key 'freq_dim' = {c['freq_dim']} must be even")
    ps = c["patch_size"]
    if not (isinstance(ps, list) and len(ps) == 3 and all(isinstance(p, int) and p >= 1 for p in ps)) or ps[0] != 1:
        raise ConfigError(f"config key 'patch_size' = {ps!r} must be [1, ph, pw]")
    if c["model_type"] != "t2v":
        raise ConfigError(f"config key 'model_type' = {c['model_type']!r} is not supported (only \"t2v\")")
    for k in ("qk_norm", "cross_attn_norm"):
        if c[k] is not True:
            raise ConfigError(f"config key '{k}' must be true (the engine always normalises)")
    if list(c["window_size"]) != [-1, -1]:
        raise ConfigError(f"config key 'window_size' = {c['window_size']!r} is not supported (only [-1, -1])")
    _num(c, "eps", 0, 1)
    if c["dim"] % c["num_heads"]:
        raise ConfigError(f"config key 'dim' = {c['dim']} is not divisible by key 'num_heads' = {c['num_heads']}")
    hd = c["dim"] // c["num_heads"]
    if hd % 2 or hd < 6:
        raise ConfigError(f"head dim = dim / num_heads = {hd} must be even and at least 6 (RoPE)")
    if c["in_dim"] != c["out_dim"]:
        raise ConfigError(f"config key 'in_dim' = {c['in_dim']} differs from key 'out_dim' = {c['out_dim']}")
    if c["latent_height"] % ps[1] or c["latent_width"] % ps[2]:
        raise ConfigError(f"latent grid {c['latent_height']}x{c['latent_width']} is not divisible by the patch {ps[1]}x{ps[2]}")
    steps = c["denoising_step_list"]
    if not isinstance(steps, list) or not steps:
        raise ConfigError("config key 'denoising_step_list' must be a non-empty list")
    for i, t in enumerate(steps):
        if isinstance(t, bool) or not isinstance(t, (int, float)) or not 0 < t <= 1000:
            raise ConfigError(f"config key 'denoising_step_list'[{i}] = {t!r} must be in (0, 1000]")
        if i and not t < steps[i - 1]:
            raise ConfigError(f"config key 'denoising_step_list' must be strictly decreasing ({t} after {steps[i - 1]})")
    _bool(c, "warp_denoising_step")
    if c["warp_denoising_step"] and any(float(t) != int(t) for t in steps):
        raise ConfigError("config key 'denoising_step_list' must hold integers with warp_denoising_step")
    _num(c, "timestep_shift", 0, 1e6)
    _num(c, "context_noise", 0, 1000)
    _num(c, "fps", 0, 1000)
    _int(c, "local_attn_size", -1)
    _int(c, "sink_size", 0)
    if c["local_attn_size"] != -1 and c["local_attn_size"] < c["sink_size"] + c["num_frame_per_block"]:
        raise ConfigError(f"config key 'local_attn_size' = {c['local_attn_size']} must be -1 or at least "
                          f"sink_size + num_frame_per_block = {c['sink_size']} + {c['num_frame_per_block']}")
    if c["max_cache_frames"] < c["num_frame_per_block"]:
        raise ConfigError("config key 'max_cache_frames' is less than key 'num_frame_per_block'")
    if c["decoder"] is not None:
        d = c["decoder"]
        for k in d:
            if k not in DECODER_DEFAULT:
                raise ConfigError(f"config key 'decoder.{k}' is not a decoder key")
        d = dict(DECODER_DEFAULT, **d)
        if not (isinstance(d["channels"], list) and len(d["channels"]) == 4):
            raise ConfigError("config key 'decoder.channels' must be 4 integers")
        if len(d["space_upscale"]) != 3 or len(d["time_upscale"]) != 2:
            raise ConfigError("config keys 'decoder.space_upscale' / 'decoder.time_upscale' need 3 / 2 booleans")
        if d["image_channels"] != 3:
            raise ConfigError("config key 'decoder.image_channels' must be 3")
    return c


def action_dim(c):
    return len(c["action_buttons"]) + len(c["action_axes"]) + (2 if c["action_mouse"] else 0)


def dit_manifest(cfg):
    """[(name, shape)] of the DiT in the order of MODEL.md 1 (and plugin/src/dit.c)."""
    c = full_config(cfg)
    D, F, C = c["dim"], c["ffn_dim"], c["in_dim"]
    pt, ph, pw = c["patch_size"]
    out = [("patch_embedding.weight", (D, C, pt, ph, pw)), ("patch_embedding.bias", (D,))]

    def linear(name, o, i):
        out.extend([(f"{name}.weight", (o, i)), (f"{name}.bias", (o,))])

    linear("text_embedding.0", D, c["text_dim"])
    linear("text_embedding.2", D, D)
    linear("time_embedding.0", D, c["freq_dim"])
    linear("time_embedding.2", D, D)
    linear("time_projection.1", 6 * D, D)
    for n in range(c["num_layers"]):
        b = f"blocks.{n}"
        out.append((f"{b}.modulation", (1, 6, D)))
        for attn in ("self_attn", "cross_attn"):
            for p in ("q", "k", "v", "o"):
                linear(f"{b}.{attn}.{p}", D, D)
            out.append((f"{b}.{attn}.norm_q.weight", (D,)))
            out.append((f"{b}.{attn}.norm_k.weight", (D,)))
        out.append((f"{b}.norm3.weight", (D,)))
        out.append((f"{b}.norm3.bias", (D,)))
        linear(f"{b}.ffn.0", F, D)
        linear(f"{b}.ffn.2", D, F)
    out.append(("head.modulation", (1, 2, D)))
    linear("head.head", c["out_dim"] * pt * ph * pw, D)
    A = action_dim(c)
    if A:
        linear("action_embedding.0", D, A)
        linear("action_embedding.2", D, D)
    return out


def text_encoder_manifest(cfg):
    c = full_config(cfg)
    te = c["text_encoder"]
    if not te:
        return []
    return [("text_encoder.token_embedding.weight", (len(te["vocab"]), c["text_dim"])),
            ("text_encoder.pos_embedding.weight", (te["max_tokens"], c["text_dim"]))]


def decoder_manifest(cfg):
    """[(name, shape)] of the TAEHV decoder (MODEL.md 7, plugin/src/decoder.c)."""
    c = full_config(cfg)
    if c["decoder"] is None:
        return []
    d = dict(DECODER_DEFAULT, **c["decoder"])
    ch, tu = d["channels"], d["time_upscale"]
    out = []

    def conv(prefix, o, i, k, bias):
        out.append((f"{prefix}.weight", (o, i, k, k)))
        if bias:
            out.append((f"{prefix}.bias", (o,)))

    for s in range(3):
        cin = c["out_dim"] if s == 0 else ch[s - 1]
        n = ch[s]
        t = 1 if s == 0 else (2 if tu[s - 1] else 1)   # TAEHV pads time_upscale with a leading False
        conv(f"decoder.{DEC_CONV[s]}", n, cin, 3, s == 0)
        for m in range(3):
            for j in range(3):
                conv(f"decoder.{DEC_MEM[s] + m}.conv.{2 * j}", n, 2 * n if j == 0 else n, 3, True)
        conv(f"decoder.{DEC_TGROW[s]}.conv", t * n, n, 1, False)
    conv(f"decoder.{DEC_HEAD}", ch[3], ch[2], 3, False)
    conv(f"decoder.{DEC_OUT}", d["image_channels"], ch[3], 3, True)
    return out


def manifest(cfg):
    """The complete expected manifest of a model directory: DiT, text encoder, decoder."""
    return dit_manifest(cfg) + text_encoder_manifest(cfg) + decoder_manifest(cfg)


def n_params(entries):
    return sum(math.prod(s) for _, s in entries)


def diff_manifest(expected, got):
    """expected: [(name, shape)], got: {name: shape}. Returns (missing, unexpected, misshaped) with
    misshaped = [(name, got_shape, expected_shape)], each sorted by manifest / name order."""
    exp = dict(expected)
    missing = [n for n, _ in expected if n not in got]
    unexpected = sorted(n for n in got if n not in exp)
    mis = [(n, tuple(got[n]), tuple(s)) for n, s in expected if n in got and tuple(got[n]) != tuple(s)]
    return missing, unexpected, mis


def format_diff(missing, unexpected, misshaped, what="checkpoint", limit=10):
    """A readable report: the first `limit` of each kind plus the counts."""
    lines = []

    def part(title, items, fmt):
        if not items:
            return
        lines.append(f"  {len(items)} {title}:")
        for it in items[:limit]:
            lines.append("    " + fmt(it))
        if len(items) > limit:
            lines.append(f"    ... and {len(items) - limit} more")

    part("missing tensor(s)", missing, str)
    part("unexpected tensor(s)", unexpected, str)
    part("tensor(s) of the wrong shape", misshaped,
         lambda m: f"{m[0]}: shape {list(m[1])}, expected {list(m[2])}")
    return f"{what} does not match the engine's manifest:\n" + "\n".join(lines)
