"""Plots wm-bench JSON files of one GPU run: chunk latency and backend memory against latent
frames generated (like FAST-AR's figure 6). Usage: plot_gpu.py OUT.png RUN1.json [RUN2.json ...]"""
import json
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

out, paths = sys.argv[1], sys.argv[2:]
fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4))
title = ""
for p in paths:
    r = json.load(open(p))
    F = r["frames_per_chunk"]
    frames = [F * (i + 1) for i in range(len(r["chunk_ms_all"]))]
    a1.plot(frames, r["chunk_ms_all"], marker=".", label=f"{r['label']}: chunk")
    if "dit_ms_all" in r:
        a1.plot(frames, r["dit_ms_all"], ls="--", label=f"{r['label']}: DiT only")
    if "backend_mb_all" in r:
        a2.plot(frames, [m / 1024 for m in r["backend_mb_all"]], marker=".", label=r["label"])
    title = f"{r.get('device', '')} commit {r['commit']} {r['date'][:10]}"
a1.set_xlabel("latent frames generated")
a1.set_ylabel("ms per chunk")
a1.grid(alpha=0.3)
a1.legend(fontsize=7)
a2.set_xlabel("latent frames generated")
a2.set_ylabel("backend memory (GiB)")
a2.grid(alpha=0.3)
a2.legend(fontsize=7)
fig.suptitle(title)
fig.tight_layout()
fig.savefig(out, dpi=100)
