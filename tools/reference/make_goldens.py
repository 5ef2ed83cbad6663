"""make_goldens.py - writes the golden fixtures of tests/golden/ with the reference (wm_ref.py).

    .venv/bin/python tools/reference/make_goldens.py [--out tests/golden]

Each case folder holds config.json + model.safetensors (a model directory the engine loads),
case.json (the run: seed, chunks, cache policy, prompt, actions) and expected.safetensors (fp32).
Weights are drawn by torch from a fixed seed, scaled so activations stay O(1), attention is not
uniform and the decoder's RGB is mostly inside (0, 1); F16/BF16 cases are rounded to their dtype
before the reference runs (it loads the written file). Deterministic: rerunning rewrites the same
bytes (CPU torch, fixed seeds).
"""
import argparse
import json
import os
import sys

import numpy as np
import torch
from safetensors.torch import save_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import wm_ref  # noqa: E402

# Random123 known-answer vectors (philox4x32 10: counter[4], key[2] -> out[4]), from the kat_vectors
# file of the Random123 distribution as cut into DEShawResearch/Random123-Boost
# libs/random/test/test_philox.cpp (test_kat_philox4x32).
PHILOX_KAT = [
    ([0x00000000, 0x00000000, 0x00000000, 0x00000000], [0x00000000, 0x00000000],
     [0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8]),
    ([0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff], [0xffffffff, 0xffffffff],
     [0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd]),
    ([0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344], [0xa4093822, 0x299f31d0],
     [0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1]),
]
NOISE_SEED = 0x0123456789ABCDEF
NOISE_STREAMS = [0, 1, 0x100000001]


# ----------------------------------------------------------------------------------------------
# Weights
# ----------------------------------------------------------------------------------------------
def init_weights(model, seed):
    """Draws every tensor of the state dict in name order from one generator.
    Linear/conv weights normal/sqrt(fan_in); biases 0.02*normal; norm weights 1 + 0.1*normal
    (q/k RMS norms x1.5 so the softmax is clearly non-uniform); modulation 0.1*normal; text
    encoder tables normal (token) and 0.5*normal (position)."""
    g = torch.Generator().manual_seed(seed)
    sd = model.state_dict()
    for name in sorted(sd):
        t = sd[name]
        r = torch.randn(t.shape, generator=g, dtype=torch.float32)
        if name.endswith("modulation"):
            val = 0.1 * r
        elif name.endswith(("norm_q.weight", "norm_k.weight")):
            val = 1.5 * (1 + 0.1 * r)
        elif name.endswith("norm3.weight"):
            val = 1 + 0.1 * r
        elif name.endswith("bias"):
            val = 0.02 * r
        elif name == "text_encoder.token_embedding.weight":
            val = r
        elif name == "text_encoder.pos_embedding.weight":
            val = 0.5 * r
        else:
            fan_in = int(np.prod(t.shape[1:]))
            val = r / np.sqrt(fan_in)
        t.copy_(val)
    if hasattr(model, "decoder"):
        calibrate_decoder(model, g)


def calibrate_decoder(model, g):
    """Scales the last conv so the pre-clamp RGB of random latents has mean 0.5 and std 0.2:
    outputs then sit mostly inside (0, 1), where they carry information (clamped ones do not)."""
    dec, cfg = model.decoder, model.cfg
    last = dec[len(dec) - 1]
    lat = torch.randn(6, cfg.in_dim, cfg.latent_height, cfg.latent_width, generator=g)
    x = lat
    for b in list(dec)[:-1]:
        if isinstance(b, wm_ref.MemBlock):
            x = b(x, torch.nn.functional.pad(x, (0, 0, 0, 0, 0, 0, 1, 0))[: x.shape[0]])
        else:
            x = b(x)
    y = torch.nn.functional.conv2d(x, last.weight, None, padding=1)
    scale = 0.2 / y.std().item()
    last.weight.mul_(scale)
    last.bias.copy_(0.5 - y.mean(dim=(0, 2, 3)) * scale)


def save_model(model, path, dtype):
    sd = {k: v.detach().to(dtype).contiguous() for k, v in model.state_dict().items()}
    save_file(sd, path)


