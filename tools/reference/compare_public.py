"""compare_public.py - our reference's DiT forward (wm_ref.py) against the PUBLIC Self-Forcing code.

    .venv/bin/python tools/reference/compare_public.py --selfforcing DIR [--layers 2] [--latent 8 12]
        [--model-config assets/configs/wan2.1-t2v-1.3b.json] [--frames-per-chunk F]
        [--device cpu|cuda] [--dtype fp32|bf16|fp64] [--seed 0] [--window W --sinks S] [--json OUT]

DIR is the user's clone of github.com/guandeh17/Self-Forcing (nothing of it is copied into this
repository). Its `wan/modules/causal_model.py` (CausalWanModel, with `wan/modules/model.py` and
`wan/modules/attention.py`) is imported from DIR as is; this tool builds our reference model and
theirs with the dimensions of an engine config, fills ours with seeded random weights
(make_goldens.init_weights: activations O(1), non-uniform attention), loads the same tensors into
theirs by name (every name and shape must match), and drives both as Self-Forcing's inference
pipeline (pipeline/causal_inference.py) does: per-chunk denoising calls with the KV cache, then the
cache pass at timestep context_noise that writes it, `kv_cache` / `crossattn_cache` as the pipeline's
_initialize_kv_cache / _initialize_crossattn_cache create them, current_start in tokens. Our side is
wm_ref.CausalWanModel + wm_ref.KVCache, as wm_ref.Rollout drives them. Each call gets identical
inputs on both sides (random latents, a random prompt embedding, timesteps); the flow predictions
are compared (max |diff| relative to max |ours|).

Scenarios (every DiT call of the sequence is compared):
  policy of the config (default: unbounded, 21 frames)
    c0 t=1000            chunk 0, first denoising step, empty cache
    c0 t=per-frame       chunk 0, one distinct intermediate timestep per frame (the per-frame
                         time embedding; the pipeline itself uses one timestep per chunk)
    c0 cache t=ctx       chunk 0's cache pass (timestep context_noise), writes the cache
    c1 t=1000, c1 t=mid  chunk 1 attending to chunk 0's cached K/V (RoPE frame offset F)
  window W, sinks S (default S=1, W=S+F+1: both evictions drop part of a chunk)
    c0 cache, c1 t=1000, c1 cache, c2 t=1000: token-level rolling of the public cache against our
    whole-frame eviction (frames kept at c2: the sinks and the last W-F-S committed ones).
The `sens` column says how much our output would change if the cached frames were ignored (c1, c2)
or not evicted (window c2): a comparison that passes with `rel` far below `sens` sees the cache.

Thresholds (max |diff| / max |ours|, --tol overrides). fp32: 1e-4. Both sides compute the same
fp32 graph but sum in different orders (their attention is torch SDPA, ours an einsum softmax; their
RoPE rotates in float64 and rounds, ours rotates in fp32 with fp32 cos/sin; their RMSNorm rounds to
fp32 like ours): each dot product of length K carries ~sqrt(K) * 2^-24 relative rounding, amplified
by the sharp softmax logits: ~1e-6 after a few layers (measured). 1e-4 leaves room for 30 layers
while a semantic difference (a wrong frame offset, modulation index, eviction, a missing norm)
changes the output by O(1e-2 .. 1) (see `sens`). bf16: their model runs in bf16 as Self-Forcing's
inference does (weights, latents, prompt and caches bf16) against ours in fp32 on the same
bf16-rounded weights and inputs; bf16 keeps 8 mantissa bits (2^-9 = 2e-3 per rounding), accumulated
over the layers: 2e-2 below 16 layers, 5e-2 from 16 (a first guess for 30 layers, to calibrate on
the GPU run). fp64: both sides in float64, which leaves only summation order: 1e-9 (measured
~1e-14). This is the decisive run: a semantic difference small enough to hide in fp32 noise (an eps,
a table rounded differently) shows up orders above it. For it our reference keeps its sinusoid and
RoPE cos/sin in the model's dtype (wm_ref rounds them to fp32 only in an fp32 model), and their
WanRMSNorm, which computes in fp32 whatever the model's dtype (`x.float()`), has that cast lifted -
the only change to a public computation, made only with --dtype fp64.

What is shimmed (the environment around the public modules; their computation is untouched but
for the fp64 RMSNorm cast above):
  - `wan/__init__.py` and `wan/modules/__init__.py` are not executed (they import the T5, VAE,
    pipelines and their dependencies): empty package modules with the clone's paths stand in, so
    only causal_model.py, model.py and attention.py are loaded, unmodified.
  - attention: the public `flash_attention()` (used by the cross-attention) asserts CUDA and needs
    flash_attn, and its `attention()` fallback (used by the causal self-attention) casts q/k/v to
    bf16 whatever the model's dtype. Both names in the loaded modules are replaced by the same math,
    softmax(q k^T / sqrt(d)) v over all keys, via torch SDPA in the inputs' dtype (every call of the
    inference path passes no lengths, no mask, no causal flag; the shim asserts that).
    --flash keeps the public functions (needs CUDA, flash_attn and --dtype bf16).
  - diffusers (ModelMixin, ConfigMixin, register_to_config: config bookkeeping and save/load) and
    einops (`repeat`, used only by the GAN classifier branch) are used when installed; otherwise
    stand-ins are injected (ModelMixin = nn.Module, ConfigMixin = object, register_to_config = the
    identity), which the forward does not touch. The table's header says which were used.
  - the training path (flex_attention block masks) is never taken: every call passes kv_cache.
Exit status: 0 all scenarios within the threshold, 1 otherwise, 2 on a setup error (names/shapes).
"""
import argparse
import importlib
import json
import math
import os
import sys
import time
import types

