#!/usr/bin/env bash
# Runs every test of mcdrop on a fresh Debian 12 machine: installs the
# dependencies, builds (optimised, x86-64-v3) and runs the CTest suite; a
# 90-second soak of the server (scripts/soak.sh); rebuilds everything under
# AddressSanitizer + UndefinedBehaviorSanitizer and runs the whole suite again;
# runs the engine's concurrency tests under ThreadSanitizer; fuzzes the model
# loader and the request path for a minute each (scripts/fuzz.sh). Last, it
# builds the Docker image with buildah and tests it (deploy/test-image.sh).
#   scripts/test.sh            # everything
#   MCDROP_SKIP_SANITIZERS=1 MCDROP_SKIP_FUZZ=1 MCDROP_SKIP_SOAK=1 MCDROP_SKIP_IMAGE=1 \
#     scripts/test.sh          # the optimised build and its tests only
#   MCDROP_SOAK_SECONDS=600 MCDROP_FUZZ_SECONDS=600 scripts/test.sh   # longer runs
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-deps.sh

jobs=$(nproc)
echo "== build (Release)"
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j "$jobs"
echo "== tests (Release)"
ctest --test-dir build --output-on-failure -j "$jobs"

if [ -z "${MCDROP_SKIP_SOAK:-}" ]; then
  echo "== soak (${MCDROP_SOAK_SECONDS:-90} s at full load)"
  bash scripts/soak.sh --duration "${MCDROP_SOAK_SECONDS:-90}" --warmup 30
fi

if [ -z "${MCDROP_SKIP_SANITIZERS:-}" ]; then
  echo "== build (AddressSanitizer + UndefinedBehaviorSanitizer)"
  cmake -S . -B build-asan -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DMCDROP_SANITIZE=address,undefined -DMCDROP_BUILD_BENCH=OFF >/dev/null
  cmake --build build-asan -j "$jobs"
  echo "== tests (AddressSanitizer + UndefinedBehaviorSanitizer)"
  ctest --test-dir build-asan --output-on-failure -j "$jobs"

  echo "== engine and thread pool concurrency tests (ThreadSanitizer)"
  cmake -S . -B build-tsan -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DMCDROP_SANITIZE=thread -DMCDROP_BUILD_BENCH=OFF >/dev/null
  cmake --build build-tsan -j "$jobs" --target core_test
  TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1" build-tsan/tests/core/core_test \
    --gtest_filter='ThreadPoolTest.*:EngineTest.*:*ReferenceTest*:LayerListTest.*:AdaptiveTest.*:RoundsTest.*:PassStatsTest.*'
fi

if [ -z "${MCDROP_SKIP_FUZZ:-}" ]; then
  echo "== fuzzing (libFuzzer, ${MCDROP_FUZZ_SECONDS:-60} s per target)"
  bash scripts/fuzz.sh "${MCDROP_FUZZ_SECONDS:-60}"
fi

if [ -z "${MCDROP_SKIP_IMAGE:-}" ]; then
  echo "== Docker image (buildah)"
  bash deploy/test-image.sh build/server/mcdrop-server build/client/mcdrop-client
fi
