#!/usr/bin/python3
"""Makes the loader benchmark inputs (bench/README.md) under OUT_DIR:

  cifar-10-batches-bin/  CIFAR-10 binary batches of random pixels (50,000 train images;
                         the loader's cost does not depend on the content)
  jpeg/                  N JPEGs of 500x375 (the ImageNet average) in 10 class folders, quality
                         90, smooth random content plus noise so files are photo-sized (~60-120 KB)

usage: bench/make_bench_data.py OUT_DIR [N_JPEG]
"""
import os
import sys

import numpy as np
from PIL import Image


def main():
    out = sys.argv[1]
    count = int(sys.argv[2]) if len(sys.argv) > 2 else 400
    rng = np.random.default_rng(0)
    cifar = os.path.join(out, "cifar-10-batches-bin")
    os.makedirs(cifar, exist_ok=True)
    for i in range(1, 6):
        records = rng.integers(0, 256, size=(10000, 3073), dtype=np.uint8)
        records[:, 0] %= 10
        records.tofile(os.path.join(cifar, f"data_batch_{i}.bin"))
    yy, xx = np.mgrid[0:375, 0:500].astype(np.float32)
    for n in range(count):
        image = np.zeros((375, 500, 3), np.float32)
        for c in range(3):
            for _ in range(4):
                fy, fx, phase = rng.uniform(0.002, 0.05, 2).tolist() + [rng.uniform(0, 6.3)]
                image[..., c] += 30 * np.sin(fy * yy + fx * xx + phase)
        image += 128 + rng.normal(0, 6, image.shape)
        folder = os.path.join(out, "jpeg", f"class{n % 10}")
        os.makedirs(folder, exist_ok=True)
        Image.fromarray(np.clip(image, 0, 255).astype(np.uint8)).save(
            os.path.join(folder, f"{n:05d}.jpg"), quality=90)


if __name__ == "__main__":
    main()
