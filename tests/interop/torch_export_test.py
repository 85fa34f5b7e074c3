#!/usr/bin/python3
"""The PyTorch exporter end to end (needs python3-torch): export networks,
load them in mcdrop, serve them, and compare with PyTorch; refuse what mcdrop
cannot represent, with a clear message.
  torch_export_test.py MCDROP_SERVER MCDROP_MODEL"""
import os
import subprocess
import sys
import tempfile
import time

import grpc
import numpy as np
import torch
from torch import nn

import mcdrop
from checks import check, finish, free_port
from mcdrop.torch_export import export_torch

server_bin, model_bin = sys.argv[1:3]
tmp = tempfile.mkdtemp()


class Paper(nn.Module):
    """The common pattern: a module with a Dropout before each Linear."""

    def __init__(self):
        super().__init__()
        self.drop0 = nn.Dropout(0.05)
        self.fc0 = nn.Linear(3, 20)
        self.act = nn.Tanh()
        self.drop1 = nn.Dropout(0.05)
        self.fc1 = nn.Linear(20, 1)

    def forward(self, x):
        return self.fc1(self.drop1(self.act(self.fc0(self.drop0(x)))))


class FunctionalRelu(nn.Module):
    """Its forward applies an activation its children do not show."""

    def __init__(self):
        super().__init__()
        self.fc0 = nn.Linear(3, 8)
        self.drop = nn.Dropout(0.1)
        self.fc1 = nn.Linear(8, 1)

    def forward(self, x):
        return self.fc1(self.drop(torch.relu(self.fc0(x))))


class Residual(nn.Module):
    """A skip connection: children in order, but not a sequence."""

    def __init__(self):
        super().__init__()
        self.fc0 = nn.Linear(4, 4)
        self.act = nn.ReLU()
        self.fc1 = nn.Linear(4, 1)

    def forward(self, x):
        return self.fc1(self.act(self.fc0(x)) + x)


class Named(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(3, 3), nn.ReLU(), nn.LayerNorm(3))
        self.head = nn.Linear(3, 1)

    def forward(self, x):
        return self.head(self.body(x))


torch.manual_seed(0)
nets = {
    "sequential_relu": nn.Sequential(nn.Dropout(0.1), nn.Linear(4, 8), nn.ReLU(), nn.Dropout(0.5), nn.Linear(8, 2)),
    "module_tanh": Paper(),
    "sigmoid_no_input_dropout": nn.Sequential(nn.Linear(4, 6), nn.Sigmoid(), nn.Dropout(0.2), nn.Linear(6, 3)),
}
paths = {}
for name, net in nets.items():
    paths[name] = os.path.join(tmp, name + ".safetensors")
    export_torch(net, paths[name], task="regression", tau=10.0, name=name)
    info = subprocess.run([model_bin, "info", paths[name]], capture_output=True, text=True)
    check(f"{name}: mcdrop loads the export", info.returncode == 0, info.stderr)

# Format v2: what v1 cannot hold (mixed activations, a Linear without bias,
# batch normalisation) and convolutional networks, served as image models.
v2_nets = {
    "mixed_no_bias_bn1d": (nn.Sequential(nn.Linear(4, 8, bias=False), nn.BatchNorm1d(8), nn.ReLU(),
                                         nn.Dropout(0.2), nn.Linear(8, 8), nn.Tanh(), nn.Dropout(0.1),
                                         nn.Linear(8, 2)), None),
    "lenet": (nn.Sequential(nn.Conv2d(1, 6, 5), nn.MaxPool2d(2), nn.ReLU(), nn.Conv2d(6, 8, 3, padding="same"),
                            nn.MaxPool2d(2), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 3 * 3, 30), nn.ReLU(),
                            nn.Dropout(0.5), nn.Linear(30, 4)), [1, 16, 16]),
    "all_dropout": (nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.AvgPool2d(2), nn.Dropout2d(0.3),
                                  nn.Conv2d(4, 6, 3, stride=2), nn.GELU(), nn.Dropout(0.2), nn.Flatten(),
                                  nn.Linear(6 * 3 * 3, 3)), [1, 16, 16]),
}
for name, (net, shape) in v2_nets.items():
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.BatchNorm1d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
    paths[name] = os.path.join(tmp, name + ".safetensors")
    written = export_torch(net, paths[name], task="regression", tau=10.0, name=name, input_shape=shape)
    check(f"{name}: exported as format v2", written == "v2", written)
    info = subprocess.run([model_bin, "info", paths[name]], capture_output=True, text=True)
    check(f"{name}: mcdrop loads the export", info.returncode == 0, info.stderr)
    nets[name] = net

