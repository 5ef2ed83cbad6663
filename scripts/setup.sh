#!/usr/bin/env bash
# setup.sh - installs what the build needs on Debian/Ubuntu (only the packages that are missing, with
# sudo when not root), then configures and builds wm into build/ (the CUDA backend too when nvcc is
# found).
#
#   scripts/setup.sh                 install + configure + build
#   scripts/setup.sh --no-build      install only
#   scripts/setup.sh --python        also a Python venv in .venv for tools/ (numpy safetensors matplotlib torch
#                                    transformers sentencepiece peft)
#
# Environment: WM_BUILD_DIR (default build), WM_BUILD_TYPE (default Release), WM_CMAKE_ARGS (extra
# cmake arguments, e.g. "-DWM_SANITIZE=ON" or "-DWM_CUDA=OFF"), WM_JOBS (default: all cores).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD_DIR=${WM_BUILD_DIR:-$ROOT/build}
BUILD=1
PYTHON=0
for arg in "$@"; do
    case "$arg" in
    --no-build) BUILD=0 ;;
    --python) PYTHON=1 ;;
    -h | --help)
        sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'
        exit 0
        ;;
    *)
        echo "setup.sh: unknown argument '$arg' (try --help)" >&2
        exit 2
        ;;
    esac
done

say() { echo "setup: $*" >&2; }

# --- system packages ---
PACKAGES=(build-essential cmake ninja-build pkg-config libcjson-dev libopenblas-dev libfaiss-dev
    libavcodec-dev libavformat-dev libswscale-dev libavutil-dev libsdl2-dev libpng-dev clang python3-venv ffmpeg
    xvfb xdotool)

if command -v dpkg-query > /dev/null && command -v apt-get > /dev/null; then
    missing=()
    for p in "${PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2> /dev/null | grep -q 'install ok installed' || missing+=("$p")
    done
    if ((${#missing[@]})); then
        SUDO=()
        if [ "$(id -u)" -ne 0 ]; then
            command -v sudo > /dev/null || { say "need root or sudo to install: ${missing[*]}"; exit 1; }
            SUDO=(sudo)
        fi
        say "installing ${missing[*]}"
        "${SUDO[@]}" apt-get update -q
        DEBIAN_FRONTEND=noninteractive "${SUDO[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}"
    else
        say "all ${#PACKAGES[@]} packages present"
    fi
else
    say "not a Debian system: install by hand the equivalents of: ${PACKAGES[*]}"
fi

# --- optional Python tools ---
if ((PYTHON)); then
    if [ ! -x "$ROOT/.venv/bin/python" ]; then
        say "creating $ROOT/.venv"
        python3 -m venv "$ROOT/.venv"
    fi
    "$ROOT/.venv/bin/python" -m pip install -q --upgrade pip
    "$ROOT/.venv/bin/python" -m pip install -q numpy safetensors matplotlib torch transformers sentencepiece peft
    say "Python tools: source .venv/bin/activate"
fi

((BUILD)) || exit 0

# --- CUDA: use nvcc when it is installed, even off PATH ---
if ! command -v nvcc > /dev/null; then
    for d in /usr/local/cuda/bin /usr/lib/nvidia-cuda-toolkit/bin; do
        if [ -x "$d/nvcc" ]; then
            export PATH="$d:$PATH"
            break
        fi
    done
fi
if command -v nvcc > /dev/null; then
    say "nvcc found ($(command -v nvcc)): building the CUDA backend too"
else
    say "no nvcc: building the CPU engine only"
fi

# --- configure and build ---
CMAKE_ARGS=(-S "$ROOT" -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE="${WM_BUILD_TYPE:-Release}")
[ -f "$BUILD_DIR/CMakeCache.txt" ] || CMAKE_ARGS+=(-G Ninja)
# shellcheck disable=SC2206 # WM_CMAKE_ARGS is a list of words on purpose
CMAKE_ARGS+=(${WM_CMAKE_ARGS:-})
cmake "${CMAKE_ARGS[@]}"
cmake --build "$BUILD_DIR" -j "${WM_JOBS:-$(nproc)}"
say "built into $BUILD_DIR"
