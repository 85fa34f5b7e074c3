"""ONNX graphs -> mcdrop model files of format v2 (docs/model-format.md,
"Format v2: a layer list"), with Debian's python3-onnx (no onnxruntime).

    from mcdrop.onnx_import import export_onnx
    report = export_onnx("net.onnx", "net.safetensors", task="classification",
                         dropout={"/fc2/Gemm": 0.5})

or from a shell:

    python3 -m mcdrop.onnx_import net.onnx net.safetensors --task classification \\
        --dropout /fc2/Gemm=0.5

What is read: a graph that is a single chain of nodes from its one input
([N, C, H, W] or [N, n]; the batch dimension may be symbolic, the others
must be fixed) to its one output, with the weights in graph initializers or
Constant nodes. Supported nodes and what they become:

    Gemm (alpha = beta = 1, transA = 0, transB either way)   -> dense
    MatMul with a constant B [in, out] (+ Add of a constant) -> dense (weight B.T)
    Conv (2-D; pads symmetric; strides, dilations, group)    -> conv2d
    MaxPool (ceil_mode 0; dilations)                         -> max_pool2d
    AveragePool (ceil_mode 0; count_include_pad)             -> avg_pool2d
    GlobalAveragePool / GlobalMaxPool                        -> avg/max_pool2d over the whole image
    Pad (constant 0, spatial, symmetric) before Conv or
        AveragePool (as torch writes AvgPool2d(padding,
        count_include_pad=True))                             -> the padding of that layer
    Flatten (axis 1), Reshape to [batch, features]           -> flatten
    BatchNormalization                                       -> batch_norm (running statistics)
    Relu, LeakyRelu, Tanh, Sigmoid                           -> relu, leaky_relu, tanh, sigmoid
    Dropout (its ratio: an input or the old `ratio` attribute) -> dropout
    Identity                                                 -> skipped

Anything else is refused with a ValueError naming the node (name and
op_type): other op types, a Softmax / LogSoftmax at the end (export the
logits; mcdrop applies the softmax itself), branches and residual
connections, asymmetric pads, ceil_mode = 1, auto_pad SAME_*, Gemm with
alpha or beta other than 1.

Drop rates. A graph exported in training mode
(`torch.onnx.export(..., training=torch.onnx.TrainingMode.TRAINING)`) keeps
its Dropout nodes, and their ratios are used where they stand. An eval-mode
export has none, so rates can be given with `dropout`: a dict mapping a
*target* to a rate, where the target is

  - the name of a Conv, Gemm, MatMul, MaxPool or AveragePool node of the
    graph (e.g. "/fc2/Gemm"), or
  - an int k: the k-th weighted node (Conv, Gemm or MatMul) of the chain,
    counted from 0 in graph order (pooling nodes are not counted),

and the rate is a float in [0, 1) or a tuple (rate, kind) with kind
"dropout" (each value, the default) or "dropout2d" (whole channels; only
before a convolution or pooling). The given rate applies to the target's
input: the importer removes the graph's Dropout layers that sit between the
previous Conv/Gemm/MatMul/pool layer and the target, and inserts one
dropout of the given rate directly before the target (rate 0 removes the
dropout). Graph rates at places not named are kept. The report says, for
each dropout layer written, its position, the node it precedes, the rate,
and whether it came from the graph or from the argument.
"""
import argparse
import json
import sys

import numpy as np

from .safetensors import write_layer_list

_ACTIVATIONS = {"Relu": "relu", "Tanh": "tanh", "Sigmoid": "sigmoid"}
_WEIGHTED = ("Conv", "Gemm", "MatMul")
_STAGE_TYPES = ("dense", "conv2d", "max_pool2d", "avg_pool2d")
_SUPPORTED = ("Gemm, MatMul (+ Add of a bias), Conv, MaxPool, AveragePool, GlobalAveragePool, "
              "GlobalMaxPool, Pad (before Conv / AveragePool), Flatten, Reshape to [batch, features], "
              "BatchNormalization, Relu, LeakyRelu, Tanh, Sigmoid, Dropout, Identity")
_SHAPE_OPS = ("Shape", "Gather", "Unsqueeze", "Squeeze", "Concat", "Slice", "Cast", "Identity", "Constant",
              "ConstantOfShape", "Reshape", "Transpose")


class _Batch:
    """The symbolic batch dimension in shape computations."""

    def __repr__(self):
        return "batch"


_BATCH = _Batch()


def _describe(node, index=None):
    name = node.name or (f"#{index}" if index is not None else f"-> {node.output[0]!r}")
    return f"node {name!r} ({node.op_type})"


def _small(x):
    """A float32 attribute as the shortest decimal that rounds to it (1e-05, not 9.99e-06)."""
    return float(str(np.float32(x)))


