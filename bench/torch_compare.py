#!/usr/bin/python3
"""MC dropout in PyTorch beside mcdrop's engine, same networks, same machine.

Networks (as in bench/engine_bench.cc and bench/conv_bench.cc):
  a: 13 -> 50 -> 1, dropout 0.05 before both layers
  b: 784 -> 1024 -> 1024 -> 10, dropout 0.5 before the last two layers
  lenet: the paper's LeNet on 1 x 28 x 28 (conv 20@5x5, max-pool 2,
         conv 50@5x5, max-pool 2, dense 500 + ReLU, dropout 0.5, dense 10)
  lenet_all: the same with dropout 0.5 after each pooling too

PyTorch forms, each with dropout on (model.train()) under torch.no_grad():
  naive:   T forward passes of the B rows
  batched: one forward pass of the B rows repeated T times
  cached:  the layers before the first dropout once on the B rows, then the
           rest on the result repeated T times (baal's MCCaching idea)

The engine's times come from build/bench/engine_bench (Google Benchmark,
median of repetitions) run by this script for the same configurations, in
f32 and bf16. Prints a Markdown table (docs/performance.md).

Run with the system OpenBLAS's own kernel choice (see the environment notes):
  env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python3 bench/torch_compare.py
"""
import argparse
import json
import os
import statistics
import subprocess
import time

import torch
import torch.nn as nn

CONFIGS = [  # (net, B, T, threads)
    ("a", 1, 100, 1),
    ("a", 1, 10000, 1),
    ("b", 1, 100, 2),
    ("b", 32, 100, 2),
]
CONV_CONFIGS = [(net, B, T, 2) for net in ("lenet", "lenet_all")
                for B in (1, 32) for T in (10, 100, 1000)]
INPUT = {"a": (13,), "b": (784,), "lenet": (1, 28, 28), "lenet_all": (1, 28, 28)}


def network(name):
    torch.manual_seed(1)
    if name.startswith("lenet"):
        drop = [nn.Dropout(0.5)] if name == "lenet_all" else []
        return nn.Sequential(nn.Conv2d(1, 20, 5), nn.MaxPool2d(2), *drop,
                             nn.Conv2d(20, 50, 5), nn.MaxPool2d(2), *drop,
                             nn.Flatten(), nn.Linear(800, 500), nn.ReLU(),
                             nn.Dropout(0.5), nn.Linear(500, 10))
    if name == "a":
        return nn.Sequential(nn.Dropout(0.05), nn.Linear(13, 50), nn.ReLU(),
                             nn.Dropout(0.05), nn.Linear(50, 1))
    return nn.Sequential(nn.Linear(784, 1024), nn.ReLU(), nn.Dropout(0.5),
                         nn.Linear(1024, 1024), nn.ReLU(), nn.Dropout(0.5),
                         nn.Linear(1024, 10))


def split_prefix(net):
    """The modules before the first Dropout, and the rest."""
    mods = list(net)
    first = next(i for i, m in enumerate(mods) if isinstance(m, nn.Dropout))
    return nn.Sequential(*mods[:first]), nn.Sequential(*mods[first:])


def median_seconds(fn, repeats, min_time=0.2):
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        n, start = 0, time.perf_counter()
        while True:
            fn()
            n += 1
            elapsed = time.perf_counter() - start
            if elapsed >= min_time:
                break
        times.append(elapsed / n)
    return statistics.median(times)


def torch_times(name, B, T, repeats):
    net = network(name).train()
    x = torch.randn(B, *INPUT[name])
    prefix, rest = split_prefix(net)
    ones = (1,) * (x.dim() - 1)

    def naive():
        for _ in range(T):
            net(x)

    def batched():
        net(x.repeat(T, *ones))

    def cached():
        h = prefix(x)
        rest(h.repeat(T, *((1,) * (h.dim() - 1))))

    with torch.no_grad():
        return {f: median_seconds(fn, repeats)
                for f, fn in (("naive", naive), ("batched", batched),
                              ("cached", cached))}


NET_ARG = {"a": 0, "b": 1, "lenet": 0, "lenet_all": 1}


def engine_times(binary, repeats, configs, prefix="BM_Engine"):
    names = "|".join(f"net:{NET_ARG[n]}/T:{T}/B:{B}/threads:{th}/"
                     for n, B, T, th in configs)
    out = subprocess.run(
        [binary, f"--benchmark_filter={prefix}(Bf16)?/({names})",
         f"--benchmark_repetitions={repeats}",
         "--benchmark_report_aggregates_only=true",
         "--benchmark_min_time=0.2", "--benchmark_format=json"],
        check=True, capture_output=True, text=True).stdout
    times = {}
    for b in json.loads(out)["benchmarks"]:
        if b.get("aggregate_name") != "median":
            continue
        seconds = b["real_time"] * {"us": 1e-6, "ms": 1e-3, "ns": 1e-9}[
            b["time_unit"]]
        times[b["run_name"]] = seconds
    return times


def openblas_kernel():
    """The OpenBLAS build and kernel (core) the process's BLAS runs, if any."""
    import ctypes
    for lib in ("libblas.so.3", "libopenblas.so.0"):
        try:
            blas = ctypes.CDLL(lib)
            blas.openblas_get_corename.restype = ctypes.c_char_p
            blas.openblas_get_config.restype = ctypes.c_char_p
            return (f"{blas.openblas_get_config().decode()}, core "
                    f"{blas.openblas_get_corename().decode()}")
        except (OSError, AttributeError):
            continue
    return "not OpenBLAS"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--engine", default="build/bench/engine_bench")
    ap.add_argument("--conv_engine", default="build/bench/conv_bench")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--only", choices=("dense", "conv"), default=None)
    args = ap.parse_args()
    runs = []
    if args.only != "conv":
        runs.append((CONFIGS, engine_times(args.engine, args.repeats, CONFIGS), "BM_Engine"))
    if args.only != "dense":
        runs.append((CONV_CONFIGS, engine_times(args.conv_engine, args.repeats, CONV_CONFIGS,
                                                "BM_ConvEngine"), "BM_ConvEngine"))
    print(f"torch {torch.__version__}, BLAS: {openblas_kernel()}, "
          f"OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE', '(unset)')}, "
          f"MKLDNN (oneDNN) in torch: {torch.backends.mkldnn.is_available()}")
    print()
    print("| net | B | T | threads | torch naive | torch batched | torch cached "
          "| mcdrop f32 | mcdrop bf16 | best torch / mcdrop f32 |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for configs, engine, prefix in runs:
        for name, B, T, threads in configs:
            torch.set_num_threads(threads)
            t = torch_times(name, B, T, args.repeats)
            key = f"net:{NET_ARG[name]}/T:{T}/B:{B}/threads:{threads}"
            f32 = engine[f"{prefix}/{key}/real_time"]
            bf16 = engine[f"{prefix}Bf16/{key}/real_time"]
            best = min(t.values())
            ms = lambda s: f"{s * 1e3:.3f} ms"  # noqa: E731
            print(f"| {name} | {B} | {T} | {threads} | {ms(t['naive'])} | "
                  f"{ms(t['batched'])} | {ms(t['cached'])} | {ms(f32)} | "
                  f"{ms(bf16)} | {best / f32:.1f}x |")


if __name__ == "__main__":
    main()
