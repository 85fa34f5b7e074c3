#!/usr/bin/env python3
"""Conformal against mixture intervals on the six UCI regression sets.

Protocol, per data set and split k (the paper's 20 splits, its test parts):
- the split's training part is shuffled (seed k) and cut 80 / 20: a model is
  trained with `mcdrop-train fit` on the 80% with the hyperparameters the
  paper's protocol chose for that split (docs/results.md; that grid search
  saw the whole training part, calibration rows included: the only link
  between the model and the calibration rows, two numbers chosen from a
  small grid);
- `mcdrop-model calibrate` scores the model on the other 20% (never trained
  on) at T passes and stores the calibration in the model file;
- the calibrated model is served by mcdrop-server and every test row is
  predicted at T passes with interval_levels 0.5, 0.8, 0.9, 0.95: the
  coverage and mean width of the mixture intervals (`intervals`) and the
  conformal ones (`conformal_intervals`) are counted.
Writes a markdown table (mean over splits, with the standard error of that
mean) and a JSON file of every split's figures.

  experiments/calibration/uci_conformal.py --build build --uci ../shared/data/uci \
      [--splits 20] [--samples 10000] [--out docs/calibration-results.md]
"""
import argparse
import json
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
from adaptive_bench import SETS, chosen_hyperparameters, free_port, read_ints  # noqa: E402
from mcdrop.v1 import inference_pb2 as pb  # noqa: E402
from mcdrop.v1 import inference_pb2_grpc as pb_grpc  # noqa: E402

LEVELS = [0.5, 0.8, 0.9, 0.95]


def split_rows(d, k):
    data = np.loadtxt(os.path.join(d, "data.txt"))
    features = read_ints(os.path.join(d, "index_features.txt"))
    target = read_ints(os.path.join(d, "index_target.txt"))[0]
    train = np.array(read_ints(os.path.join(d, f"index_train_{k}.txt")))
    test = np.array(read_ints(os.path.join(d, f"index_test_{k}.txt")))
    rng = np.random.default_rng(k)
    train = train[rng.permutation(len(train))]
    n_fit = int(round(0.8 * len(train)))
    table = np.column_stack([data[:, features], data[:, target]])
    return table[train[:n_fit]], table[train[n_fit:]], table[test]


def prepare(args, tmp, ds, k, p, tau):
    d = os.path.join(args.uci, ds)
    n_hidden = read_ints(os.path.join(d, "n_hidden.txt"))[0]
    epochs = read_ints(os.path.join(d, "n_epochs.txt"))[0] * args.epoch_multiplier
    fit, cal, test = split_rows(d, k)
    files = {}
    for name, rows in (("fit", fit), ("cal", cal)):
        files[name] = os.path.join(tmp, f"{ds}_{k}_{name}.csv")
        np.savetxt(files[name], rows, delimiter=",", fmt="%.17g")
    raw = os.path.join(tmp, f"{ds}_{k}.safetensors")
    model = os.path.join(tmp, f"{ds}_{k}_cal.safetensors")
    subprocess.run([os.path.join(args.build, "tools", "mcdrop-train"), "fit", "--data", files["fit"],
                    "--dropout", str(p), "--tau", str(tau), "--epochs", str(epochs), "--hidden",
                    str(n_hidden), "--seed", str(1000 + k), "--out", raw, "--quiet"],
                   check=True, stdout=subprocess.DEVNULL)
    subprocess.run([os.path.join(args.build, "tools", "mcdrop-model"), "calibrate", raw, "--data",
                    files["cal"], "--out", model, "--samples", str(args.samples), "--seed",
                    str(5000 + k), "--source", f"UCI {ds} split {k}, 20% of the training part"],
                   check=True, stdout=subprocess.DEVNULL)
    return model, test, len(fit), len(cal)


