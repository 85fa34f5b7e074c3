"""Fashion-MNIST as Debian's dataset-fashion-mnist ships it (IDX files under
/usr/share/datasets/fashion-mnist/, or $FASHION_MNIST)."""
import gzip
import os
import struct

import numpy as np

DATA = os.environ.get("FASHION_MNIST", "/usr/share/datasets/fashion-mnist")
CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
           "Sneaker", "Bag", "Ankle boot"]


def idx(name):
    """The array in IDX file `name` (e.g. "t10k-images-idx3-ubyte.gz")."""
    with gzip.open(os.path.join(DATA, name)) as f:
        magic, = struct.unpack(">I", f.read(4))
        dims = struct.unpack(">" + "I" * (magic & 0xFF), f.read(4 * (magic & 0xFF)))
        return np.frombuffer(f.read(), dtype=np.uint8).reshape(dims)