def _pair(v):
    """An [h, w] attribute as written in the layer list: an int when both agree."""
    return int(v[0]) if v[0] == v[1] else [int(v[0]), int(v[1])]


class _Importer:
    def __init__(self, model):
        import onnx
        from onnx import numpy_helper

        self.onnx, self.numpy_helper = onnx, numpy_helper
        self.model = model
        g = model.graph
        self.graph = g
        self.opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
        self.initializers = {t.name: t for t in g.initializer}
        self.producer = {}
        self.consumers = {}
        for i, n in enumerate(g.node):
            for o in n.output:
                if o:
                    self.producer[o] = (i, n)
            for t in n.input:
                if t:
                    lst = self.consumers.setdefault(t, [])
                    if not any(j == i for j, _ in lst):
                        lst.append((i, n))
        self.outputs = [o.name for o in g.output]
        self.cache = {}
        self.shapes = {}  # chain tensor -> [_BATCH, dims...]
        self.notes = []

    # -- values known before any input arrives -------------------------------------------

    def attrs(self, node):
        return {a.name: self.onnx.helper.get_attribute_value(a) for a in node.attribute}

    def const(self, name, node, what):
        """The value of tensor `name` as a NumPy array (an initializer, a Constant node, an
        Identity or Cast of one), or a ValueError saying `node`'s `what` is not a constant."""
        v = self.value(name)
        if v is None or (np.asarray(v).dtype == object and any(x is _BATCH for x in np.ravel(v))):
            raise ValueError(f"{self.where(node)}: its {what} ({name!r}) is not a constant of the graph "
                             "(it is computed from the input; mcdrop serves a single chain)")
        return np.asarray(v)

    def value(self, name):
        """A tensor's value, or None when it depends on the input's values. Shapes of chain
        tensors are known (with the symbolic batch), so shape computations evaluate."""
        if name in self.cache:
            return self.cache[name]
        v = None
        if name in self.initializers:
            v = self.numpy_helper.to_array(self.initializers[name])
        elif name in self.producer:
            n = self.producer[name][1]
            if n.op_type in _SHAPE_OPS and n.domain in ("", "ai.onnx"):
                v = self._evaluate(n)
        self.cache[name] = v
        return v

    def _evaluate(self, n):
        """Constant folding of the few ops torch writes for shapes and pads; None when
        the value depends on the input's values or the op is not one of them."""
        a = self.attrs(n)
        if n.op_type == "Constant":
            if "value" in a:
                return self.numpy_helper.to_array(a["value"])
            for key in ("value_float", "value_int"):
                if key in a:
                    return np.array(a[key])
            for key in ("value_floats", "value_ints"):
                if key in a:
                    return np.array(list(a[key]))
            return None
        if n.op_type == "Shape":
            if n.input[0] not in self.shapes:
                return None
            s = list(self.shapes[n.input[0]])
            start, end = a.get("start", 0), a.get("end", len(s))
            return np.array(s[start:end], dtype=object)
        ins = [self.value(t) if t else None for t in n.input]
        x = ins[0]
        if x is None:
            return None
        x = np.asarray(x, dtype=object if np.asarray(x).dtype == object else None)
        if n.op_type in ("Identity", "Cast"):
            return x
        if n.op_type == "ConstantOfShape":
            fill = self.numpy_helper.to_array(a["value"]) if "value" in a else np.zeros(1, np.float32)
            if x.dtype == object:
                return None
            return np.full([int(v) for v in x.reshape(-1)], fill.reshape(-1)[0], dtype=fill.dtype)
        if n.op_type == "Transpose":
            return np.transpose(x, a.get("perm"))
        if n.op_type == "Reshape":
            if len(ins) < 2 or ins[1] is None or np.asarray(ins[1]).dtype == object:
                return None
            target = [int(v) for v in np.ravel(ins[1])]
            target = [x.shape[k] if v == 0 and not a.get("allowzero", 0) else v for k, v in enumerate(target)]
            return np.reshape(x, target)
        if n.op_type == "Gather":
            if ins[1] is None:
                return None
            return np.take(x, np.asarray(ins[1]).astype(np.int64), axis=a.get("axis", 0))
        if n.op_type in ("Unsqueeze", "Squeeze"):
            axes = a.get("axes")
            if axes is None and len(ins) > 1 and ins[1] is not None:
                axes = [int(v) for v in np.ravel(ins[1])]
            if n.op_type == "Squeeze":
                return np.squeeze(x, axis=tuple(axes) if axes else None)
            if not axes:
                return None
            for ax in sorted(int(v) % (x.ndim + len(axes)) for v in axes):
                x = np.expand_dims(x, ax)
            return x
        if n.op_type == "Concat":
            if any(v is None for v in ins):
                return None
            parts = [np.asarray(v, dtype=object) for v in ins]
            return np.concatenate(parts, axis=a.get("axis", 0))
        if n.op_type == "Slice":
            if len(ins) < 3 or ins[1] is None or ins[2] is None:
                if "starts" not in a:
                    return None
                starts, ends, axes, steps = a["starts"], a["ends"], a.get("axes"), None
            else:
                starts, ends = np.ravel(ins[1]), np.ravel(ins[2])
                axes = np.ravel(ins[3]) if len(ins) > 3 and ins[3] is not None else None
                steps = np.ravel(ins[4]) if len(ins) > 4 and ins[4] is not None else None
            index = [slice(None)] * x.ndim
            for k, (s, e) in enumerate(zip(starts, ends)):
                ax = int(axes[k]) if axes is not None else k
                st = int(steps[k]) if steps is not None else 1
                index[ax] = slice(int(s), int(e), st)
            return x[tuple(index)]
        return None

    # -- the chain -------------------------------------------------------------------------

    def where(self, node):
        i = next((j for j, n in enumerate(self.graph.node) if n is node), None)
        return _describe(node, i)

    def input_name(self):
        inputs = [i for i in self.graph.input if i.name not in self.initializers]
        if len(inputs) != 1:
            raise ValueError(f"the graph has {len(inputs)} inputs ({', '.join(i.name for i in inputs)}): "
                             "mcdrop imports graphs with exactly one")
        if len(self.outputs) != 1:
            raise ValueError(f"the graph has {len(self.outputs)} outputs ({', '.join(self.outputs)}): "
                             "mcdrop imports graphs with exactly one")
        inp = inputs[0]
        dims = inp.type.tensor_type.shape.dim
        shape = []
        for k, d in enumerate(dims):
            if d.HasField("dim_value"):
                shape.append(int(d.dim_value))
            elif k == 0:
                shape.append(_BATCH)
            else:
                raise ValueError(f"input {inp.name!r}: dimension {k} is symbolic ({d.dim_param!r}); "
                                 "mcdrop needs a fixed example shape ([C, H, W] or [n])")
        if len(shape) not in (2, 4):
            raise ValueError(f"input {inp.name!r} has shape {shape}: mcdrop takes [batch, n] or "
                             "[batch, C, H, W]")
        self.batch = shape[0]
        self.shapes[inp.name] = [_BATCH] + shape[1:]
        return inp.name

    def next_node(self, tensor):
        """The one node that consumes `tensor` as data, or None at the graph output. Shape
        nodes (torch's x.view(x.size(0), -1)) read only the shape and are not a branch."""
        users = [(i, n) for i, n in self.consumers.get(tensor, []) if n.op_type != "Shape"]
        if tensor in self.outputs:
            if users:
                raise ValueError(f"the graph output {tensor!r} also feeds "
                                 f"{', '.join(_describe(n, i) for i, n in users)}: not a single chain")
            return None, None
        if not users:
            raise ValueError(f"tensor {tensor!r} feeds no node and is not the graph output: "
                             "mcdrop serves a single chain from the input to the output")
        if len(users) > 1:
            raise ValueError(f"tensor {tensor!r} feeds {len(users)} nodes "
                             f"({', '.join(_describe(n, i) for i, n in users)}): a branch (e.g. a "
                             "residual connection); mcdrop serves a single chain of layers")
        i, node = users[0]
        if node.domain not in ("", "ai.onnx"):
            raise ValueError(f"{_describe(node, i)} is in domain {node.domain!r}: only standard ONNX "
                             f"ops are imported ({_SUPPORTED})")
        for k, o in enumerate(node.output[1:], 1):
            if o and (self.consumers.get(o) or o in self.outputs):
                raise ValueError(f"{_describe(node, i)}: its output {k} ({o!r}) is used; mcdrop "
                                 "serves a single chain")
        return i, node


