#!/usr/bin/python3
"""The peer of bench/conv_bench.cpp: one conv layer's forward, backward-data and
backward-weights in PyTorch (Debian's python3-torch, oneDNN 2.6 inside).

usage: torch_conv_bench.py N C_IN C_OUT HW KERNEL STRIDE ITERS [bf16]
prints: torch_conv N C_in C_out HW K S median_ms_per_iter
bf16: under torch.autocast("cpu", torch.bfloat16) with the layer and the
input channels-last (oneDNN's AMX kernels where the CPU has AMX).
"""
import statistics
import sys
import time

import torch

n, c_in, c_out, hw, k, s, iters = map(int, sys.argv[1:8])
bf16 = len(sys.argv) > 8 and sys.argv[8] == "bf16"
torch.manual_seed(1)
memory_format = torch.channels_last if bf16 else torch.contiguous_format
x = torch.rand(n, c_in, hw, hw).contiguous(memory_format=memory_format).requires_grad_()
conv = torch.nn.Conv2d(c_in, c_out, k, stride=s, padding=k // 2, bias=False)
conv = conv.to(memory_format=memory_format)
ms = []
for i in range(iters + 1):
    start = time.perf_counter()
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        y = conv(x)
    y.backward(torch.ones_like(y))
    ms.append((time.perf_counter() - start) * 1e3)
print("torch_conv", n, c_in, c_out, hw, k, s, "%.3f" % statistics.median(ms[1:]))
