# A small cluster of K "hosts" on this machine (as root), sourced by the
# multi-node checks: one network namespace per host, each joined by a veth
# pair to a bridge in a switch namespace, with its own address on a private
# test subnet, its own hostname (a UTS namespace) and a real sshd listening
# on its address with a key made for the cluster. Traffic goes only to these
# namespaces' addresses; cluster_down (run on exit, success or failure)
# stops every daemon and removes every namespace and link it made.
#
#   cluster_up K DIR      hosts h1..hK; DIR holds keys, configs and logs
#   on_host I CMD...      runs CMD on host I (its netns and hostname)
#   host_addr I           host I's address
#   cut_host I            takes host I's link down (the node is lost)
#   restore_host I        brings it back
#   mpirun_cluster HOSTS NP ARGS   launch/mpirun.sh on h1, ranks over ssh
#   cluster_down

cluster_tag=$(printf '%x' $(($$ % 0xffffff)))
cluster_ns=cn${cluster_tag}
cluster_subnet=10.$((200 + $$ % 50)).$(($$ / 50 % 250)).0
cluster_prefix=${cluster_subnet%.0}
cluster_hosts=0
cluster_dir=
cluster_launch=$(cd "$(dirname "${BASH_SOURCE[0]}")/../../launch" && pwd)/mpirun.sh

host_addr() { echo "$cluster_prefix.$1"; }
host_ns() { echo "${cluster_ns}h$1"; }

# Runs CMD on host I: in its network namespace and UTS namespace (hostname hI).
on_host() {
  local i=$1
  shift
  ip netns exec "$(host_ns "$i")" unshare --uts sh -c 'hostname "$0"; exec "$@"' "h$i" "$@"
}

cluster_up() {
  local k=$1 i
  cluster_dir=$2
  mkdir -p "$cluster_dir"
  cluster_hosts=$k
  trap cluster_down EXIT
  ip netns add "${cluster_ns}sw"
  ip -n "${cluster_ns}sw" link add br0 type bridge
  ip -n "${cluster_ns}sw" link set br0 up
  for ((i = 1; i <= k; ++i)); do
    ip netns add "$(host_ns "$i")"
    ip link add "v${cluster_tag}a$i" type veth peer name "v${cluster_tag}b$i"
    ip link set "v${cluster_tag}a$i" netns "$(host_ns "$i")"
    ip link set "v${cluster_tag}b$i" netns "${cluster_ns}sw"
    ip -n "$(host_ns "$i")" link set "v${cluster_tag}a$i" name eth0
    ip -n "$(host_ns "$i")" addr add "$(host_addr "$i")/24" dev eth0
    ip -n "$(host_ns "$i")" link set eth0 up
    ip -n "$(host_ns "$i")" link set lo up
    ip -n "${cluster_ns}sw" link set "v${cluster_tag}b$i" master br0
    ip -n "${cluster_ns}sw" link set "v${cluster_tag}b$i" up
  done
  start_sshd
}

# One sshd per host on its test address; a client config naming the hosts.
start_sshd() {
  local i
  mkdir -p /run/sshd "$cluster_dir/ssh"
  chmod 700 "$cluster_dir/ssh"
  ssh-keygen -q -t ed25519 -N '' -f "$cluster_dir/ssh/host_key"
  ssh-keygen -q -t ed25519 -N '' -f "$cluster_dir/ssh/id"
  cp "$cluster_dir/ssh/id.pub" "$cluster_dir/ssh/authorized_keys"
  : >"$cluster_dir/ssh/config"
  for ((i = 1; i <= cluster_hosts; ++i)); do
    cat >"$cluster_dir/ssh/sshd_h$i" <<EOF
ListenAddress $(host_addr "$i")
HostKey $cluster_dir/ssh/host_key
AuthorizedKeysFile $cluster_dir/ssh/authorized_keys
PidFile $cluster_dir/ssh/sshd_h$i.pid
PermitRootLogin prohibit-password
PasswordAuthentication no
StrictModes no
UsePAM no
AcceptEnv OMPI_* PMIX_*
EOF
    on_host "$i" /usr/sbin/sshd -f "$cluster_dir/ssh/sshd_h$i" -E "$cluster_dir/ssh/sshd_h$i.log"
    cat >>"$cluster_dir/ssh/config" <<EOF
Host h$i
  HostName $(host_addr "$i")
  User root
  IdentityFile $cluster_dir/ssh/id
  StrictHostKeyChecking no
  UserKnownHostsFile /dev/null
  LogLevel ERROR
  BatchMode yes
  ConnectTimeout 5
EOF
  done
  for ((i = 1; i <= cluster_hosts; ++i)); do  # every sshd answers before the tests start
    for _ in $(seq 50); do
      on_host 1 ssh -F "$cluster_dir/ssh/config" "h$i" true 2>/dev/null && break
      sleep 0.1
    done
  done
}

cut_host() { ip -n "$(host_ns "$1")" link set eth0 down; }
restore_host() { ip -n "$(host_ns "$1")" link set eth0 up; }

# launch/mpirun.sh on h1, as a user starts a multi-node job: ranks on the
# hosts of HOSTS ("h1:2,h2:1", written as a hostfile) started over ssh, MPI
# kept on the test subnet, one core per rank, unbound (the hosts share this
# machine's cores: each would bind its first rank to core 0).
#   mpirun_cluster HOSTS NP CONVNET_ARGS...
mpirun_cluster() {
  local hosts=$1 np=$2 spec
  shift 2
  local hostfile
  hostfile=$(mktemp "$cluster_dir/hostfile.XXXXXX")
  for spec in ${hosts//,/ }; do echo "${spec%%:*} slots=${spec##*:}" >>"$hostfile"; done
  on_host 1 env NETWORK="$cluster_subnet/24" CORES_PER_RANK=1 BIND_TO=none "$cluster_launch" -np "$np" \
    --hostfile "$hostfile" --mca plm_rsh_agent "ssh -F $cluster_dir/ssh/config" -- "$@"
}

cluster_down() {
  local i pid
  trap - EXIT
  for ((i = 1; i <= cluster_hosts; ++i)); do
    # Everything still running in the host's namespace (ranks, orted, sshd).
    for pid in $(ip netns pids "$(host_ns "$i")" 2>/dev/null); do kill -9 "$pid" 2>/dev/null; done
    ip netns del "$(host_ns "$i")" 2>/dev/null
  done
  ip netns del "${cluster_ns}sw" 2>/dev/null
  cluster_hosts=0
  return 0
}
