"""mcdrop: a Python client for mcdrop-server, and exporters that turn PyTorch
and Keras dropout networks into mcdrop model files.

    import numpy as np, mcdrop
    client = mcdrop.Client("localhost:50051")
    p = client.predict(np.array([[540, 0, 0, 162, 2.5, 1040, 676, 28]]), samples=1000, seed=7,
                       intervals=(0.9,))
    p.mean, p.std, p.intervals[0.9]
"""
import pkgutil

# The generated stubs (mcdrop/v1/*_pb2*.py) live in the build tree
# (build/python); let them join this package when that directory is on
# sys.path too.
__path__ = pkgutil.extend_path(__path__, __name__)

from .safetensors import write_layer_list, write_model  # noqa: F401,E402

try:  # the client needs grpcio and the generated stubs; the exporters do not
    from .client import Client, Prediction  # noqa: F401
except ImportError as e:  # pragma: no cover
    _client_error = e
