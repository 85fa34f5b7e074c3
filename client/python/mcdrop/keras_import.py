"""Keras dropout networks saved as HDF5 (`model.save("model.h5")` in tf.keras
2.x / Keras 2) -> an mcdrop model file, read with h5py, without TensorFlow.

    from mcdrop.keras_import import export_keras_h5
    export_keras_h5("model.h5", "model.safetensors", task="regression", tau=tau)

What is read: the root attribute `model_config` (the JSON of a `Sequential`
model, or of a `Functional` model whose layers form a single chain) and the
group `model_weights/<layer>/` with its `weight_names` attribute.

Dense stacks (only `InputLayer`, `Dropout(rate)`, `Dense` and `Activation`
layers) are written as format v1, as before: `Dropout(rate)` is applied to
the input of the next Dense, `Dense` with `use_bias` true or false, one
hidden activation (relu, tanh, sigmoid, gelu, linear); the last Dense is
linear, or softmax for classification (mcdrop applies the softmax itself).

Anything else is written as format v2 (a layer list, docs/model-format.md):
`InputLayer`, `Conv2D` (strides, dilation_rate, groups, use_bias, padding
'valid', or 'same' with stride 1 and an odd kernel), `MaxPooling2D` and
`AveragePooling2D` (padding 'valid'), `Flatten`, `Dense`, `Dropout`,
`SpatialDropout2D`, `BatchNormalization` (on the channel axis), `Activation`,
`ReLU`, `LeakyReLU` and `Softmax` (as a classifier's output); layer
activations relu, tanh, sigmoid, gelu, linear and (output only) softmax.
Keras is channels-last and mcdrop channels-first (PyTorch's layouts): the
input shape [H, W, C] becomes [C, H, W], so the served model takes images as
[C, H, W] (send `x.transpose(0, 3, 1, 2)` of a Keras NHWC batch, flattened or
not); Conv2D kernels [kh, kw, in, out] become [out, in, kh, kw]; and a Dense
(or BatchNormalization) after a Flatten of an image has its rows permuted
from Keras' H, W, C feature order to mcdrop's C, H, W order. Only
data_format 'channels_last' is read. Anything else is refused with a message
naming the layer and its class.

The `.keras` zip format of Keras 3 is not read; save as `.h5`, or use the
recipe in docs/interop.md.
"""
import json

import numpy as np

from .safetensors import write_layer_list, write_model

_ACTIVATIONS = {"relu": "relu", "tanh": "tanh", "sigmoid": "sigmoid", "gelu": "gelu",
                "linear": "identity"}

# Layer classes a format v1 file can hold; any other class makes a v2 file.
_V1_CLASSES = {"InputLayer", "Dropout", "Dense", "Activation"}

# Keras activation name -> mcdrop v2 layer type (None: no layer).
_V2_ACTIVATIONS = {"relu": "relu", "tanh": "tanh", "sigmoid": "sigmoid", "gelu": "gelu",
                   "linear": None}

_V2_ACTIVATION_TYPES = {"relu", "tanh", "sigmoid", "gelu", "identity", "leaky_relu"}

_ONLY_CHAINS = "only Sequential models and Functional models whose layers form one chain are supported"


def _text(v):
    return v.decode() if isinstance(v, bytes) else str(v)


def _layer_name(layer):
    return layer.get("name") or layer.get("config", {}).get("name", "")


def _node_inputs(node):
    """The names of the layers whose outputs one inbound node takes: tf.keras
    2.x writes [[name, node_index, tensor_index, kwargs], ...], Keras 3
    {"args": [...], "kwargs": {...}} with "keras_history" [name, node, tensor]."""
    if isinstance(node, list):
        return [_text(entry[0]) for entry in node]
    if isinstance(node, dict):
        found = []

        def walk(v):
            if isinstance(v, dict):
                history = v.get("config", {}).get("keras_history") if isinstance(
                    v.get("config"), dict) else None
                if v.get("class_name") == "__keras_tensor__" and history:
                    found.append(_text(history[0]))
                    return
                for w in v.values():
                    walk(w)
            elif isinstance(v, list):
                for w in v:
                    walk(w)

        walk(node.get("args", []))
        walk(node.get("kwargs", {}))
        return found
    raise ValueError(f"an inbound node of an unknown form ({type(node).__name__})")


