# What the Slurm tests share (tests/slurm/slurm_check.sh,
# tests/multinode/slurm_cluster.sh): the slurm.conf settings (root daemons,
# munge through a socket in DIR, state, spool, pid and log files in DIR (per
# node: %n), no cgroups, accounting or job completion records, requeue
# allowed), and the restart of a requeued job.
#   slurm_restart_when_requeued JOBID [PREFIX...]  (Slurm commands run as PREFIX CMD)

#   slurm_conf_common CLUSTER CONTROLLER PORT DIR  (prints it; the caller
#   adds the NodeName and PartitionName lines)
slurm_conf_common() {
  local cluster=$1 controller=$2 port=$3 dir=$4
  cat <<CONF
ClusterName=$cluster
SlurmctldHost=$controller
SlurmctldPort=$port
SlurmdPort=$((port + 1))
AuthType=auth/munge
AuthInfo=socket=$dir/munge.socket
CredType=cred/munge
SlurmUser=root
SlurmdUser=root
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool-%n
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd-%n.pid
SlurmctldLogFile=$dir/slurmctld.log
SlurmdLogFile=$dir/slurmd-%n.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
MpiDefault=none
ReturnToService=2
SchedulerType=sched/builtin
JobCompType=jobcomp/none
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
KillWait=30
JobRequeue=1
CONF
}

# Slurm holds a requeued job for about 2 minutes (BeginTime ahead); a test
# need not wait for that: it starts the job once it is pending again and its
# first run's step daemons are gone (the rerun reuses the job id).
slurm_restart_when_requeued() {
  local job=$1
  shift
  for _ in $(seq 600); do
    [[ $("$@" squeue -h -j "$job" -o %T 2>/dev/null) == PENDING ]] && break
    sleep 0.2
  done
  for _ in $(seq 600); do
    pgrep -f "slurmstepd: \[$job\." >/dev/null || break
    sleep 0.2
  done
  sleep 2
  "$@" scontrol update JobId="$job" StartTime=now
}
