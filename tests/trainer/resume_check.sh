#!/bin/bash
# Checkpoint/resume checks of convnet train (ctest; see tests/CMakeLists.txt).
# usage: resume_check.sh CHECK CONVNET MPIEXEC DATA WORKDIR
#   same_ranks   2 ranks: stopped after 3 steps and resumed == uninterrupted, bit for bit
#                (weights, and the loss of every step)
#   same_ranks_bf16  the same in bf16 (--precision bf16), on a CPU that has it (else skipped)
#   same_ranks_drop_path  the same with stochastic depth (--drop-path 0.5: blocks dropped
#                per step by (seed, step, block), so the resumed run drops the same ones)
#   same_ranks_ema  the same with --model-ema, mixup, CutMix and random erasing:
#                model_ema.h5 equal too (the checkpoint holds the average and its
#                update count; the mixing draws depend on the micro-batch alone)
#   change_ranks 2 ranks -> 1 rank (accumulates 2), and 1 rank --accumulate 2 -> 2 ranks,
#                end with the uninterrupted run's model.h5, BN running statistics and
#                num_batches_tracked included, bit for bit
#   signal       SIGUSR1 and SIGTERM to mpirun mid-run: exit 75 with a checkpoint; resuming
#                ends with the uninterrupted weights
#   kill         kill -9 of a job writing a checkpoint every step: every checkpoint left
#                behind reads back, and --resume auto continues from the newest
set -euo pipefail
check=$1 convnet=$2 mpiexec=$3 data=$4 work=$5
here=$(cd "$(dirname "$0")" && pwd)
rm -rf "$work" && mkdir -p "$work"
mpi() { local n=$1; shift; timeout -k 5 240 "$mpiexec" -np "$n" --oversubscribe --bind-to none "$@"; }
unseeded=(--model resnet20 --train-data "$data" --lr 0.1 --threads 1 --loader-threads 1
          --log-every 1 --batch-size 8 --schedule cosine --epochs 1)
common=("${unseeded[@]}" --seed 5)
compare() { /usr/bin/python3 "$here/compare_weights.py" "$@"; }
losses() { grep '"kind": "train"' "$1/metrics.jsonl" | grep -o '"step": [0-9]*, .*"loss": [0-9.e-]*' | sed 's/"time": [0-9.e-]*, //'; }

# Stopped after 3 steps and resumed == uninterrupted, bit for bit; $@: extra options.
same_ranks() {
  mpi 2 "$convnet" train "${common[@]}" "$@" --max-steps 6 --run-dir "$work/straight" >/dev/null
  mpi 2 "$convnet" train "${common[@]}" "$@" --max-steps 3 --run-dir "$work/split" >/dev/null
  test -f "$work/split/checkpoint-000000003.h5"
  mpi 2 "$convnet" train "${common[@]}" "$@" --max-steps 6 --run-dir "$work/split" \
    --resume auto >"$work/resume.log"
  grep -q "resuming from .*checkpoint-000000003.h5 at step 3" "$work/resume.log"
  compare "$work/straight/model.h5" "$work/split/model.h5" 0
  if [ -e "$work/straight/model_ema.h5" ]; then  # --model-ema: the average resumes exactly too
    compare "$work/straight/model_ema.h5" "$work/split/model_ema.h5" 0
    compare "$work/straight/model.h5" "$work/straight/model_ema.h5" 1e-4 differ
  fi
  diff <(losses "$work/straight") <(losses "$work/split")
}

case $check in
same_ranks)
  same_ranks
  echo "same_ranks: ok"
  ;;
same_ranks_bf16)
  if ! "$convnet" bench --precision bf16 --model resnet20 --batch-size 2 --steps 1 --warmup 0 \
    --threads 1 >"$work/probe.log" 2>&1; then
    grep "needs a CPU with avx512_bf16 or AMX" "$work/probe.log"
    echo "same_ranks_bf16: skipped (no bf16 on this CPU)"
    exit 0
  fi
  same_ranks --precision bf16
  grep -q '"precision": "bf16"' "$work/probe.log"
  echo "same_ranks_bf16: ok"
  ;;
same_ranks_drop_path)
  same_ranks --drop-path 0.5
  echo "same_ranks_drop_path: ok"
  ;;
same_ranks_ema)
  same_ranks --model-ema --model-ema-decay 0.9 --model-ema-warmup --mixup-alpha 0.4 \
    --cutmix-alpha 1.0 --random-erase 0.5
  echo "same_ranks_ema: ok"
  ;;
