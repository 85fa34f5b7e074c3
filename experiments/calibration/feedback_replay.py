#!/usr/bin/env python3
"""Feedback end to end: a stream that drifts, a real Prometheus evaluating the
project's rules, and adaptive conformal inference bringing coverage back.

Data: UCI concrete (../shared/data/uci/concrete), every row. A concrete
mix's strength grows with its age; the model sees only mixes tested at
28 days or younger:
- rows with age <= 28 days (749) are shuffled (seed 0) and cut 60 / 20 / 20:
  `mcdrop-train fit` on the 60% (hyperparameters of the paper's protocol
  for split 0, docs/results.md), `mcdrop-model calibrate` on 20% (T = 100),
  and the last 20% (150 rows) is stream A, in distribution;
- rows with age > 28 days (281, up to 365 days: another region of the
  data, far outside the training range of that feature) are stream B.
Two servers serve the same calibrated model, one with adaptive conformal
inference (--adaptive_conformal_rate 0.05) and one without, both with
--feedback_window 200. Prometheus 2.42 (Debian's) scrapes both every
second and evaluates deploy/prometheus/mcdrop.rules.yml unmodified (1 s
evaluation interval). The stream is replayed row by row to both servers:
Predict (T = 100, levels 0.5/0.8/0.9/0.95), then Feedback with the row's
real strength. Stream A at --rate_a rows/s, then stream B at --rate_b.
Afterwards the script reads the series and the alerts back from Prometheus,
writes a data file and a gnuplot figure, and prints per-phase coverage.

  experiments/calibration/feedback_replay.py --build build --uci ../shared/data/uci \\
      --out docs/figures
"""
import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request

import grpc
import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "bench"))
sys.path.insert(0, os.path.join(ROOT, "client", "python"))
from adaptive_bench import chosen_hyperparameters, free_port, read_ints  # noqa: E402
from mcdrop.v1 import inference_pb2 as pb  # noqa: E402
from mcdrop.v1 import inference_pb2_grpc as pb_grpc  # noqa: E402

LEVELS = [0.5, 0.8, 0.9, 0.95]
AGE = 7  # the feature column of the age in days


def streams(uci):
    d = os.path.join(uci, "concrete")
    data = np.loadtxt(os.path.join(d, "data.txt"))
    rng = np.random.default_rng(0)
    young = data[data[:, AGE] <= 28]
    old = data[data[:, AGE] > 28]
    young = young[rng.permutation(len(young))]
    old = old[rng.permutation(len(old))]
    n_fit, n_cal = int(0.6 * len(young)), int(0.2 * len(young))
    return young[:n_fit], young[n_fit:n_fit + n_cal], young[n_fit + n_cal:], old


def prepare(args, tmp, fit, cal):
    p, tau = chosen_hyperparameters()["concrete"][0]
    d = os.path.join(args.uci, "concrete")
    epochs = read_ints(os.path.join(d, "n_epochs.txt"))[0] * args.epoch_multiplier
    hidden = read_ints(os.path.join(d, "n_hidden.txt"))[0]
    files = {}
    for name, rows in (("fit", fit), ("cal", cal)):
        files[name] = os.path.join(tmp, f"{name}.csv")
        np.savetxt(files[name], rows, delimiter=",", fmt="%.17g")
    raw, model = os.path.join(tmp, "young.safetensors"), os.path.join(tmp, "young_cal.safetensors")
    subprocess.run([os.path.join(args.build, "tools", "mcdrop-train"), "fit", "--data", files["fit"],
                    "--dropout", str(p), "--tau", str(tau), "--epochs", str(epochs), "--hidden",
                    str(hidden), "--seed", "1000", "--out", raw, "--quiet"],
                   check=True, stdout=subprocess.DEVNULL)
    subprocess.run([os.path.join(args.build, "tools", "mcdrop-model"), "calibrate", raw, "--data",
                    files["cal"], "--out", model, "--samples", "100", "--seed", "5000", "--source",
                    "UCI concrete, ages <= 28 days, 20% held out from training"],
                   check=True, stdout=subprocess.DEVNULL)
    return model, p, tau