refused = {
    "conv1d": (nn.Sequential(nn.Conv1d(1, 1, 3), nn.Linear(3, 1)), "module 0 (Conv1d) cannot be represented"),
    "softmax at the end": (nn.Sequential(nn.Linear(3, 2), nn.Softmax(-1)), "applies softmax"),
    "tanh-approximate GELU": (nn.Sequential(nn.Linear(3, 3), nn.GELU(approximate="tanh"), nn.Linear(3, 1)),
                              "approximate"),
    "ceil_mode pooling": (nn.Sequential(nn.Conv2d(1, 1, 3), nn.MaxPool2d(2, ceil_mode=True), nn.Flatten(),
                                        nn.Linear(4, 1)), "ceil_mode"),
    "reflect padding": (nn.Sequential(nn.Conv2d(1, 1, 3, padding=1, padding_mode="reflect"), nn.Flatten(),
                                      nn.Linear(36, 1)), "padding_mode"),
    "an image model without input_shape": (nn.Sequential(nn.Conv2d(1, 1, 3), nn.Flatten(), nn.Linear(16, 1)),
                                           "input_shape"),
    "partial flatten": (nn.Sequential(nn.Flatten(2), nn.Linear(3, 1)), "start_dim"),
    "an unknown module": (nn.Sequential(nn.Linear(3, 3), nn.LayerNorm(3), nn.Linear(3, 1)),
                          "module 1 (LayerNorm) cannot be represented"),
    "an unknown module, by its qualified name": (Named(), "module body.2 (LayerNorm) cannot be represented"),
    "a functional activation in forward": (FunctionalRelu(), "not its children applied in order"),
    "a skip connection": (Residual(), "not its children applied in order"),
}
for name, (net, message) in refused.items():
    try:
        export_torch(net, os.path.join(tmp, "x.safetensors"), task="regression", tau=1.0)
        check(f"refuses {name}", False, "no error")
    except ValueError as e:
        check(f"refuses {name}: {e}", message in str(e), str(e))

# Serve the exports and compare with PyTorch.
port = free_port()
args = [server_bin, "--host", "127.0.0.1", "--port", str(port), "--metrics_port", "0", "--http_port", "0"]
for name, path in paths.items():
    args += ["--model", f"{name}={path}"]
server = subprocess.Popen(args, stderr=subprocess.DEVNULL)
try:
    c = mcdrop.Client(f"127.0.0.1:{port}")
    for _ in range(100):
        try:
            if c.health() == "SERVING":
                break
        except grpc.RpcError:
            pass
        time.sleep(0.1)
    shapes = {"sequential_relu": [4], "module_tanh": [3], "sigmoid_no_input_dropout": [4],
              "mixed_no_bias_bn1d": [4], "lenet": [1, 16, 16], "all_dropout": [1, 16, 16]}
    for name, net in nets.items():
        x = torch.randn(7, *shapes[name])
        net.eval()
        with torch.no_grad():
            want = net(x).double().numpy()
        got = c.predict(x.numpy(), model=name, deterministic=True).mean
        rel = np.max(np.abs(got - want) / np.maximum(1.0, np.abs(want)))
        check(f"{name}: served output == PyTorch eval() to 1e-5 (max rel diff {rel:.1e})", rel < 1e-5)
        for m in net.modules():  # MC dropout: batch norm stays in eval mode
            if isinstance(m, (nn.Dropout, nn.Dropout2d)):
                m.train()
        with torch.no_grad():
            ys = torch.stack([net(x) for _ in range(20000)]).double()
        p = c.predict(x.numpy(), model=name, samples=20000, seed=5, include_noise=False)
        se = np.sqrt(ys.var(0).numpy() / 20000 * 2) + 1e-9
        z = np.abs(p.mean - ys.mean(0).numpy()) / se
        check(f"{name}: MC mean within 4 standard errors of PyTorch's (max {z.max():.2f})", z.max() < 4)
finally:
    server.terminate()
    server.wait()
finish()