change_ranks)
  mpi 2 "$convnet" train "${common[@]}" --max-steps 6 --run-dir "$work/np2" >/dev/null
  mpi 2 "$convnet" train "${common[@]}" --max-steps 3 --run-dir "$work/np2_np1" >/dev/null
  "$convnet" train "${common[@]}" --max-steps 6 --run-dir "$work/np2_np1" --resume auto \
    >"$work/np2_np1.log"
  grep -q "world 1 x batch 8 x accumulate 2" "$work/np2_np1.log"
  compare "$work/np2/model.h5" "$work/np2_np1/model.h5" 0
  "$convnet" train "${common[@]}" --accumulate 2 --max-steps 3 --run-dir "$work/np1_np2" >/dev/null
  mpi 2 "$convnet" train "${common[@]}" --max-steps 6 --run-dir "$work/np1_np2" --resume auto \
    >"$work/np1_np2.log"
  grep -q "world 2 x batch 8 x accumulate 1" "$work/np1_np2.log"
  compare "$work/np2/model.h5" "$work/np1_np2/model.h5" 0
  # 3 ranks cannot split 2 micro-batches: a clear error.
  if mpi 3 "$convnet" train "${common[@]}" --max-steps 6 --run-dir "$work/np2" --resume auto \
      >"$work/np3.log" 2>&1; then echo "3 ranks resumed a 2-micro-batch run" >&2; exit 1; fi
  grep -q "3 ranks do not divide its 2 micro-batches" "$work/np3.log"
  # A fresh run into a directory with checkpoints, and a resume with another
  # seed (another data order), are errors that say so.
  if "$convnet" train "${common[@]}" --max-steps 6 --run-dir "$work/np2" >"$work/fresh.log" 2>&1
  then echo "a fresh run reused a run directory" >&2; exit 1; fi
  grep -q "already holds checkpoints of an earlier run" "$work/fresh.log"
  if "$convnet" train "${unseeded[@]}" --seed 6 --max-steps 6 --run-dir "$work/np2" \
      --resume auto >"$work/seed.log" 2>&1; then echo "resumed with another seed" >&2; exit 1; fi
  grep -q "was made with --seed 5" "$work/seed.log"
  echo "change_ranks: ok"
  ;;
signal)
  # Enough steps that the signal, sent after the third log line, lands
  # before the end on a loaded machine (40 steps took under a second).
  steps=150
  mpi 2 "$convnet" train "${common[@]}" --max-steps $steps --run-dir "$work/straight" >/dev/null
  for sig in USR1 TERM; do
    run=$work/stopped_$sig
    mpi 2 "$convnet" train "${common[@]}" --max-steps $steps --run-dir "$run" >"$run.log" 2>&1 &
    pid=$!
    # Wait for a few steps, then signal mpirun (timeout's child).
    for _ in $(seq 600); do
      [[ -f $run/metrics.jsonl ]] && (( $(wc -l <"$run/metrics.jsonl") >= 3 )) && break
      sleep 0.1
    done
    # mpirun itself (the test's ranks are its children; `timeout` is its parent).
    launcher=$(pgrep -f "^$mpiexec -np 2 .*--run-dir $run\$")
    kill -$sig "$launcher"
    status=0
    wait "$pid" || status=$?
    echo "SIG$sig: mpirun exit status $status"
    # SIGUSR1 is forwarded and mpirun returns the ranks' status, 75. On SIGTERM
    # Open MPI's mpirun forwards SIGTERM, reports the job as killed (status 1
    # here) and SIGKILLs ranks still alive after odls_base_sigkill_timeout
    # (1 s by default; launch/mpirun.sh raises it): the ranks have checkpointed.
    if [[ $sig == USR1 ]]; then expected=75; else expected=1; fi
    [[ $status -eq $expected ]] || { cat "$run.log"; exit 1; }
    grep -q "stopped by a signal after step" "$run.log"
    stopped=$(cat "$run/latest")
    mpi 2 "$convnet" train "${common[@]}" --max-steps $steps --run-dir "$run" --resume auto \
      >"$run.resume.log"
    grep -q "resuming from .*$stopped" "$run.resume.log"
    compare "$work/straight/model.h5" "$run/model.h5" 0
    diff <(losses "$work/straight") <(losses "$run")
  done
  echo "signal: ok"
  ;;
kill)
  run=$work/killed
  "$convnet" train "${common[@]}" --max-steps 100000 --checkpoint-every 1steps --keep 2 \
    --run-dir "$run" >"$run.log" 2>&1 &
  pid=$!
  for _ in $(seq 600); do
    (( $(ls "$run"/checkpoint-*.h5 2>/dev/null | wc -l) >= 2 )) && break
    sleep 0.1
  done
  sleep 1.3
  kill -9 $pid
  wait $pid 2>/dev/null || true
  ls "$run"
  for f in "$run"/checkpoint-*.h5; do
    /usr/bin/python3 -c "import sys, h5py; f = h5py.File(sys.argv[1], 'r'); f.visititems(lambda n, o: o[()] if isinstance(o, h5py.Dataset) else None)" "$f"
  done
  newest=$(ls "$run"/checkpoint-*.h5 | sort | tail -1)
  "$convnet" train "${common[@]}" --run-dir "$run" --resume auto \
    --max-steps $(( 10#$(basename "$newest" .h5 | cut -d- -f2) + 1 )) >"$run.resume.log"
  grep -q "resuming from $newest" "$run.resume.log"
  echo "kill: ok"
  ;;
*) echo "unknown check $check" >&2; exit 2 ;;
esac