def _tensor_refs(refs):
    """input_layers / output_layers: [[name, 0, 0], ...] or one [name, 0, 0]."""
    if isinstance(refs, dict):  # Keras 3 may write a dict of named inputs
        refs = list(refs.values())
    if refs and isinstance(refs[0], str):
        refs = [refs]
    return [_text(r[0]) for r in refs or []]


def _functional_chain(kind, config):
    """The layer configs of a Functional model in call order, when they form a
    single chain (one input, one output, every layer called once on the one
    layer before it); ValueError otherwise."""
    layers = config.get("layers") or []
    by_name, parents = {}, {}
    for layer in layers:
        name = _layer_name(layer)
        by_name[name] = layer
        if "inbound_nodes" not in layer:
            raise ValueError(f"the model is a {kind} whose layer {name!r} has no inbound_nodes: "
                             + _ONLY_CHAINS)
        nodes = layer["inbound_nodes"]
        if len(nodes) > 1:
            raise ValueError(f"the model is a {kind} that calls layer {name!r} {len(nodes)} times "
                             "(a shared layer): " + _ONLY_CHAINS)
        parents[name] = _node_inputs(nodes[0]) if nodes else []
    inputs = _tensor_refs(config.get("input_layers"))
    outputs = _tensor_refs(config.get("output_layers"))
    if len(inputs) != 1 or len(outputs) != 1:
        raise ValueError(f"the model is a {kind} with {len(inputs)} inputs and {len(outputs)} "
                         "outputs: " + _ONLY_CHAINS)
    for name, ps in parents.items():
        if len(ps) > 1:
            cls = by_name[name].get("class_name")
            raise ValueError(f"the model is a {kind} with a branch: layer {name!r} ({cls}) takes "
                             f"{len(ps)} inputs ({', '.join(ps)}): " + _ONLY_CHAINS)
    consumers = {}
    for name, ps in parents.items():
        for p in ps:
            consumers.setdefault(p, []).append(name)
    for name, cs in consumers.items():
        if len(cs) > 1:
            raise ValueError(f"the model is a {kind} with a branch: the output of layer {name!r} "
                             f"feeds {len(cs)} layers ({', '.join(cs)}): " + _ONLY_CHAINS)
    chain, name = [], outputs[0]
    while True:
        if name not in by_name:
            raise ValueError(f"the model is a {kind} naming an unknown layer {name!r}: " + _ONLY_CHAINS)
        chain.append(by_name[name])
        if len(chain) > len(layers):
            raise ValueError(f"the model is a {kind} with a cycle: " + _ONLY_CHAINS)
        if not parents[name]:
            break
        name = parents[name][0]
    if _layer_name(chain[-1]) != inputs[0]:
        raise ValueError(f"the model is a {kind} whose output does not lead back to its input "
                         f"{inputs[0]!r}: " + _ONLY_CHAINS)
    if len(chain) != len(layers):
        raise ValueError(f"the model is a {kind} with {len(layers) - len(chain)} layers outside "
                         "the input-to-output chain: " + _ONLY_CHAINS)
    return chain[::-1]


def _model_layers(f):
    """(layer configs in call order, the model_weights group) of an open h5py
    File, or ValueError."""
    if "model_config" not in f.attrs:
        raise ValueError("no model_config attribute: not a Keras model saved with model.save(...h5) "
                         "(a weights-only file has no architecture)")
    config = json.loads(_text(f.attrs["model_config"]))
    kind = config.get("class_name")
    if kind == "Sequential":
        layer_configs = config["config"]
        if isinstance(layer_configs, dict):
            layer_configs = layer_configs["layers"]
    elif kind in ("Functional", "Model"):
        layer_configs = _functional_chain(kind, config["config"])
    else:
        raise ValueError(f"the model is a {kind}: " + _ONLY_CHAINS)
    if "model_weights" not in f:
        raise ValueError("no model_weights group in the file")
    return layer_configs, f["model_weights"]


