#!/usr/bin/env python3
"""Turns conv_bench JSON (with repetitions) into the table of
docs/performance.md: the engine in f32 and bf16 beside oneDNN's own
convolution + matmul on the same shapes, medians from the same run.
  build/bench/conv_bench --benchmark_repetitions=5 --benchmark_report_aggregates_only=true \\
      --benchmark_out=conv.json --benchmark_out_format=json && bench/conv_report.py conv.json"""
import json
import sys


def main(path):
    data = json.load(open(path))
    med = {}
    for b in data["benchmarks"]:
        if b.get("aggregate_name") == "median":
            kind, rest = b["run_name"].split("/", 1)
            med[(kind, rest.replace("/real_time", ""))] = b
    ctx = data["context"]
    print(f"Machine: {ctx.get('num_cpus')} CPUs at {ctx.get('mhz_per_cpu')} MHz; date {ctx.get('date')}")
    print()
    print("| net | T | B | threads | engine f32 | GFLOP/s | engine bf16 | oneDNN conv + matmul "
          "| GFLOP/s | f32 / library |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    keys = sorted({k for (kind, k) in med if kind == "BM_ConvEngine"},
                  key=lambda k: [int(p.split(":")[1]) for p in k.split("/")])
    g = lambda b: b["GFLOPs"] / 1e9 if b["GFLOPs"] > 1e6 else b["GFLOPs"]  # noqa: E731
    for k in keys:
        p = dict(x.split(":") for x in k.split("/"))
        e, bf, lib = (med.get((n, k)) for n in ("BM_ConvEngine", "BM_ConvEngineBf16", "BM_LibraryConv"))
        ms = lambda b: f"{b['real_time'] / 1000:.3f} ms" if b else "-"  # noqa: E731
        print(f"| {'lenet' if p['net'] == '0' else 'lenet_all'} | {p['T']} | {p['B']} | {p['threads']} | "
              f"{ms(e)} | {g(e):.0f} | {ms(bf)} | {ms(lib)} | {g(lib):.0f} | "
              f"{g(e) / g(lib):.0%} |")


if __name__ == "__main__":
    main(sys.argv[1])
