#!/usr/bin/env python3
"""Turns engine_bench JSON (with repetitions) into the tables of
docs/performance.md: the machine's FMA peak, then per request the engine in
f32 and bf16 beside the library's plain products of the same shapes (its
roof) and a plain Eigen GEMM, all medians from the same run. Ratios are
computed from those medians."""
import json
import sys


def gflops(b):
    g = b["GFLOPs"]
    return g / 1e9 if g > 1e6 else g


def key_order(key):
    return [int(p.split(":")[1]) for p in key.split("/")]


def main(path):
    data = json.load(open(path))
    med = {}
    for b in data["benchmarks"]:
        if b.get("aggregate_name") != "median":
            continue
        kind, rest = b["run_name"].split("/", 1)
        med[(kind, rest.replace("/real_time", ""))] = b
    ctx = data["context"]
    print(f"Machine: {ctx.get('num_cpus')} CPUs at {ctx.get('mhz_per_cpu')} MHz; "
          f"build {ctx.get('build_arch')}; kernels: {ctx.get('kernels')}; "
          f"masks: {ctx.get('mask_generator')}; date {ctx.get('date')}")
    print()
    peak = {}
    rows = []
    for isa in (0, 1):
        for threads in (1, 2):
            b = med.get(("BM_FmaPeak", f"avx512:{isa}/threads:{threads}"))
            if b:
                peak[(isa, threads)] = gflops(b)
                rows.append(f"| {'AVX-512' if isa else 'AVX2'} | {threads} | "
                            f"{gflops(b):.0f} |")
    if rows:
        print("| FP32 FMA peak | threads | GFLOP/s |")
        print("|---|---|---|")
        print("\n".join(rows))
        print()
    print("| net | T | B | threads | time/request | f32 GFLOP/s | % of AVX-512 peak "
          "| library products GFLOP/s | f32 / library | bf16 time | bf16 GFLOP/s "
          "| Eigen GEMM GFLOP/s | mask share |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    engine = [(k, b) for (kind, k), b in med.items() if kind == "BM_Engine"]
    for key, b in sorted(engine, key=lambda kv: key_order(kv[0])):
        parts = dict(p.split(":") for p in key.split("/"))
        threads = int(parts["threads"])
        eng = gflops(b)
        lib = med.get(("BM_LibraryGemm", key))
        bf = med.get(("BM_EngineBf16", key))
        plain = med.get(("BM_PlainGemm", key))
        p = peak.get((1, threads))
        unit = b.get("time_unit", "us")
        net = "a" if parts["net"] == "0" else "b"
        cells = [
            net, parts["T"], parts["B"], parts["threads"],
            f"{b['real_time']:.1f} {unit}", f"{eng:.1f}",
            f"{eng / p:.0%}" if p else "-",
            f"{gflops(lib):.1f}" if lib else "-",
            f"{eng / gflops(lib):.0%}" if lib else "-",
            f"{bf['real_time']:.1f} {bf.get('time_unit', 'us')}" if bf else "-",
            f"{gflops(bf):.1f}" if bf else "-",
            f"{gflops(plain):.1f}" if plain else "-",
            f"{b['mask_share']:.0%}",
        ]
        print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main(sys.argv[1])
