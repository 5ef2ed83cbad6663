#!/usr/bin/env bash
# smoke.sh - the whole training pipeline on the CPU at toy sizes (a few minutes): generates 8 episodes
# of 33 frames at 64x64, trains the autoencoder and the DiT for a few steps each, exports the engine's
# model folder and runs it through the engine (wm-run), then checks the engine against the PyTorch
# reference on it. Proves the pipeline and the layout, not the quality.
#
#   tools/train/smoke.sh [WORKDIR] [BUILD_DIR]     defaults: /tmp/wm_smoke, build
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
WORK=${1:-/tmp/wm_smoke}; BUILD=${2:-$ROOT/build}
PY=${PYTHON:-$ROOT/.venv/bin/python}
rm -rf "$WORK"
WM_GAMEGEN=$WORK/wm-gamegen "$ROOT/tools/train/make_data.sh" "$WORK/data" 8 33 64 3 --quiet
"$PY" "$ROOT/tools/train/train_ae.py" --data "$WORK/data" --out "$WORK/run" --steps 20 --batch 4 --workers 0 \
      --log-every 10 --val-every 20
"$PY" "$ROOT/tools/train/train_dit.py" --data "$WORK/data" --ae "$WORK/run/ae" --out "$WORK/run" --steps 20 \
      --batch 4 --clip 9 --log-every 5 --val-every 20 --cache "$WORK/latents.pt"
# resume works: 5 more steps from the checkpoint
"$PY" "$ROOT/tools/train/train_dit.py" --data "$WORK/data" --ae "$WORK/run/ae" --out "$WORK/run" --steps 25 \
      --batch 4 --log-every 5 --val-every 1000 --cache "$WORK/latents.pt" --resume
"$PY" "$ROOT/tools/train/export.py" --run "$WORK/run" --out "$WORK/model"
printf 'right\nright\nright+torch\ndown\n-\nleft\n' > "$WORK/actions.txt"
"$BUILD/host/wm-run/wm-run" --model "$WORK/model" --frames 16 --prompt "snowy night fog" --seed 0 \
      --actions "$WORK/actions.txt" --latents "$WORK/engine.lat" --out "$WORK/engine.rgb" --threads 2
"$PY" "$ROOT/tools/train/engine_check.py" "$WORK/model" "$WORK/engine.lat" "$WORK/engine.rgb" \
      "snowy night fog" "$WORK/actions.txt"
"$PY" "$ROOT/tools/train/plot_curves.py" "$WORK/run" --out "$WORK/curves.png"
echo "smoke: OK ($WORK)"