# ----------------------------------------------------------------------------------------------
# Cases
# ----------------------------------------------------------------------------------------------
def base_config(**kw):
    cfg = dict(
        dim=32, ffn_dim=64, num_heads=2, num_layers=2, patch_size=[1, 2, 2], in_dim=4, out_dim=4,
        text_dim=16, text_len=8, freq_dim=32, eps=1e-6, model_type="t2v", qk_norm=True,
        cross_attn_norm=True, window_size=[-1, -1],
        latent_height=4, latent_width=6, num_frame_per_block=3,
        denoising_step_list=[1000, 750, 500, 250], warp_denoising_step=True, timestep_shift=5.0,
        context_noise=0, local_attn_size=-1, sink_size=0, max_cache_frames=21, fps=16,
        action_buttons=[], action_axes=[], action_mouse=False,
    )
    cfg.update(kw)
    return cfg


def q8(x):
    """Rounds to a multiple of 1/8: exact in JSON, float32 and any parser."""
    return float(np.round(np.float64(x) * 8) / 8)


def world_actions(n, rng):
    """One action per video frame: a random button mask over 4 buttons, one axis in [-1, 1], a mouse
    delta; all values multiples of 1/8."""
    acts = []
    for _ in range(n):
        acts.append([int(rng.integers(0, 16)), [q8(rng.uniform(-1, 1))],
                     q8(rng.uniform(-4, 4)), q8(rng.uniform(-4, 4))])
    return acts


TEXT_ENCODER = {"vocab": ["<pad>", "<unk>", "a", "the", "red", "car", "drives", "on", "road", "forest", "snow"],
                "max_tokens": 6}
# Rolling Forcing's cases: 2-frame blocks, 3 levels, spans of (3 + 2) * 2 = 10 frames, a 2-frame sink
ROLLING = dict(dim=32, num_heads=2, ffn_dim=48, latent_height=4, latent_width=4, num_frame_per_block=2,
               denoising_step_list=[1000, 750, 500], timestep_shift=5.0, local_attn_size=10, sink_size=2,
               sampler="rolling_forcing", action_buttons=["up", "down", "left", "right"],
               action_axes=["throttle"], action_mouse=True, text_encoder=TEXT_ENCODER)

