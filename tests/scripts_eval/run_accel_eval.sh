#!/bin/sh
# run_accel_eval.sh WM_ACCEL_EVAL SOURCE_DIR BINARY_DIR - the slow test of wm-accel-eval
# (docs/ACCEL_QUALITY.md) on the shipped game, CPU backend, 2 threads, 40 frames:
#   - usage errors exit 2, a missing model exits 1;
#   - --accel all --ca-min-tokens 0 (AnnCA on the game's 16-token prompt, which the default of 64
#     leaves dense; with the recall probe): the JSON has every field, sane values, and its PSNR/SSIM
#     agree with tools/eval/fidelity.py's recomputed from the written videos (when numpy is there);
#   - every module on at a setting that disables it (--tempcache --tc-threshold 2 --annsa --annca
#     --sa-dense-steps 1), replaying the first run's saved actions: every frame identical to the
#     dense one, PSNR 100.0 (the cap that stands for infinity), SSIM 1;
#   - tools/eval/plot_accel_quality.py draws both (when matplotlib is there).
# Exit 77 (skipped) without the shipped weights or without any Python 3. Writes BINARY_DIR/accel_eval_test.
tool=$1
src=$2
bin=$3
out=$bin/accel_eval_test
if [ ! -s "$src/assets/game/model.safetensors" ]; then
    echo "SKIP: no shipped game weights ($src/assets/game/model.safetensors)"
    exit 77
fi
py=
for p in "${WM_PYTHON:-}" "$src/.venv/bin/python" python3; do
    [ -n "$p" ] || continue
    if "$p" -c "import json" >/dev/null 2>&1; then py=$p; break; fi
done
if [ -z "$py" ]; then
    echo "SKIP: no Python 3 to read the JSON"
    exit 77
fi
rm -rf "$out" && mkdir -p "$out" || exit 1
fail() { echo "FAIL: $*"; exit 1; }
expect() { # expect CODE ARGS...: the exit code of wm-accel-eval with ARGS
    code=$1
    shift
    "$tool" "$@" >"$out/msg.txt" 2>&1
    rc=$?
    [ "$rc" = "$code" ] || { cat "$out/msg.txt"; fail "wm-accel-eval $* exited $rc, expected $code"; }
}
expect 2 --frames abc
expect 2 --backend gpu
expect 2 --sa-bits 9
expect 2 --accel some
expect 2 --no-such-flag
expect 1 --model "$out/no-such-model" --frames 1
grep -q "no-such-model" "$out/msg.txt" || fail "the missing model is not named"
expect 2 --backend cpu --threads 2 --frames 1 --tc-budget 3 --json "$out/refused.json" # below one chunk
grep -q "budget" "$out/msg.txt" || fail "the refused budget is not explained"
expect 0 --help
grep -q -- "--recall-probe" "$out/msg.txt" || fail "--help does not list the acceleration flags"

common="--backend cpu --threads 2 --frames 40 --seed 3"
echo "wm-accel-eval --accel all ..."
"$tool" $common --accel all --ca-min-tokens 0 --recall-probe 8 --action-seed 5 --save-actions "$out/walk.txt" \
    --dense-out "$out/dense.rgb" --accel-out "$out/accel.rgb" --json "$out/all.json" --label "all" ||
    fail "the --accel all run"
echo "wm-accel-eval with every module disabled by its setting ..."
"$tool" $common --tempcache --tc-threshold 2 --annsa --annca --sa-dense-steps 1 --actions "$out/walk.txt" \
    --json "$out/off.json" --label "off by settings" || fail "the disabled-modules run"

"$py" - "$out" "$src" <<'PYEOF' || exit 1
import json, math, os, sys
out, src = sys.argv[1], sys.argv[2]
N = 40
def fail(msg):
    print("FAIL:", msg)
    sys.exit(1)
a = json.load(open(os.path.join(out, "all.json")))
b = json.load(open(os.path.join(out, "off.json")))
for r in (a, b):
    for k in ("tool", "commit", "date", "device", "backend", "settings", "frames", "identical_frames", "psnr", "ssim",
              "chunks", "summary", "stopped"):
        if k not in r:
            fail(f"{r.get('label')}: no field {k}")
    if r["stopped"] or r["frames"] != N or len(r["psnr"]) != N or len(r["ssim"]) != N:
        fail(f"{r['label']}: {r['frames']} frames, {len(r['psnr'])} PSNR, stopped '{r['stopped']}'")
    ch = r["chunks"]
    for k in ("frames_end", "dense_ms", "accel_ms", "sa_density", "ca_density", "sa_recall", "ca_recall", "tc_merges",
              "cache_tokens", "cache_bytes", "dense_cache_tokens"):
        if len(ch.get(k, [])) != ch["count"] or ch["count"] < 2:
            fail(f"{r['label']}: chunks.{k} has {len(ch.get(k, []))} values for {ch['count']} chunks")
    if ch["frames_end"][-1] != N:
        fail(f"{r['label']}: frames_end ends at {ch['frames_end'][-1]}")
    s = r["summary"]
    for k in ("psnr_mean_1_100", "psnr_mean", "psnr_min", "ssim_mean", "sa_density_mean", "ca_density_mean",
              "sa_recall_mean", "ca_recall_mean", "speedup", "dense_ms_mean", "accel_ms_mean", "cache_tokens_end"):
        if k not in s:
            fail(f"{r['label']}: no summary.{k}")
    if not all(0 < p <= 100.0 for p in r["psnr"]) or not all(-1 <= x <= 1 for x in r["ssim"]):
        fail(f"{r['label']}: PSNR or SSIM out of range")
    if not all(0 < d <= 1 for d in ch["sa_density"] + ch["ca_density"]):
        fail(f"{r['label']}: a density outside (0, 1]")
    if not (s["speedup"] and s["speedup"] > 0):
        fail(f"{r['label']}: speedup {s['speedup']}")

