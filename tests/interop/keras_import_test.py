#!/usr/bin/python3
"""The Keras HDF5 importer (client/python/mcdrop/keras_import.py), end to end.

TensorFlow is not in Debian, so the .h5 files here are written with h5py in
the layout tf.keras 2.x's model.save("model.h5") produces (root attribute
model_config with the Sequential's JSON; model_weights/<layer>/ with a
weight_names attribute and <layer>/kernel:0, <layer>/bias:0 datasets). The
test checks the importer against that layout, not against files written by
TensorFlow itself.

Exports a regression and a classification model, serves both, and compares
the served deterministic outputs with a NumPy forward pass of the same
weights; checks the drop rates in the metadata; checks the refusals.
  keras_import_test.py MCDROP_SERVER"""
import json
import subprocess
import sys
import tempfile

import h5py
import numpy as np

import mcdrop
from checks import check, finish, free_port, wait_for_port
from mcdrop.keras_import import export_keras_h5

server_bin = sys.argv[1]


def write_keras_h5(path, layers, weights, class_name="Sequential", with_config=True):
    """layers: Keras layer configs [(class_name, config)]; weights: {layer name:
    [(weight name, array)]}."""
    with h5py.File(path, "w") as f:
        f.attrs["keras_version"] = "2.15.0"
        f.attrs["backend"] = "tensorflow"
        if with_config:
            f.attrs["model_config"] = json.dumps({
                "class_name": class_name,
                "config": {"name": "sequential", "layers": [
                    {"module": "keras.layers", "class_name": k, "config": c} for k, c in layers]}})
        g = f.create_group("model_weights")
        g.attrs["layer_names"] = [c["name"].encode() for _, c in layers]
        for _, c in layers:
            lg = g.create_group(c["name"])
            ws = weights.get(c["name"], [])
            lg.attrs["weight_names"] = [f"{c['name']}/{n}".encode() for n, _ in ws]
            for n, a in ws:
                lg.create_dataset(f"{c['name']}/{n}", data=a)


rng = np.random.default_rng(0)


def dense(name, n_in, n_out, activation, use_bias=True):
    cfg = {"name": name, "units": n_out, "activation": activation, "use_bias": use_bias}
    w = [("kernel:0", rng.normal(0, 0.5, (n_in, n_out)).astype(np.float32))]
    if use_bias:
        w.append(("bias:0", rng.normal(0, 0.1, n_out).astype(np.float32)))
    return ("Dense", cfg), w


def forward(x, ws, act, last):
    h = x
    for i, w in enumerate(ws):
        h = h @ w[0][1] + (w[1][1] if len(w) > 1 else 0)
        if i < len(ws) - 1:
            h = {"relu": lambda v: np.maximum(v, 0), "tanh": np.tanh}[act](h)
    if last == "softmax":
        e = np.exp(h - h.max(1, keepdims=True))
        h = e / e.sum(1, keepdims=True)
    return h


