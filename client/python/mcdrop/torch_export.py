"""Exports a PyTorch dropout network to an mcdrop model file.

Two formats (docs/model-format.md). Format v2, a layer list, takes an
nn.Sequential (nested Sequentials are flattened) or any module whose children,
in registration order, are its forward sequence, built from Conv2d, MaxPool2d,
AvgPool2d, Flatten, Linear, Dropout, Dropout2d, BatchNorm1d / BatchNorm2d
(eval-mode statistics) and the activations ReLU, LeakyReLU, Tanh, Sigmoid,
GELU (exact) and Identity; anything else is refused with the module's
qualified name (its position in a Sequential, e.g. "body.3") and type. Image
models need `input_shape=[C, H, W]`. Before writing, the module's own forward
is run in eval mode on random inputs and compared with its children applied
in order: a forward that does anything else (functional calls, reshapes, skip
connections) is refused instead of exported wrong.

Format v1 (written when the network fits it, so MLP exports are unchanged) is
the pattern:

    [Dropout(p0)] Linear [act] [Dropout(p1)] Linear [act] ... [Dropout(pL)] Linear

with one activation type between the layers (ReLU, Tanh, Sigmoid, GELU with
approximate='none', Identity) and none after the last Linear (the service
applies softmax itself for classifiers). A Dropout right before a Linear sets
that layer's drop rate; a Linear without one gets rate 0. Anything else is
refused with a message naming the module."""
import torch
from torch import nn

from .safetensors import write_layer_list, write_model

_ACTIVATIONS = {nn.ReLU: "relu", nn.Tanh: "tanh", nn.Sigmoid: "sigmoid", nn.Identity: "identity"}


def _named(module, prefix=""):
    """(qualified name, module) of the leaves, nested Sequentials flattened."""
    out = []
    for name, child in module.named_children():
        if isinstance(child, nn.Sequential):
            out.extend(_named(child, prefix + name + "."))
        else:
            out.append((prefix + name, child))
    return out


def _flatten(module):
    return [m for _, m in _named(module)]


def check_forward_is_sequence(module, input_shape):
    """Raises ValueError unless `module` in eval mode computes what applying
    its children in order computes, on random inputs of [4] + input_shape:
    the exporter reads the children, so a forward with functional calls
    (F.relu, x.view, a skip connection) would otherwise be exported wrong."""
    leaves = _flatten(module)
    modes = {m: m.training for m in module.modules()}
    gen = torch.Generator().manual_seed(0)
    x = torch.randn([4] + [int(v) for v in input_shape], generator=gen)
    try:
        module.eval()
        with torch.no_grad():
            want = module(x)
            got = x
            for m in leaves:
                got = m(got)
    except Exception as e:  # the shapes did not chain, or forward refused x
        raise ValueError(f"{type(module).__name__}: could not run its forward on input {list(x.shape)} "
                         f"or apply its children in order ({type(e).__name__}: {e})") from e
    finally:
        for m, training in modes.items():
            m.train(training)
    if not torch.is_tensor(want) or want.shape != got.shape or not torch.allclose(
            want, got, rtol=1e-4, atol=1e-5 * (1.0 + float(got.abs().max()))):
        diff = (float((want - got).abs().max()) if torch.is_tensor(want) and want.shape == got.shape
                else "a different shape")
        raise ValueError(f"{type(module).__name__}: its forward is not its children applied in order "
                         f"(eval-mode outputs differ: {diff}); mcdrop exports the children, so write the "
                         "network as an nn.Sequential of supported modules (no functional calls in forward)")


def _softmax_refusal(i, m):
    return ValueError(f"module {i} ({type(m).__name__}): remove output activations, mcdrop "
                      "applies softmax for classification itself (export the logits)")


def _activation_name(m):
    if isinstance(m, nn.GELU):
        if getattr(m, "approximate", "none") != "none":
            raise ValueError("GELU(approximate='tanh') is not supported: mcdrop computes the exact (erf) GELU")
        return "gelu"
    for cls, name in _ACTIVATIONS.items():
        if isinstance(m, cls):
            return name
    return None