import torch
import torch.nn as nn
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
import wm_ref  # noqa: E402
from make_goldens import init_weights  # noqa: E402

torch.set_grad_enabled(False)
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp64": torch.float64}


class SetupError(Exception):
    pass


# ----------------------------------------------------------------------------------------------
# Config
# ----------------------------------------------------------------------------------------------
def load_config(path, layers=None, frames_per_chunk=None, latent=None):
    """The engine config read as wm_ref.Config.load does (MODEL.md defaults, unknown keys are
    errors), reduced to the DiT: the decoder and text encoder are not part of the public model."""
    with open(path) as f:
        raw = json.load(f)
    cfg = wm_ref.Config(wm_ref.CONFIG_DEFAULTS)
    for k, v in raw.items():
        if k.startswith("_"):
            continue
        if k not in wm_ref.CONFIG_DEFAULTS:
            raise SetupError(f"{path}: unknown key {k!r}")
        cfg[k] = v
    if layers is not None:
        cfg["num_layers"] = layers
    if frames_per_chunk is not None:
        cfg["num_frame_per_block"] = frames_per_chunk
    if latent is not None:
        cfg["latent_height"], cfg["latent_width"] = latent
    cfg["decoder"], cfg["text_encoder"] = None, None
    if cfg.action_dim:
        raise SetupError("the config has actions; the public CausalWanModel takes none")
    if not (cfg.qk_norm and cfg.cross_attn_norm and list(cfg.window_size) == [-1, -1]
            and cfg.model_type == "t2v" and list(cfg.patch_size)[0] == 1):
        raise SetupError("only t2v, qk_norm, cross_attn_norm, window_size [-1,-1], patch t 1 are supported")
    if cfg.dim % cfg.num_heads or (cfg.dim // cfg.num_heads) % 2:
        raise SetupError("dim must split into heads of even size")
    if cfg.latent_height % cfg.patch_size[1] or cfg.latent_width % cfg.patch_size[2]:
        raise SetupError("latent size must be divisible by the patch size")
    return cfg


# ----------------------------------------------------------------------------------------------
# Importing the public code
# ----------------------------------------------------------------------------------------------
def _stub(name, **attrs):
    m = types.ModuleType(name)
    m.__dict__.update(attrs)
    sys.modules[name] = m
    return m


def _ensure_diffusers_einops(notes):
    try:
        importlib.import_module("diffusers.models.modeling_utils")
        importlib.import_module("diffusers.configuration_utils")
        notes.append("diffusers: installed")
    except Exception as e:  # not installed, or broken against this torch
        for k in [k for k in sys.modules if k == "diffusers" or k.startswith("diffusers.")]:
            del sys.modules[k]

        class ModelMixin(nn.Module):
            pass

        class ConfigMixin:
            pass

        _stub("diffusers")
        _stub("diffusers.models")
        _stub("diffusers.configuration_utils", ConfigMixin=ConfigMixin, register_to_config=lambda f: f)
        _stub("diffusers.models.modeling_utils", ModelMixin=ModelMixin)
        notes.append(f"diffusers: stand-in ({type(e).__name__})")
    try:
        importlib.import_module("einops")
        notes.append("einops: installed")
    except ImportError:
        def repeat(*a, **k):
            raise RuntimeError("einops stand-in: repeat() is not available")
        _stub("einops", repeat=repeat)
        notes.append("einops: stand-in")


def sdpa_attention(q, k, v, q_lens=None, k_lens=None, dropout_p=0.0, softmax_scale=None, q_scale=None,
                   causal=False, window_size=(-1, -1), deterministic=False, dtype=None, version=None,
                   fa_version=None):
    """flash_attention()/attention() of wan/modules/attention.py for the calls of the inference
    path: q [B, Lq, n, d], k/v [B, Lk, n, d] -> [B, Lq, n, d], full attention, scale 1/sqrt(d),
    computed in the inputs' dtype."""
    assert q_lens is None and k_lens is None and q_scale is None and not causal and dropout_p == 0.0
    assert tuple(window_size) == (-1, -1)
    out = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2),
                                         scale=softmax_scale)
    return out.transpose(1, 2).contiguous()


