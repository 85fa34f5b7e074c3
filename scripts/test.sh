#!/usr/bin/env bash
# Runs every test of mcdrop on a fresh Debian 12 machine: installs the
# dependencies, builds (optimised, x86-64-v3), runs the CTest suite, then
# rebuilds the core tests under AddressSanitizer + UndefinedBehaviorSanitizer
# and runs them too.
# Last, it builds the Docker image with buildah and tests it
# (deploy/test-image.sh).
#   scripts/test.sh            # everything
#   MCDROP_SKIP_SANITIZERS=1 MCDROP_SKIP_IMAGE=1 scripts/test.sh   # the optimised build only
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-deps.sh

jobs=$(nproc)
echo "== build (Release)"
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j "$jobs"
echo "== tests (Release)"
ctest --test-dir build --output-on-failure -j "$jobs"

if [ -z "${MCDROP_SKIP_SANITIZERS:-}" ]; then
  echo "== build (AddressSanitizer + UndefinedBehaviorSanitizer)"
  cmake -S . -B build-asan -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DMCDROP_SANITIZE=address,undefined -DMCDROP_BUILD_BENCH=OFF >/dev/null
  cmake --build build-asan -j "$jobs"
  echo "== tests (AddressSanitizer + UndefinedBehaviorSanitizer)"
  ctest --test-dir build-asan --output-on-failure -j "$jobs"
fi

if [ -z "${MCDROP_SKIP_IMAGE:-}" ]; then
  echo "== Docker image (buildah)"
  bash deploy/test-image.sh build/server/mcdrop-server build/client/mcdrop-client
fi
