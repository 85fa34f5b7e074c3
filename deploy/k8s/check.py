#!/usr/bin/python3
"""Checks that deploy/k8s agrees with mcdrop-server and the image: every flag
in the container args is a flag of the server binary; probes, Services,
PodMonitor and HPA refer to ports and names that exist; the ports are the
ones the args set; the readiness probe names the service the server registers
in grpc.health.v1; the user matches the Dockerfile's. The drain fits: the
termination grace covers any preStop sleep, --drain_delay and --grace_period;
the readiness probe sees NOT_SERVING within the drain delay; rolling updates
keep capacity; the PodDisruptionBudget leaves a replica; the HPA's custom
metric is one the server exports and the Prometheus adapter serves.
  check.py MCDROP_SERVER"""
import os
import re
import subprocess
import sys

import yaml

here = os.path.dirname(os.path.abspath(__file__))
server = sys.argv[1]
docs = {}
for f in ("deployment.yaml", "service.yaml", "hpa.yaml", "podmonitor.yaml", "pdb.yaml",
          "prometheus-adapter.yaml"):
    for d in yaml.safe_load_all(open(os.path.join(here, f))):
        docs[(d["kind"], d["metadata"]["name"])] = d

helpfull = subprocess.run([server, "--helpfull"], capture_output=True, text=True).stdout
server_flags = set(re.findall(r"-{1,2}([a-z_]+) \(", helpfull))
dep = docs[("Deployment", "mcdrop")]
pod = dep["spec"]["template"]
c = pod["spec"]["containers"][0]
args = dict(a[2:].split("=", 1) for a in c["args"])
for flag in args:
    assert flag in server_flags, f"--{flag} is not a flag of mcdrop-server"
ports = {p["name"]: p["containerPort"] for p in c["ports"]}
assert ports["grpc"] == int(args["port"]), (ports, args["port"])
assert ports["metrics"] == int(args["metrics_port"]), (ports, args["metrics_port"])
assert ports["http"] == int(args["http_port"]), (ports, args["http_port"])
assert c["readinessProbe"]["grpc"]["port"] == ports["grpc"]
assert c["livenessProbe"]["grpc"]["port"] == ports["grpc"]
assert c["readinessProbe"]["grpc"]["service"] == "mcdrop.v1.Inference"
# The server registers that name with the health service.
src = open(os.path.join(here, "..", "..", "server", "server.cc")).read()
assert 'kServiceName[] = "mcdrop.v1.Inference"' in src
# Non-root as the image, threads no more than the CPU limit.
dockerfile = open(os.path.join(here, "..", "..", "Dockerfile")).read()
assert "USER 10001:10001" in dockerfile
assert pod["spec"]["securityContext"]["runAsUser"] == 10001
assert c["securityContext"]["readOnlyRootFilesystem"] is True
assert int(args["threads"]) <= int(c["resources"]["limits"]["cpu"])


def seconds(d):
    """An absl/Go duration such as 20s, 1.5s, 500ms, 1m, 1m30s."""
    total = 0.0
    for value, unit in re.findall(r"([0-9.]+)(ms|s|m|h)", d):
        total += float(value) * {"ms": 1e-3, "s": 1, "m": 60, "h": 3600}[unit]
    assert re.fullmatch(r"([0-9.]+(ms|s|m|h))+", d), f"not a duration: {d}"
    return total


# The drain fits in the pod's termination grace: kubelet runs any preStop
# hook, then sends SIGTERM; the server says NOT_SERVING for --drain_delay
# while still answering, then gives calls in flight --grace_period. A 2 s
# margin for the process to exit.
pre_stop = 0.0
hook = c.get("lifecycle", {}).get("preStop", {})
if "sleep" in hook:
    pre_stop = float(hook["sleep"]["seconds"])
elif "exec" in hook:
    command = " ".join(hook["exec"]["command"])
    m = re.search(r"sleep ([0-9.]+)", command)
    pre_stop = float(m.group(1)) if m else 0.0
