#!/usr/bin/python3
"""The rotated-digit experiment of Gal & Ghahramani on 8x8 digits, run against
a live mcdrop-server through mcdrop-client, plus the noise experiment and an
out-of-distribution detection table.

  uncertainty.py --client build/client/mcdrop-client --target localhost:50051 \
      --test DIR/test.csv --out docs/figures [--samples 100]

Writes OUT/digits_rotation_one.dat (one digit), OUT/digits_rotation_all.dat and
OUT/digits_noise_all.dat (averages over the test set), and prints the AUROC
table in markdown."""
import argparse
import json
import math
import os
import random
import subprocess
import sys


def rotate(img, degrees):
    """Bilinear rotation of an 8x8 image about its centre; outside is 0."""
    a = math.radians(degrees)
    c, s = math.cos(a), math.sin(a)
    out = [0.0] * 64
    for y in range(8):
        for x in range(8):
            # Inverse map: the source pixel that lands on (x, y).
            dx, dy = x - 3.5, y - 3.5
            sx, sy = c * dx + s * dy + 3.5, -s * dx + c * dy + 3.5
            x0, y0 = math.floor(sx), math.floor(sy)
            fx, fy = sx - x0, sy - y0
            v = 0.0
            for yy, wy in ((y0, 1 - fy), (y0 + 1, fy)):
                for xx, wx in ((x0, 1 - fx), (x0 + 1, fx)):
                    if 0 <= xx < 8 and 0 <= yy < 8:
                        v += wx * wy * img[yy * 8 + xx]
            out[y * 8 + x] = v
    return out


def add_noise(img, sigma, rng):
    return [min(16.0, max(0.0, v + rng.gauss(0, sigma))) for v in img]


class Server:
    def __init__(self, client, target, model, samples):
        self.client, self.target, self.model, self.samples = client, target, model, samples

    def predict(self, images, deterministic=False, seed=1):
        rows = []
        for start in range(0, len(images), 500):
            chunk = images[start:start + 500]
            csv = "\n".join(",".join(f"{v:.4f}" for v in img) for img in chunk)
            cmd = [self.client, "predict", "--target", self.target, "--model", self.model,
                   "--file", "-", "--json", "--seed", str(seed + start)]
            cmd += ["--deterministic"] if deterministic else ["--samples", str(self.samples)]
            out = subprocess.run(cmd, input=csv, capture_output=True, text=True, check=True).stdout
            for r in json.loads(out)["rows"]:
                c = r["classification"]
                rows.append({"p": c["probabilities"], "cls": c.get("predicted_class", 0),
                             "h": c.get("entropy", 0.0), "mi": c.get("mutual_information", 0.0),
                             "vr": c.get("variation_ratio", 0.0)})
        return rows


