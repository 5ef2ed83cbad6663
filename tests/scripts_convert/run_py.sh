#!/bin/sh
# run_py.sh SOURCE_DIR SCRIPT ARGS... - runs a Python test with the project's venv (tools/ need torch,
# numpy, safetensors). Exit 77 (skipped) when no interpreter has them: scripts/setup.sh --python
# creates .venv. $WM_PYTHON picks another interpreter.
src=$1
shift
for py in "${WM_PYTHON:-}" "$src/.venv/bin/python" python3; do
    [ -n "$py" ] || continue
    if "$py" -c "import torch, numpy, safetensors" >/dev/null 2>&1; then
        exec "$py" "$@"
    fi
done
echo "SKIP: no Python with torch, numpy and safetensors (scripts/setup.sh --python creates .venv)"
exit 77