CASES = {
    # Embedding prompt, unbounded cache exactly full after 3 chunks, 16 latent channels, 4 warped steps.
    "t2v_unbounded": dict(
        config=base_config(name="t2v_unbounded", in_dim=16, out_dim=16, latent_height=6, latent_width=8,
                           num_frame_per_block=3, max_cache_frames=9),
        dtype=torch.float32, weight_seed=1001, seed=0x0000123456789ABC, n_chunks=3,
        prompt_text=None, prompt_len=5, actions=[],
    ),
    # Text prompt, 4 buttons + 1 axis + mouse, window 6 with 2 sinks and 2-frame chunks (eviction at
    # chunk 3), head dim 32 (rope split 6:5:5 pairs), TAEHV decoder with 4x time.
    "world_window": dict(
        config=base_config(
            name="world_window", dim=32, num_heads=1, ffn_dim=48, latent_height=4, latent_width=6,
            num_frame_per_block=2, denoising_step_list=[1000, 666, 333], timestep_shift=3.0,
            local_attn_size=6, sink_size=2, max_cache_frames=21,
            action_buttons=["up", "down", "left", "right"], action_axes=["throttle"], action_mouse=True,
            text_encoder=TEXT_ENCODER,
            decoder={"channels": [12, 8, 8, 8], "space_upscale": [True, False, False],
                     "time_upscale": [True, True], "image_channels": 3}),
        dtype=torch.float16, weight_seed=2002, seed=0x00000000DEADBEEF, n_chunks=4,
        # lower-casing, an unknown word ("in"), separators and truncation to max_tokens = 6
        prompt_text="The RED car, drives in a forest-road!", prompt_len=None, actions="world",
    ),
    # LongLive's re-cache on prompt switches: window 6 with 2 sinks, 2-frame chunks, text prompts
    # switched before chunk 2 (the window after the sinks is partly filled), chunk 4 and chunk 6.
    "longlive_switch": dict(
        config=base_config(
            name="longlive_switch", dim=32, num_heads=2, ffn_dim=48, latent_height=4, latent_width=4,
            num_frame_per_block=2, denoising_step_list=[1000, 500], timestep_shift=3.0,
            local_attn_size=6, sink_size=2, recache_on_prompt_switch=True,
            text_encoder=TEXT_ENCODER),
        dtype=torch.float32, weight_seed=4004, seed=0x0000000000C0FFEE, n_chunks=8,
        prompt_text="a red car on the road", prompt_len=None, actions=[],
        switches=[{"chunk": 2, "prompt_text": "snow forest"}, {"chunk": 4, "prompt_text": "the car drives"},
                  {"chunk": 6, "prompt_text": "red snow road"}],
        bad_session_error="recache_on_prompt_switch",
    ),
    # Rolling Forcing's sampler (docs/CONVERT.md; rolling_ref.py): 2-frame blocks, 3 levels, so a
    # window of 3 blocks and spans of (3 + 2) * 2 = 10 frames with a 2-frame sink; 8 blocks take the
    # clean pass's history past the sink (frame 10) and re-rotate the sink in every window pass after
    # the first; actions (the window's later blocks take queued future actions), a decoder, and a
    # prompt switch before block 4 with a snapshot there (2 blocks in flight at their levels).
    "rolling_window": dict(
        config=base_config(
            name="rolling_window", **ROLLING,
            decoder={"channels": [8, 8, 8, 4], "space_upscale": [True, False, False],
                     "time_upscale": [True, True], "image_channels": 3}),
        dtype=torch.float32, weight_seed=5005, seed=0x00000000B10C5EED, n_chunks=8,
        prompt_text="a red car on the road", prompt_len=None, actions="world",
        switches=[{"chunk": 4, "prompt_text": "snow forest"}],
        bad_session_error="rolling_forcing",
    ),
    # Rolling Forcing after a context prefill of 5 blocks (frames 0..9, block 0 the sink, the history
    # past it): the window then starts at frame 10 and fills with 1, 2, 3 blocks, whose passes attend
    # span - Q - F = 6, 4, 2 working frames with the sink at 2, 4, 6 (rolling_ref.py, the flush windows
    # of the public code); a prompt switch with a snapshot at block 2 of the window (2 in flight).
    "rolling_prefill": dict(
        config=base_config(
            name="rolling_prefill", **ROLLING),
        dtype=torch.float32, weight_seed=6006, seed=0x00000000B10C5EED, n_chunks=6, prefill_chunks=5,
        prompt_text="a red car on the road", prompt_len=None, actions="world",
        switches=[{"chunk": 2, "prompt_text": "snow forest"}],
        bad_session_error="rolling_forcing",
    ),
    # The flow-matching Euler sampler (the shipped game's): 1-frame chunks, shift 1, 4 unwarped steps,
    # window 4 (eviction from chunk 4), text prompt with a switch, actions, a decoder with 4x time.
    "flow_euler": dict(
        config=base_config(
            name="flow_euler", dim=32, num_heads=2, ffn_dim=48, latent_height=4, latent_width=4,
            num_frame_per_block=1, denoising_step_list=[1000, 750, 500, 250], warp_denoising_step=False,
            timestep_shift=1.0, local_attn_size=4, sampler="flow_euler",
            action_buttons=["up", "down", "left", "right"], action_axes=["throttle"], action_mouse=True,
            text_encoder=TEXT_ENCODER,
            decoder={"channels": [8, 8, 8, 4], "space_upscale": [True, False, False],
                     "time_upscale": [True, True], "image_channels": 3}),
        dtype=torch.float32, weight_seed=7007, seed=0x0000000000E01E12, n_chunks=6,
        prompt_text="a red car on the road", prompt_len=None, actions="world",
        switches=[{"chunk": 3, "prompt_text": "snow forest"}],
    ),
    # Action guidance (MODEL.md 2) on the Euler sampler: w 1.5 on the first 3 of 4 steps; latent frame 2's
    # video frames (5-8) hold the neutral action, so that chunk runs unguided (v_idle = v).
    "action_guidance": dict(
        config=base_config(
            name="action_guidance", dim=32, num_heads=2, ffn_dim=48, latent_height=4, latent_width=4,
            num_frame_per_block=1, denoising_step_list=[1000, 750, 500, 250], warp_denoising_step=False,
            timestep_shift=1.0, local_attn_size=4, sampler="flow_euler", action_guidance=1.5,
            action_guidance_steps=3, action_buttons=["up", "down", "left", "right"], action_axes=["throttle"],
            action_mouse=True, text_encoder=TEXT_ENCODER,
            decoder={"channels": [8, 8, 8, 4], "space_upscale": [True, False, False],
                     "time_upscale": [True, True], "image_channels": 3}),
        dtype=torch.float32, weight_seed=8008, seed=0x0000000000A11D0E, n_chunks=5,
        prompt_text="a red car on the road", prompt_len=None, actions="world", neutral_video_frames=(5, 9),
    ),
    # BF16 weights, cache pass at timestep context_noise 10, unwarped custom steps, unbounded,
    # full-length embedding prompt, decoder with time_upscale [false, true] (2x) and 8x space.
    "bf16_ctxnoise": dict(
        config=base_config(
            name="bf16_ctxnoise", dim=32, num_heads=2, ffn_dim=48, latent_height=4, latent_width=4,
            num_frame_per_block=2, denoising_step_list=[1000, 800, 450], warp_denoising_step=False,
            context_noise=10, max_cache_frames=8,
            decoder={"channels": [8, 8, 8, 4], "space_upscale": [True, True, True],
                     "time_upscale": [False, True], "image_channels": 3}),
        dtype=torch.bfloat16, weight_seed=3003, seed=0x000ABCDE00000001, n_chunks=2,
        prompt_text=None, prompt_len=8, actions=[],
    ),
}


