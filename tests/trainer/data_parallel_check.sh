#!/bin/bash
# Multi-rank checks of convnet train / eval / predict (ctest runs them; see
# tests/CMakeLists.txt). usage: data_parallel_check.sh CHECK CONVNET MPIEXEC DATA WORKDIR
#   equivalence  2 ranks x batch 8 == 1 rank x batch 8 x --accumulate 2 (same
#                samples per micro-batch), with and without overlap, bit for bit:
#                every /model dataset, BN running statistics and counters included;
#                and a run that sees other samples differs (the comparison can fail);
#                the same with stochastic depth (--drop-path 0.5: every rank drops
#                the same blocks), which differs from the run without; and the
#                model EMA (--model-ema), which leaves the trained weights as they are
#   hang         a rank that stops answering ends the job within --comm-timeout
#   read_metrics --read-metrics log == step: same weights and logged metrics
#   val_matches_eval  the trainer's validation record equals convnet eval of its model.h5
#                (validation never draws the recipe's random crops and flips)
#   eval         exact sharded evaluation for 1, 2 and 3 ranks: count = N and
#                identical metrics (N = 1,001); predict writes every row in dataset order
set -euo pipefail
check=$1 convnet=$2 mpiexec=$3 data=$4 work=$5
here=$(cd "$(dirname "$0")" && pwd)
rm -rf "$work" && mkdir -p "$work"
mpi() { local n=$1; shift; timeout -k 5 240 "$mpiexec" -np "$n" --oversubscribe --bind-to none "$@"; }
# first_samples N OUT: the test data's first N samples, attributes kept.
first_samples() {
  /usr/bin/python3 - "$data" "$2" "$1" <<'PY'
import sys, h5py
with h5py.File(sys.argv[1], "r") as src, h5py.File(sys.argv[2], "w") as dst:
    for name, value in src.attrs.items():
        dst.attrs[name] = value
    n = int(sys.argv[3])
    dst["images"] = src["images"][:n]
    dst["labels"] = src["labels"][:n]
PY
}
common=(--model resnet20 --train-data "$data" --max-steps 4 --lr 0.1 --seed 3 --threads 1
        --loader-threads 1 --log-every 1 --bucket-mb 0.05)

