#!/usr/bin/env bash
# CPU benchmarks of the engine (docs/bench/cpu_*.json + cpu.png):
#  1. frames per second of the small demo config (random weights) on N threads (default 2);
#  2. seconds per DiT forward at Wan2.1-1.3B shapes (random weights, one chunk of 3 latent frames,
#     one denoising step + the cache pass = 2 forwards; the first forward of a stream: no cache).
# Usage: tools/bench/cpu_bench.sh [BUILD_DIR] [THREADS] [--skip-wan]
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
build=${1:-$root/build}
threads=${2:-2}
out=$root/docs/bench
mkdir -p "$out"
export WM_COMMIT=$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)
bench=$build/host/wm-bench/wm-bench
"$bench" --model "$root/assets/demo/config.json" --random-weights --chunks 8 --warmup 1 --threads "$threads" \
    --label "demo config, CPU, $threads threads" --json "$out/cpu_demo.json"
if [[ "${3:-}" != "--skip-wan" ]]; then
    "$bench" --model "$root/tools/bench/configs/wan2.1-1.3b-1step.json" --random-weights --chunks 1 --warmup 0 \
        --threads "$threads" --label "Wan2.1-1.3B shapes, 1 step + cache pass, CPU, $threads threads" \
        --json "$out/cpu_wan1.3b.json"
fi
py=$root/.venv/bin/python
[[ -x $py ]] || py=python3
"$py" "$root/tools/bench/plot_cpu.py" "$out" || echo "plot skipped (needs matplotlib: scripts/setup.sh --python)"
