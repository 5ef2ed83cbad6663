"""plot_accel_quality.py - draws wm-accel-eval results (docs/ACCEL_QUALITY.md).

Per video frame: PSNR and SSIM of the accelerated rollout against the dense one. Per chunk (x = video
frames generated when the chunk ended): the accelerated session's AnnSA/AnnCA densities and recalls,
the KV-cache rows per layer of both sessions, and both sessions' chunk times. One line (colour) per
JSON file; a summary table goes to standard output.

    python tools/eval/plot_accel_quality.py RUN.json [RUN.json ...] [--out accel_quality.png]
           [--smooth N] [--title TEXT]

Needs matplotlib (the .venv of scripts/setup.sh --python has it); numpy is not needed.
"""
import argparse
import json
import os
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

PSNR_CAP = 100.0


def load(path):
    try:
        with open(path) as f:
            r = json.load(f)
    except (OSError, ValueError) as e:
        raise SystemExit(f"{path}: {e}")
    if r.get("tool") != "wm-accel-eval":
        raise SystemExit(f"{path}: not a wm-accel-eval result (no \"tool\": \"wm-accel-eval\")")
    r["_path"] = path
    r["_name"] = r.get("label") or r.get("settings", {}).get("accel_desc") or os.path.basename(path)
    return r


def smooth(v, n):
    """trailing moving average over n values (n <= 1: unchanged)"""
    if n <= 1 or not v:
        return list(v)
    out, acc = [], 0.0
    for i, x in enumerate(v):
        acc += x
        if i >= n:
            acc -= v[i - n]
        out.append(acc / min(i + 1, n))
    return out


def fmt(v, spec):
    return "-" if v is None else format(v, spec)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("runs", nargs="+", help="wm-accel-eval --json files")
    ap.add_argument("--out", default="accel_quality.png", help="PNG to write (default accel_quality.png)")
    ap.add_argument("--smooth", type=int, default=1,
                    help="moving average over N frames for PSNR/SSIM (default 1: none)")
    ap.add_argument("--title", default=None, help="figure title (default: model, device, commit, date)")
    a = ap.parse_args(argv)
    runs = [load(p) for p in a.runs]

    fig, ax = plt.subplots(2, 3, figsize=(16, 8.5))
    (a_psnr, a_ssim, a_ms), (a_dens, a_rec, a_cache) = ax
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    any_recall = False
    for i, r in enumerate(runs):
        c = colours[i % len(colours)]
        name = r["_name"]
        frames = list(range(1, len(r["psnr"]) + 1))
        a_psnr.plot(frames, smooth(r["psnr"], a.smooth), lw=1.0, color=c, label=name)
        a_ssim.plot(frames, smooth(r["ssim"], a.smooth), lw=1.0, color=c, label=name)
        ch = r["chunks"]
        x = ch["frames_end"]
        a_dens.plot(x, ch["sa_density"], lw=1.2, color=c, label=f"{name}: SA")
        a_dens.plot(x, ch["ca_density"], lw=1.2, color=c, ls="--", label=f"{name}: CA")
        sar = [(f, v) for f, v in zip(x, ch["sa_recall"]) if v >= 0]
        car = [(f, v) for f, v in zip(x, ch["ca_recall"]) if v >= 0]
        if sar:
            a_rec.plot(*zip(*sar), lw=1.2, color=c, label=f"{name}: SA")
        if car:
            a_rec.plot(*zip(*car), lw=1.2, color=c, ls="--", label=f"{name}: CA")
        any_recall = any_recall or bool(sar or car)
        a_cache.plot(x, ch["cache_tokens"], lw=1.2, color=c, label=f"{name}: accelerated")
        a_ms.plot(x, ch["accel_ms"], lw=1.0, color=c, label=f"{name}: accelerated")
        # every run's own dense session, in grey (one legend entry)
        a_cache.plot(x, ch["dense_cache_tokens"], lw=1.0, color="grey", ls=":", label="dense" if i == 0 else None)
        a_ms.plot(x, ch["dense_ms"], lw=0.8, color="grey", ls=":", label="dense" if i == 0 else None)

    a_psnr.axhline(PSNR_CAP, color="k", lw=0.5, ls=":")
    sm = f" ({a.smooth}-frame mean)" if a.smooth > 1 else ""
    a_psnr.set(xlabel="video frame", ylabel=f"PSNR vs dense (dB, RGB; identical = {PSNR_CAP:.0f}){sm}")
    a_ssim.set(xlabel="video frame", ylabel=f"SSIM vs dense (luma, Gaussian 11x11){sm}")
    a_dens.set(xlabel="video frames generated", ylabel="density (attended share; 1 = dense)", ylim=(0, 1.05))
    a_rec.set(xlabel="video frames generated", ylabel="recall probe (attention mass kept)", ylim=(0, 1.05))
    if not any_recall:
        a_rec.text(0.5, 0.5, "no recall measured\n(wm-accel-eval --recall-probe N)", ha="center", va="center",
                   transform=a_rec.transAxes, color="grey")
    a_cache.set(xlabel="video frames generated", ylabel="KV cache rows per layer (largest layer)")
    a_ms.set(xlabel="video frames generated", ylabel="chunk ms (all stages)")
    for axis in ax.flat:
        axis.grid(alpha=0.3)
        if axis.get_legend_handles_labels()[0]:
            axis.legend(fontsize=7)
    r0 = runs[0]
    s0 = r0.get("settings", {})
    title = a.title or (f"{s0.get('model_name', '')}: accelerated vs dense rollout - {r0.get('device', '')} "
                        f"({r0.get('backend', '')}) - commit {r0.get('commit', '')} - {r0.get('date', '')[:10]}")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(a.out, dpi=110)

    print("| run | frames | PSNR 1-100 | PSNR mean | PSNR min | SSIM mean | identical | SA density | CA density "
          "| SA recall | CA recall | cache rows end (dense) | speedup |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in runs:
        s = r["summary"]
        print(f"| {r['_name']} | {r['frames']} | {fmt(s.get('psnr_mean_1_100'), '.2f')} "
              f"| {fmt(s.get('psnr_mean'), '.2f')} "
              f"| {fmt(s.get('psnr_min'), '.2f')} | {fmt(s.get('ssim_mean'), '.4f')} | {r['identical_frames']} "
              f"| {fmt(s.get('sa_density_mean'), '.3f')} | {fmt(s.get('ca_density_mean'), '.3f')} "
              f"| {fmt(s.get('sa_recall_mean'), '.3f')} | {fmt(s.get('ca_recall_mean'), '.3f')} "
              f"| {s.get('cache_tokens_end')} ({s.get('dense_cache_tokens_end')}) | {fmt(s.get('speedup'), '.2f')}x |")
        if r.get("stopped"):
            print(f"  ({r['_path']}: stopped early: {r['stopped']})")
    print(f"wrote {a.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
