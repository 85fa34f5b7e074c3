#!/usr/bin/python3
"""Trains the paper's LeNet and its all-dropout variant on Fashion-MNIST with
PyTorch (Debian's python3-torch), fixed seeds, and exports both with mcdrop's
own exporter (format v2). Not part of CI; the models it writes are bundled.

  PYTHONPATH=client/python experiments/fashion/train.py models/   # ~10 min on 2 cores

LeNet as in Gal & Ghahramani's rotated-digit experiment (Caffe's LeNet):
conv 20@5x5 -> max-pool 2 -> conv 50@5x5 -> max-pool 2 -> dense 500 + ReLU ->
dropout 0.5 -> dense 10. The "all dropout" variant also drops (p = 0.5) after
each convolution block. Weight decay 5e-4 (the L2 term of the dropout
objective), SGD with momentum 0.9, learning rate 0.01 with the inverse decay
of Caffe's LeNet solver, batch 64. Inputs: raw pixel values 0..255; the model
standardises them with the training set's mean and std (one channel)."""
import os
import sys
import time

import numpy as np
import torch
from torch import nn

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "client", "python"))
from mcdrop.torch_export import export_torch  # noqa: E402

sys.path.insert(0, os.path.dirname(__file__))
from fashion_data import idx  # noqa: E402


def lenet(all_dropout):
    drop = (lambda: [nn.Dropout(0.5)]) if all_dropout else (lambda: [])
    return nn.Sequential(nn.Conv2d(1, 20, 5), nn.MaxPool2d(2), *drop(),
                         nn.Conv2d(20, 50, 5), nn.MaxPool2d(2), *drop(),
                         nn.Flatten(), nn.Linear(800, 500), nn.ReLU(), nn.Dropout(0.5),
                         nn.Linear(500, 10))


def main(out_dir, epochs=int(os.environ.get("EPOCHS", "12"))):
    torch.set_num_threads(os.cpu_count())
    x_train = idx("train-images-idx3-ubyte.gz").astype(np.float32)
    y_train = idx("train-labels-idx1-ubyte.gz").astype(np.int64)
    x_test = idx("t10k-images-idx3-ubyte.gz").astype(np.float32)
    y_test = idx("t10k-labels-idx1-ubyte.gz").astype(np.int64)
    mean, std = float(x_train.mean()), float(x_train.std())
    xt = torch.from_numpy((x_train - mean) / std)[:, None]
    yt = torch.from_numpy(y_train)
    xs = torch.from_numpy((x_test - mean) / std)[:, None]
    for variant, all_dropout in (("fashion_lenet", False), ("fashion_lenet_all", True)):
        torch.manual_seed(2016)
        net = lenet(all_dropout)
        opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
        # Caffe's "inv" policy: lr = base * (1 + gamma * iter) ^ -power
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda it: (1 + 1e-4 * it) ** -0.75)
        gen = torch.Generator().manual_seed(7)
        start = time.time()
        for epoch in range(epochs):
            net.train()
            order = torch.randperm(len(xt), generator=gen)
            for b in range(0, len(xt), 64):
                i = order[b:b + 64]
                loss = nn.functional.cross_entropy(net(xt[i]), yt[i])
                opt.zero_grad()
                loss.backward()
                opt.step()
                sched.step()
            net.eval()
            with torch.no_grad():
                acc = (net(xs).argmax(1).numpy() == y_test).mean()
            print(f"{variant} epoch {epoch + 1}: loss {loss.item():.3f}, "
                  f"test accuracy (dropout off) {acc:.4f}, {time.time() - start:.0f} s", flush=True)
        desc = ("Fashion-MNIST LeNet (conv 20@5x5, max-pool 2, conv 50@5x5, max-pool 2, dense 500 ReLU, "
                + ("dropout 0.5 after each block and before the last layer" if all_dropout
                   else "dropout 0.5, dense 10") + f"); {epochs} epochs SGD, weight decay 5e-4, seed 2016; "
                f"takes raw pixels 0..255 as [1, 28, 28]; test accuracy with dropout off {acc:.4f} "
                "(experiments/fashion/train.py)")
        path = os.path.join(out_dir, variant + ".safetensors")
        export_torch(net, path, task="classification", input_shape=[1, 28, 28], input_mean=[mean],
                     input_std=[std], name=variant, description=desc, default_samples=100)
        print(f"wrote {path}", flush=True)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "models")