def make_case(out_dir, name, spec):
    d = os.path.join(out_dir, name)
    os.makedirs(d, exist_ok=True)
    cfg_json = spec["config"]
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump(cfg_json, f, indent=1)
    cfg = wm_ref.Config.load(d)
    model = wm_ref.CausalWanModel(cfg)
    init_weights(model, spec["weight_seed"])
    save_model(model, os.path.join(d, "model.safetensors"), spec["dtype"])

    expected = {}
    prompt = spec["prompt_text"]
    if spec["prompt_len"] is not None:
        g = torch.Generator().manual_seed(spec["weight_seed"] + 7)
        prompt = torch.randn(spec["prompt_len"], cfg.text_dim, generator=g)
        expected["prompt"] = prompt
    prefill = spec.get("prefill_chunks", 0)  # context chunks before the generated ones (no decoder)
    assert not (prefill and cfg.decoder), "a prefill case's frames are not checked: no decoder"
    if prefill:
        g = torch.Generator().manual_seed(spec["weight_seed"] + 11)
        expected["prefill"] = torch.randn(prefill * cfg.num_frame_per_block, cfg.in_dim, cfg.latent_height,
                                          cfg.latent_width, generator=g)
    n_lat = (prefill + spec["n_chunks"]) * cfg.num_frame_per_block
    actions = spec["actions"]
    if actions == "world":
        n_video = cfg.time_upscale * (n_lat - 1) + 1
        # a few frames short of the video: the last action repeats (MODEL.md 8)
        actions = world_actions(n_video - 4, np.random.default_rng(spec["weight_seed"]))
        lo, hi = spec.get("neutral_video_frames", (0, 0))
        for i in range(lo, hi):
            actions[i] = [0, [0.0] * len(cfg.action_axes), 0.0, 0.0]
    window = cfg.local_attn_size
    case = {"seed": spec["seed"], "n_chunks": spec["n_chunks"], "window_frames": window,
            "sink_frames": cfg.sink_size if window != -1 else 0, "max_cache_frames": cfg.max_cache_frames,
            "prompt_text": spec["prompt_text"], "prompt_embedding": spec["prompt_len"] is not None,
            "actions": actions}
    if spec.get("switches"):
        case["switches"] = spec["switches"]
    if spec.get("bad_session_error"):  # an unbounded session is refused with this in the message
        case["bad_session_error"] = spec["bad_session_error"]
    if prefill:
        case["prefill_chunks"] = prefill
    with open(os.path.join(d, "case.json"), "w") as f:
        json.dump(case, f, indent=None)

    inputs = {k: expected[k].contiguous() for k in ("prompt", "prefill") if k in expected}
    if inputs:  # the engine (and run_case) get the prompt and the prefill from expected.safetensors
        save_file(inputs, os.path.join(d, "expected.safetensors"))
    got, _, r = wm_ref.run_case(d)
    expected.update(got)
    expected["debug.timesteps"] = torch.tensor([float(t) for t in r.timesteps], dtype=torch.float32)
    if isinstance(spec["prompt_text"], str):  # the text encoder's output, to debug tokenization
        expected["debug.prompt_emb"] = r.prompt_emb
    if hasattr(r.model, "action_embedding"):
        expected["debug.actions"] = wm_ref.latent_frame_actions(cfg, actions, 0, n_lat)
    save_file({k: v.float().contiguous() for k, v in expected.items()}, os.path.join(d, "expected.safetensors"))
    return expected, r


