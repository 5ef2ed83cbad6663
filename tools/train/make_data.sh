#!/usr/bin/env bash
# make_data.sh - builds wm-gamegen with the C compiler alone (no CMake, no engine dependencies: the GPU
# machine's image need not have cJSON/OpenBLAS) and generates episodes with one worker per core.
# Skips the generation when DIR/index.json already exists (a warm machine keeps it between calls).
#
#   tools/train/make_data.sh DIR EPISODES [FRAMES] [SIZE] [SEED] [extra wm-gamegen options...]
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
DIR=$1; EPISODES=$2; FRAMES=${3:-129}; SIZE=${4:-256}; SEED=${5:-1}
shift $(( $# < 5 ? $# : 5 ))
GEN=${WM_GAMEGEN:-/tmp/wm-gamegen}
if [ ! -x "$GEN" ] || [ "$ROOT/host/game/game.c" -nt "$GEN" ] || [ "$ROOT/host/game/wm-gamegen.c" -nt "$GEN" ]; then
  mkdir -p "$(dirname "$GEN")"
  cc -O3 -std=gnu11 -I"$ROOT/plugin/include" -I"$ROOT/host/game" "$ROOT/host/game/game.c" \
     "$ROOT/host/game/wm-gamegen.c" -lm -o "$GEN"
fi
if [ -f "$DIR/index.json" ] && [ "$(ls "$DIR"/ep_*.safetensors 2>/dev/null | wc -l)" -eq "$EPISODES" ]; then
  echo "make_data: $DIR already has $EPISODES episodes"
  exit 0
fi
JOBS=$(nproc 2>/dev/null || echo 4)
"$GEN" --out "$DIR" --episodes "$EPISODES" --frames "$FRAMES" --size "$SIZE" --seed "$SEED" --jobs "$JOBS" "$@"
du -sh "$DIR"
