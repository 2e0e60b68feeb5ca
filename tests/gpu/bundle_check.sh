#!/bin/bash
# launch/gpu-bundle.sh makes a bundle packed under 60 MiB whose convnet runs in
# an empty environment and loads every library from the bundle (its own glibc
# loader included), none from this machine except cuDNN, cuBLAS and NCCL, which the
# GPU machine provides (CONVNET_EXTRA_LIBS or its library cache).
# usage: bundle_check.sh SOURCE_DIR BUILD_DIR WORKDIR
set -euo pipefail
source=$1 build=$2 work=$3
rm -rf "$work" && mkdir -p "$work"
XZ_OPT=-T2 "$source/launch/gpu-bundle.sh" "$build" "$work/convnet-bundle.tar.xz"
size=$(stat -c %s "$work/convnet-bundle.tar.xz")
(( size < 60 * 1048576 )) || { echo "bundle is $size bytes, over 60 MiB" >&2; exit 1; }
tar -C "$work" -xf "$work/convnet-bundle.tar.xz"
bundle=$work/convnet-bundle
env -i PATH=/usr/bin:/bin "$bundle/run" convnet version
outside=$(env -i PATH=/usr/bin:/bin LD_DEBUG=libs "$bundle/lib/ld-linux-x86-64.so.2" \
  --library-path "$bundle/lib" "$bundle/bin/convnet" version 2>&1 |
  grep 'calling init: /' | grep -v "calling init: $bundle/lib/" |
  grep -Ev '/lib(cudnn|nccl|cublas|cublasLt)[^/.]*\.so[^/]*$' || true)
[[ -z $outside ]] || { echo "libraries loaded from outside the bundle:"; echo "$outside"; exit 1; }
env -i PATH=/usr/bin:/bin "$bundle/run" convnet bench --model resnet20 --batch-size 2 --steps 1 \
  --threads 1 | grep -q '"img_per_s"'
# check.sh itself, on a machine without a GPU (CI): it runs up to its
# preflight, which must stop it with the reason (no test, bench or training).
if ! command -v nvidia-smi >/dev/null; then
  status=0
  env -i PATH=/usr/bin:/bin OUT="$work" "$bundle/check.sh" >"$work/check.log" 2>&1 || status=$?
  [[ $status == 1 ]] && grep -q "preflight: the GPU is not usable from the bundle" "$work/check.log" &&
    grep -q "CONVNET_REQUIRE_GPU=1 but no usable GPU" "$work/check.log" &&
    ! grep -q "== GPU tests" "$work/check.log" || { cat "$work/check.log"; exit 1; }
fi
echo "bundle: ok"
