#!/bin/bash
# The one script for a machine with one NVIDIA GPU (issue 7), run from an
# unpacked bundle (launch/gpu-bundle.sh) or a checkout with BUNDLE=dir:
#   tar xf convnet-bundle.tar.xz && convnet-bundle/check.sh
# It records what the machine offers (GPU, driver, CUDA runtime/cuDNN/NCCL
# found inside an installed PyTorch, OS, glibc), points the bundle at those
# libraries, and runs the bundled programs. Status today: the GPU backend
# (cuDNN layers, NCCL) is not written yet, so there are no GPU tests to run;
# the CPU suites run as a check that the bundle works there. Every step has a
# time limit; the whole script stays under 8 minutes. gpu_tests (device,
# runtime, cuDNN and NCCL discovery) is what runs on the GPU so far.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
bundle=${BUNDLE:-$here}
run=$bundle/run
out=${OUT:-/tmp}
summary=()
note() { summary+=("$*"); echo "check: $*"; }

echo "== machine"
nvidia-smi --query-gpu=name,memory.total,driver_version,compute_cap --format=csv,noheader 2>&1 |
  sed 's/^/gpu: /' || note "nvidia-smi failed"
grep PRETTY_NAME /etc/os-release 2>/dev/null
ldd --version 2>&1 | head -1
nproc
python=$(command -v python3 || true)
torch_libs=
if [[ -n $python ]]; then
  "$python" - <<'PY' 2>&1 | tee "$out/torch-info.txt"
import glob, os
try:
    import torch
    print("torch", torch.__version__, "cuda", torch.version.cuda, "cudnn", torch.backends.cudnn.version(),
          "nccl", ".".join(map(str, torch.cuda.nccl.version())) if torch.cuda.is_available() else "-")
    site = os.path.dirname(os.path.dirname(torch.__file__))
    for d in sorted(glob.glob(os.path.join(site, "nvidia", "*", "lib"))):
        print("nvidia-lib", d)
except Exception as e:  # no torch: the system's libraries are used
    print("torch not importable:", e)
PY
  torch_libs=$(grep '^nvidia-lib ' "$out/torch-info.txt" | cut -d' ' -f2 | paste -sd:)
fi
for l in libcudnn.so.9 libnccl.so.2 libcudart.so.13 libcudart.so.12 libcuda.so.1; do
  found=$( (ldconfig -p 2>/dev/null | grep -m1 " $l " | sed 's/.*=> //'); \
           for d in ${torch_libs//:/ }; do ls "$d/$l" 2>/dev/null; done | head -1)
  echo "$l: ${found:-not found}"
done
export CONVNET_EXTRA_LIBS=$torch_libs

echo "== bundle"
timeout 60 "$run" convnet version || note "bundled convnet does not start"
for suite in core_tests layer_tests dataset_tests trainer_tests; do
  [[ -x $bundle/bin/$suite ]] || continue
  if timeout 180 "$run" $suite --gtest_brief=1 >"$out/$suite.log" 2>&1; then
    note "$suite: $(grep -o 'PASSED  \] [0-9]* tests' "$out/$suite.log" | sed 's/.* \([0-9]*\) tests/\1 cases passed/')"
  else
    note "$suite: FAILED (see $out/$suite.log)"; tail -20 "$out/$suite.log"
  fi
done
timeout 120 "$run" convnet bench --model resnet50 --batch-size 16 --image-size 224 --steps 2 \
  --threads "$(nproc)" 2>&1 | tail -1 | sed 's/^/cpu bench: /'

echo "== GPU"
if [[ -x $bundle/bin/gpu_tests ]]; then
  timeout 120 "$run" gpu_tests 2>&1 | tee "$out/gpu_tests.log" | grep -E "^(driver|gpu [0-9]|\[  (PASSED|FAILED|SKIPPED))|Skipped|no usable"
  note "gpu_tests: $(grep -E '^\[  (PASSED|FAILED) ' "$out/gpu_tests.log" | tr '\n' ' ')"
fi
note "GPU layer tests: none yet (the cuDNN/NCCL backend of issue 7 is not written)"

echo "== summary"
printf '%s\n' "${summary[@]}"