# --accel all: the flags reach the session, the probe measures
if a["identical_frames"] >= N or not a["settings"]["accel"]["annsa"] or a["settings"]["accel"]["recall_probe"] != 8:
    fail("--accel all: frames identical to dense or settings not applied")
if a["summary"]["sa_recall_mean"] is None or not 0 < a["summary"]["sa_recall_mean"] <= 1:
    fail(f"--accel all: SA recall {a['summary']['sa_recall_mean']}")
if a["summary"]["ca_density_mean"] >= 1 or a["settings"]["accel"]["ca_min_tokens"] != 0:
    fail("--accel all --ca-min-tokens 0: AnnCA kept every prompt token")
if b["settings"]["accel"]["ca_min_tokens"] != 64 or any(d != 1 for d in b["chunks"]["ca_density"]):
    fail("the default ca_min_tokens (64) does not keep the game's 16-token prompt dense")
# disabled by settings: bit-identical to dense
if b["identical_frames"] != N or any(p != 100.0 for p in b["psnr"]) or any(x != 1.0 for x in b["ssim"]):
    fail(f"disabled modules: {b['identical_frames']} of {N} frames identical, PSNR min {min(b['psnr'])}")
if b["summary"]["psnr_mean"] != 100.0 or b["summary"]["tc_merges_total"] != 0:
    fail("disabled modules: summary")
if b["chunks"]["cache_tokens"] != b["chunks"]["dense_cache_tokens"]:
    fail("disabled modules: cache sizes differ")
if b["settings"]["prompt"] != a["settings"]["prompt"] or not b["settings"]["actions"].startswith("script "):
    fail("the second run did not replay the first one's actions")

# the metrics against an independent computation from the written videos
W, H = a["settings"]["width"], a["settings"]["height"]
FB = W * H * 3
dense = open(os.path.join(out, "dense.rgb"), "rb").read()
accel = open(os.path.join(out, "accel.rgb"), "rb").read()
if len(dense) != N * FB or len(accel) != N * FB:
    fail(f"videos of {len(dense)} / {len(accel)} bytes, expected {N * FB}")
try:
    import numpy as np
    sys.path.insert(0, os.path.join(src, "tools", "eval"))
    import fidelity
    d = np.frombuffer(dense, np.uint8).reshape(N, H, W, 3)
    c = np.frombuffer(accel, np.uint8).reshape(N, H, W, 3)
    for t in range(N):
        p = min(fidelity.psnr(d[t], c[t]), 100.0)
        s = fidelity.ssim(fidelity.luma(d[t:t + 1])[0], fidelity.luma(c[t:t + 1])[0])
        if abs(p - a["psnr"][t]) > 1e-3 or abs(s - a["ssim"][t]) > 1e-4:
            fail(f"frame {t}: PSNR {a['psnr'][t]} SSIM {a['ssim'][t]}, fidelity.py: {p:.4f} {s:.5f}")
    print("PSNR/SSIM agree with tools/eval/fidelity.py on all frames")
except ImportError:
    for t in (0, N // 2, N - 1):  # PSNR only, in plain Python
        x, y = dense[t * FB:(t + 1) * FB], accel[t * FB:(t + 1) * FB]
        sse = sum((u - v) * (u - v) for u, v in zip(x, y))
        p = 100.0 if sse == 0 else min(100.0, 10 * math.log10(255.0 ** 2 * FB / sse))
        if abs(p - a["psnr"][t]) > 1e-3:
            fail(f"frame {t}: PSNR {a['psnr'][t]}, recomputed {p:.4f}")
    print("no numpy: PSNR checked on 3 frames, SSIM not cross-checked")
s = a["summary"]
print(f"--accel all, 40 frames: PSNR mean {s['psnr_mean']:.2f} (min {s['psnr_min']:.2f}), SSIM {s['ssim_mean']:.4f}, "
      f"density SA {s['sa_density_mean']:.3f} CA {s['ca_density_mean']:.3f}, recall SA {s['sa_recall_mean']:.3f} "
      f"CA {s['ca_recall_mean']:.3f}, speedup {s['speedup']:.2f}x")
PYEOF

if "$py" -c "import matplotlib" >/dev/null 2>&1; then
    "$py" "$src/tools/eval/plot_accel_quality.py" "$out/all.json" "$out/off.json" --out "$out/accel_quality.png" ||
        fail "plot_accel_quality.py"
    [ -s "$out/accel_quality.png" ] || fail "no plot written"
else
    echo "no matplotlib: the plot is not drawn"
fi
echo "PASS"
