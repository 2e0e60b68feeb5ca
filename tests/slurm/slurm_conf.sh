# The slurm.conf settings the Slurm tests share (tests/slurm/slurm_check.sh,
# tests/multinode/slurm_cluster.sh): root daemons, munge through a socket in
# DIR, state, spool, pid and log files in DIR (per node: %n), no cgroups,
# accounting or job completion records, requeue allowed.
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