def layers_of_keras_h5(f):
    """Returns (layers, drop rates, activation, last activation) from an open
    h5py File, or raises ValueError (format v1: a Dense stack)."""
    layer_configs, weights_group = _model_layers(f)
    return _v1_layers(layer_configs, weights_group)


def _v1_layers(layer_configs, weights_group):
    dense, rates, acts = [], [], []
    pending_rate = 0.0
    for i, layer in enumerate(layer_configs):
        kind, cfg = layer["class_name"], layer["config"]
        if kind == "InputLayer":
            continue
        if kind == "Dropout":
            if pending_rate:
                raise ValueError(f"layer {i}: two Dropout layers in a row")
            pending_rate = float(cfg["rate"])
            if not 0 <= pending_rate < 1:
                raise ValueError(f"layer {i}: dropout rate {pending_rate} not in [0, 1)")
            continue
        if kind == "Activation":
            if not dense:
                raise ValueError(f"layer {i}: an Activation before the first Dense is not supported")
            if acts[-1] != "linear":
                raise ValueError(f"layer {i}: two activations after Dense {cfg.get('name')}")
            acts[-1] = cfg["activation"]
            continue
        if kind != "Dense":
            raise ValueError(f"layer {i} ({kind} {cfg.get('name', '')!r}) is not supported: "
                             "mcdrop serves Sequential stacks of Dropout / Dense / Activation")
        name = cfg["name"]
        if name not in weights_group:
            raise ValueError(f"no weights for layer {name!r} in model_weights")
        g = weights_group[name]
        names = [_text(n) for n in g.attrs.get("weight_names", [])]
        kernel = [n for n in names if n.endswith("kernel:0") or n.endswith("kernel")]
        bias = [n for n in names if n.endswith("bias:0") or n.endswith("bias")]
        if len(kernel) != 1:
            raise ValueError(f"layer {name!r}: weight_names {names} hold no single kernel")
        w = g[kernel[0]][()]
        if w.ndim != 2:
            raise ValueError(f"layer {name!r}: kernel of shape {w.shape}, expected [in, out]")
        if cfg.get("use_bias", True):
            if len(bias) != 1:
                raise ValueError(f"layer {name!r}: weight_names {names} hold no bias")
            b = g[bias[0]][()]
        else:
            b = [0.0] * w.shape[1]
        if dense and len(dense[-1][1]) != w.shape[0]:
            raise ValueError(f"layer {name!r} takes {w.shape[0]} inputs but the layer before gives "
                             f"{len(dense[-1][1])}")
        dense.append((w.T.tolist(), [float(v) for v in b]))
        rates.append(pending_rate)
        pending_rate = 0.0
        acts.append(cfg.get("activation", "linear"))
    if not dense:
        raise ValueError("the model has no Dense layer")
    if pending_rate:
        raise ValueError("a Dropout after the last Dense is not supported (its output is the prediction)")
    hidden = set(acts[:-1])
    if len(hidden) > 1:
        raise ValueError(f"mixed hidden activations {sorted(hidden)}: mcdrop uses one for all hidden layers")
    act = hidden.pop() if hidden else "linear"
    if act not in _ACTIVATIONS:
        raise ValueError(f"hidden activation {act!r} is not supported ({', '.join(_ACTIVATIONS)})")
    return dense, rates, _ACTIVATIONS[act], acts[-1]


# ---------------------------------------------------------------------------
# Format v2: convolutional and other Sequential chains.


