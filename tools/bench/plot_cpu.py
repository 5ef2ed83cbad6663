"""Plots docs/bench/cpu_demo.json (chunk latency per chunk) and summarises cpu_wan1.3b.json into
docs/bench/cpu.png and docs/bench/cpu.md."""
import json
import os
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

out = sys.argv[1]
demo = json.load(open(os.path.join(out, "cpu_demo.json")))
wan_path = os.path.join(out, "cpu_wan1.3b.json")
wan = json.load(open(wan_path)) if os.path.exists(wan_path) else None

fig, ax = plt.subplots(figsize=(7, 4))
ms = demo["chunk_ms_all"]
ax.plot(range(len(ms)), ms, marker="o", label="chunk latency (ms)")
ax.set_xlabel("chunk")
ax.set_ylabel("ms")
ax.set_title(f"{demo['model']} on CPU, {demo['threads']} threads: {demo['video_fps']:.2f} video fps\n"
             f"commit {demo['commit']}, {demo['date']}")
ax.grid(alpha=0.3)
ax.legend()
fig.tight_layout()
fig.savefig(os.path.join(out, "cpu.png"), dpi=100)

lines = ["# CPU benchmarks", "",
         f"Machine: {demo['cpus_online']} CPUs online, {demo['threads']} threads used; commit {demo['commit']}; "
         f"{demo['date']}. Raw data: `cpu_demo.json`, `cpu_wan1.3b.json`; plot: `cpu.png`. "
         "Made by `tools/bench/cpu_bench.sh`.", "",
         "| config | chunk ms (mean / p50 / p99) | DiT ms / chunk | decode ms / chunk | video fps |",
         "|---|---|---|---|---|",
         f"| {demo['model']} ({demo['width']}x{demo['height']}, {demo['frames_per_chunk']} latent frames/chunk) | "
         f"{demo['chunk_ms']['mean']:.0f} / {demo['chunk_ms']['p50']:.0f} / {demo['chunk_ms']['p99']:.0f} | "
         f"{demo['dit_ms_per_chunk']:.0f} | {demo['decode_ms_per_chunk']:.0f} | {demo['video_fps']:.2f} |"]
if wan:
    fwd = wan["dit_ms_per_chunk"] / 2 / 1000
    lines += ["", f"Wan2.1-1.3B shapes ({wan['n_params'] / 1e9:.2f} B params, 4680 tokens per chunk, 512 prompt "
              f"tokens, random weights, fp32): **{fwd:.1f} s per DiT forward** "
              f"(chunk of 1 step + cache pass = {wan['dit_ms_per_chunk'] / 1000:.1f} s), peak RSS "
              f"{wan['peak_rss_mb'] / 1024:.1f} GiB. Recorded, not a target."]
open(os.path.join(out, "cpu.md"), "w").write("\n".join(lines) + "\n")
print("\n".join(lines))
