#!/usr/bin/env bash
# Stop the cluster scripts/slurm-up.sh started. --wipe also forgets its state: jobs, logs and its
# accounting database (the QOS, accounts and job history the Slurm engine made).
set -euo pipefail
DIR=${BACKFILL_SLURM_DIR:-/tmp/backfill-slurm}
DB=${BACKFILL_SLURM_DB:-slurm_acct_backfill}
stop() { # stop PIDFILE: TERM, then KILL after 10 s
    [[ -f $1 ]] || return 0
    local pid
    pid=$(cat "$1")
    kill "$pid" 2>/dev/null || { rm -f "$1"; return 0; }
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    kill -9 "$pid" 2>/dev/null || true
    rm -f "$1"
}
export SLURM_CONF=$DIR/slurm.conf
if [[ ${1:-} == --wipe && -f $SLURM_CONF ]]; then # end every job while the controller is up
    squeue -h -o %i 2>/dev/null | xargs -r scancel --full 2>/dev/null || true
fi
for pidfile in "$DIR"/run/slurmd-*.pid; do stop "$pidfile"; done
stop "$DIR/run/slurmctld.pid"
stop "$DIR/run/slurmdbd.pid"
if [[ ${1:-} == --wipe ]]; then
    pkill -KILL -f "$DIR/spool/" 2>/dev/null || true # batch scripts the scancel did not reach
    mysql -h 127.0.0.1 -P 3306 -u root -e "DROP DATABASE IF EXISTS \`$DB\`" 2>/dev/null || true
    rm -rf "$DIR"
fi
echo "slurm-down: stopped${1:+ and wiped} ($DIR)" >&2
