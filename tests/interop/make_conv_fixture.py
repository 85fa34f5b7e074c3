#!/usr/bin/python3
"""Makes the committed convolutional PyTorch parity fixture
(tests/data/interop/torch_convnet.*); needs python3-torch. Run once; the C++
parity test then needs no torch.
  PYTHONPATH=client/python tests/interop/make_conv_fixture.py tests/data/interop

The network has every layer kind of format v2: Conv2d with padding, groups and
dilation, BatchNorm2d (folded into the convolution by the loader) and
BatchNorm1d (not foldable: after an activation), Dropout2d, MaxPool2d,
AvgPool2d with padding, Flatten, Dropout, LeakyReLU, Tanh. PyTorch's MC
dropout keeps batch normalisation in eval mode and only the dropout modules
in training mode, as MC-dropout libraries do."""
import json
import os
import sys

import torch
from torch import nn

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "client", "python"))
from mcdrop.torch_export import export_torch  # noqa: E402

out = sys.argv[1]
os.makedirs(out, exist_ok=True)
torch.manual_seed(3)
N = 200000       # MC passes on the torch side
CHUNK = 10000    # passes per batched forward
KEEP = 4000      # per-pass outputs kept for the distribution test

net = nn.Sequential(
    nn.Conv2d(2, 6, 3, padding=1), nn.BatchNorm2d(6), nn.ReLU(), nn.Dropout2d(0.2),
    nn.MaxPool2d(2),                                      # 6 x 5 x 5
    nn.Conv2d(6, 8, 3, padding=2, dilation=2, groups=2),  # 8 x 5 x 5
    nn.LeakyReLU(0.1), nn.AvgPool2d(2, stride=2, padding=1),  # 8 x 3 x 3
    nn.Flatten(), nn.Dropout(0.3), nn.Linear(72, 20), nn.Tanh(),
    nn.BatchNorm1d(20), nn.Dropout(0.2), nn.Linear(20, 3))
with torch.no_grad():  # non-trivial running statistics
    for m in net:
        if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            m.running_mean.uniform_(-0.3, 0.3)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.uniform_(0.5, 1.5)
            m.bias.uniform_(-0.2, 0.2)
in_mean, in_std = torch.tensor([0.2, -0.1]), torch.tensor([1.5, 0.7])
written = export_torch(net, f"{out}/torch_convnet.safetensors", task="classification",
                       input_shape=[2, 10, 10], input_mean=in_mean, input_std=in_std,
                       name="torch-convnet")
assert written == "v2", written
x = torch.randn(4, 2, 10, 10) * in_std[None, :, None, None] + in_mean[None, :, None, None]


def forward_raw(xr):
    return net((xr - in_mean[None, :, None, None]) / in_std[None, :, None, None])


with torch.no_grad():
    net.eval()
    pdet = torch.softmax(forward_raw(x), -1)
    for m in net:  # MC dropout: dropout on, batch norm in eval mode
        if isinstance(m, (nn.Dropout, nn.Dropout2d)):
            m.train()
    chunks = []
    for _ in range(N // CHUNK):
        xb = x.repeat(CHUNK, 1, 1, 1)                # [CHUNK * B, C, H, W], pass-major
        p = torch.softmax(forward_raw(xb), -1).double()
        chunks.append(p.view(CHUNK, x.shape[0], -1))
    ps = torch.cat(chunks)                          # [N, B, D]
json.dump({"torch_version": torch.__version__, "passes": N, "inputs": x.flatten(1).tolist(),
           "deterministic": pdet.tolist(), "mc_mean": ps.mean(0).tolist(),
           "mc_variance": ps.var(0, unbiased=False).tolist(),
           "passes_row0_output0": ps[:KEEP, 0, 0].tolist()},
          open(f"{out}/torch_convnet.json", "w"))
print(f"fixture written to {out} with torch {torch.__version__}")