def score(stub, name, test, samples, seed):
    x = test[:, :-1].astype(np.float32)
    y = test[:, -1]
    req = pb.PredictRequest(model=name, shape=list(x.shape), inputs=x.ravel().tolist(), seed=seed,
                            samples=samples, interval_levels=LEVELS)
    resp = stub.Predict(req, timeout=600)
    out = {"mixture": {"coverage": [], "width": []}, "conformal": {"coverage": [], "width": []}}
    for kind, field in (("mixture", "intervals"), ("conformal", "conformal_intervals")):
        for i in range(len(LEVELS)):
            lo = np.array([getattr(r.outputs[0], field)[i].lower for r in resp.rows])
            hi = np.array([getattr(r.outputs[0], field)[i].upper for r in resp.rows])
            out[kind]["coverage"].append(float(np.mean((lo <= y) & (y <= hi))))
            out[kind]["width"].append(float(np.mean(hi - lo)))
    return out


def mean_se(values):
    v = np.array(values, dtype=np.float64)
    return float(v.mean()), float(v.std(ddof=1) / math.sqrt(len(v))) if len(v) > 1 else 0.0


def table(results):
    lines = ["| data set | splits | cal. rows | kind | " +
             " | ".join(f"{int(l * 100)}% coverage (width)" for l in LEVELS) + " |",
             "| --- | --- | --- | --- | " + " | ".join("---" for _ in LEVELS) + " |"]
    for ds, splits in results.items():
        for kind in ("mixture", "conformal"):
            cells = []
            for i in range(len(LEVELS)):
                c, cse = mean_se([s[kind]["coverage"][i] * 100 for s in splits])
                w, _ = mean_se([s[kind]["width"][i] for s in splits])
                cells.append(f"{c:.1f} +- {cse:.1f} ({w:.3g})")
            cal = int(np.mean([s["cal_rows"] for s in splits]))
            lines.append(f"| {ds} | {len(splits)} | {cal} | {kind} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--uci", default=os.path.join(ROOT, "..", "shared", "data", "uci"))
    ap.add_argument("--splits", type=int, default=20)
    ap.add_argument("--samples", type=int, default=10000)
    ap.add_argument("--epoch_multiplier", type=int, default=100)
    ap.add_argument("--sets", default=",".join(SETS))
    ap.add_argument("--out", default="calibration-results.md")
    args = ap.parse_args()

    chosen = chosen_hyperparameters()
    tmp = tempfile.mkdtemp()
    models, meta = {}, {}
    for ds in args.sets.split(","):
        n_splits = read_ints(os.path.join(args.uci, ds, "n_splits.txt"))[0]
        for k in range(min(args.splits, n_splits)):
            p, tau = chosen[ds][k]
            path, test, n_fit, n_cal = prepare(args, tmp, ds, k, p, tau)
            models[f"{ds}_{k}"] = path
            meta[f"{ds}_{k}"] = (ds, k, test, n_fit, n_cal)
        print(f"{ds}: trained and calibrated", file=sys.stderr)

    port = free_port()
    cmd = [os.path.join(args.build, "server", "mcdrop-server"), "--host", "127.0.0.1", "--port",
           str(port), "--metrics_port", "0", "--http_port", "-1", "--max_message_bytes",
           str(1 << 30), "--max_samples", str(max(args.samples, 100000))]
    for name, path in models.items():
        cmd += ["--model", f"{name}={path}"]
    server = subprocess.Popen(cmd, stderr=subprocess.DEVNULL)
    results = {}
    try:
        channel = grpc.insecure_channel(f"127.0.0.1:{port}", options=[
            ("grpc.max_receive_message_length", 1 << 30), ("grpc.max_send_message_length", 1 << 30)])
        grpc.channel_ready_future(channel).result(timeout=60)
        stub = pb_grpc.InferenceStub(channel)
        for name, (ds, k, test, n_fit, n_cal) in meta.items():
            r = score(stub, name, test, args.samples, 9000 + k)
            r.update(split=k, fit_rows=n_fit, cal_rows=n_cal, test_rows=len(test))
            results.setdefault(ds, []).append(r)
    finally:
        server.terminate()
        server.wait()
    text = table(results)
    with open(args.out, "w") as f:
        f.write(text + "\n")
    with open(os.path.splitext(args.out)[0] + ".json", "w") as f:
        json.dump(results, f, indent=1)
    print(text)


if __name__ == "__main__":
    main()
