#!/bin/bash
# Weak scaling of ResNet-50 training across hosts (issue 16), as root: two
# network-namespace hosts (tests/multinode/cluster.sh) whose links are shaped
# with tc tbf (RATE each way; this kernel has no netem, so no added delay:
# veth's is a few microseconds), batch 16 per rank at 224, one
# thread per rank; convnet (launch/mpirun.sh --hostfile over ssh) against
# PyTorch DDP (gloo) over the same links, 1 host then 2 hosts, ROUNDS times;
# each interpreter of PYTHONS is a peer (default: Debian's PyTorch 1.13 and,
# when bench/install-pypi-peer.sh made it, PyPI's in /opt/torch-venv).
# usage: [RATES="10gbit 1gbit"] [ROUNDS=2] [STEPS=4] [PYTHONS=...] bench/multinode_scaling.sh CONVNET
set -uo pipefail
convnet=$1
here=$(cd "$(dirname "$0")" && pwd)
source "$here/../tests/multinode/cluster.sh"
cluster_up 2 "$(mktemp -d /tmp/multinode_bench.XXXXXX)"
shape() {
  local i
  for ((i = 1; i <= 2; ++i))
    do ip netns exec "$(host_ns "$i")" tc qdisc replace dev eth0 root tbf rate "$1" burst 8mb \
      latency 20ms; done
}
convnet_bench() {  # HOSTS NP
  mpirun_cluster "$1" "$2" "$convnet" bench --model resnet50 --batch-size 16 --threads 1 \
    --steps "${STEPS:-4}" | grep -o '"img_per_s": [0-9.]*\|"exposed_comm_ms": [0-9.]*' | tr '\n' ' '
  echo
}
torch_bench() {  # PYTHON WORLD
  local python=$1 world=$2 i
  for ((i = 1; i <= world; ++i)); do
    on_host "$i" env RANK=$((i - 1)) WORLD_SIZE="$world" MASTER_ADDR="$(host_addr 1)" \
      MASTER_PORT=29571 GLOO_SOCKET_IFNAME=eth0 OMP_NUM_THREADS=1 \
      "$python" "$here/torch_ddp_hosts.py" resnet50 16 224 "${STEPS:-4}" &
  done
  wait
}
pythons=${PYTHONS:-/usr/bin/python3 $([[ -x /opt/torch-venv/bin/python ]] && echo /opt/torch-venv/bin/python)}
lscpu | grep "Model name"
for rate in ${RATES:-10gbit 1gbit}; do
  shape "$rate" || exit 1
  ip netns exec "$(host_ns 1)" tc qdisc show dev eth0
  for ((round = 1; round <= ${ROUNDS:-2}; ++round)); do
    echo "== $rate round $round"
    echo "convnet 1 host: $(convnet_bench h1:1 1)"
    echo "convnet 2 hosts: $(convnet_bench h1:1,h2:1 2)"
    for python in $pythons; do
      echo "torch $("$python" -c 'import torch; print(torch.__version__)') ($python):"
      torch_bench "$python" 1
      torch_bench "$python" 2
    done
  done
done
