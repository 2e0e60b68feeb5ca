#!/usr/bin/env bash
# Packs convnet's binaries with every shared library they load from this
# machine (glibc and its loader included, CUDA excluded) into one relocatable
# .tar.xz, for a GPU machine that lacks the CPU-side packages (MPI, HDF5,
# Boost, oneDNN) or has another glibc. On that machine:
#   tar xf convnet-bundle.tar.xz
#   convnet-bundle/run convnet version            # runs bin/convnet through the bundled loader
#   CONVNET_EXTRA_LIBS=/path/to/cudnn/lib:... convnet-bundle/run layer_tests
# The GPU machine's own driver, CUDA runtime, cuDNN and NCCL (e.g. those inside
# an installed PyTorch, site-packages/nvidia/*/lib) are found through
# CONVNET_EXTRA_LIBS and the system's library cache; none are copied here.
# usage: launch/gpu-bundle.sh BUILD_DIR OUTPUT.tar.xz
set -euo pipefail
build=$1 output=$2
stage_root=$(mktemp -d)
trap 'rm -rf "$stage_root"' EXIT
stage=$stage_root/convnet-bundle
mkdir -p "$stage/bin" "$stage/lib"
for exe in "$build"/bin/*; do
  # kernels_on_host_tests runs the CUDA kernels on the CPU: not for a GPU machine.
  [[ -x $exe && -f $exe && $(basename "$exe") != kernels_on_host_tests ]] && cp "$exe" "$stage/bin/"
done
# Every library any binary resolves here, except CUDA's (the GPU machine's own are used).
for exe in "$stage"/bin/*; do ldd "$exe"; done |
  awk '$2 == "=>" && $3 ~ /^\// {print $3} $1 ~ /^\/.*ld-linux/ {print $1}' | sort -u |
  grep -Ev '/lib(cuda|cudart|cudnn|nccl|cublas|cublasLt|nvrtc|nvJitLink)[.-]' |
  while read -r lib; do cp -L "$lib" "$stage/lib/"; done
# Open MPI's plugins (dlopen'ed; only multi-rank runs need them).
ompi_plugins=/usr/lib/x86_64-linux-gnu/openmpi/lib/openmpi3
[[ -d $ompi_plugins ]] && cp -r "$ompi_plugins" "$stage/lib/openmpi3"
cat >"$stage/run" <<'RUN'
#!/bin/sh
# usage: run PROGRAM [ARGS...]: bin/PROGRAM through the bundled loader and libraries.
here=$(cd "$(dirname "$0")" && pwd)
program=$1
shift
export OMPI_MCA_mca_base_component_path="$here/lib/openmpi3"
export OMPI_MCA_ess_singleton_isolated=1
# --library-path replaces LD_LIBRARY_PATH, so the machine's own (where its
# image keeps libcuda or CUDA's forward-compat driver) is appended.
exec "$here/lib/ld-linux-x86-64.so.2" \
  --library-path "$here/lib${CONVNET_EXTRA_LIBS:+:$CONVNET_EXTRA_LIBS}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" \
  "$here/bin/$program" "$@"
RUN
chmod +x "$stage/run"
cp "$(dirname "$0")/../tests/gpu/check.sh" "$stage/check.sh"
# A small real dataset for the GPU training check: Fashion-MNIST's 10,000
# test images (Debian's dataset-fashion-mnist), when this machine has them.
fashion=/usr/share/datasets/fashion-mnist
if [[ -f $fashion/t10k-images-idx3-ubyte.gz ]]; then
  mkdir -p "$stage/data"
  "$build/bin/convnet" convert idx --images "$fashion/t10k-images-idx3-ubyte.gz" \
    --labels "$fashion/t10k-labels-idx1-ubyte.gz" --output "$stage/data/fashion-10k.h5" >/dev/null
fi
cp "$(dirname "$0")/../bench/torch_gpu_bench.py" "$stage/torch_gpu_bench.py"
tar -C "$stage_root" -cJf "$output" convnet-bundle
echo "{\"bundle\": \"$output\", \"files\": $(find "$stage" -type f | wc -l), \"unpacked_mib\": $(du -sm "$stage" | cut -f1), \"packed_mib\": $(( $(stat -c %s "$output") / 1048576 ))}"
