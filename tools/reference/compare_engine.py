"""compare_engine.py - the engine (wm-run through the plugin, CPU or CUDA backend) against the reference
(wm_ref.Rollout) on one random model at any width, chunk by chunk, same seed and prompt.

Together with compare_public.py (reference == the public Self-Forcing model code) this ties the engine
to the public code at full Wan-1.3B width (issue 7, item 5); the golden fixtures tie them at small
widths. The model: the engine config given (default assets/configs/wan2.1-t2v-1.3b.json) with the
decoder and text encoder dropped, optionally fewer layers (--layers) or another latent size
(--latent), weights drawn as make_goldens.init_weights draws them, saved to a temporary model directory
with a random prompt embedding. wm-run writes every chunk's latents (--latents); the reference runs
the same chunks. Reported per chunk: max |diff| and that relative to max |reference|.

Tolerances (relative): CPU 1e-4 (both fp32; what differs is summation order, ~1e-6 per layer at full
width); CUDA 5e-2 (bf16 weights and activations over every layer and step).

    .venv/bin/python tools/reference/compare_engine.py --layers 2                      # CPU, ~minutes
    python3 tools/reference/compare_engine.py --backend cuda --json out.json           # GPU, 30 layers
Exit 0 when every chunk is within the tolerance, 1 otherwise, 2 on a usage or run error."""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch
from safetensors.torch import save_file

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, HERE)
import make_goldens  # noqa: E402
import wm_ref  # noqa: E402
from compare_public import SetupError, load_config  # noqa: E402


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model-config", default=os.path.join(ROOT, "assets/configs/wan2.1-t2v-1.3b.json"))
    ap.add_argument("--layers", type=int, help="num_layers instead of the config's")
    ap.add_argument("--latent", type=int, nargs=2, metavar=("H", "W"), help="latent size instead of the config's")
    ap.add_argument("--chunks", type=int, default=2)
    ap.add_argument("--backend", choices=["cpu", "cuda"], default="cpu")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--weight-seed", type=int, default=3)
    ap.add_argument("--wm-run", default=os.path.join(ROOT, "build/host/wm-run/wm-run"))
    ap.add_argument("--plugin", help="libwm.so for wm-run (default: wm-run's own choice)")
    ap.add_argument("--tol", type=float, help="relative tolerance (default: 1e-4 CPU, 5e-2 CUDA)")
    ap.add_argument("--keep", help="write the model directory here instead of a temporary one")
    ap.add_argument("--json", help="write the results here")
    a = ap.parse_args(argv)
    tol = a.tol if a.tol is not None else (1e-4 if a.backend == "cpu" else 5e-2)
    if not os.access(a.wm_run, os.X_OK):
        print(f"compare_engine: no wm-run at {a.wm_run} (build it, or pass --wm-run)", file=sys.stderr)
        return 2

    try:  # the config reading and checks of compare_public.py (decoder and text encoder dropped)
        cfg = load_config(a.model_config, a.layers, None, a.latent)
    except SetupError as e:
        print(f"compare_engine: {e}", file=sys.stderr)
        return 2
    cfg["name"] = "compare-engine"
    torch.manual_seed(0)
    model = wm_ref.CausalWanModel(cfg)
    make_goldens.init_weights(model, a.weight_seed)
    model.eval()
    prompt = torch.randn(7, cfg.text_dim, generator=torch.Generator().manual_seed(a.seed + 1))

    with tempfile.TemporaryDirectory() as tmp:
        d = a.keep or os.path.join(tmp, "model")
        os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, "config.json"), "w") as f:
            json.dump({k: v for k, v in cfg.items() if v is not None}, f, indent=1)
        make_goldens.save_model(model, os.path.join(d, "model.safetensors"), torch.float32)
        emb_path, lat_path = os.path.join(tmp, "prompt.safetensors"), os.path.join(tmp, "latents.f32")
        save_file({"prompt": prompt.contiguous()}, emb_path)

        F, C, H, W = cfg.num_frame_per_block, cfg.in_dim, cfg.latent_height, cfg.latent_width
        cmd = [a.wm_run, "--model", d, "--prompt-embedding", emb_path, "--frames", str(a.chunks * F),
               "--seed", str(a.seed), "--backend", a.backend, "--latents", lat_path, "--quiet"]
        if a.plugin:
            cmd += ["--plugin", a.plugin]
        t0 = time.time()
        r = subprocess.run(cmd, capture_output=True, text=True)
        t_engine = time.time() - t0
        if r.returncode != 0:
            print(f"compare_engine: wm-run failed ({r.returncode}): {r.stderr.strip()}", file=sys.stderr)
            return 2
        got = np.fromfile(lat_path, dtype=np.float32)
        per = F * C * H * W
        if got.size != a.chunks * per:
            print(f"compare_engine: wm-run wrote {got.size} floats, expected {a.chunks * per}", file=sys.stderr)
            return 2
        got = torch.from_numpy(got).view(a.chunks, F, C, H, W)

    t0 = time.time()
    with torch.no_grad():
        ref = wm_ref.Rollout(model, a.seed, prompt).run(a.chunks)["latents"]
    t_ref = time.time() - t0

    rows, ok = [], True
    for c in range(a.chunks):
        diff = (got[c] - ref[c]).abs().max().item()
        rel = diff / max(ref[c].abs().max().item(), 1e-30)
        passed = rel <= tol
        ok &= passed
        rows.append({"chunk": c, "max_abs_diff": diff, "rel": rel, "ok": passed})
        print(f"chunk {c}: max|diff| {diff:.3g}, relative {rel:.3g} (tolerance {tol:g}): {'ok' if passed else 'FAIL'}")
    print(f"{cfg.num_layers} layers, dim {cfg.dim}, latent {H}x{W}, {F} frames per chunk, backend {a.backend}: "
          f"engine {t_engine:.1f} s, reference {t_ref:.1f} s")
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"layers": cfg.num_layers, "dim": cfg.dim, "latent": [H, W], "frames_per_chunk": F,
                       "backend": a.backend, "seed": a.seed, "tolerance": tol, "chunks": rows,
                       "engine_s": t_engine, "reference_s": t_ref}, f, indent=1)
    return 0 if ok else 1


if __name__ == "__main__":
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    sys.exit(main(sys.argv[1:]))
