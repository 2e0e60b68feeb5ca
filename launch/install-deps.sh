#!/usr/bin/env bash
# Installs the Debian 12 packages convnet needs to build and test, and a
# Python virtual environment with TensorBoard from PyPI (the real reader of
# the event files the trainer writes; tests/trainer/tensorboard_check.sh) in
# ${CONVNET_VENV:-$HOME/.cache/convnet-venv}.
# Idempotent: only missing packages are installed. Uses apt-get as root, sudo otherwise.
# Set CONVNET_SKIP_DEPS=1 to skip (for machines managed some other way).
set -euo pipefail

[[ "${CONVNET_SKIP_DEPS:-0}" == 1 ]] && exit 0

# The virtual environment (after the Debian packages: it needs python3-venv).
install_venv() {
  local venv=${CONVNET_VENV:-$HOME/.cache/convnet-venv}
  if [[ -x "$venv/bin/python" ]] && "$venv/bin/python" -c 'import tensorboard' 2>/dev/null; then
    echo "install-deps: $venv has tensorboard"
    return
  fi
  echo "install-deps: creating $venv with tensorboard from PyPI"
  /usr/bin/python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check tensorboard
}

packages=(
  build-essential cmake ninja-build pkg-config
  libdnnl-dev ocl-icd-opencl-dev opencl-headers  # oneDNN's CMake config requires OpenCL
  libopenmpi-dev openmpi-bin
  libhdf5-dev hdf5-tools
  libboost-program-options-dev
  libboost-context-dev  # fibers of the host-run CUDA kernel tests (tests/cuda_on_host)
  libgtest-dev
  clang-format
  valgrind  # memcheck of the host-run CUDA kernel tests
  python3-torch python3-torchvision python3-h5py  # peer benchmarks and torchvision parity tests
  python3-matplotlib  # tools/plot_run.py (convnet plot)
  python3-venv  # the virtual environment with TensorBoard
  nlohmann-json3-dev  # JSON output
  zlib1g-dev dataset-fashion-mnist  # gzipped IDX files; real test and demo data
  libturbojpeg0-dev libpng-dev  # JPEG/PNG decoding in converters and the loader
  slurm-wlm munge  # the one-node Slurm cluster of the launch test
  openssh-server iproute2  # the multi-node tests: sshd in each host's network namespace
)

missing=()
for p in "${packages[@]}"; do
  status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
  [[ "$status" == "install ok installed" ]] || missing+=("$p")
done

if ((${#missing[@]} == 0)); then
  echo "install-deps: all ${#packages[@]} packages present"
  install_venv
  exit 0
fi

echo "install-deps: installing ${missing[*]}"
if [[ $(id -u) -eq 0 ]]; then
  sudo_cmd=()
elif command -v sudo >/dev/null 2>&1; then
  sudo_cmd=(sudo)
else
  echo "install-deps: missing packages (${missing[*]}) and neither root nor sudo" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
"${sudo_cmd[@]}" apt-get update -qq
"${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
install_venv
