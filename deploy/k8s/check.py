#!/usr/bin/python3
"""Checks that deploy/k8s agrees with mcdrop-server and the image: every flag
in the container args is a flag of the server binary; probes, Services,
PodMonitor and HPA refer to ports and names that exist; the ports are the
ones the args set; the readiness probe names the service the server registers
in grpc.health.v1; the user matches the Dockerfile's.
  check.py MCDROP_SERVER"""
import os
import re
import subprocess
import sys

import yaml

here = os.path.dirname(os.path.abspath(__file__))
server = sys.argv[1]
docs = {}
for f in ("deployment.yaml", "service.yaml", "hpa.yaml", "podmonitor.yaml"):
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
# The grace period fits in the pod's termination grace.
assert int(args["grace_period"].rstrip("s")) < pod["spec"]["terminationGracePeriodSeconds"]
labels = pod["metadata"]["labels"]
for kind, name in (("Service", "mcdrop"), ("Service", "mcdrop-headless")):
    svc = docs[(kind, name)]["spec"]
    assert svc["selector"].items() <= labels.items(), (name, svc["selector"])
    for p in svc["ports"]:
        assert p["targetPort"] in ports and ports[p["targetPort"]] == p["port"], (name, p)
assert docs[("Service", "mcdrop-headless")]["spec"]["clusterIP"] == "None"
hpa = docs[("HorizontalPodAutoscaler", "mcdrop")]["spec"]["scaleTargetRef"]
assert (hpa["kind"], hpa["name"]) == ("Deployment", "mcdrop")
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
