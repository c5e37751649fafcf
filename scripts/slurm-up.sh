#!/usr/bin/env bash
# Start a real Slurm cluster on this host, for the Slurm engine's tests, benchmarks and demos.
#
#   scripts/slurm-up.sh            # install what is missing, start, wait until every node is idle
#   scripts/slurm-down.sh [--wipe] # stop it (and forget its jobs and accounts)
#
# Debian's packages (slurmctld, slurmd, slurmdbd, slurm-client, munge; mariadb-server only when
# nothing answers on 127.0.0.1:3306), run as root. Everything the cluster writes lives under
# $BACKFILL_SLURM_DIR (default /tmp/backfill-slurm); the clients find it with
# SLURM_CONF=$BACKFILL_SLURM_DIR/slurm.conf, which this script prints last.
#
# The cluster: partition `gpu` of $BACKFILL_SLURM_NODES nodes (default 4: gpu01..gpu04), each 8
# fake H100s (character devices made with mknod: a gres without a File= is dropped and the node
# goes INVAL), one slurmd per node on ports 17001.., accounting in MariaDB through slurmdbd,
# cons_tres selection, multifactor priority and QOS preemption. It holds no Backfill-specific
# QOS or accounts: the Slurm engine sets those up itself, as it would on an owner's cluster. The
# owner's own teams submit under account `research` (QOS `normal`).
#
# Running it again with the cluster up does nothing but wait for it to be ready.
set -euo pipefail

DIR=${BACKFILL_SLURM_DIR:-/tmp/backfill-slurm}
NODES=${BACKFILL_SLURM_NODES:-4}
CLUSTER=${BACKFILL_SLURM_CLUSTER:-backfill}
DB=${BACKFILL_SLURM_DB:-slurm_acct_backfill}
CTLD_PORT=${BACKFILL_SLURM_PORT:-6817}
DBD_PORT=$((CTLD_PORT + 2))
NODE_PORT=${BACKFILL_SLURM_NODE_PORT:-17001}
export SLURM_CONF=$DIR/slurm.conf