def _pads2d(pads, where):
    """ONNX pads [top, left, bottom, right] -> (h, w), refusing asymmetric ones."""
    if not pads:
        return (0, 0)
    pads = [int(p) for p in pads]
    if len(pads) != 4:
        raise ValueError(f"{where}: pads {pads}: only 2-D pads [top, left, bottom, right] are supported")
    if pads[0] != pads[2] or pads[1] != pads[3]:
        raise ValueError(f"{where}: asymmetric pads {pads} ([top, left, bottom, right]): mcdrop pads "
                         "both sides alike (as PyTorch's padding=(h, w))")
    return (pads[0], pads[1])


def _auto_pad(a, where):
    mode = a.get("auto_pad", b"NOTSET")
    mode = mode.decode() if isinstance(mode, bytes) else str(mode)
    if mode not in ("NOTSET", "VALID", ""):
        raise ValueError(f"{where}: auto_pad={mode} is not supported: export with explicit pads "
                         "(auto_pad NOTSET)")
    return mode


def _window(size, k, s, p, d):
    return (size + 2 * p - d * (k - 1) - 1) // s + 1


def layers_of_onnx(model, dropout=None):
    """Converts an ONNX ModelProto (or a path to a .onnx file) into a layer list.

    dropout: None, or {target: rate or (rate, kind)} as in the module doc.
    Returns (layers, input_shape, report): `layers` as mcdrop.write_layer_list
    takes them, input_shape [C, H, W] or [n], and report a dict with
    "dropout" (a list, per dropout layer written, of {"position", "before",
    "rate", "kind", "source"}), "notes" (what the importer decided on the
    way, e.g. a Pad merged into a pooling), "opset" and "producer". Raises
    ValueError naming the node for anything it cannot represent."""
    import onnx

    if isinstance(model, (str, bytes)) or hasattr(model, "__fspath__"):
        model = onnx.load(model)
    imp = _Importer(model)
    cur = imp.input_name()
    shape = list(imp.shapes[cur][1:])
    input_shape = list(shape)
    layers = []  # dicts for write_layer_list, plus private keys "_node", "_source"
    weighted = []  # names of the weighted nodes, in order
    pending_pad = None  # (node, (h, w)) of a Pad waiting for its Conv / AveragePool
    biasable = None  # the dense / conv2d layer right before, which an Add of a constant joins

    def flat():
        return len(shape) == 1

    def need_image(node, what):
        if flat():
            raise ValueError(f"{imp.where(node)}: {what} on a flat tensor of {shape[0]} values "
                             "(after Flatten / Gemm)")

    while True:
        index, node = imp.next_node(cur)
        if node is None:
            break
        where = _describe(node, index)
        op, a = node.op_type, imp.attrs(node)
        if pending_pad is not None and op not in ("Conv", "AveragePool"):
            raise ValueError(f"{imp.where(pending_pad[0])} is followed by {where}: a Pad is imported only "
                             "directly before a Conv or an AveragePool")
        if node.input[0] != cur and not (op == "Add" and cur in node.input):
            raise ValueError(f"{where} takes the chain's tensor {cur!r} as a parameter, not as its data "
                             "input: not supported")
        entry = None
        if op == "Identity":
            pass
        elif op in ("Softmax", "LogSoftmax"):
            raise ValueError(f"{where}: export logits; mcdrop applies the softmax itself (drop the "
                             f"{op} at the end of the network before exporting)")
        elif op == "Gemm":
            if not flat():
                raise ValueError(f"{where}: Gemm on an unflattened tensor {shape}")
            if a.get("transA", 0):
                raise ValueError(f"{where}: transA=1 is not supported")
            if a.get("alpha", 1.0) != 1.0 or a.get("beta", 1.0) != 1.0:
                raise ValueError(f"{where}: alpha={a.get('alpha', 1.0)}, beta={a.get('beta', 1.0)}: "
                                 "mcdrop imports Gemm with alpha = beta = 1 only")
            b = imp.const(node.input[1], node, "B (the weight)").astype(np.float64)
            if b.ndim != 2:
                raise ValueError(f"{where}: B of shape {list(b.shape)} is not a matrix")
            w = b if a.get("transB", 0) else b.T
            bias = np.zeros(w.shape[0])
            if len(node.input) > 2 and node.input[2]:
                c = imp.const(node.input[2], node, "C (the bias)").astype(np.float64)
                if c.size not in (1, w.shape[0]) or (c.ndim == 2 and c.shape[0] != 1) or c.ndim > 2:
                    raise ValueError(f"{where}: C of shape {list(c.shape)} is not a bias of "
                                     f"{w.shape[0]} values")
                bias = np.broadcast_to(c.reshape(-1), (w.shape[0],)).copy()
            entry = _dense(w, bias, shape, where)
            shape = [w.shape[0]]
        elif op == "MatMul":
            if not flat():
                raise ValueError(f"{where}: MatMul on an unflattened tensor {shape}")
            if node.input[0] != cur:
                raise ValueError(f"{where}: the weight is the left operand (W @ x): only x @ B is supported")
            b = imp.const(node.input[1], node, "B (the weight)").astype(np.float64)
            if b.ndim != 2:
                raise ValueError(f"{where}: B of shape {list(b.shape)} is not a matrix [in, out]")
            entry = _dense(b.T, np.zeros(b.shape[1]), shape, where)
            shape = [b.shape[1]]
        elif op == "Add":
            other = node.input[1] if node.input[0] == cur else node.input[0]
            last = biasable
            if last is None:
                raise ValueError(f"{where}: an Add is imported only as the bias of the MatMul / Gemm / "
                                 "Conv right before it")
            c = imp.const(other, node, "addend").astype(np.float64)
            out = last["tensors"]["weight"].shape[0]
            if last["type"] == "dense":
                ok = c.size in (1, out) and (c.ndim <= 1 or (c.ndim == 2 and c.shape[0] == 1))
            else:
                ok = c.size in (1, out) and (c.ndim <= 1 and c.size == 1 or c.shape[-2:] == (1, 1))
            if not ok:
                raise ValueError(f"{where}: an addend of shape {list(c.shape)} is not a bias of the "
                                 f"{out} outputs before it")
            last["tensors"]["bias"] = last["tensors"]["bias"] + np.broadcast_to(c.reshape(-1), (out,))
            imp.notes.append(f"{where} added to the bias of {last['_node']}")
        elif op == "Conv":
            need_image(node, "Conv")
            w = imp.const(node.input[1], node, "W (the weight)").astype(np.float64)
            if w.ndim != 4:
                raise ValueError(f"{where}: a weight of shape {list(w.shape)}: only 2-D convolutions")
            _auto_pad(a, where)
            ph, pw = _pads2d(a.get("pads"), where)
            if pending_pad is not None:
                ph, pw = ph + pending_pad[1][0], pw + pending_pad[1][1]
                imp.notes.append(f"{imp.where(pending_pad[0])} merged into the padding of {where}")
                pending_pad = None
            k = list(a.get("kernel_shape", w.shape[2:]))
            if [int(v) for v in k] != list(w.shape[2:]):
                raise ValueError(f"{where}: kernel_shape {k} does not match the weight {list(w.shape)}")
            s = [int(v) for v in a.get("strides", [1, 1])]
            d = [int(v) for v in a.get("dilations", [1, 1])]
            g = int(a.get("group", 1))
            if shape[0] != w.shape[1] * g:
                raise ValueError(f"{where}: the weight {list(w.shape)} with group={g} takes "
                                 f"{w.shape[1] * g} channels, the tensor before has {shape[0]}")
            bias = np.zeros(w.shape[0])
            if len(node.input) > 2 and node.input[2]:
                bias = imp.const(node.input[2], node, "B (the bias)").astype(np.float64).reshape(-1)
            entry = {"type": "conv2d", "stride": _pair(s), "padding": _pair((ph, pw)),
                     "dilation": _pair(d), "groups": g, "tensors": {"weight": w, "bias": bias}}
            shape = [w.shape[0]] + [_window(shape[1 + j], w.shape[2 + j], s[j], (ph, pw)[j], d[j])
                                    for j in range(2)]
        elif op in ("MaxPool", "AveragePool"):
            need_image(node, op)
            _auto_pad(a, where)
            if a.get("ceil_mode", 0):
                raise ValueError(f"{where}: ceil_mode=1 is not supported: mcdrop pools in floor mode "
                                 "(PyTorch's ceil_mode=False)")
            k = [int(v) for v in a["kernel_shape"]]
            if len(k) != 2:
                raise ValueError(f"{where}: kernel_shape {k}: only 2-D pooling")
            s = [int(v) for v in a.get("strides", [1, 1])]
            ph, pw = _pads2d(a.get("pads"), where)
            d = [int(v) for v in a.get("dilations", [1, 1])]
            if ph > k[0] // 2 or pw > k[1] // 2 or (pending_pad and max(pending_pad[1]) > min(k) // 2):
                raise ValueError(f"{where}: padding larger than half the kernel {k} (PyTorch's and "
                                 "mcdrop's limit)")
            if op == "MaxPool":
                entry = {"type": "max_pool2d", "kernel_size": _pair(k), "stride": _pair(s),
                         "padding": _pair((ph, pw))}
                if d != [1, 1]:
                    entry["dilation"] = _pair(d)
            else:
                if d != [1, 1]:
                    raise ValueError(f"{where}: dilations {d} in an AveragePool are not supported")
                include = bool(a.get("count_include_pad", 0))
                if pending_pad is not None:
                    if (ph, pw) != (0, 0):
                        raise ValueError(f"{where}: padded twice (by {imp.where(pending_pad[0])} and "
                                         "its own pads)")
                    ph, pw = pending_pad[1]
                    include = True
                    imp.notes.append(f"{imp.where(pending_pad[0])} merged into {where} as "
                                     "padding with count_include_pad=true")
                    pending_pad = None
                entry = {"type": "avg_pool2d", "kernel_size": _pair(k), "stride": _pair(s),
                         "padding": _pair((ph, pw)), "count_include_pad": include}
            shape = [shape[0]] + [_window(shape[1 + j], k[j], s[j], (ph, pw)[j], d[j]) for j in range(2)]
        elif op in ("GlobalAveragePool", "GlobalMaxPool"):
            need_image(node, op)
            k = [shape[1], shape[2]]
            entry = {"type": "avg_pool2d" if op == "GlobalAveragePool" else "max_pool2d",
                     "kernel_size": _pair(k), "stride": 1, "padding": 0}
            if op == "GlobalAveragePool":
                entry["count_include_pad"] = True
            shape = [shape[0], 1, 1]
        elif op == "Pad":
            need_image(node, "Pad")
            mode = a.get("mode", b"constant")
            mode = mode.decode() if isinstance(mode, bytes) else str(mode)
            if mode != "constant":
                raise ValueError(f"{where}: mode={mode}: only zero (constant) padding is supported")
            if "pads" in a:
                pads, value = list(a["pads"]), a.get("value", 0.0)
            else:
                pads = [int(v) for v in imp.const(node.input[1], node, "pads").reshape(-1)]
                value = 0.0
                if len(node.input) > 2 and node.input[2]:
                    value = float(imp.const(node.input[2], node, "constant_value").reshape(-1)[0])
            if len(node.input) > 3 and node.input[3]:
                raise ValueError(f"{where}: Pad with axes is not supported")
            if value != 0.0:
                raise ValueError(f"{where}: padding with {value}: only zero padding is supported")
            if len(pads) != 8 or any(pads[j] for j in (0, 1, 4, 5)):
                raise ValueError(f"{where}: pads {pads}: only the height and width of [N, C, H, W] "
                                 "may be padded")
            # `shape` stays unpadded: the padding joins the next layer's.
            pending_pad = (node, _pads2d([pads[2], pads[3], pads[6], pads[7]], where))
        elif op == "Flatten":
            if a.get("axis", 1) != 1:
                raise ValueError(f"{where}: axis={a.get('axis')}: only Flatten(axis=1) (keeping the batch "
                                 "dimension) is supported")
            if not flat():
                entry = {"type": "flatten"}
                shape = [int(np.prod(shape))]
        elif op == "Reshape":
            _check_reshape(imp, node, shape, where)
            if not flat():
                entry = {"type": "flatten"}
                shape = [int(np.prod(shape))]
        elif op == "BatchNormalization":
            if a.get("spatial", 1) != 1:
                raise ValueError(f"{where}: spatial=0 is not supported")
            names = ("scale", "B", "input_mean", "input_var")
            gamma, beta, mean, var = (imp.const(t, node, n).astype(np.float64).reshape(-1)
                                      for t, n in zip(node.input[1:5], names))
            if len(gamma) != shape[0]:
                raise ValueError(f"{where}: {len(gamma)} channels, the tensor before has {shape[0]}")
            if a.get("training_mode", 0):
                imp.notes.append(f"{where} has training_mode=1 (a training-mode export): imported with "
                                 "its running statistics, as PyTorch's eval()")
            entry = {"type": "batch_norm", "eps": _small(a.get("epsilon", 1e-5)),
                     "tensors": {"weight": gamma, "bias": beta, "running_mean": mean, "running_var": var}}
        elif op in _ACTIVATIONS:
            entry = {"type": _ACTIVATIONS[op]}
        elif op == "LeakyRelu":
            entry = {"type": "leaky_relu", "negative_slope": _small(a.get("alpha", 0.01))}
        elif op == "Dropout":
            p = _dropout_ratio(imp, node, a, where)
            if p > 0:
                entry = {"type": "dropout", "p": p, "_source": f"graph ({where})"}
            else:
                imp.notes.append(f"{where} has ratio 0: no dropout written")
        else:
            raise ValueError(f"{where} is not supported: mcdrop imports {_SUPPORTED}")

        if entry is not None:
            entry["_node"] = node.name or f"{op}#{index}"
            if op in _WEIGHTED:
                entry["_weighted"] = len(weighted)
                weighted.append(entry["_node"])
            layers.append(entry)
        if op in _WEIGHTED:
            biasable = entry
        elif op not in ("Add", "Identity"):
            biasable = None
        cur = node.output[0]
        if pending_pad is None:
            imp.shapes[cur] = [_BATCH] + list(shape)

    if pending_pad is not None:
        raise ValueError(f"{imp.where(pending_pad[0])} ends the graph: a Pad is imported only before "
                         "a Conv or an AveragePool")
    if not flat():
        raise ValueError(f"the graph's output is {shape} per example: mcdrop models end flat "
                         "(add Flatten and a Gemm)")
    if not any(l["type"] in ("dense", "conv2d") for l in layers):
        raise ValueError("the graph has no Gemm, MatMul or Conv")

    layers = _apply_dropout(layers, dropout, weighted)
    report = {"dropout": [], "notes": imp.notes, "opset": imp.opset,
              "producer": f"{model.producer_name} {model.producer_version}".strip()}
    for i, l in enumerate(layers):
        if l["type"] in ("dropout", "dropout2d"):
            nxt = next((m["_node"] for m in layers[i + 1:] if m["type"] in _STAGE_TYPES), None)
            report["dropout"].append({"position": i, "before": nxt, "rate": l["p"], "kind": l["type"],
                                      "source": l["_source"]})
    clean = [{k: v for k, v in l.items() if not k.startswith("_")} for l in layers]
    return clean, input_shape, report


