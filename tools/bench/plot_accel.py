"""Plots the FAST-AR benchmark (tools/bench/accel_bench.sh) like the paper's figure 6: video fps and
KV-cache memory against latent frames generated, one line per configuration, plus a summary table
(Markdown) of the targets of issue 5 against the dense baselines of the same run.
Usage: plot_accel.py OUT_PREFIX RUN.json [RUN.json ...]  -> OUT_PREFIX.png, OUT_PREFIX.md"""
import json
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def load(p):
    r = json.load(open(p))
    r["_frames"] = r.get("latent_frames_all") or [r["frames_per_chunk"] * (i + 1) for i in range(len(r["chunk_ms_all"]))]
    return r


def ms_at(r, frame):
    """mean chunk ms of the chunks that end within +-3 chunks of `frame` latent frames (None if beyond)"""
    pts = [ms for f, ms in zip(r["_frames"], r["chunk_ms_all"]) if abs(f - frame) <= 3 * r["frames_per_chunk"]]
    return sum(pts) / len(pts) if pts else None


def main():
    prefix, runs = sys.argv[1], [load(p) for p in sys.argv[2:]]
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(12, 4.2))
    for r in runs:
        u, F = r["time_upscale"], r["frames_per_chunk"]
        # latent frame 0 decodes to one video frame, every later one to time_upscale
        fps = [1000.0 * ((1 + u * (F - 1)) if i == 0 else u * F) / ms for i, ms in enumerate(r["chunk_ms_all"])]
        a1.plot(r["_frames"], fps, lw=1.2, label=r["label"])
        a2.plot(r["_frames"], [m / 1024 for m in r["cache_mb_all"]], lw=1.2, label=r["label"])
    r0 = runs[0]
    fig.suptitle(f"Wan2.1-1.3B shapes, random weights - {r0.get('device', '')} - commit {r0['commit']} - {r0['date'][:10]}",
                 fontsize=9)
    a1.set(xlabel="latent frames generated", ylabel="video fps (chunk incl. decode)", xscale="log")
    a2.set(xlabel="latent frames generated", ylabel="KV cache (GiB, all layers)", xscale="log")
    for a in (a1, a2):
        a.grid(alpha=0.3)
        a.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(prefix + ".png", dpi=120)

    by = {r["label"].split(" (")[0]: r for r in runs}
    lines = [f"Device: {r0.get('device', '')}; commit {r0['commit']}; {r0['date']}", "",
             "| configuration | chunks | ms/chunk @30 fr | @150 fr | @300 fr | chunks 20-40 | chunks 900-1000 | KV GiB end | stopped |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in runs:
        ms = r["chunk_ms_all"]
        seg = lambda a, b: (sum(ms[a:b]) / len(ms[a:b])) if len(ms) >= b else None  # noqa: E731
        f = lambda v: f"{v:.0f}" if v is not None else "-"  # noqa: E731
        lines.append(f"| {r['label']} | {len(ms)} | {f(ms_at(r, 30))} | {f(ms_at(r, 150))} | {f(ms_at(r, 300))} | "
                     f"{f(seg(20, 40))} | {f(seg(900, 1000))} | {r['cache_mb_all'][-1] / 1024:.2f} | {r.get('stopped', '')} |")
    dense, win, all3 = by.get("dense, growing cache"), by.get("dense, rolling window 21"), by.get("all three")
    lines.append("")
    if all3:
        ms = all3["chunk_ms_all"]
        if len(ms) >= 1000:
            a, b = sum(ms[20:40]) / 20, sum(ms[900:1000]) / 100
            lines.append(f"- all three flat: chunks 900-1000 {b:.0f} ms vs chunks 20-40 {a:.0f} ms ({100 * (b / a - 1):+.1f}%, target within 10%)")
        steady = sum(ms[20:40]) / 20 if len(ms) >= 40 else ms[-1]
        for fr in (150, 300):
            d = ms_at(dense, fr) if dense else None
            if d:
                lines.append(f"- all three vs dense growing cache at {fr} latent frames: {d / steady:.1f}x (target {'5' if fr == 150 else '10'}x)")
            elif dense:
                lines.append(f"- dense growing cache did not reach {fr} latent frames on this card ({dense.get('stopped') or 'capacity'})")
        if win:
            w = sum(win["chunk_ms_all"][10:]) / len(win["chunk_ms_all"][10:])
            lines.append(f"- all three vs dense rolling window 21: {w:.0f} / {steady:.0f} ms = {w / steady:.2f}x (target 2x)")
    open(prefix + ".md", "w").write("\n".join(lines) + "\n")
    print("\n".join(lines))


main()