def import_public(src, flash):
    """wan.modules.causal_model from the clone at `src`, with the shims of the docstring."""
    src = os.path.abspath(src)
    wan_dir = os.path.join(src, "wan")
    for f in ("causal_model.py", "model.py", "attention.py"):
        if not os.path.isfile(os.path.join(wan_dir, "modules", f)):
            raise SetupError(f"{src}: no wan/modules/{f} (pass the root of a Self-Forcing clone)")
    for k in [k for k in sys.modules if k == "wan" or k.startswith("wan.")]:
        del sys.modules[k]
    _stub("wan", __path__=[wan_dir])
    _stub("wan.modules", __path__=[os.path.join(wan_dir, "modules")])
    notes = []
    _ensure_diffusers_einops(notes)
    cm = importlib.import_module("wan.modules.causal_model")
    if cm.__file__ is None or not os.path.abspath(cm.__file__).startswith(wan_dir):
        raise SetupError(f"wan.modules.causal_model came from {cm.__file__}, not {wan_dir}")
    if not flash:
        model_mod = sys.modules["wan.modules.model"]
        attn_mod = sys.modules["wan.modules.attention"]
        model_mod.flash_attention = sdpa_attention   # WanT2VCrossAttention
        cm.attention = sdpa_attention                # CausalWanSelfAttention (kv_cache path)
        attn_mod.flash_attention = attn_mod.attention = sdpa_attention
        notes.append("attention: SDPA shim")
    else:
        notes.append("attention: public flash_attention")
    return cm, notes


def public_model(cm, cfg, window, sinks):
    """Their CausalWanModel with our config's dimensions (WanDiffusionWrapper passes
    local_attn_size / sink_size; the rest is Wan2.1-T2V-1.3B's config.json)."""
    return cm.CausalWanModel(
        model_type="t2v", patch_size=tuple(cfg.patch_size), text_len=cfg.text_len, in_dim=cfg.in_dim,
        dim=cfg.dim, ffn_dim=cfg.ffn_dim, freq_dim=cfg.freq_dim, text_dim=cfg.text_dim, out_dim=cfg.out_dim,
        num_heads=cfg.num_heads, num_layers=cfg.num_layers, local_attn_size=window, sink_size=sinks,
        qk_norm=True, cross_attn_norm=True, eps=cfg.eps)


