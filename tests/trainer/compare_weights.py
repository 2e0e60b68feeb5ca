#!/usr/bin/python3
"""Compares the trainable parameters of two convnet weights files.

usage: compare_weights.py A.h5 B.h5 RTOL [same|differ]
Exits 0 when every parameter (running statistics and counters excluded: BN
statistics are per replica) has max|a - b| <= RTOL * max|a| + 1e-7, or, with
`differ`, when at least one does not (a check that the comparison can fail).
"""
import sys

import h5py
import numpy as np

a_path, b_path, rtol = sys.argv[1], sys.argv[2], float(sys.argv[3])
expect = sys.argv[4] if len(sys.argv) > 4 else "same"
worst_name, worst = None, 0.0
with h5py.File(a_path, "r") as a, h5py.File(b_path, "r") as b:
    keys = sorted(a["model"].keys())
    assert keys == sorted(b["model"].keys()), "different state_dict keys"
    for key in keys:
        if "running_" in key or "num_batches" in key:
            continue
        x, y = np.asarray(a["model"][key]), np.asarray(b["model"][key])
        error = float(np.max(np.abs(x - y)) / (np.max(np.abs(x)) + 1e-7))
        if error > worst:
            worst_name, worst = key, error
print(f"largest relative difference {worst:.3g} in {worst_name}")
same = worst <= rtol
sys.exit(0 if same == (expect == "same") else 1)
