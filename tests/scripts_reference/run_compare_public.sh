#!/bin/sh
# run_compare_public.sh SOURCE_DIR OUT_DIR - tools/reference/compare_public.py at a CPU size, fp32 and fp64.
# Exit 77 (skipped) unless $WM_SELFFORCING_SRC is the root of a Self-Forcing clone, or without a Python
# with torch (../scripts_convert/run_py.sh picks the interpreter).
src=$1
out=${2:-.}
if [ -z "${WM_SELFFORCING_SRC:-}" ]; then
    echo "SKIP: set WM_SELFFORCING_SRC to a clone of guandeh17/Self-Forcing"
    exit 77
fi
for dt in fp32 fp64; do
    sh "$src/tests/scripts_convert/run_py.sh" "$src" "$src/tools/reference/compare_public.py" \
        --selfforcing "$WM_SELFFORCING_SRC" --layers 2 --latent 8 12 --dtype $dt -q \
        --json "$out/compare_public_$dt.json" || exit $?
done
