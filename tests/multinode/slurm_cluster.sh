# A real Slurm cluster on the hosts of cluster.sh (sourced after cluster_up):
# one munged (its socket in the work directory, which every host sees),
# slurmctld on h1, one slurmd per host named after it. slurm_down (chained
# into cluster_down) stops them.
#   slurm_up DIR                   conf, state and logs in DIR
#   slurm CMD...                   a Slurm client command, run on h1
#   slurm_job NAME STEPS [OPTIONS...]  submits launch/slurm/train.sbatch on every host, 1 task
#                                  each; OPTIONS go to convnet train, and the array
#                                  slurm_sbatch_options (if set) to sbatch
#   slurm_wait JOBID               until the job has left the queue
#   slurm_restart_when_requeued JOBID slurm   (tests/slurm/slurm_conf.sh, through h1)

slurm_dir=
slurm_munged=
slurm_extra_conf=()  # more slurm.conf lines (set before slurm_up)
slurm_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
source "$slurm_root/tests/slurm/slurm_conf.sh"

slurm() { on_host 1 env SLURM_CONF="$slurm_dir/slurm.conf" "$@"; }

# ip netns exec gives a host a fresh /sys without this machine's cgroup
# hierarchies, which slurmd wants: mount the same ones there (in the host's
# own mount namespace, gone with its processes). Each slurmd reads its own
# copy of slurm.conf beside an mpi.conf that gives PMIx a directory of that
# host's own (PMIx names its per-step directories alike on every node, and
# these hosts share one /tmp).
slurmd_on_host() {
  local i=$1 mounts conf=$slurm_dir/conf-h$1
  mounts=$(awk '$3 == "cgroup" || $3 == "cgroup2" {print $3, $2, $4}' /proc/mounts)
  mkdir -p "$conf" "$slurm_dir/tmp-h$i"
  cp "$slurm_dir/slurm.conf" "$conf/slurm.conf"
  echo "PMIxCliTmpDirBase=$slurm_dir/tmp-h$i" >"$conf/mpi.conf"
  on_host "$i" sh -c 'mount -t tmpfs cgroup_root /sys/fs/cgroup || exit 1
    echo "$0" | while read -r type dir options; do
      mkdir -p "$dir" && mount -t "$type" -o "$options" "$type" "$dir"
    done
    exec "$@"' "$mounts" slurmd -D -N "h$i" -f "$conf/slurm.conf"
}

slurm_up() {
  local i port nodes=
  slurm_dir=$1
  mkdir -p "$slurm_dir"/{state,jobs}
  munged --force --socket="$slurm_dir/munge.socket" --pid-file="$slurm_dir/munged.pid" \
    --log-file="$slurm_dir/munged.log" --seed-file="$slurm_dir/munged.seed" \
    --key-file=/etc/munge/munge.key
  for _ in $(seq 50); do [[ -f $slurm_dir/munged.pid ]] && break; sleep 0.1; done
  slurm_munged=$(cat "$slurm_dir/munged.pid")
  trap 'slurm_down; cluster_down' EXIT
  port=$((20000 + RANDOM % 20000))
  for ((i = 1; i <= cluster_hosts; ++i)); do nodes+="${nodes:+,}h$i"; done
  {
    slurm_conf_common convnet-multinode "h1($(host_addr 1))" "$port" "$slurm_dir"
    for ((i = 1; i <= cluster_hosts; ++i)); do
      echo "NodeName=h$i NodeAddr=$(host_addr "$i") CPUs=1 State=UNKNOWN"
    done
    echo "PartitionName=test Nodes=$nodes Default=YES MaxTime=INFINITE State=UP"
    printf '%s\n' "${slurm_extra_conf[@]}"
  } >"$slurm_dir/slurm.conf"
  on_host 1 slurmctld -D -f "$slurm_dir/slurm.conf" >"$slurm_dir/slurmctld.out" 2>&1 &
  for ((i = 1; i <= cluster_hosts; ++i)); do
    mkdir -p "$slurm_dir/spool-h$i"
    slurmd_on_host "$i" >"$slurm_dir/slurmd-h$i.out" 2>&1 &
  done
  for _ in $(seq 150); do
    (($(slurm sinfo -h -o '%t %D' 2>/dev/null | awk '$1 == "idle" {n += $2} END {print n + 0}') ==
      cluster_hosts)) && break
    sleep 0.2
  done
  slurm sinfo -h -o '%t %D' | grep -q "idle $cluster_hosts" ||
    { cat "$slurm_dir"/*.log; echo "slurm did not come up on $cluster_hosts hosts" >&2; return 1; }
  echo "slurm: $cluster_hosts-node cluster up"
}

slurm_sbatch_options=()
slurm_job() {
  local name=$1 steps=$2
  shift 2
  slurm sbatch --parsable "${slurm_sbatch_options[@]}" --nodes="$cluster_hosts" \
    --ntasks-per-node=1 --cpus-per-task=1 \
    --time=10 --output="$slurm_dir/jobs/$name.out" --chdir="$slurm_dir/jobs" \
    --export=ALL,CONVNET="$convnet",OMPI_MCA_btl_tcp_if_include="$cluster_subnet/24",OMPI_MCA_oob_tcp_if_include="$cluster_subnet/24" \
    "$slurm_root/launch/slurm/train.sbatch" --model resnet20 --train-data "$data" --batch-size 8 \
    --max-steps "$steps" --lr 0.1 --schedule cosine --seed 9 --loader-threads 1 --log-every 1 \
    --run-dir "$slurm_dir/jobs/$name" "$@"
}

slurm_wait() {
  for _ in $(seq 1500); do
    slurm squeue -h -j "$1" 2>/dev/null | grep -q . || return 0
    sleep 0.2
  done
  echo "job $1 did not finish" >&2
  return 1
}


slurm_down() {
  trap - EXIT
  [[ -n $slurm_munged ]] && kill "$slurm_munged" 2>/dev/null
  slurm_munged=
  return 0
}
