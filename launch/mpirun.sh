#!/usr/bin/env bash
# mpirun with the options convnet jobs want and users forget:
#   - one rank per socket-sized share of cores: ranks bound to cores, and
#     OMP_NUM_THREADS (and --threads) = cores per rank, so OpenMP threads never
#     oversubscribe a core (a 2-thread step ran 10x slower with a busy core);
#   - SIGTERM gives ranks time to write their checkpoint: Open MPI SIGKILLs
#     ranks 1 s after forwarding SIGTERM by default (odls_base_sigkill_timeout);
#   - --allow-run-as-root when run as root (containers), and the environment
#     variables convnet reads exported to every rank.
# usage: launch/mpirun.sh -np N [--hostfile F] -- convnet train ...
# Every option before `--` goes to mpirun; CORES_PER_RANK overrides the
# default (this node's cores / N).
set -euo pipefail
mpi_args=()
ranks=1
while (($#)) && [[ $1 != -- ]]; do
  [[ $1 == -np || $1 == -n ]] && ranks=$2
  mpi_args+=("$1")
  shift
done
[[ ${1:-} == -- ]] && shift
(($#)) || { echo "usage: launch/mpirun.sh -np N [mpirun options] -- convnet COMMAND ..." >&2; exit 2; }
cores=$(nproc)
per_rank=${CORES_PER_RANK:-$(( cores / ranks > 0 ? cores / ranks : 1 ))}
extra=(--bind-to core --map-by "slot:PE=$per_rank" --mca odls_base_sigkill_timeout 120
       -x OMP_NUM_THREADS="$per_rank" -x OMP_PROC_BIND=close -x OMP_PLACES=cores)
(( ranks * per_rank > cores )) && extra=(--oversubscribe --bind-to none
       --mca odls_base_sigkill_timeout 120 -x OMP_NUM_THREADS="$per_rank")
[[ $(id -u) -eq 0 ]] && extra+=(--allow-run-as-root)
exec mpirun "${mpi_args[@]}" "${extra[@]}" "$@"
