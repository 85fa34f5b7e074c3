#!/usr/bin/env python3
"""Conformal prediction sets of the bundled classifiers: coverage and size.

For each classifier the held-out test rows (never trained on: digits, the
rows i % 4 == 3 of digits.csv.gz; fashion_lenet, Fashion-MNIST's 10,000 test
images) are shuffled (seed r, for r in range(--repeats)) and cut in halves:
`mcdrop-model calibrate` calibrates the model on the first half (scores lac
and aps, T passes), and the served model answers the second half with
set_levels 0.9 and 0.95. Reports mean coverage and mean set size over the
repeats (with the standard error of the mean), and the accuracy of the
predicted class for scale.

  experiments/calibration/class_sets.py --build build [--repeats 10] [--out sets.md]
"""
import argparse
import gzip
import math
import os
import subprocess
import sys
import tempfile

import grpc
import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "bench"))
sys.path.insert(0, os.path.join(ROOT, "client", "python"))
sys.path.insert(0, os.path.join(ROOT, "experiments", "fashion"))
from adaptive_bench import free_port  # noqa: E402
from mcdrop.v1 import inference_pb2 as pb  # noqa: E402
from mcdrop.v1 import inference_pb2_grpc as pb_grpc  # noqa: E402

LEVELS = [0.9, 0.95]
SCORES = ["lac", "aps"]


def digits_rows(path):
    with gzip.open(path, "rt") as f:
        rows = np.array([[float(v) for v in line.split(",")] for line in f if line.strip()])
    test = rows[np.arange(len(rows)) % 4 == 3]
    return test[:, :-1].astype(np.float32), test[:, -1].astype(int)


def fashion_rows():
    from fashion_data import idx
    x = idx("t10k-images-idx3-ubyte.gz").reshape(-1, 784).astype(np.float32)
    y = idx("t10k-labels-idx1-ubyte.gz").astype(int)
    return x, y


def calibrate(args, tmp, model, name, x, y, score, seed):
    csv = os.path.join(tmp, f"{name}.csv")
    np.savetxt(csv, np.column_stack([x, y]), delimiter=",", fmt="%.9g")
    out = os.path.join(tmp, f"{name}.safetensors")
    subprocess.run([os.path.join(args.build, "tools", "mcdrop-model"), "calibrate", model, "--data",
                    csv, "--out", out, "--samples", str(args.samples[name.split("_")[0]]),
                    "--score", score, "--seed", str(seed), "--source", name],
                   check=True, stdout=subprocess.DEVNULL)
    os.remove(csv)
    return out


def evaluate(stub, name, x, y, samples, seed):
    covered = {l: [] for l in LEVELS}
    size = {l: [] for l in LEVELS}
    correct = []
    for start in range(0, len(x), 250):
        xb, yb = x[start:start + 250], y[start:start + 250]
        req = pb.PredictRequest(model=name, shape=list(xb.shape), inputs=xb.ravel().tolist(),
                                seed=seed + start, samples=samples, set_levels=LEVELS)
        resp = stub.Predict(req, timeout=600)
        for row, label in zip(resp.rows, yb):
            correct.append(row.classification.predicted_class == label)
            for s in row.classification.prediction_sets:
                covered[s.level].append(label in s.classes)
                size[s.level].append(len(s.classes))
    return ({l: float(np.mean(covered[l])) for l in LEVELS},
            {l: float(np.mean(size[l])) for l in LEVELS}, float(np.mean(correct)))


def mean_se(v):
    v = np.asarray(v, dtype=np.float64)
    return v.mean(), v.std(ddof=1) / math.sqrt(len(v)) if len(v) > 1 else 0.0


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--digits", default=os.path.join(ROOT, "..", "shared", "data", "digits", "digits.csv.gz"))
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--fashion_repeats", type=int, default=3)
    ap.add_argument("--out", default="class-sets.md")
    args = ap.parse_args()
    args.samples = {"digits": 1000, "fashion": 100}
    data = {"digits": (os.path.join(ROOT, "models", "digits.safetensors"), *digits_rows(args.digits), args.repeats),
            "fashion": (os.path.join(ROOT, "models", "fashion_lenet.safetensors"), *fashion_rows(),
                        args.fashion_repeats)}
    tmp = tempfile.mkdtemp()
    lines = ["| model | test rows (cal. / eval.) | T | score | repeats | accuracy | " +
             " | ".join(f"{int(l * 100)}% coverage | {int(l * 100)}% mean set size" for l in LEVELS) + " |",
             "| --- | --- | --- | --- | --- | --- | " + " | ".join("--- | ---" for _ in LEVELS) + " |"]
    for key, (model, x, y, repeats) in data.items():
        half = len(x) // 2
        plan = []
        for r in range(repeats):
            perm = np.random.default_rng(r).permutation(len(x))
            cal, ev = perm[:half], perm[half:]
            for score in SCORES:
                name = f"{key}_{score}_{r}"
                plan.append((name, calibrate(args, tmp, model, name, x[cal], y[cal], score, 100 + r), ev, r))
        port = free_port()
        cmd = [os.path.join(args.build, "server", "mcdrop-server"), "--host", "127.0.0.1", "--port", str(port),
               "--metrics_port", "0", "--http_port", "-1"]
        for name, path, _, _ in plan:
            cmd += ["--model", f"{name}={path}"]
        server = subprocess.Popen(cmd, stderr=subprocess.DEVNULL)
        res = {s: [] for s in SCORES}
        try:
            channel = grpc.insecure_channel(f"127.0.0.1:{port}", options=[
                ("grpc.max_receive_message_length", 1 << 28), ("grpc.max_send_message_length", 1 << 28)])
            grpc.channel_ready_future(channel).result(timeout=60)
            stub = pb_grpc.InferenceStub(channel)
            for name, _, ev, r in plan:
                res[name.split("_")[1]].append(evaluate(stub, name, x[ev], y[ev], args.samples[key], 7000 + r))
        finally:
            server.terminate()
            server.wait()
        for score in SCORES:
            cells = []
            for l in LEVELS:
                c, cse = mean_se([100 * e[0][l] for e in res[score]])
                s, sse = mean_se([e[1][l] for e in res[score]])
                cells.append(f"{c:.1f} +- {cse:.1f} | {s:.2f} +- {sse:.2f}")
            acc, _ = mean_se([100 * e[2] for e in res[score]])
            lines.append(f"| {os.path.basename(model)} | {half} / {len(x) - half} | {args.samples[key]} | {score} | "
                         f"{repeats} | {acc:.1f} | " + " | ".join(cells) + " |")
        print(f"{key}: done", file=sys.stderr)
    text = "\n".join(lines)
    with open(args.out, "w") as f:
        f.write(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
