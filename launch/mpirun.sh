#!/usr/bin/env bash
# mpirun with the options convnet jobs want and users forget:
#   - one rank per socket-sized share of cores: ranks bound to cores, and
#     OMP_NUM_THREADS (and --threads) = cores per rank, so OpenMP threads never
#     oversubscribe a core (a 2-thread step ran 10x slower with a busy core);
#   - SIGTERM gives ranks time to write their checkpoint: Open MPI SIGKILLs
#     ranks 1 s after forwarding SIGTERM by default (odls_base_sigkill_timeout);
#     here SIGTERM_GRACE_S seconds (default 30);
#   - a lost node is noticed in about 11 s (TCP keepalive on Open MPI's
#     daemon connections; the default, 300 s + 9 x 20 s, left mpirun hanging
#     for minutes), so a job whose node died ends: measured on network
#     namespaces, within 11 s + 2 x SIGTERM_GRACE_S of the loss (Open MPI
#     waits out the grace while it takes down the job);
#   - --allow-run-as-root when run as root (containers), and the environment
#     variables convnet reads exported to every rank.
# usage: launch/mpirun.sh -np N [--hostfile F] [--npernode R] -- convnet train ...
# Every option before `--` goes to mpirun. On several nodes (--hostfile F:
# one line per node, "node01 slots=4"), every node needs the same paths for
# the convnet binary and the data, the run directory on a shared file
# system, and ssh from this node to the others without a password.
# Ranks per node: --npernode R (or -N R), else N / the hosts in F, else N.
# CORES_PER_RANK overrides the default (this node's cores / ranks per node;
# nodes are taken to be alike). NETWORK=10.1.0.0/16 keeps MPI's traffic on
# that network (btl_tcp_if_include and oob_tcp_if_include). BIND_TO=none
# leaves ranks unbound (nodes that share cores, as the test cluster's do).
set -euo pipefail
mpi_args=()
ranks=1 per_node= hostfile=
while (($#)) && [[ $1 != -- ]]; do
  case $1 in
  -np | -n) ranks=$2 ;;
  --npernode | -npernode | -N) per_node=$2 ;;
  --hostfile | -hostfile | --machinefile) hostfile=$2 ;;
  esac
  mpi_args+=("$1")
  shift
done
[[ ${1:-} == -- ]] && shift
(($#)) || { echo "usage: launch/mpirun.sh -np N [mpirun options] -- convnet COMMAND ..." >&2; exit 2; }
if [[ -z $per_node ]]; then
  per_node=$ranks
  if [[ -n $hostfile ]]; then
    hosts=$(grep -cv '^\s*\(#\|$\)' "$hostfile")
    ((hosts > 0)) && per_node=$(((ranks + hosts - 1) / hosts))
  fi
fi
cores=$(nproc)
grace=${SIGTERM_GRACE_S:-30}
per_rank=${CORES_PER_RANK:-$((cores / per_node > 0 ? cores / per_node : 1))}
extra=(--mca odls_base_sigkill_timeout "$grace" -x OMP_NUM_THREADS="$per_rank")
if ((per_node * per_rank > cores)); then
  extra+=(--oversubscribe --bind-to none)
elif [[ ${BIND_TO:-core} == none ]]; then
  extra+=(--bind-to none)  # and no OpenMP pinning: every rank's thread would take core 0
else
  extra+=(--bind-to core --map-by "slot:PE=$per_rank" -x OMP_PROC_BIND=close -x OMP_PLACES=cores)
fi
extra+=(--mca oob_tcp_keepalive_time 5 --mca oob_tcp_keepalive_intvl 2
        --mca oob_tcp_keepalive_probes 3)
[[ -n ${NETWORK:-} ]] && extra+=(--mca btl_tcp_if_include "$NETWORK" --mca oob_tcp_if_include "$NETWORK")
[[ $(id -u) -eq 0 ]] && extra+=(--allow-run-as-root)
exec mpirun "${mpi_args[@]}" "${extra[@]}" "$@"
