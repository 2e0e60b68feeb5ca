#!/bin/bash
# Multi-node checks on a cluster of network-namespace hosts (cluster.sh):
# ranks started by mpirun --host over ssh, TCP between hosts. Runs as root
# (ctest in CI). usage: multinode_check.sh CHECK CONVNET DATA WORKDIR
#   same_answer  2 hosts x 1 rank and 3 hosts x 1 rank end with weights and
#                losses bit-identical to 2 and 3 ranks on one host
#   lost_node    one of two hosts is cut off mid-run: the job ends within
#                --comm-timeout plus the launcher's window, naming the silent
#                rank and its host; no convnet process is left on any host;
#                the last checkpoint is intact, and --resume auto on the host
#                that is left (2 ranks) ends with the weights of an
#                uninterrupted 2-host run; the host coming back too late (its
#                link restored after the job ended) changes nothing in the run
#                directory
#   slurm        a real Slurm cluster with one slurmd per host (slurmctld on h1):
#                launch/slurm/train.sbatch with --nodes=2 runs through srun
#                --mpi=pmix across both hosts; the same job preempted
#                (SIGUSR1), requeued and resumed on the two hosts ends
#                bit-identical to the uninterrupted one
#   slurm_lost_node  the same Slurm job submitted with --no-kill, one of its two
#                nodes cut off mid-run: the batch script reruns the step on the node
#                that answers, from the newest checkpoint, in the same allocation,
#                and the job ends with the uninterrupted run's model.h5 (BN
#                running statistics and counters included), bit for bit
#   stall        a rank stopped for a while (SIGSTOP, then SIGCONT): rank 0
#                warns after a quarter of --comm-timeout, naming it, its host
#                and where in its step it was (data loader, forward/backward,
#                waiting), and the job then finishes normally
set -euo pipefail
check=$1 convnet=$2 data=$3 work=$4
here=$(cd "$(dirname "$0")" && pwd)
compare=$here/../trainer/compare_weights.py
[[ $(id -u) == 0 ]] || { echo "multinode: needs root (network namespaces, sshd)" >&2; exit 1; }
rm -rf "$work" && mkdir -p "$work"
source "$here/cluster.sh"
common=(--model resnet20 --train-data "$data" --lr 0.1 --seed 3 --threads 1 --loader-threads 1
        --log-every 1 --bucket-mb 0.05 --batch-size 8)
job() {  # HOSTS ARGS...: ranks per host, e.g. "h1:1,h2:1"
  local hosts=$1 np=0 spec
  shift
  for spec in ${hosts//,/ }; do np=$((np + ${spec##*:})); done
  timeout -k 5 300 bash -c "$(declare -f on_host host_ns mpirun_cluster)
    $(declare -p cluster_dir cluster_subnet cluster_ns cluster_launch)
    mpirun_cluster $hosts $np \"\$@\"" job "$@"
}
losses() { grep '"kind": "train"' "$1/metrics.jsonl" | grep -o '"\(step\|loss\)": [0-9.e-]*'; }
trained() {  # RUN_DIR N: waits (up to 60 s) until the run logged N training records
  for _ in $(seq 600); do
    [[ -f $1/metrics.jsonl ]] && (($(grep -c '"train"' "$1/metrics.jsonl") >= $2)) && return
    sleep 0.1
  done
}
convnet_left() {  # convnet processes still running on any host of the cluster
  local i pid n=0
  for ((i = 1; i <= cluster_hosts; ++i)); do
    for pid in $(ip netns pids "$(host_ns "$i")"); do
      [[ $(cat "/proc/$pid/comm" 2>/dev/null) == convnet ]] && n=$((n + 1))
    done
  done
  echo $n
}

case $check in
same_answer)
  cluster_up 3 "$work/cluster"
  for k in 2 3; do
    hosts=h1:1,h2:1
    ((k == 3)) && hosts=h1:1,h2:1,h3:1
    job "$hosts" "$convnet" train "${common[@]}" --max-steps 6 --run-dir "$work/hosts$k" \
      >"$work/hosts$k.log"
    job "h1:$k" "$convnet" train "${common[@]}" --max-steps 6 --run-dir "$work/one$k" \
      >"$work/one$k.log"
    grep -q "world $k x batch 8" "$work/hosts$k.log"
    /usr/bin/python3 "$compare" "$work/hosts$k/model.h5" "$work/one$k/model.h5" 0
    diff <(losses "$work/hosts$k") <(losses "$work/one$k")
    echo "$k hosts: bit-identical to $k ranks on one host"
  done
  echo "same_answer: ok"
  ;;
