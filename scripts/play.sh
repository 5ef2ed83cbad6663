#!/usr/bin/env bash
# play.sh - sets up and builds (scripts/setup.sh), then plays: wm-play (the SDL2 player) on the model
# shipped in assets/ (else the random-weight demo), on the GPU if there is one, else the CPU. Extra
# arguments go to wm-play (e.g. --backend cpu). Without a display (no $DISPLAY / $WAYLAND_DISPLAY) it
# records a headless rollout with wm-run instead, writing out/demo.mp4.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD_DIR=${WM_BUILD_DIR:-$ROOT/build}

"$ROOT/scripts/setup.sh"
mkdir -p "$ROOT/out"
if [ -n "${DISPLAY:-}${WAYLAND_DISPLAY:-}" ] && [ -z "${WM_HEADLESS:-}" ]; then
    exec "$BUILD_DIR/host/wm-play/wm-play" "$@"
fi
echo "play: no display: recording a headless rollout instead (set DISPLAY to play interactively)" >&2
WM_RUN=("$BUILD_DIR/host/wm-run/wm-run")

shipped=""
for d in "$ROOT"/assets/*/; do
    if [ -f "$d/config.json" ] && [ -f "$d/model.safetensors" ]; then
        shipped=$d
        break
    fi
done

if [ -n "$shipped" ]; then
    echo "play: running the shipped model in $shipped" >&2
    "${WM_RUN[@]}" --model "$shipped" --frames 80 --out "$ROOT/out/demo.mp4" "$@"
else
    echo "play: no trained model in assets/ yet: running the random-weight demo (noise-like video)" >&2
    actions="$ROOT/out/demo_actions.txt"
    {
        echo "# demo walk: one line per video frame (buttons: up down left right jump)"
        for i in $(seq 0 79); do
            case $((i / 16)) in
            0) echo "up" ;;
            1) echo "up+left" ;;
            2) echo "left+jump" ;;
            3) echo "right" ;;
            *) echo "-" ;;
            esac
        done
    } > "$actions"
    "${WM_RUN[@]}" --model "$ROOT/assets/demo/config.json" --random-weights 1 --frames 80 \
        --prompt "a walk through the forest at night" --actions "$actions" --out "$ROOT/out/demo.mp4" "$@"
fi
echo "play: wrote $ROOT/out/demo.mp4" >&2
