#!/usr/bin/env python3
"""Scale-out verified for real: replicas, failover and rolling updates.

Starts N mcdrop-server replicas on loopback ports and HAProxy in front of
them, then, for each route and fault, drives `mcdrop-client bench` at
concurrency 64 and injects the fault in the middle of the run:

  routes  grpc   client-side balancing: round_robin over the replicas, gRPC
                 health checking (healthCheckConfig), a retry policy for
                 UNAVAILABLE (deploy/grpc-service-config.json), keepalive
                 pings, reconnect backoff capped at 1 s
          proxy  gRPC through HAProxy (h2 to the replicas, health checks on
                 the replicas' HTTP readiness path, L7 retries)
          http   the Open Inference Protocol's REST API through HAProxy
  faults  kill     SIGKILL to one replica (it stays down)
          drain    SIGTERM to one replica (a rolling update takes it away)
          restart  SIGTERM, then the replica starts again on the same ports
          stop     SIGSTOP to one replica (a replica that stops answering),
                   SIGCONT later

For each run it reports the calls sent and failed, the retries, latency
p50/p99 before, during and after the fault (by completion time), and the
seconds until the calls were spread evenly again over the replicas that
should get them (from the replicas' own request counters, scraped every
250 ms). It asserts the targets (docs/reliability.md) and exits 1 when one
is missed.

  deploy/fleet.py SERVER CLIENT [--short|--full] [--route grpc,proxy,http]
                  [--fault kill,drain,restart,stop] [--json OUT]
"""

import argparse
import csv
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
ROUTES = ["grpc", "proxy", "http"]
FAULTS = ["kill", "drain", "restart", "stop"]
CONCURRENCY = 64
SAMPLE = 0.25  # seconds between scrapes of the replicas' counters
# The drain: health NOT_SERVING while still serving for DRAIN_DELAY, then
# gRPC's and HTTP's shutdown with GRACE for the calls in flight.
DRAIN_DELAY = "1s"  # --drain_delay
GRACE = "5s"  # --grace_period

# Phase lengths, seconds: before the fault, the fault (kill and drain: how
# long "during" lasts; stop: how long the replica stays stopped), after.
PROFILES = {
    "short": {"before": 1.0, "during": 1.5, "after": 2.0},
    "full": {"before": 10.0, "during": 10.0, "after": 15.0},
}


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def log(msg):
    print(msg, file=sys.stderr, flush=True)


