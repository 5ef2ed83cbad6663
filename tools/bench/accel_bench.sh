#!/usr/bin/env bash
# The FAST-AR benchmark at Wan2.1-1.3B shapes (random weights), on the GPU machine, in one run:
# dense with a growing cache, each module alone, all three, and the dense rolling window of 21
# frames, over >= 300 latent frames (1000 chunks for the all-three run, for the flatness target).
# JSON per configuration in $OUT (default out/accel); plot with tools/bench/plot_accel.py.
#   tools/bench/accel_bench.sh BUILD_DIR [part]      part: grow | bounded | all (default all)
# A dense run whose cache cannot be allocated on this card falls back to a smaller capacity and
# says so in its label; a run that fails mid-way keeps what it measured ("stopped" in its JSON).
set -uo pipefail
build=${1:?usage: accel_bench.sh BUILD_DIR [grow|bounded|all]}
part=${2:-all}
root=$(cd "$(dirname "$0")/../.." && pwd)
OUT=${OUT:-$root/out/accel}
mkdir -p "$OUT"
b=$build/host/wm-bench/wm-bench
cfg=$root/assets/configs/wan2.1-t2v-1.3b.json
FRAMES=${FRAMES:-300}             # latent frames of the growing runs
LONG_CHUNKS=${LONG_CHUNKS:-1000}  # chunks of the all-three run
chunks=$(( (FRAMES + 2) / 3 ))
export WM_COMMIT=${WM_COMMIT:-$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)}
common=(--model "$cfg" --random-weights --backend cuda --warmup 0)

# A growing (unbounded) cache preallocates its capacity: try the full length, then shorter ones.
grow() { # name label [flags...]
    local name=$1 label=$2
    shift 2
    for cap in $((FRAMES + 3)) 240 200 150; do
        $b "${common[@]}" --window -1 --max-cache $cap --chunks $(( cap / 3 - 1 )) --label "$label (cache to $((cap - 3)) frames)" \
            --json "$OUT/$name.json" "$@" 2>"$OUT/$name.log"
        local rc=$?
        if [[ $rc == 0 || $rc == 3 ]]; then tail -n 2 "$OUT/$name.log"; return 0; fi
        grep -q "out of memory\|out of device memory" "$OUT/$name.log" || { tail -5 "$OUT/$name.log"; return 1; }
        echo "$name: capacity $cap frames does not fit this card, trying less"
    done
}

rc=0
if [[ $part == grow || $part == all ]]; then
    grow dense_grow "dense, growing cache" || rc=1
    grow annsa_grow "AnnSA, growing cache" --annsa || rc=1
    grow annca_grow "AnnCA, growing cache" --annca || rc=1
fi
if [[ $part == bounded || $part == all ]]; then
    # the dense rolling window of 21 latent frames (Self-Forcing's setting), steady state
    $b "${common[@]}" --window 21 --sinks 0 --chunks 20 --label "dense, rolling window 21" \
        --json "$OUT/dense_window21.json" 2>"$OUT/dense_window21.log" || rc=1
    tail -n 1 "$OUT/dense_window21.log"
    # TempCache alone: a budget of 12 frames of tokens after 3 sink frames (the window's allocation)
    $b "${common[@]}" --window 15 --sinks 3 --tempcache --chunks "$chunks" --label "TempCache, budget 12 frames + 3 sinks" \
        --json "$OUT/tempcache.json" 2>"$OUT/tempcache.log" || rc=1
    tail -n 1 "$OUT/tempcache.log"
    # all three, long
    $b "${common[@]}" --window 15 --sinks 3 --accel all --chunks "$LONG_CHUNKS" --label "all three" \
        --json "$OUT/all3.json" 2>"$OUT/all3.log" || rc=1
    tail -n 1 "$OUT/all3.log"
fi
exit $rc
