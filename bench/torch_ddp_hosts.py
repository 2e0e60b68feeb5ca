#!/usr/bin/python3
"""Peer for the multi-node benchmark: PyTorch DDP (gloo) with one process per
host, started by bench/multinode_scaling.sh on each host of a cluster.
usage: torch_ddp_hosts.py MODEL BATCH SIZE STEPS  (env RANK, WORLD_SIZE,
MASTER_ADDR, MASTER_PORT, GLOO_SOCKET_IFNAME as torch.distributed reads them)
Prints the global img/s of the timed steps on rank 0, 1 thread per process."""
import sys
import time

import torch
import torch.distributed as dist
import torchvision


def main():
    name, batch, size, steps = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    torch.set_num_threads(1)
    dist.init_process_group("gloo")
    model = torch.nn.parallel.DistributedDataParallel(getattr(torchvision.models, name)())
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    x = torch.randn(batch, 3, size, size)
    y = torch.randint(0, 1000, (batch,))

    def step():
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()

    step()
    dist.barrier()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    dist.barrier()
    seconds = time.perf_counter() - start
    if dist.get_rank() == 0:
        print(f"torch_ddp {name} world {dist.get_world_size()} img_per_s "
              f"{dist.get_world_size() * batch * steps / seconds:.3f}")
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
