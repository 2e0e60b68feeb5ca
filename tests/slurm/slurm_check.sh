#!/bin/bash
# A real one-node Slurm cluster on localhost (munged, slurmctld, slurmd with a
# generated slurm.conf in WORKDIR), running launch/slurm/train.sbatch:
#   1. a 2-task training job runs to the end uninterrupted;
#   2. the same job is preempted mid-run (scancel --signal=USR1, as
#      --signal=USR1@120 does before a time limit): the ranks checkpoint, the
#      script requeues the job, the next run resumes with --resume auto;
#   3. both end with the same weights, bit for bit.
# Every daemon started here is stopped on exit. Needs root (slurmd, munged).
# usage: slurm_check.sh CONVNET DATA WORKDIR
set -euo pipefail
convnet=$1 data=$2 work=$3
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
for tool in munged slurmctld slurmd sbatch scontrol squeue scancel; do
  command -v $tool >/dev/null || { echo "missing $tool (launch/install-deps.sh installs slurm-wlm and munge)" >&2; exit 1; }
done
[[ $(id -u) -eq 0 ]] || { echo "slurm_check.sh must run as root (slurmd, munged)" >&2; exit 1; }

rm -rf "$work" && mkdir -p "$work"/{state,jobs}
daemons=()
cleanup() {
  set +e
  [[ -n ${SLURM_CONF:-} ]] && scancel --quiet --full $(squeue -h -o %i 2>/dev/null) 2>/dev/null
  for pid in "${daemons[@]}"; do kill "$pid" 2>/dev/null; done
  for pid in "${daemons[@]}"; do
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null
  done
  pkill -9 -f "slurmstepd.*$work" 2>/dev/null
}
trap cleanup EXIT

# munged with its own socket (a system munged, if any, is left alone).
munged --force --socket="$work/munge.socket" --pid-file="$work/munged.pid" \
  --log-file="$work/munged.log" --seed-file="$work/munged.seed" \
  --key-file=/etc/munge/munge.key
for _ in $(seq 50); do [[ -f $work/munged.pid ]] && break; sleep 0.1; done
daemons+=("$(cat "$work/munged.pid")")

host=$(hostname -s)
port=$(( 20000 + RANDOM % 20000 ))
source "$here/slurm_conf.sh"
{
  slurm_conf_common convnet-test "$host" "$port" "$work"
  echo "NodeName=$host CPUs=$(nproc) State=UNKNOWN"
  echo "PartitionName=test Nodes=$host Default=YES MaxTime=INFINITE State=UP OverSubscribe=YES"
} >"$work/slurm.conf"
mkdir -p "$work/spool-$host"
export SLURM_CONF=$work/slurm.conf
slurmctld -D -f "$SLURM_CONF" >"$work/slurmctld.out" 2>&1 &
daemons+=($!)
slurmd -D -f "$SLURM_CONF" >"$work/slurmd.out" 2>&1 &
daemons+=($!)
for _ in $(seq 100); do
  sinfo -h -o %t 2>/dev/null | grep -qE '^idle' && break
  sleep 0.2
done
sinfo -h -o '%P %t %c' | grep -q idle || { cat "$work"/slurm*.log; echo "slurm did not come up" >&2; exit 1; }
echo "slurm: one-node cluster up ($(sinfo -h -o '%c CPUs, %t'))"

steps=40
job() {  # job NAME: submits train.sbatch for 2 tasks on this node
  local name=$1
  sbatch --parsable --nodes=1 --ntasks-per-node=2 --cpus-per-task=1 --time=10 \
    --output="$work/jobs/$name.out" --chdir="$work/jobs" \
    --export=ALL,CONVNET="$convnet",OMPI_MCA_btl_vader_single_copy_mechanism=none \
    "$root/launch/slurm/train.sbatch" --model resnet20 --train-data "$data" --batch-size 8 \
    --max-steps $steps --lr 0.1 --schedule cosine --seed 9 --loader-threads 1 --log-every 1 \
    --run-dir "$work/jobs/$name"
}
wait_done() {  # wait_done JOBID: until the job left the queue
  for _ in $(seq 1500); do
    squeue -h -j "$1" 2>/dev/null | grep -q . || return 0
    sleep 0.2
  done
  echo "job $1 did not finish" >&2; return 1
}

straight=$(job straight)
wait_done "$straight"
grep -q '"steps": '$steps "$work/jobs/straight.out" || { cat "$work/jobs/straight.out"; exit 1; }

preempted=$(job preempted)
metrics=$work/jobs/preempted/metrics.jsonl
for _ in $(seq 1500); do
  [[ -f $metrics ]] && (( $(wc -l <"$metrics") >= 5 )) && break
  sleep 0.2
done
scancel --signal=USR1 "$preempted"
slurm_restart_when_requeued "$preempted"
wait_done "$preempted"
cat "$work/jobs/preempted.out"
grep -q "stopped with a checkpoint; requeueing job $preempted" "$work/jobs/preempted.out"
grep -q "resuming from .*checkpoint-" "$work/jobs/preempted.out"
grep -q '"steps": '$steps "$work/jobs/preempted.out"
/usr/bin/python3 "$root/tests/trainer/compare_weights.py" \
  "$work/jobs/straight/model.h5" "$work/jobs/preempted/model.h5" 0
echo "slurm: ok"
