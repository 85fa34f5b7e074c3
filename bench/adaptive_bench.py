#!/usr/bin/python3
"""What a standard-error target saves, through the server.

UCI regression (the paper's data and splits): for each data set and each of
the first --splits splits, a model is trained with `mcdrop-train fit` on the
split's training part with the hyperparameters the protocol chose for that
split (docs/results.md, the per-split tables of the UCI run), and served by
mcdrop-server. The split's test rows are then predicted twice with the same
seed: at T = 10000 (the paper's T) and with a target of 1% of the predictive
std (SampleTarget.relative_error = 0.01). Both return their samples, so the
test RMSE and the paper's log-likelihood (the mixture of N(f_t, 1/tau)) are
computed from what the server returned, paired row by row: the adaptive
rows' passes are the first T of the T = 10000 request's passes (same seed).

Classification: the bundled Fashion-MNIST LeNet on test items, at T = 10000
and with a target on every class probability (absolute, 0.01): accuracy,
NLL and the passes used.

Latency: each request timed end to end (client to server and back, on this
machine), median of --repeats, for the batch of all test rows; and one row
per call over the first --single rows.

  bench/adaptive_bench.py --build build [--splits 5] [--repeats 3]
"""
import argparse
import gzip
import math
import os
import re
import socket
import struct
import subprocess
import sys
import tempfile
import time

import grpc
import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "client", "python"))
from mcdrop.v1 import inference_pb2 as pb  # noqa: E402
from mcdrop.v1 import inference_pb2_grpc as pb_grpc  # noqa: E402

SETS = ["bostonHousing", "concrete", "energy", "kin8nm", "wine-quality-red", "yacht"]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def chosen_hyperparameters():
    """{data set: {split: (p, tau)}} from docs/results.md's per-split tables."""
    out, current = {}, None
    for line in open(os.path.join(ROOT, "docs", "results.md")):
        m = re.match(r"### (\S+)$", line.strip())
        if m:
            current = m.group(1) if m.group(1) in SETS else None
            continue
        m = re.match(r"\| (\d+) \| ([\d.e-]+) \| ([\d.e-]+) \| ", line)
        if current and m:
            out.setdefault(current, {})[int(m.group(1))] = (float(m.group(2)), float(m.group(3)))
    return out


def read_ints(path):
    return [int(float(v)) for v in open(path).read().split()]


def uci_test(d, k):
    data = np.loadtxt(os.path.join(d, "data.txt"))
    features = read_ints(os.path.join(d, "index_features.txt"))
    target = read_ints(os.path.join(d, "index_target.txt"))[0]
    test = read_ints(os.path.join(d, f"index_test_{k}.txt"))
    return data[test][:, features].astype(np.float32), data[test][:, target]


def request(model, x, seed, samples=0, target=None, return_samples=True):
    r = pb.PredictRequest(model=model, shape=list(x.shape), inputs=x.ravel().tolist(), seed=seed,
                          samples=samples, return_samples=return_samples)
    if target:
        r.target.CopyFrom(pb.SampleTarget(**target))
    return r


def timed(stub, req, repeats):
    times, resp = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        resp = stub.Predict(req, timeout=600)
        times.append(time.perf_counter() - t0)
    return resp, float(np.median(times))


def all_samples(resp):
    """Each row's samples, [T_b, D], from either layout."""
    if resp.sample_shape:
        T, B, D = resp.sample_shape
        a = np.array(resp.sample_values, dtype=np.float64).reshape(T, B, D)
        return [a[:, b, :] for b in range(B)]
    return [np.array(r.sample_values, dtype=np.float64).reshape(r.samples, -1) for r in resp.rows]


def regression_scores(resp, y, tau):
    """Per-row squared error and the paper's log-likelihood of y."""
    sq, ll = [], []
    samples = all_samples(resp)
    for b, yb in enumerate(y):
        f = samples[b][:, 0]
        mean = resp.rows[b].outputs[0].mean
        sq.append((mean - yb) ** 2)
        a = -0.5 * tau * (yb - f) ** 2
        m = a.max()
        ll.append(m + math.log(np.exp(a - m).mean()) - 0.5 * math.log(2 * math.pi) + 0.5 * math.log(tau))
    return np.array(sq), np.array(ll)