def _dense(w, bias, shape, where):
    if w.shape[1] != shape[0]:
        raise ValueError(f"{where}: the weight takes {w.shape[1]} inputs, the tensor before has {shape[0]}")
    return {"type": "dense", "tensors": {"weight": w, "bias": bias}}


def _check_reshape(imp, node, shape, where):
    """Refuses a Reshape that does not keep the batch and flatten the rest: the target
    must be [batch, -1] or [batch, n] (batch: the input's batch computed by Shape, 0 =
    copy it, a static batch size, or -1 when the second is n)."""
    a = imp.attrs(node)
    if "shape" in a:  # opset 1-4
        target = list(a["shape"])
    else:
        v = imp.value(node.input[1])
        if v is None:
            raise ValueError(f"{where}: its target shape is computed from the input's values")
        target = list(np.ravel(np.asarray(v, dtype=object)))
    n = int(np.prod(shape))
    ok = len(target) == 2 and target[1] is not _BATCH and int(target[1]) in (-1, n)
    if ok and target[0] is not _BATCH:
        first = int(target[0])
        ok = ((first == 0 and not a.get("allowzero", 0)) or (first == -1 and int(target[1]) == n)
              or (imp.batch is not _BATCH and first == imp.batch))
    if not ok:
        shown = ["batch" if t is _BATCH else int(t) for t in target]
        raise ValueError(f"{where}: a reshape to {shown} of a tensor {['batch'] + shape}: only a "
                         "reshape to [batch, features] (a flatten) is supported")