def layers_of(module):
    """Returns (layers, drop rates, activation) or raises ValueError."""
    named = _named(module)
    mods = [m for _, m in named]
    if not mods:
        raise ValueError(f"{type(module).__name__} has no child modules to export")
    layers, rates, acts = [], [], set()
    pending = 0.0
    for i, m in named:
        if isinstance(m, nn.Dropout):
            if type(m) is not nn.Dropout:
                raise ValueError(f"module {i} ({type(m).__name__}) is not plain nn.Dropout")
            if pending:
                raise ValueError(f"module {i}: two Dropouts in a row")
            pending = float(m.p)
        elif isinstance(m, nn.Linear):
            if m.bias is None:
                raise ValueError(f"module {i}: Linear without bias is not supported")
            layers.append(m)
            rates.append(pending)
            pending = 0.0
        elif isinstance(m, (nn.Softmax, nn.LogSoftmax)):
            raise _softmax_refusal(i, m)
        else:
            name = _activation_name(m)
            if name is None:
                raise ValueError(f"module {i} ({type(m).__name__}) cannot be represented: mcdrop serves "
                                 "Dropout / Linear / one activation (ReLU, Tanh, Sigmoid, GELU, Identity)")
            if not layers:
                raise ValueError(f"module {i}: an activation before the first Linear is not supported")
            acts.add(name)
    if not layers:
        raise ValueError("no nn.Linear found")
    if pending:
        raise ValueError("a Dropout after the last Linear cannot be represented")
    if not isinstance(mods[-1], nn.Linear):
        raise ValueError(f"the last module is {type(mods[-1]).__name__}, not Linear: remove output "
                         "activations (mcdrop applies softmax for classification itself)")
    if len(acts) > 1:
        raise ValueError(f"mixed activations {sorted(acts)}: mcdrop uses one activation for all hidden layers")
    for a, b in zip(layers, layers[1:]):
        if a.out_features != b.in_features:
            raise ValueError(f"Linear({a.in_features}, {a.out_features}) feeds Linear({b.in_features}, ...)")
    return layers, rates, (acts.pop() if acts else "identity")


def _vec(v):
    return None if v is None else [float(x) for x in torch.as_tensor(v).flatten().tolist()]


def _pair(v):
    return [int(v[0]), int(v[1])] if isinstance(v, (tuple, list)) else [int(v), int(v)]


