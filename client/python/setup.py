"""pip install ./client/python -- the mcdrop Python package: the mcdrop.v1
gRPC client, the Open Inference Protocol clients (HTTP and gRPC), and the
PyTorch / Keras / ONNX exporters, with the generated gRPC stubs included.

A setup.py without a pyproject.toml on purpose: pip then builds with the
setuptools already installed (Debian's python3-setuptools) instead of
fetching one into an isolated environment, so the install works offline.
On Debian 12 install into a virtual environment that sees Debian's grpcio
and NumPy:
    python3 -m venv --system-site-packages .venv
    .venv/bin/pip install ./client/python
"""
from setuptools import setup

setup(
    name="mcdrop",
    version="0.18.0",
    description="Client and model exporters for mcdrop-server (MC-dropout serving)",
    packages=["mcdrop", "mcdrop.v1", "mcdrop.inference"],
    python_requires=">=3.9",
    install_requires=["numpy", "grpcio", "protobuf>=3.20"],
    extras_require={"torch": ["torch"], "keras": ["h5py"], "onnx": ["onnx"]},
    entry_points={"console_scripts": [
        "mcdrop-oip = mcdrop.oip:main",
        "mcdrop-import-onnx = mcdrop.onnx_import:main",
    ]},
)