say() { printf 'slurm-up: %s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }
wait_for() { # wait_for SECONDS WHAT COMMAND...
    local deadline=$((SECONDS + $1)) what=$2
    shift 2
    until "$@" >/dev/null 2>&1; do
        ((SECONDS < deadline)) || die "$what did not come up within the time allowed; logs in $DIR/log"
        sleep 0.2
    done
}

[[ $(id -u) == 0 ]] || die "run as root (the daemons run as root, the jobs as their submitter)"
((NODES >= 1 && NODES <= 16)) || die "BACKFILL_SLURM_NODES must be 1..16, not $NODES"

# -- packages --------------------------------------------------------------------------------------
need=()
for pair in slurmctld:slurmctld slurmd:slurmd slurmdbd:slurmdbd sbatch:slurm-client munged:munge; do
    command -v "${pair%%:*}" >/dev/null 2>&1 || need+=("${pair#*:}")
done
if ! mysql -h 127.0.0.1 -P 3306 -u root -e 'select 1' >/dev/null 2>&1; then
    command -v mariadbd >/dev/null 2>&1 || need+=(mariadb-server)
fi
if ((${#need[@]})); then
    say "installing ${need[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -q "${need[@]}" >/dev/null 2>&1 ||
        { apt-get update -q >/dev/null && apt-get install -y -q "${need[@]}" >/dev/null; } ||
        die "apt-get could not install ${need[*]}"
fi

# -- already up? -----------------------------------------------------------------------------------
ready() {
    scontrol ping 2>/dev/null | grep -q 'is UP' || return 1
    local idle
    idle=$(sinfo -h -N -p gpu -t idle,mixed,allocated -o '%N' 2>/dev/null | sort -u | wc -l)
    ((idle == NODES)) && sacctmgr -n -P show tres type=gres 2>/dev/null | grep -q '^gres|gpu|'
}
if [[ -f $DIR/slurm.conf ]] && ready; then
    say "already up ($NODES nodes)"
    echo "export SLURM_CONF=$SLURM_CONF"
    exit 0
fi

# -- munge and MariaDB -----------------------------------------------------------------------------
if ! munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
    [[ -s /etc/munge/munge.key ]] || mungekey --create >/dev/null
    install -d -o munge -g munge -m 0755 /run/munge
    chown munge:munge /etc/munge/munge.key && chmod 0400 /etc/munge/munge.key
    runuser -u munge -- munged
    wait_for 10 munged sh -c 'munge -n | unmunge'
fi
if ! mysql -h 127.0.0.1 -P 3306 -u root -e 'select 1' >/dev/null 2>&1; then
    install -d -o mysql -g mysql /run/mysqld
    (mysqld_safe --bind-address=127.0.0.1 --port=3306 >/dev/null 2>&1 &)
    wait_for 60 MariaDB mysql -h 127.0.0.1 -P 3306 -u root -e 'select 1'
fi

# -- configuration ---------------------------------------------------------------------------------
mkdir -p "$DIR"/{log,state,spool,run,dev}
for i in 0 1 2 3 4 5 6 7; do # fake GPUs: real character devices (NVIDIA's major number)
    [[ -c $DIR/dev/nvidia$i ]] || mknod "$DIR/dev/nvidia$i" c 195 "$i"
done
last=$(printf 'gpu%02d' "$NODES")
names=$([[ $NODES == 1 ]] && echo gpu01 || echo "gpu[01-${last#gpu}]")
ports=$([[ $NODES == 1 ]] && echo "$NODE_PORT" || echo "[$NODE_PORT-$((NODE_PORT + NODES - 1))]")

cat >"$DIR/slurm.conf" <<EOF
# Written by scripts/slurm-up.sh: a test cluster on one host.
ClusterName=$CLUSTER
SlurmctldHost=localhost
SlurmctldPort=$CTLD_PORT
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool/%n
SlurmctldPidFile=$DIR/run/slurmctld.pid
SlurmdPidFile=$DIR/run/slurmd-%n.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd-%n.log
SlurmctldDebug=info
SlurmdDebug=info
SlurmdParameters=config_overrides
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
MpiDefault=none
ReturnToService=2
# Jobs that ended stay in squeue for 5 minutes (sacct has them for good).
MinJobAge=300
KillWait=5
# Scheduling: consumable GPUs, QOS priorities, and QOS preemption (a preempted job is signalled,
# kept for its QOS's GraceTime, then cancelled).
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
GresTypes=gpu
PriorityType=priority/multifactor
PriorityWeightQOS=100000
PriorityWeightAge=1
PreemptType=preempt/qos
PreemptMode=CANCEL
SchedulerParameters=bf_interval=1,bf_resolution=1,sched_min_interval=100000
# While a job completes (a preempted one letting go of its GPUs), schedule nothing: else the
# owner's pending job, seeing the GPUs still busy, has Slurm preempt a second spot job needlessly.
CompleteWait=5
# Accounting: slurmdbd in MariaDB; GPU limits per account enforced.
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStoragePort=$DBD_PORT
AccountingStorageTRES=gres/gpu,gres/gpu:h100
AccountingStorageEnforce=associations,limits,qos,safe
AccountingStoreFlags=job_comment
JobCompType=jobcomp/none

NodeName=$names NodeHostname=localhost Port=$ports CPUs=32 RealMemory=256000 Gres=gpu:h100:8 State=UNKNOWN
PartitionName=gpu Nodes=$names Default=YES MaxTime=INFINITE State=UP
EOF
cat >"$DIR/gres.conf" <<EOF
AutoDetect=off
NodeName=$names Name=gpu Type=h100 File=$DIR/dev/nvidia[0-7]
EOF
cat >"$DIR/slurmdbd.conf" <<EOF
DbdHost=localhost
DbdPort=$DBD_PORT
SlurmUser=root
AuthType=auth/munge
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=3306
StorageUser=root
StorageLoc=$DB
LogFile=$DIR/log/slurmdbd.log
PidFile=$DIR/run/slurmdbd.pid
EOF
chmod 0600 "$DIR/slurmdbd.conf"

# -- daemons ---------------------------------------------------------------------------------------
alive() { [[ -f $1 ]] && kill -0 "$(cat "$1")" 2>/dev/null; }
if ! alive "$DIR/run/slurmdbd.pid"; then
    say "starting slurmdbd"
    slurmdbd # reads slurmdbd.conf (and gres.conf, cgroup.conf) beside $SLURM_CONF
fi
wait_for 30 slurmdbd sacctmgr -n show cluster
sacctmgr -n -P show cluster format=cluster | grep -qx "$CLUSTER" ||
    sacctmgr -i add cluster "$CLUSTER" >/dev/null
if ! alive "$DIR/run/slurmctld.pid"; then
    say "starting slurmctld"
    slurmctld -f "$SLURM_CONF"
fi
wait_for 30 slurmctld sh -c 'scontrol ping | grep -q "is UP"'
for ((i = 1; i <= NODES; i++)); do
    node=$(printf 'gpu%02d' "$i")
    if ! alive "$DIR/run/slurmd-$node.pid"; then
        mkdir -p "$DIR/spool/$node"
        slurmd -f "$SLURM_CONF" -N "$node"
    fi
done
say "waiting for $NODES nodes and the gpu TRES"
wait_for 60 "the nodes" ready

# The owner's teams: account `research` with root in it (sbatch -A research).
if ! sacctmgr -n -P show account research format=account | grep -qx research; then
    sacctmgr -i add account research Description="the owner's own teams" >/dev/null
fi
sacctmgr -n -P show assoc where account=research user=root format=user | grep -qx root ||
    sacctmgr -i add user root account=research >/dev/null
say "up: $NODES nodes × 8 GPUs in partition gpu ($DIR)"
echo "export SLURM_CONF=$SLURM_CONF"
