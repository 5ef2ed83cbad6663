#!/usr/bin/env python3
"""test_convert.py --wm-run WM_RUN [--plugin LIBWM] - tools/convert on synthetic checkpoints.

Builds synthetic checkpoints of every supported family (tools/convert/make_synthetic.py: the real key
names and nesting, small dims), converts each, and checks:
  - the Wan2.1-T2V-1.3B manifest has the documented 1,418,996,800 parameters;
  - every converted directory passes --verify and loads and runs one chunk in the engine (wm-run);
  - the right state dict was taken (generator_ema / generator, FSDP-wrapped EMA names);
  - the original Wan layout and the diffusers layout give byte-identical models;
  - LoRA merging changed exactly the targeted Linear weights, by (alpha/r) B @ A (and, when peft is
    installed, equals peft's merge_and_unload on the reference model);
  - corrupted checkpoints (missing / extra / mis-shaped tensor, a LoRA that does not fit) fail with a
    message naming the tensors, and write nothing;
  - the engine's latents for one chunk equal tools/reference/wm_ref.py's on the converted Self-Forcing
    and CausVid models; with the taew2_1 decoder merged in, its RGB frames too (within 1 level);
  - the taew2_1 decoder: encoder dropped, time upscale off slices TGrow like TAEHV, decoder-only dirs.
Exit 0 = all passed, 1 = a failure (each printed), 77 = skipped.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile

import numpy as np
import torch
from safetensors.torch import load_file

SRC = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, os.path.join(SRC, "tools", "convert"))
sys.path.insert(0, os.path.join(SRC, "tools", "reference"))
import convert as convert_tool  # noqa: E402
import manifest as M  # noqa: E402
import wm_ref  # noqa: E402

PY = sys.executable
CONVERT = os.path.join(SRC, "tools", "convert", "convert.py")
SYNTH = os.path.join(SRC, "tools", "convert", "make_synthetic.py")
failures = []


def check(cond, what):
    print(("ok    " if cond else "FAIL  ") + what, flush=True)
    if not cond:
        failures.append(what)
    return cond


def run(cmd, expect_rc=0, what=None):
    r = subprocess.run(cmd, capture_output=True, text=True)
    if expect_rc is not None and r.returncode != expect_rc:
        print(f"  command: {' '.join(cmd)}\n  rc {r.returncode}\n  stdout: {r.stdout[-2000:]}\n  stderr: {r.stderr[-3000:]}")
        check(False, what or f"{os.path.basename(cmd[1] if cmd[0] == PY else cmd[0])} exits {expect_rc}")
    return r


class Result:
    def __init__(self, rc, out, err):
        self.returncode, self.stdout, self.stderr = rc, out, err


def convert(*args, expect_rc=0, what=None, subprocess_=False):
    """convert.py with these arguments - in this process (a torch import per call would cost seconds),
    or as a command with subprocess_."""
    if subprocess_:
        return run([PY, CONVERT, "--quiet", *args], expect_rc, what)
    import contextlib
    import io
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            rc = convert_tool.main(["--quiet", *args])
        except SystemExit as e:
            rc = e.code if isinstance(e.code, int) else 2
    r = Result(rc, out.getvalue(), err.getvalue())
    if expect_rc is not None and rc != expect_rc:
        print(f"  convert.py {' '.join(args)}\n  rc {rc}\n  stderr: {r.stderr[-3000:]}")
        check(False, what or f"convert.py exits {expect_rc}")
    return r


def bf16(t):
    return t.to(torch.bfloat16).float()


def engine_chunk(wm_run, plugin, model, prompt, work, seed=0, frames=1, rgb=False):
    """Runs `frames` video frames; returns (latents of every chunk [n*F, C, H, W], rgb8 [N, 3, H, W] or None)."""
    lat = os.path.join(work, "lat.bin")
    cmd = [wm_run, "--model", model, "--frames", str(frames), "--prompt-embedding", prompt, "--latents", lat,
           "--backend", "cpu", "--seed", str(seed), "--quiet"]
    if plugin:
        cmd += ["--plugin", plugin]
    if rgb:
        cmd += ["--out", os.path.join(work, "out.rgb")]
    r = run(cmd, 0, f"wm-run loads and runs {os.path.basename(model)}")
    if r.returncode:
        return None, None
    with open(os.path.join(model, "config.json")) as f:
        c = M.full_config(json.load(f))
    x = torch.from_numpy(np.fromfile(lat, dtype=np.float32)).view(-1, c["in_dim"], c["latent_height"], c["latent_width"])
    img = None
    if rgb:
        H, W = 8 * c["latent_height"], 8 * c["latent_width"]
        img = torch.from_numpy(np.fromfile(os.path.join(work, "out.rgb"), dtype=np.uint8)).view(-1, H, W, 3)
        img = img.permute(0, 3, 1, 2)
    return x, img


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--wm-run", required=True)
    ap.add_argument("--plugin")
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    args = ap.parse_args()
    torch.set_num_threads(max(1, min(4, os.cpu_count() or 1)))
    work = tempfile.mkdtemp(prefix="wm_convert_")
    syn, out = os.path.join(work, "syn"), os.path.join(work, "out")
    try:
        body(args, work, syn, out)
    finally:
        if args.keep:
            print(f"work directory: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    print(f"{len(failures)} failure(s)" if failures else "all checks passed")
    return 1 if failures else 0


def body(args, work, syn, out):
    # -- the documented size -------------------------------------------------------------------
    r = run([PY, SYNTH, "--check-full-size"], 0, "make_synthetic --check-full-size")
    check(M.n_params(M.dit_manifest({})) == 1_418_996_800 and "1,418,996,800" in r.stdout,
          "Wan2.1-T2V-1.3B manifest (dim 1536, 30 layers) = 1,418,996,800 parameters")
    check(9_000_000 < M.n_params(M.decoder_manifest({"decoder": {}})) < 10_000_000, "taew2_1 decoder ~9.8M parameters")

    run([PY, SYNTH, syn], 0, "make_synthetic writes every family")
    made = json.load(open(os.path.join(syn, "made.json")))
    files, arch = made["files"], made["arch"]
    prompt = files["prompt"]
    heads = ["--num-heads", str(arch["num_heads"])]

    # -- every family converts, verifies and runs in the engine ------------------------------------
    jobs = {
        "sf": ["--from", "self-forcing", files["self-forcing"], *heads],
        "sf_raw": ["--from", "self-forcing", files["self-forcing"], "--no-ema", *heads, "--dtype", "f32"],
        "sf_f32": ["--from", "self-forcing", files["self-forcing"], *heads, "--dtype", "f32"],
        "cv": ["--from", "causvid", files["causvid"], *heads],
        "ll": ["--from", "longlive", files["longlive"], "--lora", files["longlive-lora"], "--lora-rank", "8",
               "--lora-alpha", "16", *heads, "--dtype", "f32"],
        "ll_base": ["--from", "longlive", files["longlive"], *heads, "--dtype", "f32"],
        "rf": ["--from", "rolling-forcing", files["rolling-forcing"], *heads, "--dtype", "f32"],
        "wan": ["--from", "wan", files["wan"], "--dtype", "f32"],
        "wan_diffusers": [files["wan-diffusers"], "--dtype", "f32"],            # --from auto
        "wan_f16": ["--from", "wan", os.path.join(files["wan"], "diffusion_pytorch_model.safetensors"),
                    "--dtype", "f16"],
    }
    for name, a in jobs.items():
        d = os.path.join(out, name)
        if convert(*a, "--out", d, what=f"convert {name}", subprocess_=name == "sf").returncode == 0:
            convert("--verify", d, what=f"--verify {name}")
    presets = {"sf": ("self-forcing", [1000, 750, 500, 250], True, 5.0, -1, 0),
               "cv": ("causvid", [1000, 757, 522], False, 8.0, -1, 0),
               "ll": ("longlive", [1000, 750, 500, 250], True, 5.0, 12, 3),
               "rf": ("rolling-forcing", [1000, 800, 600, 400, 200], True, 5.0, 21, 3)}
    for name, (preset, steps, warp, shift, win, sinks) in presets.items():
        c = json.load(open(os.path.join(out, name, "config.json")))
        check(c["denoising_step_list"] == steps and c["warp_denoising_step"] == warp and c["timestep_shift"] == shift
              and c["local_attn_size"] == win and c["sink_size"] == sinks and c["num_frame_per_block"] == 3
              and [c["latent_height"], c["latent_width"]] == [60, 104] and c["_converted_from"]["preset"] == preset
              and c.get("sampler", "self_forcing") == ("rolling_forcing" if name == "rf" else "self_forcing"),
              f"{name}: the {preset} preset in config.json")
    for name in ("sf", "cv", "ll", "rf", "wan_f16"):
        lat, _ = engine_chunk(args.wm_run, args.plugin, os.path.join(out, name), prompt, work)
        if lat is not None:
            check(lat.shape == (3, 16, 60, 104) and torch.isfinite(lat).all().item(),
                  f"{name}: one chunk of finite latents [3, 16, 60, 104] from the engine")

    # -- the right state dict ---------------------------------------------------------------------
    ck = torch.load(files["self-forcing"], map_location="cpu", weights_only=True)
    sf = load_file(os.path.join(out, "sf", "model.safetensors"))
    check(all(torch.equal(sf[k].float(), bf16(ck["generator_ema"]["model." + k])) for k in sf),
          "self-forcing: generator_ema by default, bf16 of its values")
    raw = load_file(os.path.join(out, "sf_raw", "model.safetensors"))
    check(all(torch.equal(raw[k], ck["generator"]["model." + k]) for k in raw), "self-forcing --no-ema: generator")
    check(all(v.dtype == torch.bfloat16 for v in sf.values()) and all(v.dtype == torch.float32 for v in raw.values()),
          "--dtype: bf16 by default, f32 on request")
    rk = torch.load(files["rolling-forcing"], map_location="cpu", weights_only=True)["generator_ema"]
    rf = load_file(os.path.join(out, "rf", "model.safetensors"))
    plain = {k.replace("_fsdp_wrapped_module.", ""): v for k, v in rk.items()}
    check(any("_fsdp_wrapped_module" in k for k in rk) and all(torch.equal(rf[k], plain["model." + k]) for k in rf),
          "rolling-forcing: FSDP-wrapped EMA names unwrapped, values kept")
    r = convert("--from", "causvid", files["causvid"], "--ema", *heads, "--out", os.path.join(out, "x"), expect_rc=1,
                what="causvid --ema fails (no generator_ema)")
    check("generator_ema" in r.stderr, "causvid --ema: the message names the missing state dict")

    # -- original and diffusers layouts -------------------------------------------------------------
    a = open(os.path.join(out, "wan", "model.safetensors"), "rb").read()
    b = open(os.path.join(out, "wan_diffusers", "model.safetensors"), "rb").read()
    check(a == b, "wan: the diffusers layout converts to the same bytes as the original layout")
    wsrc = load_file(os.path.join(files["wan"], "diffusion_pytorch_model.safetensors"))
    wout = load_file(os.path.join(out, "wan", "model.safetensors"))
    check(wsrc.keys() == wout.keys() and all(torch.equal(wsrc[k], wout[k]) for k in wsrc), "wan: tensors unchanged")
    wc = json.load(open(os.path.join(out, "wan", "config.json")))
    check(wc["num_heads"] == arch["num_heads"] and wc["dim"] == arch["dim"], "wan: heads and dims from its config.json")

    # -- LoRA ------------------------------------------------------------------------------------
    base = load_file(os.path.join(out, "ll_base", "model.safetensors"))
    merged = load_file(os.path.join(out, "ll", "model.safetensors"))
    lora = torch.load(files["longlive-lora"], map_location="cpu", weights_only=True)["generator_lora"]
    targets = {}
    for k, v in lora.items():
        mod = k[len("base_model.model."):].rsplit(".lora_", 1)[0]
        targets.setdefault(mod + ".weight", {})["A" if ".lora_A." in k else "B"] = v
    want = {f"blocks.{n}.{m}.weight" for n in range(arch["num_layers"]) for m in
            ("self_attn.q", "self_attn.k", "self_attn.v", "self_attn.o", "cross_attn.q", "cross_attn.k",
             "cross_attn.v", "cross_attn.o", "ffn.0", "ffn.2")}
    check(set(targets) == want, "lora: LongLive's targets = every Linear of every block")
    changed = {k for k in base if not torch.equal(base[k], merged[k])}
    check(changed == want, f"lora: exactly the {len(want)} targeted weights changed ({len(changed)} did)")
    rank = made["lora_rank"]
    worst = max((merged[k] - (base[k] + (16 / rank) * (t["B"] @ t["A"]))).abs().max().item() for k, t in targets.items())
    check(worst < 1e-6, f"lora: W + (alpha/r) B @ A with alpha 16, r {rank} (max |diff| {worst:.2g})")
    r = convert("--from", "longlive", files["longlive"], "--lora", files["longlive-lora"], *heads,
                "--out", os.path.join(out, "x"), expect_rc=1, what="lora of rank 8 against LongLive's r=256 fails")
    check("rank [8]" in r.stderr and "r = 256" in r.stderr, "lora: the rank mismatch message names both ranks")
    peft_check(files, heads, out, arch)

    # -- corrupted checkpoints -----------------------------------------------------------------------
    g = ck["generator_ema"]
    per_block = sum(n.startswith("blocks.0.") for n, _ in M.dit_manifest(dict(M.ARCH_DEFAULTS, **{
        k: arch[k] for k in ("dim", "num_heads", "ffn_dim", "text_dim", "num_layers")})))
    cases = {
        "missing": ({k: v for k, v in g.items() if k != "model.blocks.1.ffn.2.bias"},
                    ["1 missing tensor", "blocks.1.ffn.2.bias"]),
        "extra": (dict(g, **{"model.blocks.0.self_attn.extra.weight": torch.zeros(3)}),
                  ["1 unexpected tensor", "blocks.0.self_attn.extra.weight"]),
        "shape": (dict(g, **{"model.blocks.1.cross_attn.k.weight": torch.zeros(arch["dim"], arch["dim"] + 1)}),
                  ["wrong shape", "blocks.1.cross_attn.k.weight", f"[{arch['dim']}, {arch['dim'] + 1}]",
                   f"expected [{arch['dim']}, {arch['dim']}]"]),
        "many": ({k: v for k, v in g.items() if not k.startswith("model.blocks.0.")},
                 [f"{per_block} missing tensor", f"... and {per_block - 10} more", "blocks.0.modulation"]),
    }
    for name, (sd, needles) in cases.items():
        p = os.path.join(work, f"bad_{name}.pt")
        torch.save({"generator_ema": sd}, p)
        d = os.path.join(out, f"bad_{name}")
        r = convert("--from", "self-forcing", p, *heads, "--out", d, expect_rc=1, what=f"corrupt ({name}) fails")
        check(all(n in r.stderr for n in needles), f"corrupt ({name}): the message names it: "
              + " | ".join(r.stderr.strip().splitlines()[:3]))
        check(not os.path.exists(os.path.join(d, "model.safetensors")), f"corrupt ({name}): nothing written")
    bad_lora = {k.replace("ffn.2", "ffn.9"): v for k, v in lora.items()}
    p = os.path.join(work, "bad_lora.pt")
    torch.save({"generator_lora": bad_lora}, p)
    r = convert("--from", "longlive", files["longlive"], "--lora", p, "--lora-rank", "8", "--lora-alpha", "8", *heads,
                "--out", os.path.join(out, "x"), expect_rc=1, what="a LoRA for another model fails")
    check("blocks.0.ffn.9.weight" in r.stderr and "not a weight of the model" in r.stderr,
          "bad lora: the message names the target")
    r = convert("--from", "self-forcing", files["self-forcing"], "--out", os.path.join(out, "x"), expect_rc=1,
                what="dim 64 without --num-heads fails")
    check("--num-heads" in r.stderr, "no heads: the message says --num-heads")
    r = convert("--from", "auto", files["self-forcing"], "--out", os.path.join(out, "x"), expect_rc=1,
                what="--from auto on a training checkpoint asks for the family")
    check("--from self-forcing" in r.stderr, "--from auto: the message lists the families")

    # -- engine == reference ---------------------------------------------------------------------
    emb = load_file(prompt)["prompt"]
    for name, seed in (("sf", 11), ("cv", 12)):
        d = os.path.join(out, name)
        lat, _ = engine_chunk(args.wm_run, args.plugin, d, prompt, work, seed=seed)
        ref = wm_ref.Rollout(d, seed=seed, prompt=emb).run(1)["latents"][0]
        if lat is not None:
            diff = (lat - ref).abs().max().item()
            scale = ref.abs().max().item()
            check(diff <= 1e-4 * scale, f"{name}: engine latents of chunk 0 = wm_ref.Rollout's "
                  f"(max |diff| {diff:.3g}, scale {scale:.3g})")

    # -- taew2_1 ---------------------------------------------------------------------------------
    taew = files["taew2_1"]
    d = os.path.join(out, "sf_dec")
    convert("--from", "self-forcing", files["self-forcing"], *heads, "--latent-size", "8x8", "--out", d,
            what="convert sf at 8x8 latents")
    convert(taew, "--out", d, what="--from auto: taew2_1.pth merges into a model dir")
    convert("--verify", d, what="--verify sf_dec")
    c = json.load(open(os.path.join(d, "config.json")))
    check(c.get("decoder") == M.DECODER_DEFAULT, "taew2_1: the decoder section of taew2_1 (4x time, 8x space)")
    st = load_file(os.path.join(d, "model.safetensors"))
    src = torch.load(taew, map_location="cpu", weights_only=True)
    check(not any(k.startswith("encoder.") for k in st) and
          all(torch.equal(st[k].float(), src[k].float()) for k in st if k.startswith("decoder.")) and
          sum(k.startswith("decoder.") for k in st) == len(M.decoder_manifest(c)),
          "taew2_1: decoder tensors kept exactly, encoder dropped")
    check(all(torch.equal(st[k], sf[k]) for k in sf), "taew2_1 merge: the DiT tensors are untouched")
    lat, img = engine_chunk(args.wm_run, args.plugin, d, prompt, work, seed=3, frames=9, rgb=True)
    ref = wm_ref.Rollout(d, seed=3, prompt=emb).run(1)
    if lat is not None:
        check((lat - ref["latents"][0]).abs().max().item() <= 1e-4 * ref["latents"][0].abs().max().item(),
              "sf_dec: engine latents = reference")
        n = ref["rgb8"].shape[0]
        dr = (img[:n].int() - ref["rgb8"].int()).abs().max().item() if img.shape[0] >= n else 999
        check(n == 9 and dr <= 1, f"sf_dec: engine RGB = reference decoder's (9 frames, max |diff| {dr} level)")

    dd = os.path.join(out, "dec_only")
    convert("--from", "taew2_1", taew, "--decoder-time-upscale", "false,true", "--out", dd,
            what="taew2_1 -> decoder-only dir")
    convert("--verify", dd, what="--verify a decoder-only dir")
    ds = load_file(os.path.join(dd, "model.safetensors"))
    check(torch.equal(ds["decoder.13.conv.weight"].float(), src["decoder.13.conv.weight"][-128:].float()) and
          torch.equal(ds["decoder.19.conv.weight"].float(), src["decoder.19.conv.weight"].float()),
          "time upscale off: TGrow 13 keeps the last 128 output channels (TAEHV patch_tgrow_layers)")
    d2 = os.path.join(out, "sf_dec2")
    convert("--from", "self-forcing", files["self-forcing"], *heads, "--latent-size", "8x8", "--decoder", dd,
            "--out", d2, what="--decoder DIR")
    c2 = json.load(open(os.path.join(d2, "config.json")))
    check(c2["decoder"]["time_upscale"] == [False, True], "--decoder DIR keeps the dir's time upscale")
    lat, img = engine_chunk(args.wm_run, args.plugin, d2, prompt, work, seed=3, frames=5, rgb=True)
    if img is not None:
        r2 = wm_ref.Rollout(d2, seed=3, prompt=emb).run(1)
        n = r2["rgb8"].shape[0]
        dr = (img[:n].int() - r2["rgb8"].int()).abs().max().item()
        check(n == 5 and img.shape[0] >= 5 and dr <= 1, f"2x time decoder: 5 frames per first chunk, = reference ({dr})")
    r = convert("--from", "self-forcing", files["self-forcing"], *heads, "--decoder", dd,
                "--decoder-time-upscale", "true,true", "--out", os.path.join(out, "x"), expect_rc=1,
                what="re-enabling a sliced TGrow fails")
    check("cannot be turned back on" in r.stderr, "sliced TGrow: clear message")
    bad = {k: v for k, v in src.items() if k != "decoder.9.conv.2.bias"}
    p = os.path.join(work, "bad_taew.pth")
    torch.save(bad, p)
    r = convert("--from", "taew2_1", p, "--out", os.path.join(out, "x2"), expect_rc=1, what="a broken TAEHV fails")
    check("decoder.9.conv.2.bias" in r.stderr, "broken TAEHV: the message names the tensor")


def peft_check(files, heads, out, arch):
    """The merge equals peft's own merge_and_unload on the reference model with LongLive's targets."""
    try:
        import peft
        from peft import get_peft_model_state_dict
    except ImportError:
        print("skip  lora vs peft merge_and_unload (peft not installed)")
        return
    torch.manual_seed(0)
    cfg = wm_ref.Config(wm_ref.CONFIG_DEFAULTS)
    cfg.update(dim=arch["dim"], num_heads=arch["num_heads"], ffn_dim=arch["ffn_dim"], text_dim=arch["text_dim"],
               num_layers=arch["num_layers"])
    model = wm_ref.CausalWanModel(cfg)
    base = {k: v.clone() for k, v in model.state_dict().items()}
    targets = sorted({full for name, mod in model.named_modules() if type(mod).__name__ == "CausalWanAttentionBlock"
                      for full, sub in mod.named_modules(prefix=name) if isinstance(sub, torch.nn.Linear)})
    pm = peft.get_peft_model(model, peft.LoraConfig(r=4, lora_alpha=12, lora_dropout=0.0, target_modules=targets))
    for n, p in pm.named_parameters():
        if "lora_B" in n:
            p.data.normal_(0, 0.1)
    work = os.path.join(out, "peft")
    os.makedirs(work, exist_ok=True)
    torch.save({"generator": {"model." + k: v for k, v in base.items()}}, os.path.join(work, "base.pt"))
    torch.save({"generator_lora": get_peft_model_state_dict(pm)}, os.path.join(work, "lora.pt"))
    ref = pm.merge_and_unload().state_dict()
    convert("--from", "longlive", os.path.join(work, "base.pt"), "--lora", os.path.join(work, "lora.pt"),
            "--lora-rank", "4", "--lora-alpha", "12", *heads, "--dtype", "f32", "--out", os.path.join(work, "m"),
            what="convert the peft-made LoRA")
    got = load_file(os.path.join(work, "m", "model.safetensors"))
    d = max((got[k] - ref[k]).abs().max().item() for k in ref)
    check(d < 1e-6, f"lora: equals peft merge_and_unload (r 4, alpha 12; max |diff| {d:.2g})")


if __name__ == "__main__":
    sys.exit(main())