def _dropout_ratio(imp, node, a, where):
    if "ratio" in a:  # opset <= 11
        p = float(a["ratio"])
    elif len(node.input) > 1 and node.input[1]:
        p = float(imp.const(node.input[1], node, "ratio").reshape(-1)[0])
    else:
        p = 0.5  # the ONNX default
    training = None
    if len(node.input) > 2 and node.input[2]:
        training = bool(imp.const(node.input[2], node, "training_mode").reshape(-1)[0])
    if a.get("is_test", 0) or training is False or (training is None and imp.opset >= 12):
        imp.notes.append(f"{where} is inactive in ONNX inference (no training_mode): its ratio {p:g} is "
                         "still used, as MC dropout")
    if not 0 <= p < 1:
        raise ValueError(f"{where}: ratio {p} not in [0, 1)")
    return _small(p)


def _parse_rate(target, spec):
    if isinstance(spec, (tuple, list)):
        if len(spec) != 2:
            raise ValueError(f"dropout[{target!r}] = {spec!r}: give a rate or (rate, kind)")
        rate, kind = float(spec[0]), str(spec[1])
    else:
        rate, kind = float(spec), "dropout"
    if kind not in ("dropout", "dropout2d"):
        raise ValueError(f"dropout[{target!r}]: kind {kind!r} is not dropout or dropout2d")
    if not 0 <= rate < 1:
        raise ValueError(f"dropout[{target!r}]: rate {rate} not in [0, 1)")
    return rate, kind