def make_philox(out_dir):
    t = {f"noise.s{s}": wm_ref.noise(NOISE_SEED, s, (1000,)) for s in NOISE_STREAMS}
    save_file(t, os.path.join(out_dir, "philox.safetensors"),
              # one key only: safetensors writes a multi-key metadata map in no fixed order
              metadata={"seed": f"0x{NOISE_SEED:016x}"})
    kat = {
        "source": "Random123 kat_vectors, philox4x32 10 (as in DEShawResearch/Random123-Boost "
                  "libs/random/test/test_philox.cpp)",
        "philox4x32_10": [{"ctr": c, "key": k, "out": o} for c, k, o in PHILOX_KAT],
        # raw blocks of the noise counters (MODEL.md 5), 64-bit values as hex strings
        "noise_blocks": [],
    }
    for s in NOISE_STREAMS:
        for j in (0, 1, 249):
            ctr = [j & 0xFFFFFFFF, j >> 32, s & 0xFFFFFFFF, s >> 32]
            key = [NOISE_SEED & 0xFFFFFFFF, NOISE_SEED >> 32]
            out = [int(w) for w in wm_ref.philox4x32_10(ctr, key)]
            kat["noise_blocks"].append({"seed": f"0x{NOISE_SEED:016x}", "stream": f"0x{s:x}", "block": j,
                                        "ctr": ctr, "key": key, "out": out})
    with open(os.path.join(out_dir, "philox_kat.json"), "w") as f:
        # one entry per line: readable, and still plain JSON
        f.write("{\n")
        f.write(f' "source": {json.dumps(kat["source"])},\n')
        for key in ("philox4x32_10", "noise_blocks"):
            rows = ",\n".join("  " + json.dumps(e) for e in kat[key])
            f.write(f' "{key}": [\n{rows}\n ]' + (",\n" if key == "philox4x32_10" else "\n"))
        f.write("}\n")


def describe(name, expected, r):
    print(f"== {name}: timesteps {[float(t) for t in r.timesteps]}")
    for k, v in expected.items():
        print(f"   {k:18s} {str(tuple(v.shape)):20s} mean {v.float().mean():+.3f} std {v.float().std():.3f}"
              f" min {v.min():+.3f} max {v.max():+.3f}")
    if "rgb" in expected:
        rgb = expected["rgb"]
        sat = ((rgb <= 0) | (rgb >= 1)).float().mean().item()
        print(f"   rgb clamped fraction {sat:.3f}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "..", "..", "tests", "golden"))
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(1)  # one fixed reduction order: reruns rewrite the same bytes
    out = os.path.normpath(args.out)
    os.makedirs(out, exist_ok=True)
    make_philox(out)
    for name, spec in CASES.items():
        expected, r = make_case(out, name, spec)
        if not args.quiet:
            describe(name, expected, r)
    total = sum(os.path.getsize(os.path.join(dp, f)) for dp, _, fs in os.walk(out) for f in fs)
    print(f"tests/golden: {total / 1024:.1f} KiB")


if __name__ == "__main__":
    main()