def _conv(i, m):
    where = f"module {i} (Conv2d)"
    if m.padding_mode != "zeros":
        raise ValueError(f"{where}: padding_mode={m.padding_mode!r} is not supported (only zero padding)")
    k, d = _pair(m.kernel_size), _pair(m.dilation)
    if m.padding == "valid":
        padding = [0, 0]
    elif m.padding == "same":
        if any((d[a] * (k[a] - 1)) % 2 for a in range(2)):
            raise ValueError(f"{where}: padding='same' with an even kernel pads asymmetrically; "
                             "mcdrop pads both sides equally")
        padding = [d[a] * (k[a] - 1) // 2 for a in range(2)]
    else:
        padding = _pair(m.padding)
    tensors = {"weight": m.weight}
    if m.bias is not None:
        tensors["bias"] = m.bias
    return {"type": "conv2d", "stride": _pair(m.stride), "padding": padding, "dilation": d,
            "groups": int(m.groups), "tensors": tensors}


def _pool(i, m):
    kind = type(m).__name__
    if m.ceil_mode:
        raise ValueError(f"module {i} ({kind}): ceil_mode=True is not supported")
    layer = {"kernel_size": _pair(m.kernel_size),
             "stride": _pair(m.stride if m.stride is not None else m.kernel_size),
             "padding": _pair(m.padding)}
    if isinstance(m, nn.MaxPool2d):
        if m.return_indices:
            raise ValueError(f"module {i} (MaxPool2d): return_indices=True is not supported")
        layer.update(type="max_pool2d", dilation=_pair(m.dilation))
    else:
        if m.divisor_override is not None:
            raise ValueError(f"module {i} (AvgPool2d): divisor_override is not supported")
        layer.update(type="avg_pool2d", count_include_pad=bool(m.count_include_pad))
    return layer


def _batch_norm(i, m):
    if not m.track_running_stats or m.running_mean is None:
        raise ValueError(f"module {i} ({type(m).__name__}): needs running statistics "
                         "(track_running_stats=True); mcdrop serves the eval-mode normalisation")
    n = m.num_features
    weight = m.weight if m.affine else torch.ones(n)
    bias = m.bias if m.affine else torch.zeros(n)
    return {"type": "batch_norm", "eps": float(m.eps),
            "tensors": {"weight": weight, "bias": bias, "running_mean": m.running_mean,
                        "running_var": m.running_var}}


def layer_list_of(module):
    """The format v2 layer list of `module` (dicts as write_layer_list takes),
    or raises ValueError naming the first module that cannot be represented."""
    named = _named(module)
    if not named:
        raise ValueError(f"{type(module).__name__} has no child modules to export")
    layers = []
    for i, m in named:
        t = type(m)
        if t is nn.Dropout:
            layers.append({"type": "dropout", "p": float(m.p)})
        elif t is nn.Dropout2d:
            layers.append({"type": "dropout2d", "p": float(m.p)})
        elif t is nn.Linear:
            tensors = {"weight": m.weight}
            if m.bias is not None:
                tensors["bias"] = m.bias
            layers.append({"type": "dense", "tensors": tensors})
        elif t is nn.Conv2d:
            layers.append(_conv(i, m))
        elif t in (nn.MaxPool2d, nn.AvgPool2d):
            layers.append(_pool(i, m))
        elif t is nn.Flatten:
            if m.start_dim != 1 or m.end_dim != -1:
                raise ValueError(f"module {i} (Flatten): only start_dim=1, end_dim=-1 is supported")
            layers.append({"type": "flatten"})
        elif t in (nn.BatchNorm1d, nn.BatchNorm2d):
            layers.append(_batch_norm(i, m))
        elif t is nn.LeakyReLU:
            layers.append({"type": "leaky_relu", "negative_slope": float(m.negative_slope)})
        elif isinstance(m, (nn.Softmax, nn.LogSoftmax)):
            raise _softmax_refusal(i, m)
        else:
            act = _activation_name(m)
            if act is None:
                raise ValueError(
                    f"module {i} ({t.__name__}) cannot be represented: mcdrop serves Conv2d, "
                    "MaxPool2d, AvgPool2d, Flatten, Linear, Dropout, Dropout2d, BatchNorm1d/2d, "
                    "ReLU, LeakyReLU, Tanh, Sigmoid, GELU and Identity")
            layers.append({"type": act})
    return layers


def export_torch(module, path, *, task, tau=None, input_shape=None, input_mean=None, input_std=None,
                 output_mean=None, output_std=None, name="", description="", default_samples=0,
                 format="auto"):
    """Writes `module` to `path`. tau: regression model precision in output
    units; input_shape: [C, H, W] for image models (tables: inferred from the
    first Linear); input_/output_ mean and std: standardisation the service
    applies (inputs (x - mean) / std, per element or, for images, per
    channel; outputs y * std + mean). format: "v1", "v2", or "auto" (v1
    when the network fits it, else v2). Returns the format written."""
    if format not in ("auto", "v1", "v2"):
        raise ValueError(f"format must be auto, v1 or v2, not {format!r}")
    if format == "v1" or (format == "auto" and input_shape is None):
        try:
            _export_v1(module, path, task=task, tau=tau, input_mean=input_mean, input_std=input_std,
                       output_mean=output_mean, output_std=output_std, name=name,
                       description=description, default_samples=default_samples)
            return "v1"
        except ValueError:
            if format == "v1":
                raise
    layers = layer_list_of(module)
    if input_shape is None:
        first = next((m for m in _flatten(module) if isinstance(m, (nn.Linear, nn.Conv2d))), None)
        if not isinstance(first, nn.Linear):
            raise ValueError("an image model needs input_shape=[C, H, W]")
        input_shape = [first.in_features]
    check_forward_is_sequence(module, input_shape)

    with torch.no_grad():
        write_layer_list(path, layers, input_shape=list(input_shape), task=task, tau=tau,
                         input_mean=_vec(input_mean), input_std=_vec(input_std),
                         output_mean=_vec(output_mean), output_std=_vec(output_std), name=name,
                         description=description, default_samples=default_samples,
                         extra_metadata={"exported_by": f"mcdrop.torch_export (torch {torch.__version__})"})
    return "v2"


def _export_v1(module, path, *, task, tau, input_mean, input_std, output_mean, output_std, name,
               description, default_samples):
    layers, rates, activation = layers_of(module)
    check_forward_is_sequence(module, [layers[0].in_features])

    with torch.no_grad():
        write_model(path, [(l.weight.detach().cpu().double().tolist(), l.bias.detach().cpu().double().tolist())
                           for l in layers],
                    task=task, activation=activation, dropout=rates, tau=tau,
                    input_mean=_vec(input_mean), input_std=_vec(input_std),
                    output_mean=_vec(output_mean), output_std=_vec(output_std), name=name,
                    description=description, default_samples=default_samples,
                    extra_metadata={"exported_by": f"mcdrop.torch_export (torch {torch.__version__})"})
