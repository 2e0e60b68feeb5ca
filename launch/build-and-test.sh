#!/usr/bin/env bash
# Installs missing Debian packages, builds convnet (Release, Ninja) into
# ${BUILD_DIR:-build} and runs the whole test suite with ctest.
set -euo pipefail
cd "$(dirname "$0")/.."
./launch/install-deps.sh
build_dir=${BUILD_DIR:-build}
cmake -S . -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=${BUILD_TYPE:-Release}
cmake --build "$build_dir" --parallel "${JOBS:-$(nproc)}"
ctest --test-dir "$build_dir" --output-on-failure --parallel "${JOBS:-$(nproc)}" --timeout 600
