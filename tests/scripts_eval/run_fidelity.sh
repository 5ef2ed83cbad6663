#!/bin/sh
# run_fidelity.sh SOURCE_DIR BINARY_DIR - the quick fidelity run (tools/eval/fidelity.py --check) with
# the project's venv, writing into BINARY_DIR/fidelity_test. Exit 77 (skipped) without a Python that
# has numpy and matplotlib (scripts/setup.sh --python creates .venv); $WM_PYTHON picks another.
src=$1
bin=$2
for py in "${WM_PYTHON:-}" "$src/.venv/bin/python"; do
    [ -n "$py" ] || continue
    if "$py" -c "import numpy, matplotlib" >/dev/null 2>&1; then
        exec "$py" "$src/tools/eval/fidelity.py" --check --build "$bin" --out-dir "$bin/fidelity_test"
    fi
done
echo "SKIP: no Python with numpy and matplotlib (scripts/setup.sh --python creates .venv)"
exit 77
