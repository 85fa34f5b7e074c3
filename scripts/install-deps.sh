#!/usr/bin/env bash
# Installs every build, test and run dependency of mcdrop from Debian 12's
# packages. Idempotent: packages already present are skipped, and apt-get update
# runs only when something is missing.
set -euo pipefail

PACKAGES=(
  build-essential cmake ninja-build pkg-config git ca-certificates openssl
  libeigen3-dev libabsl-dev libdnnl-dev ocl-icd-opencl-dev
  libprotobuf-dev protobuf-compiler
  libgrpc++-dev libgrpc-dev protobuf-compiler-grpc
  prometheus-cpp-dev
  libgtest-dev libgmock-dev googletest libbenchmark-dev
  librandom123-dev zlib1g-dev libspdlog-dev libfmt-dev nlohmann-json3-dev
  libboost-dev libssl-dev
  clang clang-format libclang-rt-14-dev
  prometheus haproxy curl python3 python3-grpcio python3-protobuf python3-pip python3-venv python3-setuptools python3-yaml python3-numpy python3-h5py python3-torch python3-onnx time
)

# Optional extras: --with-plots adds gnuplot for the experiment figures.
if [ "${1:-}" = "--with-plots" ]; then PACKAGES+=(gnuplot-nox); fi

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#PACKAGES[@]} packages present"
  exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