def start_server(args, tmp, model, name, rate):
    port, mport = free_port(), free_port()
    log = open(os.path.join(tmp, f"{name}.log"), "w")
    proc = subprocess.Popen(
        [os.path.join(args.build, "server", "mcdrop-server"), "--model", f"concrete={model}",
         "--host", "127.0.0.1", "--port", str(port), "--metrics_host", "127.0.0.1",
         "--metrics_port", str(mport), "--http_port", "-1", "--threads", "1",
         "--feedback_window", "200", "--adaptive_conformal_rate", str(rate)],
        stdout=log, stderr=log)
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    grpc.channel_ready_future(channel).result(timeout=30)
    return proc, pb_grpc.InferenceStub(channel), mport


def start_prometheus(tmp, targets):
    port = free_port()
    rules = os.path.join(ROOT, "deploy", "prometheus", "mcdrop.rules.yml")
    config = os.path.join(tmp, "prometheus.yml")
    with open(config, "w") as f:
        f.write("global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
                f"rule_files:\n  - {rules}\n"
                "scrape_configs:\n")
        for job, mport in targets.items():
            f.write(f"  - job_name: {job}\n    static_configs:\n"
                    f"      - targets: ['127.0.0.1:{mport}']\n")
    proc = subprocess.Popen(["prometheus", f"--config.file={config}",
                             f"--storage.tsdb.path={os.path.join(tmp, 'tsdb')}",
                             f"--web.listen-address=127.0.0.1:{port}"],
                            stdout=subprocess.DEVNULL, stderr=open(os.path.join(tmp, "prom.log"), "w"))
    for _ in range(100):
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/-/ready")
            return proc, port
        except OSError:
            time.sleep(0.2)
    raise RuntimeError("prometheus did not start")


def query_range(port, expr, start, end):
    q = urllib.parse.urlencode({"query": expr, "start": start, "end": end, "step": "2"})
    body = json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/query_range?{q}"))
    assert body["status"] == "success", body
    return body["data"]["result"]


