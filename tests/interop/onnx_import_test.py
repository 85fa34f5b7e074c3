#!/usr/bin/python3
"""The ONNX importer (client/python/mcdrop/onnx_import.py) end to end, with
PyTorch (python3-torch) writing the ONNX files and python3-onnx reading them.

Six networks (a LeNet-like convnet with every supported layer kind, an MLP
with BatchNorm1d / Tanh / Sigmoid, a MatMul + Add network, a convnet
flattened by x.view(x.size(0), -1), global average and max pooling) are exported with torch.onnx.export in
training mode (Dropout nodes kept, rates read from the graph) and in eval
mode (no Dropout nodes; rates given to the command-line entry), imported,
checked with mcdrop-model, served, and compared with PyTorch: deterministic
outputs with net.eval() (softmax of the logits for classifiers) to 1e-5
relative; the metadata's layer list holds the expected drop rates; MC means
agree with PyTorch's MC dropout within 4 standard errors. Then the
refusals, each with its message.
  onnx_import_test.py MCDROP_SERVER MCDROP_MODEL"""
import copy
import io
import json
import os
import subprocess
import sys
import tempfile
import warnings

import numpy as np
import onnx
import torch
from onnx import helper, numpy_helper, TensorProto
from torch import nn

import mcdrop
from checks import check, finish, free_port, wait_for_port
from mcdrop.onnx_import import export_onnx, layers_of_onnx

server_bin, model_bin = sys.argv[1:3]
tmp = tempfile.mkdtemp()
env = dict(os.environ)
warnings.filterwarnings("ignore")
torch.manual_seed(0)


def randomise_batch_norm(net):
    """Gives every BatchNorm non-trivial statistics and affine parameters."""
    for m in net.modules():
        if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            with torch.no_grad():
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)


class LeNet(nn.Module):
    """Conv2d with padding, stride, dilation and groups, BatchNorm2d, LeakyReLU,
    MaxPool2d, AvgPool2d with padding both ways of count_include_pad (torch
    writes count_include_pad=True as Pad + AveragePool), ZeroPad2d before a
    Conv (Pad merged into its padding), Flatten, Linear, Dropout; input
    [2, 16, 16]."""

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(2, 6, 3, padding=1), nn.BatchNorm2d(6), nn.LeakyReLU(0.1),
            nn.MaxPool2d(2),                                                     # 8 x 8
            nn.Dropout(0.1),
            nn.Conv2d(6, 8, 3, padding=2, dilation=2, groups=2), nn.ReLU(),     # 8 x 8
            nn.AvgPool2d(2, padding=1),                                          # 5 x 5
            nn.ZeroPad2d(1), nn.Conv2d(8, 8, 3, stride=2), nn.Tanh(),           # 3 x 3
            nn.AvgPool2d(2, stride=1, padding=1, count_include_pad=False),       # 4 x 4
            nn.Flatten(), nn.Dropout(0.25), nn.Linear(128, 16), nn.LeakyReLU(0.2),
            nn.Dropout(0.5), nn.Linear(16, 4))

    def forward(self, x):
        return self.body(x)


