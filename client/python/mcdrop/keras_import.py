"""Keras dropout networks saved as HDF5 (`model.save("model.h5")` in tf.keras
2.x / Keras 2) -> an mcdrop model file, read with h5py, without TensorFlow.

    from mcdrop.keras_import import export_keras_h5
    export_keras_h5("model.h5", "model.safetensors", task="regression", tau=tau)

What is read: the root attribute `model_config` (the JSON of a `Sequential`
model) and the group `model_weights/<layer>/` with its `weight_names`
attribute (Dense kernels `[in, out]`, biases `[out]`). Supported layers:
`InputLayer`, `Dropout(rate)` (applied to the input of the next Dense),
`Dense` (with `use_bias` true or false) and `Activation`, with one hidden
activation (relu, tanh, sigmoid, gelu, linear); the last Dense is linear, or
softmax for classification (mcdrop applies the softmax itself). Anything
else is refused with a message. The `.keras` zip format of Keras 3 is not
read; save as `.h5`, or use the recipe in docs/interop.md.
"""
import json

from .safetensors import write_model

_ACTIVATIONS = {"relu": "relu", "tanh": "tanh", "sigmoid": "sigmoid", "gelu": "gelu",
                "linear": "identity"}


def _text(v):
    return v.decode() if isinstance(v, bytes) else str(v)


def layers_of_keras_h5(f):
    """Returns (layers, drop rates, activation, last activation) from an open
    h5py File, or raises ValueError."""
    if "model_config" not in f.attrs:
        raise ValueError("no model_config attribute: not a Keras model saved with model.save(...h5) "
                         "(a weights-only file has no architecture)")
    config = json.loads(_text(f.attrs["model_config"]))
    if config.get("class_name") != "Sequential":
        raise ValueError(f"the model is a {config.get('class_name')}: only Sequential models are supported")
    layer_configs = config["config"]
    if isinstance(layer_configs, dict):
        layer_configs = layer_configs["layers"]
    if "model_weights" not in f:
        raise ValueError("no model_weights group in the file")
    weights_group = f["model_weights"]

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


def export_keras_h5(h5_path, out_path, *, task, tau=None, input_mean=None, input_std=None,
                    output_mean=None, output_std=None, name="", description="", default_samples=0):
    """Writes the Keras model in `h5_path` to `out_path` (see the module doc).
    tau, standardisation and the rest as in export_torch."""
    import h5py  # Debian: python3-h5py

    with h5py.File(h5_path, "r") as f:
        layers, rates, activation, last = layers_of_keras_h5(f)
    if task == "regression" and last != "linear":
        raise ValueError(f"the last Dense has activation {last!r}: a regression output must be linear")
    if task == "classification" and last not in ("linear", "softmax"):
        raise ValueError(f"the last Dense has activation {last!r}: a classifier ends in logits or softmax")
    write_model(out_path, layers, task=task, activation=activation, dropout=rates, tau=tau,
                input_mean=input_mean, input_std=input_std, output_mean=output_mean,
                output_std=output_std, name=name,
                description=description or f"exported from Keras HDF5 {h5_path}",
                default_samples=default_samples)
