# mcdrop-server image: a builder on debian:bookworm compiles with Debian's
# -dev packages; the runtime on debian:bookworm-slim holds only the shared
# libraries, the binaries and the bundled models, and runs as a non-root user.
#
#   docker build -t mcdrop .            (or, without an engine: deploy/test-image.sh)
#   docker run -p 50051:50051 -p 8000:8000 -p 9464:9464 mcdrop
#   docker run -v $PWD/my-models:/models:ro mcdrop --model /models/mine.safetensors
#   docker run -v $PWD/repo:/repo:ro mcdrop --model_repository /repo
#
# The binaries target x86-64-v3 (AVX2, FMA): any x86 server from the last
# decade; the dense products run on oneDNN kernels generated at run time for
# the CPU the container lands on (AVX-512, AVX512-BF16, AMX where present;
# --max_cpu_isa=avx2 pins them). Build with
# --build-arg CMAKE_FLAGS=-DMCDROP_NATIVE=ON to tune the rest for the build
# host instead.

FROM debian:bookworm AS build
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      build-essential cmake ninja-build pkg-config \
      libeigen3-dev libabsl-dev libdnnl-dev ocl-icd-opencl-dev \
      libprotobuf-dev protobuf-compiler \
      libgrpc++-dev libgrpc-dev protobuf-compiler-grpc prometheus-cpp-dev \
      librandom123-dev zlib1g-dev libspdlog-dev libfmt-dev nlohmann-json3-dev \
      libboost-dev libssl-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY CMakeLists.txt ./
COPY proto proto
COPY core core
COPY scoring scoring
COPY train train
COPY server server
COPY client client
COPY tools tools
ARG CMAKE_FLAGS=""
RUN cmake -S . -B /build -G Ninja -DCMAKE_BUILD_TYPE=Release \
      -DMCDROP_BUILD_TESTS=OFF -DMCDROP_BUILD_BENCH=OFF ${CMAKE_FLAGS} \
 && cmake --build /build --target mcdrop-server mcdrop-client mcdrop-model \
 && strip /build/server/mcdrop-server /build/client/mcdrop-client /build/tools/mcdrop-model

FROM debian:bookworm-slim
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      libabsl20220623 libc-ares2 libcivetweb1 libdnnl2 libfmt9 libgrpc++1.51 libgrpc29 \
      libprometheus-cpp-core1.0 libprometheus-cpp-pull1.0 libprotobuf32 libre2-9 \
      libspdlog1.10 libssl3 zlib1g \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin mcdrop
COPY --from=build /build/server/mcdrop-server /build/client/mcdrop-client \
     /build/tools/mcdrop-model /usr/local/bin/
COPY models/concrete.safetensors models/digits.safetensors /models/
USER 10001:10001
# gRPC (mcdrop.v1 and the Open Inference Protocol), HTTP/REST (OIP), metrics.
EXPOSE 50051 8000 9464
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
  CMD ["mcdrop-client", "health", "--target", "localhost:50051", "--timeout", "2s"]
ENTRYPOINT ["mcdrop-server"]
CMD ["--model", "/models/concrete.safetensors", "--model", "/models/digits.safetensors", \
     "--port", "50051", "--http_port", "8000", "--metrics_port", "9464"]
