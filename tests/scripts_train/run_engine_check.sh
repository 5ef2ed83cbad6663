#!/bin/sh
# The shipped game (assets/game) in the engine against the PyTorch model it was trained as
# (tools/train/engine_check.py: wm_ref.Rollout on the same weights, prompt, seed and actions).
#   run_engine_check.sh SOURCE_DIR WM_RUN cpu|cuda
# cpu: 33 video frames (9 latent frames), latents within 1e-3, RGB8 within 2 levels.
# cuda: 13 video frames, bf16 tolerances (3e-2 of the latents' scale, 8 levels), as gpu_golden's.
# Python: $WM_PYTHON, else the venv (scripts/setup.sh --python), else python3 (the GPU machine's has torch).
# Exit 77 (skipped) without a Python with torch, the weights, or (cuda) a device.
src=$1 wmrun=$2 backend=$3
. "$(dirname "$0")/torch_python.sh"
[ -f "$src/assets/game/model.safetensors" ] || { echo "no assets/game weights: skipped"; exit 77; }
work=$(mktemp -d) || exit 1
trap 'rm -rf "$work"' EXIT
# a walk with turns every 4-8 frames, a torch and a pause (one line per video frame, the last repeats)
printf 'right\nright\nright\nright\ndown\ndown\ndown\ndown\ndown\ndown\nleft\nleft\nleft\nleft\ntorch\n-\n-\nup+left\nup+left\nup+left\nup\nup\nup\nup\n' > "$work/walk.txt"
if [ "$backend" = cuda ]; then frames=13; tol="--tol-rel 3e-2 --tol-rgb 8"; else frames=33; tol=""; fi
prompt="snow night fog"
"$wmrun" --model "$src/assets/game" --backend "$backend" --threads 2 --frames $frames --prompt "$prompt" \
    --actions "$work/walk.txt" --seed 3 --latents "$work/x.lat" --out "$work/x.rgb" --quiet > "$work/run.log" 2>&1
rc=$?
if [ $rc -ne 0 ]; then
    cat "$work/run.log"
    if [ "$backend" = cuda ] && grep -qi "no CUDA device\|device unusable\|not built with\|no device" "$work/run.log"; then
        echo "no CUDA device: skipped"; exit 77
    fi
    exit 1
fi
# shellcheck disable=SC2086
"$py" "$src/tools/train/engine_check.py" "$src/assets/game" "$work/x.lat" "$work/x.rgb" "$prompt" "$work/walk.txt" \
    --seed 3 $tol
