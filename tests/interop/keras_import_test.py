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
weights; checks the drop rates in the metadata; checks the refusals. Then
the same for two convolutional models (format v2: a Sequential regression
network and a Functional-chain classifier), against a NumPy forward pass in
Keras' channels-last semantics (NHWC, TensorFlow's 'same' padding, Flatten
in H, W, C order), and the conv refusals.
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


def write_keras_h5(path, layers, weights, class_name="Sequential", with_config=True, inbound=None):
    """layers: Keras layer configs [(class_name, config)]; weights: {layer name:
    [(weight name, array)]}. inbound: for a Functional model, {layer name: [the
    names of the layers it is called on]} (tf.keras 2.x's inbound_nodes); the
    first layer is the input and the last the output."""
    with h5py.File(path, "w") as f:
        f.attrs["keras_version"] = "2.15.0"
        f.attrs["backend"] = "tensorflow"
        if with_config:
            entries = [{"module": "keras.layers", "class_name": k, "config": c} for k, c in layers]
            config = {"name": "sequential", "layers": entries}
            if inbound is not None:
                for e in entries:
                    e["name"] = e["config"]["name"]
                    parents = inbound.get(e["name"], [])
                    e["inbound_nodes"] = [[[p, 0, 0, {}] for p in parents]] if parents else []
                config = {"name": "model", "layers": entries,
                          "input_layers": [[layers[0][1]["name"], 0, 0]],
                          "output_layers": [[layers[-1][1]["name"], 0, 0]]}
            f.attrs["model_config"] = json.dumps({"class_name": class_name, "config": config})
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



