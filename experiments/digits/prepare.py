#!/usr/bin/python3
"""Splits the digits table (gzipped CSV, 1797 rows of 64 pixel intensities
0..16 then the label 0..9: the UCI optdigits test set as shipped by Debian's
scikit-learn) into the fixed train/test split of mcdrop's digits model: row i
(0-based, file order) is a test row when i % 4 == 3, a training row otherwise
(1348 train, 449 test).
  prepare.py DIGITS_CSV_GZ OUT_DIR"""
import gzip
import os
import sys

src, out = sys.argv[1], sys.argv[2]
os.makedirs(out, exist_ok=True)
rows = [l.strip() for l in gzip.open(src, "rt") if l.strip()]
with open(os.path.join(out, "train.csv"), "w") as tr, open(os.path.join(out, "test.csv"), "w") as te:
    for i, row in enumerate(rows):
        (te if i % 4 == 3 else tr).write(row + "\n")
print(f"{len(rows)} rows: {sum(1 for i in range(len(rows)) if i % 4 != 3)} train, "
      f"{sum(1 for i in range(len(rows)) if i % 4 == 3)} test", file=sys.stderr)
