#!/usr/bin/python3
"""The paper's rotated-image experiment and an out-of-distribution table on
Fashion-MNIST, through a live mcdrop-server only (the Python client over
gRPC), for the bundled LeNet models.

  uncertainty.py --target localhost:50051 --models fashion_lenet,fashion_lenet_all \
      --digits ../shared/data/digits/digits.csv.gz --out docs/figures [--samples 100]

Writes OUT/fashion_rotation_<model>.dat (one test item rotated 0..180
degrees: MC mean probabilities of the leading classes, entropy, mutual
information, variation ratio, and the dropout-off softmax for contrast) and
prints markdown tables: accuracy, NLL and ECE on the clean test set, and the
AUROC of each uncertainty score for clean test items against the 8 x 8 digits
scaled to 28 x 28, uniform noise, and items rotated by 60 degrees or more."""
import argparse
import gzip
import os

import numpy as np

import mcdrop
from fashion_data import CLASSES, idx


def bilinear(img, sx, sy):
    """img sampled at float coordinates (sx, sy) (arrays); outside is 0."""
    h, w = img.shape
    x0, y0 = np.floor(sx).astype(int), np.floor(sy).astype(int)
    fx, fy = sx - x0, sy - y0
    out = np.zeros(sx.shape)
    for yy, wy in ((y0, 1 - fy), (y0 + 1, fy)):
        for xx, wx in ((x0, 1 - fx), (x0 + 1, fx)):
            ok = (xx >= 0) & (xx < w) & (yy >= 0) & (yy < h)
            out += np.where(ok, wx * wy * img[np.clip(yy, 0, h - 1), np.clip(xx, 0, w - 1)], 0.0)
    return out


def rotate(img, degrees):
    """Rotation about the centre (bilinear, outside 0)."""
    a = np.radians(degrees)
    h, w = img.shape
    y, x = np.mgrid[0:h, 0:w].astype(float)
    cy, cx = (h - 1) / 2, (w - 1) / 2
    dx, dy = x - cx, y - cy
    return bilinear(img, np.cos(a) * dx + np.sin(a) * dy + cx, -np.sin(a) * dx + np.cos(a) * dy + cy)


def digit_to_28(pixels):
    """An 8 x 8 digit (0..16) as a 28 x 28 image (0..255): scaled to 20 x 20
    and centred, as MNIST frames its digits."""
    img = np.asarray(pixels, float).reshape(8, 8) * (255.0 / 16.0)
    t = np.linspace(0, 7, 20)
    gy, gx = np.meshgrid(t, t, indexing="ij")
    out = np.zeros((28, 28))
    out[4:24, 4:24] = bilinear(img, gx, gy)
    return out


def auroc(in_scores, out_scores):
    """P(score of an out-of-distribution input > score of a clean one), ties 1/2."""
    s = np.concatenate([in_scores, out_scores])
    order = s.argsort(kind="mergesort")
    ranks = np.empty(len(s))
    sorted_s = s[order]
    i = 0
    while i < len(s):
        j = i
        while j < len(s) and sorted_s[j] == sorted_s[i]:
            j += 1
        ranks[order[i:j]] = (i + j + 1) / 2.0
        i = j
    n0, n1 = len(in_scores), len(out_scores)
    return (ranks[n0:].sum() - n1 * (n1 + 1) / 2) / (n0 * n1)


class Model:
    def __init__(self, client, name, samples):
        self.client, self.name, self.samples = client, name, samples

    def predict(self, images, deterministic=False, seed=1):
        parts = []
        for start in range(0, len(images), 200):
            x = np.asarray(images[start:start + 200], np.float32)[:, None]  # [B, 1, 28, 28]
            parts.append(self.client.predict(x, model=self.name, samples=self.samples,
                                             seed=seed + start, deterministic=deterministic))
        cat = lambda f: np.concatenate([getattr(p, f) for p in parts])  # noqa: E731
        return {"p": cat("probabilities"), "h": cat("entropy"), "mi": cat("mutual_information"),
                "vr": cat("variation_ratio")}