# Keras semantics on NHWC batches, in float64, independent of the importer.
def keras_same_padding(n, k_eff, s):
    """TensorFlow's 'same': out = ceil(n / s); the odd pixel goes after."""
    total = max((-(-n // s) - 1) * s + k_eff - n, 0)
    return total // 2, total - total // 2


def keras_conv2d(x, kernel, bias, strides=(1, 1), padding="valid", dilation=(1, 1), groups=1):
    """Keras Conv2D: x [N, H, W, C], kernel [kh, kw, C / groups, out]."""
    kh, kw, cig, co = kernel.shape
    (sh, sw), (dh, dw) = strides, dilation
    ekh, ekw = dh * (kh - 1) + 1, dw * (kw - 1) + 1
    if padding == "same":
        x = np.pad(x, ((0, 0), keras_same_padding(x.shape[1], ekh, sh),
                       keras_same_padding(x.shape[2], ekw, sw), (0, 0)))
    oh, ow = (x.shape[1] - ekh) // sh + 1, (x.shape[2] - ekw) // sw + 1
    y = np.zeros((x.shape[0], oh, ow, co))
    cog = co // groups
    for g in range(groups):
        xg = x[..., g * cig:(g + 1) * cig]
        for a in range(kh):
            for b in range(kw):
                patch = xg[:, a * dh:a * dh + sh * (oh - 1) + 1:sh, b * dw:b * dw + sw * (ow - 1) + 1:sw]
                y[..., g * cog:(g + 1) * cog] += np.einsum(
                    "nhwc,co->nhwo", patch, kernel[a, b, :, g * cog:(g + 1) * cog].astype(np.float64))
    return y if bias is None else y + bias


def keras_pool(x, pool, strides, op):
    """Keras MaxPooling2D / AveragePooling2D with padding 'valid'."""
    (kh, kw), (sh, sw) = pool, strides
    oh, ow = (x.shape[1] - kh) // sh + 1, (x.shape[2] - kw) // sw + 1
    windows = np.stack([x[:, a:a + sh * (oh - 1) + 1:sh, b:b + sw * (ow - 1) + 1:sw]
                        for a in range(kh) for b in range(kw)])
    return windows.max(0) if op == "max" else windows.mean(0)


def keras_batch_norm(x, gamma, beta, mean, var, eps):
    """Inference-mode BatchNormalization over the last axis."""
    return (x - mean) / np.sqrt(var + eps) * gamma + beta


def conv2d(name, n_in, filters, kernel_size, activation="linear", use_bias=True, groups=1, **extra):
    """A tf.keras 2.x Conv2D config and its weights (kernel [kh, kw, in / groups, out])."""
    cfg = {"name": name, "trainable": True, "dtype": "float32", "filters": filters,
           "kernel_size": list(kernel_size), "strides": [1, 1], "padding": "valid",
           "data_format": "channels_last", "dilation_rate": [1, 1], "groups": groups,
           "activation": activation, "use_bias": use_bias}
    cfg.update(extra)
    fan_in = kernel_size[0] * kernel_size[1] * n_in // groups
    w = [("kernel:0", rng.normal(0, np.sqrt(2 / fan_in),
                                 (*kernel_size, n_in // groups, filters)).astype(np.float32))]
    if use_bias:
        w.append(("bias:0", rng.normal(0, 0.1, filters).astype(np.float32)))
    return ("Conv2D", cfg), w


def batch_norm(name, n, axis, center=True, scale=True, epsilon=1e-3):
    cfg = {"name": name, "trainable": True, "dtype": "float32", "axis": axis, "momentum": 0.99,
           "epsilon": epsilon, "center": center, "scale": scale}
    w = []
    if scale:
        w.append(("gamma:0", rng.uniform(0.5, 1.5, n).astype(np.float32)))
    if center:
        w.append(("beta:0", rng.normal(0, 0.2, n).astype(np.float32)))
    w += [("moving_mean:0", rng.normal(0, 0.3, n).astype(np.float32)),
          ("moving_variance:0", rng.uniform(0.3, 2.0, n).astype(np.float32))]
    return ("BatchNormalization", cfg), w


def model_of(entries):
    """[(layer, weights or None)] -> (layers, {name: weights}, {name: {weight: float64 array}})."""
    layers = [layer for layer, _ in entries]
    weights = {layer[1]["name"]: w for layer, w in entries if w}
    arrays = {n: {k: np.asarray(a, np.float64) for k, a in w} for n, w in weights.items()}
    return layers, weights, arrays


def bn_args(arrays, name, eps=1e-3):
    w = arrays[name]
    return (w.get("gamma:0", 1.0), w.get("beta:0", 0.0), w["moving_mean:0"], w["moving_variance:0"],
            eps)


def to_served(x_nhwc):
    """A Keras NHWC batch as mcdrop rows: C, H, W order, flattened."""
    return np.ascontiguousarray(x_nhwc.transpose(0, 3, 1, 2)).reshape(len(x_nhwc), -1)


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
                               "--port", str(port), "--metrics_port", "0", "--http_port", "0"], stderr=subprocess.DEVNULL)
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
    refused("a Conv2D layer without an input shape", [conv, d3], {"dense_2": w3}, "Conv2D")
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

    # ---- Convolutional models (format v2) ----------------------------------------------------
    # A: Sequential regression on [12, 10, 3] images. The last feature map is 3 x 2 x 5 (H, W and
    # C all different) and a BatchNormalization sits between Flatten and Dense, so a Flatten read
    # in the wrong order (Keras: H, W, C; mcdrop: C, H, W) changes the answers.
    a_entries = [
        (("InputLayer", {"name": "input_1", "batch_input_shape": [None, 12, 10, 3],
                         "dtype": "float32", "sparse": False, "ragged": False}), None),
        conv2d("conv2d", 3, 6, (3, 3), padding="same", use_bias=False),           # 12 x 10 x 6
        batch_norm("batch_normalization", 6, [3]),
        (("LeakyReLU", {"name": "leaky_re_lu", "alpha": 0.1}), None),
        conv2d("conv2d_1", 6, 4, (3, 2), strides=[2, 1], groups=2, activation="relu"),  # 5 x 9 x 4
        (("MaxPooling2D", {"name": "max_pooling2d", "pool_size": [2, 2], "padding": "valid",
                           "strides": [1, 2], "data_format": "channels_last"}), None),  # 4 x 4 x 4
        (("SpatialDropout2D", {"name": "spatial_dropout2d", "rate": 0.1, "noise_shape": None,
                               "seed": None}), None),
        conv2d("conv2d_2", 4, 5, (2, 3), activation="tanh"),                      # 3 x 2 x 5
        (("Flatten", {"name": "flatten", "data_format": "channels_last"}), None),  # 30
        batch_norm("batch_normalization_1", 30, [1], center=False),
        (("Dropout", {"name": "dropout", "rate": 0.2, "noise_shape": None, "seed": None}), None),
        dense("dense", 30, 8, "relu"),
        (("Dropout", {"name": "dropout_1", "rate": 0.3, "noise_shape": None, "seed": None}), None),
        dense("dense_1", 8, 2, "linear")]
    a_layers, a_weights, A = model_of(a_entries)

    def forward_a(x):
        h = keras_conv2d(x, A["conv2d"]["kernel:0"], None, padding="same")
        h = keras_batch_norm(h, *bn_args(A, "batch_normalization"))
        h = np.where(h > 0, h, 0.1 * h)
        h = np.maximum(keras_conv2d(h, A["conv2d_1"]["kernel:0"], A["conv2d_1"]["bias:0"],
                                    strides=(2, 1), groups=2), 0)
        h = keras_pool(h, (2, 2), (1, 2), "max")
        h = np.tanh(keras_conv2d(h, A["conv2d_2"]["kernel:0"], A["conv2d_2"]["bias:0"]))
        h = h.reshape(len(h), -1)  # Keras' Flatten: H, W, C order
        h = keras_batch_norm(h, *bn_args(A, "batch_normalization_1"))
        h = np.maximum(h @ A["dense"]["kernel:0"] + A["dense"]["bias:0"], 0)
        return h @ A["dense_1"]["kernel:0"] + A["dense_1"]["bias:0"]

    write_keras_h5(f"{tmp}/conv.h5", a_layers, a_weights)
    export_keras_h5(f"{tmp}/conv.h5", f"{tmp}/conv.safetensors", task="regression", tau=4.0)

    # B: the same kind of network as a Functional chain, a classifier on [9, 11, 2] images:
    # 'same' padding with dilation, average pooling with the default strides, a BatchNormalization
    # without gamma, a ReLU layer, element-wise Dropout on an image, softmax output.
    b_entries = [
        (("InputLayer", {"name": "input_2", "batch_input_shape": [None, 9, 11, 2],
                         "dtype": "float32"}), None),
        conv2d("c1", 2, 4, (3, 3), padding="same", dilation_rate=[2, 2], activation="relu"),
        (("AveragePooling2D", {"name": "avg", "pool_size": [2, 2], "padding": "valid",
                               "strides": None, "data_format": "channels_last"}), None),  # 4 x 5 x 4
        batch_norm("bn", 4, -1, scale=False, epsilon=1e-2),
        (("ReLU", {"name": "re_lu", "max_value": None, "negative_slope": 0.0, "threshold": 0.0}),
         None),
        (("Dropout", {"name": "drop", "rate": 0.25, "noise_shape": None, "seed": None}), None),
        (("Flatten", {"name": "flat", "data_format": "channels_last"}), None),       # 80
        dense("out", 80, 3, "softmax")]
    b_layers, b_weights, B = model_of(b_entries)
    b_chain = {b_layers[j][1]["name"]: [b_layers[j - 1][1]["name"]] for j in range(1, len(b_layers))}

    def forward_b(x):
        h = np.maximum(keras_conv2d(x, B["c1"]["kernel:0"], B["c1"]["bias:0"], padding="same",
                                    dilation=(2, 2)), 0)
        h = keras_pool(h, (2, 2), (2, 2), "avg")
        h = np.maximum(keras_batch_norm(h, *bn_args(B, "bn", 1e-2)), 0)
        h = h.reshape(len(h), -1) @ B["out"]["kernel:0"] + B["out"]["bias:0"]
        e = np.exp(h - h.max(1, keepdims=True))
        return e / e.sum(1, keepdims=True)

    write_keras_h5(f"{tmp}/convcls.h5", b_layers, b_weights, class_name="Functional",
                   inbound=b_chain)
    export_keras_h5(f"{tmp}/convcls.h5", f"{tmp}/convcls.safetensors", task="classification")

    port = free_port()
    server = subprocess.Popen([server_bin, "--model", f"conv={tmp}/conv.safetensors",
                               "--model", f"convcls={tmp}/convcls.safetensors",
                               "--model", f"reg={tmp}/reg.safetensors", "--host", "127.0.0.1",
                               "--port", str(port), "--metrics_port", "0", "--http_port", "0"], stderr=subprocess.DEVNULL)
    try:
        wait_for_port(port)
        c = mcdrop.Client(f"127.0.0.1:{port}")
        check("the Dense-only model is still format v1", c.metadata("reg").get("format") == "mcdrop.v1",
              c.metadata("reg"))
        xa = rng.normal(0, 1, (6, 12, 10, 3)).astype(np.float32)  # Keras NHWC
        got = c.predict(to_served(xa), model="conv", deterministic=True).mean
        want = forward_a(xa.astype(np.float64))
        rel = np.max(np.abs(got - want) / np.maximum(np.abs(want), 1e-3))
        check(f"conv regression: served deterministic output = NumPy channels-last forward pass "
              f"(max rel diff {rel:.1e})", got.shape == want.shape and rel < 1e-5, (got, want))
        # The classic pitfall, made visible: reading the Flatten in C, H, W order without permuting
        # the rows after it gives other answers.
        meta = c.metadata("conv")
        listed = json.loads(meta.get("layers", "[]"))
        check("conv regression: format v2, input_shape [C, H, W] = [3, 12, 10]",
              meta.get("format") == "mcdrop.v2" and meta.get("input_shape") == [3, 12, 10], meta)
        want_types = ["conv2d", "batch_norm", "leaky_relu", "conv2d", "relu", "max_pool2d",
                      "dropout2d", "conv2d", "tanh", "flatten", "batch_norm", "dropout", "dense",
                      "relu", "dropout", "dense"]
        check("conv regression: layer list as expected, with dropout2d p 0.1, dropout 0.2 / 0.3",
              [l.get("type") for l in listed] == want_types
              and [l.get("p") for l in listed if "p" in l] == [0.1, 0.2, 0.3]
              and listed[2].get("negative_slope") == 0.1
              and listed[0].get("padding") == [1, 1] and listed[3].get("groups") == 2
              and listed[3].get("stride") == [2, 1] and listed[5].get("stride") == [1, 2], listed)
        mc = c.predict(to_served(xa), model="conv", samples=200, seed=1)
        check("conv regression: MC dropout is active (model variance > 0)",
              bool(np.all(mc.model_variance > 0)), mc.model_variance)

        xb = rng.normal(0, 1, (5, 9, 11, 2)).astype(np.float32)
        got = c.predict(to_served(xb), model="convcls", deterministic=True).probabilities
        want = forward_b(xb.astype(np.float64))
        rel_b = np.max(np.abs(got - want) / np.maximum(np.abs(want), 1e-3))
        check(f"conv classifier (Functional chain): served probabilities = NumPy forward pass "
              f"(max rel diff {rel_b:.1e})", got.shape == want.shape and rel_b < 1e-5, (got, want))
        meta = c.metadata("convcls")
        listed = json.loads(meta.get("layers", "[]"))
        check("conv classifier: input_shape [2, 9, 11], 'same' with dilation 2 -> padding [2, 2], "
              "no softmax layer",
              meta.get("input_shape") == [2, 9, 11] and listed[0].get("padding") == [2, 2]
              and listed[0].get("dilation") == [2, 2]
              and [l.get("type") for l in listed] == ["conv2d", "relu", "avg_pool2d", "batch_norm",
                                                      "relu", "dropout", "flatten", "dense"]
              and listed[2].get("stride") == [2, 2], listed)
    finally:
        server.terminate()
        server.wait()

    # The pitfall itself: the same weights without the row permutation disagree with Keras.
    k = A["dense"]["kernel:0"]
    perm = np.arange(30).reshape(3, 2, 5).transpose(2, 0, 1).ravel()
    check("the Flatten permutation matters for this model (a test that could fail)",
          not np.allclose(k[perm], k))

    def conv_model(*middle, shape=(8, 8, 3)):
        """Input -> middle layers -> Flatten -> Dense(1)."""
        entries = [(("InputLayer", {"name": "input_1", "batch_input_shape": [None, *shape]}), None),
                   *middle, (("Flatten", {"name": "flatten"}), None)]
        return entries

    def refused_conv(name, entries, message, n_flat=None, task="regression", **kw):
        layers, weights, _ = model_of(entries)
        if n_flat is not None:
            layer, w = dense("dense_9", n_flat, 1, "linear")
            layers, weights = layers + [layer], dict(weights, dense_9=w)
        refused(name, layers, weights, message, task=task, **kw)

    refused_conv("padding 'same' with stride 2",
                 conv_model(conv2d("conv2d", 3, 4, (3, 3), padding="same", strides=[2, 2])),
                 "padding 'same'", n_flat=64)
    refused_conv("padding 'same' with an even kernel",
                 conv_model(conv2d("conv2d", 3, 4, (2, 2), padding="same")), "padding 'same'",
                 n_flat=256)
    refused_conv("data_format channels_first",
                 conv_model(conv2d("conv2d", 3, 4, (3, 3), data_format="channels_first")),
                 "channels_first", n_flat=144)
    refused_conv("a Conv1D layer",
                 [(("InputLayer", {"name": "input_1", "batch_input_shape": [None, 10, 3]}), None),
                  (("Conv1D", {"name": "conv1d", "filters": 4, "kernel_size": [3]}), None)],
                 "Conv1D", n_flat=32)
    refused_conv("a GlobalAveragePooling2D layer",
                 [(("InputLayer", {"name": "input_1", "batch_input_shape": [None, 8, 8, 3]}), None),
                  conv2d("conv2d", 3, 4, (3, 3)),
                  (("GlobalAveragePooling2D", {"name": "gap"}), None)], "GlobalAveragePooling2D",
                 n_flat=4)
    refused_conv("pooling with padding 'same'",
                 conv_model((("MaxPooling2D", {"name": "mp", "pool_size": [2, 2], "padding": "same",
                                               "strides": [2, 2]}), None)), "padding 'same'",
                 n_flat=48)
    refused_conv("a BatchNormalization over a spatial axis",
                 conv_model(batch_norm("bn", 8, [1])), "channel", n_flat=192)
    refused_conv("a Dense on an unflattened image",
                 [(("InputLayer", {"name": "input_1", "batch_input_shape": [None, 8, 8, 3]}), None)],
                 "add a Flatten", n_flat=3)
    refused_conv("a softmax output for regression",
                 conv_model(conv2d("conv2d", 3, 2, (8, 8))) + [dense("dense_9", 2, 2, "softmax")],
                 "softmax")
    refused_conv("a dropout after the last Dense (v2)",
                 conv_model(conv2d("conv2d", 3, 2, (8, 8))) + [
                     dense("dense_9", 2, 1, "linear"), (("Dropout", {"name": "d", "rate": 0.5}), None)],
                 "after the last Dense")
    # A functional model with a branch: input -> (dense_a, dense_b) -> Add -> dense_out.
    fa, wa = dense("dense_a", 5, 4, "relu")
    fb, wb = dense("dense_b", 5, 4, "relu")
    fo, wo = dense("dense_out", 4, 1, "linear")
    branch = [("InputLayer", {"name": "input_1", "batch_input_shape": [None, 5]}), fa, fb,
              ("Add", {"name": "add"}), fo]
    refused("a functional model with a branch", branch,
            {"dense_a": wa, "dense_b": wb, "dense_out": wo}, "branch", class_name="Functional",
            inbound={"dense_a": ["input_1"], "dense_b": ["input_1"], "add": ["dense_a", "dense_b"],
                     "dense_out": ["add"]})

finish()
