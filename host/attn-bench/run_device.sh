#!/usr/bin/env bash
# run_device.sh - one device call's worth of attention work: build the kernel, the test and the
# bench with nvcc directly (no CMake dependencies needed), run the correctness test (and
# compute-sanitizer on its quick subset), time our kernels and PyTorch's SDPA backends on the same
# GPU, and leave logs + JSON under $OUT.
#   COMMIT=<hash> host/attn-bench/run_device.sh [sass|test|bench|sdpa|pair|sanitize|plot]...   (default: all)
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-/tmp/attn-out}
B=${B:-/tmp/fa-build}
mkdir -p "$OUT" "$B"
steps=("$@")
[ ${#steps[@]} -eq 0 ] && steps=(sass test bench sdpa pair sanitize plot)
has() { local s; for s in "${steps[@]}"; do [ "$s" = "$1" ] && return 0; done; return 1; }

nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,power.draw,power.limit,temperature.gpu \
  --format=csv >"$OUT/info.txt" 2>&1; cat "$OUT/info.txt"
ARCH="-gencode arch=compute_90a,code=sm_90a"
t0=$(date +%s)
nvcc -O3 -std=c++17 $ARCH -lineinfo --expt-relaxed-constexpr -Xptxas -v -Ikernels -c kernels/flash_attn.cu \
  -o "$B/fa.o" 2>"$B/ptxas.txt" || { cat "$B/ptxas.txt"; exit 1; }
grep -E "C75|Used|spill" "$B/ptxas.txt" | sed 's/ptxas info    ://' | sort | uniq -c | head -20 | tee -a "$OUT/info.txt"
for f in tests/gpu_attention.c host/attn-bench/attn-bench.c; do
  gcc -O2 -std=c11 -Wall -DWM_HAVE_CUDA=1 -Ikernels -I/usr/local/cuda/include -c "$f" -o "$B/$(basename "$f" .c).o" || exit 1
done
nvcc $ARCH "$B/gpu_attention.o" "$B/fa.o" -o "$B/gpu_attention" -lm || exit 1
nvcc $ARCH "$B/attn-bench.o" "$B/fa.o" -o "$B/attn-bench" -lm || exit 1
echo "build: $(( $(date +%s) - t0 )) s"

if has sass; then
  cuobjdump -sass "$B/fa.o" >"$B/fa.sass" 2>/dev/null
  awk '/Function :/{f=$3} /HGMMA/{g[f]++} /HMMA/{m[f]++} /LDL|STL/{l[f]++} /MUFU.EX2/{x[f]++}
       END{for(k in g) printf "%s HGMMA=%d HMMA=%d MUFU.EX2=%d local=%d\n", k, g[k], m[k], x[k], l[k];
           for(k in m) if(!(k in g)) printf "%s HMMA=%d MUFU.EX2=%d local=%d\n", k, m[k], x[k], l[k]}' "$B/fa.sass" \
    | tee -a "$OUT/info.txt"
  # the dense d=128 Hopper kernel's SASS, for reading here
  awk '/Function :/{p = ($3 ~ /fa_wgmma_kernelILi128ELb0E/)} p' "$B/fa.sass" >"$B/wgmma128.sass"
fi
rc=0
if has test; then
  timeout 180 "$B/gpu_attention" >"$OUT/test.txt" 2>&1; rc=$?; echo "test rc=$rc"
  grep -E "FAIL|HANG|passed|gpu_attention:|checks" "$OUT/test.txt"
  [ "$rc" = 3 ] && BENCH_ARGS="--impl mma" # the Hopper kernel hung: time the portable one only
fi
if has sanitize; then
  timeout 150 compute-sanitizer --tool memcheck --print-limit 20 "$B/gpu_attention" --quick >"$OUT/memcheck.txt" 2>&1
  echo "memcheck rc=$?"; grep -E "ERROR SUMMARY|cases passed" "$OUT/memcheck.txt"
  timeout 150 compute-sanitizer --tool racecheck --print-limit 20 "$B/gpu_attention" --quick >>"$OUT/memcheck.txt" 2>&1
  echo "racecheck rc=$?"; grep -E "ERROR SUMMARY|RACECHECK SUMMARY|cases passed" "$OUT/memcheck.txt" | tail -2
fi
if has bench; then
  timeout 200 "$B/attn-bench" --out "$OUT/ours.jsonl" ${BENCH_ARGS:-} 2>&1 | tee "$B/bench.txt" | \
    python3 -c 'import sys,json
for l in sys.stdin:
    if l.startswith("{"):
        r=json.loads(l); print("%-22s %-7s k=%-6d d=%-3d bias=%d dens=%.2f %8.3f ms %6.1f TFLOP/s"%(r["impl"],r["variant"],r["k"],r["d"],r["bias"],r["density"],r["ms_median"],r["tflops"]))
    else: print(l,end="")'
fi
if has sdpa; then
  PYTHONUNBUFFERED=1 timeout 300 python3 tools/bench/attn_sdpa.py time --out "$B/sdpa.jsonl" ${SDPA_ARGS:-} >"$B/sdpa.txt" 2>&1
  python3 -c 'import sys,json
for l in open(sys.argv[1]):
    r=json.loads(l); print("%-16s %-16s k=%-6d d=%-3d bias=%d %s"%(r["impl"],r["variant"],r["k"],r["d"],r["bias"], ("%8.3f ms %6.1f TFLOP/s"%(r["ms_median"],r["tflops"])) if "tflops" in r else "ERR "+r.get("error","")[:90]))' "$B/sdpa.jsonl"
fi
if has pair; then
  nvcc -O3 -std=c++17 $ARCH -shared -Xcompiler -fPIC -Ikernels kernels/flash_attn.cu -o "$B/libwmfa.so" || exit 1
  PYTHONUNBUFFERED=1 timeout 240 python3 tools/bench/attn_sdpa.py pair --lib "$B/libwmfa.so" --out "$OUT/paired.jsonl" \
    ${PAIR_ARGS:-} >"$B/pair.txt" 2>&1; echo "pair rc=$?"; grep -v '^{' "$B/pair.txt" | tail -5
  python3 -c 'import sys,json
rows=[json.loads(l) for l in open(sys.argv[1])]
for r in rows:
    if r["impl"]=="wm-wgmma":
        c=[x for x in rows if x["impl"]=="sdpa-cudnn" and (x["k"],x["d"],x["bias"])==(r["k"],r["d"],r["bias"])][0]
        print("paired k=%-6d d=%-3d bias=%d  ours %6.1f  cudnn %6.1f TFLOP/s  ratio %.3f  spread %.3f  max|diff| %.2e"%(r["k"],r["d"],r["bias"],r["tflops"],c["tflops"],r["tflops"]/c["tflops"],r["ours_round_spread"],r["max_abs_diff_vs_cudnn"]))' "$OUT/paired.jsonl"
fi
if has plot; then  # docs/bench/attention.{json,png} + the table for attention.md, into $OUT
  python3 tools/bench/attn_sdpa.py plot --ours "$OUT/ours.jsonl" --sdpa "$B/sdpa.jsonl" --paired "$OUT/paired.jsonl" \
    --commit "${COMMIT:-unknown}" --outdir "$OUT" >/dev/null || echo "plot failed"
fi
exit $rc
