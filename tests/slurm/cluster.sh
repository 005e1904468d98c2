# A single-host Slurm cluster (munged, slurmctld, slurmd) living in one temporary directory, for the tests.
# Source this file, then: slurm_cluster_start DIR  (exports SLURM_CONF; returns 77 with a reason when Slurm
# cannot start here) ... slurm_cluster_stop DIR. Everything runs as the calling user (root on CI).

# Prints a free TCP port on this host.
_slurm_free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("", 0)); print(s.getsockname()[1])'
}

# Waits up to $2 seconds for command $1 (a string) to succeed.
_slurm_wait_for() {
  local deadline=$((SECONDS + $2))
  until eval "$1" >/dev/null 2>&1; do
    ((SECONDS < deadline)) || return 1
    sleep 0.5
  done
}

slurm_cluster_skip() {
  echo "SKIPPED: $*" >&2
  return 77
}

slurm_cluster_start() {
  local dir=$1
  local cpus=${SLURM_TEST_CPUS:-8}
  local tool
  for tool in munged slurmctld slurmd sbatch srun squeue scontrol python3; do
    command -v "$tool" >/dev/null 2>&1 ||
      { slurm_cluster_skip "$tool not found (setup.sh installs munge, slurmctld, slurmd, slurm-client)"; return; }
  done
  mkdir -p "$dir"/{munge,state,spool,log,run}
  chmod 700 "$dir" "$dir/munge"

  # munge: own key and socket, so a munged already running on the machine is neither used nor disturbed.
  dd if=/dev/urandom of="$dir/munge/munge.key" bs=1024 count=1 status=none
  chmod 400 "$dir/munge/munge.key"
  munged --force --socket="$dir/munge/munge.socket" --key-file="$dir/munge/munge.key" \
    --pid-file="$dir/munge/munged.pid" --log-file="$dir/log/munged.log" --seed-file="$dir/munge/munged.seed" \
    >"$dir/log/munged.out" 2>&1 ||
    { slurm_cluster_skip "munged did not start: $(tail -n 3 "$dir/log/munged.out" "$dir/log/munged.log" 2>/dev/null | tr '\n' ' ')"; return; }

  # This host as slurmd sees it; real memory from slurmd -C. CPUs are declared (config_overrides) as at least
  # $cpus so that a 4-task job fits on a 2-core CI machine: the tests oversubscribe cores on purpose.
  local node memory real_cpus
  node=$(hostname -s)
  local probe
  probe=$(slurmd -C 2>/dev/null | head -n 1) || true
  memory=$(sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p' <<<"$probe")
  real_cpus=$(sed -n 's/.*CPUs=\([0-9]*\).*/\1/p' <<<"$probe")
  [ -n "$memory" ] || memory=1000
  [ -n "$real_cpus" ] || real_cpus=$(nproc)
  ((real_cpus > cpus)) && cpus=$real_cpus
  local ctld_port slurmd_port
  ctld_port=$(_slurm_free_port)
  slurmd_port=$(_slurm_free_port)
  cat >"$dir/slurm.conf" <<CONF
# Written by tests/slurm/cluster.sh: a throw-away one-host cluster.
ClusterName=dittest
SlurmctldHost=$node(127.0.0.1)
SlurmctldPort=$ctld_port
SlurmdPort=$slurmd_port
SlurmUser=$(id -un)
SlurmdUser=$(id -un)
AuthType=auth/munge
CredType=cred/munge
# cred_expire is also how long a requeued job waits before it may start again (120 s by default).
AuthInfo=socket=$dir/munge/munge.socket,cred_expire=10
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/run/slurmctld.pid
SlurmdPidFile=$dir/run/slurmd.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
MpiDefault=none
ReturnToService=2
SlurmdParameters=config_overrides
SlurmctldTimeout=30
SlurmdTimeout=30
MinJobAge=600
KillWait=5
NodeName=$node NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$memory State=UNKNOWN
PartitionName=debug Nodes=$node Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO
CONF
  export SLURM_CONF=$dir/slurm.conf
  slurmctld -f "$SLURM_CONF" >"$dir/log/slurmctld.out" 2>&1 ||
    { slurm_cluster_skip "slurmctld did not start: $(tail -n 3 "$dir/log/slurmctld.log" "$dir/log/slurmctld.out" 2>/dev/null | tr '\n' ' ')"; return; }
  slurmd -f "$SLURM_CONF" >"$dir/log/slurmd.out" 2>&1 ||
    { slurm_cluster_skip "slurmd did not start: $(tail -n 3 "$dir/log/slurmd.log" "$dir/log/slurmd.out" 2>/dev/null | tr '\n' ' ')"; return; }
  if ! _slurm_wait_for "sinfo -h -N -o %t | grep -qE '^idle'" 60; then
    slurm_cluster_skip "the node did not become idle within 60 s: $(sinfo -h -N -o '%t %E' 2>&1 | head -n 1); $(tail -n 3 "$dir/log/slurmd.log" 2>/dev/null | tr '\n' ' ')"
    return
  fi
  echo "slurm: cluster up in $dir (node $node, $cpus CPUs declared, $real_cpus real)"
}

# Stops the daemons started by slurm_cluster_start (by their pid files) and leaves DIR for the caller to remove.
slurm_cluster_stop() {
  local dir=$1 pidfile pid
  scancel --quiet --full "--user=$(id -un)" >/dev/null 2>&1 || true
  for pidfile in "$dir/run/slurmd.pid" "$dir/run/slurmctld.pid" "$dir/munge/munged.pid"; do
    [ -f "$pidfile" ] || continue
    pid=$(cat "$pidfile")
    kill "$pid" 2>/dev/null || continue
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
  done
}