def _apply_dropout(layers, dropout, weighted):
    """Inserts the rates given as an argument (see the module doc) and returns the new list."""
    if not dropout:
        return layers
    stage_index = {}
    for i, l in enumerate(layers):
        if l["type"] in _STAGE_TYPES:
            for key in [l["_node"]] + ([l["_weighted"]] if "_weighted" in l else []):
                if key in stage_index and isinstance(key, str):
                    raise ValueError(f"two layers come from nodes named {key!r}: name the target by index")
                stage_index[key] = i
    plan = {}
    for target, spec in dropout.items():
        key = target
        if isinstance(target, str) and target.lstrip("-").isdigit() and target not in stage_index:
            key = int(target)
        if isinstance(key, bool) or key not in stage_index:
            known = [w for w in weighted] + [l["_node"] for l in layers if l["type"].endswith("pool2d")]
            raise ValueError(f"dropout target {target!r} is not a Conv, Gemm, MatMul or pooling node of the "
                             f"chain (the nodes: {known}; or an index 0..{len(weighted) - 1})")
        i = stage_index[key]
        if i in plan:
            raise ValueError(f"dropout target {target!r} names the same layer as another target")
        plan[i] = _parse_rate(target, spec) + (target,)
    out = []
    for i, l in enumerate(layers):
        if i in plan:
            rate, kind, target = plan[i]
            start = len(out)
            while start > 0 and out[start - 1]["type"] not in _STAGE_TYPES:
                start -= 1
            replaced = [m for m in out[start:] if m["type"] in ("dropout", "dropout2d")]
            out[start:] = [m for m in out[start:] if m["type"] not in ("dropout", "dropout2d")]
            if kind == "dropout2d" and l["type"] == "dense":
                raise ValueError(f"dropout target {target!r}: dropout2d needs an image input (a Conv or "
                                 "pooling target), not a dense layer's")
            source = f"argument ({target!r})" if target == l["_node"] else f"argument ({target!r}: {l['_node']})"
            if replaced:
                source += " replacing the graph's " + ", ".join(f"{m['p']:g}" for m in replaced)
            if rate > 0:
                out.append({"type": kind, "p": rate, "_source": source})
        out.append(l)
    return out


