#!/usr/bin/env bash
# Quick start: installs the dependencies, builds mcdrop and runs the
# Monte-Carlo-dropout engine on the bundled model (concrete compressive
# strength), printing the predictive mean, standard deviation and a 95%
# interval for two mixes, and the deterministic (dropout off) prediction.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j "$(nproc)" --target mcdrop-model mcdrop-train
model=models/concrete.safetensors
echo
./build/tools/mcdrop-model info "$model"
echo
# Two mixes from the UCI data: 28-day (79.99 MPa measured) and 270-day (40.27 MPa).
rows="540,0,0,162,2.5,1040,676,28;332.5,142.5,0,228,0,932,594,270"
./build/tools/mcdrop-model predict "$model" --input "$rows" --samples 10000 --seed 7
echo
./build/tools/mcdrop-model predict "$model" --input "$rows" --deterministic
