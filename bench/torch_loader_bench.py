#!/usr/bin/python3
"""The PyTorch peer of `convnet bench-data`: torchvision's transforms in one
process (num_workers=0, i.e. one loader thread), images/s.

usage: bench/torch_loader_bench.py jpeg FOLDER [N]    ImageFolder + RandomResizedCrop(224), flip,
                                                      ToTensor, Normalize (PIL decode)
       bench/torch_loader_bench.py cifar CIFAR_DIR [N] RandomCrop(32, padding=4), flip, ToTensor,
                                                      Normalize on the binary batches
"""
import json
import os
import sys
import time

import numpy as np
import torch
import torchvision
import torchvision.transforms as T

torch.set_num_threads(1)
kind, path = sys.argv[1], sys.argv[2]
count = int(sys.argv[3]) if len(sys.argv) > 3 else (640 if kind == "jpeg" else 20000)
normalize = T.Normalize([0.5, 0.5, 0.5], [0.25, 0.25, 0.25])
if kind == "jpeg":
    dataset = torchvision.datasets.ImageFolder(
        path, T.Compose([T.RandomResizedCrop(224), T.RandomHorizontalFlip(), T.ToTensor(), normalize]))
else:
    from PIL import Image
    records = np.fromfile(os.path.join(path, "data_batch_1.bin"), np.uint8).reshape(-1, 3073)
    images = records[:, 1:].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    transform = T.Compose([T.RandomCrop(32, padding=4), T.RandomHorizontalFlip(), T.ToTensor(), normalize])

    class Cifar(torch.utils.data.Dataset):
        def __len__(self):
            return len(images)

        def __getitem__(self, i):
            return transform(Image.fromarray(images[i])), int(records[i, 0])
    dataset = Cifar()
loader = torch.utils.data.DataLoader(dataset, batch_size=32, shuffle=True, num_workers=0)
done, start = 0, None
while done < count:
    for x, _ in loader:
        if start is None:
            start = time.perf_counter()
            continue
        done += x.shape[0]
        if done >= count:
            break
rate = done / (time.perf_counter() - start)
print(json.dumps({"peer": "torchvision", "kind": kind, "img_per_s_per_thread": round(rate, 1)}))
