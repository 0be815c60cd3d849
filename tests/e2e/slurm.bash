# slurm.bash: a real single-node Slurm cluster in a temporary directory (`load slurm`), from
# Debian's slurm-wlm and munge: its own munge key and munged (socket in the directory), a
# slurm.conf written there, slurmctld and slurmd on ports free at the time, state, spool, logs
# and pids in the directory. The host's /etc/slurm and /etc/munge are not touched.
#
#   slurm_up DIR     start it; exports SLURM_CONF; waits until sinfo shows the node idle
#   slurm_down DIR   stop the daemons (their pid files), whatever state they are in

# Skip unless the daemons can be started here.
need_slurm() {
    [ "$(id -u)" -eq 0 ] || skip "a test Slurm needs root (slurmd)"
    local p
    for p in munged slurmctld slurmd sbatch sinfo squeue; do
        command -v "$p" >/dev/null || PATH=$PATH:/usr/sbin command -v "$p" >/dev/null ||
            skip "$p not found (Debian packages slurm-wlm and munge)"
    done
}

slurm_free_port() {
    "$PYTHON" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

slurm_up() {
    local d=$1 mem host ctld_port slurmd_port
    PATH=$PATH:/usr/sbin
    mkdir -p "$d"/{state,spool,log,run,munge}
    chmod 700 "$d/munge"
    # munge: a fresh key, and a daemon of our own on a socket in the directory
    head -c 1024 /dev/urandom >"$d/munge/munge.key"
    chmod 400 "$d/munge/munge.key"
    munged --force --socket="$d/munge/munge.socket" --key-file="$d/munge/munge.key" \
        --pid-file="$d/run/munged.pid" --log-file="$d/log/munged.log" --seed-file="$d/munge/seed" ||
        { die "munged did not start: $(tail -3 "$d/log/munged.log" 2>/dev/null)"; return 1; }
    mem=$(awk '/^MemTotal:/ {print int($2 / 1024 * 0.9)}' /proc/meminfo)
    host=$(hostname -s)
    ctld_port=$(slurm_free_port) slurmd_port=$(slurm_free_port)
    cat >"$d/slurm.conf" <<EOF
ClusterName=icntest
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=$ctld_port
SlurmdPort=$slurmd_port
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$d/munge/munge.socket
StateSaveLocation=$d/state
SlurmdSpoolDir=$d/spool/slurmd-%n
SlurmctldPidFile=$d/run/slurmctld.pid
SlurmdPidFile=$d/run/slurmd.pid
SlurmctldLogFile=$d/log/slurmctld.log
SlurmdLogFile=$d/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/builtin
MpiDefault=none
ReturnToService=2
SlurmctldTimeout=30
SlurmdTimeout=30
InactiveLimit=0
KillWait=5
PlugStackConfig=$d/plugstack.conf
NodeName=$host NodeAddr=127.0.0.1 CPUs=2 RealMemory=$mem State=UNKNOWN
PartitionName=icn Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF
    : >"$d/plugstack.conf"
    export SLURM_CONF=$d/slurm.conf
    slurmctld -f "$SLURM_CONF" -i ||
        { die "slurmctld did not start: $(tail -3 "$d/log/slurmctld.log" 2>/dev/null)"; return 1; }
    slurmd -f "$SLURM_CONF" ||
        { die "slurmd did not start: $(tail -3 "$d/log/slurmd.log" 2>/dev/null)"; return 1; }
    for _ in $(seq 1 120); do
        [ "$(sinfo -h -N -o '%t' 2>/dev/null)" = idle ] && return 0
        sleep 0.5
    done
    die "the node did not become idle: $(sinfo -N 2>&1 | tail -2); $(tail -5 "$d/log/slurmctld.log")"
}

slurm_down() {
    local d=$1 f pid p
    [ -f "$d/slurm.conf" ] && scancel --full --quiet --user="$(id -un)" 2>/dev/null
    for f in slurmd slurmctld munged; do
        pid=$(cat "$d/run/$f.pid" 2>/dev/null) || continue
        [ -n "$pid" ] || continue
        kill "$pid" 2>/dev/null || continue
        timeout 10 tail --pid="$pid" -f /dev/null 2>/dev/null || kill -9 "$pid" 2>/dev/null || true
    done
    # whatever is left of this cluster's jobs (slurmstepd and the job's processes): they, and
    # only they, carry this cluster's SLURM_CONF in their environment
    for p in /proc/[0-9]*; do
        [ "${p#/proc/}" = $$ ] || [ "${p#/proc/}" = "$BASHPID" ] && continue
        tr '\0' '\n' 2>/dev/null <"$p/environ" | grep -qx "SLURM_CONF=$d/slurm.conf" &&
            kill -9 "${p#/proc/}" 2>/dev/null
    done
    return 0
}
