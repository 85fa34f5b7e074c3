#!/usr/bin/env python3
"""Turns engine_bench JSON (with repetitions) into the markdown table of
docs/performance.md: medians per configuration, and the engine / plain-GEMM
GFLOP/s ratio computed from medians measured in the same run."""
import json
import sys


def main(path):
    data = json.load(open(path))
    med = {}
    for b in data["benchmarks"]:
        if b.get("aggregate_name") != "median":
            continue
        name = b["run_name"]
        kind, rest = name.split("/", 1)
        key = rest.replace("/real_time", "")
        med[(kind, key)] = b
    ctx = data["context"]
    print(f"Machine: {ctx.get('num_cpus')} CPUs at {ctx.get('mhz_per_cpu')} MHz; "
          f"build {ctx.get('build_arch')}; Eigen SIMD: {ctx.get('eigen_simd')}; "
          f"masks: {ctx.get('mask_generator')}; "
          f"date {ctx.get('date')}")
    print()
    print("| net | T | B | threads | time/request | samples/s | engine GFLOP/s "
          "| plain GEMM GFLOP/s | ratio | mask share |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for (kind, key), b in sorted(med.items(), key=lambda kv: [int(p.split(':')[1]) for p in kv[0][1].split('/')]):
        if kind != "BM_Engine":
            continue
        parts = dict(p.split(":") for p in key.split("/"))
        g = med.get(("BM_PlainGemm", key))
        eng = b["GFLOPs"] / 1e9 if b["GFLOPs"] > 1e6 else b["GFLOPs"]
        plain = (g["GFLOPs"] / 1e9 if g["GFLOPs"] > 1e6 else g["GFLOPs"]) if g else float("nan")
        t_us = b["real_time"]
        unit = b.get("time_unit", "us")
        net = "a" if parts["net"] == "0" else "b"
        print(f"| {net} | {parts['T']} | {parts['B']} | {parts['threads']} | "
              f"{t_us:.1f} {unit} | {b['samples_per_s']:.3g} | {eng:.1f} | {plain:.1f} | "
              f"{eng / plain:.0%} | {b['mask_share']:.0%} |")


if __name__ == "__main__":
    main(sys.argv[1])