def _pair(v, what, where):
    if isinstance(v, bool):
        raise ValueError(f"{where}: {what} {v!r} is not an integer or a pair of integers")
    if isinstance(v, int):
        return [v, v]
    if isinstance(v, (list, tuple)) and len(v) == 2 and all(
            isinstance(e, int) and not isinstance(e, bool) for e in v):
        return [int(v[0]), int(v[1])]
    if isinstance(v, (list, tuple)) and len(v) == 1 and isinstance(v[0], int):
        return [int(v[0]), int(v[0])]
    raise ValueError(f"{where}: {what} {v!r} is not an integer or a pair of integers")


def _layer_weights(weights_group, name, where):
    """{short name: float64 array} of a layer: 'conv2d/kernel:0' -> 'kernel'."""
    if name not in weights_group:
        return {}
    g = weights_group[name]
    out = {}
    for n in g.attrs.get("weight_names", []):
        n = _text(n)
        key = n.split("/")[-1].split(":")[0]
        if key in out:
            raise ValueError(f"{where}: two weights named {key!r} in weight_names")
        if n not in g:
            raise ValueError(f"{where}: weight {n!r} is listed in weight_names but not stored")
        out[key] = np.asarray(g[n][()], dtype=np.float64)
    return out


def _need(ws, key, shape, where):
    if key not in ws:
        raise ValueError(f"{where}: no {key!r} weight in model_weights (has {sorted(ws) or 'none'})")
    a = ws[key]
    if shape is not None and list(a.shape) != list(shape):
        raise ValueError(f"{where}: {key} of shape {list(a.shape)}, expected {list(shape)}")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{where}: {key} holds a non-finite value")
    return a


def _declared_input(cfg):
    for key in ("batch_input_shape", "batch_shape"):
        if cfg.get(key) is not None:
            return list(cfg[key])[1:]
    if cfg.get("input_shape") is not None:
        return list(cfg["input_shape"])
    return None


def _check_channels_last(cfg, where):
    df = cfg.get("data_format")
    if df not in (None, "channels_last"):
        raise ValueError(f"{where}: data_format {df!r} is not supported: only 'channels_last' "
                         "(the Keras default) is read")


def _input_shape(layer_configs, weights_group):
    """The Keras shape of one example ([H, W, C] or [n]); for a model saved
    without one, the input width of a leading Dense."""
    declared = _declared_input(layer_configs[0].get("config", {})) if layer_configs else None
    if declared is None:
        for i, layer in enumerate(layer_configs):
            kind, cfg = layer["class_name"], layer.get("config", {})
            where = f"layer {i} ({kind} {cfg.get('name', '')!r})"
            if kind in ("Dropout", "Activation", "ReLU", "LeakyReLU", "InputLayer"):
                continue
            if kind == "Dense":
                k = _need(_layer_weights(weights_group, cfg.get("name", ""), where), "kernel", None,
                          where)
                if k.ndim != 2:
                    raise ValueError(f"{where}: kernel of shape {list(k.shape)}, expected [in, out]")
                return [k.shape[0]]
            raise ValueError(f"{where}: the model's input shape is not in the file (no InputLayer "
                             "or batch_input_shape): build the model with an Input / input_shape "
                             "before saving")
        raise ValueError("the model's input shape is not in the file")
    if len(declared) not in (1, 3) or not all(
            isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in declared):
        raise ValueError(f"input shape {declared}: only [n] tables and [H, W, C] images of a "
                         "fixed size are supported")
    return declared


def layer_list_of_keras_h5(f):
    """Returns (mcdrop v2 layer list for write_layer_list, mcdrop input shape
    [C, H, W] or [n], Keras input shape [H, W, C] or [n], ends_in_softmax)
    from an open h5py File, or raises ValueError."""
    layer_configs, weights_group = _model_layers(f)
    return _v2_layers(layer_configs, weights_group)