class Replica:
    """One mcdrop-server process on its own gRPC, HTTP and metrics ports."""

    def __init__(self, index, server, client, workdir, model):
        self.index = index
        self.name = f"r{index}"
        self.server, self.client = server, client
        self.workdir, self.model = workdir, model
        self.port, self.http_port, self.metrics_port = free_port(), free_port(), free_port()
        self.proc = None
        self.generation = 0
        self.stopped = False
        self.drain_delay = DRAIN_DELAY

    def start(self):
        self.generation += 1
        log_path = os.path.join(self.workdir, f"{self.name}.{self.generation}.log")
        self.proc = subprocess.Popen(
            [self.server, f"--model=concrete={self.model}", "--host=127.0.0.1",
             f"--port={self.port}", f"--http_port={self.http_port}",
             "--metrics_host=127.0.0.1", f"--metrics_port={self.metrics_port}",
             "--threads=1", f"--drain_delay={self.drain_delay}",
             f"--grace_period={GRACE}"],
            stdout=subprocess.DEVNULL, stderr=open(log_path, "w"))
        self.stopped = False

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def serving(self):
        r = subprocess.run([self.client, "health", f"--target=127.0.0.1:{self.port}",
                            "--service=mcdrop.v1.Inference", "--timeout=1s"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return r.returncode == 0

    def wait_serving(self, timeout=20.0):
        end = time.time() + timeout
        while time.time() < end:
            if not self.alive():
                raise RuntimeError(f"{self.name} exited at start (see its log in {self.workdir})")
            if self.serving():
                return time.time()
            time.sleep(0.05)
        raise RuntimeError(f"{self.name} not SERVING after {timeout} s")

    def signal(self, sig):
        if self.alive():
            self.proc.send_signal(sig)
        self.stopped = sig == signal.SIGSTOP

    def wait_exit(self, timeout=30.0):
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def scrape(self):
        """The replica's counters: calls answered (any code), retried calls
        and retry attempts, calls in flight; None when it does not answer."""
        if not self.alive() or self.stopped:
            return None
        try:
            with urllib.request.urlopen(
                    f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=0.2) as r:
                text = r.read().decode()
        except OSError:
            return None
        out = {"calls": 0.0, "retried": 0.0, "attempts": 0.0, "inflight": 0.0}
        for line in text.splitlines():
            if line.startswith("mcdrop_requests_total{"):
                out["calls"] += float(line.rsplit(" ", 1)[1])
            elif line.startswith("mcdrop_retry_attempts_total{"):
                v = float(line.rsplit(" ", 1)[1])
                out["attempts"] += v
                if 'previous_attempts="1"' in line:
                    out["retried"] += v
            elif line.startswith("mcdrop_inflight_requests"):
                out["inflight"] = float(line.rsplit(" ", 1)[1])
        return out

    def kill(self):
        if self.proc is not None and self.proc.poll() is None:
            try:
                self.proc.send_signal(signal.SIGCONT)
                self.proc.kill()
                self.proc.wait(10)
            except (OSError, subprocess.TimeoutExpired):
                pass


HAPROXY_CONFIG = """\
# Written by deploy/fleet.py: HAProxy in front of the replicas, as an ingress.
global
  stats socket {sock} mode 600 level admin
  nbthread 1
  maxconn 4096

defaults
  mode http
  log global
  timeout connect 1s
  timeout client 60s
  # The longest call a client may make: a stopped replica's calls wait this
  # long before HAProxy gives up on them (and retries them elsewhere).
  timeout server 30s
  timeout check 500ms
  # A call is retried on another replica when the connection failed, when
  # the replica closed it without an answer (killed, or restarting) or
  # answered 503 (the HTTP API while draining). MC-dropout predictions have
  # no side effect to replay; Feedback is not sent through this route.
  retries 3
  option redispatch 1
  retry-on conn-failure empty-response response-timeout 503

frontend grpc_in
  bind 127.0.0.1:{grpc_port} proto h2
  default_backend mcdrop_grpc

frontend http_in
  bind 127.0.0.1:{http_port}
  option http-keep-alive
  default_backend mcdrop_http

# Health: the replicas' Open Inference Protocol readiness path, which turns
# 400 at SIGTERM (with --drain_delay, while calls are still answered), over
# HTTP/1.1 on the HTTP port; gRPC health (grpc.health.v1) cannot be asked by
# HAProxy 2.6's http-check (its body would hold NUL bytes).
backend mcdrop_grpc
  balance leastconn
  option httpchk GET /v2/health/ready
  http-check expect status 200
  default-server inter 250ms fall 1 rise 2
{grpc_servers}

backend mcdrop_http
  balance leastconn
  option httpchk GET /v2/health/ready
  http-check expect status 200
  default-server inter 250ms fall 1 rise 2
{http_servers}
"""


class Proxy:
    """HAProxy in the foreground, with its runtime API on a unix socket."""

    def __init__(self, workdir, replicas):
        self.workdir = workdir
        self.sock = os.path.join(workdir, "haproxy.sock")
        self.grpc_port, self.http_port = free_port(), free_port()
        self.config = os.path.join(workdir, "haproxy.cfg")
        with open(self.config, "w") as f:
            f.write(HAPROXY_CONFIG.format(
                sock=self.sock, grpc_port=self.grpc_port, http_port=self.http_port,
                grpc_servers="\n".join(
                    f"  server {r.name} 127.0.0.1:{r.port} proto h2 "
                    f"check port {r.http_port} check-proto h1"
                    for r in replicas),
                http_servers="\n".join(
                    f"  server {r.name} 127.0.0.1:{r.http_port} check" for r in replicas)))
        self.proc = None

    def start(self):
        haproxy = shutil.which("haproxy") or "/usr/sbin/haproxy"
        subprocess.run([haproxy, "-c", "-q", "-f", self.config], check=True)
        self.proc = subprocess.Popen([haproxy, "-db", "-f", self.config],
                                     stdout=open(os.path.join(self.workdir, "haproxy.log"), "w"),
                                     stderr=subprocess.STDOUT)
        end = time.time() + 10
        while not os.path.exists(self.sock) and time.time() < end:
            time.sleep(0.05)

    def command(self, cmd):
        s = socket.socket(socket.AF_UNIX)
        s.settimeout(2)
        s.connect(self.sock)
        s.sendall((cmd + "\n").encode())
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
        s.close()
        return data.decode()

    def stats(self):
        """{(backend, server): row} from `show stat`."""
        lines = self.command("show stat").splitlines()
        header = lines[0].lstrip("# ").split(",")
        out = {}
        for row in csv.reader(lines[1:]):
            if row:
                d = dict(zip(header, row))
                out[(d["pxname"], d["svname"])] = d
        return out

    def all_up(self, backend, names):
        st = self.stats()
        return all(st.get((backend, n), {}).get("status") == "UP" for n in names)

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()


class Sampler(threading.Thread):
    """Scrapes every replica every SAMPLE seconds: (time, {name: counters})."""

    def __init__(self, replicas):
        super().__init__(daemon=True)
        self.replicas = replicas
        self.samples = []
        self.done = threading.Event()
        # Processes running when the run began: their counters count from
        # their first sample; later ones (restarted) from zero.
        self.at_start = {(r.name, r.generation) for r in replicas}

    def run(self):
        while not self.done.is_set():
            t0 = time.time()
            snap = {}
            for r in self.replicas:
                c = r.scrape()
                if c is not None:
                    c["generation"] = r.generation
                snap[r.name] = c
            self.samples.append((t0, snap))
            self.done.wait(max(0.0, SAMPLE - (time.time() - t0)))

    def rates(self):
        """Per interval: (start, end, {name: calls answered in it})."""
        out = []
        last = {}
        for (t0, a), (t1, b) in zip(self.samples, self.samples[1:]):
            row = {}
            for name, c in b.items():
                prev = a.get(name) or last.get(name)
                if c is None:
                    row[name] = 0.0
                    continue
                if prev is not None and prev["generation"] == c["generation"]:
                    row[name] = max(0.0, c["calls"] - prev["calls"])
                else:
                    row[name] = c["calls"] if prev is not None else 0.0
                last[name] = c
            out.append((t0, t1, row))
        return out

    def totals(self, key):
        """The growth of counter `key` summed over replicas and processes."""
        first, last = {}, {}
        for _, snap in self.samples:
            for name, c in snap.items():
                if c is None:
                    continue
                k = (name, c["generation"])
                first.setdefault(k, c[key] if k in self.at_start else 0.0)
                last[k] = c[key]
        return sum(last[k] - first[k] for k in last)


def percentile(values, q):
    if not values:
        return None
    values = sorted(values)
    i = max(0, min(len(values) - 1, int(-(-q * len(values) // 1)) - 1))
    return values[i]


def rebalance_seconds(rates, event, expected, others, window=4, tolerance=0.3):
    """Seconds from `event` to the end of the first interval that starts a
    run of `window` intervals in which every replica in `expected` answered
    its fair share within `tolerance` and those in `others` under 5% of the
    calls; None if that never happened."""
    ok = []
    for t0, t1, row in rates:
        if t1 <= event:
            continue
        total = sum(row.values())
        fair = total / len(expected) if expected else 0
        good = total > 0 and all(
            abs(row.get(n, 0) - fair) <= tolerance * fair for n in expected) and all(
            row.get(n, 0) <= 0.05 * total for n in others)
        ok.append((t1, good))
    for i in range(len(ok) - window + 1):
        if all(g for _, g in ok[i:i + window]):
            return max(0.0, ok[i][0] - event)
    return None


class Fleet:
    def __init__(self, args, workdir):
        self.args = args
        self.workdir = workdir
        model = os.path.join(ROOT, "models", "concrete.safetensors")
        self.replicas = [Replica(i, args.server, args.client, workdir, model)
                         for i in range(args.replicas)]
        for r in self.replicas:
            r.drain_delay = args.drain_delay
        self.proxy = None
        self.service_config = os.path.join(HERE, "grpc-service-config.json")

    def start(self, need_proxy):
        for r in self.replicas:
            r.start()
        for r in self.replicas:
            r.wait_serving()
        if need_proxy:
            self.proxy = Proxy(self.workdir, self.replicas)
            self.proxy.start()
            self.wait_proxy_up()

    def wait_proxy_up(self, timeout=15.0):
        if self.proxy is None:
            return
        names = [r.name for r in self.replicas]
        end = time.time() + timeout
        while time.time() < end:
            if (self.proxy.all_up("mcdrop_grpc", names)
                    and self.proxy.all_up("mcdrop_http", names)):
                return
            time.sleep(0.1)
        raise RuntimeError("HAProxy does not see every replica UP")

    def heal(self):
        """Every replica up and serving again (between runs)."""
        for r in self.replicas:
            if r.stopped:
                r.signal(signal.SIGCONT)
            if not r.alive():
                r.start()
        for r in self.replicas:
            r.wait_serving()
        self.wait_proxy_up()

    def stop(self):
        for r in self.replicas:
            r.kill()
        if self.proxy is not None:
            self.proxy.stop()

    def bench_command(self, route, seconds, calls_csv):
        c = [self.args.client, "bench", f"--concurrency={CONCURRENCY}",
             f"--duration={seconds:.3f}s", "--warmup=0s", "--samples=100",
             "--json", "--allow_errors", "--timeout=30s", f"--calls_csv={calls_csv}"]
        if route == "grpc":
            target = "ipv4:" + ",".join(f"127.0.0.1:{r.port}" for r in self.replicas)
            c += [f"--target={target}", f"--service_config=@{self.service_config}",
                  "--keepalive_time=1s", "--keepalive_timeout=1s",
                  "--max_reconnect_backoff=1s"]
        elif route == "proxy":
            c += [f"--target=127.0.0.1:{self.proxy.grpc_port}"]
        else:
            c += [f"--target=127.0.0.1:{self.proxy.grpc_port}", "--model=concrete",
                  "--protocol=http", "--api=oip",
                  f"--http_target=127.0.0.1:{self.proxy.http_port}"]
        return c

    def proxy_backend(self, route):
        return "mcdrop_http" if route == "http" else "mcdrop_grpc"

    def run(self, route, fault, profile):
        """One run: load, the fault in its middle; returns the figures."""
        p = PROFILES[profile]
        victim = self.replicas[-1]
        others = [r.name for r in self.replicas if r is not victim]
        everyone = [r.name for r in self.replicas]
        # A restart's replica is back after its drain delay and a start.
        total = p["before"] + p["during"] + p["after"] + (1.0 if fault == "restart" else 0.0)
        calls_csv = os.path.join(self.workdir, f"calls-{route}-{fault}.csv")
        sampler = Sampler(self.replicas)
        stats0 = self.proxy.stats() if self.proxy else None
        sampler.start()
        bench = subprocess.Popen(self.bench_command(route, total, calls_csv),
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        launched = time.time()
        # The bench asks the model's metadata first; start the clock when
        # the first calls have been answered.
        while time.time() - launched < 10:
            rates = sampler.rates()
            if rates and sum(sum(row.values()) for _, _, row in rates[-1:]) > 0:
                break
            time.sleep(0.05)
        time.sleep(p["before"])
        fig = {"route": route, "fault": fault, "victim": victim.name}
        inflight_at_fault = None
        if fault == "kill" and self.proxy is not None and route != "grpc":
            row = self.proxy.stats().get((self.proxy_backend(route), victim.name), {})
            inflight_at_fault = int(row.get("scur") or 0)
        t_fault = time.time()
        if fault == "kill":
            victim.signal(signal.SIGKILL)
            victim.wait_exit()
            time.sleep(p["during"])
            t_end, event, expected = t_fault + p["during"], t_fault, others
        elif fault == "drain":
            victim.signal(signal.SIGTERM)
            fig["exit_code"] = victim.wait_exit()
            fig["drain_seconds"] = round(time.time() - t_fault, 2)
            time.sleep(max(0.0, t_fault + p["during"] - time.time()))
            t_end, event, expected = t_fault + p["during"], t_fault, others
        elif fault == "restart":
            victim.signal(signal.SIGTERM)
            fig["exit_code"] = victim.wait_exit()
            victim.start()
            t_ready = victim.wait_serving()
            fig["down_seconds"] = round(t_ready - t_fault, 2)
            t_end, event, expected = t_ready, t_ready, everyone
        else:  # stop
            victim.signal(signal.SIGSTOP)
            time.sleep(p["during"])
            victim.signal(signal.SIGCONT)
            t_end = time.time()
            event, expected = t_end, everyone
        out, err = bench.communicate(timeout=total + 120)
        time.sleep(SAMPLE * 2)
        sampler.done.set()
        sampler.join()
        if bench.returncode != 0:
            raise RuntimeError(f"bench failed ({bench.returncode}): {err.strip()}")
        report = json.loads(out)
        start = report["start_unix"]
        phases = {"before": [], "during": [], "after": []}
        codes = {}
        with open(calls_csv) as f:
            for row in csv.DictReader(f):
                t = start + float(row["end_seconds"])
                phase = "before" if t < t_fault else "during" if t < t_end else "after"
                phases[phase].append(float(row["latency_seconds"]))
                if row["code"] != "OK":
                    codes[row["code"]] = codes.get(row["code"], 0) + 1
        fig.update({
            "sent": report["count"], "failed": report["errors"], "failed_codes": codes,
            "calls_per_second": round(report["requests_per_second"]),
            "inflight_at_fault": inflight_at_fault,
        })
        # Calls answered per second in each phase (by completion time).
        spans = {"before": t_fault - start, "during": t_end - t_fault,
                 "after": start + report["seconds"] - t_end}
        for name, lat in phases.items():
            fig[f"rate_{name}"] = round(len(lat) / spans[name]) if spans[name] > 0 else None
            fig[f"p50_{name}_ms"] = round(1e3 * percentile(lat, 0.5), 2) if lat else None
            fig[f"p99_{name}_ms"] = round(1e3 * percentile(lat, 0.99), 2) if lat else None
            fig[f"max_{name}_ms"] = round(1e3 * max(lat), 1) if lat else None
        if route == "grpc":
            fig["retried"] = int(sampler.totals("retried"))
            fig["retry_attempts"] = int(sampler.totals("attempts"))
        else:
            stats1 = self.proxy.stats()
            be = self.proxy_backend(route)

            def grow(key):
                return sum(int(stats1[k].get(key) or 0) - int(stats0.get(k, {}).get(key) or 0)
                           for k in stats1 if k[0] == be and k[1] != "BACKEND")
            fig["retried"] = grow("wretr")
            fig["retry_attempts"] = fig["retried"]
            fig["redispatched"] = grow("wredis")
        rates = sampler.rates()
        fig["rebalance_seconds"] = rebalance_seconds(
            rates, event, expected, [n for n in everyone if n not in expected])
        fig["rebalance_from"] = {"kill": "SIGKILL", "drain": "SIGTERM",
                                 "restart": "replica SERVING again",
                                 "stop": "SIGCONT"}[fault]
        fig["shares_after"] = share_after(rates, t_end, everyone)
        fig["targets"] = check_targets(fig)
        return fig


def share_after(rates, after, names):
    calls = {n: 0.0 for n in names}
    for t0, _, row in rates:
        if t0 >= after + 1.0:
            for n in names:
                calls[n] += row.get(n, 0)
    total = sum(calls.values()) or 1.0
    return {n: round(calls[n] / total, 3) for n in names}


def check_targets(fig):
    """The targets of issue 21, part 1: [(what, held)]."""
    out = []
    route, fault = fig["route"], fig["fault"]
    if route == "grpc" and fault in ("kill", "drain", "restart"):
        out.append(("0 failed calls", fig["failed"] == 0))
    if route != "grpc" and fault in ("drain", "restart"):
        out.append(("0 failed calls", fig["failed"] == 0))
    if route != "grpc" and fault == "kill":
        n = fig["inflight_at_fault"]
        out.append((f"failed <= {n} in flight on the killed replica",
                    n is not None and fig["failed"] <= n))
    if fault in ("kill", "drain", "restart"):
        out.append(("balanced again within the run", fig["rebalance_seconds"] is not None))
    return out


def fmt(v, digits=1):
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)


def table(figures):
    head = ["route", "fault", "sent", "failed", "retried", "in flight",
            "calls/s before/during/after", "p50 before/during/after ms", "p99 before/during/after ms",
            "slowest s", "rebalanced s", "targets"]
    rows = []
    for f in figures:
        rows.append([
            f["route"], f["fault"], f"{f['sent']:,}", str(f["failed"]),
            str(f["retried"]) + (f" (+{f['redispatched']} redispatched)"
                                 if f.get("redispatched") else ""),
            fmt(f["inflight_at_fault"]),
            "/".join(fmt(f[f"rate_{p}"]) for p in ("before", "during", "after")),
            "/".join(fmt(f[f"p50_{p}_ms"]) for p in ("before", "during", "after")),
            "/".join(fmt(f[f"p99_{p}_ms"]) for p in ("before", "during", "after")),
            fmt(max(v for v in (f["max_during_ms"], f["max_after_ms"]) if v is not None) / 1e3, 2),
            ("< %.2f" % SAMPLE if f["rebalance_seconds"] is not None
             and f["rebalance_seconds"] < SAMPLE else fmt(f["rebalance_seconds"], 2)),
            ", ".join(("held: " if ok else "MISSED: ") + w for w, ok in f["targets"]) or "(report only)",
        ])
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("server")
    ap.add_argument("client")
    ap.add_argument("--short", dest="profile", action="store_const", const="short")
    ap.add_argument("--full", dest="profile", action="store_const", const="full")
    ap.add_argument("--route", default="grpc,proxy,http")
    ap.add_argument("--fault", default=",".join(FAULTS))
    ap.add_argument("--replicas", type=int, default=3)
    ap.add_argument("--drain_delay", default=DRAIN_DELAY,
                    help="the replicas' --drain_delay (to see what it does)")
    ap.add_argument("--json", help="write the figures here")
    ap.add_argument("--keep", action="store_true", help="keep the logs' folder")
    args = ap.parse_args()
    profile = args.profile or "short"
    routes = [r for r in args.route.replace("all", ",".join(ROUTES)).split(",") if r]
    faults = [f for f in args.fault.replace("all", ",".join(FAULTS)).split(",") if f]
    for r in routes:
        if r not in ROUTES:
            ap.error(f"unknown route {r}")
    for f in faults:
        if f not in FAULTS:
            ap.error(f"unknown fault {f}")
    workdir = tempfile.mkdtemp(prefix="mcdrop-fleet-")
    fleet = Fleet(args, workdir)
    figures = []
    failed = False
    try:
        fleet.start(need_proxy=any(r != "grpc" for r in routes))
        for route in routes:
            for fault in faults:
                fleet.heal()
                log(f"== {route} / {fault} ({profile})")
                fig = fleet.run(route, fault, profile)
                figures.append(fig)
                log(json.dumps(fig))
    except Exception as e:  # a run that could not be made fails the test
        log(f"error: {e}")
        failed = True
    finally:
        fleet.stop()
    print(f"{args.replicas} replicas, concurrency {CONCURRENCY}, profile {profile} "
          f"({json.dumps(PROFILES[profile])}), drain delay {args.drain_delay}, grace {GRACE}")
    print(table(figures))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"profile": profile, "figures": figures}, f, indent=1)
    missed = [(f["route"], f["fault"], w) for f in figures for w, ok in f["targets"] if not ok]
    for route, fault, what in missed:
        print(f"MISSED: {route} / {fault}: {what}")
    if failed or missed or args.keep:
        print(f"logs: {workdir}")
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    return 1 if failed or missed else 0


if __name__ == "__main__":
    sys.exit(main())