def export_onnx(onnx_path_or_model, out_path, *, task, tau=None, dropout=None, input_mean=None,
                input_std=None, output_mean=None, output_std=None, name="", description="",
                default_samples=0):
    """Writes the ONNX graph (a path or a ModelProto) to `out_path` as a format v2 model.

    task: "regression" (needs tau > 0, the model precision in output units) or
    "classification" (the graph outputs logits). dropout: rates given as an
    argument (the module doc). input_/output_ mean and std: the
    standardisation the service applies. Returns the report of
    layers_of_onnx, with "layers" and "input_shape" added."""
    import onnx

    model = onnx_path_or_model
    source = ""
    if isinstance(model, (str, bytes)) or hasattr(model, "__fspath__"):
        source = str(model)
        model = onnx.load(model)
    layers, input_shape, report = layers_of_onnx(model, dropout=dropout)
    producer = report["producer"] or "unknown producer"
    write_layer_list(out_path, layers, input_shape=input_shape, task=task, tau=tau,
                     input_mean=input_mean, input_std=input_std, output_mean=output_mean,
                     output_std=output_std, name=name,
                     description=description or f"imported from ONNX {source or '(a ModelProto)'}",
                     default_samples=default_samples,
                     extra_metadata={"exported_by": f"mcdrop.onnx_import (onnx {onnx.__version__}, "
                                                    f"opset {report['opset']}, {producer})",
                                     "dropout_sources": json.dumps(report["dropout"])})
    report["layers"] = [l["type"] for l in layers]
    report["input_shape"] = input_shape
    return report


