#!/usr/bin/python3
"""Compares the /model datasets of two convnet weights files.

usage: compare_weights.py A.h5 B.h5 RTOL [same|differ] [--parameters-only]
Exits 0 when every dataset (parameters, BN running statistics, and the
num_batches_tracked counters, which must be equal) has
max|a - b| <= RTOL * max|a| + 1e-7, or, with `differ`, when at least one does
not (a check that the comparison can fail). --parameters-only leaves out the
running statistics and counters.
"""
import sys

import h5py
import numpy as np

args = [a for a in sys.argv[1:] if a != "--parameters-only"]
parameters_only = len(args) < len(sys.argv) - 1
a_path, b_path, rtol = args[0], args[1], float(args[2])
expect = args[3] if len(args) > 3 else "same"
worst_name, worst = None, 0.0
with h5py.File(a_path, "r") as a, h5py.File(b_path, "r") as b:
    keys = sorted(a["model"].keys())
    assert keys == sorted(b["model"].keys()), "different state_dict keys"
    for key in keys:
        if parameters_only and ("running_" in key or "num_batches" in key):
            continue
        x, y = np.asarray(a["model"][key]), np.asarray(b["model"][key])
        if "num_batches" in key:
            error = 0.0 if np.array_equal(x, y) else float("inf")
        else:
            x, y = x.astype(np.float64), y.astype(np.float64)
            error = float(np.max(np.abs(x - y)) / (np.max(np.abs(x)) + 1e-7))
        if error > worst:
            worst_name, worst = key, error
print(f"largest relative difference {worst:.3g} in {worst_name}")
same = worst <= rtol
sys.exit(0 if same == (expect == "same") else 1)