def replay_row(stub, row, seed):
    x = row[:8].astype(np.float32)
    req = pb.PredictRequest(model="concrete", shape=[1, 8], inputs=x.tolist(), samples=100,
                            seed=seed, interval_levels=LEVELS)
    resp = stub.Predict(req, timeout=30)
    o = resp.rows[0].outputs[0]
    y = float(row[8])
    covered = {"mixture": [iv.lower <= y <= iv.upper for iv in o.intervals],
               "conformal": [iv.lower <= y <= iv.upper for iv in o.conformal_intervals]}
    fb = stub.Feedback(pb.FeedbackRequest(model="concrete", items=[
        pb.FeedbackItem(id=resp.rows[0].id, targets=[y])]), timeout=30)
    assert fb.accepted == 1, fb
    return covered, o.std


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default="build")
    ap.add_argument("--uci", default=os.path.join(ROOT, "..", "shared", "data", "uci"))
    ap.add_argument("--out", default=os.path.join(ROOT, "docs", "figures"))
    ap.add_argument("--rate_a", type=float, default=1.0)
    ap.add_argument("--rate_b", type=float, default=0.6)
    ap.add_argument("--hold", type=float, default=60, help="seconds scraped after the stream")
    ap.add_argument("--epoch_multiplier", type=int, default=100)
    args = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="mcdrop-replay-")
    fit, cal, a, b = streams(args.uci)
    print(f"rows: fit {len(fit)}, calibration {len(cal)}, stream A {len(a)} (age <= 28), "
          f"stream B {len(b)} (age > 28)", flush=True)
    model, p, tau = prepare(args, tmp, fit, cal)
    print(f"trained (p {p}, tau {tau}) and calibrated: {model}", flush=True)
    procs = []
    try:
        static, s_stub, s_port = start_server(args, tmp, model, "static", 0)
        procs.append(static)
        aci, a_stub, a_port = start_server(args, tmp, model, "aci", 0.05)
        procs.append(aci)
        prom, pport = start_prometheus(tmp, {"static": s_port, "aci": a_port})
        procs.append(prom)
        time.sleep(3)
        t0 = time.time()
        local = []  # per row: phase, static and ACI coverage, std
        phase_start = {}
        for phase, rows, rate in (("A", a, args.rate_a), ("B", b, args.rate_b)):
            phase_start[phase] = time.time()
            for i, row in enumerate(rows):
                due = phase_start[phase] + i / rate
                time.sleep(max(0.0, due - time.time()))
                cs, std = replay_row(s_stub, row, seed=1 + len(local))
                ca, _ = replay_row(a_stub, row, seed=1 + len(local))
                local.append((phase, cs, ca, std))
            print(f"stream {phase} done at {time.time() - t0:.0f} s", flush=True)
        time.sleep(args.hold)
        t1 = time.time()
        series = {
            "static_mixture": 'mcdrop_feedback_coverage{job="static",interval="mixture",level="0.9"}',
            "static_conformal": 'mcdrop_feedback_coverage{job="static",interval="conformal",level="0.9"}',
            "aci_conformal": 'mcdrop_feedback_coverage{job="aci",interval="conformal",level="0.9"}',
            "aci_level": 'mcdrop_conformal_adapted_level{job="aci",level="0.9"}',
            # The recording rule sums over instances (both servers see the same rows).
            "input_drift": 'mcdrop:input_out_of_range:ratio10m',
            "std_median": 'histogram_quantile(0.5, sum by (le) (rate(mcdrop_predictive_std_bucket{job="static"}[1m])))',
            "window": 'mcdrop_feedback_window_observations{job="static"}',
        }
        data = {}
        for key, expr in series.items():
            res = query_range(pport, expr, t0, t1)
            data[key] = {float(t): float(v) for t, v in res[0]["values"]} if res else {}
        alerts = query_range(pport, 'ALERTS{alertstate="firing"}', t0, t1)
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            proc.wait(timeout=30)
    os.makedirs(args.out, exist_ok=True)
    times = sorted(set().union(*[set(v) for v in data.values()]))
    dat = os.path.join(args.out, "feedback_replay.dat")
    with open(dat, "w") as f:
        f.write("t " + " ".join(series) + "\n")
        for t in times:
            f.write(f"{t - t0:.0f} " + " ".join(
                f"{data[k][t]:.6g}" if t in data[k] else "NaN" for k in series) + "\n")
    firing = {}
    for a_ in alerts:
        m = a_["metric"]
        key = (m["alertname"], m.get("job", ""), m.get("interval", ""))
        firing[key] = (float(a_["values"][0][0]) - t0, float(a_["values"][-1][0]) - t0)
    b_start = phase_start["B"] - t0
    summary = {"rows": {"fit": len(fit), "calibration": len(cal), "A": len(a), "B": len(b)},
               "hyperparameters": {"p": p, "tau": tau}, "stream_B_starts_s": round(b_start, 1),
               "alerts_firing": {" ".join(k): [round(v[0]), round(v[1])] for k, v in firing.items()},
               "coverage": {}}
    for phase in ("A", "B", "B, last 100"):
        rows = [r for r in local if r[0] == phase[0]]
        if phase == "B, last 100":
            rows = rows[-100:]
        cov = {}
        for name, idx, kind in (("static mixture", 1, "mixture"), ("static conformal", 1, "conformal"),
                                ("aci conformal", 2, "conformal")):
            cov[name] = {str(lv): round(float(np.mean([r[idx][kind][i] for r in rows])), 3)
                         for i, lv in enumerate(LEVELS)}
        cov["mean predictive std"] = round(float(np.mean([r[3] for r in rows])), 3)
        summary["coverage"][phase] = cov
    with open(os.path.join(args.out, "feedback_replay.json"), "w") as f:
        json.dump(summary, f, indent=1)
    print(json.dumps(summary, indent=1))
    gp = os.path.join(HERE, "feedback_replay.gp")
    first = {name: min((v[0] for k, v in firing.items() if k[0] == name), default=-1)
             for name in ("McdropCoverageOff", "McdropInputDrift")}
    subprocess.run(["gnuplot", "-e", f"dir='{args.out}'; bstart={b_start:.0f}; "
                    f"cov_alert={first['McdropCoverageOff']:.0f}; "
                    f"drift_alert={first['McdropInputDrift']:.0f}", gp], check=True)
    print(f"figure: {os.path.join(args.out, 'feedback_replay.svg')}")


if __name__ == "__main__":
    main()
