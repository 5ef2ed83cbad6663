#!/usr/bin/env bash
# Runs on the GPU machine (the device tool): builds with CUDA from scratch, runs the gpu-labelled
# tests and the GPU benchmarks at Wan2.1-1.3B shapes. Logs and JSON go to $OUT (default out/gpu).
#   scripts/gpu-check.sh [tests|bench|profile|accel|all]   (profile: per-op shares of SF, RF and all three;
#   accel: tools/bench/accel_bench.sh, long; neither in all)
set -uo pipefail
what=${1:-all}
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
OUT=${OUT:-$root/out/gpu}
mkdir -p "$OUT"
if [[ -f .deps/env.sh ]]; then
    # shellcheck disable=SC1091
    source .deps/env.sh
    # Debian's libcjson.pc has no prefix= line: point its absolute paths at the unpacked debs
    sed -i 's#=/usr/#=/opt/deps/usr/#' /opt/deps/usr/lib/x86_64-linux-gnu/pkgconfig/*.pc 2>/dev/null || true
fi
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$OUT/gpu.txt"
build=build-gpu
[[ -n ${KEEP_BUILD:-} ]] || rm -rf "$build" # KEEP_BUILD=1: reuse a warm machine's build
cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release >"$OUT/cmake.log" 2>&1 || { tail -30 "$OUT/cmake.log"; exit 1; }
# the engine, its gpu tests and the benchmarks (other hosts need SDL/FFmpeg, absent on the GPU machine)
targets="wm test_golden wm-bench wm-run $(cd tests && ls gpu_*.c | sed 's/\.c$//' | tr '\n' ' ')"
[[ -f tests/gpu_attention.c ]] && targets="$targets gpu_attention"
[[ -f host/attn-bench/CMakeLists.txt ]] && targets="$targets attn-bench"
[[ -f tests/gpu_accel.c ]] && targets="$targets gpu_accel test_accel test_accel_ops"
[[ -f tests/test_rope_far.c ]] && targets="$targets test_rope_far"
ninja -C "$build" -j16 $targets >"$OUT/build.log" 2>&1 || { grep -E "error|FAILED" "$OUT/build.log" | head -30; exit 1; }
rc=0
if [[ $what == tests || $what == all ]]; then
    ctest --test-dir "$build" -L gpu --output-on-failure >"$OUT/ctest_gpu.log" 2>&1 || rc=1
    grep -E "Test +#|tests passed|FAIL|max\|diff\||PSNR|worst" "$OUT/ctest_gpu.log" | head -80
fi
if [[ $what == bench || $what == all ]]; then
    # the device copy of the tree has no .git: pass WM_COMMIT=$(git rev-parse --short HEAD) from outside
    export WM_COMMIT=${WM_COMMIT:-$(git rev-parse --short HEAD 2>/dev/null || echo unknown)}
    cfg=assets/configs/wan2.1-t2v-1.3b.json
    b=$build/host/wm-bench/wm-bench
    # Self-Forcing default: cache grows to 21 latent frames (7 chunks)
    $b --model $cfg --random-weights --backend cuda --chunks 6 --warmup 1 --label "wan1.3b cache to 21 frames" \
        --json "$OUT/wan_grow21.json" 2>"$OUT/wan_grow21.log" || rc=1
    # rolling window of 21 latent frames, steady state
    $b --model $cfg --random-weights --backend cuda --window 21 --sinks 0 --chunks 10 --warmup 7 \
        --label "wan1.3b rolling window 21" --json "$OUT/wan_window21.json" 2>"$OUT/wan_window21.log" || rc=1
    # Rolling Forcing's sampler at the published shapes: one 15-frame window forward + a clean pass per chunk
    $b --model assets/configs/rolling-forcing-1.3b.json --random-weights --backend cuda --chunks 8 --warmup 2 \
        --label "rolling forcing 1.3b" --json "$OUT/rf_window.json" 2>"$OUT/rf_window.log" || rc=1
    tail -n 3 "$OUT/wan_grow21.log" "$OUT/wan_window21.log" "$OUT/rf_window.log"
    grep -h '"chunk_ms"\|dit_ms_per\|video_fps\|backend_peak' "$OUT"/wan_*.json
fi
if [[ $what == profile ]]; then
    # per-op times (each op synchronised: read the shares) of a steady chunk: Self-Forcing's window of 21,
    # Rolling Forcing's window, and all three accelerations at their defaults (issue 5)
    b=$build/host/wm-bench/wm-bench
    cfg=assets/configs/wan2.1-t2v-1.3b.json
    $b --model $cfg --random-weights --backend cuda --window 21 --sinks 0 --chunks 2 --warmup 7 \
        --profile "$OUT/profile_sf_window21.json" >"$OUT/profile_sf_window21.log" 2>&1 || rc=1
    $b --model assets/configs/rolling-forcing-1.3b.json --random-weights --backend cuda --chunks 2 --warmup 7 \
        --profile "$OUT/profile_rf.json" >"$OUT/profile_rf.log" 2>&1 || rc=1
    $b --model $cfg --random-weights --backend cuda --window 15 --sinks 3 --accel all --chunks 2 --warmup 7 \
        --profile "$OUT/profile_all3.json" >"$OUT/profile_all3.log" 2>&1 || rc=1
    grep -h -A12 "wm profile" "$OUT"/profile_*.log | head -60
fi
if [[ $what == accel ]]; then
    OUT=$OUT/accel tools/bench/accel_bench.sh "$build" "${ACCEL_PART:-all}" || rc=1
fi
exit $rc