case $check in
equivalence)
  mpi 2 "$convnet" train "${common[@]}" --batch-size 8 --run-dir "$work/np2" >"$work/np2.log"
  mpi 2 "$convnet" train "${common[@]}" --batch-size 8 --overlap=false --run-dir "$work/np2_serial" >"$work/np2_serial.log"
  "$convnet" train "${common[@]}" --batch-size 8 --accumulate 2 --run-dir "$work/np1_acc2" >"$work/np1.log"
  "$convnet" train "${common[@]}" --batch-size 8 --run-dir "$work/np1_b8" >"$work/np1_b8.log"
  # Overlap changes when buckets are reduced, not what: bit-identical.
  /usr/bin/python3 "$here/compare_weights.py" "$work/np2/model.h5" "$work/np2_serial/model.h5" 0
  # Two micro-batch gradients and BN statistic sums add alike on one rank and
  # on two; BN running statistics move once per step from both micro-batches.
  /usr/bin/python3 "$here/compare_weights.py" "$work/np2/model.h5" "$work/np1_acc2/model.h5" 0
  /usr/bin/python3 "$here/compare_weights.py" "$work/np2/model.h5" "$work/np1_b8/model.h5" 1e-4 differ
  mpi 2 "$convnet" train "${common[@]}" --batch-size 8 --drop-path 0.5 --run-dir "$work/np2_dp" \
    >/dev/null
  "$convnet" train "${common[@]}" --batch-size 8 --accumulate 2 --drop-path 0.5 \
    --run-dir "$work/np1_acc2_dp" >/dev/null
  /usr/bin/python3 "$here/compare_weights.py" "$work/np2_dp/model.h5" "$work/np1_acc2_dp/model.h5" 0
  /usr/bin/python3 "$here/compare_weights.py" "$work/np2/model.h5" "$work/np2_dp/model.h5" 1e-4 \
    differ
  # The model EMA is the same on every rank and for every rank count.
  mpi 2 "$convnet" train "${common[@]}" --batch-size 8 --model-ema --model-ema-decay 0.8 \
    --run-dir "$work/np2_ema" >/dev/null
  "$convnet" train "${common[@]}" --batch-size 8 --accumulate 2 --model-ema --model-ema-decay 0.8 \
    --run-dir "$work/np1_acc2_ema" >/dev/null
  /usr/bin/python3 "$here/compare_weights.py" "$work/np2_ema/model_ema.h5" \
    "$work/np1_acc2_ema/model_ema.h5" 0
  /usr/bin/python3 "$here/compare_weights.py" "$work/np2_ema/model.h5" "$work/np2/model.h5" 0
  # Mixup and CutMix draw per micro-batch from (seed, epoch, micro-batch over
  # all ranks): 2 ranks and 1 rank accumulating 2 mix alike.
  mix=(--mixup-alpha 0.4 --cutmix-alpha 1.0 --mix-switch-prob 0.5)
  mpi 2 "$convnet" train "${common[@]}" --batch-size 8 "${mix[@]}" --run-dir "$work/np2_mix" \
    >/dev/null
  "$convnet" train "${common[@]}" --batch-size 8 --accumulate 2 "${mix[@]}" \
    --run-dir "$work/np1_acc2_mix" >/dev/null
  /usr/bin/python3 "$here/compare_weights.py" "$work/np2_mix/model.h5" \
    "$work/np1_acc2_mix/model.h5" 0
  /usr/bin/python3 "$here/compare_weights.py" "$work/np2/model.h5" "$work/np2_mix/model.h5" 1e-4 \
    differ
  # The losses of every step agree too.
  diff <(grep -o '"loss": [0-9.e-]*' "$work/np2/metrics.jsonl" | cut -c1-14) \
       <(grep -o '"loss": [0-9.e-]*' "$work/np1_acc2/metrics.jsonl" | cut -c1-14)
  echo "equivalence: ok"
  ;;
val_matches_eval)
  first_samples 64 "$work/small.h5"
  "$convnet" train --model resnet20 --train-data "$work/small.h5" --val-data "$work/small.h5" \
    --lr 0.01 --seed 3 --threads 1 --loader-threads 1 --batch-size 8 --epochs 1 \
    --run-dir "$work/val" >/dev/null
  val=$(grep '"kind": "eval"' "$work/val/metrics.jsonl" | tail -1 | grep -o '"loss": [0-9.e+-]*')
  eval=$("$convnet" eval --checkpoint "$work/val/model.h5" --data "$work/small.h5" --threads 1 |
    grep -o '"loss": [0-9.e+-]*')
  echo "trainer $val, eval $eval"
  /usr/bin/python3 -c "import sys; a, b = float(sys.argv[1]), float(sys.argv[2]); sys.exit(abs(a - b) > 1e-5 * abs(b))" \
    "${val#*: }" "${eval#*: }"
  echo "val_matches_eval: ok"
  ;;
eval)
  "$convnet" train "${common[@]}" --batch-size 8 --run-dir "$work/model" >/dev/null
  # The first 1,001 samples (not divisible by 2 or 3), attributes kept.
  first_samples 1001 "$work/small.h5"
  data=$work/small.h5
  for n in 1 2 3; do
    mpi $n "$convnet" eval --checkpoint "$work/model/model.h5" --data "$data" --batch-size 96 \
      --threads 1 --loader-threads 1 | tail -1 >"$work/eval$n.json"
    cat "$work/eval$n.json"
    grep -q '"count": 1001}' "$work/eval$n.json"
    mpi $n "$convnet" predict --checkpoint "$work/model/model.h5" --data "$data" --batch-size 96 \
      --threads 1 --loader-threads 1 --output "$work/predict$n.h5" >/dev/null
  done
  cmp "$work/eval1.json" "$work/eval2.json"
  cmp "$work/eval1.json" "$work/eval3.json"
  /usr/bin/python3 - "$work" "$data" <<'PY'
