#!/usr/bin/env bash
# The second CPU peer: the current PyTorch and torchvision from PyPI (what a
# user installs today; oneDNN 3.x inside, newer than Debian's 2.6) in a
# virtual environment, by default /opt/torch-venv. Not part of the build or
# the test suite (the download is several GB); the benchmarks in
# bench/README.md name which interpreter each figure used.
#   bench/install-pypi-peer.sh [VENV_DIR]
#   VENV_DIR/bin/python bench/torch_zoo_bench.py resnet50 16 --threads 2
set -euo pipefail
venv=${1:-/opt/torch-venv}
if [[ -x "$venv/bin/python" ]] && "$venv/bin/python" -c 'import torch, torchvision' 2>/dev/null; then
  echo "install-pypi-peer: $venv has torch $("$venv/bin/python" -c 'import torch; print(torch.__version__)')"
  exit 0
fi
python=$(command -v python3)
"$python" -m venv "$venv" || {
  echo "install-pypi-peer: '$python -m venv' failed (Debian: apt-get install python3-venv)" >&2
  exit 1
}
"$venv/bin/pip" install --quiet torch torchvision
echo "install-pypi-peer: $venv has torch $("$venv/bin/python" -c 'import torch; print(torch.__version__)')"
