# Sourced by the scripts of this folder with $src set to the source tree: sets $py to a Python with
# torch, safetensors and numpy - $WM_PYTHON, else the venv (scripts/setup.sh --python), else python3 -
# or exits 77 (skipped) without one.
py=
for c in "${WM_PYTHON:-}" "$src/.venv/bin/python" python3; do
    [ -n "$c" ] && "$c" -c "import torch, safetensors, numpy" 2>/dev/null && { py=$c; break; }
done
[ -n "$py" ] || { echo "no Python with torch, safetensors and numpy: skipped"; exit 77; }
