#!/usr/bin/env bash
# Runs on the GPU machine: nsys kernel statistics of a Wan2.1-1.3B-shaped rolling-window chunk, to see
# where a chunk's time goes. Output: $OUT/profile_kernels.txt. Assumes scripts/gpu-check.sh built build-gpu.
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
OUT=${OUT:-$root/out/gpu}
mkdir -p "$OUT"
[[ -f .deps/env.sh ]] && source .deps/env.sh
ninja -C build-gpu -j16 wm wm-bench gpu_ops >"$OUT/build.log" 2>&1 || { grep -E "error|FAILED" "$OUT/build.log" | head; exit 1; }
./build-gpu/tests/gpu_ops 2>&1 | grep -E "ffn|time|FAIL|PASS" | head -20
nsys=$(command -v nsys || ls /usr/local/cuda*/bin/nsys /opt/nvidia/nsight-systems/*/bin/nsys 2>/dev/null | head -1)
if [[ -z $nsys ]]; then echo "no nsys on this machine"; exit 0; fi
$nsys profile -o "$OUT/wan" --force-overwrite true --trace cuda --sample none --cpuctxsw none \
    ./build-gpu/host/wm-bench/wm-bench --model assets/configs/wan2.1-t2v-1.3b.json --random-weights \
    --backend cuda --window 21 --sinks 0 --chunks 2 --warmup 7 >"$OUT/nsys.log" 2>&1
$nsys stats --report cuda_gpu_kern_sum --format csv "$OUT/wan.nsys-rep" 2>/dev/null |
    python3 -c "
import csv, sys
rows = list(csv.DictReader(l for l in sys.stdin if l.count(',') > 3))
tot = sum(float(r['Total Time (ns)']) for r in rows)
print(f'total kernel time {tot/1e6:.1f} ms over 9 chunks')
for r in rows[:25]:
    print(f\"{float(r['Time (%)']):5.1f}% {float(r['Total Time (ns)'])/1e6:9.1f} ms {int(r['Instances']):7d}x  {r['Name'][:110]}\")
" | tee "$OUT/profile_kernels.txt"
rm -f "$OUT"/wan.nsys-rep "$OUT"/wan.sqlite
