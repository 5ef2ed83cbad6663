"""plot_curves.py - training curves of a run folder (ae_log.csv, dit_log.csv) as one PNG.

    python tools/train/plot_curves.py RUN --out docs/train_curves.png
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


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("run")
    ap.add_argument("--out", default=None)
    a = ap.parse_args()
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