def single_rows(stub, model, x, seed, n, **kw):
    """Median end-to-end latency of one-row calls over the first n rows."""
    times = []
    for i in range(min(n, len(x))):
        req = request(model, x[i:i + 1], seed, **kw)
        req.return_samples = False
        t0 = time.perf_counter()
        stub.Predict(req, timeout=600)
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def fashion_items(n):
    base = os.environ.get("FASHION_MNIST", "/usr/share/datasets/fashion-mnist")

    def idx(name):
        with gzip.open(os.path.join(base, name)) as f:
            magic, = struct.unpack(">I", f.read(4))
            dims = struct.unpack(">" + "I" * (magic & 0xFF), f.read(4 * (magic & 0xFF)))
            return np.frombuffer(f.read(), dtype=np.uint8).reshape(dims)
    x = idx("t10k-images-idx3-ubyte.gz")[:n].reshape(n, 1, 28, 28).astype(np.float32)
    return x, idx("t10k-labels-idx1-ubyte.gz")[:n].astype(int)


def classification_scores(resp, labels):
    p = np.array([list(r.classification.probabilities) for r in resp.rows])
    acc = float((p.argmax(1) == labels).mean())
    nll = -np.log(np.maximum(p[np.arange(len(labels)), labels], 1e-12))
    return acc, nll


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", default="build")
    ap.add_argument("--uci", default=os.path.join(ROOT, "..", "shared", "data", "uci"))
    ap.add_argument("--splits", type=int, default=5)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--single", type=int, default=50, help="rows timed one per call")
    ap.add_argument("--fashion", type=int, default=1000, help="Fashion-MNIST test items")
    ap.add_argument("--relative", type=float, default=0.01)
    ap.add_argument("--prob_target", type=float, default=0.01)
    args = ap.parse_args()

    chosen = chosen_hyperparameters()
    tmp = tempfile.mkdtemp()
    models = {}
    for ds in SETS:
        d = os.path.join(args.uci, ds)
        n_hidden = read_ints(os.path.join(d, "n_hidden.txt"))[0]
        epochs = read_ints(os.path.join(d, "n_epochs.txt"))[0] * 100
        for k in range(args.splits):
            p, tau = chosen[ds][k]
            path = os.path.join(tmp, f"{ds}_{k}.safetensors")
            subprocess.run([os.path.join(args.build, "tools", "mcdrop-train"), "fit", "--uci", d,
                            "--split", str(k), "--dropout", str(p), "--tau", str(tau), "--epochs",
                            str(epochs), "--hidden", str(n_hidden), "--seed", str(1000 + k),
                            "--out", path, "--quiet"], check=True, stdout=subprocess.DEVNULL)
            models[f"{ds}_{k}"] = (path, tau, d, k)
    print(f"trained {len(models)} models", file=sys.stderr)

    port = free_port()
    cmd = [os.path.join(args.build, "server", "mcdrop-server"), "--host", "127.0.0.1", "--port",
           str(port), "--metrics_port", "0", "--http_port", "-1", "--threads", "2",
           "--max_message_bytes", str(512 << 20)]
    for name, (path, _, _, _) in models.items():
        cmd += ["--model", f"{name}={path}"]
    fashion = os.path.join(ROOT, "models", "fashion_lenet.safetensors")
    cmd += ["--model", f"fashion_lenet={fashion}"]
    server = subprocess.Popen(cmd, stderr=subprocess.DEVNULL)
    try:
        channel = grpc.insecure_channel(f"127.0.0.1:{port}", options=[
            ("grpc.max_receive_message_length", 512 << 20), ("grpc.max_send_message_length", 512 << 20)])
        grpc.channel_ready_future(channel).result(timeout=30)
        stub = pb_grpc.InferenceStub(channel)
        run(stub, models, args)
    finally:
        server.terminate()
        server.wait()


