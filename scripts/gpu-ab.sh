#!/usr/bin/env bash
# A/B timing on the GPU machine: the dense rolling window of 21 latent frames at Wan2.1-1.3B shapes,
# a baseline commit against the working tree, built and run alternately in one device call (clocks
# drift with heat by a few percent between runs and machines: compare only within one run).
#   scripts/gpu-ab.sh prepare <commit>   here: the baseline's sources into ab_base/ (git archive; git ignores it)
#   scripts/gpu-ab.sh run [rounds]       on the GPU machine (the device tool with carry [".deps", "ab_base"]):
#                                        builds both, runs wm-bench `rounds` (default 2) times each,
#                                        alternating; JSON and a summary in $OUT (default out/ab)
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
case ${1:-} in
prepare)
    [[ -n ${2:-} ]] || { echo "usage: $0 prepare <commit>" >&2; exit 2; }
    rm -rf ab_base && mkdir ab_base && git archive "$2" | tar -x -C ab_base || exit 1
    git rev-parse --short "$2" >ab_base/.ab_commit
    echo "ab_base/: $(cat ab_base/.ab_commit)" ;;
run)
    [[ -d ab_base ]] || { echo "no ab_base/: run '$0 prepare <commit>' first (and carry ab_base)" >&2; exit 2; }
    OUT=${OUT:-$root/out/ab}
    mkdir -p "$OUT"
    if [[ -f .deps/env.sh ]]; then
        # shellcheck disable=SC1091
        source .deps/env.sh
        sed -i 's#=/usr/#=/opt/deps/usr/#' /opt/deps/usr/lib/x86_64-linux-gnu/pkgconfig/*.pc 2>/dev/null || true
    fi
    for t in base:ab_base tree:.; do
        name=${t%%:*} src=${t##*:}
        cmake -S "$src" -B "build-ab-$name" -G Ninja -DCMAKE_BUILD_TYPE=Release >"$OUT/cmake_$name.log" 2>&1 &&
            ninja -C "build-ab-$name" -j16 wm wm-bench >"$OUT/build_$name.log" 2>&1 ||
            { echo "build of $name failed: $OUT/build_$name.log" >&2; exit 1; }
    done
    nvidia-smi --query-gpu=name --format=csv,noheader | tee "$OUT/gpu.txt"
    base_commit=$(cat ab_base/.ab_commit 2>/dev/null || echo base)
    for i in $(seq 1 "${2:-2}"); do
        for name in base tree; do
            commit=$([[ $name == base ]] && echo "$base_commit" || echo "${WM_COMMIT:-tree}")
            WM_COMMIT=$commit "build-ab-$name/host/wm-bench/wm-bench" --model assets/configs/wan2.1-t2v-1.3b.json \
                --random-weights --backend cuda --window 21 --sinks 0 --chunks 6 --warmup 7 \
                --label "$name ($commit) round $i" --json "$OUT/ab_${name}_$i.json" >/dev/null 2>"$OUT/ab_${name}_$i.log" ||
                { echo "wm-bench $name failed: $OUT/ab_${name}_$i.log" >&2; exit 1; }
            python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print(f\"{d['label']}: DiT {d['dit_ms_per_chunk']:.1f} ms per chunk, decode {d['decode_ms_per_chunk']:.1f} ms\")" \
                "$OUT/ab_${name}_$i.json" | tee -a "$OUT/summary.txt"
        done
    done ;;
*) sed -n '2,9p' "$0"; exit 2 ;;
esac
