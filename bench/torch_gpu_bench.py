#!/usr/bin/python3
"""GPU peer: PyTorch + torchvision training-step throughput on one GPU.
Usage: torch_gpu_bench.py MODEL BATCH SIZE STEPS PRECISION
PRECISION: fp32 (strict, TF32 off, NCHW, as convnet --precision fp32) or
bf16 (autocast bfloat16, channels_last, TF32 on).
Prints one JSON line: model, batch_size, image_size, precision, img_per_s
(median step), peak_mib (torch.cuda.max_memory_allocated)."""
import json, sys, time

import torch
import torchvision

model_name, batch, size, steps, precision = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
torch.backends.cudnn.benchmark = True
strict = precision == "fp32"
torch.backends.cudnn.allow_tf32 = not strict
torch.backends.cuda.matmul.allow_tf32 = not strict
torch.manual_seed(0)
dev = torch.device("cuda")
m = getattr(torchvision.models, model_name)(num_classes=1000).to(dev)
fmt = torch.contiguous_format if strict else torch.channels_last
m = m.to(memory_format=fmt)
opt = torch.optim.SGD(m.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
x = torch.randn(batch, 3, size, size, device=dev).to(memory_format=fmt)
y = torch.randint(0, 1000, (batch,), device=dev)
lossf = torch.nn.CrossEntropyLoss()


def step():
    opt.zero_grad(set_to_none=True)
    with torch.autocast("cuda", dtype=torch.bfloat16, enabled=not strict):
        loss = lossf(m(x), y)
    loss.backward()
    opt.step()


for _ in range(3):
    step()
torch.cuda.synchronize()
times = []
for _ in range(steps):
    t = time.perf_counter()
    step()
    torch.cuda.synchronize()
    times.append(time.perf_counter() - t)
times.sort()
print(json.dumps({"model": model_name, "batch_size": batch, "image_size": size, "precision": precision,
                  "img_per_s": round(batch / times[len(times) // 2], 1),
                  "peak_mib": torch.cuda.max_memory_allocated() >> 20}))