def format_report(report):
    """The report of export_onnx as lines of text."""
    lines = [f"input shape {report.get('input_shape')}, layers: {', '.join(report.get('layers', []))}"]
    if not report["dropout"]:
        lines.append("dropout: none (an eval-mode export has no Dropout nodes: give --dropout NAME=RATE)")
    for d in report["dropout"]:
        before = f"before {d['before']}" if d["before"] else "after the last layer"
        lines.append(f"dropout: layer {d['position']} {d['kind']} p={d['rate']:g} {before} from {d['source']}")
    lines += [f"note: {n}" for n in report["notes"]]
    return lines


def main(argv=None):
    ap = argparse.ArgumentParser(
        prog="python3 -m mcdrop.onnx_import",
        description="Converts an ONNX graph (a single chain of Gemm / MatMul / Conv / pooling / "
                    "BatchNormalization / activations / Dropout) into an mcdrop model file (format v2).")
    ap.add_argument("onnx_model")
    ap.add_argument("out")
    ap.add_argument("--task", required=True, choices=("regression", "classification"))
    ap.add_argument("--tau", type=float, help="regression: the model precision in output units")
    ap.add_argument("--dropout", action="append", default=[], metavar="TARGET=RATE[:dropout2d]",
                    help="a drop rate for the input of TARGET: the name of a Conv / Gemm / MatMul / "
                         "pooling node, or k for the k-th Conv / Gemm / MatMul (from 0). Replaces the "
                         "graph's dropout before TARGET; repeatable")
    ap.add_argument("--name", default="")
    ap.add_argument("--description", default="")
    args = ap.parse_args(argv)
    rates = {}
    for item in args.dropout:
        target, sep, spec = item.rpartition("=")
        if not sep or not target:
            ap.error(f"--dropout {item!r}: expected TARGET=RATE")
        rate, _, kind = spec.partition(":")
        try:
            rates[target] = (float(rate), kind or "dropout")
        except ValueError:
            ap.error(f"--dropout {item!r}: {rate!r} is not a number")
    try:
        report = export_onnx(args.onnx_model, args.out, task=args.task, tau=args.tau, dropout=rates,
                             name=args.name, description=args.description)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"wrote {args.out}")
    for line in format_report(report):
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
