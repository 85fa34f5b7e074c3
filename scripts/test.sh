#!/usr/bin/env bash
# Runs every test of mcdrop on a fresh Debian 12 machine: installs the
# dependencies, builds (optimised, x86-64-v3), runs the CTest suite, then
# rebuilds the core tests under AddressSanitizer + UndefinedBehaviorSanitizer
# and runs them too.
#   scripts/test.sh            # everything
#   MCDROP_SKIP_SANITIZERS=1 scripts/test.sh   # the optimised build only
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
