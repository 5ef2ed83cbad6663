#!/usr/bin/env bash
# test.sh - sets up and builds (scripts/setup.sh), then runs the CPU test suite.
#
#   scripts/test.sh                  all tests labelled cpu
#   scripts/test.sh -R abi           extra arguments go to ctest
#
# The other labels: gpu (needs an NVIDIA device, skipped without one) and slow; see the end of the output.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD_DIR=${WM_BUILD_DIR:-$ROOT/build}

"$ROOT/scripts/setup.sh"
cd "$BUILD_DIR"
status=0
ctest --output-on-failure --timeout 1800 -L cpu "$@" || status=$?
cat <<MSG

Other test labels (from $BUILD_DIR):
  ctest --output-on-failure -L gpu     # CUDA backend; exits 77 (skipped) without a device
  ctest --output-on-failure -L slow    # long rollouts and benchmarks
  ctest --output-on-failure            # everything
MSG
exit $status
