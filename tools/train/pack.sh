#!/usr/bin/env bash
# pack.sh - packs a training run folder into <= 15 MiB pieces (the GPU machine returns at most 8 files
# of <= 16 MiB, 64 MiB in all) and unpacks them again.
#
#   tools/train/pack.sh ae  RUN OUTDIR     # after train_ae: ae/ (with optimizer state), ae_log.csv, ae_samples.png
#   tools/train/pack.sh dit RUN OUTDIR     # after train_dit: ae/ params only, dit/, both logs, samples
#   tools/train/pack.sh unpack PARTSDIR RUN # joins RUN.tar.part-* from PARTSDIR and extracts into RUN
# The exported model (RUN/model) is left out: tools/train/export.py rebuilds it from RUN on any machine.
set -euo pipefail
MODE=$1; SRC=$2; DST=$3
case "$MODE" in
  ae|dit)
    cd "$SRC"
    if [ "$MODE" = ae ]; then
      FILES=$(ls -d ae ae_log.csv ae_samples.png 2>/dev/null)
    else
      FILES=$(ls -d ae/params-*.safetensors ae/state.json dit ae_log.csv dit_log.csv ae_samples.png dit_samples.png 2>/dev/null)
    fi
    mkdir -p "$DST"
    tar cf - $FILES | split -b 15m -d -a 1 - "$DST/run.tar.part-"
    ls -la "$DST"
    n=$(ls "$DST"/run.tar.part-* | wc -l)
    [ "$n" -le 7 ] || { echo "pack: $n parts: over the 8-file limit" >&2; exit 1; } ;;
  unpack)
    mkdir -p "$DST"
    cat "$SRC"/run.tar.part-* | tar xf - -C "$DST"
    ls -la "$DST" ;;
  *) echo "usage: pack.sh ae|dit RUN OUTDIR | pack.sh unpack PARTSDIR RUN" >&2; exit 2 ;;
esac