def quality(p, y):
    pred = p.argmax(1)
    nll = -np.mean(np.log(np.maximum(p[np.arange(len(y)), y], 1e-12)))
    conf = p.max(1)
    ece = 0.0
    for lo in np.linspace(0, 1, 16)[:-1]:
        sel = (conf > lo) & (conf <= lo + 1 / 15)
        if sel.any():
            ece += sel.mean() * abs((pred[sel] == y[sel]).mean() - conf[sel].mean())
    return (pred == y).mean(), nll, ece


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--target", required=True)
    ap.add_argument("--models", default="fashion_lenet,fashion_lenet_all")
    ap.add_argument("--digits", default="../shared/data/digits/digits.csv.gz")
    ap.add_argument("--out", default="docs/figures")
    ap.add_argument("--samples", type=int, default=100)
    ap.add_argument("--n", type=int, default=2000,
                    help="clean test items in the AUROC table (out-of-distribution sets: n / 2 each)")
    ap.add_argument("--n_quality", type=int, default=10000,
                    help="test items for accuracy, NLL and ECE")
    ap.add_argument("--item", type=int, default=0, help="test item rotated for the figure")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    client = mcdrop.Client(args.target, timeout=600)
    x = idx("t10k-images-idx3-ubyte.gz").astype(float)
    y = idx("t10k-labels-idx1-ubyte.gz").astype(int)
    rng = np.random.default_rng(0)
    with gzip.open(args.digits, "rt") as f:
        digit_rows = [list(map(float, line.split(",")[:64])) for line in f if line.strip()]
    m = args.n // 2
    sets = {
        "8x8 digits scaled to 28x28": np.stack([digit_to_28(r) for r in digit_rows[:m]]),
        "uniform noise": rng.uniform(0, 255, size=(m, 28, 28)),
        "rotated 60-180 degrees": np.stack([rotate(img, a) for img, a in
                                            zip(x[args.n:args.n + m], rng.uniform(60, 180, m))]),
    }
    angles = list(range(0, 181, 10))
    for name in args.models.split(","):
        model = Model(client, name, args.samples)
        # The rotated item.
        rot = np.stack([rotate(x[args.item], a) for a in angles])
        mc, det = model.predict(rot), model.predict(rot, deterministic=True)
        lead = list(np.argsort(-mc["p"].max(0))[:3])
        path = os.path.join(args.out, f"fashion_rotation_{name}.dat")
        with open(path, "w") as f:
            f.write(f"# test item {args.item} (label {CLASSES[y[args.item]]}) rotated; model {name}, "
                    f"T = {args.samples}; leading classes {[CLASSES[c] for c in lead]}\n")
            label = lambda c: CLASSES[c].replace("/", "-").replace(" ", "-")  # noqa: E731
            f.write("degrees " + " ".join(f"MC:{label(c)} softmax:{label(c)}" for c in lead)
                    + " entropy mutual_information variation_ratio\n")
            for i, a in enumerate(angles):
                cols = " ".join(f"{mc['p'][i, c]:.4f} {det['p'][i, c]:.4f}" for c in lead)
                f.write(f"{a} {cols} {mc['h'][i]:.4f} {mc['mi'][i]:.4f} {mc['vr'][i]:.4f}\n")
        print(f"wrote {path}")
        # Clean test quality, on the first n_quality test items.
        nq = args.n_quality
        mc_q, det_q = model.predict(x[:nq]), model.predict(x[:nq], deterministic=True)
        acc, nll, ece = quality(mc_q["p"], y[:nq])
        dacc, dnll, dece = quality(det_q["p"], y[:nq])
        print(f"\n### {name}\n\ntest items 0..{nq - 1}: MC (T = {args.samples}) accuracy "
              f"{acc:.4f}, NLL {nll:.4f}, ECE {ece:.4f}; dropout off accuracy {dacc:.4f}, "
              f"NLL {dnll:.4f}, ECE {dece:.4f}\n")
        mc_c = {k: v[:args.n] for k, v in mc_q.items()}
        det_c = {k: v[:args.n] for k, v in det_q.items()}
        print("| score (higher = more uncertain) | " + " | ".join(f"AUROC: clean vs {k}" for k in sets) + " |")
        print("|---|" + "---|" * len(sets))
        outs = {k: (model.predict(v), model.predict(v, deterministic=True)) for k, v in sets.items()}
        scores = {
            "mutual information (MC)": lambda mcr, dr: mcr["mi"],
            "predictive entropy (MC)": lambda mcr, dr: mcr["h"],
            "variation ratio (MC)": lambda mcr, dr: mcr["vr"],
            "1 - max softmax (deterministic, dropout off)": lambda mcr, dr: 1 - dr["p"].max(1),
        }
        for label, f in scores.items():
            cells = [f"{auroc(f(mc_c, det_c), f(*outs[k])):.3f}" for k in sets]
            print(f"| {label} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