_V2_CLASSES = {"InputLayer", "Conv2D", "Convolution2D", "MaxPooling2D", "MaxPool2D",
               "AveragePooling2D", "AvgPool2D", "Flatten", "Dense", "Dropout", "SpatialDropout2D",
               "BatchNormalization", "Activation", "ReLU", "LeakyReLU", "Softmax"}


def _v2_layers(layer_configs, weights_group):
    for i, layer in enumerate(layer_configs):
        kind = layer["class_name"]
        if kind not in _V2_CLASSES:
            name = layer.get("config", {}).get("name", _layer_name(layer))
            raise ValueError(f"layer {i} ({kind} {name!r}) is not supported: mcdrop reads "
                             "InputLayer, Conv2D, MaxPooling2D, AveragePooling2D, Flatten, Dense, "
                             "Dropout, SpatialDropout2D, BatchNormalization, Activation, ReLU, "
                             "LeakyReLU and Softmax")
    keras_input = _input_shape(layer_configs, weights_group)
    if len(keras_input) == 3:
        shape = ("image",) + tuple(keras_input)  # ("image", H, W, C)
    else:
        shape = ("flat", keras_input[0])
    # perm[j] = the Keras (H, W, C order) index of mcdrop's (C, H, W order)
    # flat feature j, after a Flatten of an image; None: the same order.
    perm = None
    out = []
    softmax_at = None

    def add_activation(name, where, i):
        nonlocal softmax_at
        if not isinstance(name, str):
            raise ValueError(f"{where}: activation {name!r} is not supported (only built-in "
                             "activations given by name)")
        if name == "softmax":
            softmax_at = i
            return
        if name not in _V2_ACTIVATIONS:
            raise ValueError(f"{where}: activation {name!r} is not supported (relu, tanh, sigmoid, "
                             "gelu, linear; softmax as a classifier's output)")
        if _V2_ACTIVATIONS[name]:
            out.append({"type": _V2_ACTIVATIONS[name]})

    for i, layer in enumerate(layer_configs):
        kind, cfg = layer["class_name"], layer.get("config", {})
        name = cfg.get("name", _layer_name(layer))
        where = f"layer {i} ({kind} {name!r})"
        if softmax_at is not None:
            raise ValueError(f"{where} follows the softmax of layer {softmax_at}: softmax is only "
                             "supported as a classifier's output")
        if kind == "InputLayer":
            if i != 0:
                raise ValueError(f"{where}: an InputLayer that is not the first layer")
            continue
        if kind in ("Conv2D", "Convolution2D"):
            _check_channels_last(cfg, where)
            if shape[0] != "image":
                raise ValueError(f"{where}: needs an [H, W, C] image input, has a flat one")
            _, h, w, c = shape
            ws = _layer_weights(weights_group, name, where)
            k = _need(ws, "kernel", None, where)
            if k.ndim != 4:
                raise ValueError(f"{where}: kernel of shape {list(k.shape)}, expected [kh, kw, in, out]")
            kh, kw, cig, co = k.shape
            groups = cfg.get("groups", 1) or 1
            if not isinstance(groups, int) or groups < 1 or c % groups or co % groups \
                    or cig != c // groups:
                raise ValueError(f"{where}: kernel of shape {list(k.shape)} with groups={groups} "
                                 f"does not fit its input's {c} channels")
            if cfg.get("filters", co) != co:
                raise ValueError(f"{where}: filters={cfg['filters']} but the kernel has {co} outputs")
            if "kernel_size" in cfg and _pair(cfg["kernel_size"], "kernel_size", where) != [kh, kw]:
                raise ValueError(f"{where}: kernel_size={cfg['kernel_size']} but the kernel is "
                                 f"{kh}x{kw}")
            sh, sw = _pair(cfg.get("strides", 1), "strides", where)
            dh, dw = _pair(cfg.get("dilation_rate", 1), "dilation_rate", where)
            if min(sh, sw, dh, dw) < 1:
                raise ValueError(f"{where}: strides {[sh, sw]} and dilation_rate {[dh, dw]} must be >= 1")
            ekh, ekw = dh * (kh - 1) + 1, dw * (kw - 1) + 1
            padding = str(cfg.get("padding", "valid")).lower()
            if padding == "valid":
                ph = pw = 0
            elif padding == "same":
                if (sh, sw) != (1, 1) or kh % 2 == 0 or kw % 2 == 0:
                    raise ValueError(
                        f"{where}: padding 'same' with strides {[sh, sw]} and a {kh}x{kw} kernel is "
                        "not supported: Keras then pads asymmetrically (the extra row or column at "
                        "the bottom / right), which mcdrop's symmetric padding cannot express; "
                        "'same' is read only with stride 1 and an odd kernel (use 'valid' otherwise)")
                ph, pw = (ekh - 1) // 2, (ekw - 1) // 2
            else:
                raise ValueError(f"{where}: padding {padding!r} is not supported ('valid' or 'same')")
            oh, ow = (h + 2 * ph - ekh) // sh + 1, (w + 2 * pw - ekw) // sw + 1
            if h + 2 * ph < ekh or w + 2 * pw < ekw:
                raise ValueError(f"{where}: its {ekh}x{ekw} window is larger than its "
                                 f"{h + 2 * ph}x{w + 2 * pw} (padded) input")
            tensors = {"weight": k.transpose(3, 2, 0, 1)}
            if cfg.get("use_bias", True):
                tensors["bias"] = _need(ws, "bias", [co], where)
            conv = {"type": "conv2d", "stride": [sh, sw], "padding": [ph, pw],
                    "dilation": [dh, dw], "tensors": tensors}
            if groups != 1:
                conv["groups"] = groups
            out.append(conv)
            shape = ("image", oh, ow, co)
            add_activation(cfg.get("activation", "linear"), where, i)
        elif kind in ("MaxPooling2D", "MaxPool2D", "AveragePooling2D", "AvgPool2D"):
            _check_channels_last(cfg, where)
            if shape[0] != "image":
                raise ValueError(f"{where}: needs an [H, W, C] image input, has a flat one")
            _, h, w, c = shape
            kh, kw = _pair(cfg.get("pool_size", 2), "pool_size", where)
            strides = cfg.get("strides")
            sh, sw = _pair(strides, "strides", where) if strides is not None else (kh, kw)
            if min(kh, kw, sh, sw) < 1:
                raise ValueError(f"{where}: pool_size {[kh, kw]} and strides {[sh, sw]} must be >= 1")
            padding = str(cfg.get("padding", "valid")).lower()
            if padding != "valid":
                raise ValueError(f"{where}: padding {padding!r} is not supported: pooling is read "
                                 "with padding 'valid' only")
            if h < kh or w < kw:
                raise ValueError(f"{where}: its {kh}x{kw} window is larger than its {h}x{w} input")
            out.append({"type": "max_pool2d" if kind.startswith("Max") else "avg_pool2d",
                        "kernel_size": [kh, kw], "stride": [sh, sw]})
            shape = ("image", (h - kh) // sh + 1, (w - kw) // sw + 1, c)
        elif kind == "Flatten":
            _check_channels_last(cfg, where)
            if shape[0] == "image":
                _, h, w, c = shape
                out.append({"type": "flatten"})
                perm = np.arange(h * w * c).reshape(h, w, c).transpose(2, 0, 1).ravel()
                shape = ("flat", h * w * c)
        elif kind == "Dense":
            if shape[0] != "flat":
                raise ValueError(f"{where}: a Dense on an [H, W, C] tensor (applied to its last axis) "
                                 "is not supported: add a Flatten before it")
            ws = _layer_weights(weights_group, name, where)
            k = _need(ws, "kernel", None, where)
            if k.ndim != 2 or k.shape[0] != shape[1]:
                raise ValueError(f"{where}: kernel of shape {list(k.shape)}, expected "
                                 f"[{shape[1]}, units] (the layer before gives {shape[1]} values)")
            if perm is not None:
                k = k[perm]  # rows from Keras' H, W, C order to mcdrop's C, H, W order
            tensors = {"weight": k.T}
            if cfg.get("use_bias", True):
                tensors["bias"] = _need(ws, "bias", [k.shape[1]], where)
            out.append({"type": "dense", "tensors": tensors})
            shape, perm = ("flat", k.shape[1]), None
            add_activation(cfg.get("activation", "linear"), where, i)
        elif kind in ("Dropout", "SpatialDropout2D"):
            rate = float(cfg.get("rate", -1))
            if not 0 <= rate < 1:
                raise ValueError(f"{where}: dropout rate {rate} not in [0, 1)")
            if kind == "Dropout":
                if cfg.get("noise_shape") is not None:
                    raise ValueError(f"{where}: a noise_shape is not supported (use SpatialDropout2D "
                                     "to drop whole channels)")
                out.append({"type": "dropout", "p": rate})
            else:
                _check_channels_last(cfg, where)
                if shape[0] != "image":
                    raise ValueError(f"{where}: needs an [H, W, C] image input, has a flat one")
                out.append({"type": "dropout2d", "p": rate})
        elif kind == "BatchNormalization":
            axis = cfg.get("axis", -1)
            if isinstance(axis, (list, tuple)):
                if len(axis) != 1:
                    raise ValueError(f"{where}: normalises over axes {axis}: only the channel axis "
                                     "is supported")
                axis = axis[0]
            rank = 4 if shape[0] == "image" else 2  # with the batch axis
            if not isinstance(axis, int) or (axis + rank if axis < 0 else axis) != rank - 1:
                raise ValueError(f"{where}: axis {cfg.get('axis')} is not the channel (last) axis "
                                 f"of its {rank}-d input")
            if cfg.get("renorm") or cfg.get("virtual_batch_size"):
                raise ValueError(f"{where}: renorm and virtual_batch_size are not supported")
            n = shape[3] if shape[0] == "image" else shape[1]
            ws = _layer_weights(weights_group, name, where)
            mean = _need(ws, "moving_mean", [n], where)
            var = _need(ws, "moving_variance", [n], where)
            gamma = _need(ws, "gamma", [n], where) if cfg.get("scale", True) else np.ones(n)
            beta = _need(ws, "beta", [n], where) if cfg.get("center", True) else np.zeros(n)
            eps = float(cfg.get("epsilon", 1e-3))
            if not (eps >= 0 and np.all(var + eps > 0)):
                raise ValueError(f"{where}: moving_variance + epsilon must be > 0")
            if shape[0] == "flat" and perm is not None:
                mean, var, gamma, beta = mean[perm], var[perm], gamma[perm], beta[perm]
            out.append({"type": "batch_norm", "eps": eps,
                        "tensors": {"weight": gamma, "bias": beta, "running_mean": mean,
                                    "running_var": var}})
        elif kind == "Activation":
            add_activation(cfg.get("activation"), where, i)
        elif kind == "ReLU":
            slope = float(cfg.get("negative_slope", 0.0) or 0.0)
            if cfg.get("max_value") is not None or float(cfg.get("threshold", 0.0) or 0.0) != 0.0:
                raise ValueError(f"{where}: max_value and threshold are not supported")
            out.append({"type": "relu"} if slope == 0 else
                       {"type": "leaky_relu", "negative_slope": slope})
        elif kind == "LeakyReLU":
            slope = cfg.get("alpha", cfg.get("negative_slope", 0.3))
            out.append({"type": "leaky_relu", "negative_slope": float(slope)})
        elif kind == "Softmax":
            if cfg.get("axis", -1) not in (-1, 1, [-1], [1]) or shape[0] != "flat":
                raise ValueError(f"{where}: only a softmax over the features of a flat output is "
                                 "supported")
            softmax_at = i
        else:  # unreachable: _V2_CLASSES is checked above
            raise ValueError(f"{where} is not supported")
    computing = [j for j, l in enumerate(out) if l["type"] in
                 ("dense", "conv2d", "max_pool2d", "avg_pool2d")]
    if not computing:
        raise ValueError("the model has no Dense, Conv2D or pooling layer")
    if any(l["type"] in ("dropout", "dropout2d") for l in out[computing[-1]:]):
        raise ValueError("a Dropout after the last Dense is not supported (its output is the prediction)")
    if shape[0] != "flat":
        raise ValueError(f"the model ends with an [H, W, C] = {list(shape[1:])} tensor: mcdrop needs "
                         "a flat output (add Flatten and Dense)")
    if len(keras_input) == 3:
        input_shape = [keras_input[2], keras_input[0], keras_input[1]]
    else:
        input_shape = list(keras_input)
    return out, input_shape, keras_input, softmax_at is not None


def _input_vector(v, keras_input, what):
    """A standardisation vector for a v2 image model: per channel [C] as is;
    per element (Keras [H, W, C], or flat in that order) to C, H, W order."""
    if v is None or len(keras_input) != 3:
        return v
    h, w, c = keras_input
    a = np.asarray(v, dtype=np.float64)
    if a.size == c:
        return a.ravel()
    if a.size == h * w * c:
        return a.reshape(h, w, c).transpose(2, 0, 1).ravel()
    raise ValueError(f"{what} has {a.size} values: expected {c} (per channel) or {h * w * c} "
                     f"(per element of the Keras input [{h}, {w}, {c}])")


def export_keras_h5(h5_path, out_path, *, task, tau=None, input_mean=None, input_std=None,
                    output_mean=None, output_std=None, name="", description="", default_samples=0):
    """Writes the Keras model in `h5_path` to `out_path` (see the module doc):
    format v1 for a Dense stack, v2 otherwise. tau, standardisation and the
    rest as in export_torch; for an image model input_mean / input_std are
    per channel ([C]) or per element in the Keras input's [H, W, C] shape."""
    import h5py  # Debian: python3-h5py

    with h5py.File(h5_path, "r") as f:
        layer_configs, weights_group = _model_layers(f)
        declared = _declared_input(layer_configs[0].get("config", {})) if layer_configs else None
        v1 = all(layer["class_name"] in _V1_CLASSES for layer in layer_configs) and (
            declared is None or len(declared) == 1)  # a Dense on an image goes to v2 (refused)
        if v1:
            layers, rates, activation, last = _v1_layers(layer_configs, weights_group)
        else:
            layers, input_shape, keras_input, softmax = _v2_layers(layer_configs, weights_group)
    description = description or f"exported from Keras HDF5 {h5_path}"
    if v1:
        if task == "regression" and last != "linear":
            raise ValueError(f"the last Dense has activation {last!r}: a regression output must be linear")
        if task == "classification" and last not in ("linear", "softmax"):
            raise ValueError(f"the last Dense has activation {last!r}: a classifier ends in logits or softmax")
        write_model(out_path, layers, task=task, activation=activation, dropout=rates, tau=tau,
                    input_mean=input_mean, input_std=input_std, output_mean=output_mean,
                    output_std=output_std, name=name, description=description,
                    default_samples=default_samples)
        return
    if task == "regression" and softmax:
        raise ValueError("the model ends in a softmax: a regression output must not (export it with "
                         "task='classification')")
    if task == "classification" and not softmax and layers[-1]["type"] in _V2_ACTIVATION_TYPES:
        raise ValueError(f"the model's output has activation {layers[-1]['type']!r}: a classifier "
                         "ends in logits or softmax")
    write_layer_list(out_path, layers, input_shape=input_shape, task=task, tau=tau,
                     input_mean=_input_vector(input_mean, keras_input, "input_mean"),
                     input_std=_input_vector(input_std, keras_input, "input_std"),
                     output_mean=output_mean, output_std=output_std, name=name,
                     description=description, default_samples=default_samples)
