#!/usr/bin/python3
"""The CPU peer of `convnet bench` for every model of convnet's zoo, including
the families torchvision lacks (CIFAR ResNets, pre-activation, SE, CIFAR
DenseNet-BC): the PyTorch definitions of tests/models/reference_models.py
(same structure and parameter shapes as convnet's), trained in Debian's
python3-torch (oneDNN 2.6 inside), or in the current PyTorch from PyPI
(bench/install-pypi-peer.sh: oneDNN 3.x inside) when run with that interpreter.

A step is what `convnet bench` times: forward, softmax cross-entropy, backward,
SGD with momentum 0.9 and weight decay 1e-4, on random inputs, after WARMUP
untimed steps. `--memory-efficient` checkpoints each DenseNet layer's
concatenation + BN-ReLU + bottleneck (torch.utils.checkpoint, as torchvision's
memory_efficient=True), the PyTorch counterpart of convnet's shared buffers.
`--bf16` runs forward and loss under torch.autocast("cpu", torch.bfloat16):
PyTorch's CPU mixed precision (bf16 convolutions and matrix products, f32
weights and optimizer). `--channels-last` puts the model and the input in
torch.channels_last, what Intel's PyTorch guides recommend for bf16 on AMX
(oneDNN's AMX convolutions read channels-last).

usage: torch_zoo_bench.py MODEL BATCH [--image-size S] [--steps N] [--warmup W]
                          [--threads T] [--memory-efficient] [--bf16] [--channels-last]
prints one JSON line: model, batch, image_size, img_per_s (median step),
       peak_rss_mib, torch (version), precision, channels_last
"""
import argparse
import json
import os
import resource
import statistics
import sys
import time

import torch
import torch.utils.checkpoint

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "models"))
import reference_models  # noqa: E402


def checkpoint_dense_blocks(model):
    """Each dense layer keeps its inputs, not their concatenation: the
    concatenation, norm1-relu and the 1x1 bottleneck are recomputed in backward
    (torchvision's memory_efficient=True does the same for its DenseNets)."""

    def bottleneck(layer):
        def run(*features):
            return layer.conv1(torch.relu(layer.norm1(torch.cat(features, 1))))
        return run

    def efficient_forward(block):
        def forward(x):
            features = [x]
            for layer in block.values():
                y = torch.utils.checkpoint.checkpoint(bottleneck(layer), *features,
                                                      use_reentrant=False)
                if layer.conv2 is not None:
                    y = layer.conv2(torch.relu(layer.norm2(y)))
                features.append(y)
            return torch.cat(features, 1)
        return forward

    for module in model.modules():
        if isinstance(module, reference_models.DenseBlock):
            module.forward = efficient_forward(module)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("model")
    parser.add_argument("batch", type=int)
    parser.add_argument("--image-size", type=int, default=0)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--memory-efficient", action="store_true")
    parser.add_argument("--bf16", action="store_true")
    parser.add_argument("--channels-last", action="store_true")
    args = parser.parse_args()
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = reference_models.build(args.model)
    if args.memory_efficient:
        checkpoint_dense_blocks(model)
    size = args.image_size or reference_models.default_image_size(args.model)
    classes = reference_models.default_classes(args.model)
    x = torch.randn(args.batch, 3, size, size)
    y = torch.randint(0, classes, (args.batch,))
    if args.channels_last:
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    loss_fn = torch.nn.CrossEntropyLoss()
    seconds = []
    for i in range(args.warmup + args.steps):
        start = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.bf16):
            loss = loss_fn(model(x), y)
        loss.backward()
        optimizer.step()
        if i >= args.warmup:
            seconds.append(time.perf_counter() - start)
    print(json.dumps({
        "model": args.model, "batch": args.batch, "image_size": size,
        "img_per_s": round(args.batch / statistics.median(seconds), 2),
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024,
        "torch": torch.__version__, "precision": "bf16" if args.bf16 else "fp32",
        "channels_last": args.channels_last,
    }))


if __name__ == "__main__":
    main()