def run(stub, models, args):
    print(f"UCI test splits 0-{args.splits - 1}, target: standard error <= {args.relative:g} x "
          f"predictive std (min 100, max 10000 passes) against T = 10000, same seed; "
          f"{args.repeats} repeats, medians\n")
    print("| data set | test rows | mean T (min-max) | passes saved | RMSE T=10000 | RMSE target | "
          "diff +- s.e. | LL T=10000 | LL target | diff +- s.e. | batch ms T=10000 | batch ms target | "
          "one-row ms T=10000 | one-row ms target |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for ds in SETS:
        rows_t, rmse_a, rmse_b, ll_a, ll_b, d_sq, d_ll, ms = [], [], [], [], [], [], [], []
        for k in range(args.splits):
            name = f"{ds}_{k}"
            _, tau, d, _ = models[name]
            x, y = uci_test(d, k)
            seed = 17 + k
            full, t_full = timed(stub, request(name, x, seed, samples=10000), args.repeats)
            tgt, t_tgt = timed(stub, request(name, x, seed, target={"relative_error": args.relative}),
                               args.repeats)
            sq_a, l_a = regression_scores(full, y, tau)
            sq_b, l_b = regression_scores(tgt, y, tau)
            rows_t += [r.samples for r in tgt.rows]
            rmse_a.append(math.sqrt(sq_a.mean()))
            rmse_b.append(math.sqrt(sq_b.mean()))
            ll_a.append(l_a.mean())
            ll_b.append(l_b.mean())
            d_sq += list(sq_b - sq_a)
            d_ll += list(l_b - l_a)
            one_a = single_rows(stub, name, x, seed, args.single, samples=10000)
            one_b = single_rows(stub, name, x, seed, args.single, target={"relative_error": args.relative})
            ms.append((t_full, t_tgt, one_a, one_b))
        t = np.array(rows_t)
        ra, rb = np.mean(rmse_a), np.mean(rmse_b)
        d_sq, d_ll = np.array(d_sq), np.array(d_ll)
        rmse_diff, rmse_se = rb - ra, d_sq.std(ddof=1) / math.sqrt(len(d_sq)) / (2 * ra)
        ll_diff, ll_se = d_ll.mean(), d_ll.std(ddof=1) / math.sqrt(len(d_ll))
        m = np.median(np.array(ms), axis=0) * 1e3
        print(f"| {ds} | {len(t) // args.splits} | {t.mean():.0f} ({t.min()}-{t.max()}) | "
              f"{100 * (1 - t.mean() / 10000):.1f}% | {ra:.4f} | {rb:.4f} | {rmse_diff:+.4f} +- {rmse_se:.4f} | "
              f"{np.mean(ll_a):.4f} | {np.mean(ll_b):.4f} | {ll_diff:+.4f} +- {ll_se:.4f} | "
              f"{m[0]:.2f} | {m[1]:.2f} | {m[2]:.3f} | {m[3]:.3f} |", flush=True)

    x, labels = fashion_items(args.fashion)
    print(f"\nFashion-MNIST LeNet (models/fashion_lenet.safetensors), the first {len(labels)} test "
          f"items, target: standard error of every class probability <= {args.prob_target:g}, "
          f"against T = 10000, same seed\n")
    print("| | mean T (min-max) | passes saved | accuracy | NLL | batch ms |")
    print("|---|---|---|---|---|---|")
    full, t_full = timed(stub, request("fashion_lenet", x, 5, samples=10000, return_samples=False),
                         args.repeats)
    tgt, t_tgt = timed(stub, request("fashion_lenet", x, 5, target={"standard_error": args.prob_target},
                                     return_samples=False), args.repeats)
    acc_a, nll_a = classification_scores(full, labels)
    acc_b, nll_b = classification_scores(tgt, labels)
    t = np.array([r.samples for r in tgt.rows])
    d = nll_b - nll_a
    print(f"| T = 10000 | 10000 | | {acc_a:.4f} | {nll_a.mean():.4f} | {t_full * 1e3:.0f} |")
    print(f"| target | {t.mean():.0f} ({t.min()}-{t.max()}) | {100 * (1 - t.mean() / 10000):.1f}% | "
          f"{acc_b:.4f} | {nll_b.mean():.4f} (diff {d.mean():+.5f} +- {d.std(ddof=1) / math.sqrt(len(d)):.5f}) | "
          f"{t_tgt * 1e3:.0f} |")


if __name__ == "__main__":
    main()