def load_by_name(model, sd):
    """Strict load: every name and shape of `model` must be in `sd` and nothing else."""
    theirs = model.state_dict()
    missing = sorted(set(theirs) - set(sd))
    unexpected = sorted(set(sd) - set(theirs))
    shapes = [f"{k}: ours {tuple(sd[k].shape)} theirs {tuple(theirs[k].shape)}"
              for k in sorted(set(sd) & set(theirs)) if tuple(sd[k].shape) != tuple(theirs[k].shape)]
    if missing or unexpected or shapes:
        lines = ["state dicts do not match by name and shape:"]
        lines += [f"  missing in ours (the public model has it): {k}" for k in missing]
        lines += [f"  only in ours (the public model lacks it):  {k}" for k in unexpected]
        lines += [f"  shape {s}" for s in shapes]
        raise SetupError("\n".join(lines))
    model.load_state_dict(sd, strict=True)


# ----------------------------------------------------------------------------------------------
# The two sides
# ----------------------------------------------------------------------------------------------
class Ours:
    """wm_ref's model and KVCache, driven as wm_ref.Rollout._dit does."""

    def __init__(self, model, cfg, ctx_kv, window, sinks, capacity):
        self.model, self.cfg, self.ctx_kv = model, cfg, ctx_kv
        self.cache = wm_ref.KVCache(cfg.num_layers, window, sinks, capacity)
        self.all = wm_ref.KVCache(cfg.num_layers, -1, 0, 1 << 30)  # every commit, never evicted

    def begin_chunk(self, start):
        self.cache.begin_chunk(start, self.cfg.num_frame_per_block)

    def call(self, x, t, start, commit, cache=None):
        cache = cache or self.cache
        frames = list(range(start, start + x.shape[0]))
        pending = {}
        v = self.model(x, t, start, self.ctx_kv, cache.attend_fn(frames, commit, pending))
        if commit:
            cache.end_commit(frames, pending)
            self.all.end_commit(frames, pending)
        return v

    def sens(self, x, t, start, what):
        """Our output with the cached frames ignored ('empty') or never evicted ('all')."""
        cache = wm_ref.KVCache(self.cfg.num_layers, -1, 0, 1 << 30) if what == "empty" else self.all
        return self.call(x, t, start, False, cache)