import sys, h5py, numpy as np
work, data = sys.argv[1], sys.argv[2]
labels = np.asarray(h5py.File(data, "r")["labels"])
ref = np.asarray(h5py.File(f"{work}/predict1.h5", "r")["logits"])
for n in (1, 2, 3):
    f = h5py.File(f"{work}/predict{n}.h5", "r")
    assert f["logits"].shape == (1001, 10), f["logits"].shape
    assert (np.asarray(f["labels"]) == labels).all(), f"labels out of order with {n} ranks"
    assert np.allclose(np.asarray(f["logits"]), ref, atol=1e-5), f"logits differ with {n} ranks"
print("predict: rows in dataset order for 1, 2, 3 ranks")
PY
  echo "eval: ok"
  ;;
hang)
  # Rank 1 stops answering (SIGSTOP) mid-run: rank 0's watchdog ends the job
  # after --comm-timeout with a message naming itself, the step and the wait.
  run=$work/hang
  mpi 2 "$convnet" train --model resnet20 --train-data "$data" --threads 1 --loader-threads 1 \
    --log-every 1 --batch-size 8 --max-steps 100000 --comm-timeout 5 --run-dir "$run" \
    >"$run.log" 2>&1 &
  pid=$!
  for _ in $(seq 600); do
    [[ -f $run/metrics.jsonl ]] && (( $(wc -l <"$run/metrics.jsonl") >= 3 )) && break
    sleep 0.1
  done
  rank1=
  for p in $(pgrep -f "convnet train .*--run-dir $run"); do
    tr '\0' '\n' <"/proc/$p/environ" 2>/dev/null | grep -qx OMPI_COMM_WORLD_RANK=1 && rank1=$p
  done
  [[ -n $rank1 ]] || { echo "rank 1 not found" >&2; exit 1; }
  kill -STOP "$rank1"
  start=$SECONDS
  status=0
  wait "$pid" || status=$?
  elapsed=$((SECONDS - start))
  kill -9 "$rank1" 2>/dev/null || true
  echo "mpirun ended $elapsed s after rank 1 stopped, status $status"
  grep "rank 0 waited" "$run.log"
  (( status != 0 && elapsed < 60 )) || { cat "$run.log"; exit 1; }
  grep -q "rank 0 waited [0-9]* s for the other ranks in the gradient allreduce of step" "$run.log"
  echo "hang: ok"
  ;;
read_metrics)
  # Metrics read only at log lines (the GPU's default) train the same model
  # and log the same losses as metrics read every step; the sums kept between
  # reads cover every sample once.
  for mode in step log; do
    mpi 2 "$convnet" train --model resnet20 --train-data "$data" --lr 0.1 --seed 3 --threads 1 \
      --loader-threads 1 --bucket-mb 0.05 --max-steps 7 --log-every 3 --batch-size 8 \
      --read-metrics $mode --run-dir "$work/$mode" >"$work/$mode.log"
  done
  /usr/bin/python3 "$here/compare_weights.py" "$work/step/model.h5" "$work/log/model.h5" 0
  fields() { grep '"kind": "train"' "$1" | grep -o '"\(step\|loss\|top1\|top5\)": [0-9.e-]*'; }
  diff <(fields "$work/step/metrics.jsonl") <(fields "$work/log/metrics.jsonl")
  [[ $(fields "$work/log/metrics.jsonl" | grep -c '"step"') == 3 ]]  # steps 3, 6 and 7
  echo "read_metrics: ok"
  ;;
*) echo "unknown check $check" >&2; exit 2 ;;
esac
