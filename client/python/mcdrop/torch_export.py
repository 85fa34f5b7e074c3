"""Exports a PyTorch dropout network to an mcdrop model file.

Supported: an nn.Sequential (nested Sequentials are flattened), or any module
whose children, in registration order, form the same pattern:

    [Dropout(p0)] Linear [act] [Dropout(p1)] Linear [act] ... [Dropout(pL)] Linear

with one activation type between the layers (ReLU, Tanh, Sigmoid, GELU with
approximate='none', Identity) and none after the last Linear (the service
applies softmax itself for classifiers). A Dropout right before a Linear sets
that layer's drop rate; a Linear without one gets rate 0. Anything else is
refused with a message naming the module."""
import torch
from torch import nn

from .safetensors import write_model

_ACTIVATIONS = {nn.ReLU: "relu", nn.Tanh: "tanh", nn.Sigmoid: "sigmoid", nn.Identity: "identity"}


def _flatten(module):
    out = []
    for child in module.children():
        if isinstance(child, nn.Sequential):
            out.extend(_flatten(child))
        else:
            out.append(child)
    return out


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
    mods = _flatten(module)
    if not mods:
        raise ValueError(f"{type(module).__name__} has no child modules to export")
    layers, rates, acts = [], [], set()
    pending = 0.0
    for i, m in enumerate(mods):
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
            raise ValueError(f"module {i} ({type(m).__name__}): remove output activations, mcdrop "
                             "applies softmax for classification itself (export the logits)")
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


def export_torch(module, path, *, task, tau=None, input_mean=None, input_std=None,
                 output_mean=None, output_std=None, name="", description="", default_samples=0):
    """Writes `module` to `path`. tau: regression model precision in output
    units; input_/output_ mean and std: standardisation the service applies
    (inputs (x - mean) / std, outputs y * std + mean)."""
    layers, rates, activation = layers_of(module)

    def vec(v):
        return None if v is None else [float(x) for x in torch.as_tensor(v).flatten().tolist()]

    with torch.no_grad():
        write_model(path, [(l.weight.detach().cpu().double().tolist(), l.bias.detach().cpu().double().tolist())
                           for l in layers],
                    task=task, activation=activation, dropout=rates, tau=tau,
                    input_mean=vec(input_mean), input_std=vec(input_std),
                    output_mean=vec(output_mean), output_std=vec(output_std), name=name,
                    description=description, default_samples=default_samples,
                    extra_metadata={"exported_by": f"mcdrop.torch_export (torch {torch.__version__})"})
