"""Writes mcdrop model files (docs/model-format.md) with the standard library
only: an 8-byte little-endian header length, a JSON header, then raw
little-endian float32 tensors."""
import json
import struct


def write_model(path, layers, *, task, activation="relu", dropout, tau=None,
                input_mean=None, input_std=None, output_mean=None, output_std=None,
                name="", description="", default_samples=0, extra_metadata=None):
    """layers: list of (weight, bias) with weight as nested lists [out][in] and
    bias as a list [out]; dropout: one rate per layer (applied to the layer's
    input)."""
    if task not in ("regression", "classification"):
        raise ValueError(f"task must be regression or classification, not {task!r}")
    if len(dropout) != len(layers):
        raise ValueError(f"{len(dropout)} drop rates for {len(layers)} layers")
    if task == "regression" and not (tau and tau > 0):
        raise ValueError("a regression model needs tau > 0 (the model precision, 1 / noise variance)")
    tensors = []
    for i, (w, b) in enumerate(layers):
        rows, cols = len(w), len(w[0])
        tensors.append((f"layers.{i}.weight", [rows, cols], [float(v) for row in w for v in row]))
        tensors.append((f"layers.{i}.bias", [len(b)], [float(v) for v in b]))
    for tname, vec in (("input_mean", input_mean), ("input_std", input_std),
                       ("output_mean", output_mean), ("output_std", output_std)):
        if vec is not None:
            tensors.append((tname, [len(vec)], [float(v) for v in vec]))
    meta = {"format": "mcdrop.v1", "task": task, "activation": activation,
            "dropout": json.dumps([float(p) for p in dropout])}
    if tau is not None:
        meta["tau"] = repr(float(tau))
    if name:
        meta["name"] = name
    if description:
        meta["description"] = description
    if default_samples:
        meta["default_samples"] = str(int(default_samples))
    meta.update({str(k): str(v) for k, v in (extra_metadata or {}).items()})
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
