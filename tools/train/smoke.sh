#!/usr/bin/env bash
# smoke.sh - the whole training pipeline on the CPU at toy sizes (a few minutes): generates 8 episodes
# of 33 frames at 64x64, trains the autoencoder and the DiT for a few steps each, exports the engine's
# model folder (with encoder.safetensors) and runs it through the engine (wm-run), then checks the engine
# against the PyTorch reference on it - from scratch, and after a real context (a held-out episode's
# first 13 frames through the exported encoder, wm-run --prefill-latents; the reference commits the
# same latents as train_dit.py's validation does) - checks that wm-run refuses a bad prefill file, and
# runs tools/eval/fidelity.py on the toy model in its context mode. Proves the pipeline and the
# layout, not the quality.
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
      --batch 4 --clip 9 --log-every 5 --val-every 20 --cache "$WORK/latents.pt" --change-weight 3 --rollout-ctx 0.5 --rollout-every 10 --rollout-pool 4
# resume works: 5 more steps from the checkpoint
"$PY" "$ROOT/tools/train/train_dit.py" --data "$WORK/data" --ae "$WORK/run/ae" --out "$WORK/run" --steps 25 \
      --batch 4 --log-every 5 --val-every 1000 --cache "$WORK/latents.pt" --resume
"$PY" "$ROOT/tools/train/export.py" --run "$WORK/run" --out "$WORK/model"
# a new run from the export (fine-tuning a shipped model): its architecture and weights, a fresh optimizer
"$PY" "$ROOT/tools/train/train_dit.py" --data "$WORK/data" --ae "$WORK/run/ae" --out "$WORK/run_ft" --steps 5 \
      --batch 4 --clip 9 --log-every 5 --val-every 1000 --cache "$WORK/latents.pt" --init-from "$WORK/model" \
      --rollout-ctx 0.5 --rollout-every 10 --rollout-pool 4 --no-export
# DMD from the export (teacher = the export, critic checkpointed beside the generator), then resumed (and
# exported with its critic), then continued from those exports as on a new machine, with --dmd-reg
"$PY" "$ROOT/tools/train/train_dit.py" --data "$WORK/data" --ae "$WORK/run/ae" --out "$WORK/run_dmd" --steps 3 \
      --batch 2 --clip 5 --log-every 3 --val-every 1000 --cache "$WORK/latents.pt" --init-from "$WORK/model" \
      --dmd --critic-steps 2 --no-export
"$PY" "$ROOT/tools/train/train_dit.py" --data "$WORK/data" --ae "$WORK/run/ae" --out "$WORK/run_dmd" --steps 4 \
      --batch 2 --log-every 1 --val-every 1000 --cache "$WORK/latents.pt" --resume --teacher "$WORK/model" \
      --dmd --critic-steps 2 | tee "$WORK/dmd_resume.txt"
grep -q "resumed the critic" "$WORK/dmd_resume.txt"
"$PY" "$ROOT/tools/train/train_dit.py" --data "$WORK/data" --ae "$WORK/run/ae" --out "$WORK/run_dmd2" --steps 1 \
      --batch 2 --clip 5 --log-every 1 --val-every 1000 --cache "$WORK/latents.pt" --init-from "$WORK/run_dmd/model" \
      --teacher "$WORK/model" --critic-from "$WORK/run_dmd/critic_model" --dmd-reg 0.5 --dmd --critic-steps 1 --no-export
printf 'right\nright\nright+torch\ndown\n-\nleft\n' > "$WORK/actions.txt"
"$BUILD/host/wm-run/wm-run" --model "$WORK/model" --frames 16 --prompt "snowy night fog" --seed 0 \
      --actions "$WORK/actions.txt" --latents "$WORK/engine.lat" --out "$WORK/engine.rgb" --threads 2
"$PY" "$ROOT/tools/train/engine_check.py" "$WORK/model" "$WORK/engine.lat" "$WORK/engine.rgb" \
      "snowy night fog" "$WORK/actions.txt"
# a real context: 4 latent frames (video frames 0..12) of a held-out episode, then generation
EP=$(ls "$WORK"/data/ep_*.safetensors | tail -1)
PROMPT=$("$PY" "$ROOT/tools/train/encode_context.py" "$WORK/model" "$EP" 4 "$WORK/ctx.lat" --actions "$WORK/ctx_actions.txt")
"$BUILD/host/wm-run/wm-run" --model "$WORK/model" --prefill-latents "$WORK/ctx.lat" --frames 29 --prompt "$PROMPT" \
      --seed 0 --actions "$WORK/ctx_actions.txt" --latents "$WORK/ctx_engine.lat" --out "$WORK/ctx_engine.rgb" --threads 2
"$PY" "$ROOT/tools/train/engine_check.py" "$WORK/model" "$WORK/ctx_engine.lat" "$WORK/ctx_engine.rgb" "$PROMPT" \
      "$WORK/ctx_actions.txt" --prefill "$WORK/ctx.lat"
# wm-run refuses a prefill that is not whole latent frames, and --frames below the context (exit 2)
head -c 1000 "$WORK/ctx.lat" > "$WORK/bad.lat"
for bad in "--prefill-latents $WORK/bad.lat" "--prefill-latents $WORK/ctx.lat --frames 12"; do
  rc=0; "$BUILD/host/wm-run/wm-run" --model "$WORK/model" --prompt x --quiet $bad 2>"$WORK/bad.txt" || rc=$?
  [ "$rc" = 2 ] || { echo "smoke: wm-run $bad: exit $rc, expected 2" >&2; cat "$WORK/bad.txt" >&2; exit 1; }
done
# the fidelity tool in its context mode (PSNR/SSIM of frames 1-16 after the 13-frame context)
"$PY" "$ROOT/tools/eval/fidelity.py" --model "$WORK/model" --build "$BUILD" --frames 40 --look-frames 4 \
      --out-dir "$WORK/fidelity" --check
grep -q '"frames_1_16_mode": "after_context"' "$WORK/fidelity/fidelity.json"
"$PY" "$ROOT/tools/train/plot_curves.py" "$WORK/run" --out "$WORK/curves.png"
echo "smoke: OK ($WORK)"
