"""encode_context.py - a real context for the engine: the first 1 + 4(n-1) frames of a wm-gamegen
episode through the model folder's encoder (encoder.safetensors, written by export.py), as the raw
fp32 latents [n][C][H][W] that `wm-run --prefill-latents` takes, plus the episode's actions as a
wm-run action script (its first 1 + 4(n-1) lines are the context's, the rest continue the episode).
Prints the episode's first prompt on stdout.

    python tools/train/encode_context.py MODEL_DIR EPISODE.safetensors N OUT.lat [--actions OUT.txt]
    wm-run --model MODEL_DIR --prefill-latents OUT.lat --actions OUT.txt --prompt "$(...)" --frames 64

With the episode's frames as the ground truth, wm-run's output frame i is the episode's frame i:
frames 0 .. 4(n-1) are the decoded context, the first generated frame is frame 1 + 4(n-1).
"""
import argparse
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402
from ae import encode_video, load_encoder  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model")
    ap.add_argument("episode")
    ap.add_argument("n", type=int, help="latent frames of context (a multiple of the model's chunk)")
    ap.add_argument("out")
    ap.add_argument("--actions", default=None, help="write the episode's action script here")
    a = ap.parse_args()
    torch.set_grad_enabled(False)
    enc, _ = load_encoder(a.model)
    ep = common.Episode(a.episode)
    T = 1 + common.TIME_UPSCALE * (a.n - 1)
    if a.n < 1 or T > ep.T:
        raise SystemExit(f"{a.episode}: {ep.T} frames, a context of {a.n} latent frames needs {T}")
    z = encode_video(enc, ep.frames(0, T), "cpu").numpy().astype(np.float32)
    assert z.shape[0] == a.n
    z.tofile(a.out)
    if a.actions:
        with open(a.actions, "w") as f:
            f.write("\n".join(common.action_lines(ep.actions())) + "\n")
    print(ep.prompts[0][1])


if __name__ == "__main__":
    main()