class Theirs:
    """The public model with the caches of CausalInferencePipeline (_initialize_kv_cache,
    _initialize_crossattn_cache), called as WanDiffusionWrapper.forward calls it."""

    def __init__(self, model, cfg, prompt, window, capacity, dtype, device):
        self.model, self.cfg, self.dtype = model, cfg, dtype
        n, d = cfg.num_heads, cfg.dim // cfg.num_heads
        self.hw = (cfg.latent_height // cfg.patch_size[1]) * (cfg.latent_width // cfg.patch_size[2])
        # the pipeline: local_attn_size * 1560 tokens with a window, else 32760 (= 21 * 1560);
        # here in this shape's tokens per frame
        size = (window if window != -1 else capacity) * self.hw
        self.kv = [{"k": torch.zeros([1, size, n, d], dtype=dtype, device=device),
                    "v": torch.zeros([1, size, n, d], dtype=dtype, device=device),
                    "global_end_index": torch.tensor([0], dtype=torch.long, device=device),
                    "local_end_index": torch.tensor([0], dtype=torch.long, device=device)}
                   for _ in range(cfg.num_layers)]
        self.xkv = [{"k": torch.zeros([1, cfg.text_len, n, d], dtype=dtype, device=device),
                     "v": torch.zeros([1, cfg.text_len, n, d], dtype=dtype, device=device),
                     "is_init": False} for _ in range(cfg.num_layers)]
        self.prompt = prompt.to(dtype).unsqueeze(0)           # [1, text_len, text_dim]
        self.seq_len = max(32760, cfg.num_frame_per_block * self.hw)

    def call(self, x, t, start):
        """x [F, C, H, W] -> flow prediction [F, C, H, W] (fp32). The wrapper feeds
        noisy_image_or_video [B, F, C, H, W] permuted to [B, C, F, H, W] and permutes back."""
        out = self.model(x.to(self.dtype).permute(1, 0, 2, 3).unsqueeze(0), t=t.view(1, -1),
                         context=self.prompt, seq_len=self.seq_len, kv_cache=self.kv,
                         crossattn_cache=self.xkv, current_start=start * self.hw, cache_start=None)
        assert out.shape[0] == 1 and out.shape[1] == self.cfg.out_dim
        return out[0].permute(1, 0, 2, 3)


# ----------------------------------------------------------------------------------------------
# Scenarios
# ----------------------------------------------------------------------------------------------
def compare(ref, got):
    ref, got = ref.double(), got.double()
    d = (got - ref).abs()
    scale = ref.abs().max().item()
    return {"max_abs": d.max().item(), "max_ref": scale, "rel": d.max().item() / max(scale, 1e-30),
            "rms_rel": (d.pow(2).mean().sqrt() / ref.pow(2).mean().sqrt().clamp_min(1e-30)).item(),
            "finite": bool(torch.isfinite(got).all().item())}


def run_policy(label, cfg, ours_model, theirs_model, ctx_kv, prompt, plan, window, sinks, capacity,
               dtype, device, gen, results, verbose):
    work = torch.float64 if dtype == torch.float64 else torch.float32   # our side's dtype
    """plan: list of (chunk, kind, timesteps or None, sens) with kind 'step' or 'cache'."""
    ours = Ours(ours_model, cfg, ctx_kv, window, sinks, capacity)
    theirs = Theirs(theirs_model, cfg, prompt, window, capacity, dtype, device)
    Fr = cfg.num_frame_per_block
    shape = (Fr, cfg.in_dim, cfg.latent_height, cfg.latent_width)
    begun = set()
    for chunk, kind, ts, sens in plan:
        start = chunk * Fr
        if chunk not in begun:
            ours.begin_chunk(start)
            begun.add(chunk)
        x = torch.randn(shape, generator=gen, device="cpu").to(device)
        x = x.to(dtype).to(work)             # both sides see the same (bf16: rounded) input
        t = torch.tensor(ts if ts is not None else [cfg.context_noise] * Fr, dtype=torch.float32,
                         device=device)
        commit = kind == "cache"
        t0 = time.time()
        v_ours = ours.call(x, t, start, commit)
        t1 = time.time()
        v_theirs = theirs.call(x, t, start)
        t2 = time.time()
        r = compare(v_ours, v_theirs)
        tdesc = ("t=" + ",".join(f"{float(v):g}" for v in sorted(set(t.tolist()), reverse=True)))
        r.update(policy=label, call=f"c{chunk} {'cache' if commit else 'step'} {tdesc}",
                 frames=[start, start + Fr], ours_s=round(t1 - t0, 3), theirs_s=round(t2 - t1, 3),
                 out_std=v_ours.std().item())
        if sens:
            r["sens"] = compare(v_ours, ours.sens(x, t, start, sens))["rel"]
            r["sens_what"] = "no cache" if sens == "empty" else "no eviction"
        if commit:
            kept = sorted(ours.cache.frames)
            r["cache_frames"] = kept
        results.append(r)
        if verbose:
            print(f"  {label:14s} {r['call']:34s} rel {r['rel']:.2e}  "
                  f"({r['ours_s']:.1f}s / {r['theirs_s']:.1f}s)", flush=True)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--selfforcing", required=True, help="root of a clone of guandeh17/Self-Forcing")
    p.add_argument("--model-config", default=os.path.join(ROOT, "assets/configs/wan2.1-t2v-1.3b.json"))
    p.add_argument("--layers", type=int, help="num_layers override (default: the config's)")
    p.add_argument("--frames-per-chunk", type=int, help="default: the config's num_frame_per_block")
    p.add_argument("--latent", type=int, nargs=2, metavar=("H", "W"), help="default: the config's")
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    p.add_argument("--dtype", choices=["fp32", "bf16", "fp64"], default="fp32",
                   help="fp64: both sides in float64 with their deliberate fp32 roundings lifted")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--prompt-tokens", type=int, default=100,
                   help="random prompt rows (the rest of text_len is zero, like a T5 output)")
    p.add_argument("--window", type=int, help="window scenario: local_attn_size in frames")
    p.add_argument("--sinks", type=int, help="window scenario: sink_size in frames (default 1)")
    p.add_argument("--no-window", action="store_true", help="skip the window scenario")
    p.add_argument("--tol", type=float,
                   help="max relative difference (default fp32 1e-4; bf16 2e-2, 5e-2 from 16 layers; fp64 1e-9)")
    p.add_argument("--flash", action="store_true", help="keep the public flash_attention (CUDA, bf16)")
    p.add_argument("--json", help="write the results here")
    p.add_argument("-q", "--quiet", action="store_true")
    args = p.parse_args(argv)

    try:
        cfg = load_config(args.model_config, args.layers, args.frames_per_chunk, args.latent)
        if args.flash and (args.device != "cuda" or args.dtype != "bf16"):
            raise SetupError("--flash needs --device cuda --dtype bf16")
        if args.device == "cuda":
            if not torch.cuda.is_available():
                raise SetupError("--device cuda: no CUDA device")
            # fp32 means fp32: no TF32 in matmuls or the patch-embedding convolution
            torch.backends.cuda.matmul.allow_tf32 = False
            torch.backends.cudnn.allow_tf32 = False
        cm, notes = import_public(args.selfforcing, args.flash)
        if args.dtype == "fp64":
            # WanRMSNorm.forward is `self._norm(x.float()).type_as(x) * self.weight`: in fp32 whatever
            # the model's dtype. Lifted for the fp64 run (the only change to a public computation).
            cm.WanRMSNorm.forward = lambda self, x: self._norm(x) * self.weight
            notes.append("fp64: WanRMSNorm without its x.float()")
    except SetupError as e:
        print(f"compare_public: {e}", file=sys.stderr)
        return 2

    dtype = DTYPES[args.dtype]
    device = torch.device(args.device)
    work = torch.float64 if args.dtype == "fp64" else torch.float32   # our side's dtype
    tol = args.tol if args.tol is not None else {
        "fp32": 1e-4, "fp64": 1e-9, "bf16": 2e-2 if cfg.num_layers < 16 else 5e-2}[args.dtype]
    Fr = cfg.num_frame_per_block
    steps = [float(t) for t in wm_ref.denoising_timesteps(cfg)]
    mids = steps[1:] or steps
    per_frame = [mids[i % len(mids)] for i in range(Fr)]

    # our model, seeded weights (bf16: rounded, and both sides load the rounded tensors)
    t0 = time.time()
    ours_model = wm_ref.CausalWanModel(cfg).float()
    init_weights(ours_model, args.seed)
    if dtype == torch.bfloat16:
        for v in ours_model.state_dict().values():
            v.copy_(v.to(dtype).float())
    ours_model = ours_model.to(device=device, dtype=work).eval()
    if args.device == "cuda":
        torch.set_default_device("cuda")   # wm_ref builds its RoPE/sinusoid tables on the default device
    sd = {k: v.to(dtype) for k, v in ours_model.state_dict().items()}

    gen = torch.Generator(device="cpu").manual_seed(args.seed + 1)
    L = min(args.prompt_tokens, cfg.text_len)
    prompt = torch.randn(L, cfg.text_dim, generator=gen, device="cpu").to(dtype).to(device=device, dtype=work)
    prompt_full = torch.cat([prompt, prompt.new_zeros(cfg.text_len - L, cfg.text_dim)])
    ctx_kv = ours_model.context_kv(prompt)      # ours pads to text_len (prompt_embedding() only checks)

    window0 = cfg.local_attn_size
    sinks0 = cfg.sink_size if window0 != -1 else 0
    capacity = cfg.max_cache_frames
    policies = [("config", window0, sinks0, [
        (0, "step", [steps[0]] * Fr, None),
        (0, "step", per_frame, None),
        (0, "cache", None, None),
        (1, "step", [steps[0]] * Fr, "empty"),
        (1, "step", [mids[-1]] * Fr, "empty"),
    ])]
    if not args.no_window:
        S = args.sinks if args.sinks is not None else 1
        W = args.window if args.window is not None else S + Fr + 1
        if W < S + Fr:
            print("compare_public: --window must be >= sinks + frames per chunk", file=sys.stderr)
            return 2
        policies.append((f"window{W}/sink{S}", W, S, [
            (0, "cache", None, None),
            (1, "step", [steps[0]] * Fr, "empty"),
            (1, "cache", None, None),
            (2, "step", [steps[0]] * Fr, "all"),
        ]))
    h, w = cfg.latent_height // cfg.patch_size[1], cfg.latent_width // cfg.patch_size[2]
    head = (f"public {os.path.abspath(args.selfforcing)} ({'; '.join(notes)})\n"
            f"dim {cfg.dim} heads {cfg.num_heads} ffn {cfg.ffn_dim} layers {cfg.num_layers}, latents "
            f"{cfg.latent_height}x{cfg.latent_width} ({h * w} tokens/frame), {Fr} frames/chunk, "
            f"{args.device} {args.dtype} (ours {'fp64' if work == torch.float64 else 'fp32'}), "
            f"seed {args.seed}, tol {tol:g}")
    print(head, flush=True)
    if not args.quiet:
        print(f"  ours built and initialised in {time.time() - t0:.1f}s", flush=True)

    results = []
    for label, window, sinks, plan in policies:
        try:
            theirs_model = public_model(cm, cfg, window, sinks)
            load_by_name(theirs_model, sd)
        except SetupError as e:
            print(f"compare_public: {e}", file=sys.stderr)
            return 2
        theirs_model = theirs_model.to(device=device, dtype=dtype).eval()
        run_policy(label, cfg, ours_model, theirs_model, ctx_kv, prompt_full, plan, window, sinks,
                   capacity, dtype, device, gen, results, not args.quiet)
        del theirs_model

    ok = True
    print(f"\n{'policy':14s} {'call':34s} {'max|diff|':>9s} {'max|ours|':>9s} {'rel':>8s} {'rms rel':>8s} "
          f"{'sens':>8s}  result")
    for r in results:
        good = r["finite"] and r["rel"] <= tol
        r["pass"] = good
        ok &= good
        sens = f"{r['sens']:8.2e}" if "sens" in r else f"{'':8s}"
        print(f"{r['policy']:14s} {r['call']:34s} {r['max_abs']:9.2e} {r['max_ref']:9.3f} {r['rel']:8.2e} "
              f"{r['rms_rel']:8.2e} {sens}  {'ok' if good else 'FAIL'}")
    n_ok = sum(r["pass"] for r in results)
    print(f"{n_ok} passed, {len(results) - n_ok} failed")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"header": head, "notes": notes, "tol": tol, "config": {
                k: cfg[k] for k in ("dim", "ffn_dim", "num_heads", "num_layers", "latent_height", "latent_width",
                                    "num_frame_per_block", "local_attn_size", "sink_size", "max_cache_frames",
                                    "context_noise")}, "device": args.device, "dtype": args.dtype,
                "seed": args.seed, "results": results, "pass": ok}, f, indent=1)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
