#!/usr/bin/python3
"""Makes the committed PyTorch parity fixtures (tests/data/interop/); needs
python3-torch. Run once; the C++ parity test then needs no torch.
  PYTHONPATH=client/python tests/interop/make_fixtures.py tests/data/interop"""
import json
import os
import sys

import torch
from torch import nn

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "client", "python"))
from mcdrop.torch_export import export_torch  # noqa: E402

out = sys.argv[1]
os.makedirs(out, exist_ok=True)
torch.manual_seed(0)
N = 200000  # MC passes on the torch side

# Regression: the paper's shape of network (dropout before every Linear),
# with standardisation done by the service.
reg = nn.Sequential(nn.Dropout(0.1), nn.Linear(5, 32), nn.ReLU(),
                    nn.Dropout(0.2), nn.Linear(32, 32), nn.ReLU(),
                    nn.Dropout(0.2), nn.Linear(32, 2))
in_mean, in_std = torch.linspace(-1, 1, 5), torch.linspace(0.5, 2, 5)
out_mean, out_std = torch.tensor([10.0, -3.0]), torch.tensor([2.0, 0.5])
export_torch(reg, f"{out}/torch_regression.safetensors", task="regression", tau=4.0,
             input_mean=in_mean, input_std=in_std, output_mean=out_mean, output_std=out_std,
             name="torch-regression")
x = torch.randn(6, 5) * in_std + in_mean


def forward_raw(model, xr):
    return model((xr - in_mean) / in_std) * out_std + out_mean


with torch.no_grad():
    reg.eval()
    det = forward_raw(reg, x)
    reg.train()
    ys = torch.stack([forward_raw(reg, x) for _ in range(N)]).double()  # [N, B, D]
fixture = {"torch_version": torch.__version__, "passes": N, "inputs": x.tolist(),
           "deterministic": det.tolist(), "mc_mean": ys.mean(0).tolist(),
           "mc_variance": ys.var(0, unbiased=False).tolist(), "tau": 4.0}
json.dump(fixture, open(f"{out}/torch_regression.json", "w"), indent=1)

# Classification with GELU, a network the exporter has to read through a
# nested Sequential.
torch.manual_seed(1)
cls = nn.Sequential(nn.Sequential(nn.Linear(4, 16), nn.GELU()), nn.Dropout(0.3), nn.Linear(16, 3))
export_torch(cls, f"{out}/torch_classifier.safetensors", task="classification", name="torch-classifier")
xc = torch.randn(5, 4)
with torch.no_grad():
    cls.eval()
    pdet = torch.softmax(cls(xc), -1)
    cls.train()
    ps = torch.stack([torch.softmax(cls(xc), -1) for _ in range(N)]).double()
json.dump({"torch_version": torch.__version__, "passes": N, "inputs": xc.tolist(),
           "deterministic": pdet.tolist(), "mc_mean": ps.mean(0).tolist(),
           "mc_variance": ps.var(0, unbiased=False).tolist()},
          open(f"{out}/torch_classifier.json", "w"), indent=1)
print(f"fixtures written to {out} with torch {torch.__version__}")
