"""Writes mcdrop model files (docs/model-format.md) with the standard library
only: an 8-byte little-endian header length, a JSON header, then raw
little-endian float32 tensors."""
import json
import struct


def _write(path, tensors, meta):
    header, blobs, offset = {"__metadata__": meta}, [], 0
    for tname, shape, values in tensors:
        blob = struct.pack(f"<{len(values)}f", *values)
        header[tname] = {"dtype": "F32", "shape": shape, "data_offsets": [offset, offset + len(blob)]}
        blobs.append(blob)
        offset += len(blob)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-(8 + len(text)) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + b"".join(blobs))


def _flat(values):
    """(shape, flat float list) of a nested list, a NumPy array or a torch tensor."""
    if hasattr(values, "detach"):
        values = values.detach().cpu().double().numpy()
    if hasattr(values, "shape") and hasattr(values, "ravel"):
        return [int(d) for d in values.shape], [float(v) for v in values.ravel()]
    shape, level = [], values
    while isinstance(level, (list, tuple)):
        shape.append(len(level))
        level = level[0] if level else None
    flat = values
    for _ in range(len(shape) - 1):
        flat = [v for row in flat for v in row]
    return shape, [float(v) for v in flat]


def _common_metadata(task, tau, name, description, default_samples, extra_metadata):
    if task not in ("regression", "classification"):
        raise ValueError(f"task must be regression or classification, not {task!r}")
    if task == "regression" and not (tau and tau > 0):
        raise ValueError("a regression model needs tau > 0 (the model precision, 1 / noise variance)")
    meta = {"task": task}
    if tau is not None:
        meta["tau"] = repr(float(tau))
    if name:
        meta["name"] = name
    if description:
        meta["description"] = description
    if default_samples:
        meta["default_samples"] = str(int(default_samples))
    meta.update({str(k): str(v) for k, v in (extra_metadata or {}).items()})
    return meta


def write_layer_list(path, layers, *, input_shape, task, tau=None, input_mean=None, input_std=None,
                     output_mean=None, output_std=None, name="", description="", default_samples=0,
                     extra_metadata=None):
    """Writes a format v2 model (docs/model-format.md, "Format v2").

    layers: list of dicts, each {"type": ..., <attributes>..., "tensors": {...}}, e.g.
    {"type": "conv2d", "stride": 1, "padding": 2, "tensors": {"weight": w, "bias": b}}
    with w of shape [out_channels, in_channels / groups, kh, kw] (nested lists, NumPy
    arrays or torch tensors); {"type": "dense", "tensors": {"weight": [out, in], "bias": [out]}};
    {"type": "batch_norm", "eps": 1e-5, "tensors": {"weight", "bias", "running_mean",
    "running_var"}}; {"type": "dropout", "p": 0.5}; {"type": "relu"}; ...
    input_shape: [C, H, W] for images, [n] for tables. Standardisation vectors are per
    input element (C, H, W order) or, for images, per channel."""
    meta = _common_metadata(task, tau, name, description, default_samples, extra_metadata)
    tensors, listed = [], []
    for i, layer in enumerate(layers):
        attrs = {k: v for k, v in layer.items() if k != "tensors"}
        if "type" not in attrs:
            raise ValueError(f"layer {i} has no type")
        listed.append(attrs)
        for tname, values in (layer.get("tensors") or {}).items():
            shape, flat = _flat(values)
            tensors.append((f"layers.{i}.{tname}", shape, flat))
    tensors += _standardisation(input_mean, input_std, output_mean, output_std)
    meta.update({"format": "mcdrop.v2", "input_shape": json.dumps([int(d) for d in input_shape]),
                 "layers": json.dumps(listed)})
    _write(path, tensors, meta)


def _standardisation(input_mean, input_std, output_mean, output_std):
    tensors = []
    for tname, vec in (("input_mean", input_mean), ("input_std", input_std),
                       ("output_mean", output_mean), ("output_std", output_std)):
        if vec is not None:
            shape, flat = _flat(vec)
            tensors.append((tname, [len(flat)], flat))
    return tensors


def write_model(path, layers, *, task, activation="relu", dropout, tau=None,
                input_mean=None, input_std=None, output_mean=None, output_std=None,
                name="", description="", default_samples=0, extra_metadata=None):
    """Writes a format v1 model. layers: list of (weight, bias) with weight as
    nested lists [out][in] and bias as a list [out]; dropout: one rate per
    layer (applied to the layer's input)."""
    if len(dropout) != len(layers):
        raise ValueError(f"{len(dropout)} drop rates for {len(layers)} layers")
    meta = _common_metadata(task, tau, name, description, default_samples, extra_metadata)
    tensors = []
    for i, (w, b) in enumerate(layers):
        rows, cols = len(w), len(w[0])
        tensors.append((f"layers.{i}.weight", [rows, cols], [float(v) for row in w for v in row]))
        tensors.append((f"layers.{i}.bias", [len(b)], [float(v) for v in b]))
    tensors += _standardisation(input_mean, input_std, output_mean, output_std)
    meta.update({"format": "mcdrop.v1", "activation": activation,
                 "dropout": json.dumps([float(p) for p in dropout])})
    _write(path, tensors, meta)
