#!/bin/bash
# The one script for a machine with one NVIDIA GPU (issue 7), run from an
# unpacked bundle (launch/gpu-bundle.sh) or a checkout with BUNDLE=dir:
#   tar xf convnet-bundle.tar.xz && convnet-bundle/check.sh
# It records what the machine offers (GPU, driver, CUDA runtime/cuDNN/NCCL
# found inside an installed PyTorch, OS, glibc), points the bundle at those
# libraries, and runs: the GPU tests (every cuDNN/CUDA layer against the
# double-precision reference, one file per layer; whole nets and
# NCCL against the CPU backend; bf16/fp16 mixed precision), then the GPU
# benchmarks (resnet50 batch 256 in bf16, fp16, fp32, tf32;
# densenet_bc_100_k12 batch 64 memory-efficient on and off), Fashion-MNIST
# training (fp32, and fp16 stopped and resumed) and the PyTorch peer on the
# same GPU. Every step has a time limit; the whole script stays
# under 8 minutes and ends with a summary. Logs go to $OUT.
# A rerun after a fix can be short: STEPS=tests,bench,torch,train (default
# all) picks sections, and GTEST_FILTER (read by the test binary) picks tests.
set -uo pipefail
steps=${STEPS:-tests,bench,torch,train}
want() { [[ ",$steps," == *",$1,"* ]]; }
here=$(cd "$(dirname "$0")" && pwd)
bundle=${BUNDLE:-$here}
run=$bundle/run
out=${OUT:-/tmp}
summary=()
note() { summary+=("$*"); echo "check: $*"; }
# The whole script stays under 8 minutes: each step gets at most what is
# left of 460 s, and steps that would start with under 20 s left are skipped.
deadline=${CHECK_BUDGET_S:-460}  # seconds for all steps together
left() {  # LIMIT: prints min(LIMIT, seconds left), or fails when under 20 s are left
  local rest=$((deadline - SECONDS))
  ((rest >= 20)) || return 1
  echo $((rest < $1 ? rest : $1))
}

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
ld_path=${LD_LIBRARY_PATH:-}
for l in libcudnn.so.9 libcublas.so.13 libcublasLt.so.13 libnccl.so.2 libcudart.so.13 libcudart.so.12 libcuda.so.1; do
  found=$( (ldconfig -p 2>/dev/null | grep -m1 " $l " | sed 's/.*=> //'); \
           for d in ${torch_libs//:/ } ${ld_path//:/ }; do ls "$d/$l" 2>/dev/null; done | head -1)
  echo "$l: ${found:-not found}"
done
export CONVNET_EXTRA_LIBS=$torch_libs
# Every step here is one process: launcher variables (a Slurm step, say)
# would make convnet start MPI. And a GPU that is not usable fails the GPU
# tests instead of skipping them.
unset OMPI_COMM_WORLD_RANK PMIX_RANK PMI_RANK SLURM_PROCID
export CONVNET_REQUIRE_GPU=1

echo "== bundle"
timeout 60 "$run" convnet version || note "bundled convnet does not start"
# Preflight: without a usable GPU (an old driver, libcuda not found) every
# later step fails the same way; stop here and keep the device time.
if ! timeout 60 "$run" gpu_tests --gtest_filter=Gpu.DescribesWhatItSees >"$out/preflight.log" 2>&1; then
  cat "$out/preflight.log"
  note "preflight: the GPU is not usable from the bundle (see above); nothing else ran"
  echo "== summary"
  printf '%s\n' "${summary[@]}"
  exit 1
fi
grep -E '^(driver|runtime|gpu [0-9]|status)' "$out/preflight.log"

echo "== GPU tests"
if ! want tests; then :
elif timeout "$(left 300)" "$run" gpu_tests >"$out/gpu_tests.log" 2>&1; then
  note "gpu_tests: $(grep -E '^\[  PASSED  \]' "$out/gpu_tests.log") $(grep -cE '^\[  SKIPPED \] [A-Za-z]' "$out/gpu_tests.log") skipped"
else
  note "gpu_tests: FAILED or timed out (rc $?), see gpu_tests.log"
fi
if want tests; then
  grep -E '^(driver|gpu [0-9])' "$out/gpu_tests.log"
  grep -E '^\[  FAILED  \]|Failure|error:|Expected|Which is|element ' "$out/gpu_tests.log" | head -40
fi

echo "== GPU benchmarks"
bench() {  # NAME TIMEOUT ARGS...
  want bench || return 0
  local name=$1 limit; shift
  limit=$(left "$1") || { note "bench $name: skipped (time budget)"; return; }
  shift
  if timeout "$limit" "$run" convnet bench --device cuda "$@" >"$out/bench-$name.log" 2>&1; then
    note "bench $name: $(tail -1 "$out/bench-$name.log")"
  else
    note "bench $name: FAILED (rc $?): $(tail -2 "$out/bench-$name.log" | tr '\n' ' ')"
  fi
}
# Issue 7's target first: resnet50 bf16 channels-last (the default layout for bf16).
CONVNET_CUDNN_LOG=1 bench resnet50-b256-bf16 90 --model resnet50 --batch-size 256 --steps 10 --warmup 3 --precision bf16
# Which cuDNN kernels bf16 got (math 0 default, 1 tensor op, 3 FMA).
if want bench; then
  grep -c '^cudnn: ' "$out/bench-resnet50-b256-bf16.log" | sed 's/^/cudnn problems measured: /'
  grep '^cudnn: ' "$out/bench-resnet50-b256-bf16.log" | head -6
fi
# What the deterministic-first algorithm rule (exact resume) costs in bf16.
CONVNET_CUDNN_DETERMINISTIC=0 bench resnet50-b256-bf16-fastest-algos 90 --model resnet50 --batch-size 256 --steps 10 --warmup 3 --precision bf16
bench resnet50-b256-fp16 90 --model resnet50 --batch-size 256 --steps 10 --warmup 3 --precision fp16
bench densenet-bc100-b64-efficient 60 --model densenet_bc_100_k12 --batch-size 64 --steps 10 --warmup 2 --memory-efficient on
bench densenet-bc100-b64-efficient-bf16 90 --model densenet_bc_100_k12 --batch-size 64 --steps 10 --warmup 2 --memory-efficient on --precision bf16
bench densenet-bc100-b64-naive 60 --model densenet_bc_100_k12 --batch-size 64 --steps 10 --warmup 2 --memory-efficient off
bench resnet50-b256-fp32 90 --model resnet50 --batch-size 256 --steps 10 --warmup 3
bench resnet50-b256-tf32-nhwc 90 --model resnet50 --batch-size 256 --steps 10 --warmup 3 --precision tf32 --layout nhwc
# What cuDNN refused (fused BN+ReLU, batch norm for a type), once per kind.
want bench && grep -h '^convnet: cuDNN' "$out"/bench-*.log 2>/dev/null | sort -u | head -6

echo "== PyTorch on the same GPU"
if want torch && [[ -n $python ]] && [[ -f $bundle/torch_gpu_bench.py ]]; then
  for p in fp32 bf16; do
    limit=$(left 120) || { note "torch resnet50 b256 $p: skipped (time budget)"; continue; }
    r=$(timeout "$limit" "$python" "$bundle/torch_gpu_bench.py" resnet50 256 224 10 $p 2>"$out/torch-$p.log" | tail -1)
    note "torch resnet50 b256 $p: ${r:-FAILED, see torch-$p.log}"
  done
fi

echo "== GPU training (Fashion-MNIST 10k in the bundle)"
data=$bundle/data/fashion-10k.h5
# budget NAME LIMIT: sets $limit to the step's time limit, or notes the skip and fails.
budget() {
  local l
  l=$(left "$2") || { note "$1: skipped (time budget)"; return 1; }
  limit=$l
}
if want train && [[ -f $data ]]; then
  train=(--model resnet20 --train-data "$data" --batch-size 128 --lr 0.1 --schedule cosine
         --epochs 2 --loader-threads 4 --log-every 20 --seed 3)
  rc=skipped
  if budget "train cuda" 150; then
    timeout "$limit" "$run" convnet train "${train[@]}" --val-data "$data" --device cuda \
      --run-dir "$out/gpu-train" >"$out/gpu-train.log" 2>&1
    rc=$?
  fi
  if [[ $rc == 0 ]]; then
    note "train cuda: $(grep 'validation' "$out/gpu-train.log" | tail -1)"
    note "train cuda speed: $(grep -o '[0-9.]* img/s' "$out/gpu-train.log" | tail -1)"
    # The same weights evaluated on the GPU and on the CPU must agree.
    for d in cuda cpu; do
      budget "eval $d" 90 || continue
      timeout "$limit" "$run" convnet eval --checkpoint "$out/gpu-train/model.h5" --data "$data" \
        --device $d --batch-size 250 >"$out/eval-$d.json" 2>&1
      note "eval $d: $(tail -1 "$out/eval-$d.json")"
    done
    top1() { grep -o '"top1": [0-9.e-]*' "$1" | cut -d' ' -f2; }
    note "eval top1 cuda - cpu: $(awk -v a="$(top1 "$out/eval-cuda.json")" \
      -v b="$(top1 "$out/eval-cpu.json")" 'BEGIN {print (a == "" || b == "") ? "missing" : a - b}')"
  elif [[ $rc != skipped ]]; then
    note "train cuda: FAILED (rc $rc): $(tail -3 "$out/gpu-train.log" | tr '\n' ' ')"
  fi
  # Stop after 30 steps and resume to 60 on the GPU in fp16 (channels-last,
  # NHWC batches from the loader; the loss scale is in the checkpoint).
  nhwc=(--device cuda --precision fp16)
  budget "train cuda fp16 (first 30 steps)" 90 &&
    timeout "$limit" "$run" convnet train "${train[@]}" "${nhwc[@]}" --max-steps 30 \
      --run-dir "$out/gpu-resume" >"$out/gpu-resume-1.log" 2>&1
  if ! budget "resume cuda fp16" 90; then :
  elif timeout "$limit" "$run" convnet train "${train[@]}" "${nhwc[@]}" --max-steps 60 --resume auto \
      --run-dir "$out/gpu-resume" >"$out/gpu-resume-2.log" 2>&1; then
    note "resume cuda fp16: $(grep -o 'resuming from .*' "$out/gpu-resume-2.log" | head -1)"
    note "fp16 skipped steps: $(grep -c 'step skipped' "$out/gpu-resume-1.log" "$out/gpu-resume-2.log" | tr '\n' ' ')"
    note "fp16 last: $(grep -o 'loss [0-9.]* top1 [0-9.]*%' "$out/gpu-resume-2.log" | tail -1)"
  else
    note "resume cuda fp16: FAILED: $(tail -3 "$out/gpu-resume-2.log" | tr '\n' ' ')"
  fi
fi

echo "== summary"
printf '%s\n' "${summary[@]}"