drain = seconds(args.get("drain_delay", "0s"))
grace = seconds(args["grace_period"])
tgps = pod["spec"]["terminationGracePeriodSeconds"]
assert pre_stop + drain + grace + 2 <= tgps, (
    f"preStop {pre_stop} s + --drain_delay {drain} s + --grace_period {grace} s + 2 s "
    f"exceed terminationGracePeriodSeconds {tgps}")
# The readiness probe fails within the drain delay (or the preStop sleep), so
# the pod leaves the Services' endpoints before it refuses calls.
rp = c["readinessProbe"]
assert rp["periodSeconds"] * rp.get("failureThreshold", 3) <= max(drain, pre_stop), (
    "the readiness probe would notice the drain after it began refusing calls")
# Rolling updates keep every replica until its successor is ready.
ru = dep["spec"]["strategy"]["rollingUpdate"]
assert dep["spec"]["strategy"]["type"] == "RollingUpdate" and ru["maxUnavailable"] == 0, ru
labels = pod["metadata"]["labels"]
for kind, name in (("Service", "mcdrop"), ("Service", "mcdrop-headless")):
    svc = docs[(kind, name)]["spec"]
    assert svc["selector"].items() <= labels.items(), (name, svc["selector"])
    for p in svc["ports"]:
        assert p["targetPort"] in ports and ports[p["targetPort"]] == p["port"], (name, p)
assert docs[("Service", "mcdrop-headless")]["spec"]["clusterIP"] == "None"
hpa_spec = docs[("HorizontalPodAutoscaler", "mcdrop")]["spec"]
hpa = hpa_spec["scaleTargetRef"]
assert (hpa["kind"], hpa["name"]) == ("Deployment", "mcdrop")
# The HPA scales on CPU and on a per-pod metric that the server exports and
# the Prometheus adapter's rules serve under that name.
kinds = {m["type"] for m in hpa_spec["metrics"]}
assert {"Resource", "Pods"} <= kinds, kinds
metrics_src = open(os.path.join(here, "..", "..", "server", "metrics.cc")).read()
adapter = yaml.safe_load(
    docs[("ConfigMap", "mcdrop-prometheus-adapter")]["data"]["config.yaml"])
served = {r["name"]["as"]: r for r in adapter["rules"]}
for m in hpa_spec["metrics"]:
    if m["type"] != "Pods":
        continue
    name = m["pods"]["metric"]["name"]
    assert name in served, f"the adapter serves no metric {name}"
    series = re.match(r"([a-z_]+)\{", served[name]["seriesQuery"]).group(1)
    base = re.sub(r"_(count|sum|bucket)$", "", series)
    assert f'.Name("{base}")' in metrics_src, f"the server exports no {base}"
# Disruptions leave at least one replica of the HPA's minimum.
pdb = docs[("PodDisruptionBudget", "mcdrop")]["spec"]
assert pdb["selector"]["matchLabels"].items() <= labels.items()
assert pdb["maxUnavailable"] < hpa_spec["minReplicas"], (pdb, hpa_spec["minReplicas"])
pm = docs[("PodMonitor", "mcdrop")]["spec"]
assert pm["selector"]["matchLabels"].items() <= labels.items()
assert all(e["port"] in ports for e in pm["podMetricsEndpoints"])
# The compose file runs the same ports.
compose = yaml.safe_load(open(os.path.join(here, "..", "compose.yaml")))
for name in ("grpc", "http", "metrics"):
    assert f'{ports[name]}:{ports[name]}' in compose["services"]["mcdrop"]["ports"], name
# The image exposes them and runs the server on them.
dockerfile = open(os.path.join(here, "..", "..", "Dockerfile")).read()
exposed = set(re.search(r"^EXPOSE (.*)$", dockerfile, re.M).group(1).split())
assert {str(p) for p in ports.values()} <= exposed, (ports, exposed)
assert f'"--http_port", "{ports["http"]}"' in dockerfile
print(f"ok: {len(docs)} Kubernetes objects consistent with mcdrop-server ({len(args)} flags checked)")