with tempfile.TemporaryDirectory() as tmp:
    # Regression: Input -> Dropout(0.1) -> Dense(16, relu) -> Dropout(0.2) -> Dense(16) ->
    # Activation(relu) -> Dropout(0.3) -> Dense(1).
    d1, w1 = dense("dense", 5, 16, "relu")
    d2, w2 = dense("dense_1", 16, 16, "linear")
    d3, w3 = dense("dense_2", 16, 1, "linear")
    reg_layers = [("InputLayer", {"name": "input_1", "batch_input_shape": [None, 5]}),
                  ("Dropout", {"name": "dropout", "rate": 0.1}), d1,
                  ("Dropout", {"name": "dropout_1", "rate": 0.2}), d2,
                  ("Activation", {"name": "activation", "activation": "relu"}),
                  ("Dropout", {"name": "dropout_2", "rate": 0.3}), d3]
    write_keras_h5(f"{tmp}/reg.h5", reg_layers, {"dense": w1, "dense_1": w2, "dense_2": w3})
    export_keras_h5(f"{tmp}/reg.h5", f"{tmp}/reg.safetensors", task="regression", tau=10.0)
    # Classification: Dense(12, tanh) -> Dropout(0.25) -> Dense(4, softmax), a bias-free first layer.
    c1, v1 = dense("dense", 5, 12, "tanh", use_bias=False)
    c2, v2 = dense("dense_1", 12, 4, "softmax")
    cls_layers = [c1, ("Dropout", {"name": "dropout", "rate": 0.25}), c2]
    write_keras_h5(f"{tmp}/cls.h5", cls_layers, {"dense": v1, "dense_1": v2})
    export_keras_h5(f"{tmp}/cls.h5", f"{tmp}/cls.safetensors", task="classification")

    port = free_port()
    server = subprocess.Popen([server_bin, "--model", f"reg={tmp}/reg.safetensors",
                               "--model", f"cls={tmp}/cls.safetensors", "--host", "127.0.0.1",
                               "--port", str(port), "--metrics_port", "0"], stderr=subprocess.DEVNULL)
    try:
        wait_for_port(port)
        c = mcdrop.Client(f"127.0.0.1:{port}")
        x = rng.normal(0, 1, (7, 5)).astype(np.float32)
        got = c.predict(x, model="reg", deterministic=True).mean
        want = forward(x, [w1, w2, w3], "relu", "linear")
        rel = np.max(np.abs(got - want) / np.maximum(np.abs(want), 1e-3))
        check(f"regression: served deterministic output = NumPy forward pass (max rel diff {rel:.1e})",
              rel < 1e-5, (got, want))
        meta = c.metadata("reg")
        check("regression: drop rates 0.1 / 0.2 / 0.3, ReLU, 5-16-16-1",
              np.allclose(meta["dropout"], [0.1, 0.2, 0.3]) and meta["activation"] == "relu"
              and meta["layer_sizes"] == [5, 16, 16, 1], meta)
        got = c.predict(x, model="cls", deterministic=True).probabilities
        want = forward(x, [v1, v2], "tanh", "softmax")
        check("classification: served probabilities = Keras softmax output",
              np.allclose(got, want, rtol=1e-5, atol=1e-6), (got, want))
        meta = c.metadata("cls")
        check("classification: drop rates 0 / 0.25, tanh",
              np.allclose(meta["dropout"], [0.0, 0.25]) and meta["activation"] == "tanh", meta)
        mc = c.predict(x, model="cls", samples=200, seed=1)
        check("classification: MC dropout is active (mutual information > 0)",
              bool(np.all(mc.mutual_information > 0)))
    finally:
        server.terminate()
        server.wait()

    def refused(name, layers, weights, message, task="regression", **kw):
        path = f"{tmp}/bad.h5"
        write_keras_h5(path, layers, weights, **kw)
        try:
            export_keras_h5(path, f"{tmp}/bad.safetensors", task=task, tau=1.0)
            check(f"refuses {name}", False, "no error")
        except ValueError as e:
            check(f"refuses {name}: {e}", message in str(e), str(e))

    conv = ("Conv2D", {"name": "conv2d", "filters": 4})
    refused("a Conv2D layer", [conv, d3], {"dense_2": w3}, "Conv2D")
    refused("a functional model", reg_layers, {}, "only Sequential", class_name="Functional")
    refused("a weights-only file", reg_layers, {}, "no model_config", with_config=False)
    refused("mixed hidden activations", [d1, dense("dense_1", 16, 16, "tanh")[0], d3],
            {"dense": w1, "dense_1": w2, "dense_2": w3}, "mixed hidden activations")
    refused("a dropout after the last Dense", [d1, d3, ("Dropout", {"name": "dropout", "rate": 0.5})],
            {"dense": w1, "dense_2": w3}, "after the last Dense")
    refused("a softmax output for regression", [d1, ("Dense", dict(d3[1], activation="softmax"))],
            {"dense": w1, "dense_2": w3}, "must be linear")
    refused("an unsupported activation", [("Dense", dict(d1[1], activation="selu")), d3],
            {"dense": w1, "dense_2": w3}, "not supported")
    refused("shapes that do not chain", [d1, d3], {"dense": w1, "dense_2": w1}, "takes 5 inputs")

finish()
