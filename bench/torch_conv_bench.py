#!/usr/bin/python3
"""The peer of bench/conv_bench.cpp: one conv layer's forward, backward-data and
backward-weights in PyTorch (Debian's python3-torch, oneDNN 2.6 inside).

usage: torch_conv_bench.py N C_IN C_OUT HW KERNEL STRIDE ITERS
prints: torch_conv N C_in C_out HW K S median_ms_per_iter
"""
import statistics
import sys
import time

import torch

n, c_in, c_out, hw, k, s, iters = map(int, sys.argv[1:8])
torch.manual_seed(1)
x = torch.rand(n, c_in, hw, hw, requires_grad=True)
conv = torch.nn.Conv2d(c_in, c_out, k, stride=s, padding=k // 2, bias=False)
ms = []
for i in range(iters + 1):
    start = time.perf_counter()
    y = conv(x)
    y.backward(torch.ones_like(y))
    ms.append((time.perf_counter() - start) * 1e3)
print("torch_conv", n, c_in, c_out, hw, k, s, "%.3f" % statistics.median(ms[1:]))