def auroc(in_scores, out_scores):
    """P(score of an OOD input > score of an in-distribution input), ties 1/2."""
    pairs = sorted([(s, 0) for s in in_scores] + [(s, 1) for s in out_scores])
    rank, i, total = 0.0, 0, 0.0
    ranks = [0.0] * len(pairs)
    while i < len(pairs):
        j = i
        while j < len(pairs) and pairs[j][0] == pairs[i][0]:
            j += 1
        for k in range(i, j):
            ranks[k] = (i + j + 1) / 2.0
        i = j
    r_out = sum(r for r, (_, lab) in zip(ranks, pairs) if lab == 1)
    n1, n0 = len(out_scores), len(in_scores)
    return (r_out - n1 * (n1 + 1) / 2) / (n1 * n0)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--client", required=True)
    ap.add_argument("--target", default="localhost:50051")
    ap.add_argument("--model", default="digits")
    ap.add_argument("--test", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--samples", type=int, default=100)
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    srv = Server(args.client, args.target, args.model, args.samples)
    test = [[float(v) for v in l.strip().split(",")] for l in open(args.test) if l.strip()]
    images = [t[:64] for t in test]
    labels = [int(t[64]) for t in test]
    angles = list(range(0, 181, 15))

    # One digit, as in the paper's figure: the first test "1".
    one = images[labels.index(1)]
    rot = [rotate(one, a) for a in angles]
    mc, det = srv.predict(rot), srv.predict(rot, deterministic=True)
    top = sorted(range(10), key=lambda k: -max(r["p"][k] for r in mc))[:3]
    with open(os.path.join(args.out, "digits_rotation_one.dat"), "w") as f:
        # A header line gnuplot reads as column titles (columnhead).
        f.write("angle " + " ".join(f"MC-p({k})" for k in top) + " " +
                " ".join(f"dropout-off-p({k})" for k in top) + " entropy mutual-information variation-ratio\n")
        for a, m, d in zip(angles, mc, det):
            f.write(f"{a} " + " ".join(f"{m['p'][k]:.5f}" for k in top) + " " +
                    " ".join(f"{d['p'][k]:.5f}" for k in top) +
                    f" {m['h']:.5f} {m['mi']:.5f} {m['vr']:.5f}\n")
    print(f"one digit: classes plotted {top}", file=sys.stderr)

    # Every test digit at every angle.
    with open(os.path.join(args.out, "digits_rotation_all.dat"), "w") as f:
        f.write("# angle accuracy mean_entropy mean_mutual_information mean_variation_ratio "
                "mean_det_max_softmax mean_mc_max_prob\n")
        for a in angles:
            rimgs = [rotate(img, a) for img in images]
            m, d = srv.predict(rimgs, seed=1000 + a), srv.predict(rimgs, deterministic=True)
            acc = sum(r["cls"] == y for r, y in zip(m, labels)) / len(labels)
            f.write(f"{a} {acc:.4f} {sum(r['h'] for r in m) / len(m):.5f} "
                    f"{sum(r['mi'] for r in m) / len(m):.5f} {sum(r['vr'] for r in m) / len(m):.5f} "
                    f"{sum(max(r['p']) for r in d) / len(d):.5f} {sum(max(r['p']) for r in m) / len(m):.5f}\n")
            print(f"angle {a}: accuracy {acc:.3f}", file=sys.stderr)

    # Growing noise on every test digit.
    rng = random.Random(7)
    with open(os.path.join(args.out, "digits_noise_all.dat"), "w") as f:
        f.write("# sigma accuracy mean_entropy mean_mutual_information mean_variation_ratio "
                "mean_det_max_softmax mean_mc_max_prob\n")
        for sigma in (0, 1, 2, 4, 6, 8, 12, 16):
            nimgs = [add_noise(img, sigma, rng) for img in images]
            m, d = srv.predict(nimgs, seed=5000 + sigma), srv.predict(nimgs, deterministic=True)
            acc = sum(r["cls"] == y for r, y in zip(m, labels)) / len(labels)
            f.write(f"{sigma} {acc:.4f} {sum(r['h'] for r in m) / len(m):.5f} "
                    f"{sum(r['mi'] for r in m) / len(m):.5f} {sum(r['vr'] for r in m) / len(m):.5f} "
                    f"{sum(max(r['p']) for r in d) / len(d):.5f} {sum(max(r['p']) for r in m) / len(m):.5f}\n")

    # Out-of-distribution detection: clean test digits against each digit
    # rotated by a random angle in [60, 180], and against pure noise images.
    rng = random.Random(11)
    clean_mc, clean_det = srv.predict(images, seed=9000), srv.predict(images, deterministic=True)
    rotated = [rotate(img, rng.uniform(60, 180)) for img in images]
    noise = [[rng.uniform(0, 16) for _ in range(64)] for _ in images]
    sets = {"rotated >= 60 deg": rotated, "uniform noise images": noise}
    print("| score (higher = more uncertain) | " + " | ".join(f"AUROC: clean vs {k}" for k in sets) + " |")
    print("|---|" + "---|" * len(sets))
    scores = {
        "predictive entropy (MC)": lambda m, d: m["h"],
        "mutual information (MC)": lambda m, d: m["mi"],
        "variation ratio (MC)": lambda m, d: m["vr"],
        "1 - max mean probability (MC)": lambda m, d: 1 - max(m["p"]),
        "1 - max softmax (deterministic, dropout off)": lambda m, d: 1 - max(d["p"]),
    }
    results = {}
    for name, ood in sets.items():
        m, d = srv.predict(ood, seed=9500), srv.predict(ood, deterministic=True)
        results[name] = (m, d)
    for sname, f in scores.items():
        cells = []
        for name in sets:
            m, d = results[name]
            cells.append(f"{auroc([f(a, b) for a, b in zip(clean_mc, clean_det)], [f(a, b) for a, b in zip(m, d)]):.3f}")
        print(f"| {sname} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
