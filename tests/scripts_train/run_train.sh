#!/bin/sh
# The training tools' own tests (tools/train):
#   run_train.sh SOURCE_DIR selftest            selftest.py: the training forward against the engine's
#                                               streaming reference, checkpoints, export, --init-from,
#                                               --rollout-ctx, --dmd and --dmd-reg (CPU, seconds)
#   run_train.sh SOURCE_DIR smoke BUILD_DIR     smoke.sh: data, AE, DiT (+ resume, --init-from,
#                                               --rollout-ctx, --dmd, its resume and its continuation
#                                               from exports), export, the engine
#                                               on the result, fidelity.py (CPU, a few minutes)
# Python: $WM_PYTHON, else the venv (scripts/setup.sh --python), else python3. Exit 77 (skipped)
# without a Python that has torch, safetensors and numpy.
src=$1 what=$2 build=$3
. "$(dirname "$0")/torch_python.sh"
case "$what" in
    selftest) cd "$src/tools/train" && exec "$py" selftest.py ;;
    smoke) work=$(mktemp -d) || exit 1
           PYTHON=$py bash "$src/tools/train/smoke.sh" "$work/smoke" "$build"; rc=$?
           rm -rf "$work"; exit $rc ;;
    *) echo "usage: run_train.sh SOURCE_DIR selftest | smoke BUILD_DIR" >&2; exit 2 ;;
esac