class ViewNet(nn.Module):
    """A convnet flattened with x.view(x.size(0), -1) (Shape / Gather / Concat /
    Reshape under a dynamic batch); input [1, 6, 6]."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 3, 3)
        self.drop = nn.Dropout(0.2)
        self.fc = nn.Linear(48, 3)

    def forward(self, x):
        y = torch.relu(self.conv(x))
        return self.fc(self.drop(y.view(y.size(0), -1)))


class MatMulNet(nn.Module):
    """x @ W + b (MatMul + Add in ONNX) before a Linear (Gemm); input [5]."""

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.randn(5, 12) * 0.4)
        self.b = nn.Parameter(torch.randn(12) * 0.1)
        self.drop = nn.Dropout(0.15)
        self.fc = nn.Linear(12, 2)

    def forward(self, x):
        return self.fc(self.drop(torch.sigmoid(x @ self.w + self.b)))


def global_pool(pool):
    """Conv, then AdaptiveAvgPool2d(1) / AdaptiveMaxPool2d(1) (GlobalAveragePool /
    GlobalMaxPool in ONNX); input [1, 7, 7]."""
    return lambda: nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), pool(1), nn.Flatten(),
                                 nn.Dropout(0.3), nn.Linear(4, 3))


def mlp():
    return nn.Sequential(nn.Dropout(0.05), nn.Linear(5, 32), nn.BatchNorm1d(32), nn.Tanh(),
                         nn.Dropout(0.1), nn.Linear(32, 24), nn.Sigmoid(), nn.Dropout(0.2),
                         nn.Linear(24, 2))


# name: (constructor, example shape, task, {target: rate} for the eval-mode export,
#        the expected dropout layers [(kind, rate)] in order)
NETS = {
    "lenet": (LeNet, (2, 16, 16), "classification",
              {"/body/body.5/Conv": 0.1, "/body/body.14/Gemm": 0.25, "4": 0.5},
              [("dropout", 0.1), ("dropout", 0.25), ("dropout", 0.5)]),
    "mlp": (mlp, (5,), "regression", {"0": 0.05, "1": 0.1, "2": 0.2},
            [("dropout", 0.05), ("dropout", 0.1), ("dropout", 0.2)]),
    "matmul": (MatMulNet, (5,), "regression", {"/fc/Gemm": 0.15}, [("dropout", 0.15)]),
    "view": (ViewNet, (1, 6, 6), "classification", {"/fc/Gemm": 0.2}, [("dropout", 0.2)]),
    "gap": (global_pool(nn.AdaptiveAvgPool2d), (1, 7, 7), "classification", {"1": 0.3}, [("dropout", 0.3)]),
    "gmp": (global_pool(nn.AdaptiveMaxPool2d), (1, 7, 7), "classification", {"1": 0.3}, [("dropout", 0.3)]),
}


def to_onnx(net, shape, training, dynamic=True, **kw):
    """torch.onnx.export into a ModelProto; a training-mode export runs the
    network in training mode (BatchNorm statistics move), so it exports `net`
    itself and the caller compares with it afterwards."""
    f = io.BytesIO()
    mode = torch.onnx.TrainingMode.TRAINING if training else torch.onnx.TrainingMode.EVAL
    net.train(training)
    axes = {"x": {0: "batch"}, "y": {0: "batch"}} if dynamic else None
    torch.onnx.export(net, torch.randn(3, *shape), f, training=mode, input_names=["x"],
                      output_names=["y"], dynamic_axes=axes, **kw)
    net.eval()
    return onnx.load_from_string(f.getvalue())


def node_names(model):
    return [n.name for n in model.graph.node]


# ---- export and import ------------------------------------------------------------------
served = {}  # model name -> (torch net in eval mode, example shape, task, expected dropout)
for name, (make, shape, task, cli_rates, expected) in NETS.items():
    base = make()
    randomise_batch_norm(base)
    for training in (True, False):
        net = copy.deepcopy(base)
        model = to_onnx(net, shape, training)
        has_dropout = "Dropout" in [n.op_type for n in model.graph.node]
        check(f"{name}: {'a training' if training else 'an eval'}-mode export "
              f"{'keeps' if training else 'drops'} the Dropout nodes", has_dropout == training)
        tag = f"{name}_{'train' if training else 'eval'}"
        src, out = os.path.join(tmp, tag + ".onnx"), os.path.join(tmp, tag + ".safetensors")
        onnx.save(model, src)
        if training:
            report = export_onnx(src, out, task=task, tau=5.0 if task == "regression" else None, name=tag)
            check(f"{tag}: rates come from the graph", all(d["source"].startswith("graph")
                                                           for d in report["dropout"]), report)
        else:
            for target in cli_rates:
                if not target.isdigit():
                    check(f"{tag}: the graph has the node {target!r}", target in node_names(model),
                          node_names(model))
            args = [sys.executable, "-m", "mcdrop.onnx_import", src, out, "--task", task, "--name", tag]
            if task == "regression":
                args += ["--tau", "5"]
            for target, rate in cli_rates.items():
                args += ["--dropout", f"{target}={rate}"]
            run = subprocess.run(args, capture_output=True, text=True, env=env)
            print("\n".join("    " + line for line in run.stdout.splitlines()))
            check(f"{tag}: the command line imports it and says where each rate came from",
                  run.returncode == 0 and run.stdout.count("from argument") == len(expected),
                  run.stdout + run.stderr)
        info = subprocess.run([model_bin, "info", out], capture_output=True, text=True)
        check(f"{tag}: mcdrop-model loads it", info.returncode == 0, info.stderr)
        served[tag] = (net, shape, task, expected)

# ---- serve and compare with PyTorch ---------------------------------------------------------
T = 4000
port = free_port()
args = [server_bin, "--host", "127.0.0.1", "--port", str(port), "--metrics_port", "0", "--http_port", "0"]
for tag in served:
    args += ["--model", f"{tag}={os.path.join(tmp, tag + '.safetensors')}"]
server = subprocess.Popen(args, stderr=subprocess.DEVNULL)
worst = 0.0
try:
    if not wait_for_port(port, 20):
        check("the server starts", False)
        finish()
    c = mcdrop.Client(f"127.0.0.1:{port}")
    for tag, (net, shape, task, expected) in served.items():
        x = torch.randn(5, *shape)
        with torch.no_grad():
            want = net(x).double()
        if task == "classification":
            want = torch.softmax(want, -1)
        want = want.numpy()
        p = c.predict(x.reshape(5, -1).numpy(), model=tag, deterministic=True)
        got = p.probabilities if task == "classification" else p.mean
        rel = float(np.max(np.abs(got - want) / np.maximum(np.abs(want), 1e-3)))
        worst = max(worst, rel)
        check(f"{tag}: served deterministic output == PyTorch eval() (max rel diff {rel:.1e})",
              rel < 1e-5, (got, want))

        meta = c.metadata(tag)
        listed = json.loads(meta["layers"])
        drops = [(l["type"], l["p"]) for l in listed if l["type"].startswith("dropout")]
        check(f"{tag}: the layer list has the dropout layers {expected}",
              len(drops) == len(expected) and all(k == ek and abs(r - er) < 1e-6
                                                  for (k, r), (ek, er) in zip(drops, expected)), drops)

        # MC dropout as PyTorch does it: BatchNorm in eval mode, the Dropouts in training mode.
        for m in net.modules():
            if isinstance(m, nn.Dropout):
                m.train()
        with torch.no_grad():
            ys = net(x.repeat(T, *([1] * len(shape)))).double()
            if task == "classification":
                ys = torch.softmax(ys, -1)
            ys = ys.reshape(T, 5, -1)
        net.eval()
        mc = c.predict(x.reshape(5, -1).numpy(), model=tag, samples=T, seed=3, include_noise=False)
        got = mc.probabilities if task == "classification" else mc.mean
        se = np.sqrt(ys.var(0).numpy() / T * 2) + 1e-9
        z = float(np.max(np.abs(got - ys.mean(0).numpy()) / se))
        check(f"{tag}: MC mean within 4 standard errors of PyTorch's MC dropout (max {z:.2f})", z < 4)
finally:
    server.terminate()
    server.wait()
print(f"max relative difference of the deterministic outputs: {worst:.2e}")

# ---- the argument scheme ---------------------------------------------------------------------
lenet_eval = onnx.load(os.path.join(tmp, "lenet_eval.onnx"))
lenet_train = onnx.load(os.path.join(tmp, "lenet_train.onnx"))
report = export_onnx(lenet_train, os.path.join(tmp, "x.safetensors"), task="classification",
                     dropout={"/body/body.14/Gemm": 0.3, 4: 0.0, 1: (0.2, "dropout2d")})
rates = [(d["kind"], d["rate"], d["before"], d["source"].split(" ")[0]) for d in report["dropout"]]
check("arguments replace the graph's rates where they name a layer, keep the others, 0 removes one",
      rates == [("dropout2d", 0.2, "/body/body.5/Conv", "argument"),
                ("dropout", 0.3, "/body/body.14/Gemm", "argument")], rates)
check("the report says which graph rate an argument replaced",
      "replacing the graph's 0.25" in report["dropout"][1]["source"], report["dropout"])

# ---- older opsets: Dropout's ratio as an attribute (opset <= 11), Pad's pads as an attribute (opset
# < 11), Reshape's / Unsqueeze's operands --------------------------------------------------------------
for make, shape in ((LeNet, (2, 16, 16)), (ViewNet, (1, 6, 6))):
    base = make()
    randomise_batch_norm(base)
    for m in base.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.momentum = 0.0  # a training-mode export then leaves the statistics alone
    want = None
    for opset in (14, 11, 9):
        model = to_onnx(copy.deepcopy(base), shape, True, opset_version=opset)
        layers, _, report = layers_of_onnx(model)
        if want is None:
            want = (layers, report["dropout"])
            continue
        same = len(layers) == len(want[0]) and all(
            {k: v for k, v in l.items() if k != "tensors"} == {k: v for k, v in w.items() if k != "tensors"}
            and all(np.array_equal(l["tensors"][t], w["tensors"][t]) for t in w.get("tensors", {}))
            for l, w in zip(layers, want[0]))
        check(f"{make.__name__} exported with opset {opset}: the same layers and rates as with opset 14",
              same and report["dropout"] == want[1], (layers, report))


# ---- refusals ---------------------------------------------------------------------------------
def refused(what, model, message, **kw):
    try:
        export_onnx(model, os.path.join(tmp, "bad.safetensors"), task="classification", **kw)
        check(f"refuses {what}", False, "no error")
    except ValueError as e:
        check(f"refuses {what}: {e}", message in str(e), str(e))


class Residual(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Linear(4, 4), nn.Linear(4, 2)

    def forward(self, x):
        y = self.a(x)
        return self.b(y + torch.relu(y))


class Rows(nn.Module):
    """x.reshape(-1, 9): one row per channel, not a flatten."""

    def forward(self, x):
        return x.reshape(-1, 9)


def graph(nodes, initializers, in_shape, out_name="y"):
    """A hand-written ONNX model (opset 13) from helper nodes and {name: array}."""
    g = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, in_shape)],
        [helper.make_tensor_value_info(out_name, TensorProto.FLOAT, None)],
        [numpy_helper.from_array(np.asarray(v, np.float32), k) for k, v in initializers.items()])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])


conv_w = {"w": np.ones((2, 1, 3, 3)), "fw": np.ones((2, 2 * 4 * 4))}
refused("a Softmax at the end", to_onnx(nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2),
                                                      nn.Softmax(-1)), (3,), False),
        "export logits; mcdrop applies the softmax itself")
refused("a Softmax at the end (its node named)", to_onnx(nn.Sequential(nn.Linear(3, 2), nn.Softmax(-1)),
                                                         (3,), False), "'/1/Softmax' (Softmax)")
refused("an asymmetric Conv pad", graph(
    [helper.make_node("Conv", ["x", "w"], ["c"], name="conv", kernel_shape=[3, 3], pads=[1, 1, 0, 0]),
     helper.make_node("Flatten", ["c"], ["f"], name="flat"),
     helper.make_node("Gemm", ["f", "fw"], ["y"], name="fc", transB=1)], conv_w, ["N", 1, 5, 5]),
    "'conv' (Conv): asymmetric pads [1, 1, 0, 0]")
refused("an asymmetric ZeroPad2d before a Conv", to_onnx(
    nn.Sequential(nn.ZeroPad2d((0, 1, 0, 1)), nn.Conv2d(1, 2, 3), nn.Flatten(), nn.Linear(2 * 4 * 4, 2)),
    (1, 5, 5), False), "asymmetric pads")
refused("ceil_mode=1", to_onnx(nn.Sequential(nn.Conv2d(1, 2, 3), nn.MaxPool2d(2, ceil_mode=True),
                                             nn.Flatten(), nn.Linear(2 * 2 * 2, 2)), (1, 5, 5), False),
        "(MaxPool): ceil_mode=1 is not supported")
refused("a residual connection", to_onnx(Residual(), (4,), False), "a branch")
refused("an unknown op (Elu)", to_onnx(nn.Sequential(nn.Linear(3, 4), nn.ELU(), nn.Linear(4, 2)), (3,), False),
        "'/1/Elu' (Elu) is not supported")
refused("auto_pad SAME_UPPER", graph(
    [helper.make_node("Conv", ["x", "w"], ["c"], name="conv", kernel_shape=[3, 3], auto_pad="SAME_UPPER"),
     helper.make_node("Flatten", ["c"], ["f"]), helper.make_node("Gemm", ["f", "fw"], ["y"], transB=1)],
    conv_w, ["N", 1, 4, 4]), "auto_pad=SAME_UPPER")
refused("Gemm with alpha != 1", graph(
    [helper.make_node("Gemm", ["x", "fw"], ["y"], name="fc", transB=1, alpha=2.0)], conv_w, ["N", 32]),
    "'fc' (Gemm): alpha=2.0")
refused("a reshape that is not a flatten", to_onnx(
    nn.Sequential(nn.Conv2d(1, 2, 3), Rows(), nn.Linear(3 * 3, 2)), (1, 5, 5), False),
    "only a reshape to [batch, features]")
refused("an unknown dropout target", lenet_eval, "dropout target '/nope' is not", dropout={"/nope": 0.5})
refused("dropout2d before a dense layer", lenet_eval, "dropout2d needs an image input",
        dropout={"/body/body.14/Gemm": (0.5, "dropout2d")})
refused("a rate of 1", lenet_eval, "not in [0, 1)", dropout={0: 1.0})
run = subprocess.run([sys.executable, "-m", "mcdrop.onnx_import", os.path.join(tmp, "lenet_eval.onnx"),
                      os.path.join(tmp, "bad.safetensors"), "--task", "classification", "--dropout", "/x=0.5"],
                     capture_output=True, text=True, env=env)
check("the command line reports a refusal on stderr with exit code 1",
      run.returncode == 1 and "error: dropout target '/x'" in run.stderr, run.stderr)
finish()