lost_node)
  cluster_up 2 "$work/cluster"
  run=(--max-steps 40 --checkpoint-every 5steps --keep 2)
  job h1:1,h2:1 "$convnet" train "${common[@]}" "${run[@]}" --run-dir "$work/whole" >/dev/null
  # The same job, cut off from h2 once it has passed a checkpoint.
  job h1:1,h2:1 "$convnet" train "${common[@]}" "${run[@]}" --comm-timeout 5 \
    --run-dir "$work/cut" >"$work/cut.log" 2>&1 &
  pid=$!
  trained "$work/cut" 12
  cut_host 2
  start=$SECONDS
  status=0
  wait "$pid" || status=$?
  elapsed=$((SECONDS - start))
  echo "the job ended $elapsed s after h2 was cut off, status $status"
  grep "convnet: error" "$work/cut.log"
  # launch/mpirun.sh: the lost host is noticed in about 11 s, then Open MPI
  # waits out the SIGTERM grace (30 s) twice while it ends the job: 71 s,
  # within 90 s.
  ((status != 0 && elapsed <= 90)) || { cat "$work/cut.log"; exit 1; }
  grep -q "not answering: rank 1 on host h2 (last heard" "$work/cut.log"
  grep -q "in the gradient allreduce of step" "$work/cut.log"
  for _ in $(seq 300); do  # h2's own rank ends itself (its watchdog), within 30 s
    (($(convnet_left) == 0)) && break
    sleep 0.1
  done
  (($(convnet_left) == 0)) || { echo "convnet processes left after the cut" >&2; exit 1; }
  ls "$work/cut"
  # h2 comes back too late: nothing of its own run reaches the run directory.
  before=$(cd "$work/cut" && ls -l --time-style=+%s.%N && md5sum ./*)
  restore_host 2
  sleep 5
  after=$(cd "$work/cut" && ls -l --time-style=+%s.%N && md5sum ./*)
  [[ $before == "$after" ]] || { echo "the run directory changed after h2 came back" >&2; exit 1; }
  ! ls "$work/cut" | grep -q tmp
  # Resume on the host that is left: 2 ranks on h1.
  job h1:2 "$convnet" train "${common[@]}" "${run[@]}" --resume auto --run-dir "$work/cut" \
    >"$work/resumed.log"
  grep -o "resuming from [^ ]*" "$work/resumed.log"
  /usr/bin/python3 "$compare" "$work/whole/model.h5" "$work/cut/model.h5" 0
  echo "lost_node: ok"
  ;;
stall)
  cluster_up 2 "$work/cluster"
  job h1:1,h2:1 "$convnet" train "${common[@]}" --max-steps 40 --comm-timeout 30 \
    --run-dir "$work/stall" >"$work/stall.log" 2>&1 &
  pid=$!
  trained "$work/stall" 5
  rank1=$(for p in $(ip netns pids "$(host_ns 2)"); do
    [[ $(cat "/proc/$p/comm" 2>/dev/null) == convnet ]] && echo "$p"
  done)
  [[ -n $rank1 ]] || { echo "rank 1 not found on h2" >&2; exit 1; }
  kill -STOP "$rank1"
  sleep 12  # past the warning (a quarter of 30 s), well before the timeout
  kill -CONT "$rank1"
  wait "$pid"
  grep "convnet: warning" "$work/stall.log"
  grep -q "rank 0 has waited [0-9]* s in the gradient allreduce of step [0-9]*: not answering: rank 1 on host h2" \
    "$work/stall.log"
  # ... and where in its step it stopped.
  grep -q "rank 1 on host h2 (last heard [0-9]* s ago, at step [0-9]*, \(in the data loader\|in forward/backward\|waiting for the others\))" \
    "$work/stall.log"
  ! grep -q "convnet: error" "$work/stall.log"
  [[ -f $work/stall/model.h5 ]]
  echo "stall: ok"
  ;;
slurm)
  cluster_up 2 "$work/cluster"
  source "$here/slurm_cluster.sh"
  slurm_up "$work/slurm"
  steps=30
  straight=$(slurm_job straight $steps)
  slurm_wait "$straight"
  grep -q '"steps": '$steps "$work/slurm/jobs/straight.out" ||
    { cat "$work/slurm/jobs/straight.out"; exit 1; }
  grep -q "on 2 node(s), 2 ranks" "$work/slurm/jobs/straight.out"
  grep -q "mpi: rank 0 of 2 on h1, 1 on this node" "$work/slurm/jobs/straight.out"
  preempted=$(slurm_job preempted $steps)
  metrics=$work/slurm/jobs/preempted/metrics.jsonl
  for _ in $(seq 1500); do
    [[ -f $metrics ]] && (($(wc -l <"$metrics") >= 5)) && break
    sleep 0.2
  done
  slurm scancel --signal=USR1 "$preempted"
  slurm_restart_when_requeued "$preempted" slurm
  slurm_wait "$preempted"
  out=$work/slurm/jobs/preempted.out
  grep -q "stopped with a checkpoint; requeueing job $preempted" "$out" || { cat "$out"; exit 1; }
  grep -q "resuming from .*checkpoint-" "$out"
  grep -q '"steps": '$steps "$out"
  /usr/bin/python3 "$compare" "$work/slurm/jobs/straight/model.h5" \
    "$work/slurm/jobs/preempted/model.h5" 0
  echo "slurm: ok"
  ;;
slurm_lost_node)
  cluster_up 2 "$work/cluster"
  source "$here/slurm_cluster.sh"
  # A node silent for 15 s is down (Slurm's default waits 300 s), and the job
  # survives it only with --no-kill.
  slurm_extra_conf=(SlurmdTimeout=15)
  slurm_up "$work/slurm"
  steps=400
  run=(--checkpoint-every 5steps --comm-timeout 5)
  straight=$(slurm_job straight $steps "${run[@]}")
  slurm_wait "$straight"
  slurm_sbatch_options=(--no-kill)
  cut=$(slurm_job cut $steps "${run[@]}")
  metrics=$work/slurm/jobs/cut/metrics.jsonl
  for _ in $(seq 1500); do
    [[ -f $metrics ]] && (($(grep -c '"train"' "$metrics") >= 12)) && break
    sleep 0.2
  done
  cut_host 2
  start=$SECONDS
  slurm_wait "$cut"
  out=$work/slurm/jobs/cut.out
  echo "the job ended $((SECONDS - start)) s after h2 was cut off"
  grep "convnet" "$out" | grep -v '"kind"' | head -20
  grep -q "not answering: rank 1 on host h2" "$out" || { cat "$out"; exit 1; }
  grep -q "continuing on the 1 that answer: h1" "$out"
  grep -q "world 1 x batch 8 x accumulate 2" "$out"
  grep -q '"steps": '$steps "$out"
  /usr/bin/python3 "$compare" "$work/slurm/jobs/straight/model.h5" "$work/slurm/jobs/cut/model.h5" 0
  echo "slurm_lost_node: ok"
  ;;
*) echo "unknown check $check" >&2; exit 2 ;;
esac
