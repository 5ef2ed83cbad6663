"""plot_curves.py - training curves of a run folder (ae_log.csv, dit_log.csv) as one PNG, or of
several fine-tunes side by side (--compare: their dit_log.csv files; the loss and, for --dmd runs, the
critic's loss against minutes).

    python tools/train/plot_curves.py RUN --out docs/train_curves.png
    python tools/train/plot_curves.py --compare a/dit_log.csv=plain b/dit_log.csv="with --dmd-reg 1" --out cmp.png
"""
import argparse
import csv
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def read(path):
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return list(csv.DictReader(f))


def series(rows, x, y):
    pts = [(float(r[x]), float(r[y])) for r in rows if r.get(y) not in (None, "")]
    return [p[0] for p in pts], [p[1] for p in pts]


def compare(specs, out):
    fig, ax = plt.subplots(1, 2, figsize=(11, 4))
    for spec in specs:
        path, _, label = spec.partition("=")
        rows = read(path)
        if not rows:
            raise SystemExit(f"{path}: no rows")
        for i, key in enumerate(["loss", "critic_loss"]):
            xs, ys = series(rows, "minutes", key)
            if xs:
                ax[i].plot(xs, ys, label=label or path)
    ax[0].set(title="generator loss (DMD: 0.5 |g|^2, plus --dmd-reg's data loss)", xlabel="GPU minutes")
    ax[1].set(title="critic loss (flow loss on the generator's samples)", xlabel="GPU minutes")
    for x in ax:
        x.grid(alpha=0.3)
        x.legend()
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    print(f"wrote {out}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("run", nargs="?")
    ap.add_argument("--compare", nargs="+", metavar="CSV=LABEL", help="dit_log.csv files to draw side by side")
    ap.add_argument("--out", default=None)
    a = ap.parse_args()
    if a.compare:
        return compare(a.compare, a.out or "compare.png")
    if not a.run:
        ap.error("give a run folder or --compare")
    ae, dt = read(os.path.join(a.run, "ae_log.csv")), read(os.path.join(a.run, "dit_log.csv"))
    fig, ax = plt.subplots(1, 3, figsize=(15, 4))
    for key, lab in [("psnr", "train"), ("val_psnr", "held-out")]:
        xs, ys = series(ae, "minutes", key)
        ax[0].plot(xs, ys, label=lab, marker="o" if key == "val_psnr" else None)
    ax[0].set(title="autoencoder reconstruction", xlabel="GPU minutes", ylabel="PSNR (dB)")
    for key, lab in [("loss", "train"), ("val_loss", "held-out (clean context)")]:
        xs, ys = series(dt, "minutes", key)
        ax[1].plot(xs, ys, label=lab, marker="o" if key == "val_loss" else None)
    ax[1].set(title="DiT flow-matching loss", xlabel="GPU minutes", ylabel="MSE of v", yscale="log")
    for key, lab in [("val_psnr", "model rollout vs game"), ("ae_psnr", "AE reconstruction vs game")]:
        xs, ys = series(dt, "minutes", key)
        ax[2].plot(xs, ys, label=lab, marker="o")
    ax[2].set(title="streaming rollout after a real context", xlabel="GPU minutes", ylabel="PSNR (dB)")
    for x in ax:
        x.grid(alpha=0.3)
        x.legend()
    fig.tight_layout()
    out = a.out or os.path.join(a.run, "curves.png")
    fig.savefig(out, dpi=100)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
